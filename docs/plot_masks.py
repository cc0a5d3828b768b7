"""Render every undersampling mask kind at 4x on a 128 x 128 grid to ``docs/masks.png``.

Run from the repository root: ``python docs/plot_masks.py``. The ``file`` kind is shown with a
uniform_1d mask saved to a temporary ``.mat`` file, as the FedMRI authors store theirs.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import matplotlib
import scipy.io

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data import masks  # noqa: E402

SHAPE = (128, 128)
ACCELERATION = 4
SEED = 1
PANELS = (
    ("random_1d", {}),
    ("equispaced_1d", {}),
    ("equispaced_1d", {"exact_fraction": False}),
    ("uniform_1d", {}),
    ("random_2d", {}),
    ("radial_2d", {}),
    ("radial_2d", {"golden_angle": True}),
    ("poisson_2d", {}),
)
OUTPUT = Path(__file__).resolve().parent / "masks.png"


def main() -> None:
    """Draw one panel per kind (plus the variants in PANELS), titled with its measured acceleration."""
    fig, axes = plt.subplots(3, 3, figsize=(9, 9.6))
    with tempfile.TemporaryDirectory() as tmp:
        mat = Path(tmp) / "mask.mat"
        scipy.io.savemat(mat, {"mask": masks.create("uniform_1d", acceleration=ACCELERATION)(SHAPE, 0)})
        panels = [*((kind, {"acceleration": ACCELERATION, **extra}) for kind, extra in PANELS)]
        panels.append(("file", {"path": str(mat)}))
        for ax, (kind, params) in zip(axes.flat, panels, strict=True):
            mask = masks.create(kind, **params)(SHAPE, SEED)
            variant = "".join(f"\n{k}={v}" for k, v in params.items() if k not in ("acceleration", "path"))
            if kind == "file":
                variant = "\n(uniform_1d saved as .mat)"
            ax.imshow(mask, cmap="gray", interpolation="nearest")
            measured = masks.acceleration_of(mask)
            ax.set_title(f"{kind}{variant or chr(10)}\nmeasured {measured:.2f}x", fontsize=9)
            ax.set_axis_off()
    fig.suptitle(f"Masks at {ACCELERATION}x on {SHAPE[0]}x{SHAPE[1]} (white = sampled, DC at the centre)")
    fig.tight_layout()
    fig.savefig(OUTPUT, dpi=80)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
