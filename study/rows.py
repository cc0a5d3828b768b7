"""A table row's runs over seeds and the statistics of them: cells, paired comparisons, convergence.

A site's score for one seed is the mean over its test volumes; a cell is the mean over seeds with its
two-sided 95 % Student-t interval (``utils.stats.mean_interval``); ``mean`` is the mean over sites. A
row is compared with another with the trained model as the unit of replication
(``utils.stats.seed_comparison``): per seed, the mean difference over the test volumes both scored;
over seeds, that difference's mean with its t interval and a paired t-test, which alone decides a
verdict (better / worse / no detectable difference at the 5 % level; one seed gives none). The
``mean`` column pools every site's volumes of a seed. With one seed a cell is mean ± standard
deviation over the site's test volumes, as a single run reports it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from study.records import METRICS, Manifest, ManifestRow, RunRecord
from utils.stats import SeedComparison, mean_interval, seed_comparison
from utils.tables import METRIC_FORMAT

REFERENCE_ALGORITHM = "fedmri"
LEVEL = 0.05


def site_means(record: RunRecord, which: str = "model") -> dict[str, dict[str, float]]:
    """Per site and metric: the mean over the run's test volumes (of the model, or of the zero-filled
    input with ``which="zero_filled"``)."""
    return {
        s: {m: float(np.mean([getattr(v, which).of(m) for v in site.volumes.values()])) for m in METRICS}
        for s, site in record.sites.items()
    }


def _volume_std(record: RunRecord, site: str, metric: str) -> float:
    values = [v.model.of(metric) for v in record.sites[site].volumes.values()]
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


class Row:
    """One table row: a method or variant with its finished runs, one per seed."""

    def __init__(self, entry: ManifestRow, runs: dict[str, RunRecord], sites: list[str]):
        self.label = entry.label
        self.families = entry.families
        self.algorithm = entry.algorithm
        self.keys: dict[int, str] = {int(s): k for s, k in entry.runs.items() if k in runs}
        self.records = {seed: runs[key] for seed, key in sorted(self.keys.items())}
        self.sites = sites
        self.means = {seed: site_means(r) for seed, r in self.records.items()}

    def same_runs(self, other: Row | None) -> bool:
        """Whether this row shows exactly the runs of ``other`` (e.g. an ablation's FedMRI row)."""
        return other is not None and self.keys == other.keys

    @property
    def seeds(self) -> list[int]:
        """Seeds with a finished run."""
        return list(self.records)

    @property
    def first(self) -> RunRecord:
        """The record of the first seed with a finished run."""
        return self.records[self.seeds[0]]

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
        return float(per_seed[0]), _volume_std(self.first, site, metric), "std"

    def pairs(
        self, other: Row, site: str, metric: str, which: str = "model", own: str = "model"
    ) -> dict[int, tuple[list[float], list[float]]]:
        """Per seed both rows have: paired values (this row, ``other``) over the test volumes of ``site``
        (every site's volumes for ``mean``); ``which`` / ``own`` = ``"zero_filled"`` takes ``other``'s /
        this row's zero-filled input instead of its model."""
        out: dict[int, tuple[list[float], list[float]]] = {}
        for seed in self.seeds:
            if seed not in other.records:
                continue
            a, b = [], []
            for s in self.sites if site == "mean" else [site]:
                mine, theirs = self.records[seed].sites[s].volumes, other.records[seed].sites[s].volumes
                for volume in sorted(set(mine) & set(theirs)):
                    a.append(getattr(mine[volume], own).of(metric))
                    b.append(getattr(theirs[volume], which).of(metric))
            if a:
                out[seed] = (a, b)
        return out

    def versus(
        self, other: Row, site: str, metric: str, which: str = "model", own: str = "model"
    ) -> SeedComparison | None:
        """This row against ``other`` with the seed as the unit (``utils.stats.seed_comparison``); None
        without any paired volume. ``which`` / ``own`` = ``"zero_filled"``: ``other``'s / this row's
        zero-filled input in place of its model."""
        pairs = self.pairs(other, site, metric, which, own)
        if not pairs:
            return None
        return seed_comparison(pairs, level=LEVEL, higher_is_better=METRIC_FORMAT[metric][1])


def rows_of(manifest: Manifest, runs: dict[str, RunRecord]) -> list[Row]:
    """The manifest's rows that have at least one finished run, in table order."""
    rows = [Row(entry, runs, manifest.sites) for entry in manifest.rows]
    return [r for r in rows if r.records]


def reference_row(rows: list[Row]) -> Row | None:
    """FedMRI as configured (the comparison row of ``fl.algorithm=fedmri``), if the comparison has it."""
    for row in rows:
        if row.algorithm == REFERENCE_ALGORITHM and "comparison" in row.families:
            return row
    return next((r for r in rows if r.algorithm == REFERENCE_ALGORITHM and len(r.families) == 1), None)


def is_variant(
    row_algorithm: str, row_overrides: Sequence[str], algorithm: str, overrides: Sequence[str]
) -> bool:
    """Whether a row (its algorithm and variant overrides) is ``algorithm`` with exactly ``overrides``
    beyond ``fl.algorithm``."""
    rest = sorted(o for o in row_overrides if not o.startswith("fl.algorithm="))
    return row_algorithm == algorithm and rest == sorted(overrides)


def find_row(rows: list[Row], algorithm: str, overrides: Sequence[str] = ()) -> Row | None:
    """The row of ``algorithm`` with exactly ``overrides`` beyond the algorithm (e.g. a t-SNE panel's)."""
    return next((r for r in rows if is_variant(r.algorithm, r.first.overrides, algorithm, overrides)), None)


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
        for site, curve in record.val_psnr.items():
            if len(curve) < 5:
                continue
            gains.append(last_fifth_gain(curve))
            pairs += 1
            early += record.sites[site].best_round < len(curve)
    return {
        "max_gain": max(gains) if gains else math.nan,
        "mean_gain": float(np.mean(gains)) if gains else math.nan,
        "early": early,
        "pairs": pairs,
    }
