"""Render example slices of the four default simulated sites to ``docs/synthetic_sites.png``.

Run from the repository root: ``python docs/plot_synthetic.py``. Each row is one site: a subject's T1
and T2 slice as the plain template simulates them (``realism: template``), the same subject under the
site's settings in ``configs/default.yaml`` (its own orientation, pose, resolution and noise level), and,
beside them, a real brain scan fitted to the site's pixel size and matrix (the test volumes of
``bench/realism.py``, read from the installed ``dipy`` package; the column is left out without it).
Nothing is cached or left behind but the figure.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import realism  # noqa: E402

from data.simulation import PROFILES, simulate_subject  # noqa: E402
from data.sources.synthetic import SyntheticOptions  # noqa: E402
from utils.errors import UserError  # noqa: E402

SITES = ("fastmri", "brats", "sms", "umr")
REAL = {"fastmri": "aniso", "brats": "s0", "sms": "piesno", "umr": "aniso"}  # one real volume per row
OUTPUT = Path(__file__).resolve().parent / "synthetic_sites.png"


def brightest_t2_slice(stack: np.ndarray) -> int:
    """The slice with the most T2-bright pixels: through the ventricles, or through a lesion."""
    return int((stack > 0.5 * stack.max()).sum(axis=(1, 2)).argmax())


def real_slice(profile: str, size: int) -> np.ndarray | None:
    """The middle slice of the row's real volume at the site's pixel size and matrix, or None."""
    volume = realism.TEST_VOLUMES[REAL[profile]]
    try:
        data = realism.read_real(volume)
    except UserError:
        return None
    fitted = realism.fit_to_site(data, volume.pixel_mm, PROFILES[profile].fov_mm / size, size)
    return fitted[len(fitted) // 2]


def default_sources() -> dict[str, SyntheticOptions]:
    """The simulated sources of ``configs/default.yaml``, by profile."""
    from assembly.config import load_config

    config = load_config(ROOT / "configs" / "default.yaml")
    return {site.source.profile: site.source for site in config.sites if site.source.kind == "synthetic"}


def main() -> None:
    """Simulate one subject per site, plain and as the default config does, beside a real slice."""
    sources = default_sources()
    reals = {profile: real_slice(profile, sources[profile].size) for profile in SITES}
    columns = 4 + any(r is not None for r in reals.values())
    fig, axes = plt.subplots(len(SITES), columns, figsize=(1.9 * columns, 1.95 * len(SITES)))
    for row, profile in enumerate(SITES):
        col = 0
        plain = SyntheticOptions(profile=profile, size=sources[profile].size)
        for mode, options in (("template", plain), ("default", sources[profile])):
            images = simulate_subject(options, 0, profile, "sub-000").images
            index = brightest_t2_slice(images["t2"])
            for contrast in ("t1", "t2"):
                image = images[contrast][index]
                axes[row, col].imshow(image, cmap="gray", vmin=0, vmax=float(image.max()))
                axes[row, col].set_title(f"{profile} {contrast.upper()} ({mode})", fontsize=7)
                col += 1
        if columns > 4:
            image = reals[profile]
            if image is not None:
                axes[row, col].imshow(image, cmap="gray", vmin=0, vmax=float(image.max()))
                name = Path(realism.TEST_VOLUMES[REAL[profile]].path).name
                axes[row, col].set_title(f"real: {name}", fontsize=6)
        for ax in axes[row]:
            ax.axis("off")
    fig.tight_layout(pad=0.3)
    fig.savefig(OUTPUT, dpi=68)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
