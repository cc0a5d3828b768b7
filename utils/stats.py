"""Statistics of a multi-seed comparison: means with confidence intervals, and paired differences.

A method's score over seeds is reported as its mean with a two-sided 95 % Student-t confidence
interval. Two methods are compared with the trained model as the unit of replication
(:func:`seed_comparison`): each seed's mean difference over its paired test volumes, and a paired
Student t-test over those per-seed means (n - 1 degrees of freedom), whose p-value decides "better",
"worse" or "no detectable difference". The test volumes of one seed are not independent observations:
they are scored by one trained model, and the same simulated subjects (and both contrasts of each)
appear in every seed, so a test over (seed, volume) pairs would count one model's luck many times.
The paired t over seeds is the classical analysis of this balanced design with the seed as a random
effect (for balanced data it equals a linear mixed model's test of the method effect with a random
seed intercept); the test subjects are held fixed, so an interval speaks of new trainings on this test
set, not of new subjects. A Wilcoxon signed-rank test over the seeds would be distribution-free, but
its smallest two-sided p-value is 2 / 2**n, above 0.05 for fewer than six seeds, so it could never
reach a verdict on a study of three or five seeds. :func:`paired_comparison` (Wilcoxon over arbitrary
pairs) stays for observations that are independent.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
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


def _check_confidence(confidence: float, level: float = 0.05) -> None:
    """Both probabilities strictly between 0 and 1 (a NaN, a string or None is not)."""
    for name, value in (("confidence", confidence), ("level", level)):
        number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not (number and 0.0 < value < 1.0):
            raise ValueError(f"{name} must be a number strictly between 0 and 1, got {value!r}")


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean of ``values`` with the half-width of its two-sided Student-t confidence interval."""
    x = np.asarray(values, dtype=np.float64)
    _check_confidence(confidence)
    if x.size == 0:
        raise ValueError("no values")
    if x.ndim != 1:
        raise ValueError(f"expected a sequence of numbers, got an array of shape {x.shape}")
    if not np.all(np.isfinite(x)):
        bad = [float(v) for v in x[~np.isfinite(x)]][:3]
        raise ValueError(f"{int((~np.isfinite(x)).sum())} non-finite value(s) among {x.size} (e.g. {bad})")
    mean = float(x.mean())
    if not math.isfinite(mean):  # finite values whose sum overflows
        raise ValueError(f"the mean of {x.size} values overflows (largest {float(np.abs(x).max()):.3g})")
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
    _check_confidence(confidence, level)
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


TOO_FEW_SEEDS = "too few seeds"


def t_critical(seeds: int, confidence: float = 0.95) -> float:
    """The two-sided Student-t quantile a seed-level verdict must exceed with ``seeds`` seeds: a
    difference is detected when ``|mean| / (sd / sqrt(seeds))`` is above it (inf below two seeds)."""
    if seeds < 2:
        return math.inf
    return float(stats.t.ppf(0.5 + confidence / 2, df=seeds - 1))


def signed_rank_floor(seeds: int) -> float:
    """The smallest two-sided p-value an exact Wilcoxon signed-rank test can give over ``seeds`` values
    (every difference of one sign): 2 / 2**seeds."""
    return min(1.0, 2.0 / 2.0**seeds)


@dataclass(frozen=True)
class SeedComparison:
    """A method against a reference with the trained model (the seed) as the unit of replication."""

    per_seed: dict[int, float]  # seed -> mean over its paired test volumes of (method - reference)
    difference: Interval  # over the per-seed means: Student t with n - 1 degrees of freedom
    p_value: float  # paired t-test over seeds, two-sided (nan below two seeds)
    verdict: str  # "better", "worse", "no detectable difference" or TOO_FEW_SEEDS
    volumes: Interval  # descriptive only: over every (seed, volume) pair as if they were independent


def seed_comparison(
    pairs: Mapping[int, tuple[Sequence[float], Sequence[float]]],
    *,
    level: float = 0.05,
    higher_is_better: bool = True,
    confidence: float = 0.95,
) -> SeedComparison:
    """Compare a method with a reference from ``pairs``: seed -> (method's values, reference's values)
    on the same test volumes, in the same order. Each seed contributes one number, the mean of its
    paired differences; the verdict is the two-sided one-sample t-test of those numbers against zero at
    ``level`` (a method whose runs equal the reference's in every seed is "no detectable difference";
    one that differs by exactly the same amount in every seed, p = 0)."""
    _check_confidence(confidence, level)
    per_seed: dict[int, float] = {}
    every: list[float] = []
    for seed in sorted(pairs):
        a = np.asarray(pairs[seed][0], dtype=np.float64)
        b = np.asarray(pairs[seed][1], dtype=np.float64)
        if a.shape != b.shape or a.ndim != 1 or a.size == 0:
            raise ValueError(
                f"seed {seed}: paired observations must be two non-empty sequences of one length, "
                f"got {a.shape} and {b.shape}"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            diff = a - b
        if not np.all(np.isfinite(diff)):
            raise ValueError(
                f"seed {seed}: every paired observation must be a finite number, and so their differences "
                f"(method {a.tolist()[:4]}..., reference {b.tolist()[:4]}...)"
            )
        per_seed[seed] = float(diff.mean())
        every.extend(diff.tolist())
    if not per_seed:
        raise ValueError("no seeds to compare")
    d = np.asarray(list(per_seed.values()))
    interval = mean_interval(d, confidence)
    volumes = mean_interval(every, confidence)
    if d.size < 2:
        return SeedComparison(per_seed, interval, math.nan, TOO_FEW_SEEDS, volumes)
    if not np.any(d):
        return SeedComparison(per_seed, interval, 1.0, "no detectable difference", volumes)
    if np.all(d == d[0]):  # no spread between seeds: the t statistic is infinite
        p_value = 0.0
    else:
        p_value = float(stats.ttest_1samp(d, 0.0).pvalue)
    verdict = "no detectable difference"
    if p_value < level:
        ahead = interval.mean > 0 if higher_is_better else interval.mean < 0
        verdict = "better" if ahead else "worse"
    return SeedComparison(per_seed, interval, p_value, verdict, volumes)


def _finite_p_values(p_values: Sequence[float]) -> list[tuple[float, int]]:
    """(p, index) of the p-values that are not NaN, smallest first; a ValueError for one that is not a
    probability (outside [0, 1], infinite, or not a number)."""
    out = []
    for i, p in enumerate(p_values):
        if isinstance(p, bool) or not isinstance(p, numbers.Real):
            raise ValueError(f"p-value {i}: expected a number, got {type(p).__name__}")
        p = float(p)
        if math.isnan(p):
            continue
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p-value {i}: {p} is not a probability (0 <= p <= 1, or NaN for no test)")
        out.append((p, i))
    return sorted(out)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values of a family of tests, in the input's order: the i-th smallest
    of the m finite p-values is multiplied by m - i + 1 (i from 1), each adjusted value is made at least
    the one before it in that order, and capped at 1. A test rejected at ``level`` after adjustment keeps
    the family-wise error rate (any false verdict among the m) at ``level``. NaN (no test) stays NaN and
    does not count in m; a value outside [0, 1] is a ValueError."""
    finite = _finite_p_values(p_values)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(finite):
        running = max(running, min(1.0, (len(finite) - rank) * p))
        adjusted[i] = running
    return adjusted


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (q-values), in the input's order: the i-th smallest of the
    m finite p-values times m / i, made at most the one after it in that order, capped at 1. Verdicts
    with an adjusted value below ``level`` keep the expected share of false ones among them at ``level``
    (for independent or positively dependent tests): a weaker promise than :func:`holm`'s, which bounds
    the chance of any false one. NaN (no test) stays NaN and does not count in m; a value outside [0, 1]
    is a ValueError."""
    finite = _finite_p_values(p_values)
    adjusted = [math.nan] * len(p_values)
    running = 1.0
    for rank in range(len(finite) - 1, -1, -1):
        p, i = finite[rank]
        running = min(running, len(finite) * p / (rank + 1))
        adjusted[i] = running
    return adjusted
