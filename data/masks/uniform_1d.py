"""``uniform_1d``: deterministic evenly spaced columns (the paper's "1D uniform" mask), and their options."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from data.masks.base import Pattern, PatternOptions, centre_columns, frozen, rows


@lru_cache(maxsize=64)
def _uniform_columns(width: int, acceleration: float, center_fraction: float) -> np.ndarray:
    """The deterministic (W,) column selection of :class:`Uniform1D`."""
    start, num_low = centre_columns(width, center_fraction)
    columns = np.zeros(width, dtype=bool)
    columns[start : start + num_low] = True
    outside = np.flatnonzero(~columns)
    extra = min(outside.size, max(0, round(width / acceleration) - num_low))
    if extra:
        columns[outside[((np.arange(extra) + 0.5) * outside.size / extra).astype(int)]] = True
    return frozen(columns)


class Uniform1DOptions(PatternOptions):
    """Options of ``uniform_1d``, deterministic evenly spaced columns."""

    kind: Literal["uniform_1d"] = "uniform_1d"


@dataclass(frozen=True)
class Uniform1D(Pattern):
    """Deterministic evenly spaced columns, the paper's "1D uniform" mask; the seed is ignored.

    The centre block plus ``round(W / R) - num_low`` columns spread evenly over the remaining columns
    (the i-th of the k extra columns is the remaining column at position ``floor((i + 0.5) * n / k)``),
    so the total is exactly round(W / R) for every shape. Unlike ``equispaced_1d`` there is no random
    offset, the acceleration is exact, and the spacing may be fractional (gaps differ by at most one column).
    """

    def _draw(self, height: int, width: int, seed: int) -> np.ndarray:
        return rows(_uniform_columns(width, self.acceleration, self.center_fraction), height)
