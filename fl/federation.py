"""The in-process federation: every round, each site trains locally, the strategy aggregates.

One round: every site loads the global shared tensors and the strategy sees each one
(``prepare_site``); then each site trains ``local_epochs`` with a Lightning Trainer, in the phases
the strategy plans, with the strategy's penalty and step hook, and hands back its shared tensors;
the strategy turns them into the new global tensors, which every site loads; the bytes each site
sent and received are counted; every site is validated and its best round (by validation PSNR) is
kept. After the last round each site's best model is tested on its test split. The loop knows
nothing about any particular algorithm (see the hooks in ``fl/strategies.py``).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from data.site import SiteDataModule
from fl.strategies import Strategy, TensorDict, build_strategy, nbytes, set_trainable
from models.recon_module import NonFiniteError, ReconModule, all_finite
from utils.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from utils.config import Config, save_config
from utils.errors import TrainingFailure, UserError
from utils.figures import metric_curves, reconstruction_row
from utils.metrics import METRICS, RunningStats
from utils.run_log import MetricsCSV, TensorBoardLog
from utils.seeding import stable_seed

CHECKPOINT_FORMAT = 1


def quiet_lightning() -> None:
    """Silence Lightning's per-fit banners and hints; the federation prints its own progress."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=r".*(litlogger|tensorboardX).*")
    warnings.filterwarnings(
        "ignore", message=r".*You defined a `validation_step` but have no `val_dataloader`.*"
    )
    warnings.filterwarnings(
        "ignore", message=r".*number of training batches.*is smaller than the logging interval.*"
    )


def check_fits_model(config: Config, site: str, data: SiteDataModule) -> None:
    """The dual-domain cascade reads single-coil k-space: refuse multi-coil sites in one line."""
    if config.model.kind != "dual_domain" or not len(data.datasets["train"]):
        return
    shape = tuple(data.datasets["train"][0]["masked_kspace"].shape)
    if len(shape) != 2:
        raise UserError(
            f"sites.{site}: model.kind=dual_domain needs single-coil k-space (H, W), "
            f"this site's is multi-coil {shape}; use model.kind=unet"
        )


def lr_at(config: Config, rnd: int) -> float:
    """Learning rate of round ``rnd`` (1-based): StepLR applied once per round."""
    return config.optim.lr * config.optim.lr_gamma ** ((rnd - 1) // config.optim.lr_step_rounds)


def _summarise(per_volume: dict[str, dict[str, dict[str, float]]], which: str) -> dict[str, float]:
    stats = RunningStats().extend(v[which] for v in per_volume.values())
    mean, std = stats.mean(), stats.std()
    return {**mean, **{f"{k}_std": std[k] for k in mean}, "volumes": stats.count}


class SiteDiverged(Exception):
    """A site's local training produced a non-finite loss or non-finite weights."""

    def __init__(self, site: str, rnd: int, reason: str):
        super().__init__(f"site {site} diverged in round {rnd}: {reason}")
        self.site, self.round, self.reason = site, rnd, reason


@dataclass
class Site:
    """One client: its data, its module (model + optimiser) and its best round so far."""

    name: str
    data: SiteDataModule
    module: ReconModule
    best_round: int = 0
    best_psnr: float = -math.inf
    best_state: TensorDict = field(default_factory=dict)


class Federation:
    """Runs a federated training from a validated :class:`Config` and writes every output.

    Args:
        config: the run's configuration.
        log: where progress lines go (default: print).
    """

    pooled_data = False  # PooledTraining (Centralized, Transfer-Site) sets this
    writer = True  # whether this process writes outputs (only rank 0 of a distributed run does)

    def __init__(self, config: Config, log: Callable[[str], None] = print):
        self.config = config
        self.log = log
        self.run_dir = config.run_dir
        self.strategy: Strategy = build_strategy(config.fl, seed=config.seed)
        if self.strategy.pooled and not self.pooled_data:
            raise UserError(
                f"fl.algorithm: {config.fl.algorithm} is not federated; run it with fl.pooled.PooledTraining"
            )
        self.sites: list[Site] = []
        self.global_state: TensorDict = {}
        self.completed_rounds = 0
        self.history: dict[str, list[float]] = {}

    # -- set-up --------------------------------------------------------------------------------
    def setup(self) -> None:
        """Prepare every site's data first (so a bad fourth site fails before any training), then
        build one module per site from the same initial weights."""
        quiet_lightning()
        cfg = self.config
        data = []
        for site_cfg in cfg.sites:
            dm = SiteDataModule(
                site_cfg,
                seed=cfg.seed,
                cache_dir=cfg.data.cache_dir,
                clamp=cfg.data.clamp,
                num_workers=cfg.trainer.num_workers,
                return_kspace=cfg.model.kind == "dual_domain",
                persistent_workers=cfg.trainer.persistent_workers,
                pin_memory=cfg.trainer.pin_memory,
            )
            start = time.perf_counter()
            dm.setup()
            check_fits_model(cfg, site_cfg.name, dm)
            counts = {s: len(d) for s, d in dm.datasets.items()}
            if not counts["train"] or not counts["val"]:
                raise UserError(
                    f"sites.{site_cfg.name}: needs training and validation slices, found {counts}"
                )
            accel = f" x{site_cfg.mask.acceleration:g}" if site_cfg.mask.acceleration else ""
            self.log(
                f"site {site_cfg.name}: {counts['train']} train / {counts['val']} val / "
                f"{counts['test']} test slices ({site_cfg.source.kind}, {site_cfg.mask.kind}{accel}) "
                f"[{time.perf_counter() - start:.1f} s]"
            )
            data.append(dm)

        torch.manual_seed(stable_seed(cfg.seed, "init"))
        modules = [self._new_module() for _ in data]
        initial = modules[0].model.state_dict()
        for module in modules[1:]:
            module.model.load_state_dict(initial)
        self.sites = [Site(dm.name, dm, module) for dm, module in zip(data, modules)]
        names = list(initial)
        shared = self.strategy.shared_names(names, modules[0].model)
        self.global_state = {n: initial[n].detach().clone().cpu() for n in shared}
        self.history = {s.name: [] for s in self.sites}

    def _new_module(self) -> ReconModule:
        cfg = self.config
        return ReconModule(
            model=cfg.model.model_dump(),
            optim={"name": cfg.optim.name, "lr": cfg.optim.lr, "weight_decay": cfg.optim.weight_decay},
            loss=cfg.loss,
        )

    def _trainer(self, max_epochs: int = 1, *, fit: bool = False) -> L.Trainer:
        t = self.config.trainer
        return L.Trainer(
            accelerator=t.accelerator,
            devices=t.devices,
            precision=t.precision,
            max_epochs=max_epochs,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=t.step_progress,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )

    # -- where sites live (a distributed run overrides these) ------------------------------------
    def owned_sites(self) -> list[Site]:
        """The sites this process trains and evaluates (all of them in a single process)."""
        return self.sites

    def exchange(self, local: dict[str, Any]) -> dict[str, Any]:
        """Per-site results computed here -> the results of every site, in site order."""
        return local

    # -- the round -----------------------------------------------------------------------------
    def _weights(self) -> dict[str, float]:
        if self.config.fl.client_weights == "samples":
            return {s.name: float(s.data.num_train_slices) for s in self.sites}
        return {s.name: 1.0 for s in self.sites}

    def _load_global(self, site: Site) -> None:
        state = site.module.model.state_dict()
        with torch.no_grad():
            for name, tensor in self.global_state.items():
                state[name].copy_(tensor)

    def _shared_tensors(self, site: Site) -> TensorDict:
        state = site.module.model.state_dict()
        return {n: state[n].detach().clone().cpu() for n in self.global_state}

    def train_site(self, site: Site, rnd: int) -> tuple[TensorDict, float]:
        """Load the global tensors, run the local epochs (in the strategy's phases), return
        (shared tensors, mean train loss of the last epoch).

        Raises:
            SiteDiverged: a step's loss, or a weight after the fit, is not finite.
        """
        self._load_global(site)
        module, strategy = site.module, self.strategy
        lr = lr_at(self.config, rnd)
        module.set_lr(lr)
        module.reconstruction_weight = getattr(strategy, "reconstruction_weight", 1.0)
        module.penalty = strategy.penalty(site.name, rnd, module.model, self.global_state)
        module.step_hook = partial(strategy.on_local_step, site.name)
        site.data.set_round(rnd)
        torch.manual_seed(
            stable_seed(self.config.seed, "local", site.name, rnd)
        )  # same in any process layout
        steps = 0
        try:
            for phase in strategy.local_plan(site.name, rnd, self.config.fl.local_epochs, module.model):
                set_trainable(module.model, phase)
                trainer = self._trainer(phase.epochs, fit=True)
                trainer.fit(module, train_dataloaders=site.data.train_dataloader())
                steps += trainer.global_step
            if not all_finite(module.model):
                raise NonFiniteError("non-finite weights after local training")
        except NonFiniteError as err:
            raise SiteDiverged(site.name, rnd, str(err)) from None
        finally:
            module.penalty, module.step_hook = None, None
            set_trainable(module.model, None)
        strategy.after_local_fit(site.name, rnd, module.model, self.global_state, steps=steps, lr=lr)
        return self._shared_tensors(site), module.mean_train_loss

    @staticmethod
    def _snapshot(site: Site) -> dict[str, Any]:
        return {
            "model": copy.deepcopy(site.module.model.state_dict()),
            "optimizer": copy.deepcopy(site.module.optimizer.state_dict()),
        }

    @staticmethod
    def _restore(site: Site, snapshot: dict[str, Any]) -> None:
        site.module.model.load_state_dict(snapshot["model"])
        site.module.optimizer.load_state_dict(snapshot["optimizer"])

    def prepare_round(self, rnd: int) -> None:
        """Load the global tensors into every site and let the strategy see each before any trains."""
        local = {}
        for site in self.owned_sites():
            self._load_global(site)
            site.data.set_round(rnd)
            self.strategy.prepare_site(site.name, rnd, site.module.model, site.data.train_dataloader())
            local[site.name] = self.strategy.site_state(site.name)
        self._adopt_site_states(local, self.exchange(local))

    def _adopt_site_states(self, local: dict[str, Any], merged: dict[str, Any]) -> None:
        for name, state in merged.items():
            if name not in local:
                self.strategy.load_site_state(name, state)

    def traffic(self, updates: dict[str, TensorDict]) -> dict[str, dict[str, int]]:
        """Bytes each site sent (its shared tensors and strategy extras) and received this round."""
        received = nbytes(self.global_state.values())
        out = {}
        for site in self.sites:
            extra_sent, extra_received = self.strategy.pop_traffic(site.name)
            out[site.name] = {
                "bytes_sent": nbytes(updates[site.name].values()) + extra_sent if site.name in updates else 0,
                "bytes_received": received + extra_received,
            }
        return out

    def evaluate_site(self, site: Site, split: str = "val") -> dict[str, Any]:
        """Per-volume metrics of the site's current model on ``split`` (and of the zero-filled input)."""
        trainer = self._trainer()
        if split == "val":
            trainer.validate(site.module, dataloaders=site.data.val_dataloader(), verbose=False)
        else:
            trainer.test(site.module, dataloaders=site.data.test_dataloader(), verbose=False)
        return site.module.collector.scores()

    def run_round(self, rnd: int) -> dict[str, dict[str, Any]]:
        """One communication round; returns per site its train loss, status, traffic and validation metrics.

        A site that diverges stops the run (``fl.on_site_failure: abort``), or is restored to its
        state before the round and left out of this round's aggregation (``skip``).
        """
        self.prepare_round(rnd)
        local = {site.name: self._train_or_skip(site, rnd) for site in self.owned_sites()}
        trained = self.exchange(local)
        self._adopt_site_states(local, {n: r["site_state"] for n, r in trained.items()})
        updates = {n: r["update"] for n, r in trained.items() if r["update"] is not None}
        if updates:
            weights = self._weights()
            self.global_state = self.strategy.aggregate(rnd, updates, {s: weights[s] for s in updates})
        traffic = self.traffic(updates)
        local = {site.name: self._validate_and_keep_best(site, rnd) for site in self.owned_sites()}
        validated = self.exchange(local)
        summary = {}
        for site in self.sites:
            val, best = validated[site.name]["val"], validated[site.name]["best"]
            if site.name not in local and best is not None:  # a site trained by another process improved
                site.best_round, site.best_psnr, site.best_state = best
            summary[site.name] = {
                "loss": trained[site.name]["loss"],
                "status": trained[site.name]["status"],
                **val,
                **traffic[site.name],
            }
        self.completed_rounds = rnd
        return summary

    def _train_or_skip(self, site: Site, rnd: int) -> dict[str, Any]:
        """Train one site; under ``on_site_failure: skip`` a diverging site is restored and sits out."""
        snapshot = self._snapshot(site) if self.config.fl.on_site_failure == "skip" else None
        try:
            update, loss = self.train_site(site, rnd)
            result = {"update": update, "loss": loss, "status": "ok"}
        except SiteDiverged as err:
            if snapshot is None:
                kept = (
                    f"checkpoints/last.ckpt (round {self.completed_rounds}) is kept"
                    if self.completed_rounds
                    else "no round had completed"
                )
                raise TrainingFailure(
                    f"{err}; {kept} (with fl.on_site_failure=skip the site would sit this round out)"
                ) from None
            self._restore(site, snapshot)
            self.log(f"{err}; left out of round {rnd}'s aggregation, retried next round")
            result = {"update": None, "loss": math.nan, "status": f"skipped: {err.reason}"}
        result["site_state"] = self.strategy.site_state(site.name)
        return result

    def _validate_and_keep_best(self, site: Site, rnd: int) -> dict[str, Any]:
        """Load the new global tensors, validate, and keep the model if it is the site's best so far."""
        self._load_global(site)
        val = _summarise(self.evaluate_site(site, "val"), "model")
        best = None
        if val["psnr"] > site.best_psnr:
            site.best_psnr, site.best_round = val["psnr"], rnd
            site.best_state = {k: v.detach().clone().cpu() for k, v in site.module.model.state_dict().items()}
            best = (site.best_round, site.best_psnr, site.best_state)
        return {"val": val, "best": best}

    # -- the whole run -------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Set up, train all rounds, test each site's best model and write every output."""
        cfg = self.config
        if not self.sites:
            self.setup()
        metrics, tb = None, None
        if self.writer:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
            metrics = MetricsCSV(self.run_dir / "metrics.csv")
            metrics.truncate_to(self.completed_rounds)  # drop rows of a round that was cut short
            tb = TensorBoardLog(self.run_dir / "tb", purge_step=self.completed_rounds + 1)
        total = len(self.sites[0].module.model.state_dict())
        self.log(
            f"{cfg.fl.algorithm}: {len(self.sites)} sites, {cfg.fl.rounds} rounds x {cfg.fl.local_epochs} "
            f"local epochs; shared {len(self.global_state)} of {total} tensors; outputs in {self.run_dir}"
        )
        start, first = time.perf_counter(), self.completed_rounds + 1
        try:
            for rnd in range(first, cfg.fl.rounds + 1):
                round_start = time.perf_counter()
                summary = self.run_round(rnd)
                lr = lr_at(cfg, rnd)
                for site, values in summary.items():
                    self.history[site].append(values["psnr"])
                    if not self.writer:
                        continue
                    metrics.write(
                        round=rnd,
                        site=site,
                        split="train",
                        loss=values["loss"],
                        lr=lr,
                        status=values.get("status", "ok"),
                        bytes_sent=values.get("bytes_sent"),
                        bytes_received=values.get("bytes_received"),
                    )
                    metrics.write(round=rnd, site=site, split="val", **{k: values[k] for k in METRICS})
                    tb.scalars(f"{site}/train", {"loss": values["loss"], "lr": lr}, rnd)
                    tb.scalars(f"{site}/val", {k: values[k] for k in METRICS}, rnd)
                self.save(self.run_dir / "checkpoints" / "last.ckpt")
                now = time.perf_counter()
                self._log_round(rnd, summary, now - round_start, (now - start) / (rnd - first + 1))
            results = self.test(metrics)
        finally:
            if tb is not None:
                tb.close()
        if self.writer:
            self.write_results(results)
        return results

    def _log_round(
        self, rnd: int, summary: dict[str, dict[str, float]], took: float, per_round: float
    ) -> None:
        total = self.config.fl.rounds
        parts = []
        for site, v in summary.items():
            loss = f"loss {v['loss']:.4f}" if v["status"] == "ok" else "SKIPPED"
            parts.append(f"{site} {loss} psnr {v['psnr']:.2f}")
        eta = (total - rnd) * per_round
        self.log(
            f"round {rnd:>{len(str(total))}}/{total} | "
            + " | ".join(parts)
            + f" | {took:.0f} s, eta {eta:.0f} s"
        )

    def test(self, metrics: MetricsCSV | None = None) -> dict[str, Any]:
        """Test each site's best model on its test split; figures per site; returns the results."""
        cfg = self.config
        local = {}
        for site in self.owned_sites():
            if site.best_state:
                site.module.model.load_state_dict(site.best_state)
            per_volume = self.evaluate_site(site, "test")
            local[site.name] = {
                "model": _summarise(per_volume, "model"),
                "zero_filled": _summarise(per_volume, "zero_filled"),
                "figure": self._figure_slice(site),
            }
        tested = self.exchange(local)
        results: dict[str, Any] = {
            "name": cfg.name,
            "algorithm": cfg.fl.algorithm,
            "rounds": self.completed_rounds,
        }
        sites = {}
        for site in self.sites:
            model, zero_filled = tested[site.name]["model"], tested[site.name]["zero_filled"]
            sites[site.name] = {"best_round": site.best_round, "model": model, "zero_filled": zero_filled}
            if self.writer:
                self._write_site_outputs(site, model, tested[site.name]["figure"], metrics)
        results["sites"] = sites
        results["mean"] = {
            which: {k: float(np.mean([s[which][k] for s in sites.values()])) for k in METRICS}
            for which in ("model", "zero_filled")
        }
        if self.writer and self.history and any(self.history.values()):
            rounds = range(1, self.completed_rounds + 1)
            metric_curves(self.run_dir / "figures" / "val_psnr.png", rounds, self.history)
        return results

    def _write_site_outputs(
        self, site: Site, model: dict[str, float], figure: dict[str, Any] | None, metrics: MetricsCSV | None
    ) -> None:
        if site.best_state:
            save_checkpoint(
                {
                    "site": site.name,
                    "round": site.best_round,
                    "val_psnr": site.best_psnr,
                    "model": site.best_state,
                    "config": self.config.to_dict(),
                },
                self.run_dir / "checkpoints" / f"best_{site.name}.ckpt",
            )
        if metrics is not None:
            metrics.write(
                round=site.best_round, site=site.name, split="test", **{k: model[k] for k in METRICS}
            )
        if figure is not None:
            reconstruction_row(
                self.run_dir / "figures" / f"{site.name}.png",
                figure["zero_filled"],
                figure["pred"],
                figure["target"],
                title=f"{site.name}: {figure['volume']}, slice {figure['slice']}",
            )

    @staticmethod
    def _figure_slice(site: Site) -> dict[str, Any] | None:
        """The middle slice of the first test volume scored here (for the reconstruction figure)."""
        collector = site.module.collector
        if not collector.slices:
            return None
        volume = sorted(collector.slices)[0]
        pred, target, zero_filled = collector.volume(volume)
        k = len(pred) // 2
        return {
            "volume": volume,
            "slice": k,
            "pred": pred[k],
            "target": target[k],
            "zero_filled": zero_filled[k],
        }

    def write_results(self, results: dict[str, Any]) -> None:
        """``results.json`` and ``results.md`` (test table per site, mean, zero-filled reference rows)."""
        atomic_write_text(self.run_dir / "results.json", json.dumps(results, indent=2) + "\n")
        atomic_write_text(self.run_dir / "results.md", results_markdown(results))
        self.log("\n" + results_markdown(results))

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run exactly: loadable with ``weights_only=True``."""
        return {
            "format": CHECKPOINT_FORMAT,
            "round": self.completed_rounds,
            "config": self.config.to_dict(),
            "global": self.global_state,
            "sites": {
                s.name: {"model": s.module.model.state_dict(), "optimizer": s.module.optimizer.state_dict()}
                for s in self.sites
            },
            "strategy": self.strategy.state_dict(),
            "best": {
                s.name: {"round": s.best_round, "psnr": s.best_psnr, "model": s.best_state}
                for s in self.sites
            },
            "history": self.history,
            "rng": _rng_state(),
        }

    def resume(self) -> bool:
        """Continue from ``<run_dir>/checkpoints/last.ckpt``; False if no round was completed yet."""
        path = self.run_dir / "checkpoints" / "last.ckpt"
        if not self.sites:
            self.setup()
        if not path.exists():
            self.log(f"{self.run_dir}: no completed round to resume from; starting at round 1")
            return False
        self.load(path)
        self.log(f"resuming {self.run_dir} after round {self.completed_rounds} of {self.config.fl.rounds}")
        return True

    def save(self, path: Path) -> None:
        """Write :meth:`state_dict` atomically."""
        save_checkpoint(self.state_dict(), path)

    def load(self, path: Path) -> None:
        """Restore a checkpoint written by :meth:`save` into the already set-up federation."""
        ckpt = load_checkpoint(path)
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise UserError(f"checkpoint {path}: unsupported format {ckpt.get('format')!r}")
        if set(ckpt["sites"]) != {s.name for s in self.sites}:
            raise UserError(f"checkpoint {path}: sites {sorted(ckpt['sites'])} do not match the config's")
        for site in self.sites:
            state = ckpt["sites"][site.name]
            try:
                site.module.model.load_state_dict(state["model"])
                site.module.optimizer.load_state_dict(state["optimizer"])
            except (RuntimeError, ValueError, KeyError) as err:
                raise UserError(
                    f"checkpoint {path}: site {site.name} does not fit the model ({str(err).splitlines()[0]})"
                ) from None
            best = ckpt["best"][site.name]
            site.best_round, site.best_psnr, site.best_state = best["round"], best["psnr"], best["model"]
        self.global_state = ckpt["global"]
        self.strategy.load_state_dict(ckpt["strategy"])
        self.history = {k: list(v) for k, v in ckpt["history"].items()}
        self.completed_rounds = int(ckpt["round"])
        _set_rng_state(ckpt["rng"])


def _rng_state() -> dict[str, Any]:
    """Every global random generator's state, as tensors and plain data (``weights_only``-safe)."""
    version, python_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "state": list(python_state), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "cached": cached,
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`_rng_state`."""
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached"])
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def results_markdown(results: dict[str, Any]) -> str:
    """The test table: one row per site (reconstruction and zero-filled input) and the mean."""
    lines = [
        f"### {results['name']}: {results['algorithm']}, {results['rounds']} rounds "
        "(test split, best round per site)",
        "",
        "| site | method | best round | volumes | NMSE | PSNR (dB) | SSIM |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, site in results["sites"].items():
        for which, label in (("model", results["algorithm"]), ("zero_filled", "zero-filled")):
            m = site[which]
            lines.append(
                f"| {name} | {label} | {site['best_round'] if which == 'model' else ''} | {m['volumes']} | "
                f"{m['nmse']:.4f} ± {m['nmse_std']:.4f} | {m['psnr']:.2f} ± {m['psnr_std']:.2f} | "
                f"{m['ssim']:.4f} ± {m['ssim_std']:.4f} |"
            )
    for which, label in (("model", results["algorithm"]), ("zero_filled", "zero-filled")):
        m = results["mean"][which]
        lines.append(f"| **mean** | {label} | | | {m['nmse']:.4f} | {m['psnr']:.2f} | {m['ssim']:.4f} |")
    return "\n".join(lines) + "\n"
