"""The raw files a study keeps, and from which every table and figure is made (no model, no training).

A study's results folder holds::

    manifest.json        the command, config, seeds and table rows (label, families, run per seed)
    runs/<run>.json      one finished run: per-volume test metrics of every site, its best rounds,
                         validation PSNR per round, traffic and time per round (a few KB)
    latent/<run>.json    optional: the 2-D t-SNE embedding of its bottleneck features (study.latent)

Each file is read into a pydantic model of what the report reads from it (:class:`Manifest`,
:class:`RunRecord`, :class:`LatentFile`): a file may hold more, and must hold at least that, with JSON's
types as they are (strict: no string read as a number, no number as a string), and values that can be:
finite scores in their ranges (PSNR within +-1000 dB, SSIM in [-1, 1], NMSE from 0 to 1e12), at least
one test volume per site, best rounds within the study's rounds, counts and times that are not
negative, run names that can name a file. A file that departs from it, or that is no regular file of at
most :data:`MAX_JSON_BYTES`, is one :class:`UserError` line naming the file and the first key that is
wrong.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from utils.bounds import shown
from utils.errors import UserError
from utils.io import MiB, read_text
from utils.run_log import DIAGNOSTIC_COLUMNS, read_metrics

METRICS = ("psnr", "ssim", "nmse")
MAX_JSON_BYTES = 64 * MiB  # a raw file is a few KB, a manifest or latent file a few MB at most
MAX_NAME = 200  # characters of a run name (a file of runs/ is <name>.json)
MAX_COUNT = 2**31 - 1  # rounds, epochs and seeds, as the config bounds them


def _number(low: float, high: float, default: Any = ...) -> Any:
    """A field of a finite number in ``[low, high]``."""
    return Field(default, allow_inf_nan=False, ge=low, le=high)


class _Record(BaseModel):
    """A part of a raw file: JSON's types as they are; keys the report does not read are let through."""

    model_config = ConfigDict(strict=True)


class Scores(_Record):
    """One volume's scores."""

    psnr: float = _number(-1000.0, 1000.0)  # dB
    ssim: float = _number(-1.0, 1.0)
    nmse: float = _number(0.0, 1e12)

    def of(self, metric: str) -> float:
        """The score of ``metric`` (one of :data:`METRICS`)."""
        return getattr(self, metric)


class VolumeScores(_Record):
    """A test volume scored on the model's reconstruction and on the zero-filled input."""

    model: Scores
    zero_filled: Scores


class SiteRecord(_Record):
    """A site of a run: the round of its best validation PSNR and its test volumes' scores."""

    best_round: int = Field(ge=0, le=MAX_COUNT)
    volumes: dict[str, VolumeScores] = Field(min_length=1)


class Traffic(_Record):
    """Mean bytes a site sends and receives per round."""

    sent_per_round: float = _number(0.0, 1e18)
    received_per_round: float = _number(0.0, 1e18)


class Communication(_Record):
    """A federated run's traffic, as the report reads it: the mean over sites."""

    mean: Traffic


class Timing(_Record):
    """A run's time per round and, where the raw file says, the local steps and the machine."""

    seconds_per_round: float = _number(0.0, 1e18)
    local_steps_per_round: float | None = _number(0.0, 1e18, None)
    cpu: str = ""
    gpu: str = ""


class RunRecord(_Record):
    """``runs/<run>.json``: one finished run (:func:`run_record` writes it)."""

    overrides: list[str]
    sites: dict[str, SiteRecord]
    val_psnr: dict[str, list[float]]

    @field_validator("val_psnr")
    @classmethod
    def _finite_curves(cls, curves: dict[str, list[float]]) -> dict[str, list[float]]:
        for site, curve in curves.items():
            for i, value in enumerate(curve):
                if not (math.isfinite(value) and abs(value) <= 1000):
                    raise ValueError(f"{site}[{i}]: expected a finite PSNR within 1000 dB, found {value!r}")
        return curves

    communication: Communication | None
    timing: Timing | None
    precision: str = ""  # the precision it trained at; older raw files do not say
    # FedMRI's term per site, column and round (run_record's _term); older raw files do not keep it
    term: dict[str, dict[str, list[float | None]]] | None = None


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
    rounds: int = Field(ge=1, le=MAX_COUNT)
    local_epochs: int = Field(ge=1, le=MAX_COUNT)
    sites: list[str] = Field(min_length=1)
    seeds: list[int]

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        if any(not 0 <= s <= MAX_COUNT for s in seeds):
            raise ValueError(f"expected seeds from 0 to {MAX_COUNT}")
        return seeds

    ablations: list[str] = []
    rows: list[ManifestRow]


class Separability(_Record):
    """How far apart the sites lie in a run's latent space (:func:`study.latent.site_separability`)."""

    accuracy: float = _number(0.0, 1.0)
    accuracy_std: float = _number(0.0, 1.0)
    chance: float = _number(0.0, 1.0)
    silhouette: float | None = _number(-1.0, 1.0, None)  # older latent files lack it; present, a number

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
    if not path.exists() and not path.is_symlink():
        raise UserError(f"{path}: not found")
    text = read_text(path, "raw file", MAX_JSON_BYTES)
    try:
        data = json.loads(text)
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to be a raw file") from None
    except ValueError as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise UserError(f"{path}: {mismatch(err)}") from None


def _check_run_name(path: Path, i: int, seed: str, key: str) -> None:
    try:
        int(seed)
    except ValueError:
        raise UserError(f"{path}: rows[{i}].runs: seed {seed!r} is not an integer") from None
    if (
        not key or key.startswith(".") or "/" in key or "\\" in key or len(key) > MAX_NAME
        or not key.isprintable()
    ):  # fmt: skip
        raise UserError(
            f"{path}: rows[{i}].runs.{seed}: {shown(key)} is not a run name (a file of runs/, "
            f"at most {MAX_NAME} printable characters)"
        )


def read_run(file: Path, manifest: Path, sites: Sequence[str], rounds: int | None = None) -> RunRecord:
    """A run's raw file, checked to score every site of the manifest, with best rounds within
    ``rounds`` (the study's), and to hold validation curves of equal length, of the run's sites only."""
    record = read_json(file, RunRecord)
    missing = [s for s in sites if s not in record.sites]
    if missing:
        raise UserError(f"{file}: sites: no {', '.join(missing)}, a site of {manifest.name}")
    late = [s for s, site in record.sites.items() if rounds is not None and site.best_round > rounds]
    if late:
        raise UserError(
            f"{file}: sites.{late[0]}.best_round: {record.sites[late[0]].best_round} is beyond the "
            f"{rounds} rounds of {manifest.name}"
        )
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
            if key not in runs and os.path.lexists(file):  # a FIFO or folder there is refused, not skipped
                runs[key] = read_run(file, path, manifest.sites, manifest.rounds)
    return manifest, runs


def read_latent(path: Path) -> LatentFile:
    """A latent file (``latent/<run>.json``), checked to hold a point and a site label per slice."""
    latent = read_json(path, LatentFile)
    if len(latent.coords) != len(latent.labels) or any(len(p) != 2 for p in latent.coords):
        raise UserError(f"{path}: coords: expected one [x, y] point per entry of labels")
    if not all(math.isfinite(x) and abs(x) <= 1e12 for point in latent.coords for x in point):
        raise UserError(f"{path}: coords: expected finite points")
    return latent


# -- writing -------------------------------------------------------------------------------------------
def run_record(run_dir: Path, seed: int, algorithm: str, overrides: Sequence[str]) -> dict[str, Any]:
    """The raw result file of one finished run, read from its ``results.json``, ``metrics.csv``,
    ``timing.json`` and the precision it trained at (``config.yaml``; ``auto`` depends on the CPU)."""
    results = json.loads(read_text(run_dir / "results.json", "results", MAX_JSON_BYTES))
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
    comm = term = None
    metrics = run_dir / "metrics.csv"
    if metrics.is_file():
        rows = read_metrics(metrics)
        for r in rows:
            if r["split"] == "val" and r.get("psnr"):
                val.setdefault(r["site"], {})[r["round"]] = _round(float(r["psnr"]))
        comm, term = _communication(rows), _term(rows)
    timing_path = run_dir / "timing.json"
    timing = json.loads(read_text(timing_path, "timing", MAX_JSON_BYTES)) if timing_path.is_file() else None
    config_path = run_dir / "config.yaml"
    saved = yaml.safe_load(read_text(config_path, "config", MAX_JSON_BYTES)) if config_path.is_file() else {}
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
        **({"term": term} if term else {}),
    }


def _round(x: float) -> float:
    return float(f"{x:.6g}") if math.isfinite(x) else x


def _term(rows: list[dict[str, str]]) -> dict[str, dict[str, list[float | None]]] | None:
    """FedMRI's contrastive term per site and round, as ``metrics.csv``'s train rows log it at the end of
    each local fit (``utils.run_log.DIAGNOSTIC_COLUMNS``; None in a round without it); None for a run
    that logged no term. Kept in the raw file so the term's behaviour outlives the run folder."""
    train = [r for r in rows if r["split"] == "train"]
    if not any(r.get("con_l_con") for r in train):
        return None
    term: dict[str, dict[str, list[float | None]]] = {}
    for r in sorted(train, key=lambda r: int(r["round"])):
        site = term.setdefault(r["site"], {c: [] for c in DIAGNOSTIC_COLUMNS})
        for column in DIAGNOSTIC_COLUMNS:
            value = float(r.get(column) or "nan")
            site[column].append(_round(value) if math.isfinite(value) else None)
    return term


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
