"""Undersampling masks for centred k-space: one registry of 1D and 2D patterns, and masks read from files.

``create(kind, **params)`` returns a mask function ``f(shape, seed) -> np.ndarray``: a bool array of
exactly ``shape`` (H, W), True where k-space is sampled, for k-space centred with DC at (H // 2, W // 2).
The same (shape, seed) always gives the same mask, so a caller that passes a stable seed per (file, slice)
gets fixed validation masks. Mask functions are small frozen dataclasses: they compare, hash and pickle.

Every generated kind takes ``acceleration`` R >= 1 (1 = fully sampled, all True) and ``center_fraction``
(1D: the fraction of centre columns always kept, ``max(1, round(W * center_fraction))`` of them;
2D: the always-sampled centre ellipse with semi-axes ``center_fraction * H / 2`` and
``center_fraction * W / 2``, a disc on square grids). 1D kinds select columns (the last axis, phase
encoding) and repeat them over the rows.

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
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from numbers import Real
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from utils.errors import UserError

MaskFunc = Callable[[tuple[int, int], int], np.ndarray]

GOLDEN_ANGLE = math.pi * (math.sqrt(5.0) - 1.0) / 2.0  # 180 deg / golden ratio, ~111.25 deg
TOLERANCE = 0.1  # a file mask's acceleration must be this close (relative) to a requested one
CALIBRATION_SEED = 0  # the draw that poisson_2d's radius scale is fitted on


class MaskParameterError(UserError):
    """A mask parameter is unknown, missing or out of range; :attr:`parameter` names it."""

    def __init__(self, message: str, parameter: str):
        super().__init__(message)
        self.parameter = parameter


def acceleration_of(mask: np.ndarray) -> float:
    """Measured acceleration of a mask: its number of points over the number sampled (inf if none)."""
    sampled = int(np.count_nonzero(mask))
    return mask.size / sampled if sampled else math.inf


def _frozen(array: np.ndarray) -> np.ndarray:
    """Mark a cached array read-only so no caller can change what later calls return."""
    array.flags.writeable = False
    return array


def _real(
    kind: str, name: str, value: object, *, low: float, low_open: bool = False, high: float = math.inf
) -> float:
    """Parameter ``name`` of mask ``kind`` as a float, or UserError if it is not a number in its range."""
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (value > low if low_open else value >= low) and value <= high:
        return float(value)
    bound = f"> {low:g}" if low_open else f">= {low:g}"
    if high < math.inf:
        bound += f" and <= {high:g}"
    raise MaskParameterError(
        f"mask {kind}: parameter '{name}' must be a number {bound} (got {value!r})", name
    )


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    """(H, W) as two positive ints."""
    height, width = (int(n) for n in shape)
    if height < 1 or width < 1:
        raise ValueError(f"mask shape must be two positive sizes, got {tuple(shape)}")
    return height, width


@dataclass(frozen=True)
class _Pattern:
    """Shared parameters, their validation and the R = 1 shortcut of the generated kinds."""

    kind: ClassVar[str]
    acceleration: float = 4.0
    center_fraction: float = 0.08

    def __post_init__(self) -> None:
        self._number("acceleration", low=1.0)
        self._number("center_fraction", low=0.0, low_open=True, high=1.0)
        if self._centre_share() * self.acceleration > 1.0 + 1e-9:
            raise MaskParameterError(
                f"mask {self.kind}: center_fraction {self.center_fraction:g} keeps more than "
                f"1/acceleration = 1/{self.acceleration:g} of k-space; lower one of them",
                "center_fraction",
            )

    def _number(self, name: str, *, low: float, low_open: bool = False, high: float = math.inf) -> None:
        """Check that parameter ``name`` is a real number in its range and store it as a float."""
        value = _real(self.kind, name, getattr(self, name), low=low, low_open=low_open, high=high)
        object.__setattr__(self, name, value)

    def _flag(self, name: str) -> None:
        """Check that parameter ``name`` is a bool."""
        value = getattr(self, name)
        if not isinstance(value, bool):
            raise MaskParameterError(
                f"mask {self.kind}: parameter '{name}' must be true or false (got {value!r})", name
            )

    def _centre_share(self) -> float:
        """The fraction of k-space the always-sampled centre takes."""
        return self.center_fraction

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


@dataclass(frozen=True)
class Random1D(_Pattern):
    """fastMRI's random column mask.

    ``num_low = max(1, round(W * center_fraction))`` centre columns are always kept; every other column is
    kept independently with probability ``(W / R - num_low) / (W - num_low)``. The expected number of
    columns is W / R, but a single draw varies (Bernoulli per column): only the mean acceleration over
    many seeds matches R. If the centre alone exceeds W / R (tiny W), the mask is the centre.
    """

    kind: ClassVar[str] = "random_1d"

    def _draw(self, height: int, width: int, seed: int) -> np.ndarray:
        start, num_low = _centre_columns(width, self.center_fraction)
        columns = np.zeros(width, dtype=bool)
        if num_low < width:
            prob = (width / self.acceleration - num_low) / (width - num_low)
            columns = np.random.default_rng(seed).random(width) < prob
        columns[start : start + num_low] = True
        return _rows(columns, height)


@dataclass(frozen=True)
class Equispaced1D(_Pattern):
    """fastMRI's equispaced column mask: the centre block plus a lattice of columns from a random offset.

    By default (``exact_fraction=True``, fastMRI's ``EquispacedMaskFractionFunc``) the lattice spacing is
    ``R * (num_low - W) / (num_low * R - W)``, so that together with the centre block about W / R columns
    are sampled and the acceleration is R (within 10 % for W >= 96). With ``exact_fraction=False``
    (fastMRI's original ``EquispacedMaskFunc``) the lattice is every R-th column (positions
    ``offset + j * R`` rounded); lattice columns inside the centre block add nothing, so more than W / R
    columns are sampled and the measured acceleration is below R, about ``W / (num_low * (1 - 1/R) + W/R)``
    (3.2x instead of 4x at W = 128, centre 0.08). The offset is drawn in ``[0, round(spacing))``: the seed
    only picks it, so there are at most round(spacing) distinct masks per shape.
    """

    kind: ClassVar[str] = "equispaced_1d"
    exact_fraction: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self._flag("exact_fraction")

    def _draw(self, height: int, width: int, seed: int) -> np.ndarray:
        start, num_low = _centre_columns(width, self.center_fraction)
        columns = np.zeros(width, dtype=bool)
        spacing = self.acceleration
        if self.exact_fraction:
            surplus = width - num_low * self.acceleration
            spacing = self.acceleration * (width - num_low) / surplus if surplus > 0 else math.inf
        if math.isfinite(spacing):
            offset = np.random.default_rng(seed).integers(0, max(1, round(spacing)))
            positions = np.round(np.arange(offset, width, spacing)).astype(int)
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


@dataclass(frozen=True)
class Uniform1D(_Pattern):
    """Deterministic evenly spaced columns, the paper's "1D uniform" mask; the seed is ignored.

    The centre block plus ``round(W / R) - num_low`` columns spread evenly over the remaining columns
    (the i-th of the k extra columns is the remaining column at position ``floor((i + 0.5) * n / k)``),
    so the total is exactly round(W / R) for every shape. Unlike ``equispaced_1d`` there is no random
    offset, the acceleration is exact, and the spacing may be fractional (gaps differ by at most one column).
    """

    kind: ClassVar[str] = "uniform_1d"

    def _draw(self, height: int, width: int, seed: int) -> np.ndarray:
        return _rows(_uniform_columns(width, self.acceleration, self.center_fraction), height)


# ----------------------------------------------------------------------------------------------- 2D


@lru_cache(maxsize=32)
def _radius_map(height: int, width: int) -> np.ndarray:
    """(H, W) normalised distance from DC: 1 at the middle of each edge, an ellipse on non-square grids."""
    y = (np.arange(height) - height // 2) / (height / 2)
    x = (np.arange(width) - width // 2) / (width / 2)
    return _frozen(np.sqrt(y[:, None] ** 2 + x[None, :] ** 2))


@dataclass(frozen=True)
class _Pattern2D(_Pattern):
    """2D kinds: the always-sampled centre is the ellipse ``normalised radius <= center_fraction``."""

    def _centre_share(self) -> float:
        return math.pi / 4 * self.center_fraction**2


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


@dataclass(frozen=True)
class Random2D(_Pattern2D):
    """Variable-density random points: the centre ellipse plus points drawn without replacement.

    The density falls off as ``exp(-rho**2 / (2 * sigma**2))`` with ``rho`` the normalised distance from DC
    (1 at the middle of each edge). Exactly round(H * W / R) points are sampled (Gumbel top-k: the points
    with the smallest ``log(Exp(1) noise) - log(density)``), so the acceleration is exact for every draw.
    """

    kind: ClassVar[str] = "random_2d"
    sigma: float = 0.4

    def __post_init__(self) -> None:
        super().__post_init__()
        self._number("sigma", low=0.0, low_open=True)

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


@dataclass(frozen=True)
class Radial2D(_Pattern2D):
    """Straight spokes through DC (full diameters), plus the centre ellipse.

    The spokes are evenly spaced over 180 degrees with a random global rotation from the seed, or, with
    ``golden_angle=True``, spoke j lies at ``rotation + j * 111.25 deg`` (180 deg / golden ratio). A spoke
    covers the pixels whose centres are within half a pixel of it along its minor axis. The number of spokes
    is searched per draw: the count whose number of points is closest to round(H * W / R), so the
    acceleration is within half a spoke's worth of points of R.
    """

    kind: ClassVar[str] = "radial_2d"
    golden_angle: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self._flag("golden_angle")

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


@dataclass(frozen=True)
class Poisson2D(_Pattern2D):
    """Variable-density Poisson-disc sampling, plus the centre ellipse.

    No two sampled pixels are closer than the mean of their exclusion radii, and no pixel can be added
    (a maximal set, as dart throwing until nothing fits). The radius at normalised distance ``rho`` from DC
    is ``scale * (1 + falloff * rho)``: with falloff 2 points are three times farther apart at the edge
    middles than at the centre; where the radius is below one pixel, k-space is fully sampled. ``scale``
    is searched once per (shape, parameters) so that a fixed draw samples 1/R of k-space within 2 %;
    other seeds differ from it by a few per cent at most.
    """

    kind: ClassVar[str] = "poisson_2d"
    falloff: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._number("falloff", low=0.0)

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
    with h5py.File(path, "r") as handle:
        if "mask" not in handle:
            raise UserError(f"mask file {path}: no variable 'mask' (found: {', '.join(handle) or 'nothing'})")
        return np.asarray(handle["mask"]).T


@lru_cache(maxsize=32)
def _load_mask_file(path: str) -> np.ndarray:
    """A mask file's array as bool, (H, W) or (W,) (MATLAB row or column vectors become (W,)); read once."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"mask file {file}: not found")
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

    kind: ClassVar[str] = "file"
    path: str
    acceleration: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, str | Path) or not str(self.path):
            raise UserError(f"mask file: parameter 'path' must be a file path (got {self.path!r})")
        object.__setattr__(self, "path", str(Path(self.path).expanduser().absolute()))
        if self.acceleration is not None:
            object.__setattr__(
                self, "acceleration", _real(self.kind, "acceleration", self.acceleration, low=1.0)
            )
        mask = _load_mask_file(self.path)
        measured = acceleration_of(mask)
        if self.acceleration is not None and abs(measured / self.acceleration - 1) > TOLERANCE:
            raise UserError(
                f"mask file {self.path}: its acceleration is {measured:.3g}, not the requested "
                f"{self.acceleration:g}; set acceleration to match the file"
            )

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

MASKS: dict[str, type] = {
    cls.kind: cls for cls in (Random1D, Equispaced1D, Uniform1D, Random2D, Radial2D, Poisson2D, FileMask)
}


def mask_kinds() -> list[str]:
    """The registered mask kinds, in the order of the module's reference table."""
    return list(MASKS)


def create(kind: str, **params: Any) -> MaskFunc:
    """The mask function of ``kind`` with ``params``; UserError for an unknown kind, parameter or value."""
    if not isinstance(kind, str) or kind not in MASKS:
        raise UserError(f"mask kind {kind!r} is unknown; expected one of: {', '.join(MASKS)}")
    cls = MASKS[kind]
    accepted = [field.name for field in dataclasses.fields(cls)]
    for name in params:
        if name not in accepted:
            raise MaskParameterError(
                f"mask {kind}: unknown parameter {name!r}; {kind} accepts: {', '.join(accepted)}", name
            )
    missing = [
        field.name
        for field in dataclasses.fields(cls)
        if field.name not in params
        and field.default is dataclasses.MISSING
        and field.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise MaskParameterError(f"mask {kind}: parameter {missing[0]!r} is required", missing[0])
    return cls(**params)
