"""The federation over several processes (GPUs, or CPU processes with gloo), in two layouts.

``fl.parallel: sites`` — the sites are divided among the ranks (round-robin, or greedily by
training-set size); each rank trains and validates its own sites with a single-device Trainer, and
after the local fits every rank receives every site's shared tensors (and the strategy's per-site
state), so each rank runs the strategy's aggregation on identical inputs and holds identical global
tensors. Decoders, optimiser state and data of a site never leave its rank except to rank 0,
which gathers the full checkpoint and writes every output.

``fl.parallel: data`` — every site trains on all ranks at once with DDP: each rank takes its share
of every batch (global batch = ``batch_size`` x ranks), gradients are averaged, and the replicas
stay identical. Validation and test are sharded by volume (volume v on rank v % ranks) and the
per-volume scores gathered, so every volume is scored exactly once, whole.

Only rank 0 prints and writes; every rank can resume from the same checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy

from fl.federation import Federation, Site
from utils.config import Config
from utils.errors import UserError


def launch_rank() -> int:
    """This process's rank as the launcher set it (0 before a launch and in a single process)."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0)))


def assign_sites(sizes: dict[str, int], world: int, how: str = "round_robin") -> dict[str, int]:
    """Site -> owning rank: ``round_robin`` in config order, or ``size`` (largest first to the least
    loaded rank, ties to the lowest rank), so that ranks get about the same number of training slices."""
    if how == "round_robin":
        return {name: i % world for i, name in enumerate(sizes)}
    load = [0] * world
    owner = {}
    for name in sorted(sizes, key=lambda n: (-sizes[n], list(sizes).index(n))):
        rank = min(range(world), key=lambda r: (load[r], r))
        owner[name] = rank
        load[rank] += sizes[name]
    return {name: owner[name] for name in sizes}


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order."""
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def agree(job: Callable[[], Any]) -> Any:
    """Run ``job`` on every rank; if it raised UserError on any, raise the first rank's error on all.

    Keeps ranks from waiting forever at the next collective when one of them hit bad input.
    """
    try:
        result, error = job(), None
    except UserError as err:
        result, error = None, str(err)
    errors = [e for e in all_gather(error) if e is not None]
    if errors:
        raise UserError(errors[0])
    return result


class DistributedFederation(Federation):
    """:class:`Federation` across ranks; the layout comes from ``fl.parallel``."""

    def __init__(self, config: Config, log: Callable[[str], None] = print):
        if not dist.is_initialized():
            raise RuntimeError(
                "DistributedFederation needs an initialised process group (see train_multi_gpu.py)"
            )
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", self.rank))
        super().__init__(config, log=log if self.rank == 0 else (lambda _: None))
        self.writer = self.rank == 0
        self.mode = config.fl.parallel
        if self.strategy.pooled:
            raise UserError(f"fl.algorithm: {config.fl.algorithm} is not federated; train it with train.py")
        if self.mode == "data" and config.fl.algorithm == "flmrcm":
            raise UserError(
                "fl.parallel: data does not support fl.algorithm=flmrcm (each rank would train its own "
                "discriminator); use fl.parallel: sites"
            )
        self.owner: dict[str, int] = {}

    # -- set-up --------------------------------------------------------------------------------
    def setup(self) -> None:
        """Rank 0 prepares (and caches) the data first, then the others; a data error stops every rank."""
        first = self.rank == 0
        agree(super().setup if first else (lambda: None))
        agree((lambda: None) if first else super().setup)
        sizes = {s.name: s.data.num_train_slices for s in self.sites}
        if self.mode == "sites":
            self.owner = assign_sites(sizes, self.world, self.config.fl.site_assignment)
            mine = [n for n, r in self.owner.items() if r == self.rank]
            per_rank = {r: [n for n, o in self.owner.items() if o == r] for r in range(self.world)}
            self.log(
                "sites per rank: "
                + "; ".join(f"rank {r}: {', '.join(n) or '-'}" for r, n in per_rank.items())
            )
            if not mine:
                self.log(f"rank {self.rank} owns no site ({len(self.sites)} sites on {self.world} ranks)")
        else:
            self.owner = {name: self.rank for name in sizes}
            for site in self.sites:
                site.data.shard(self.world, self.rank)
            batches = ", ".join(f"{s.name} {s.data.batch_size} x {self.world}" for s in self.sites)
            self.log(f"data-parallel on {self.world} ranks; global batch per site: {batches}")

    # -- where sites live ----------------------------------------------------------------------
    def owned_sites(self) -> list[Site]:
        """This rank's sites (``sites``), or every site (``data``: all ranks train each one together)."""
        if self.mode == "data":
            return self.sites
        return [s for s in self.sites if self.owner[s.name] == self.rank]

    def exchange(self, local: dict[str, Any]) -> dict[str, Any]:
        """Merge every rank's per-site results (``sites``); identical on all ranks already (``data``)."""
        if self.mode == "data":
            return local
        merged: dict[str, Any] = {}
        for part in all_gather(local):
            merged.update(part)
        return {s.name: merged[s.name] for s in self.sites if s.name in merged}

    def train_site(self, site: Site, rnd: int) -> tuple[dict[str, torch.Tensor], float]:
        """As in one process; under ``data`` the reported loss is the mean over the ranks' shares."""
        update, loss = super().train_site(site, rnd)
        if self.mode == "data":
            loss = sum(all_gather(loss)) / self.world
        return update, loss

    def evaluate_site(self, site: Site, split: str = "val") -> dict[str, Any]:
        """Per-volume scores of the whole split: this rank's volumes, merged with the others' (``data``)."""
        scores = super().evaluate_site(site, split)
        if self.mode == "sites":
            return scores
        merged: dict[str, Any] = {}
        for part in all_gather(scores):
            overlap = set(merged) & set(part)
            if overlap:
                raise RuntimeError(f"volumes scored on two ranks: {sorted(overlap)}")
            merged.update(part)
        return {name: merged[name] for name in sorted(merged)}

    def _device_kwargs(self) -> dict[str, Any]:
        accelerator = self.config.trainer.accelerator
        if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
            return {"accelerator": "gpu", "devices": [self.local_rank]}
        return {"accelerator": "cpu" if accelerator == "auto" else accelerator, "devices": 1}

    def _trainer(self, max_epochs: int = 1, *, fit: bool = False) -> L.Trainer:
        t = self.config.trainer
        common = {
            "precision": t.precision,
            "max_epochs": max_epochs,
            "logger": False,
            "enable_checkpointing": False,
            "enable_progress_bar": t.step_progress and self.rank == 0,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
        }
        if fit and self.mode == "data":
            device = self._device_kwargs()
            return L.Trainer(
                accelerator=device["accelerator"],
                devices=self.world,  # one node: the process group spans these devices
                strategy=DDPStrategy(),
                use_distributed_sampler=False,  # the sites' samplers shard themselves
                **common,
            )
        return L.Trainer(**self._device_kwargs(), **common)

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self, path) -> None:
        """Rank 0 gathers every site's model and optimiser state (``sites``) and writes the checkpoint."""
        if self.mode == "sites":
            local = {
                s.name: {"model": s.module.model.state_dict(), "optimizer": s.module.optimizer.state_dict()}
                for s in self.owned_sites()
            }
            for name, state in self.exchange(local).items():
                if self.rank == 0 and self.owner[name] != 0:
                    site = next(s for s in self.sites if s.name == name)
                    site.module.model.load_state_dict(state["model"])
                    site.module.optimizer.load_state_dict(state["optimizer"])
        if self.writer:
            super().save(path)
        dist.barrier()
