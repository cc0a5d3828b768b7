"""Undersampling masks for centred k-space: typed options per kind, 1D and 2D patterns, and masks from files.

Each kind declares a pydantic options model next to its pattern; :data:`MaskOptions` is their union,
discriminated by ``kind``, and is what a site's ``mask`` section of a config holds. ``build_mask(options)``
returns the mask function ``f(shape, seed) -> np.ndarray``: a bool array of exactly ``shape`` (H, W),
True where k-space is sampled, for k-space centred with DC at (H // 2, W // 2). The same (shape, seed)
always gives the same mask, so a caller that passes a stable seed per (file, slice) gets fixed validation
masks. Mask functions are small frozen dataclasses: they compare, hash and pickle.

Every generated kind takes ``acceleration`` R >= 1 (1 = fully sampled, all True) and ``center_fraction``
(1D: the fraction of centre columns always kept, ``max(1, round(W * center_fraction))`` of them;
2D: the always-sampled centre ellipse with semi-axes ``center_fraction * H / 2`` and
``center_fraction * W / 2``, a disc on square grids). 1D kinds select columns (the last axis, phase
encoding) and repeat them over the rows. Every kind also takes ``redraw_train`` [True]: draw a new
training mask for every sample and epoch (False: one fixed mask per slice, as for validation), and
``fixed`` [False]: one mask per site, drawn from the run's seed, for every training sample and every
validation and test slice, as the FedMRI paper's clients each used one stored mask (True overrides
``redraw_train``). Without ``fixed`` validation and test masks are fixed per (volume, slice).

=============  ==========================================================================================
kind           parameters [defaults]: what it draws
=============  ==========================================================================================
random_1d      acceleration [4], center_fraction [0.08]: fastMRI's random columns (Bernoulli per column)
equispaced_1d  acceleration [4], center_fraction [0.08], exact_fraction [True]: fastMRI's equispaced
               columns from a random offset, spaced so the total is ~W/R (``exact_fraction: false``:
               fastMRI's original every R-th column, which samples more than W/R)
uniform_1d     acceleration [4], center_fraction [0.08]: deterministic evenly spaced columns, exactly
               round(W/R) in total
random_2d      acceleration [4], center_fraction [0.08], sigma [0.4]: Gaussian variable density,
               exactly round(H*W/R) points
radial_2d      acceleration [4], center_fraction [0.08], golden_angle [False]: straight spokes through DC
poisson_2d     acceleration [4], center_fraction [0.08], falloff [2.0]: variable-density Poisson disc
file           path [required], acceleration [None]: a ``.mat`` (key ``mask``) or ``.npy`` array
=============  ==========================================================================================

The fastMRI kinds follow the masks of the fastMRI dataset paper (Zbontar et al., "fastMRI: An Open
Dataset and Benchmarks for Accelerated MRI", 2018) and its reference code.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, PydanticUseDefault

from utils.errors import UserError
from utils.paths import not_found

MaskFunc = Callable[[tuple[int, int], int], np.ndarray]

GOLDEN_ANGLE = math.pi * (math.sqrt(5.0) - 1.0) / 2.0  # 180 deg / golden ratio, ~111.25 deg
TOLERANCE = 0.1  # a file mask's acceleration must be this close (relative) to a requested one
CALIBRATION_SEED = 0  # the draw that poisson_2d's radius scale is fitted on


def acceleration_of(mask: np.ndarray) -> float:
    """Measured acceleration of a mask: its number of points over the number sampled (inf if none)."""
    sampled = int(np.count_nonzero(mask))
    return mask.size / sampled if sampled else math.inf


def _frozen(array: np.ndarray) -> np.ndarray:
    """Mark a cached array read-only so no caller can change what later calls return."""
    array.flags.writeable = False
    return array


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    """(H, W) as two positive ints."""
    height, width = (int(n) for n in shape)
    if height < 1 or width < 1:
        raise ValueError(f"mask shape must be two positive sizes, got {tuple(shape)}")
    return height, width


# ------------------------------------------------------------------------------------------ options


def _field_error(model: BaseModel, field: str, message: str) -> ValidationError:
    """A validation error located at ``field``, so that a config error names ``sites.N.mask.<field>``."""
    detail = InitErrorDetails(
        type=PydanticCustomError("mask_option", "{message}", {"message": message}),
        loc=(field,),
        input=getattr(model, field),
    )
    return ValidationError.from_exception_data(type(model).__name__, [detail])


# A finite real number; ints become floats, while strings and bools are refused (no lax coercion).
_Real = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class MaskOptionsBase(BaseModel):
    """What every mask kind's options share: the ``kind`` tag and whether training masks are redrawn."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="the mask kind; one of mask_kinds()")
    redraw_train: bool = Field(True, description="draw a new training mask for every sample and epoch")
    fixed: bool = Field(
        False,
        description="one mask per site, drawn from the seed, for every training sample and every "
        "validation and test slice (the FedMRI paper's fixed per-client mask); overrides redraw_train",
    )


class _PatternOptions(MaskOptionsBase):
    """Options of the generated kinds: acceleration and centre, and the check that the two fit together."""

    acceleration: _Real = Field(4.0, ge=1.0, description="undersampling factor R (1 = fully sampled)")
    center_fraction: _Real = Field(
        0.08,
        gt=0.0,
        le=1.0,
        description="always-sampled centre: the fraction of columns (1D) or the radius relative to the "
        "half-size (2D)",
    )

    @field_validator("acceleration", "center_fraction", mode="before")
    @classmethod
    def _null_is_default(cls, value: Any) -> Any:
        """Null keeps the kind's default, as configs written before the typed options used it."""
        if value is None:
            raise PydanticUseDefault()
        return value

    def _centre_share(self) -> float:
        """The fraction of k-space the always-sampled centre takes."""
        return self.center_fraction

    @model_validator(mode="after")
    def _centre_fits(self) -> _PatternOptions:
        """Refuse a centre that alone samples more than 1/R of k-space."""
        if self._centre_share() * self.acceleration > 1.0 + 1e-9:
            raise _field_error(
                self,
                "center_fraction",
                f"mask {self.kind}: center_fraction {self.center_fraction:g} keeps more than "
                f"1/acceleration = 1/{self.acceleration:g} of k-space; lower one of them",
            )
        return self


class _Pattern2DOptions(_PatternOptions):
    """Options of the 2D kinds, whose always-sampled centre is an ellipse of radius ``center_fraction``."""

    def _centre_share(self) -> float:
        return math.pi / 4 * self.center_fraction**2


@dataclass(frozen=True)
class _Pattern:
    """The generated kinds' shared parameters and their R = 1 shortcut; built from validated options."""

    acceleration: float
    center_fraction: float

    def __call__(self, shape: tuple[int, int], seed: int) -> np.ndarray:
        """The (H, W) bool mask for ``shape`` drawn from ``seed`` (a non-negative int)."""
        height, width = _check_shape(shape)
        if self.acceleration == 1.0:
            return np.ones((height, width), dtype=bool)
        return self._draw(height, width, seed)

    def _draw(self, height: int, width: int, seed: int) -> np.ndarray:
        raise NotImplementedError


# ----------------------------------------------------------------------------------------------- 1D


def _centre_columns(width: int, center_fraction: float) -> tuple[int, int]:
    """(first column, count) of the fully sampled centre block; it always contains DC (width // 2)."""
    count = min(width, max(1, round(width * center_fraction)))
    return (width - count + 1) // 2, count


def _rows(columns: np.ndarray, height: int) -> np.ndarray:
    """Repeat a (W,) column selection over ``height`` rows into a fresh (H, W) array."""
    return np.broadcast_to(columns, (height, columns.size)).copy()


class Random1DOptions(_PatternOptions):
    """Options of ``random_1d``, fastMRI's random columns."""

    kind: Literal["random_1d"] = "random_1d"


@dataclass(frozen=True)
class Random1D(_Pattern):
    """fastMRI's random column mask (Zbontar et al. 2018, ``RandomMaskFunc``).

    ``num_low = max(1, round(W * center_fraction))`` centre columns are always kept; every other column is
    kept independently with probability ``(W / R - num_low) / (W - num_low)``. The expected number of
    columns is W / R, but a single draw varies (Bernoulli per column): only the mean acceleration over
    many seeds matches R. If the centre alone exceeds W / R (tiny W), the mask is the centre.
    """

    def _draw(self, height: int, width: int, seed: int) -> np.ndarray:
        start, num_low = _centre_columns(width, self.center_fraction)
        columns = np.zeros(width, dtype=bool)
        if num_low < width:
            prob = (width / self.acceleration - num_low) / (width - num_low)
            columns = np.random.default_rng(seed).random(width) < prob
        columns[start : start + num_low] = True
        return _rows(columns, height)


class Equispaced1DOptions(_PatternOptions):
    """Options of ``equispaced_1d``, fastMRI's equispaced columns."""

    kind: Literal["equispaced_1d"] = "equispaced_1d"
    exact_fraction: bool = Field(
        True,
        strict=True,
        description="space the lattice so that about W/R columns are sampled in all (false: every R-th "
        "column, fastMRI's original, which samples more)",
    )


@dataclass(frozen=True)
class Equispaced1D(_Pattern):
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
        start, num_low = _centre_columns(width, self.center_fraction)
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
        return _rows(columns, height)


@lru_cache(maxsize=64)
def _uniform_columns(width: int, acceleration: float, center_fraction: float) -> np.ndarray:
    """The deterministic (W,) column selection of :class:`Uniform1D`."""
    start, num_low = _centre_columns(width, center_fraction)
    columns = np.zeros(width, dtype=bool)
    columns[start : start + num_low] = True
    outside = np.flatnonzero(~columns)
    extra = min(outside.size, max(0, round(width / acceleration) - num_low))
    if extra:
        columns[outside[((np.arange(extra) + 0.5) * outside.size / extra).astype(int)]] = True
    return _frozen(columns)


class Uniform1DOptions(_PatternOptions):
    """Options of ``uniform_1d``, deterministic evenly spaced columns."""

    kind: Literal["uniform_1d"] = "uniform_1d"


@dataclass(frozen=True)
class Uniform1D(_Pattern):
    """Deterministic evenly spaced columns, the paper's "1D uniform" mask; the seed is ignored.

    The centre block plus ``round(W / R) - num_low`` columns spread evenly over the remaining columns
    (the i-th of the k extra columns is the remaining column at position ``floor((i + 0.5) * n / k)``),
    so the total is exactly round(W / R) for every shape. Unlike ``equispaced_1d`` there is no random
    offset, the acceleration is exact, and the spacing may be fractional (gaps differ by at most one column).
    """

    def _draw(self, height: int, width: int, seed: int) -> np.ndarray:
        return _rows(_uniform_columns(width, self.acceleration, self.center_fraction), height)


# ----------------------------------------------------------------------------------------------- 2D


@lru_cache(maxsize=32)
def _radius_map(height: int, width: int) -> np.ndarray:
    """(H, W) normalised distance from DC: 1 at the middle of each edge, an ellipse on non-square grids."""
    y = (np.arange(height) - height // 2) / (height / 2)
    x = (np.arange(width) - width // 2) / (width / 2)
    return _frozen(np.sqrt(y[:, None] ** 2 + x[None, :] ** 2))


@lru_cache(maxsize=32)
def _gaussian_plan(
    height: int, width: int, acceleration: float, center_fraction: float, sigma: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """(candidate flat indices outside the centre, their -log density, how many of them to draw)."""
    rho = _radius_map(height, width).ravel()
    centre = rho <= center_fraction
    candidates = np.flatnonzero(~centre)
    wanted = round(height * width / acceleration) - int(centre.sum())
    draws = min(candidates.size, max(0, wanted))
    return _frozen(candidates), _frozen(rho[candidates] ** 2 / (2 * sigma**2)), draws


class Random2DOptions(_Pattern2DOptions):
    """Options of ``random_2d``, Gaussian variable-density random points."""

    kind: Literal["random_2d"] = "random_2d"
    sigma: _Real = Field(
        0.4, gt=0.0, description="width of the Gaussian density, in normalised distance from DC"
    )


@dataclass(frozen=True)
class Random2D(_Pattern):
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
        mask = _radius_map(height, width) <= self.center_fraction
        if draws:
            keys = np.log(np.random.default_rng(seed).standard_exponential(candidates.size)) + cost
            mask.ravel()[candidates[np.argpartition(keys, draws - 1)[:draws]]] = True
        return mask


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
    reach[_radius_map(height, width) <= center_fraction] = math.pi / 2
    return _frozen(angle.ravel()), _frozen(reach.ravel())


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


class Radial2DOptions(_Pattern2DOptions):
    """Options of ``radial_2d``, straight spokes through DC."""

    kind: Literal["radial_2d"] = "radial_2d"
    golden_angle: bool = Field(
        False, strict=True, description="space the spokes by the golden angle instead of evenly over 180 deg"
    )


@dataclass(frozen=True)
class Radial2D(_Pattern):
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


def _conflicts(radius: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel pairs (u, v), u before v in raster order, closer than the mean of their exclusion radii."""
    height, width = radius.shape
    index = np.arange(height * width, dtype=np.int32).reshape(height, width)
    limit = float(radius.max())
    reach = math.ceil(limit)
    first, second = [], []
    for dy in range(reach + 1):
        for dx in range(-reach, reach + 1):
            distance = math.hypot(dy, dx)
            if (dy == 0 and dx <= 0) or distance >= limit or dy >= height or abs(dx) >= width:
                continue
            rows_u, rows_v = slice(0, height - dy), slice(dy, height)
            cols_u = slice(max(0, -dx), width - max(0, dx))
            cols_v = slice(max(0, dx), width - max(0, -dx))
            close = radius[rows_u, cols_u] + radius[rows_v, cols_v] > 2 * distance
            first.append(index[rows_u, cols_u][close])
            second.append(index[rows_v, cols_v][close])
    if not first:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    return np.concatenate(first), np.concatenate(second)


def _maximal_disc_set(size: int, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random sequential Poisson-disc sampling on a conflict graph, vectorised (Luby's rounds).

    Each pixel gets a random priority; a pixel is accepted once it beats every still-open neighbour, and
    its neighbours close. The result equals accepting pixels one by one in priority order (dart throwing
    over all pixels until none fits), i.e. a maximal set with no two accepted pixels in conflict.
    """
    priority = rng.random(size, dtype=np.float32)
    open_ = np.ones(size, dtype=bool)
    accepted = np.zeros(size, dtype=bool)
    while open_.any():
        beaten = np.zeros(size, dtype=bool)
        beaten[np.where(priority[u] < priority[v], v, u)] = True
        winners = open_ & ~beaten
        accepted |= winners
        open_ &= ~winners
        open_[u[winners[v]]] = False
        open_[v[winners[u]]] = False
        still = open_[u] & open_[v]
        u, v = u[still], v[still]
    return accepted


@lru_cache(maxsize=8)
def _poisson_plan(
    height: int, width: int, acceleration: float, center_fraction: float, falloff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre flat mask, conflict pairs u, v) with the radius scale searched so draws sample ~1/R."""
    rho = _radius_map(height, width)
    centre = (rho <= center_fraction).ravel()
    target = 1.0 / acceleration
    shape_of_radius = 1.0 + falloff * rho

    def plan(scale: float) -> tuple[float, np.ndarray, np.ndarray]:
        u, v = _conflicts(scale * shape_of_radius)
        rng = np.random.default_rng(CALIBRATION_SEED)
        return float(np.mean(_maximal_disc_set(rho.size, u, v, rng) | centre)), u, v

    low, high = 1.0 / float(shape_of_radius.max()), 1.0  # at `low` no pixels conflict: fraction 1
    best = plan(high)
    while best[0] > target:
        low, high = high, 2 * high
        best = plan(high)
    for _ in range(30):
        if abs(best[0] / target - 1) < 0.02:
            break
        scale = math.sqrt(low * high)
        trial = plan(scale)
        if trial[0] > target:
            low = scale
        else:
            high = scale
        if abs(trial[0] / target - 1) < abs(best[0] / target - 1):
            best = trial
    return _frozen(centre), _frozen(best[1]), _frozen(best[2])


class Poisson2DOptions(_Pattern2DOptions):
    """Options of ``poisson_2d``, variable-density Poisson-disc sampling."""

    kind: Literal["poisson_2d"] = "poisson_2d"
    falloff: _Real = Field(
        2.0, ge=0.0, description="growth of the exclusion radius with the distance from DC (0 = uniform)"
    )


@dataclass(frozen=True)
class Poisson2D(_Pattern):
    """Variable-density Poisson-disc sampling, plus the centre ellipse.

    No two sampled pixels are closer than the mean of their exclusion radii, and no pixel can be added
    (a maximal set, as dart throwing until nothing fits). The radius at normalised distance ``rho`` from DC
    is ``scale * (1 + falloff * rho)``: with falloff 2 points are three times farther apart at the edge
    middles than at the centre; where the radius is below one pixel, k-space is fully sampled. ``scale``
    is searched once per (shape, parameters) so that a fixed draw samples 1/R of k-space within 2 %;
    other seeds differ from it by a few per cent at most.
    """

    falloff: float

    def _draw(self, height: int, width: int, seed: int) -> np.ndarray:
        centre, u, v = _poisson_plan(height, width, self.acceleration, self.center_fraction, self.falloff)
        mask = _maximal_disc_set(centre.size, u, v, np.random.default_rng(seed)) | centre
        return mask.reshape(height, width)


# --------------------------------------------------------------------------------------------- file


def _read_array(path: Path) -> Any:
    """The raw array stored in a ``.npy`` file or under key ``mask`` of a ``.mat`` file."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except Exception as err:  # any parse failure of a user's file is that file's problem
            raise UserError(f"mask file {path}: not a readable .npy array ({err})") from None
    if suffix != ".mat":
        raise UserError(f"mask file {path}: expected a .mat or .npy file")
    import scipy.io

    try:
        contents = scipy.io.loadmat(path)
    except NotImplementedError:  # MATLAB v7.3 files are HDF5
        return _read_mat73(path)
    except Exception as err:
        raise UserError(f"mask file {path}: not a readable .mat file ({err})") from None
    if "mask" not in contents:
        found = ", ".join(k for k in contents if not k.startswith("__")) or "nothing"
        raise UserError(f"mask file {path}: no variable 'mask' (found: {found})")
    return contents["mask"]


def _read_mat73(path: Path) -> np.ndarray:
    """Key ``mask`` of a MATLAB v7.3 (HDF5) file, transposed back to MATLAB's row-major view."""
    try:
        import h5py
    except ImportError:
        raise UserError(f"mask file {path}: MATLAB v7.3 file; install h5py or save it with -v7") from None
    try:
        with h5py.File(path, "r") as handle:
            if "mask" not in handle:
                found = ", ".join(handle) or "nothing"
                raise UserError(f"mask file {path}: no variable 'mask' (found: {found})")
            return np.asarray(handle["mask"]).T
    except UserError:
        raise
    except Exception as err:  # a truncated or damaged HDF5 file raises OSError, KeyError and others
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise UserError(f"mask file {path}: not a readable MATLAB v7.3 file ({first})") from None


@lru_cache(maxsize=32)
def _load_mask_file(path: str) -> np.ndarray:
    """A mask file's array as bool, (H, W) or (W,) (MATLAB row or column vectors become (W,)); read once."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"mask file {file}: {not_found(file)}")
    array = np.asarray(_read_array(file))
    if array.dtype.kind not in "biuf":
        raise UserError(f"mask file {file}: expected a real numeric array, got dtype {array.dtype}")
    if array.ndim == 2 and 1 in array.shape and array.size > 1:
        array = array.ravel()
    if array.ndim not in (1, 2) or array.size == 0:
        raise UserError(f"mask file {file}: expected a 2D (H, W) or 1D (W,) array, got shape {array.shape}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise UserError(f"mask file {file}: contains NaN or infinite values")
    mask = array != 0
    if not mask.any():
        raise UserError(f"mask file {file}: samples no k-space point (all zero)")
    return _frozen(mask)


def _absolute(path: str) -> str:
    """A mask file's path with ``~`` expanded, made absolute (so that worker processes find it too)."""
    return str(Path(path).expanduser().absolute())


def _acceleration_mismatch(path: str, mask: np.ndarray, requested: float | None) -> str | None:
    """Why a file's mask does not have the ``requested`` acceleration (within 10 %), or None if it does."""
    measured = acceleration_of(mask)
    if requested is None or abs(measured / requested - 1) <= TOLERANCE:
        return None
    return (
        f"mask file {path}: its acceleration is {measured:.3g}, not the requested "
        f"{requested:g}; set acceleration to match the file"
    )


class FileMaskOptions(MaskOptionsBase):
    """Options of ``file``, a fixed mask read from a file; the file is read and checked on validation."""

    kind: Literal["file"] = "file"
    path: str = Field(min_length=1, description="a .npy array, or a .mat file with variable 'mask'")
    acceleration: _Real | None = Field(
        None,
        ge=1.0,
        description="the file's acceleration, checked to within 10 % so reports quoting it are true; "
        "null = not checked",
    )

    @field_validator("path", mode="before")
    @classmethod
    def _path_text(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @model_validator(mode="after")
    def _file_fits(self) -> FileMaskOptions:
        """Read the file now, so that a bad file fails the config rather than a running job."""
        path = _absolute(self.path)
        try:
            mask = _load_mask_file(path)
        except UserError as err:
            raise _field_error(self, "path", str(err)) from None
        mismatch = _acceleration_mismatch(path, mask, self.acceleration)
        if mismatch:
            raise _field_error(self, "acceleration", mismatch)
        return self


@dataclass(frozen=True)
class FileMask:
    """A fixed mask read from ``path``: a ``.npy`` array or a ``.mat`` file with variable ``mask``.

    The FedMRI authors' format is a ``.mat`` file whose ``mask`` is a centred (H, W) array; MATLAB v7.3
    files are read with h5py if it is installed. 2D arrays must match the image shape exactly (nothing is
    resized); 1D arrays (W,), or MATLAB row/column vectors, select columns. Nonzero means sampled. The path
    is made absolute, the file is read once per process (later edits to it are not seen), and the seed
    is ignored. If ``acceleration`` is given, the file's measured acceleration must be within
    10 % of it, so that reports quoting it are true.
    """

    path: str
    acceleration: float | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", _absolute(self.path))
        mismatch = _acceleration_mismatch(self.path, _load_mask_file(self.path), self.acceleration)
        if mismatch:
            raise UserError(mismatch)

    def __call__(self, shape: tuple[int, int], seed: int) -> np.ndarray:
        """The file's mask as a fresh (H, W) bool array; UserError if its shape does not fit ``shape``."""
        height, width = _check_shape(shape)
        mask = _load_mask_file(self.path)
        expected = (width,) if mask.ndim == 1 else (height, width)
        if mask.shape != expected:
            raise UserError(
                f"mask file {self.path}: mask shape {mask.shape} does not match the image shape "
                f"{(height, width)} (expected {expected}); masks are never resized"
            )
        return _rows(mask, height) if mask.ndim == 1 else mask.copy()


# ----------------------------------------------------------------------------------------- registry

MASKS: dict[str, tuple[type[MaskOptionsBase], type]] = {
    "random_1d": (Random1DOptions, Random1D),
    "equispaced_1d": (Equispaced1DOptions, Equispaced1D),
    "uniform_1d": (Uniform1DOptions, Uniform1D),
    "random_2d": (Random2DOptions, Random2D),
    "radial_2d": (Radial2DOptions, Radial2D),
    "poisson_2d": (Poisson2DOptions, Poisson2D),
    "file": (FileMaskOptions, FileMask),
}

MaskOptions = Annotated[Union[tuple(opts for opts, _ in MASKS.values())], Field(discriminator="kind")]  # noqa: UP007

_OPTIONS = TypeAdapter(MaskOptions)


def mask_kinds() -> list[str]:
    """The registered mask kinds, in the order of the module's reference table."""
    return list(MASKS)


def build_mask(options: MaskOptionsBase) -> MaskFunc:
    """The mask function that validated ``options`` describe (the pattern's parameters are the options)."""
    _, pattern_cls = MASKS[options.kind]
    return pattern_cls(**options.model_dump(exclude={"kind", "redraw_train", "fixed"}))


def create(kind: str, **params: Any) -> MaskFunc:
    """The mask function of ``kind`` with ``params``, validated as :data:`MaskOptions`; for scripts and tests.

    ``redraw_train`` and ``fixed`` are accepted like any option but do not change the mask function.

    Raises:
        UserError: an unknown kind (the message lists the known ones), or an unknown, missing or
            out-of-range parameter (the message names it).
    """
    if not isinstance(kind, str) or kind not in MASKS:
        raise UserError(f"mask kind {kind!r} is unknown; expected one of: {', '.join(MASKS)}")
    try:
        options = _OPTIONS.validate_python({"kind": kind, **params})
    except ValidationError as err:
        raise UserError(_describe(kind, err.errors()[0])) from None
    return build_mask(options)


def _describe(kind: str, error: Any) -> str:
    """One line for the first validation error of ``kind``'s options, naming the parameter."""
    name = ".".join(str(part) for part in error["loc"][1:])  # loc[0] is the union's tag
    if error["type"] == "mask_option":
        return error["msg"]
    if error["type"] == "extra_forbidden":
        accepted = [field for field in MASKS[kind][0].model_fields if field != "kind"]
        return f"mask {kind}: unknown parameter {name!r}; {kind} accepts: {', '.join(accepted)}"
    if error["type"] == "missing":
        return f"mask {kind}: parameter {name!r} is required"
    message = error["msg"]
    return f"mask {kind}: parameter {name!r}: {message[0].lower()}{message[1:]} (got {error['input']!r})"
