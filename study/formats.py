"""How the study's tables write numbers, intervals, paired differences and verdicts."""

from __future__ import annotations

import math

from study.rows import LEVEL
from utils.stats import TOO_FEW_SEEDS, Interval, SeedComparison, signed_rank_floor, t_critical

VERDICT_MARK = {
    "better": "better",
    "worse": "worse",
    "no detectable difference": "n.d.",
    TOO_FEW_SEEDS: "no verdict (1 seed)",
}


def fixed(value: float | None, digits: int) -> str:
    """``value`` with ``digits`` decimals; an en dash for a missing or non-finite one."""
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def cell(mean: float, spread: float | None, digits: int) -> str:
    """A table cell: ``mean ± spread``, or the mean alone without a finite spread."""
    if spread is None or not math.isfinite(spread):
        return fixed(mean, digits)
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def signed(interval: Interval, digits: int) -> str:
    """A difference with its sign and, where finite, its half-width: ``+0.12 ± 0.05``."""
    half = "" if not math.isfinite(interval.half_width) else f" ± {interval.half_width:.{digits}f}"
    return f"{interval.mean:+.{digits}f}{half}"


def p_value(result: SeedComparison) -> str:
    """The seed-level test's p, two significant digits."""
    return "–" if not math.isfinite(result.p_value) else f"{result.p_value:.2g}"


def per_seed(result: SeedComparison, digits: int) -> str:
    """The per-seed mean differences, in seed order."""
    return ", ".join(f"{d:+.{digits}f}" for d in result.per_seed.values())


def megabytes(value: float | None) -> str:
    """Bytes as MB with two decimals; an en dash for none."""
    return "–" if value is None else f"{value / 1e6:.2f}"


def general(value: float | None) -> str:
    """A number of comparison.csv: six significant digits; empty for a missing or non-finite one."""
    return "" if value is None or not math.isfinite(value) else f"{value:.6g}"


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


def seeds_count(n: int) -> str:
    """``1 seed``, ``3 seeds``."""
    return f"{n} seed" if n == 1 else f"{n} seeds"
