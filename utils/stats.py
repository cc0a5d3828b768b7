"""Statistics of a multi-seed comparison: means with confidence intervals, and paired differences.

A method's score over seeds is reported as its mean with a two-sided 95 % Student-t confidence
interval. Two methods are compared on paired observations (the same seed and test volume): the mean
difference with its t interval, and the Wilcoxon signed-rank test of the differences (scipy), whose
p-value decides "better", "worse" or "no detectable difference" at the chosen level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    """A mean and the half-width of its confidence interval (NaN with fewer than two values)."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        """Lower end of the interval."""
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        """Upper end of the interval."""
        return self.mean + self.half_width

    def format(self, digits: int = 2) -> str:
        """``mean ± half`` (just the mean when the interval is undefined)."""
        if math.isnan(self.half_width):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean of ``values`` with the half-width of its two-sided Student-t confidence interval."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no values")
    mean = float(x.mean())
    if x.size < 2:
        return Interval(mean, math.nan, int(x.size))
    sem = float(x.std(ddof=1)) / math.sqrt(x.size)
    half = float(stats.t.ppf(0.5 + confidence / 2, df=x.size - 1)) * sem
    return Interval(mean, half, int(x.size))


@dataclass(frozen=True)
class PairedComparison:
    """A method against a reference on paired observations (higher is better unless told otherwise)."""

    difference: Interval  # method - reference
    p_value: float  # Wilcoxon signed-rank, two-sided
    verdict: str  # "better", "worse" or "no detectable difference"


def paired_comparison(
    method: Sequence[float],
    reference: Sequence[float],
    *,
    level: float = 0.05,
    higher_is_better: bool = True,
    confidence: float = 0.95,
) -> PairedComparison:
    """Compare ``method`` with ``reference`` observation by observation (same order, same length)."""
    a, b = np.asarray(method, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"paired observations must be two sequences of one length, got {a.shape} and {b.shape}"
        )
    diff = a - b
    interval = mean_interval(diff, confidence)
    if diff.size < 2 or not np.any(diff):
        return PairedComparison(interval, 1.0, "no detectable difference")
    p_value = float(stats.wilcoxon(a, b, alternative="two-sided").pvalue)
    verdict = "no detectable difference"
    if p_value < level:
        ahead = interval.mean > 0 if higher_is_better else interval.mean < 0
        verdict = "better" if ahead else "worse"
    return PairedComparison(interval, p_value, verdict)
