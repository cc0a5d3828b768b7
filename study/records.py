"""The raw files a study keeps, and from which every table and figure is made (no model, no training).

A study's results folder holds::

    manifest.json        the command, config, seeds and table rows (label, families, run per seed)
    runs/<run>.json      one finished run: per-volume test metrics of every site, its best rounds,
                         validation PSNR per round, traffic and time per round (a few KB)
    latent/<run>.json    optional: the 2-D t-SNE embedding of its bottleneck features (study.latent)

Each file is read into a pydantic model of what the report reads from it (:class:`Manifest`,
:class:`RunRecord`, :class:`LatentFile`): a file may hold more, and must hold at least that, with JSON's
types as they are (strict: no string read as a number, no number as a string). A file that departs
from it is one :class:`UserError` line naming the file and the first key that is wrong.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from utils.errors import UserError
from utils.run_log import read_metrics

METRICS = ("psnr", "ssim", "nmse")


class _Record(BaseModel):
    """A part of a raw file: JSON's types as they are; keys the report does not read are let through."""

    model_config = ConfigDict(strict=True)


class Scores(_Record):
    """One volume's scores."""

    psnr: float
    ssim: float
    nmse: float

    def of(self, metric: str) -> float:
        """The score of ``metric`` (one of :data:`METRICS`)."""
        return getattr(self, metric)


class VolumeScores(_Record):
    """A test volume scored on the model's reconstruction and on the zero-filled input."""

    model: Scores
    zero_filled: Scores


class SiteRecord(_Record):
    """A site of a run: the round of its best validation PSNR and its test volumes' scores."""

    best_round: int
    volumes: dict[str, VolumeScores]


class Traffic(_Record):
    """Mean bytes a site sends and receives per round."""

    sent_per_round: float
    received_per_round: float


class Communication(_Record):
    """A federated run's traffic, as the report reads it: the mean over sites."""

    mean: Traffic


class Timing(_Record):
    """A run's time per round and, where the raw file says, the local steps and the machine."""

    seconds_per_round: float
    local_steps_per_round: float | None = None
    cpu: str = ""
    gpu: str = ""


class RunRecord(_Record):
    """``runs/<run>.json``: one finished run (:func:`run_record` writes it)."""

    overrides: list[str]
    sites: dict[str, SiteRecord]
    val_psnr: dict[str, list[float]]
    communication: Communication | None
    timing: Timing | None
    precision: str = ""  # the precision it trained at; older raw files do not say


class ManifestRow(_Record):
    """A table row of the study: its label, the families it belongs to and its run of each seed."""

    label: str
    families: list[str]  # "comparison" and/or ablation names
    algorithm: str
    overrides: list[str] = []  # the variant's, beyond the command line's
    runs: dict[str, str]  # seed (as text) -> run name, the stem of a file of runs/


class Manifest(_Record):
    """``manifest.json``: what a study trains and tabulates (the fields in the order they are written)."""

    command: str
    config: str
    rounds: int
    local_epochs: int
    sites: list[str]
    seeds: list[int]
    ablations: list[str] = []
    rows: list[ManifestRow]


class Separability(_Record):
    """How far apart the sites lie in a run's latent space (:func:`study.latent.site_separability`)."""

    accuracy: float
    accuracy_std: float
    chance: float
    silhouette: float | None = None  # older latent files do not have it; present, it is a number

    @field_validator("silhouette", mode="before")
    @classmethod
    def _a_number_where_present(cls, value: Any) -> Any:
        if value is None:
            raise PydanticCustomError("float_type", "Input should be a valid number")
        return value


class LatentFile(_Record):
    """``latent/<run>.json``: a point and a site label per test slice, and the sites' separability."""

    labels: list[str]
    coords: list[list[float]]
    separability: Separability


# -- reading -------------------------------------------------------------------------------------------
_EXPECTED = {
    "model_type": "an object", "dict_type": "an object", "list_type": "a list", "string_type": "a string",
    "int_type": "an integer", "float_type": "a number",
}  # fmt: skip
Model = TypeVar("Model", bound=BaseModel)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), "a number")


def _where(loc: Sequence[str | int]) -> str:
    """A key path as the messages write it: ``rows[0].runs.3``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def mismatch(error: ValidationError) -> str:
    """The first problem of ``error`` as ``key.path: what is wrong`` (no key path at the file's top)."""
    first = error.errors()[0]
    loc, kind = first["loc"], first["type"]
    if kind == "missing":
        where, text = _where(loc[:-1]), f"no key {loc[-1]!r}"
    else:
        expected = _EXPECTED.get(kind)
        where = _where(loc)
        text = f"expected {expected}, found {_kind(first['input'])}" if expected else first["msg"]
    return f"{where}: {text}" if where else text


def read_json(path: Path, model: type[Model]) -> Model:
    """The JSON file ``path`` read into ``model``; a :class:`UserError` naming the file and key otherwise."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: not found") from None
    except ValueError as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    except OSError as err:
        raise UserError(f"{path}: unreadable ({err})") from None
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise UserError(f"{path}: {mismatch(err)}") from None


def _check_run_name(path: Path, i: int, seed: str, key: str) -> None:
    try:
        int(seed)
    except ValueError:
        raise UserError(f"{path}: rows[{i}].runs: seed {seed!r} is not an integer") from None
    if not key or key.startswith(".") or "/" in key or "\\" in key:
        raise UserError(f"{path}: rows[{i}].runs.{seed}: {key!r} is not a run name (a file of runs/)")


def read_run(file: Path, manifest: Path, sites: Sequence[str]) -> RunRecord:
    """A run's raw file, checked to score every site of the manifest and to hold validation curves of
    equal length, of the run's sites only."""
    record = read_json(file, RunRecord)
    missing = [s for s in sites if s not in record.sites]
    if missing:
        raise UserError(f"{file}: sites: no {', '.join(missing)}, a site of {manifest.name}")
    curves = record.val_psnr
    if any(s not in record.sites for s in curves) or len({len(c) for c in curves.values()}) > 1:
        raise UserError(f"{file}: val_psnr: expected curves of equal length, of the run's sites only")
    return record


def load_study(folder: str | Path) -> tuple[Manifest, dict[str, RunRecord]]:
    """The manifest of a study's results folder and the raw records of its finished runs, each checked
    to hold what the report reads; raises :class:`UserError` naming the file and key otherwise."""
    folder = Path(folder)
    path = folder / "manifest.json"
    if not path.exists():
        raise UserError(f"{path}: not found; --report needs a folder that compare.py wrote")
    manifest = read_json(path, Manifest)
    if not manifest.sites:
        raise UserError(f"{path}: sites: expected at least one site")
    runs: dict[str, RunRecord] = {}
    for i, row in enumerate(manifest.rows):
        for seed, key in row.runs.items():
            _check_run_name(path, i, seed, key)
            file = folder / "runs" / f"{key}.json"
            if key not in runs and file.is_file():
                runs[key] = read_run(file, path, manifest.sites)
    return manifest, runs


def read_latent(path: Path) -> LatentFile:
    """A latent file (``latent/<run>.json``), checked to hold a point and a site label per slice."""
    latent = read_json(path, LatentFile)
    if len(latent.coords) != len(latent.labels) or any(len(p) != 2 for p in latent.coords):
        raise UserError(f"{path}: coords: expected one [x, y] point per entry of labels")
    return latent


# -- writing -------------------------------------------------------------------------------------------
def run_record(run_dir: Path, seed: int, algorithm: str, overrides: Sequence[str]) -> dict[str, Any]:
    """The raw result file of one finished run, read from its ``results.json``, ``metrics.csv``,
    ``timing.json`` and the precision it trained at (``config.yaml``; ``auto`` depends on the CPU)."""
    results = json.loads((run_dir / "results.json").read_text())
    sites = {}
    for name, site in results["sites"].items():
        if "volumes" not in site:
            raise ValueError(f"{run_dir / 'results.json'}: site {name} has no per-volume test metrics")
        sites[name] = {
            "best_round": site["best_round"],
            "volumes": {
                v: {which: {m: _round(x) for m, x in scores.items()} for which, scores in entry.items()}
                for v, entry in site["volumes"].items()
            },
        }
    val: dict[str, dict[str, float]] = {}
    comm = None
    metrics = run_dir / "metrics.csv"
    if metrics.is_file():
        rows = read_metrics(metrics)
        for r in rows:
            if r["split"] == "val" and r.get("psnr"):
                val.setdefault(r["site"], {})[r["round"]] = _round(float(r["psnr"]))
        comm = _communication(rows)
    timing_path = run_dir / "timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.is_file() else None
    config_path = run_dir / "config.yaml"
    saved = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    precision = ((saved or {}).get("trainer") or {}).get("precision")  # resolved: auto depends on the CPU
    return {
        "seed": seed,
        "algorithm": algorithm,
        "overrides": list(overrides),
        "rounds": results["rounds"],
        "sites": sites,
        "val_psnr": {s: [val[s][r] for r in sorted(val[s], key=int)] for s in sorted(val)},
        "communication": comm,
        "timing": timing,
        **({"precision": precision} if isinstance(precision, str) else {}),
    }


def _round(x: float) -> float:
    return float(f"{x:.6g}") if math.isfinite(x) else x


def _communication(rows: list[dict[str, str]]) -> dict[str, Any] | None:
    """Mean bytes a site sends and receives per round, per site and over sites; None if not federated."""
    rows = [r for r in rows if r["split"] == "train" and r.get("bytes_sent")]
    if not rows:
        return None
    rounds = len({r["round"] for r in rows})
    per_site = {
        s: {
            "sent_per_round": sum(float(r["bytes_sent"]) for r in rows if r["site"] == s) / rounds,
            "received_per_round": sum(float(r["bytes_received"]) for r in rows if r["site"] == s) / rounds,
        }
        for s in sorted({r["site"] for r in rows})
    }
    mean = {
        k: sum(v[k] for v in per_site.values()) / len(per_site)
        for k in ("sent_per_round", "received_per_round")
    }
    total = sum(float(r["bytes_sent"]) + float(r["bytes_received"]) for r in rows)
    return {"rounds": rounds, "sites": per_site, "mean": mean, "total_bytes": total}
