"""The ICBM152 template the simulated anatomy is drawn from, and smooth random fields in its space.

The ICBM152 2009a symmetric template (V. Fonov et al., "Unbiased average age-appropriate atlases for
pediatric studies", NeuroImage 2011) ships with nilearn: its T1 image (whose support is the brain) and
grey and white matter probability maps, read with nibabel once per process.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from utils.errors import UserError

TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
SLAB = (28, 150)  # template z range (voxels, 1 mm) that the simulated axial slices can reach
DIST_STEP = 2  # the distance and depth maps are computed on a 2 mm grid


@dataclass(frozen=True)
class Template:
    """The ICBM152 tissue maps cropped to the axial slab, and the distance outside and depth inside the
    brain."""

    gm: np.ndarray  # (X, Y, Z) uint8 probability * 255
    wm: np.ndarray
    brain: np.ndarray  # (X, Y, Z) uint8 0/255: the skull-stripped template's support
    dist_mm: np.ndarray  # (X/2, Y/2, Z/2) float32 distance outside the brain, full volume at 2 mm
    depth_mm: np.ndarray  # (X/2, Y/2, Z/2) float32 depth inside the brain (distance to its surface), 2 mm
    centre: tuple[float, float]  # in-plane (x, y) voxel centre of the brain


def template_dir() -> Path:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("synthetic data needs the ICBM152 template shipped with 'nilearn'; install nilearn")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


@lru_cache(maxsize=1)
def template() -> Template:
    """Read the template once per process (nibabel only: importing nilearn itself is slow)."""
    folder = template_dir()
    maps = {}
    for name, filename in TEMPLATE_FILES.items():
        path = folder / filename
        if not path.is_file():
            raise UserError(f"synthetic data: template file {path} is missing; reinstall nilearn")
        maps[name] = np.asarray(nib.load(path).dataobj, dtype=np.uint8)
    brain = maps["t1"] > 0
    outside = ~brain[::DIST_STEP, ::DIST_STEP, ::DIST_STEP]
    dist = ndimage.distance_transform_edt(outside).astype(np.float32) * DIST_STEP
    depth = ndimage.distance_transform_edt(~outside).astype(np.float32) * DIST_STEP
    xs, ys, _ = np.nonzero(brain)
    z0, z1 = SLAB
    return Template(
        gm=np.ascontiguousarray(maps["gm"][:, :, z0:z1]),
        wm=np.ascontiguousarray(maps["wm"][:, :, z0:z1]),
        brain=np.ascontiguousarray(brain[:, :, z0:z1].astype(np.uint8) * 255),
        dist_mm=dist,
        depth_mm=depth,
        centre=((xs.min() + xs.max()) / 2.0, (ys.min() + ys.max()) / 2.0),
    )


@lru_cache(maxsize=1)
def whole_template() -> dict[str, np.ndarray]:
    """The template's gm, wm and brain maps (uint8) over its whole depth: coronal and sagittal slices
    reach below and above the axial slab."""
    folder = template_dir()
    maps = {
        name: np.asarray(nib.load(folder / filename).dataobj, dtype=np.uint8)
        for name, filename in TEMPLATE_FILES.items()
    }
    return {"gm": maps["gm"], "wm": maps["wm"], "brain": (maps["t1"] > 0).astype(np.uint8) * 255}


@lru_cache(maxsize=1)
def depth_gradient() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The unit gradient (x, y, z; each X/2 x Y/2 x Z/2) of the template's smoothed depth map: the
    direction into the brain, away from its nearest surface."""
    depth = ndimage.gaussian_filter(template().depth_mm, 1.5)
    grads = np.gradient(depth)
    norm = np.maximum(np.sqrt(sum(g**2 for g in grads)), 1e-6)
    return tuple((g / norm).astype(np.float32) for g in grads)


def smooth_noise(rng: np.random.Generator, coords: np.ndarray, extent: np.ndarray, nodes: int) -> np.ndarray:
    """A smooth zero-mean random field, about unit std, at ``coords`` (D, ...) spanning ``extent`` (D,)."""
    grid = rng.standard_normal((nodes,) * len(extent)).astype(np.float32)
    scaled = coords * ((nodes - 1) / extent).reshape((-1,) + (1,) * (coords.ndim - 1))
    return ndimage.map_coordinates(grid, scaled, order=3, mode="nearest", output=np.float32)
