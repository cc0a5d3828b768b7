"""``equispaced_1d``: fastMRI's equispaced columns from a random offset, and their options."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from data.masks.base import Pattern, PatternOptions, centre_columns, rows


class Equispaced1DOptions(PatternOptions):
    """Options of ``equispaced_1d``, fastMRI's equispaced columns."""

    kind: Literal["equispaced_1d"] = "equispaced_1d"
    exact_fraction: bool = Field(
        True,
        strict=True,
        description="space the lattice so that about W/R columns are sampled in all (false: every R-th "
        "column, fastMRI's original, which samples more)",
    )


@dataclass(frozen=True)
class Equispaced1D(Pattern):
    """fastMRI's equispaced column mask: the centre block plus a lattice of columns from a random offset.

    By default (``exact_fraction=True``, fastMRI's ``EquispacedMaskFractionFunc``) the lattice spacing is
    ``R * (num_low - W) / (num_low * R - W)``, so that together with the centre block about W / R columns
    are sampled and the acceleration is R (within 10 % for W >= 96). With ``exact_fraction=False``
    (fastMRI's original ``EquispacedMaskFunc``) the lattice is every R-th column (positions
    ``offset + j * R`` rounded, up to the last column, as ``mask[offset::R]``); lattice columns inside
    the centre block add nothing, so more than W / R columns are sampled and the measured acceleration
    is below R, about ``W / (num_low * (1 - 1/R) + W/R)``
    (3.2x instead of 4x at W = 128, centre 0.08). The offset is drawn in ``[0, round(spacing))``: the seed
    only picks it, so there are at most round(spacing) distinct masks per shape. The fraction lattice is
    ``round(arange(offset, W - 1, spacing))`` as in fastMRI, stopping one column short of the edge: at
    W = 128, R = 4, centre 0.08 (spacing 5.36) and offset 4 it has 23 points, not the 24 a lattice
    running to W would have.
    """

    exact_fraction: bool

    def _draw(self, height: int, width: int, seed: int) -> np.ndarray:
        start, num_low = centre_columns(width, self.center_fraction)
        columns = np.zeros(width, dtype=bool)
        spacing = self.acceleration
        if self.exact_fraction:
            surplus = width - num_low * self.acceleration
            spacing = self.acceleration * (width - num_low) / surplus if surplus > 0 else math.inf
        if math.isfinite(spacing):
            offset = np.random.default_rng(seed).integers(0, max(1, round(spacing)))
            # fastMRI's lattices: EquispacedMaskFractionFunc's np.arange(offset, num_cols - 1, spacing)
            # stops one column short of the edge; EquispacedMaskFunc's mask[offset::R] runs to it.
            end = width - 1 if self.exact_fraction else width
            positions = np.round(np.arange(offset, end, spacing)).astype(int)
            columns[positions[positions < width]] = True
        columns[start : start + num_low] = True
        return rows(columns, height)
