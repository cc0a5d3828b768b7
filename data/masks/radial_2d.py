"""``radial_2d``: straight spokes through DC, evenly spaced or golden-angle, and their options."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import Field

from data.masks.base import Pattern, Pattern2DOptions, frozen, radius_map

GOLDEN_ANGLE = math.pi * (math.sqrt(5.0) - 1.0) / 2.0  # 180 deg / golden ratio, ~111.25 deg


@lru_cache(maxsize=32)
def _spoke_geometry(height: int, width: int, center_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: its direction angle in [0, pi), and the largest angular distance to a spoke that covers it.

    A spoke covers a pixel whose centre lies within half a pixel of the line along its minor axis (one
    pixel per column or row, like a drawn line); pixels of the centre ellipse are always covered.
    """
    dy = (np.arange(height) - height // 2)[:, None].astype(float)
    dx = (np.arange(width) - width // 2)[None, :].astype(float)
    angle = np.mod(np.arctan2(dy, dx), math.pi)
    radius = np.hypot(dy, dx)
    half_width = 0.5 * np.maximum(np.abs(np.cos(angle)), np.abs(np.sin(angle)))
    with np.errstate(divide="ignore"):
        reach = np.arcsin(np.minimum(1.0, half_width / radius))
    reach[radius_map(height, width) <= center_fraction] = math.pi / 2
    return frozen(angle.ravel()), frozen(reach.ravel())


def _spoke_mask(
    angle: np.ndarray, reach: np.ndarray, spokes: int, rotation: float, golden: bool
) -> np.ndarray:
    """Flat coverage of ``spokes`` spokes rotated by ``rotation``: evenly spaced over pi, or golden-angle."""
    beta = np.mod(angle - rotation, math.pi)
    if not golden:
        step = math.pi / spokes
        offset = np.mod(beta, step)
        return np.minimum(offset, step - offset) <= reach
    lines = np.sort(np.mod(np.arange(spokes) * GOLDEN_ANGLE, math.pi))
    edges = np.concatenate([lines[-1:] - math.pi, lines, lines[:1] + math.pi])
    right = np.searchsorted(edges, beta, side="right")
    return np.minimum(beta - edges[right - 1], edges[right] - beta) <= reach


@lru_cache(maxsize=32)
def _initial_spokes(
    height: int, width: int, acceleration: float, center_fraction: float, golden: bool
) -> int:
    """The smallest spoke count whose unrotated mask reaches round(H * W / R) points; where draws start."""
    angle, reach = _spoke_geometry(height, width, center_fraction)
    target = round(height * width / acceleration)
    low, high = 1, 4 * (height + width)
    while low < high:
        mid = (low + high) // 2
        if np.count_nonzero(_spoke_mask(angle, reach, mid, 0.0, golden)) >= target:
            high = mid
        else:
            low = mid + 1
    return low


class Radial2DOptions(Pattern2DOptions):
    """Options of ``radial_2d``, straight spokes through DC."""

    kind: Literal["radial_2d"] = "radial_2d"
    golden_angle: bool = Field(
        False, strict=True, description="space the spokes by the golden angle instead of evenly over 180 deg"
    )


@dataclass(frozen=True)
class Radial2D(Pattern):
    """Straight spokes through DC (full diameters), plus the centre ellipse.

    The spokes are evenly spaced over 180 degrees with a random global rotation from the seed, or, with
    ``golden_angle=True``, spoke j lies at ``rotation + j * 111.25 deg`` (180 deg / golden ratio). A spoke
    covers the pixels whose centres are within half a pixel of it along its minor axis. The number of spokes
    is searched per draw: the count whose number of points is closest to round(H * W / R), so the
    acceleration is within half a spoke's worth of points of R.
    """

    golden_angle: bool

    def _draw(self, height: int, width: int, seed: int) -> np.ndarray:
        angle, reach = _spoke_geometry(height, width, self.center_fraction)
        rotation = np.random.default_rng(seed).uniform(0.0, math.pi)
        target = round(height * width / self.acceleration)

        def spokes(n: int) -> tuple[np.ndarray, int]:
            mask = _spoke_mask(angle, reach, n, rotation, self.golden_angle)
            return mask, int(np.count_nonzero(mask))

        n = _initial_spokes(height, width, self.acceleration, self.center_fraction, self.golden_angle)
        (mask, count), fewer = spokes(n), None
        while count < target:
            n += 1
            fewer, (mask, count) = (mask, count), spokes(n)
        while fewer is None and n > 1:
            below = spokes(n - 1)
            if below[1] < target:
                fewer = below
            else:
                n, (mask, count) = n - 1, below
        if fewer is not None and target - fewer[1] < count - target:
            mask = fewer[0]
        return mask.reshape(height, width)
