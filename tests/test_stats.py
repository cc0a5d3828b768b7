"""utils/stats.py against direct scipy computations on fixed numbers."""

import math

import numpy as np
import pytest
from scipy import stats

from utils.stats import mean_interval, paired_comparison

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
