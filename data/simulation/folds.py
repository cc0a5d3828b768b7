"""A simulated subject's own gyri and sulci, cut into the template's smooth cortex (ours).

The template the anatomy is drawn from is an average of many brains, so its cortex is a smooth, blurred
ribbon with none of one subject's folding; real scans show sharp sulci. ``folded_fraction`` of the
synthetic source folds a share of the subjects with :func:`fold_cortex`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.special import expit

from data.simulation.template import DIST_STEP, depth_gradient, smooth_noise, template


def fold_cortex(
    rng: np.random.Generator, points: np.ndarray, z0: int, tissue: np.ndarray, gm: np.ndarray, wm: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A subject's own gyri and sulci (``folded_fraction``, ours): grey and white matter fractions
    (S, N, N) that replace the template's within the outer cortex; the tissue they leave is sulcal CSF.

    Sulci are thin sheets of CSF reaching 5-20 mm into the brain, lined on both sides by a 2-3.5 mm
    ribbon of grey matter around a core of white matter. They are the zero
    surface of a smooth random field in template space (so they run on from slice to slice), deepest
    where a second field says; a pixel's distance to its nearest sulcus is the field's value over its
    gradient. Deeper than the sulci reach, the template's own tissue is kept.
    """
    tpl = template()
    grid_points = points.copy()
    grid_points[2] += z0
    grid_points /= DIST_STEP
    depth = ndimage.map_coordinates(tpl.depth_mm, grid_points, order=1, mode="nearest", output=np.float32)
    # the random fields are read at each pixel's nearest point of the brain's surface (along the depth
    # map's gradient), so they do not change with depth: sulci are sheets that run in from the surface
    surface = np.stack(
        [
            ndimage.map_coordinates(g, grid_points, order=1, mode="nearest", output=np.float32)
            for g in depth_gradient()
        ]
    )
    surface = grid_points * DIST_STEP - depth * surface
    extent = np.full(3, 240.0, dtype=np.float32)  # template mm, isotropic node spacing
    wavelength = rng.uniform(6.0, 9.0)  # node spacing of the sulcal field: sulci some 12-18 mm apart
    field = smooth_noise(rng, surface, extent, int(240.0 / wavelength) + 1)
    reach = np.clip(12.0 + 4.0 * smooth_noise(rng, surface, extent, 12), 5.0, 20.0)
    # in-plane spacing of the pixels in template mm (head size and pose included)
    step = np.sqrt(((points[:, :, 1:, :] - points[:, :, :-1, :]) ** 2).sum(axis=0)).mean(axis=(1, 2))
    mm = step.reshape(-1, 1, 1).astype(np.float32)
    rows, cols = np.gradient(field, axis=(1, 2))
    slope = np.sqrt(rows**2 + cols**2) / mm  # field units per mm
    to_sulcus = np.abs(field) / np.maximum(slope, 1e-3)  # mm to the sulcal sheet, in plane
    beyond = np.maximum(depth - reach, 0.0)  # below a sulcus's fundus: distance to its bottom edge
    to_sheet = np.sqrt(to_sulcus**2 + beyond**2)
    half_width = rng.uniform(0.4, 0.9)  # half the CSF sheet's width (mm)
    thickness = rng.uniform(2.2, 3.5)  # cortical grey matter
    edge = np.maximum(0.3 * mm, 0.3)  # partial volume within a pixel
    csf = expit((half_width - to_sheet) / edge) * (depth < reach)
    to_csf = np.minimum(depth, np.maximum(to_sheet - half_width, 0.0))
    grey = np.clip(expit((thickness - to_csf) / edge) - csf, 0.0, 1.0)
    white = np.clip(1.0 - grey - csf, 0.0, 1.0)
    zone = expit((reach + thickness + 2.0 - depth) / 1.5)  # the outer cortex, where the folds replace
    share = gm / np.maximum(gm + wm, 1e-6)  # the template's grey share, kept deeper
    new_gm = tissue * (zone * grey + (1.0 - zone) * share)
    new_wm = tissue * (zone * white + (1.0 - zone) * (1.0 - share))
    return new_gm, new_wm
