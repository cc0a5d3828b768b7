"""A simulated subject's anatomy: per-pixel tissue fractions of its slices, from the ICBM152 template.

Each subject is the ICBM152 2009a symmetric template's anatomy (V. Fonov et al., "Unbiased average
age-appropriate atlases for pediatric studies", NeuroImage 2011: grey and white matter probability maps,
CSF = brain - GM - WM) under a random affine and elastic deformation, with enlarged ventricles, uneven
extra-cerebral layers (CSF, skull, marrow, scalp fat, skin) and, optionally, a tumour. Slices are axial
(the simulator's original plane) or, with the ``planes`` option (ours), coronal or sagittal: these
reach the whole template from the brainstem to the vertex, and below the template's last slice the
head's layers continue around the brainstem's cut end, a column down to the field of view's edge.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.special import expit

from data.simulation.folds import fold_cortex
from data.simulation.profiles import HEAD_LAYERS, Profile
from data.simulation.template import DIST_STEP, SLAB, smooth_noise, template, whole_template

_VENTRICLES = (98.0, 136.0)  # in-plane (x, y) voxel centre of the lateral ventricles in the template
# template voxel (mm) around which each plane's slices are stacked: axial slices at z 86 (the lateral
# ventricles, _slice_levels), coronal ones at y 117 (through the ventricles and thalami), sagittal ones at
# x 98 (the midline); the in-plane centre of coronal and sagittal slices is the brain's centre, z 80
_LEVEL_CENTRE = {"axial": 86.0, "coronal": 117.0, "sagittal": 98.0}
_PLANE_Z_CENTRE = 80.0
_ACROSS = {"axial": 2, "coronal": 1, "sagittal": 0}  # the template axis each plane's slices lie across


# realism: varied's range of head sizes relative to the template's (SyntheticOptions.head_scale: null)
VARIED_HEAD_SCALE = (0.8, 1.2)


def site_maps(profile: Profile, size: int, planes: tuple[str, ...] = ("axial",)) -> dict[str, np.ndarray]:
    """Template maps blurred to the site's resolution: anti-aliasing in-plane, slice thickness across.

    Axial slices: the axial slab of the template, blurred across z by the slice thickness (``gm``, ``wm``,
    ``brain``). Coronal or sagittal slices: the whole template, blurred by the slice thickness across y
    (coronal) or x (sagittal), as ``coronal.gm``, ``sagittal.gm``, ... (:func:`plane_maps`)."""
    pixel_mm = profile.fov_mm / size
    across = profile.slice_mm / np.sqrt(12.0)
    maps: dict[str, np.ndarray] = {}
    for plane in planes:
        sigma = [0.35 * pixel_mm] * 3
        if plane == "axial":
            tpl = template()
            arrays, prefix = (("gm", tpl.gm), ("wm", tpl.wm), ("brain", tpl.brain)), ""
        else:
            arrays, prefix = tuple(whole_template().items()), f"{plane}."
        sigma[_ACROSS[plane]] = across
        for name, arr in arrays:
            blurred = ndimage.gaussian_filter(arr, tuple(sigma), output=np.float32)
            maps[prefix + name] = blurred / np.float32(255)
    return maps


def plane_maps(maps: dict[str, np.ndarray], plane: str) -> dict[str, np.ndarray]:
    """The ``gm``, ``wm`` and ``brain`` maps of :func:`site_maps` made for ``plane``."""
    prefix = "" if plane == "axial" else f"{plane}."
    try:
        return {name: maps[prefix + name] for name in ("gm", "wm", "brain")}
    except KeyError:
        raise ValueError(f"{plane} slices need site_maps(..., planes) made with that plane") from None


# ----------------------------------------------------------------------------- anatomy


def _elastic(rng: np.random.Generator, size: int, amplitude_mm: float) -> np.ndarray:
    """A smooth 2D displacement field (2, size, size) in mm, from a coarse random grid."""
    coarse = rng.standard_normal((2, 5, 5)) * amplitude_mm
    return np.stack([ndimage.zoom(c, size / 5.0, order=3, grid_mode=True, mode="nearest") for c in coarse])


def _slice_levels(rng: np.random.Generator, count: int) -> np.ndarray:
    """Template z levels (mm) of a subject's slices: centred on the lateral ventricles, jittered."""
    centre = 86.0 + rng.uniform(-4.0, 4.0)
    spacing = float(np.clip(50.0 / max(count - 1, 1), 0.5, 4.0)) * rng.uniform(0.9, 1.1)
    return centre + spacing * (np.arange(count) - (count - 1) / 2.0)


def _sample_points(
    rng: np.random.Generator,
    profile: Profile,
    size: int,
    count: int,
    varied: np.random.Generator | None = None,
    plane: str = "axial",
    z0: int = SLAB[0],
    head_scale: tuple[float, float] = VARIED_HEAD_SCALE,
) -> np.ndarray:
    """Template voxel coordinates (3, S, N, N) of every output pixel: a subject's pose and shape.

    ``varied`` (``realism: varied``) draws a wider pose (head size ``head_scale`` of the template's,
    default 0.8-1.2, shifts up to 15 mm) and adds a fine elastic deformation (a 12 x 12 grid, up to
    1.2 mm): folds of the subject's own.
    ``plane``: axial (rows anterior to posterior, columns left to right), coronal (rows superior to
    inferior, columns left to right) or sagittal (rows superior to inferior, columns anterior to
    posterior). ``z0``: the template z of the maps' first slice (the returned z is relative to it).
    """
    tpl = template()
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
    if varied is not None:
        zoom = varied.uniform(*head_scale)
        fine = ndimage.zoom(
            varied.standard_normal((2, 12, 12)) * varied.uniform(0.4, 1.2),
            size / 12.0,
            order=3,
            grid_mode=True,
            mode="nearest",
        )
        pu = pu / zoom + varied.uniform(-15.0, 15.0) + fine[0]
        pv = pv / zoom + varied.uniform(-15.0, 15.0) + fine[1]
    strength = rng.uniform(-0.05, 0.3)
    if plane == "axial":
        pu, pv = _enlarge_ventricles(pu, pv, tpl.centre, strength)
        z = levels[:, None, None] + tilt[0] * pu + tilt[1] * pv - z0
        x = np.broadcast_to(tpl.centre[0] + pu, z.shape)
        y = np.broadcast_to(tpl.centre[1] - pv, z.shape)
        return np.stack([x, y, z]).astype(np.float32)
    offset = _LEVEL_CENTRE[plane] - _LEVEL_CENTRE["axial"]
    across = levels[:, None, None] + offset + tilt[0] * pu + tilt[1] * pv
    z = np.broadcast_to(_PLANE_Z_CENTRE - pv, across.shape)
    if plane == "coronal":
        x, y = np.broadcast_to(tpl.centre[0] + pu, across.shape), across
    else:
        x, y = across, np.broadcast_to(tpl.centre[1] - pu, across.shape)
    x, y, z = _enlarge_ventricles_3d(x, y, z, strength)
    return np.stack([x, y, z - z0]).astype(np.float32)


def _enlarge_ventricles_3d(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, strength: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_enlarge_ventricles` for template voxel coordinates of any plane: a radial warp around the
    lateral ventricles' centre (x, y as in the axial plane, z at the axial slices' centre)."""
    centre = (_VENTRICLES[0], _VENTRICLES[1], _LEVEL_CENTRE["axial"])
    d = [c - c0 for c, c0 in zip((x, y, z), centre, strict=True)]
    factor = 1.0 - strength * np.exp(-(d[0] ** 2 + d[1] ** 2 + d[2] ** 2) / (2 * 22.0**2))
    return tuple(c - dc * (1.0 - factor) for c, dc in zip((x, y, z), d, strict=True))


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
    rng: np.random.Generator, points: np.ndarray, outside: np.ndarray, pixel_mm: float, z0: int = SLAB[0]
) -> dict[str, np.ndarray]:
    """Fractions of the extra-cerebral layers (CSF, skull, marrow, scalp fat, skin) around the brain."""
    tpl = template()
    dist_points = points.copy()
    dist_points[2] += z0
    dist_points /= DIST_STEP
    dist = ndimage.map_coordinates(tpl.dist_mm, dist_points, order=1, mode="nearest", output=np.float32)
    plane = points.shape[2:]
    grid = np.indices(plane, dtype=np.float32)
    dist = dist * np.exp(-0.15 * smooth_noise(rng, grid, np.array(plane, np.float32), 5))  # uneven thickness
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
    tpl = template()
    z_lo, z_hi = levels.min() - SLAB[0], levels.max() - SLAB[0]
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
        shape = dist / (radius * (1.0 + 0.35 * smooth_noise(rng, local, box, 5)))
        core_ratio = rng.uniform(0.3, 0.6)
        inner = dist / (radius * core_ratio * (1.0 + 0.3 * smooth_noise(rng, local, box, 5)))
        oedema = np.maximum(oedema, expit((1.0 - shape) / 0.08))
        core = np.maximum(core, expit((1.0 - inner) / 0.1))
    return oedema, np.minimum(core, oedema)


def tissue_fractions(
    profile: Profile,
    size: int,
    count: int,
    lesions: bool,
    anatomy_rng: np.random.Generator,
    lesion_rng: np.random.Generator,
    maps: dict[str, np.ndarray],
    varied: np.random.Generator | None,
    stripped: bool,
    plane: str = "axial",
    head_scale: tuple[float, float] = VARIED_HEAD_SCALE,
    folds: np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """Per-pixel tissue fractions (S, N, N) of one subject's slices; they sum to at most 1.

    ``varied``: the random source of ``realism: varied`` (wider pose, fine deformation, any in-plane
    orientation); None keeps the template's pose. ``stripped``: the brain only, without the layers
    outside it. ``plane``: the slices' plane (axial, coronal or sagittal); a plane other than axial needs
    the maps of :func:`site_maps` made for it. ``head_scale``: the range of ``varied``'s head sizes.
    ``folds``: the random source of the subject's own gyri and sulci (:func:`_folds`); None keeps the
    template's cortex.
    """
    maps = plane_maps(maps, plane)
    z0 = SLAB[0] if plane == "axial" else 0  # the template z of the maps' first slice
    points = _sample_points(anatomy_rng, profile, size, count, varied, plane, z0, head_scale)
    gm, wm, brain = (_sample(maps[name], points) for name in ("gm", "wm", "brain"))
    brain = np.clip(brain, 0.0, 1.0)
    tissue = np.minimum(gm + wm, brain)
    if folds is not None:  # sulcal CSF: what the folds take from the tissue
        gm, wm = fold_cortex(folds, points, z0, tissue, gm, wm)
        tissue = gm + wm
    fractions = {"gm": gm, "wm": wm, "csf": brain - tissue}
    if lesions:
        if plane == "axial":
            levels = points[2, :, size // 2, size // 2] + z0
            oedema, core = _lesions(lesion_rng, points, levels)
        else:  # tumours in the white matter of the slab the slices cross
            levels = np.clip(points[2] + z0, SLAB[0], SLAB[1] - 1)
            slab_points = points.copy()
            slab_points[2] += z0 - SLAB[0]
            oedema, core = _lesions(lesion_rng, slab_points, np.array([levels.min(), levels.max()]))
        spread = oedema * (wm + 0.4 * gm)  # oedema follows white matter tracts
        fractions["necrosis"] = core * tissue
        fractions["oedema"] = np.maximum(spread - fractions["necrosis"], 0.0)
        keep = 1.0 - np.minimum((fractions["necrosis"] + fractions["oedema"]) / np.maximum(tissue, 1e-6), 1.0)
        fractions["gm"], fractions["wm"] = gm * keep, wm * keep
    if not stripped:
        layers = _head_layers(anatomy_rng, points, 1.0 - brain, profile.fov_mm / size, z0)
        for name, frac in layers.items():
            fractions[name] = fractions.get(name, 0.0) + frac
    out = {name: np.clip(frac, 0.0, 1.0).astype(np.float32) for name, frac in fractions.items()}
    if varied is not None:  # scanners store slices in any in-plane orientation
        turns, flip = int(varied.integers(4)), bool(varied.integers(2))
        for name, frac in out.items():
            frac = np.rot90(frac, turns, axes=(1, 2))
            out[name] = np.ascontiguousarray(frac[:, :, ::-1] if flip else frac)
    return out
