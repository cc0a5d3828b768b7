"""utils/stats.py against direct scipy computations on fixed numbers."""

import math

import numpy as np
import pytest
from scipy import stats

from utils.stats import (
    TOO_FEW_SEEDS,
    benjamini_hochberg,
    holm,
    mean_interval,
    paired_comparison,
    seed_comparison,
    signed_rank_floor,
    t_critical,
)

SEEDS = [27.1, 26.8, 27.4, 27.0, 26.9]


def test_mean_interval_equals_scipys_t_interval():
    found = mean_interval(SEEDS)
    low, high = stats.t.interval(0.95, len(SEEDS) - 1, loc=np.mean(SEEDS), scale=stats.sem(SEEDS))
    assert found.mean == pytest.approx(np.mean(SEEDS), abs=1e-12)
    assert (found.low, found.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert found.format() == f"{np.mean(SEEDS):.2f} ± {(high - low) / 2:.2f}"


def test_one_value_has_no_interval():
    found = mean_interval([3.0])
    assert found.mean == 3.0 and math.isnan(found.half_width) and found.format() == "3.00"


def test_paired_comparison_equals_scipys_wilcoxon_and_decides():
    method = [27.3, 27.9, 26.8, 28.1, 27.5, 27.7, 27.2, 28.0, 27.6, 27.4]
    reference = [27.0, 27.2, 26.9, 27.4, 27.0, 27.1, 26.8, 27.3, 27.2, 27.0]
    found = paired_comparison(method, reference)
    diff = np.subtract(method, reference)
    assert found.p_value == pytest.approx(stats.wilcoxon(method, reference).pvalue, abs=1e-12)
    low, high = stats.t.interval(0.95, len(diff) - 1, loc=diff.mean(), scale=stats.sem(diff))
    assert (found.difference.low, found.difference.high) == (pytest.approx(low), pytest.approx(high))
    assert found.p_value < 0.05 and found.verdict == "better"
    assert paired_comparison(reference, method).verdict == "worse"
    assert paired_comparison(reference, method, higher_is_better=False).verdict == "better"  # e.g. NMSE


def test_no_difference_when_the_signs_are_mixed_or_all_equal():
    assert paired_comparison([1.0, 2.0, 3.0, 4.0], [1.1, 1.9, 3.1, 3.9]).verdict == "no detectable difference"
    same = paired_comparison([1.0, 2.0], [1.0, 2.0])
    assert same.p_value == 1.0 and same.verdict == "no detectable difference"
    with pytest.raises(ValueError):
        paired_comparison([1.0, 2.0], [1.0])


# -- the trained model (the seed) as the unit ------------------------------------------------------


def test_seed_comparison_is_a_t_test_over_per_seed_means_with_a_closed_form_p():
    # Per-seed mean differences 1, 2, 3 (each seed's volumes differ, their means do not):
    # t = 2 / (1 / sqrt(3)) with 2 degrees of freedom, whose two-sided p is 1 - t / sqrt(t^2 + 2).
    pairs = {0: ([11.0, 10.0], [10.0, 9.0]), 1: ([12.5, 11.5], [10.5, 9.5]), 2: ([13.0, 14.0], [10.0, 11.0])}
    found = seed_comparison(pairs)
    t = 2.0 * np.sqrt(3.0)
    assert found.per_seed == {0: 1.0, 1: 2.0, 2: 3.0}
    assert found.difference.mean == pytest.approx(2.0)
    assert found.difference.half_width == pytest.approx(4.302652729911275 / np.sqrt(3.0), rel=1e-9)
    assert found.p_value == pytest.approx(1.0 - t / np.sqrt(t * t + 2.0), rel=1e-9)
    assert found.verdict == "no detectable difference"  # p = 0.074
    assert found.volumes.n == 6 and found.volumes.mean == pytest.approx(2.0)
    # The same numbers as scipy's paired t-test on the per-seed means.
    a = [np.mean(pairs[s][0]) for s in pairs]
    b = [np.mean(pairs[s][1]) for s in pairs]
    assert found.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)


def test_a_difference_consistent_within_seeds_but_not_across_them_is_not_detected():
    rng = np.random.default_rng(0)
    pairs = {}
    for seed, shift in enumerate((+1.0, -0.6, +0.9)):  # one trained model each: its own systematic shift
        reference = rng.normal(27.0, 1.0, 48)
        pairs[seed] = (reference + shift + rng.normal(0, 0.01, 48), reference)
    found = seed_comparison(pairs)
    assert found.verdict == "no detectable difference" and found.p_value > 0.05
    # Counted over 144 volume pairs as if independent, the Wilcoxon test would call it significant.
    a = np.concatenate([pairs[s][0] for s in pairs])
    b = np.concatenate([pairs[s][1] for s in pairs])
    assert paired_comparison(a, b).verdict == "better"


def test_a_difference_consistent_across_seeds_is_detected_either_way_round():
    rng = np.random.default_rng(1)
    pairs = {}
    for seed, shift in enumerate((0.50, 0.55, 0.45, 0.52, 0.48)):
        reference = rng.normal(27.0, 1.0, 12)
        pairs[seed] = (reference + shift + rng.normal(0, 0.3, 12), reference)
    assert seed_comparison(pairs).verdict == "better"
    flipped = {s: (b, a) for s, (a, b) in pairs.items()}
    assert seed_comparison(flipped).verdict == "worse"
    assert seed_comparison(flipped, higher_is_better=False).verdict == "better"  # e.g. NMSE


def test_seed_comparison_edge_cases():
    one = seed_comparison({4: ([1.0, 2.0], [0.0, 0.0])})
    assert one.verdict == TOO_FEW_SEEDS and np.isnan(one.p_value) and one.per_seed == {4: 1.5}
    same = seed_comparison({0: ([1.0], [1.0]), 1: ([2.0], [2.0])})
    assert same.verdict == "no detectable difference" and same.p_value == 1.0
    constant = seed_comparison({0: ([2.0], [1.0]), 1: ([3.0], [2.0])})  # exactly +1 in every seed
    assert constant.p_value == 0.0 and constant.verdict == "better"
    with pytest.raises(ValueError):
        seed_comparison({0: ([1.0, 2.0], [1.0])})
    with pytest.raises(ValueError):
        seed_comparison({})


def test_seeds_needed_for_a_verdict():
    assert t_critical(1) == np.inf
    assert t_critical(3) == pytest.approx(4.302652729911275) and t_critical(5) == pytest.approx(2.7764451)
    assert signed_rank_floor(3) == 0.25 and signed_rank_floor(5) == 0.0625 and signed_rank_floor(6) < 0.05
    # the floor is what scipy's exact signed-rank test gives when every difference has one sign
    assert stats.wilcoxon([1.0, 2.0, 3.0, 4.0, 5.0]).pvalue == pytest.approx(signed_rank_floor(5))


def test_holm_on_hand_numbers():
    # m = 4 finite p-values; sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04,
    # the last raised to the 0.06 before it; the NaN is no test and does not count
    found = holm([0.01, 0.04, 0.03, 0.005, math.nan])
    assert found[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-12)
    assert math.isnan(found[4])
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([]) == []
    assert holm([0.2]) == [0.2]


def _holm_rejects(p_values, level):
    """Holm's procedure as it is defined: walk the p-values from the smallest, rejecting the k-th
    (k from 0) while it is at most level / (m - k); stop at the first that is not."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = set()
    for k, i in enumerate(order):
        if p_values[i] > level / (len(p_values) - k):
            break
        rejected.add(i)
    return rejected


def test_holm_adjusted_p_rejects_exactly_what_the_step_down_procedure_rejects():
    rng = np.random.default_rng(7)
    for _ in range(300):
        m = int(rng.integers(1, 12))
        p_values = (rng.random(m) ** 3).tolist()  # many small ones
        adjusted = holm(p_values)
        for level in (0.001, 0.01, 0.05, 0.1, 0.3):
            assert {i for i, a in enumerate(adjusted) if a <= level} == _holm_rejects(p_values, level)


def test_benjamini_hochberg_on_hand_numbers():
    # m = 4: sorted 0.005, 0.01, 0.03, 0.04 times 4/1, 4/2, 4/3, 4/4 = 0.02, 0.02, 0.04, 0.04 (each at
    # most the one after it: unchanged here); 0.5, 0.6 -> 1.0, 0.6 -> 0.6, 0.6
    found = benjamini_hochberg([0.01, 0.04, 0.03, 0.005, math.nan])
    assert found[:4] == pytest.approx([0.02, 0.04, 0.04, 0.02], abs=1e-12)
    assert math.isnan(found[4])
    assert benjamini_hochberg([0.5, 0.6]) == pytest.approx([0.6, 0.6], abs=1e-12)
    assert benjamini_hochberg([]) == []


def _bh_rejects(p_values, level):
    """The step-up procedure as it is defined: the largest k with p_(k) <= k level / m; reject the k
    smallest."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    m, largest = len(p_values), 0
    for k, i in enumerate(order, start=1):
        if p_values[i] <= k * level / m:
            largest = k
    return set(order[:largest])


def test_benjamini_hochberg_rejects_exactly_what_the_step_up_procedure_rejects():
    rng = np.random.default_rng(11)
    for _ in range(300):
        m = int(rng.integers(1, 12))
        p_values = (rng.random(m) ** 3).tolist()
        adjusted = benjamini_hochberg(p_values)
        for level in (0.001, 0.01, 0.05, 0.1, 0.3):
            assert {i for i, a in enumerate(adjusted) if a <= level} == _bh_rejects(p_values, level)
        assert all(h >= b - 1e-15 for h, b in zip(holm(p_values), adjusted))  # Holm is the stricter


@pytest.mark.parametrize(
    "pairs",
    [
        {0: ([30.0, math.inf], [29.0, 28.0]), 1: ([31.0, 30.0], [29.0, 28.0])},  # identical volumes: inf dB
        {0: ([30.0, 29.0], [29.0, 28.0]), 1: ([31.0, math.nan], [29.0, 28.0])},
        {0: ([1e308], [-1e308]), 1: ([1e308], [-1e308])},  # finite, but the difference overflows
    ],
)
def test_a_non_finite_score_is_refused_naming_its_seed_not_read_as_no_difference(pairs):
    bad = next(seed for seed, (a, b) in pairs.items() if not all(math.isfinite(x - y) for x, y in zip(a, b)))
    with pytest.raises(ValueError, match=f"seed {bad}: .*finite"):
        seed_comparison(pairs)


@pytest.mark.parametrize("values", [[1.0, math.nan], [math.inf, 1.0, 2.0], [-math.inf]])
def test_mean_interval_refuses_non_finite_values(values):
    with pytest.raises(ValueError, match="non-finite"):
        mean_interval(values)
    with pytest.raises(ValueError, match="non-finite"):
        paired_comparison(values, [0.0] * len(values))


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, -0.1, math.nan, None, "0.95"])
def test_probabilities_outside_zero_one_are_refused(bad):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        mean_interval([1.0, 2.0], confidence=bad)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        seed_comparison({0: ([1.0], [0.0]), 1: ([2.0], [0.0])}, level=bad)


@pytest.mark.parametrize("correction", [holm, benjamini_hochberg])
def test_corrections_refuse_what_is_not_a_probability_and_keep_nan_as_no_test(correction):
    for bad in (1.5, -0.01, math.inf, -math.inf):
        with pytest.raises(ValueError, match="p-value 1"):
            correction([0.01, bad, 0.2])
    for bad in ("0.1", None, True):
        with pytest.raises(ValueError, match="p-value 0: expected a number"):
            correction([bad])
    assert correction([]) == []
    out = correction([math.nan, 0.04, np.float64(0.01)])
    assert math.isnan(out[0]) and out[1:] == pytest.approx([0.04, 0.02])  # m = 2: NaN is no test
    assert correction([0.0, 1.0]) == pytest.approx([0.0, 1.0])
