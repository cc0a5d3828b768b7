"""A study's tables: ``comparison.md`` (metrics, paired comparisons with FedMRI, compute, ablations),
and the same numbers as ``comparison.csv`` and ``comparison.json``.

Each method is compared with FedMRI with the trained model as the unit of replication
(:meth:`study.rows.Row.versus`). The interval over all (seed, volume) pairs is kept as a descriptive
column only: the volumes of one seed come from one trained model and are not independent.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import numpy as np

from study.formats import (
    VERDICT_MARK,
    cell,
    fixed,
    general,
    megabytes,
    p_value,
    per_seed,
    seeds_count,
    seeds_needed_note,
    signed,
)
from study.records import METRICS, Manifest, RunRecord
from study.rows import LEVEL, Row, convergence, reference_row, site_means
from study.variants import ABLATION_TITLES
from utils.hardware import cpu_summary
from utils.tables import METRIC_FORMAT, METRIC_TITLES, best_rows, markdown

NOT_FEDERATED = ("centralized", "transfer", "transfer_loo")


# -- comparison.md ---------------------------------------------------------------------------------------
def metric_section(rows: list[Row], sites: list[str], metric: str, zero_filled: Row | None) -> str:
    """Mean ± interval (or std) of one metric, per site and over sites; best per column in bold."""
    digits, higher = METRIC_FORMAT[metric]
    columns = [*sites, "mean"]
    scores = [[row.score(c, metric) for c in columns] for row in rows]
    cells = [[cell(m, h, digits) for m, h, _ in line] for line in scores]
    for c in range(len(columns)):
        for r in best_rows([round(line[c][0], digits) for line in scores], higher):
            cells[r][c] = f"**{cells[r][c]}**"
    body = [[row.label, str(len(row.seeds)), *line] for row, line in zip(rows, cells)]
    if zero_filled is not None:
        zf = site_means(zero_filled.first, "zero_filled")
        body.append(
            ["zero-filled input", "", *[fixed(zf[s][metric], digits) for s in sites],
             fixed(float(np.mean([zf[s][metric] for s in sites])), digits)]
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
                else f"{signed(result.difference, digits)} {VERDICT_MARK[result.verdict]} "
                f"(p={p_value(result)}, {seeds_count(result.difference.n)})"
            )
        if pooled is None:
            line += ["–", "–"]
        else:
            line += [per_seed(pooled, digits), f"{signed(pooled.volumes, digits)} (n={pooled.volumes.n})"]
        body.append(line)
    return markdown(["method − FedMRI", *sites, "mean", "mean, per seed", "volume pairs (descriptive)"], body)


def machine(record: RunRecord) -> str:
    """What a run's seconds per round were measured on: its precision and, where its timing names them,
    the GPU or the CPU (model and widest vector tier); "" where the raw file says neither."""
    timing = record.timing
    device = "" if timing is None else timing.gpu or (cpu_summary(timing.cpu) if timing.cpu else "")
    return "; ".join(part for part in (record.precision, device) if part)


def _seconds(row: Row) -> str:
    """Mean wall seconds per round over seeds, by precision and machine where the raw files say."""
    seconds: dict[str, list[float]] = {}
    for r in row.records.values():
        if r.timing is not None:
            seconds.setdefault(machine(r), []).append(r.timing.seconds_per_round)
    return "; ".join(
        fixed(float(np.mean(times)), 1) + (f" ({where})" if where else "") for where, times in seconds.items()
    ) or fixed(math.nan, 1)


def compute_section(rows: list[Row], sites: list[str]) -> str:
    """Traffic, local steps and time per round, best rounds and convergence of every row."""
    body = []
    for row in rows:
        comm, timing = row.first.communication, row.first.timing
        conv = convergence(row)
        best = [r.sites[s].best_round for r in row.records.values() for s in sites]
        body.append(
            [
                row.label,
                "not federated"
                if comm is None and row.algorithm in NOT_FEDERATED
                else megabytes(None if comm is None else comm.mean.sent_per_round),
                megabytes(None if comm is None else comm.mean.received_per_round),
                fixed(None if timing is None else timing.local_steps_per_round, 1),
                _seconds(row),
                f"{min(best)}–{max(best)}" if best else "–",
                f"{conv['early']}/{conv['pairs']}",
                fixed(conv["max_gain"], 2),
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
        line += [cell(*row.score(c, "psnr")[:2], 2) for c in [*sites, "mean"]]
        line.append(cell(*row.score("mean", "ssim")[:2], 4))
        if reference is not None and row.same_runs(reference):
            line.append("(FedMRI's runs)")
        else:
            result = None if reference is None else row.versus(reference, "mean", "psnr")
            line.append(
                "–"
                if result is None
                else f"{signed(result.difference, 2)} {VERDICT_MARK[result.verdict]} (p={p_value(result)})"
            )
        body.append(line)
    header = ["variant", "seeds", *[f"{s} PSNR" for s in sites], "mean PSNR", "mean SSIM",
              "PSNR − FedMRI (over seeds)"]  # fmt: skip
    return markdown(header, body)


PAIRED_NOTE = (
    "Difference to FedMRI with the trained model (the seed) as the unit: each seed's mean "
    "difference over the test volumes both methods scored (positive: the method scores "
    "higher), then the mean of those per-seed differences ± its 95 % Student-t interval "
    f"over seeds and a paired t-test over seeds at the {LEVEL:.0%} level (better / worse "
    "than FedMRI, n.d.: no detectable difference). `mean` pools each seed's volumes of "
    "every site. The last column treats every (seed, volume) pair as independent, which "
    "they are not (one trained model scores all volumes of a seed, and the same simulated "
    "subjects appear in every seed): descriptive only, never a verdict. "
)
COMPUTE_NOTE = (
    "MB per site and round; local optimiser steps of a site per round; wall seconds per round "
    "(mean over seeds; by precision, and by CPU or GPU where the raw files name it, since a run at "
    "bf16-mixed and one at 32-true, or one on another machine, are not one speed); the range of best "
    "rounds over seeds and sites; how many (seed, site) pairs had their best round before the last; "
    "the largest validation PSNR gained in the last fifth of the rounds over the rounds before it.\n"
)


def _heading(manifest: Manifest, rows: list[Row]) -> list[str]:
    """The title, the command and what a cell is."""
    several = any(len(r.seeds) > 1 for r in rows)
    spread = (
        "mean ± 95 % confidence interval over seeds of each seed's mean over the site's test volumes"
        if several
        else "mean ± standard deviation over the site's test volumes (one seed)"
    )
    volumes = {s: len(rows[0].first.sites[s].volumes) for s in manifest.sites} if rows else {}
    return [
        f"# Comparison on {manifest.config}: {manifest.rounds} rounds x {manifest.local_epochs} "
        f"local epochs, seeds {', '.join(map(str, manifest.seeds))}\n",
        f"Command: `{manifest.command}`\n",
        f"Test split, each site's best round by validation PSNR; cells are {spread}; `mean` is the mean "
        "over sites; the best value per column is in bold. Test volumes per site: "
        + ", ".join(f"{s} {n}" for s, n in volumes.items())
        + ". Rebuilt from the raw files in this folder by `python compare.py --report <folder>`.\n",
    ]


def _comparison(compared: list[Row], reference: Row | None, sites: list[str]) -> list[str]:
    """The compared methods' metric tables, their paired comparisons with FedMRI and compute."""
    parts = []
    for metric in METRICS:
        parts.append(f"## {METRIC_TITLES[metric]}\n")
        parts.append(metric_section(compared, sites, metric, compared[0]))
    if reference is not None and len(compared) > 1:
        for metric in METRICS:
            parts.append(f"## {METRIC_TITLES[metric]}: each method against FedMRI, paired\n")
            parts.append(PAIRED_NOTE + seeds_needed_note() + "\n")
            parts.append(paired_section(compared, reference, sites, metric))
    parts.append("## Compute, traffic and convergence\n")
    parts.append(COMPUTE_NOTE)
    parts.append(compute_section(compared, sites))
    return parts


def markdown_report(manifest: Manifest, rows: list[Row]) -> str:
    """comparison.md: metric tables, paired comparisons with FedMRI, compute, then each ablation."""
    sites = manifest.sites
    reference = reference_row(rows)
    compared = [r for r in rows if "comparison" in r.families]
    parts = _heading(manifest, rows)
    if compared:
        parts += _comparison(compared, reference, sites)
    for family in manifest.ablations:
        members = [r for r in rows if family in r.families]
        if not members:
            continue
        title = ABLATION_TITLES.get(family, family.replace("_", " ") + " (FedMRI)")
        parts.append(f"## Ablation: {title}\n")
        parts.append(ablation_section(members, reference, sites))
    parts.extend(not_finished(manifest, rows))
    return "\n".join(parts)


def not_finished(manifest: Manifest, rows: list[Row]) -> list[str]:
    """One line naming the runs still missing, seed by seed, each run once (an ablation's reference row
    shares its runs with the comparison's row), or nothing when every run is in."""
    done = {key for r in rows for key in r.keys.values()}
    planned: dict[str, tuple[int, str]] = {}
    for entry in manifest.rows:
        for seed, key in entry.runs.items():
            planned.setdefault(key, (int(seed), entry.label))
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


# -- comparison.json and comparison.csv ------------------------------------------------------------------
def _paired_numbers(row: Row, reference: Row | None, site: str, metric: str) -> dict[str, Any] | None:
    """A cell's comparison with FedMRI as numbers; None for FedMRI's own runs or without a pair."""
    result = None if reference is None or row.same_runs(reference) else row.versus(reference, site, metric)
    if result is None:
        return None
    return {
        "difference": result.difference.mean,  # mean of the per-seed differences
        "half_width": result.difference.half_width,  # t over seeds
        "per_seed": {str(seed): d for seed, d in result.per_seed.items()},
        "p_value": result.p_value,  # paired t over seeds
        "verdict": result.verdict,
        "volume_pairs": result.volumes.n,  # descriptive only
        "volume_difference": result.volumes.mean,
        "volume_half_width": result.volumes.half_width,
    }


def summary(manifest: Manifest, rows: list[Row]) -> dict[str, Any]:
    """comparison.json: every cell and paired comparison as numbers."""
    reference = reference_row(rows)
    out: dict[str, Any] = {
        k: getattr(manifest, k) for k in ("command", "config", "rounds", "local_epochs", "sites", "seeds")
    }
    out["methods"] = {}
    for row in rows:
        entry: dict[str, Any] = {"families": row.families, "algorithm": row.algorithm, "seeds": row.seeds}
        for site in [*manifest.sites, "mean"]:
            for metric in METRICS:
                mean, spread, kind = row.score(site, metric)
                numbers: dict[str, Any] = {"mean": mean, kind: spread}
                if (paired := _paired_numbers(row, reference, site, metric)) is not None:
                    numbers["vs_fedmri"] = paired
                entry.setdefault(site, {})[metric] = numbers
        entry["convergence"] = convergence(row)
        out["methods"][row.label] = entry
    return json.loads(json.dumps(out, allow_nan=True))


CSV_FIELDS = [
    "families", "method", "seeds", "site", "metric", "mean", "spread", "spread_kind", "diff_vs_fedmri",
    "diff_half_width", "paired_seeds", "per_seed_diffs", "p_value", "verdict", "volume_pairs",
    "volume_diff_half_width",
]  # fmt: skip


def _csv_line(label: str, entry: dict[str, Any], site: str, metric: str) -> dict[str, Any]:
    """One line of comparison.csv: a cell of :func:`summary` and its paired test."""
    numbers = entry[site][metric]
    kind = "ci" if "ci" in numbers else "std"
    out: dict[str, Any] = {
        "families": ";".join(entry["families"]), "method": label,
        "seeds": " ".join(map(str, entry["seeds"])), "site": site, "metric": metric,
        "mean": general(numbers["mean"]), "spread": general(numbers[kind]), "spread_kind": kind,
    }  # fmt: skip
    paired = numbers.get("vs_fedmri")
    if paired is not None:
        out |= {
            "diff_vs_fedmri": general(paired["difference"]),
            "diff_half_width": general(paired["half_width"]),
            "paired_seeds": len(paired["per_seed"]),
            "per_seed_diffs": " ".join(f"{seed}:{general(d)}" for seed, d in paired["per_seed"].items()),
            "p_value": general(paired["p_value"]),
            "verdict": paired["verdict"],
            "volume_pairs": paired["volume_pairs"],
            "volume_diff_half_width": general(paired["volume_half_width"]),
        }
    return out


def csv_report(data: dict[str, Any]) -> str:
    """comparison.csv from :func:`summary`'s numbers: per row, site (and mean) and metric, the cell and
    the paired test."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for label, entry in data["methods"].items():
        for site in [*data["sites"], "mean"]:
            for metric in METRICS:
                writer.writerow(_csv_line(label, entry, site, metric))
    return buffer.getvalue()
