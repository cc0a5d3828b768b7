"""Render example slices of the four default simulated sites to ``docs/synthetic_sites.png``.

Run from the repository root: ``python docs/plot_synthetic.py``. The sites are generated into a
temporary cache, so this leaves nothing behind but the figure.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data.sources.base import SourceContext, VolumeInfo  # noqa: E402
from data.sources.synthetic import SyntheticOptions, SyntheticSource  # noqa: E402

SITES = (("fastmri", 96), ("brats", 112), ("sms", 128), ("umr", 128))
SUBJECTS = 3
OUTPUT = Path(__file__).resolve().parent / "synthetic_sites.png"


def brightest_t2_slice(source: SyntheticSource, volume: VolumeInfo) -> int:
    """The slice with the most T2-bright pixels: through the ventricles, or through a lesion."""
    stack = np.stack([source.read_slice(volume, i) for i in range(volume.num_slices)])
    return int((stack > 0.5 * stack.max()).sum(axis=(1, 2)).argmax())


def main() -> None:
    """Generate the default sites and save one row of T1/T2 example slices per site."""
    fig, axes = plt.subplots(len(SITES), 2 * SUBJECTS, figsize=(3.6 * SUBJECTS, 1.95 * len(SITES)))
    with tempfile.TemporaryDirectory() as cache:
        for row, (profile, size) in enumerate(SITES):
            options = SyntheticOptions(profile=profile, size=size)
            source = SyntheticSource(options, SourceContext(site=profile, seed=0, cache_dir=Path(cache)))
            source.prepare()
            volumes = source.volumes("train")
            col = 0
            for subject in sorted({v.subject for v in volumes})[:SUBJECTS]:
                pair = {v.contrast: v for v in volumes if v.subject == subject}
                index = brightest_t2_slice(source, pair["t2"])
                for contrast in ("t1", "t2"):
                    image = source.read_slice(pair[contrast], index)
                    ax = axes[row, col]
                    ax.imshow(image, cmap="gray", vmin=0, vmax=float(image.max()))
                    ax.set_title(f"{profile} {contrast.upper()} {subject} slice {index}", fontsize=7)
                    ax.axis("off")
                    col += 1
    fig.tight_layout(pad=0.3)
    fig.savefig(OUTPUT, dpi=68)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
