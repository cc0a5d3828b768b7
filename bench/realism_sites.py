"""The real volumes of the transfer check (bench/realism_volumes.py) at each simulated site: which
volumes a site is tested on, each fitted to the site's pixel size and matrix, written as a test-only
folder site."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from realism_debian import available  # noqa: E402
from realism_volumes import TEST_VOLUMES, RealVolume, read_real  # noqa: E402


def fit_to_site(volume: np.ndarray, pixel_mm: float, site_mm: float, size: int) -> np.ndarray:
    """Resample (S, H, W) to the site's pixel size, centre-crop/zero-pad to size x size, scale to [0, 1]."""
    from scipy import ndimage

    zoom = pixel_mm / site_mm
    out = np.zeros((volume.shape[0], size, size), dtype=np.float32)
    for i, image in enumerate(volume):
        resampled = np.maximum(ndimage.zoom(image, zoom, order=3), 0.0)
        h, w = resampled.shape
        top, left = (h - size) // 2, (w - size) // 2
        src = resampled[max(top, 0) : max(top, 0) + size, max(left, 0) : max(left, 0) + size]
        dy, dx = max(-top, 0), max(-left, 0)
        out[i, dy : dy + src.shape[0], dx : dx + src.shape[1]] = src
    return out / max(float(np.percentile(out, 99.9)), 1e-6)


def tested_on(volume: RealVolume, skull_stripped: bool, volumes: dict[str, RealVolume]) -> bool:
    """Whether a site (skull-stripped or whole-head) is tested on ``volume``: a skull-stripped site on
    brain-only volumes alone; a whole-head site on every volume but a brain-only copy of a whole-head
    volume it is tested on already."""
    if skull_stripped:
        return volume.skull_stripped
    return volume.stripped_from not in volumes


def write_real_sites(config: Any, folder: Path, volumes: dict[str, RealVolume] = TEST_VOLUMES) -> dict:
    """Write each site's real test volumes under ``folder/<site>/`` and return the test config dict.
    The volumes of a Debian package that is not installed are left out, with one line saying so."""
    import nibabel as nib

    from data.simulation import PROFILES

    volumes = available(volumes)
    sites = []
    for site in config.sites:
        source = site.source
        if source.kind != "synthetic":
            continue
        profile = PROFILES[source.profile]
        root = folder / site.name
        for name, real in volumes.items():
            if not tested_on(real, profile.skull_stripped, volumes):
                continue
            volume = fit_to_site(read_real(real), real.pixel_mm, profile.fov_mm / source.size, source.size)
            path = root / name / "real.nii.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(np.ascontiguousarray(np.moveaxis(volume, 0, -1)), np.eye(4)), str(path))
        sites.append(
            {
                "name": site.name,
                "source": {"kind": "folder", "root": str(root), "split": {"train": 0, "val": 0, "test": 1}},
                "mask": site.mask.model_dump(mode="json"),
                "batch_size": site.batch_size,
            }
        )
    test = config.to_dict()
    test["sites"] = sites
    return test
