"""``random_2d``: Gaussian variable-density random points (exactly round(H * W / R)), and their options."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import Field

from data.masks.base import Pattern, Pattern2DOptions, Real, frozen, radius_map


@lru_cache(maxsize=32)
def _gaussian_plan(
    height: int, width: int, acceleration: float, center_fraction: float, sigma: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """(candidate flat indices outside the centre, their -log density, how many of them to draw)."""
    rho = radius_map(height, width).ravel()
    centre = rho <= center_fraction
    candidates = np.flatnonzero(~centre)
    wanted = round(height * width / acceleration) - int(centre.sum())
    draws = min(candidates.size, max(0, wanted))
    return frozen(candidates), frozen(rho[candidates] ** 2 / (2 * sigma**2)), draws


class Random2DOptions(Pattern2DOptions):
    """Options of ``random_2d``, Gaussian variable-density random points."""

    kind: Literal["random_2d"] = "random_2d"
    sigma: Real = Field(
        0.4, gt=0.0, description="width of the Gaussian density, in normalised distance from DC"
    )


@dataclass(frozen=True)
class Random2D(Pattern):
    """Variable-density random points: the centre ellipse plus points drawn without replacement.

    The density falls off as ``exp(-rho**2 / (2 * sigma**2))`` with ``rho`` the normalised distance from DC
    (1 at the middle of each edge). Exactly round(H * W / R) points are sampled (Gumbel top-k: the points
    with the smallest ``log(Exp(1) noise) - log(density)``), so the acceleration is exact for every draw.
    """

    sigma: float

    def _draw(self, height: int, width: int, seed: int) -> np.ndarray:
        candidates, cost, draws = _gaussian_plan(
            height, width, self.acceleration, self.center_fraction, self.sigma
        )
        mask = radius_map(height, width) <= self.center_fraction
        if draws:
            keys = np.log(np.random.default_rng(seed).standard_exponential(candidates.size)) + cost
            mask.ravel()[candidates[np.argpartition(keys, draws - 1)[:draws]]] = True
        return mask
