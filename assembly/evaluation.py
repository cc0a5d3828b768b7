"""Trained models on test data outside the training loop: for evaluate.py and compare.py.

Loads each site's model from a run directory or a checkpoint, builds any config's sites (with
:class:`build.Builder`, as training does), tests a model on a site's test split with the same
ReconModule and volume metrics as training, and reconstructs one fixed test slice per site for figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from assembly.build import Builder
from assembly.config import Config, load_config, validate_config
from data.site import SiteDataModule
from data.transforms import denormalize
from fl.fingerprint import fingerprint, fingerprint_differences
from models.recon_module import ReconModule
from utils.bounds import shown
from utils.checkpoint import load_checkpoint
from utils.errors import UserError
from utils.metrics import summarise  # noqa: F401  (re-exported for evaluate.py and compare.py)

MAX_ROUNDS = 2**31 - 1  # fl.rounds' own bound


@dataclass
class TrainedModels:
    """Each site's model weights and the config they were trained with."""

    config: Config
    models: dict[str, dict[str, torch.Tensor]]  # site -> U-Net state dict
    rounds: dict[str, int]  # site -> the round the weights are from (0 if unknown)
    source: str  # where they were read from
    weights: str = "best"  # each site's best round by validation PSNR, or the last round's weights

    def describe(self) -> str:
        """Which weights these are, for the command's output: the rounds they come from."""
        rounds = ", ".join(f"{site} {r}" for site, r in self.rounds.items())
        if self.weights == "last":
            return f"the weights after the last completed round ({rounds})"
        return f"each site's best round by validation PSNR ({rounds}; --weights last for the last round's)"


def load_run(run_dir: str | Path, weights: str = "best") -> TrainedModels:
    """The best model of every site of a run directory (``checkpoints/best_<site>.ckpt``), or with
    ``weights="last"`` every site's weights after the last completed round (``checkpoints/last.ckpt``)."""
    run_dir = Path(run_dir)
    if weights == "last":
        trained = load_ckpt(run_dir / "checkpoints" / "last.ckpt", weights)
        trained.source = str(run_dir)
        return trained
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise UserError(f"run {run_dir}: no config.yaml; expected a directory written by train.py")
    config = load_config(config_path)
    models, rounds = {}, {}
    for site in config.sites:
        path = run_dir / "checkpoints" / f"best_{site.name}.ckpt"
        if not path.is_file():
            raise UserError(f"run {run_dir}: {path.name} not found; did the run finish its test?")
        ckpt = load_checkpoint(path)
        _check_fingerprint(ckpt.get("fingerprint"), config, f"{path} (of run {run_dir})")
        if "site" in ckpt and ckpt["site"] != site.name:  # another site's file under this site's name
            raise UserError(
                f"checkpoint {path}: holds the model of site {shown(ckpt['site'])}, not {site.name}"
            )
        models[site.name], rounds[site.name] = ckpt.get("model"), _count(ckpt.get("round", 0), path)
    _check_models(models, run_dir, config)
    return TrainedModels(config, models, rounds, str(run_dir))


def _check_fingerprint(stated: Any, config: Config, what: str) -> None:
    """Refuse a checkpoint whose fingerprint (what its model was trained with) differs from ``config``:
    weights from another run or network, named with the differing keys before any site is tested."""
    if stated is None:  # written before checkpoints carried one
        return
    if not isinstance(stated, dict):
        raise UserError(f"{what}: its fingerprint is unreadable")
    differing = fingerprint_differences(stated, fingerprint(config.to_dict()))
    if differing:
        raise UserError(f"{what}: was trained with another config ({'; '.join(differing)})")


def load_ckpt(path: str | Path, weights: str = "best") -> TrainedModels:
    """The site models in a checkpoint: a run's ``best_<site>.ckpt`` (one site) or a federation
    checkpoint such as ``last.ckpt`` (every site's best model so far, else its current one; with
    ``weights="last"`` every site's current one)."""
    ckpt = load_checkpoint(path)
    if "config" not in ckpt:
        raise UserError(f"checkpoint {path}: no config inside; expected one written by train.py")
    config = validate_config(ckpt["config"])
    _check_fingerprint(ckpt.get("fingerprint"), config, f"checkpoint {path}")
    if "sites" in ckpt:
        models, rounds = {}, {}
        sites, bests = ckpt["sites"], ckpt.get("best", {})
        if not isinstance(sites, dict) or not isinstance(bests, dict):
            raise UserError(f"checkpoint {path}: 'sites' and 'best' must be dicts keyed by site")
        for site, state in sites.items():
            best = bests.get(site, {})
            if not isinstance(state, dict) or not isinstance(best, dict):
                raise UserError(f"checkpoint {path}: sites.{site}: expected a dict")
            if weights == "best" and isinstance(best.get("model"), dict) and best["model"]:
                models[site], rounds[site] = best["model"], _count(best.get("round", 0), path)
            else:
                models[site], rounds[site] = state.get("model"), _count(ckpt.get("round", 0), path)
        _check_models(models, path, config)
        return TrainedModels(config, models, rounds, str(path), weights)
    if "model" in ckpt and "site" in ckpt and weights == "last":
        raise UserError(
            f"checkpoint {path}: holds site {ckpt['site']}'s best round only; --weights last reads "
            "a run's checkpoints/last.ckpt"
        )
    if "model" in ckpt and "site" in ckpt:
        if not isinstance(ckpt["site"], str) or ckpt["site"] not in {s.name for s in config.sites}:
            raise UserError(f"checkpoint {path}: site {shown(ckpt['site'])} is not a site of its config")
        models = {ckpt["site"]: ckpt["model"]}
        _check_models(models, path, config)
        return TrainedModels(config, models, {str(ckpt["site"]): _count(ckpt.get("round"), path)}, str(path))
    raise UserError(f"checkpoint {path}: neither a federation checkpoint nor a site's best model")


def _count(value: Any, path: str | Path) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_ROUNDS:
        raise UserError(f"checkpoint {path}: round: expected a count of rounds, found {shown(value)}")
    return value


def _check_models(models: dict[str, Any], path: str | Path, config: Config) -> None:
    """Each site's weights, before any is loaded: a mapping of the names of ``config``'s network to
    tensors of its shapes (floating point where it is), all finite; one line naming the site and the
    parameter otherwise."""
    expected = new_module(config).model.state_dict()
    for site, state in models.items():
        if (
            not isinstance(state, dict)
            or not state
            or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
        ):
            raise UserError(
                f"checkpoint {path}: the model of site {site} is not a mapping of names to tensors"
            )
        missing, unknown = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or unknown:
            which = f"lacks {shown(missing[0])}" if missing else f"has {shown(unknown[0])}, which"
            raise UserError(
                f"checkpoint {path}: the model of site {site} {which} the config's network "
                f"(model.*) {'has' if missing else 'lacks'}"
            )
        for name, tensor in state.items():
            want = expected[name]
            if tensor.shape != want.shape or tensor.is_floating_point() != want.is_floating_point():
                raise UserError(
                    f"checkpoint {path}: the model of site {site}: {name} is {tuple(tensor.shape)} "
                    f"{tensor.dtype}, the config's network has {tuple(want.shape)} {want.dtype}"
                )
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise UserError(
                    f"checkpoint {path}: the model of site {site}: {name} holds NaN or infinite weights"
                )


def build_sites(config: Config) -> dict[str, SiteDataModule]:
    """Every site of ``config`` with its data prepared (generated or read from the cache)."""
    builder = Builder(config, log=lambda _: None)
    sites = {}
    for site in config.sites:
        dm = builder.data_module(site)
        dm.setup()
        sites[site.name] = dm
    return sites


def new_module(config: Config, state: dict[str, torch.Tensor] | None = None) -> ReconModule:
    """A ReconModule with ``config``'s network, optionally loaded with ``state``."""
    return Builder(config).module(state)


def score_model(config: Config, module: ReconModule, data: SiteDataModule) -> dict[str, Any]:
    """Per-volume scores of ``module`` on ``data``'s test split (model and zero-filled)."""
    if not len(data.datasets["test"]):
        raise UserError(f"sites.{data.name}: has no test slices")
    Builder(config).trainer(1, devices=1, enable_progress_bar=False).test(
        module, dataloaders=data.test_dataloader(), verbose=False
    )
    return module.collector.scores()


def figure_slice(data: SiteDataModule) -> tuple[str, int]:
    """The test slice shown in figures: the middle slice of the site's first test volume."""
    volumes = sorted(data.datasets["test"].volumes, key=lambda v: v.name)
    if not volumes:
        raise UserError(f"sites.{data.name}: has no test slices")
    return volumes[0].name, volumes[0].num_slices // 2


def reconstruct_slice(
    module: ReconModule, data: SiteDataModule, volume: str, index: int
) -> dict[str, np.ndarray]:
    """Zero-filled input, reconstruction and target of one test slice, in the original scale."""
    dataset = data.datasets["test"]
    position = next(
        i for i, (v, s) in enumerate(dataset.index) if dataset.volumes[v].name == volume and s == index
    )
    sample = dataset[position]
    module.eval()
    device = next(module.model.parameters()).device
    batch = {k: v[None].to(device) for k, v in sample.items() if isinstance(v, torch.Tensor)}
    with torch.no_grad():
        pred = module.predict(batch)[0].cpu()
    mean, std = sample["mean"], sample["std"]
    return {
        "zero_filled": denormalize(sample["input"][None], mean, std)[0, 0].numpy(),
        "recon": denormalize(pred, mean, std)[0, 0].numpy(),
        "target": denormalize(sample["target"][None], mean, std)[0, 0].numpy(),
    }
