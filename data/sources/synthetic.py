"""A simulated multi-contrast brain MRI site, generated offline from the ICBM152 2009a template.

Each subject is the template's anatomy (grey and white matter probability maps, CSF = brain - GM - WM)
under a random affine and elastic deformation, with its own tissue T1/T2/PD, imaged by a spin-echo
signal model ``S = PD (1 - exp(-TR/T1)) exp(-TE/T2)`` for T1- and T2-weighted contrasts. A site
``profile`` (modelled on the paper's four clients) sets the protocol and the scanner's fingerprint:
field of view, slice thickness, TR/TE, skull or skull-stripped, lesions, coil bias field, Rician noise,
blur, intensity curve and scale. Generated sites are cached on disk, keyed by everything they depend on.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy import ndimage
from scipy.special import expit

from data.sources.base import SPLITS, Source, SourceContext, Split, VolumeInfo
from utils.errors import UserError
from utils.io import temp_dir
from utils.seeding import stable_seed

GENERATOR_VERSION = 1  # bump whenever the generated images change; it invalidates old caches

logger = logging.getLogger(__name__)

Contrast = Literal["t1", "t2"]
ProfileName = Literal["fastmri", "brats", "sms", "umr"]


class SubjectCounts(BaseModel):
    """How many simulated subjects each split gets."""

    model_config = ConfigDict(extra="forbid")

    train: int = Field(8, ge=1, description="training subjects")
    val: int = Field(2, ge=1, description="validation subjects")
    test: int = Field(2, ge=1, description="test subjects")


class SyntheticOptions(BaseModel):
    """A simulated brain MRI site: no files needed, generated once and cached."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["synthetic"] = "synthetic"
    profile: ProfileName = Field(
        description="the site's protocol and scanner preset, after the paper's four clients"
    )
    size: int = Field(96, ge=32, description="image matrix size (square), pixels")
    subjects: SubjectCounts = Field(default_factory=SubjectCounts, description="subjects per split")
    slices_per_subject: int = Field(
        16, ge=1, le=160, description="axial slices per volume, centred on the lateral ventricles"
    )
    contrasts: list[Contrast] = Field(
        default_factory=lambda: ["t1", "t2"], min_length=1, description="spin-echo contrasts: one volume each"
    )
    lesions: bool | None = Field(
        None, description="simulate tumours (oedema around a necrotic core); null = the profile's default"
    )
    noise_scale: float = Field(1.0, ge=0.0, description="multiplies the profile's noise; 0 = noise-free")

    @field_validator("contrasts")
    @classmethod
    def _unique_contrasts(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"contrasts must not repeat (got {value})")
        return value


@dataclass(frozen=True)
class Profile:
    """A site's protocol preset: how its scanner turns the same anatomy into its own images."""

    fov_mm: float  # square field of view
    slice_mm: float  # slice thickness: through-plane partial volume
    protocol: dict[str, tuple[float, float]]  # contrast -> (TR, TE) in ms
    skull_stripped: bool  # brain only, zero background (BraTS); otherwise skull and scalp are imaged
    lesions: bool  # default for ``SyntheticOptions.lesions``
    bias_std: float  # strength of the random smooth multiplicative bias field (std of its log)
    bias_radial: float  # coil profile: > 0 brighter periphery (phased array), < 0 brighter centre
    noise: float  # Rician noise std relative to the volume's 99th-percentile signal
    blur_px: float  # Gaussian blur of the image, pixels (softer reconstructions)
    gamma: float  # intensity curve applied to the magnitude image
    scale: float  # overall intensity units


# The four site presets, after the paper's clients: same anatomy model, different scanners and protocols.
PROFILES: dict[str, Profile] = {
    "fastmri": Profile(
        fov_mm=220,
        slice_mm=5.0,
        protocol={"t1": (500, 12), "t2": (4000, 100)},
        skull_stripped=False,
        lesions=False,
        bias_std=0.12,
        bias_radial=0.15,
        noise=0.02,
        blur_px=0.0,
        gamma=1.0,
        scale=1.0,
    ),
    "brats": Profile(
        fov_mm=240,
        slice_mm=1.0,
        protocol={"t1": (450, 11), "t2": (3200, 90)},
        skull_stripped=True,
        lesions=True,
        bias_std=0.05,
        bias_radial=0.0,
        noise=0.008,
        blur_px=0.8,
        gamma=1.15,
        scale=300.0,
    ),
    "sms": Profile(
        fov_mm=230,
        slice_mm=4.0,
        protocol={"t1": (600, 15), "t2": (5000, 120)},
        skull_stripped=False,
        lesions=False,
        bias_std=0.2,
        bias_radial=0.35,
        noise=0.03,
        blur_px=0.4,
        gamma=0.9,
        scale=2.5,
    ),
    "umr": Profile(
        fov_mm=220,
        slice_mm=3.0,
        protocol={"t1": (400, 10), "t2": (3500, 100)},
        skull_stripped=False,
        lesions=False,
        bias_std=0.18,
        bias_radial=-0.2,
        noise=0.04,
        blur_px=0.6,
        gamma=0.85,
        scale=0.6,
    ),
}

# Tissue (T1 ms, T2 ms, PD) ranges at 1.5-3 T; each subject draws its own values inside them.
TISSUES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "csf": ((3000, 4000), (1500, 2500), (0.97, 1.0)),
    "gm": ((1050, 1400), (85, 110), (0.78, 0.82)),
    "wm": ((700, 850), (70, 80), (0.68, 0.72)),
    "oedema": ((1400, 1600), (140, 160), (0.88, 0.92)),
    "necrosis": ((2800, 3200), (900, 1100), (0.98, 1.0)),
    "bone": ((400, 600), (15, 25), (0.03, 0.07)),
    "marrow": ((350, 450), (80, 110), (0.5, 0.65)),
    "fat": ((300, 400), (100, 140), (0.85, 0.95)),
    "skin": ((900, 1100), (40, 50), (0.65, 0.75)),
}

# Layers outside the brain, inside out, with (min, max) thickness in mm; the background follows.
HEAD_LAYERS: tuple[tuple[str, tuple[float, float]], ...] = (
    ("csf", (1.0, 3.0)),
    ("bone", (1.5, 2.5)),
    ("marrow", (1.5, 3.0)),
    ("bone", (1.0, 2.0)),
    ("fat", (2.0, 5.0)),
    ("skin", (1.5, 3.0)),
)

_TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
_VENTRICLES = (98.0, 136.0)  # in-plane (x, y) voxel centre of the lateral ventricles in the template
_SLAB = (28, 150)  # template z range (voxels, 1 mm) that the simulated slices can reach
_DIST_STEP = 2  # the distance-to-brain map is computed on a 2 mm grid


# ----------------------------------------------------------------------------- template


@dataclass(frozen=True)
class _Template:
    """The ICBM152 tissue maps cropped to the axial slab, and the distance outside the brain."""

    gm: np.ndarray  # (X, Y, Z) uint8 probability * 255
    wm: np.ndarray
    brain: np.ndarray  # (X, Y, Z) uint8 0/255: the skull-stripped template's support
    dist_mm: np.ndarray  # (X/2, Y/2, Z/2) float32 distance outside the brain, full volume at 2 mm
    centre: tuple[float, float]  # in-plane (x, y) voxel centre of the brain


def _template_dir() -> Path:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("synthetic data needs the ICBM152 template shipped with 'nilearn'; install nilearn")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


@lru_cache(maxsize=1)
def _template() -> _Template:
    """Read the template once per process (nibabel only: importing nilearn itself is slow)."""
    folder = _template_dir()
    maps = {}
    for name, filename in _TEMPLATE_FILES.items():
        path = folder / filename
        if not path.is_file():
            raise UserError(f"synthetic data: template file {path} is missing; reinstall nilearn")
        maps[name] = np.asarray(nib.load(path).dataobj, dtype=np.uint8)
    brain = maps["t1"] > 0
    outside = ~brain[::_DIST_STEP, ::_DIST_STEP, ::_DIST_STEP]
    dist = ndimage.distance_transform_edt(outside).astype(np.float32) * _DIST_STEP
    xs, ys, _ = np.nonzero(brain)
    z0, z1 = _SLAB
    return _Template(
        gm=np.ascontiguousarray(maps["gm"][:, :, z0:z1]),
        wm=np.ascontiguousarray(maps["wm"][:, :, z0:z1]),
        brain=np.ascontiguousarray(brain[:, :, z0:z1].astype(np.uint8) * 255),
        dist_mm=dist,
        centre=((xs.min() + xs.max()) / 2.0, (ys.min() + ys.max()) / 2.0),
    )


def _site_maps(profile: Profile, size: int) -> dict[str, np.ndarray]:
    """Template maps blurred to the site's resolution: anti-aliasing in-plane, slice thickness across."""
    tpl = _template()
    pixel_mm = profile.fov_mm / size
    sigma = (0.35 * pixel_mm, 0.35 * pixel_mm, profile.slice_mm / np.sqrt(12.0))
    return {
        name: ndimage.gaussian_filter(arr, sigma, output=np.float32) / np.float32(255)
        for name, arr in (("gm", tpl.gm), ("wm", tpl.wm), ("brain", tpl.brain))
    }


# ----------------------------------------------------------------------------- anatomy


def _smooth_noise(rng: np.random.Generator, coords: np.ndarray, extent: np.ndarray, nodes: int) -> np.ndarray:
    """A smooth zero-mean random field, about unit std, at ``coords`` (D, ...) spanning ``extent`` (D,)."""
    grid = rng.standard_normal((nodes,) * len(extent)).astype(np.float32)
    scaled = coords * ((nodes - 1) / extent).reshape((-1,) + (1,) * (coords.ndim - 1))
    return ndimage.map_coordinates(grid, scaled, order=3, mode="nearest", output=np.float32)


def _elastic(rng: np.random.Generator, size: int, amplitude_mm: float) -> np.ndarray:
    """A smooth 2D displacement field (2, size, size) in mm, from a coarse random grid."""
    coarse = rng.standard_normal((2, 5, 5)) * amplitude_mm
    return np.stack([ndimage.zoom(c, size / 5.0, order=3, grid_mode=True, mode="nearest") for c in coarse])


def _slice_levels(rng: np.random.Generator, count: int) -> np.ndarray:
    """Template z levels (mm) of a subject's slices: centred on the lateral ventricles, jittered."""
    centre = 86.0 + rng.uniform(-4.0, 4.0)
    spacing = float(np.clip(50.0 / max(count - 1, 1), 0.5, 4.0)) * rng.uniform(0.9, 1.1)
    return centre + spacing * (np.arange(count) - (count - 1) / 2.0)


def _sample_points(rng: np.random.Generator, profile: Profile, size: int, count: int) -> np.ndarray:
    """Template voxel coordinates (3, S, N, N) of every output pixel: a subject's pose and shape."""
    tpl = _template()
    pixel_mm = profile.fov_mm / size
    axis = (np.arange(size) - (size - 1) / 2.0) * pixel_mm
    v, u = np.meshgrid(axis, axis, indexing="ij")  # u: left -> right, v: anterior -> posterior
    angle = np.deg2rad(rng.uniform(-8.0, 8.0))
    scale = rng.uniform(0.93, 1.07, size=2)
    shift = rng.uniform(-5.0, 5.0, size=2)
    tilt = rng.uniform(-0.06, 0.06, size=2)
    displacement = _elastic(rng, size, rng.uniform(1.0, 2.5))
    levels = _slice_levels(rng, count)
    cos, sin = np.cos(angle), np.sin(angle)
    pu = (cos * u - sin * v) * scale[0] + shift[0] + displacement[0]
    pv = (sin * u + cos * v) * scale[1] + shift[1] + displacement[1]
    pu, pv = _enlarge_ventricles(pu, pv, tpl.centre, rng.uniform(-0.05, 0.3))
    z = levels[:, None, None] + tilt[0] * pu + tilt[1] * pv - _SLAB[0]
    x = np.broadcast_to(tpl.centre[0] + pu, z.shape)
    y = np.broadcast_to(tpl.centre[1] - pv, z.shape)
    return np.stack([x, y, z]).astype(np.float32)


def _enlarge_ventricles(
    pu: np.ndarray, pv: np.ndarray, centre: tuple[float, float], strength: float
) -> tuple[np.ndarray, np.ndarray]:
    """Radial warp around the ventricles (atrophy with age): ``strength`` > 0 enlarges them."""
    du = pu - (_VENTRICLES[0] - centre[0])
    dv = pv + (_VENTRICLES[1] - centre[1])
    factor = 1.0 - strength * np.exp(-(du**2 + dv**2) / (2 * 22.0**2))
    return pu - du * (1.0 - factor), pv - dv * (1.0 - factor)


def _sample(volume: np.ndarray, points: np.ndarray) -> np.ndarray:
    return ndimage.map_coordinates(volume, points, order=1, mode="constant", cval=0.0, output=np.float32)


def _head_layers(
    rng: np.random.Generator, points: np.ndarray, outside: np.ndarray, pixel_mm: float
) -> dict[str, np.ndarray]:
    """Fractions of the extra-cerebral layers (CSF, skull, marrow, scalp fat, skin) around the brain."""
    tpl = _template()
    dist_points = points.copy()
    dist_points[2] += _SLAB[0]
    dist_points /= _DIST_STEP
    dist = ndimage.map_coordinates(tpl.dist_mm, dist_points, order=1, mode="nearest", output=np.float32)
    plane = points.shape[2:]
    grid = np.indices(plane, dtype=np.float32)
    dist = dist * np.exp(-0.15 * _smooth_noise(rng, grid, np.array(plane, np.float32), 5))  # uneven thickness
    edge = max(0.2 * pixel_mm, 0.3)  # partial volume of a layer boundary within one pixel
    fractions: dict[str, np.ndarray] = {}
    inner = np.zeros_like(dist)  # share of the pixel inside the current layer's outer boundary
    boundary = 0.0
    for name, (low, high) in HEAD_LAYERS:
        boundary += rng.uniform(low, high)
        within = expit((boundary - dist) / edge)
        fractions[name] = fractions.get(name, 0.0) + outside * (within - inner)
        inner = within
    return fractions


def _lesions(
    rng: np.random.Generator, points: np.ndarray, levels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Tumour fractions (oedema, necrotic core) in template space: irregular blobs centred in white matter."""
    tpl = _template()
    z_lo, z_hi = levels.min() - _SLAB[0], levels.max() - _SLAB[0]
    candidates = np.argwhere(tpl.wm[:, :, max(int(z_lo), 0) : int(z_hi) + 1] > 230).astype(np.float32)
    candidates[:, 2] += max(int(z_lo), 0)
    oedema = np.zeros(points.shape[1:], dtype=np.float32)
    core = np.zeros_like(oedema)
    for radius in (rng.uniform(14.0, 28.0), rng.uniform(6.0, 12.0))[: 1 + int(rng.random() < 0.35)]:
        centre = candidates[rng.integers(len(candidates))]
        offset = points - centre.reshape(3, 1, 1, 1)
        local = offset + 2.0 * radius  # lesion-local coordinates of the shape noise
        box = np.full(3, 4.0 * radius, dtype=np.float32)
        dist = np.sqrt((offset**2).sum(axis=0))
        shape = dist / (radius * (1.0 + 0.35 * _smooth_noise(rng, local, box, 5)))
        core_ratio = rng.uniform(0.3, 0.6)
        inner = dist / (radius * core_ratio * (1.0 + 0.3 * _smooth_noise(rng, local, box, 5)))
        oedema = np.maximum(oedema, expit((1.0 - shape) / 0.08))
        core = np.maximum(core, expit((1.0 - inner) / 0.1))
    return oedema, np.minimum(core, oedema)


def _anatomy(
    profile: Profile,
    size: int,
    count: int,
    lesions: bool,
    anatomy_rng: np.random.Generator,
    lesion_rng: np.random.Generator,
    maps: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Per-pixel tissue fractions (S, N, N) of one subject's slices; they sum to at most 1."""
    points = _sample_points(anatomy_rng, profile, size, count)
    gm, wm, brain = (_sample(maps[name], points) for name in ("gm", "wm", "brain"))
    brain = np.clip(brain, 0.0, 1.0)
    tissue = np.minimum(gm + wm, brain)
    fractions = {"gm": gm, "wm": wm, "csf": brain - tissue}
    if lesions:
        levels = points[2, :, size // 2, size // 2] + _SLAB[0]
        oedema, core = _lesions(lesion_rng, points, levels)
        spread = oedema * (wm + 0.4 * gm)  # oedema follows white matter tracts
        fractions["necrosis"] = core * tissue
        fractions["oedema"] = np.maximum(spread - fractions["necrosis"], 0.0)
        keep = 1.0 - np.minimum((fractions["necrosis"] + fractions["oedema"]) / np.maximum(tissue, 1e-6), 1.0)
        fractions["gm"], fractions["wm"] = gm * keep, wm * keep
    if not profile.skull_stripped:
        layers = _head_layers(anatomy_rng, points, 1.0 - brain, profile.fov_mm / size)
        for name, frac in layers.items():
            fractions[name] = fractions.get(name, 0.0) + frac
    return {name: np.clip(frac, 0.0, 1.0).astype(np.float32) for name, frac in fractions.items()}


def _tissue_parameters(rng: np.random.Generator) -> dict[str, tuple[float, float, float]]:
    """One subject's (T1, T2, PD) per tissue inside the literature ranges.

    Each quantity's position in its range is mostly shared by all tissues (field strength, scanner), so
    a subject never gets, say, white matter's longest T1 with grey matter's shortest.
    """
    shared = rng.random(3)
    params = {}
    for name, ranges in TISSUES.items():
        position = 0.8 * shared + 0.2 * rng.random(3)
        params[name] = tuple(lo + (hi - lo) * q for (lo, hi), q in zip(ranges, position, strict=True))
    return params


def _spin_echo(pd: float, t1: float, t2: float, tr: float, te: float) -> float:
    """Spin-echo signal of one tissue."""
    return pd * (1.0 - np.exp(-tr / t1)) * np.exp(-te / t2)


def _signal(
    fractions: dict[str, np.ndarray], params: dict[str, tuple[float, float, float]], tr: float, te: float
) -> np.ndarray:
    """Noise-free magnitude (S, N, N): the fraction-weighted spin-echo signal of every tissue."""
    out = np.zeros_like(next(iter(fractions.values())))
    for name, frac in fractions.items():
        t1, t2, pd = params[name]
        out += np.float32(_spin_echo(pd, t1, t2, tr, te)) * frac
    return out


def _texture(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Fine multiplicative tissue texture (S, N, N) around 1: the heterogeneity an average template lacks."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), (0.5, 1.0, 1.0))
    return 1.0 + 0.04 * field / (field.std() + 1e-6)


# ----------------------------------------------------------------------------- acquisition


def _bias_field(rng: np.random.Generator, profile: Profile, shape: tuple[int, ...]) -> np.ndarray:
    """Smooth multiplicative coil/B1 field (S, N, N), geometric mean 1, in scanner coordinates."""
    grid = np.indices(shape, dtype=np.float32)
    # the field changes slowly along the slice axis: the whole stack spans a quarter of its grid
    extent = np.array([max(shape[0] - 1, 1) * 4.0, shape[1] - 1, shape[2] - 1], dtype=np.float32)
    log_field = profile.bias_std * _smooth_noise(rng, grid, extent, 4)
    radius2 = ((grid[1] / (shape[1] - 1) - 0.5) ** 2 + (grid[2] / (shape[2] - 1) - 0.5) ** 2) * 4.0
    log_field += profile.bias_radial * radius2
    return np.exp(log_field - log_field.mean())


def _acquire(
    signal: np.ndarray, bias: np.ndarray, profile: Profile, noise_scale: float, rng: np.random.Generator
) -> np.ndarray:
    """The site's image of a noise-free signal: bias, blur, Rician noise, intensity curve, scale."""
    image = signal * bias
    if profile.blur_px > 0:
        image = ndimage.gaussian_filter(image, (0, profile.blur_px, profile.blur_px))
    reference = float(np.percentile(image, 99)) or 1.0
    sigma = profile.noise * noise_scale * reference
    if sigma > 0:
        noise = rng.standard_normal((2, *image.shape), dtype=np.float32) * np.float32(sigma)
        image = np.sqrt((image + noise[0]) ** 2 + noise[1] ** 2)
    image = reference * (np.maximum(image, 0.0) / reference) ** profile.gamma
    return (image * profile.scale).astype(np.float32)


def _support(fractions: dict[str, np.ndarray]) -> np.ndarray:
    """Binary brain mask of a skull-stripped site: the background is exactly zero."""
    return (sum(fractions.values()) > 0.5).astype(np.float32)


@dataclass
class SimulatedSubject:
    """One subject's simulated slices: the images per contrast and the tissue fractions behind them."""

    images: dict[str, np.ndarray]  # contrast -> (S, N, N) float32 magnitude
    fractions: dict[str, np.ndarray]  # tissue -> (S, N, N) fraction


def simulate_subject(
    options: SyntheticOptions, seed: int, site: str, subject: str, maps: dict[str, np.ndarray] | None = None
) -> SimulatedSubject:
    """Generate one subject of a site; deterministic in (options, seed, site, subject)."""
    profile = PROFILES[options.profile]
    maps = maps if maps is not None else _site_maps(profile, options.size)

    def rng(*purpose: str) -> np.random.Generator:
        return np.random.default_rng(stable_seed(GENERATOR_VERSION, seed, site, subject, *purpose))

    lesions = profile.lesions if options.lesions is None else options.lesions
    fractions = _anatomy(
        profile, options.size, options.slices_per_subject, lesions, rng("anatomy"), rng("lesions"), maps
    )
    params = _tissue_parameters(rng("tissue"))
    bias = _bias_field(rng("bias"), profile, fractions["gm"].shape)
    texture = _texture(rng("texture"), fractions["gm"].shape)
    images = {}
    for contrast in options.contrasts:
        signal = _signal(fractions, params, *profile.protocol[contrast]) * texture
        image = _acquire(signal, bias, profile, options.noise_scale, rng("noise", contrast))
        images[contrast] = image * _support(fractions) if profile.skull_stripped else image
    return SimulatedSubject(images=images, fractions=fractions)


# ----------------------------------------------------------------------------- source


def subject_names(counts: SubjectCounts) -> dict[Split, list[str]]:
    """Subject ids of each split: numbered across splits, so no subject is in two splits."""
    names: dict[Split, list[str]] = {}
    start = 0
    for split in SPLITS:
        count = getattr(counts, split)
        names[split] = [f"sub-{i:03d}" for i in range(start, start + count)]
        start += count
    return names


class SyntheticSource(Source):
    """A simulated site: generates its volumes (or loads them from the cache) and serves slices."""

    def __init__(self, options: SyntheticOptions, context: SourceContext) -> None:
        self.options = options
        self.context = context
        self._dir: Path | None = None
        self._volumes: dict[str, list[VolumeInfo]] = {}
        self._offsets: dict[str, tuple[str, int]] = {}  # volume name -> (split, first row in the split array)
        self._arrays: dict[str, np.ndarray] = {}  # split -> lazily opened memory map

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_arrays"] = {}
        return state

    @property
    def cache_key(self) -> str:
        """Hash of everything the generated data depends on: generator version, seed, site and options."""
        spec = {
            "version": GENERATOR_VERSION,
            "seed": self.context.seed,
            "site": self.context.site,
            "options": self.options.model_dump(mode="json"),
        }
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
        return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', self.context.site)[:40]}-{digest}"

    def prepare(self) -> None:
        """Load the site from the cache, or generate it there first (atomically)."""
        final = Path(self.context.cache_dir) / "synthetic" / self.cache_key
        index = _read_index(final)
        if index is None:
            start = time.perf_counter()
            self._write_cache(final)
            logger.info(
                "generated synthetic site %r (profile %s) in %.1f s -> %s",
                self.context.site,
                self.options.profile,
                time.perf_counter() - start,
                final,
            )
            index = _read_index(final)
            if index is None:
                raise UserError(f"data.cache_dir: the synthetic cache {final} does not read back")
        self._load(final, index)

    def _write_cache(self, final: Path) -> None:
        """Generate into a temporary folder, then rename it: a killed run never leaves a cache that loads."""
        try:
            if final.exists():  # incomplete or corrupt
                shutil.rmtree(final)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = temp_dir(final.parent, f".tmp-{final.name}-")  # as readable as any folder created here
        except OSError as err:
            raise UserError(f"data.cache_dir: cannot write {final.parent} ({err.strerror or err})") from None
        try:
            self._generate(tmp)
            os.replace(tmp, final)
        except OSError as err:
            if _read_index(final) is None:  # unless another process finished the same cache first
                raise UserError(f"data.cache_dir: cannot write {final} ({err.strerror or err})") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _generate(self, folder: Path) -> None:
        profile = PROFILES[self.options.profile]
        maps = _site_maps(profile, self.options.size)
        index: dict[str, list[dict]] = {}
        for split, subjects in subject_names(self.options.subjects).items():
            stacks, entries, offset = [], [], 0
            for subject in subjects:
                sim = simulate_subject(self.options, self.context.seed, self.context.site, subject, maps)
                for contrast, image in sim.images.items():
                    entries.append(
                        {
                            "name": f"{subject}_{contrast}",
                            "subject": subject,
                            "contrast": contrast,
                            "num_slices": image.shape[0],
                            "shape": list(image.shape[1:]),
                            "offset": offset,
                        }
                    )
                    stacks.append(image)
                    offset += image.shape[0]
            np.save(folder / f"{split}.npy", np.concatenate(stacks).astype(np.float32))
            index[split] = entries
        index_text = json.dumps({"version": GENERATOR_VERSION, "volumes": index}, indent=1)
        (folder / "index.json").write_text(index_text)

    def _load(self, folder: Path, index: dict) -> None:
        self._dir = folder
        self._arrays = {}
        self._volumes, self._offsets = {}, {}
        for split in SPLITS:
            self._volumes[split] = []
            for entry in index["volumes"][split]:
                info = VolumeInfo(
                    entry["name"],
                    entry["subject"],
                    entry["contrast"],
                    entry["num_slices"],
                    tuple(entry["shape"]),
                )
                self._volumes[split].append(info)
                self._offsets[info.name] = (split, entry["offset"])

    def volumes(self, split: Split) -> list[VolumeInfo]:
        """The volumes of one split: each subject's contrasts in the configured order."""
        self._require_prepared()
        if split not in self._volumes:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return list(self._volumes[split])

    def read_slice(self, volume: VolumeInfo, index: int) -> np.ndarray:
        """Magnitude image (H, W) float32 of slice ``index`` of ``volume``."""
        self._require_prepared()
        if volume.name not in self._offsets:
            raise UserError(f"synthetic site {self.context.site!r} has no volume {volume.name!r}")
        if not 0 <= index < volume.num_slices:
            raise IndexError(f"slice {index} out of range: {volume.name!r} has {volume.num_slices} slices")
        split, offset = self._offsets[volume.name]
        if split not in self._arrays:
            self._arrays[split] = np.load(self._dir / f"{split}.npy", mmap_mode="r")
        return np.array(self._arrays[split][offset + index], dtype=np.float32)

    def _require_prepared(self) -> None:
        if self._dir is None:
            raise RuntimeError("SyntheticSource.prepare() must be called before reading volumes")


def _read_index(folder: Path) -> dict | None:
    """The cache's index if the folder holds a complete, consistent cache; otherwise None."""
    try:
        index = json.loads((folder / "index.json").read_text())
        if index.get("version") != GENERATOR_VERSION:
            return None
        for split in SPLITS:
            entries = index["volumes"][split]
            array = np.load(folder / f"{split}.npy", mmap_mode="r")
            expected = [sum(entry["num_slices"] for entry in entries), *entries[0]["shape"]]
            if array.dtype != np.float32 or list(array.shape) != expected:
                return None
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    return index
