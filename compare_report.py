"""A comparison's tables and figures, rebuilt from its raw result files alone (no model, no training).

A comparison (``compare.py``) keeps, in its results folder::

    manifest.json        the command, config, seeds and table rows (label, families, run per seed)
    runs/<run>.json      one finished run: per-volume test metrics of every site, its best rounds,
                         validation PSNR per round, traffic and time per round (a few KB)
    latent/<run>.json    optional: the 2-D t-SNE embedding of its bottleneck features (latent.py)

and :func:`write_report` turns them into ``comparison.md``, ``comparison.csv``, ``comparison.json`` and
``figures/``. ``python compare.py --report DIR`` calls it; training calls it too, so every table a
comparison shows can be rebuilt from the committed raw files byte for byte.

Statistics (with several seeds): a site's score for one seed is the mean over its test volumes; a cell is
the mean over seeds with its two-sided 95 % Student-t interval (``utils.stats.mean_interval``); ``mean`` is
the mean over sites. Each method is compared with FedMRI with the trained model as the unit of
replication (``utils.stats.seed_comparison``): per seed, the mean difference over the test volumes both
scored; over seeds, that difference's mean with its t interval and a paired t-test, which alone decides
a verdict (better / worse / no detectable difference at the 5 % level; one seed gives none). The
``mean`` column pools every site's volumes of a seed. The interval over all (seed, volume) pairs is
kept as a descriptive column only: the volumes of one seed come from one trained model and are not
independent. With one seed a cell is mean ± standard deviation over the site's test volumes, as a single
run reports it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from utils.hardware import cpu_summary
from utils.run_log import read_metrics
from utils.stats import (
    TOO_FEW_SEEDS,
    Interval,
    SeedComparison,
    mean_interval,
    seed_comparison,
    signed_rank_floor,
    t_critical,
)
from utils.tables import METRIC_FORMAT, METRIC_TITLES, best_rows, markdown

METRICS = ("psnr", "ssim", "nmse")
REFERENCE_ALGORITHM = "fedmri"
LEVEL = 0.05
NOT_FEDERATED = ("centralized", "transfer", "transfer_loo")
ABLATION_TITLES = {"domain": "image only vs dual domain (FedMRI and FedAvg)"}


# -- raw files -----------------------------------------------------------------------------------------
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


# The raw files' structure: what the tables and figures read from them. A schema is a type (or tuple of
# types), ``[schema]`` (a list of such items), ``{key: schema}`` (an object with at least these keys),
# Each(schema) (an object with any keys), OrNull(schema) or, as an object's value, OrMissing(schema).
class _Wrapped:
    def __init__(self, schema: Any):
        self.schema = schema


class Each(_Wrapped):
    pass


class OrNull(_Wrapped):
    pass


class OrMissing(_Wrapped):
    pass


NUMBER = (int, float)
SCORES = {m: NUMBER for m in METRICS}
MANIFEST = {
    "command": str, "config": str, "rounds": int, "local_epochs": int, "sites": [str], "seeds": [int],
    "ablations": OrMissing([str]),
    "rows": [{"label": str, "families": [str], "algorithm": str, "runs": Each(str)}],
}  # fmt: skip
RUN = {
    "overrides": [str],
    "sites": Each({"best_round": int, "volumes": Each({"model": SCORES, "zero_filled": SCORES})}),
    "val_psnr": Each([NUMBER]),
    "communication": OrNull({"mean": {"sent_per_round": NUMBER, "received_per_round": NUMBER}}),
    "timing": OrNull(
        {
            "seconds_per_round": NUMBER,
            "local_steps_per_round": OrMissing(OrNull(NUMBER)),
            "cpu": OrMissing(str),
            "gpu": OrMissing(str),
        }
    ),
    "precision": OrMissing(str),
}
LATENT = {
    "labels": [str],
    "coords": [[NUMBER]],
    "separability": {"accuracy": NUMBER, "accuracy_std": NUMBER, "chance": NUMBER,
                     "silhouette": OrMissing(NUMBER)},
}  # fmt: skip


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), "a number")


def _mismatch(value: Any, schema: Any, where: str = "") -> str | None:
    """Where ``value`` departs from ``schema`` first, as ``key.path: what is wrong``; None if it matches."""

    def at(text: str) -> str:
        return f"{where}: {text}" if where else text

    if isinstance(schema, OrNull):
        return None if value is None else _mismatch(value, schema.schema, where)
    if isinstance(schema, (Each, dict)) and not isinstance(value, dict):
        return at(f"expected an object, found {_kind(value)}")
    if isinstance(schema, Each):
        items = [(f"{where}.{key}" if where else key, item, schema.schema) for key, item in value.items()]
    elif isinstance(schema, dict):
        items = []
        for key, inner in schema.items():
            if key in value:
                inner = inner.schema if isinstance(inner, OrMissing) else inner
                items.append((f"{where}.{key}" if where else key, value[key], inner))
            elif not isinstance(inner, OrMissing):
                return at(f"no key {key!r}")
    elif isinstance(schema, list):
        if not isinstance(value, list):
            return at(f"expected a list, found {_kind(value)}")
        items = [(f"{where}[{i}]", item, schema[0]) for i, item in enumerate(value)]
    else:
        if isinstance(value, schema) and not isinstance(value, bool):
            return None
        expected = {str: "a string", int: "an integer"}.get(schema, "a number")
        return at(f"expected {expected}, found {_kind(value)}")
    return next((found for key, item, inner in items if (found := _mismatch(item, inner, key))), None)


def _read_json(path: Path, schema: Any) -> Any:
    """The JSON file ``path``, checked against ``schema``; a :class:`UserError` naming the file and key
    otherwise."""
    from utils.errors import UserError

    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: not found") from None
    except ValueError as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    except OSError as err:
        raise UserError(f"{path}: unreadable ({err})") from None
    if problem := _mismatch(data, schema):
        raise UserError(f"{path}: {problem}")
    return data


def load(folder: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The manifest of a comparison's results folder and the raw records of its finished runs, each
    checked to hold what the report reads; raises :class:`UserError` naming the file and key otherwise."""
    from utils.errors import UserError

    folder = Path(folder)
    path = folder / "manifest.json"
    if not path.exists():
        raise UserError(f"{path}: not found; --report needs a folder that compare.py wrote")
    manifest = _read_json(path, MANIFEST)
    sites = manifest["sites"]
    if not sites:
        raise UserError(f"{path}: sites: expected at least one site")
    runs = {}
    for i, row in enumerate(manifest["rows"]):
        for seed, key in row["runs"].items():
            try:
                int(seed)
            except ValueError:
                raise UserError(f"{path}: rows[{i}].runs: seed {seed!r} is not an integer") from None
            if not key or key.startswith(".") or "/" in key or "\\" in key:
                raise UserError(f"{path}: rows[{i}].runs.{seed}: {key!r} is not a run name (a file of runs/)")
            file = folder / "runs" / f"{key}.json"
            if key in runs or not file.is_file():
                continue
            record = _read_json(file, RUN)
            missing = [s for s in sites if s not in record["sites"]]
            if missing:
                raise UserError(f"{file}: sites: no {', '.join(missing)}, a site of {path.name}")
            curves = record["val_psnr"]
            if any(s not in record["sites"] for s in curves) or len({len(c) for c in curves.values()}) > 1:
                raise UserError(f"{file}: val_psnr: expected curves of equal length, of the run's sites only")
            runs[key] = record
    return manifest, runs


def read_latent(path: Path) -> dict[str, Any]:
    """A latent file (``latent/<run>.json``), checked to hold a point and a site label per slice."""
    from utils.errors import UserError

    latent = _read_json(path, LATENT)
    if len(latent["coords"]) != len(latent["labels"]) or any(len(p) != 2 for p in latent["coords"]):
        raise UserError(f"{path}: coords: expected one [x, y] point per entry of labels")
    return latent


# -- statistics ----------------------------------------------------------------------------------------
def _site_means(record: dict[str, Any], which: str = "model") -> dict[str, dict[str, float]]:
    """Per site and metric: the mean over the run's test volumes."""
    return {
        s: {m: float(np.mean([v[which][m] for v in site["volumes"].values()])) for m in METRICS}
        for s, site in record["sites"].items()
    }


def _volume_std(record: dict[str, Any], site: str, metric: str) -> float:
    values = [v["model"][metric] for v in record["sites"][site]["volumes"].values()]
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


class Row:
    """One table row: a method or variant with its finished runs, one per seed."""

    def __init__(self, entry: dict[str, Any], runs: dict[str, dict[str, Any]], sites: list[str]):
        self.label: str = entry["label"]
        self.families: list[str] = entry["families"]
        self.algorithm: str = entry["algorithm"]
        self.keys: dict[int, str] = {int(s): k for s, k in entry["runs"].items() if k in runs}
        self.records = {seed: runs[key] for seed, key in sorted(self.keys.items())}
        self.sites = sites
        self.means = {seed: _site_means(r) for seed, r in self.records.items()}

    def same_runs(self, other: Row | None) -> bool:
        """Whether this row shows exactly the runs of ``other`` (e.g. an ablation's FedMRI row)."""
        return other is not None and self.keys == other.keys

    @property
    def seeds(self) -> list[int]:
        """Seeds with a finished run."""
        return list(self.records)

    def score(self, site: str, metric: str) -> tuple[float, float | None, str]:
        """(mean, half-width or std, kind) of one cell: over seeds with several, over volumes with one."""
        if site == "mean":
            per_seed = [np.mean([self.means[s][x][metric] for x in self.sites]) for s in self.seeds]
        else:
            per_seed = [self.means[s][site][metric] for s in self.seeds]
        if len(per_seed) > 1:
            interval = mean_interval(per_seed)
            return interval.mean, interval.half_width, "ci"
        if site == "mean":
            return float(per_seed[0]), None, "std"
        return float(per_seed[0]), _volume_std(self.records[self.seeds[0]], site, metric), "std"

    def pairs(self, other: Row, site: str, metric: str) -> dict[int, tuple[list[float], list[float]]]:
        """Per seed both rows have: paired values (this row, ``other``) over the test volumes of ``site``
        (every site's volumes for ``mean``)."""
        out: dict[int, tuple[list[float], list[float]]] = {}
        for seed in self.seeds:
            if seed not in other.records:
                continue
            a, b = [], []
            for s in self.sites if site == "mean" else [site]:
                mine, theirs = (
                    self.records[seed]["sites"][s]["volumes"],
                    other.records[seed]["sites"][s]["volumes"],
                )
                for volume in sorted(set(mine) & set(theirs)):
                    a.append(mine[volume]["model"][metric])
                    b.append(theirs[volume]["model"][metric])
            if a:
                out[seed] = (a, b)
        return out

    def versus(self, other: Row, site: str, metric: str) -> SeedComparison | None:
        """This row against ``other`` with the seed as the unit (``utils.stats.seed_comparison``);
        None without any paired volume."""
        pairs = self.pairs(other, site, metric)
        if not pairs:
            return None
        return seed_comparison(pairs, level=LEVEL, higher_is_better=METRIC_FORMAT[metric][1])


def rows_of(manifest: dict[str, Any], runs: dict[str, dict[str, Any]]) -> list[Row]:
    """The manifest's rows that have at least one finished run, in table order."""
    rows = [Row(entry, runs, manifest["sites"]) for entry in manifest["rows"]]
    return [r for r in rows if r.records]


def reference_row(rows: list[Row]) -> Row | None:
    """FedMRI as configured (the comparison row of ``fl.algorithm=fedmri``), if the comparison has it."""
    for row in rows:
        if row.algorithm == REFERENCE_ALGORITHM and "comparison" in row.families:
            return row
    return next((r for r in rows if r.algorithm == REFERENCE_ALGORITHM and len(r.families) == 1), None)


def last_fifth_gain(curve: Sequence[float]) -> float:
    """Validation PSNR gained in the last fifth of the rounds: its best minus the best of the rounds
    before it (the study's convergence criterion is less than 0.1 dB)."""
    tail = max(1, len(curve) // 5)
    return max(curve[-tail:]) - max(curve[: len(curve) - tail])


def convergence(row: Row) -> dict[str, Any]:
    """Over seeds and sites: validation PSNR gained over the last fifth of the rounds, and how many
    (seed, site) pairs had their best round before the last."""
    gains, early, pairs = [], 0, 0
    for record in row.records.values():
        for site, curve in record["val_psnr"].items():
            if len(curve) < 5:
                continue
            gains.append(last_fifth_gain(curve))
            pairs += 1
            early += record["sites"][site]["best_round"] < len(curve)
    return {
        "max_gain": max(gains) if gains else math.nan,
        "mean_gain": float(np.mean(gains)) if gains else math.nan,
        "early": early,
        "pairs": pairs,
    }


# -- tables --------------------------------------------------------------------------------------------
def _fmt(value: float, digits: int) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _cell(mean: float, spread: float | None, digits: int) -> str:
    if spread is None or not math.isfinite(spread):
        return _fmt(mean, digits)
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def _signed(interval: Interval, digits: int) -> str:
    half = "" if not math.isfinite(interval.half_width) else f" ± {interval.half_width:.{digits}f}"
    return f"{interval.mean:+.{digits}f}{half}"


VERDICT_MARK = {
    "better": "better",
    "worse": "worse",
    "no detectable difference": "n.d.",
    TOO_FEW_SEEDS: "no verdict (1 seed)",
}


def _p(result: SeedComparison) -> str:
    return "–" if not math.isfinite(result.p_value) else f"{result.p_value:.2g}"


def _per_seed(result: SeedComparison, digits: int) -> str:
    """The per-seed mean differences, in seed order."""
    return ", ".join(f"{d:+.{digits}f}" for d in result.per_seed.values())


def seeds_needed_note(level: float = LEVEL) -> str:
    """What a seed-level verdict needs, in a sentence for the reports."""
    crit = ", ".join(f"{t_critical(n):.2f} ({n} seeds)" for n in (2, 3, 4, 5))
    return (
        "A verdict needs at least two seeds: one seed is one trained model, and its test volumes say "
        "nothing about how another training would score. With n seeds the per-seed differences must have "
        f"|mean| / (sd / sqrt(n)) above the t quantile: {crit}. A signed-rank test over the seeds could not "
        f"reach p < {level:g} with fewer than six seeds (its smallest p is 2 / 2^n: "
        f"{signed_rank_floor(3):.3f} with 3, {signed_rank_floor(5):.4f} with 5), which is why the "
        "seed-level test is a t-test."
    )


def metric_section(rows: list[Row], sites: list[str], metric: str, zero_filled: Row | None) -> str:
    """Mean ± interval (or std) of one metric, per site and over sites; best per column in bold."""
    digits, higher = METRIC_FORMAT[metric]
    columns = [*sites, "mean"]
    scores = [[row.score(c, metric) for c in columns] for row in rows]
    cells = [[_cell(m, h, digits) for m, h, _ in line] for line in scores]
    for c in range(len(columns)):
        for r in best_rows([round(line[c][0], digits) for line in scores], higher):
            cells[r][c] = f"**{cells[r][c]}**"
    body = [[row.label, str(len(row.seeds)), *line] for row, line in zip(rows, cells)]
    if zero_filled is not None:
        record = zero_filled.records[zero_filled.seeds[0]]
        zf = _site_means(record, "zero_filled")
        body.append(
            ["zero-filled input", "", *[_fmt(zf[s][metric], digits) for s in sites],
             _fmt(float(np.mean([zf[s][metric] for s in sites])), digits)]
        )  # fmt: skip
    return markdown(["method", "seeds", *columns], body)


def paired_section(rows: list[Row], reference: Row, sites: list[str], metric: str) -> str:
    """Every row against FedMRI, seed as the unit: per site and pooled, the mean of the per-seed
    differences ± its interval, the verdict and p; then the per-seed differences of the pooled column
    and, descriptive only, the interval over all (seed, volume) pairs."""
    digits = METRIC_FORMAT[metric][0]
    body = []
    for row in rows:
        if row.same_runs(reference):
            continue
        line = [row.label]
        pooled = None
        for column in [*sites, "mean"]:
            result = row.versus(reference, column, metric)
            pooled = result if column == "mean" else pooled
            line.append(
                "–"
                if result is None
                else f"{_signed(result.difference, digits)} {VERDICT_MARK[result.verdict]} "
                f"(p={_p(result)}, {result.difference.n} seeds)"
            )
        if pooled is None:
            line += ["–", "–"]
        else:
            line += [
                _per_seed(pooled, digits),
                f"{_signed(pooled.volumes, digits)} (n={pooled.volumes.n})",
            ]
        body.append(line)
    return markdown(
        ["method − FedMRI", *sites, "mean", "mean, per seed", "volume pairs (descriptive)"], body
    )


def _mb(value: float | None) -> str:
    return "–" if value is None else f"{value / 1e6:.2f}"


def _machine(record: dict[str, Any]) -> str:
    """What a run's seconds per round were measured on: its precision and, where its timing names them,
    the GPU or the CPU (model and widest vector tier); "" where the raw file says neither."""
    timing = record.get("timing") or {}
    device = timing.get("gpu") or (cpu_summary(timing["cpu"]) if timing.get("cpu") else "")
    return "; ".join(part for part in (record.get("precision", ""), device) if part)


def compute_section(rows: list[Row], sites: list[str]) -> str:
    """Traffic, local steps and time per round, best rounds and convergence of every row."""
    body = []
    for row in rows:
        first = row.records[row.seeds[0]]
        comm, timing = first["communication"], first["timing"] or {}
        conv = convergence(row)
        seconds: dict[str, list[float]] = {}  # by precision and machine, where the raw files say
        for r in row.records.values():
            if r.get("timing"):
                seconds.setdefault(_machine(r), []).append(r["timing"]["seconds_per_round"])
        best = [r["sites"][s]["best_round"] for r in row.records.values() for s in sites]
        body.append(
            [
                row.label,
                "not federated"
                if comm is None and row.algorithm in NOT_FEDERATED
                else _mb(None if comm is None else comm["mean"]["sent_per_round"]),
                _mb(None if comm is None else comm["mean"]["received_per_round"]),
                _fmt(timing.get("local_steps_per_round"), 1),
                "; ".join(
                    _fmt(float(np.mean(times)), 1) + (f" ({machine})" if machine else "")
                    for machine, times in seconds.items()
                )
                or _fmt(math.nan, 1),
                f"{min(best)}–{max(best)}" if best else "–",
                f"{conv['early']}/{conv['pairs']}",
                _fmt(conv["max_gain"], 2),
            ]
        )
    return markdown(
        ["method", "MB sent", "MB received", "local steps", "s per round", "best rounds",
         "best before last", "max val gain, last fifth (dB)"],
        body,
    )  # fmt: skip


def ablation_section(rows: list[Row], reference: Row | None, sites: list[str]) -> str:
    """PSNR per site and mean, mean SSIM, and the mean PSNR difference to FedMRI with its verdict."""
    body = []
    for row in rows:
        line = [row.label, str(len(row.seeds))]
        line += [_cell(*row.score(c, "psnr")[:2], 2) for c in [*sites, "mean"]]
        line.append(_cell(*row.score("mean", "ssim")[:2], 4))
        if reference is not None and row.same_runs(reference):
            line.append("(FedMRI's runs)")
        else:
            result = None if reference is None else row.versus(reference, "mean", "psnr")
            line.append(
                "–"
                if result is None
                else f"{_signed(result.difference, 2)} {VERDICT_MARK[result.verdict]} (p={_p(result)})"
            )
        body.append(line)
    header = ["variant", "seeds", *[f"{s} PSNR" for s in sites], "mean PSNR", "mean SSIM",
              "PSNR − FedMRI (over seeds)"]  # fmt: skip
    return markdown(header, body)


def markdown_report(manifest: dict[str, Any], rows: list[Row]) -> str:
    """comparison.md: metric tables, paired comparisons with FedMRI, compute, then each ablation."""
    sites = manifest["sites"]
    seeds = manifest["seeds"]
    reference = reference_row(rows)
    compared = [r for r in rows if "comparison" in r.families]
    several = any(len(r.seeds) > 1 for r in rows)
    spread = (
        "mean ± 95 % confidence interval over seeds of each seed's mean over the site's test volumes"
        if several
        else "mean ± standard deviation over the site's test volumes (one seed)"
    )
    volumes = {
        s: len(rows[0].records[rows[0].seeds[0]]["sites"][s]["volumes"]) for s in sites
    } if rows else {}  # fmt: skip
    parts = [
        f"# Comparison on {manifest['config']}: {manifest['rounds']} rounds x {manifest['local_epochs']} "
        f"local epochs, seeds {', '.join(map(str, seeds))}\n",
        f"Command: `{manifest['command']}`\n",
        f"Test split, each site's best round by validation PSNR; cells are {spread}; `mean` is the mean "
        "over sites; the best value per column is in bold. Test volumes per site: "
        + ", ".join(f"{s} {n}" for s, n in volumes.items())
        + ". Rebuilt from the raw files in this folder by `python compare.py --report <folder>`.\n",
    ]
    if compared:
        for metric in METRICS:
            parts.append(f"## {METRIC_TITLES[metric]}\n")
            parts.append(metric_section(compared, sites, metric, compared[0]))
        if reference is not None and len(compared) > 1:
            for metric in METRICS:
                parts.append(f"## {METRIC_TITLES[metric]}: each method against FedMRI, paired\n")
                parts.append(
                    "Difference to FedMRI with the trained model (the seed) as the unit: each seed's mean "
                    "difference over the test volumes both methods scored (positive: the method scores "
                    "higher), then the mean of those per-seed differences ± its 95 % Student-t interval "
                    f"over seeds and a paired t-test over seeds at the {LEVEL:.0%} level (better / worse "
                    "than FedMRI, n.d.: no detectable difference). `mean` pools each seed's volumes of "
                    "every site. The last column treats every (seed, volume) pair as independent, which "
                    "they are not (one trained model scores all volumes of a seed, and the same simulated "
                    "subjects appear in every seed): descriptive only, never a verdict. "
                    + seeds_needed_note()
                    + "\n"
                )
                parts.append(paired_section(compared, reference, sites, metric))
        parts.append("## Compute, traffic and convergence\n")
        parts.append(
            "MB per site and round; local optimiser steps of a site per round; wall seconds per round "
            "(mean over seeds; by precision, and by CPU or GPU where the raw files name it, since a run at "
            "bf16-mixed and one at 32-true, or one on another machine, are not one speed); the range of best "
            "rounds over seeds and sites; how many (seed, site) pairs had their best round before the last; "
            "the largest validation PSNR gained in the last fifth of the rounds over the rounds before it.\n"
        )
        parts.append(compute_section(compared, sites))
    for family in manifest.get("ablations", []):
        members = [r for r in rows if family in r.families]
        if not members:
            continue
        title = ABLATION_TITLES.get(family, family.replace("_", " ") + " (FedMRI)")
        parts.append(f"## Ablation: {title}\n")
        parts.append(ablation_section(members, reference, sites))
    parts.extend(_not_finished(manifest, rows))
    return "\n".join(parts)


def _not_finished(manifest: dict[str, Any], rows: list[Row]) -> list[str]:
    """One line naming the runs still missing, seed by seed, each run once (an ablation's reference row
    shares its runs with the comparison's row), or nothing when every run is in."""
    done = {key for r in rows for key in r.keys.values()}
    planned: dict[str, tuple[int, str]] = {}
    for entry in manifest["rows"]:
        for seed, key in entry["runs"].items():
            planned.setdefault(key, (int(seed), entry["label"]))
    by_seed: dict[int, list[str]] = {}
    for key, (seed, label) in planned.items():
        if key not in done:
            by_seed.setdefault(seed, []).append(label)
    if not by_seed:
        return []
    count = sum(len(labels) for labels in by_seed.values())
    # Labels are quoted: some contain commas ("FedMRI, clipped L_con (ours)").
    seeds = "; ".join(
        f"seed {seed}: {', '.join(chr(34) + label + chr(34) for label in labels)}"
        for seed, labels in sorted(by_seed.items())
    )
    return [f"Not finished yet ({count} of {len(planned)} runs): {seeds}.\n"]


def csv_report(data: dict[str, Any]) -> str:
    """comparison.csv from :func:`summary`'s numbers: per row, site (and mean) and metric, the cell and
    the paired test."""
    fields = ["families", "method", "seeds", "site", "metric", "mean", "spread", "spread_kind",
              "diff_vs_fedmri", "diff_half_width", "paired_seeds", "per_seed_diffs", "p_value", "verdict",
              "volume_pairs", "volume_diff_half_width"]  # fmt: skip
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for label, entry in data["methods"].items():
        for site in [*data["sites"], "mean"]:
            for metric in METRICS:
                cell = entry[site][metric]
                kind = "ci" if "ci" in cell else "std"
                out: dict[str, Any] = {
                    "families": ";".join(entry["families"]), "method": label,
                    "seeds": " ".join(map(str, entry["seeds"])), "site": site, "metric": metric,
                    "mean": _g(cell["mean"]), "spread": _g(cell[kind]), "spread_kind": kind,
                }  # fmt: skip
                paired = cell.get("vs_fedmri")
                if paired is not None:
                    out |= {
                        "diff_vs_fedmri": _g(paired["difference"]),
                        "diff_half_width": _g(paired["half_width"]),
                        "paired_seeds": len(paired["per_seed"]),
                        "per_seed_diffs": " ".join(
                            f"{seed}:{_g(d)}" for seed, d in paired["per_seed"].items()
                        ),
                        "p_value": _g(paired["p_value"]),
                        "verdict": paired["verdict"],
                        "volume_pairs": paired["volume_pairs"],
                        "volume_diff_half_width": _g(paired["volume_half_width"]),
                    }
                writer.writerow(out)
    return buffer.getvalue()


def _g(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.6g}"


def summary(manifest: dict[str, Any], rows: list[Row]) -> dict[str, Any]:
    """comparison.json: every cell and paired comparison as numbers."""
    reference = reference_row(rows)
    out: dict[str, Any] = {
        k: manifest[k] for k in ("command", "config", "rounds", "local_epochs", "sites", "seeds")
    }
    out["methods"] = {}
    for row in rows:
        entry: dict[str, Any] = {"families": row.families, "algorithm": row.algorithm, "seeds": row.seeds}
        for site in [*manifest["sites"], "mean"]:
            for metric in METRICS:
                mean, spread, kind = row.score(site, metric)
                cell: dict[str, Any] = {"mean": mean, kind: spread}
                result = (
                    None
                    if reference is None or row.same_runs(reference)
                    else row.versus(reference, site, metric)
                )
                if result is not None:
                    cell["vs_fedmri"] = {
                        "difference": result.difference.mean,  # mean of the per-seed differences
                        "half_width": result.difference.half_width,  # t over seeds
                        "per_seed": {str(seed): d for seed, d in result.per_seed.items()},
                        "p_value": result.p_value,  # paired t over seeds
                        "verdict": result.verdict,
                        "volume_pairs": result.volumes.n,  # descriptive only
                        "volume_difference": result.volumes.mean,
                        "volume_half_width": result.volumes.half_width,
                    }
                entry.setdefault(site, {})[metric] = cell
        entry["convergence"] = convergence(row)
        out["methods"][row.label] = entry
    return json.loads(json.dumps(out, allow_nan=True))


# -- figures -------------------------------------------------------------------------------------------
def figures(
    folder: Path, manifest: dict[str, Any], rows: list[Row], latent: list[tuple[str, dict[str, Any]]]
) -> list[Path]:
    """PSNR per site (with intervals), each ablation, validation curves and (if any) the t-SNE panels
    ``latent`` (:func:`latent_panels`)."""
    from utils.figures import grouped_bars, metric_curves

    out = []
    sites = manifest["sites"]
    for family in ("comparison", *manifest.get("ablations", [])):
        members = [r for r in rows if family in r.families]
        if not members:
            continue
        series = {}
        for r in members:
            cells = [r.score(c, "psnr") for c in [*sites, "mean"]]
            series[r.label] = ([c[0] for c in cells], [c[1] if c[1] is not None else math.nan for c in cells])
        name = "psnr_per_site.png" if family == "comparison" else f"ablation_{family}.png"
        title = (
            "test PSNR per site" if family == "comparison" else f"FedMRI ablation: {family.replace('_', ' ')}"
        )
        grouped_bars(folder / "figures" / name, [*sites, "mean"], series, title=title)
        out.append(folder / "figures" / name)
    curves = {}
    for r in rows:
        if "comparison" not in r.families:
            continue
        per_seed = [
            np.mean([rec["val_psnr"][s] for s in sites if s in rec["val_psnr"]], axis=0)
            for rec in r.records.values()
            if all(s in rec["val_psnr"] for s in sites)
        ]
        lengths = {len(c) for c in per_seed}
        if per_seed and len(lengths) == 1:
            curves[r.label] = list(np.mean(per_seed, axis=0))
    if curves:
        length = len(next(iter(curves.values())))
        curves = {k: v for k, v in curves.items() if len(v) == length}
        path = folder / "figures" / "val_psnr.png"
        metric_curves(path, range(1, length + 1), curves, ylabel="validation PSNR, mean over sites (dB)")
        out.append(path)
    if latent:
        from latent import tsne_figure

        path = folder / "figures" / "tsne.png"
        tsne_figure(path, latent)
        out.append(path)
    return out


SLICES = "slices"  # <results>/slices/: each run's reconstructions of the figure slices, for --report


def figure_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The manifest rows shown in the reconstruction figures: the compared methods (all rows when the
    comparison has only ablations)."""
    return [r for r in rows if "comparison" in r["families"]] or list(rows)


def _npz(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """A compressed ``.npz`` whose bytes depend on its arrays only (fixed member times), so writing the
    same slices again leaves a committed file unchanged."""
    from utils.io import atomic_write_bytes

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in {**arrays, "meta": np.array(json.dumps(meta))}.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, member.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    atomic_write_bytes(path, buffer.getvalue())


def save_slices(
    folder: Path,
    key: str,
    seed: int,
    columns: Sequence[str],
    recon: Sequence[np.ndarray],
    zero_filled: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
) -> None:
    """One run's reconstructions of the figure slices (one per site column) as float16 in
    ``<folder>/slices/<key>.npz`` (tens of KB), and its seed's zero-filled inputs and ground truths,
    which every run of that seed shares, in ``slices/seed<seed>-inputs.npz``. The first run of a seed
    writes the inputs; a later one keeps them where they hold the same slices to float16 rounding (a
    CPU with other vector units can round the zero-filled input's last bit differently), so the
    committed figures do not depend on which machine trained the seed's last run. The figures are
    drawn from these committed files like every table from the raw files, a seed once all its methods
    are in."""
    (folder / SLICES).mkdir(parents=True, exist_ok=True)
    meta = {"columns": list(columns)}
    own = {f"recon_{c}": np.asarray(x, np.float16) for c, x in enumerate(recon)}
    _npz(folder / SLICES / f"{key}.npz", own, meta)
    inputs = {f"zero_filled_{c}": np.asarray(x, np.float16) for c, x in enumerate(zero_filled)}
    inputs.update({f"target_{c}": np.asarray(x, np.float16) for c, x in enumerate(targets)})
    path = folder / SLICES / f"seed{seed}-inputs.npz"
    if not _same_slices(path, inputs, meta):
        _npz(path, inputs, meta)


def _same_slices(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> bool:
    """Whether the slices file ``path`` holds ``arrays`` with ``meta``, each value within float16's
    rounding of it (a relative 2**-10, and 2**-14 near zero); False if it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if set(data.files) != {*arrays, "meta"} or json.loads(str(data["meta"])) != meta:
                return False
            for name, array in arrays.items():
                found, wanted = data[name].astype(np.float32), array.astype(np.float32)
                if found.shape != wanted.shape or not np.allclose(found, wanted, rtol=2**-10, atol=2**-14):
                    return False
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
        return False
    return True


def _read_npz(path: Path, names: Sequence[str], columns: list[str] | None) -> tuple[list[str], list[list]]:
    """``(columns, [[array per column] per name])`` of one slices file; a file that cannot be read, or
    whose columns differ from ``columns``, is one :class:`UserError` line."""
    from utils.errors import UserError

    try:
        with np.load(path, allow_pickle=False) as data:
            found = list(json.loads(str(data["meta"]))["columns"])
            if columns is not None and found != columns:
                raise UserError(f"{path}: its figure slices are {found}, the other runs' {columns}")
            arrays = [[data[f"{n}_{c}"].astype(np.float32) for c in range(len(found))] for n in names]
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as err:
        reason = f"{type(err).__name__}: {err}"
        raise UserError(f"{path}: not a readable slices file ({reason})") from None
    return found, arrays


def load_reconstructions(
    folder: Path, manifest: dict[str, Any]
) -> tuple[int, list[str], list[np.ndarray], list] | None:
    """``(seed, columns, targets, rows)`` of the reconstruction figures: the first of the manifest's seeds
    whose every figure row has its slices file in ``<folder>/slices/`` (rows: zero-filled, then each
    method in table order); None when no seed has them all."""
    chosen = figure_rows(manifest["rows"])
    seeds = sorted({int(s) for r in chosen for s in r["runs"]})
    for seed in seeds:
        keys = [r["runs"].get(str(seed)) for r in chosen]
        paths = [folder / SLICES / f"{key}.npz" for key in keys if key]
        inputs = folder / SLICES / f"seed{seed}-inputs.npz"
        if len(paths) < len(keys) or not all(p.is_file() for p in (inputs, *paths)):
            continue
        columns, (zero_filled, targets) = _read_npz(inputs, ("zero_filled", "target"), None)
        rows = [("zero-filled", zero_filled)]
        rows += [(r["label"], _read_npz(p, ("recon",), columns)[1][0]) for r, p in zip(chosen, paths)]
        return seed, columns, targets, rows
    return None


def reconstruction_figures(folder: Path, slices: tuple[int, list[str], list[np.ndarray], list]) -> list[Path]:
    """``figures/reconstructions.png`` and ``figures/errors.png`` from :func:`load_reconstructions`."""
    from utils.figures import reconstruction_grid

    seed, columns, targets, rows = slices
    images, errors = folder / "figures" / "reconstructions.png", folder / "figures" / "errors.png"
    reconstruction_grid(images, columns, targets, rows, title=f"seed {seed}")
    reconstruction_grid(errors, columns, targets, rows, errors=True, title=f"|error| x5, seed {seed}")
    return [images, errors]


TSNE_PANELS = (
    ("SingleSet", "singleset", ()),
    ("FedAvg", "fedavg", ()),
    ("FedMRI without L_con", "fedmri", ("fl.fedmri.beta=0",)),
    ("FedMRI", "fedmri", ()),
)


def is_variant(
    row_algorithm: str, row_overrides: Sequence[str], algorithm: str, overrides: Sequence[str]
) -> bool:
    """Whether a row (its algorithm and variant overrides) is ``algorithm`` with exactly ``overrides``
    beyond ``fl.algorithm``."""
    rest = sorted(o for o in row_overrides if not o.startswith("fl.algorithm="))
    return row_algorithm == algorithm and rest == sorted(overrides)


def find_row(rows: list[Row], algorithm: str, overrides: Sequence[str] = ()) -> Row | None:
    """The row of ``algorithm`` with exactly ``overrides`` beyond the algorithm (e.g. a t-SNE panel's)."""
    return next(
        (
            r
            for r in rows
            if is_variant(r.algorithm, r.records[r.seeds[0]]["overrides"], algorithm, overrides)
        ),
        None,
    )


def latent_panels(
    folder: Path, manifest: dict[str, Any], rows: list[Row]
) -> list[tuple[str, dict[str, Any]]]:
    """The t-SNE panels whose latent files exist (the first such seed of each of the paper's four methods)."""
    panels = []
    for title, algorithm, overrides in TSNE_PANELS:
        row = find_row(rows, algorithm, overrides)
        if row is None:
            continue
        path = next(
            (p for s in row.seeds if (p := folder / "latent" / f"{row.keys[s]}.json").is_file()), None
        )
        if path is not None:
            panels.append((title, read_latent(path)))
    return panels


def latent_scores(folder: Path, rows: list[Row]) -> dict[str, dict[int, dict[str, Any]]]:
    """Per t-SNE method present: the site separability of each seed that has a latent file."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for title, algorithm, overrides in TSNE_PANELS:
        row = find_row(rows, algorithm, overrides)
        if row is None:
            continue
        for seed, key in row.keys.items():
            path = folder / "latent" / f"{key}.json"
            if path.is_file():
                separability = read_latent(path)["separability"]
                if "silhouette" in separability:
                    out.setdefault(title, {})[seed] = separability
    return out


# -- the paper's claims ------------------------------------------------------------------------------
NEARLY_FAILS = 0.5  # "nearly fails" at a site: FedAvg keeps less than this share of FedMRI's gain


def _verdict_word(result: SeedComparison | None, good: str = "worse") -> str:
    """holds / does not hold / not detectable for a claim that ``result``'s method is ``good``, from the
    seed-level test only."""
    if result is None:
        return "not measured"
    if result.verdict == TOO_FEW_SEEDS:
        return "no verdict (one seed)"
    if result.verdict == "no detectable difference":
        return "not detectable"
    return "holds" if result.verdict == good else "does not hold"


def _diff(result: SeedComparison | None, digits: int) -> str:
    if result is None:
        return "–"
    return (
        f"{_signed(result.difference, digits)} (per seed {_per_seed(result, digits)}; "
        f"p={_p(result)}, {result.difference.n} seeds)"
    )


def claims_markdown(folder: Path, manifest: dict[str, Any], rows: list[Row]) -> str:
    """claims.md: each claim of the FedMRI paper, what the comparison measured and a verdict.

    Verdicts come from the paired comparisons with FedMRI at the 5 % level: "holds" when the difference
    the paper reports is detected, "does not hold" when the opposite one is, "not detectable" otherwise.
    """
    sites = manifest["sites"]
    fedmri = reference_row(rows)
    if fedmri is None:
        return ""
    lines = []
    compared = [r for r in rows if "comparison" in r.families and not r.same_runs(fedmri)]
    if compared:
        counts = {"better": 0, "worse": 0, "no detectable difference": 0, TOO_FEW_SEEDS: 0}
        ahead: dict[str, list[str]] = {}
        for row in compared:
            for site in sites:
                for metric in METRICS:
                    result = row.versus(fedmri, site, metric)
                    if result is None:
                        continue
                    counts[result.verdict] += 1
                    if result.verdict == "better":
                        ahead.setdefault(row.label, []).append(f"{site} {metric.upper()}")
        total = sum(counts.values())
        if counts["better"]:
            verdict = "does not hold"
        elif counts["worse"] == total:
            verdict = "holds"
        elif counts[TOO_FEW_SEEDS] == total:
            verdict = "no verdict (one seed)"
        else:
            verdict = "not detectable"
        detail = "; ".join(f"{label}: {', '.join(where)}" for label, where in ahead.items())
        unseeded = f", {counts[TOO_FEW_SEEDS]} with one seed (no verdict)" if counts[TOO_FEW_SEEDS] else ""
        lines.append(
            [
                "FedMRI is best on every site in PSNR, SSIM and NMSE",
                f"of {total} (method, site, metric) pairs against FedMRI, {counts['worse']} worse, "
                f"{counts['better']} better, {counts['no detectable difference']} not detectable"
                + unseeded
                + (f". Better than FedMRI: {detail}" if detail else ""),
                verdict,
            ]
        )
    beta0 = find_row(rows, "fedmri", ("fl.fedmri.beta=0",))
    fedavg_row = find_row(rows, "fedavg")
    for claim, row, against, what in (
        (
            "Sharing the whole model is worse than sharing the encoder (with the contrastive term on both)",
            find_row(rows, "fedmri", ("fl.fedmri.share=whole",)),
            fedmri,
            "whole model − FedMRI",
        ),
        (
            "Sharing the whole model is worse than sharing the encoder (without the term on both: FedAvg "
            "against FedMRI with beta = 0)",
            fedavg_row,
            beta0,
            "FedAvg − FedMRI beta = 0",
        ),
        (
            "Sharing all but the 1x1 output conv (the authors' except_last) is worse than sharing the "
            "encoder",
            find_row(rows, "fedmri", ("fl.fedmri.share=all_but_head", "fl.head=conv")),
            fedmri,
            "all but the 1x1 conv − FedMRI",
        ),
        (
            "(ours) Sharing all but the last decoder stage is worse than sharing the encoder",
            find_row(rows, "fedmri", ("fl.fedmri.share=all_but_head", "fl.head=stage")),
            fedmri,
            "all but the last stage − FedMRI",
        ),
        ("Removing the contrastive term is worse", beta0, fedmri, "beta = 0 − FedMRI"),
    ):
        if row is None or against is None:
            continue
        psnr, ssim = row.versus(against, "mean", "psnr"), row.versus(against, "mean", "ssim")
        lines.append(
            [
                claim,
                f"{what}, all sites: PSNR {_diff(psnr, 2)} dB, SSIM {_diff(ssim, 4)}",
                f"PSNR {_verdict_word(psnr)}, SSIM {_verdict_word(ssim)}",
            ]
        )
    fedavg = fedavg_row
    if fedavg is not None and "comparison" in fedavg.families:
        record = fedmri.records[fedmri.seeds[0]]
        zero = _site_means(record, "zero_filled")
        gains = {
            s: (fedavg.score(s, "psnr")[0] - zero[s]["psnr"], fedmri.score(s, "psnr")[0] - zero[s]["psnr"])
            for s in sites
        }
        deficits = {s: fedavg.versus(fedmri, s, "psnr") for s in sites}
        worst = min(sites, key=lambda s: deficits[s].difference.mean if deficits[s] else math.inf)
        failing = [s for s, (a, b) in gains.items() if b > 0 and a < NEARLY_FAILS * b]
        lines.append(
            [
                "FedAvg nearly fails on the most shifted sites",
                "FedAvg − FedMRI PSNR per site: "
                + ", ".join(f"{s} {_signed(deficits[s].difference, 2)}" for s in sites if deficits[s])
                + f" dB (largest deficit: {worst}); gain over zero-filled, FedAvg / FedMRI: "
                + ", ".join(f"{s} {a:.2f} / {b:.2f}" for s, (a, b) in gains.items())
                + f' dB. "Nearly fails" counted as keeping less than {NEARLY_FAILS:.0%} of FedMRI\'s gain',
                "holds at " + ", ".join(failing) if failing else "does not hold",
            ]
        )
    scores = latent_scores(folder, rows)
    common = sorted(set(scores.get("SingleSet", {})) & set(scores.get("FedMRI", {})))
    if common:
        sil = {k: mean_interval([v[s]["silhouette"] for s in sorted(v)]) for k, v in scores.items()}
        acc = {k: mean_interval([v[s]["accuracy"] for s in sorted(v)]) for k, v in scores.items()}
        gap = mean_interval(
            [scores["FedMRI"][s]["silhouette"] - scores["SingleSet"][s]["silhouette"] for s in common]
        )
        verdict = "not detectable"
        if math.isfinite(gap.half_width) and gap.high < 0:
            verdict = "holds"
        elif math.isfinite(gap.half_width) and gap.low > 0:
            verdict = "does not hold"
        lines.append(
            [
                "FedMRI's shared encoder maps the sites into a common space (t-SNE)",
                "bottleneck features of the test slices, silhouette of the sites (higher: more apart) / "
                "cross-validated accuracy of a linear site classifier (chance "
                f"{1 / len(sites):.2f}), mean ± 95 % interval over seeds: "
                + ", ".join(f"{k} {sil[k].format(3)} / {acc[k].format(3)}" for k in scores)
                + f"; FedMRI − SingleSet silhouette {_signed(gap, 3)}"
                + f" over seeds {', '.join(map(str, common))}",
                verdict,
            ]
        )
    clipped = find_row(rows, "fedmri", ("fl.fedmri.variant=clipped",))
    if clipped is not None:
        psnr, ssim = clipped.versus(fedmri, "mean", "psnr"), clipped.versus(fedmri, "mean", "ssim")
        lines.append(
            [
                "(ours, not the paper's) the clipped contrastive term beats the paper's",
                f"clipped − FedMRI, all sites: PSNR {_diff(psnr, 2)} dB, SSIM {_diff(ssim, 4)}",
                f"PSNR {_verdict_word(psnr, 'better')}, SSIM {_verdict_word(ssim, 'better')}",
            ]
        )
    if not lines:
        return ""
    seeds = sorted({seed for r in rows for seed in r.seeds})
    head = (
        "# The paper's claims on this comparison\n\n"
        f"Seeds {', '.join(map(str, seeds))} where finished. The unit of replication is the trained model: "
        "each seed's mean difference over the test volumes (every site's, pooled), then the mean of those "
        "per-seed differences ± its 95 % Student-t interval and a paired t-test over seeds at the "
        f"{LEVEL:.0%} level, which alone decides a verdict. " + seeds_needed_note() + " Rebuilt from the "
        "raw files by `python compare.py --report <folder>`.\n"
    )
    return head + "\n" + markdown(["claim (FedMRI paper)", "measured", "verdict"], lines, "lll")


# -- entry ---------------------------------------------------------------------------------------------
def write_report(folder: str | Path, log: Callable[[str], None] = print) -> str:
    """Rebuild ``comparison.md``/``.csv``/``.json`` and the figures of ``folder`` from its raw files;
    returns the markdown."""
    from utils.errors import UserError
    from utils.io import atomic_write_text

    folder = Path(folder)
    manifest, runs = load(folder)
    rows = rows_of(manifest, runs)
    if not rows:
        raise UserError(f"{folder}: no finished run yet (runs/*.json); nothing to report")
    # Every file is read and every table made before anything is written: a bad raw file leaves the
    # folder's earlier outputs as they were.
    text = markdown_report(manifest, rows)
    data = summary(manifest, rows)
    table = csv_report(data)
    claims = claims_markdown(folder, manifest, rows)
    latent = latent_panels(folder, manifest, rows)
    slices = load_reconstructions(folder, manifest)
    atomic_write_text(folder / "comparison.md", text)
    atomic_write_text(folder / "comparison.csv", table)
    atomic_write_text(folder / "comparison.json", json.dumps(data, indent=1, sort_keys=True) + "\n")
    if claims:
        atomic_write_text(folder / "claims.md", claims)
    figures(folder, manifest, rows, latent)
    if slices is not None:
        reconstruction_figures(folder, slices)
    log(claims + "\n" + text if claims else text)
    drawn = f" (reconstructions of seed {slices[0]})" if slices is not None else ""
    log(f"wrote {folder}/comparison.md, .csv, .json and figures/{drawn} from {len(runs)} raw run file(s)")
    return text
