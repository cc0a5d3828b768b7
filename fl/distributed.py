"""The federation over several processes (GPUs, or CPU processes with gloo), in two layouts.

``fl.parallel: sites`` — the sites are divided among the ranks (round-robin, or greedily by
training-set size); each rank trains and validates its own sites with a single-device Trainer, and
every rank receives every site's reply (and validation result), so each rank runs the algorithm's
aggregation on identical inputs and holds identical global tensors. Decoders, optimiser state and
data of a site never leave its rank except to rank 0, which gathers the checkpoint and writes every
output.

``fl.parallel: data`` — every site trains on all ranks at once with DDP: each rank takes its share
of every batch (global batch = ``batch_size`` x ranks), gradients are averaged, and the replicas
stay identical. Validation and test are sharded by volume (volume v on rank v % ranks) and the
per-volume scores gathered, so every volume is scored exactly once, whole.

Only rank 0 prints and writes; every rank can resume from the same checkpoint.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy

from fl.algorithms.base import Payload
from fl.site import FitResult, Site
from fl.transport import InProcess
from utils.bounds import MAX_RANKS, env_int, launch_rank  # noqa: F401 - launch_rank: also named here
from utils.errors import UserError
from utils.interrupt import forwarded


@contextmanager
def signals_to_children(launcher: Any) -> Iterator[None]:
    """SIGINT and SIGTERM that reach this process (rank 0 under Lightning's launcher) go on to the other
    ranks it started, so that every rank stops after the same round instead of failing in a collective
    (a ``kill`` of rank 0 alone would leave them waiting). Lightning's child-process observer, which
    kills every process as soon as one ends with a non-zero status, is stopped first (its next check
    finds no process to watch): the ranks end on their own with the signal's status, rank 0 after
    saying where the run stopped."""
    children = list(getattr(launcher, "procs", None) or [])
    if not children:
        yield
        return

    def forward(signum: int) -> None:
        for thread in threading.enumerate():
            if thread.name == "child-process-observer":  # it checks once more after its sleep
                thread._child_processes, thread._finished = [], True  # so that check kills nothing
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    with forwarded(forward):
        yield


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


def merge_volume_scores(scores: dict[str, Any]) -> dict[str, Any]:
    """Per-volume scores of this rank's volumes -> those of the whole split (each volume once)."""
    merged: dict[str, Any] = {}
    for part in all_gather(scores):
        overlap = set(merged) & set(part)
        if overlap:
            raise RuntimeError(f"volumes scored on two ranks: {sorted(overlap)}")
        merged.update(part)
    return {name: merged[name] for name in sorted(merged)}


class Distributed(InProcess):
    """The sites spread over the ranks of an initialised process group, in ``mode`` ``sites`` or ``data``.

    Args:
        sites: every site (each rank builds them all; a rank trains only its own under ``sites``).
        mode: ``fl.parallel``.
        assignment: ``fl.site_assignment``.
        trainer: ``trainer(max_epochs, **arguments)`` -> a Lightning Trainer with the config's settings.
        accelerator: ``trainer.accelerator``.
        step_progress: ``trainer.step_progress`` (shown on rank 0 only).
        log: where rank 0's lines go.
    """

    connects_peers = False  # a site's data is not another rank's to read during a fit

    def __init__(
        self,
        sites: list[Site],
        *,
        mode: str,
        assignment: str,
        trainer: Callable[..., L.Trainer],
        accelerator: str,
        step_progress: bool = False,
        log: Callable[[str], None] = print,
    ):
        super().__init__(sites)
        if not dist.is_initialized():
            raise RuntimeError(
                "the distributed transport needs an initialised process group (train_multi_gpu.py)"
            )
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.local_rank = env_int("LOCAL_RANK", self.rank, 0, MAX_RANKS - 1)
        self.writer = self.rank == 0
        self.mode, self._make_trainer = mode, trainer
        self.accelerator, self.step_progress = accelerator, step_progress
        sizes = {s.name: s.data.num_train_slices for s in sites}
        for site in sites:
            site.trainer = self._trainer
        if mode == "sites":
            self.owner = assign_sites(sizes, self.world, assignment)
            per_rank = {r: [n for n, o in self.owner.items() if o == r] for r in range(self.world)}
            log(
                "sites per rank: "
                + "; ".join(f"rank {r}: {', '.join(n) or '-'}" for r, n in per_rank.items())
            )
            if not per_rank[self.rank]:
                log(f"rank {self.rank} owns no site ({len(sites)} sites on {self.world} ranks)")
        else:
            self.owner = {name: self.rank for name in sizes}
            for site in sites:
                site.data.shard(self.world, self.rank)
                site.merge_scores = merge_volume_scores
            batches = ", ".join(f"{s.name} {s.data.batch_size} x {self.world}" for s in sites)
            log(f"data-parallel on {self.world} ranks; global batch per site: {batches}")

    def _device(self) -> dict[str, Any]:
        accelerator = self.accelerator
        if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
            return {"accelerator": "gpu", "devices": [self.local_rank]}
        return {"accelerator": "cpu" if accelerator == "auto" else accelerator, "devices": 1}

    def _trainer(self, max_epochs: int, fit: bool) -> L.Trainer:
        progress = {"enable_progress_bar": self.step_progress and self.rank == 0}
        if fit and self.mode == "data":
            return self._make_trainer(
                max_epochs,
                accelerator=self._device()["accelerator"],
                devices=self.world,  # one node: the process group spans these devices
                strategy=DDPStrategy(),
                use_distributed_sampler=False,  # the sites' samplers shard themselves
                **progress,
            )
        return self._make_trainer(max_epochs, **self._device(), **progress)

    def owned(self) -> list[Site]:
        """This rank's sites (``sites``), or every site (``data``: all ranks train each one together)."""
        if self.mode == "data":
            return self.sites
        return [s for s in self.sites if self.owner[s.name] == self.rank]

    def gather(self, local: dict[str, Any]) -> dict[str, Any]:
        """Merge every rank's per-site results (``sites``); identical on all ranks already (``data``)."""
        if self.mode == "data":
            return local
        merged: dict[str, Any] = {}
        for part in all_gather(local):
            merged.update(part)
        return {s.name: merged[s.name] for s in self.sites if s.name in merged}

    def fit(
        self, rnd: int, payloads: dict[str, Payload], epochs: int, lr: float, skip: bool
    ) -> dict[str, FitResult]:
        """As in one process; under ``data`` the reported loss is the mean over the ranks' shares."""
        results = super().fit(rnd, payloads, epochs, lr, skip)
        if self.mode == "data":
            for result in results.values():
                result.loss = sum(all_gather(result.loss)) / self.world
                # the losses are each rank's share; the encoder (and so the term's diagnostics) is the same
                for key in ("loss_rec", "penalty"):
                    if key in result.values:
                        result.values[key] = sum(all_gather(result.values[key])) / self.world
        return results

    def barrier(self) -> None:
        """Wait for every rank."""
        dist.barrier()
