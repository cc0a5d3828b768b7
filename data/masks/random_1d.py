"""``random_1d``: fastMRI's random columns (Zbontar et al. 2018, ``RandomMaskFunc``), and their options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from data.masks.base import Pattern, PatternOptions, centre_columns, rows


class Random1DOptions(PatternOptions):
    """Options of ``random_1d``, fastMRI's random columns."""

    kind: Literal["random_1d"] = "random_1d"


@dataclass(frozen=True)
class Random1D(Pattern):
    """fastMRI's random column mask (Zbontar et al. 2018, ``RandomMaskFunc``).

    ``num_low = max(1, round(W * center_fraction))`` centre columns are always kept; every other column is
    kept independently with probability ``(W / R - num_low) / (W - num_low)``. The expected number of
    columns is W / R, but a single draw varies (Bernoulli per column): only the mean acceleration over
    many seeds matches R. If the centre alone exceeds W / R (tiny W), the mask is the centre.
    """

    def _draw(self, height: int, width: int, seed: int) -> np.ndarray:
        start, num_low = centre_columns(width, self.center_fraction)
        columns = np.zeros(width, dtype=bool)
        if num_low < width:
            prob = (width / self.acceleration - num_low) / (width - num_low)
            columns = np.random.default_rng(seed).random(width) < prob
        columns[start : start + num_low] = True
        return rows(columns, height)
