"""Figure layout: a tall titled grid keeps its title next to its panels, not a band of blank page away."""

import matplotlib.image
import numpy as np

from utils.figures import reconstruction_grid


def _longest_blank_band(path) -> int:
    """The most consecutive pixel rows that are white from edge to edge."""
    pixels = matplotlib.image.imread(str(path))[..., :3]
    blank = (pixels > 0.99).all(axis=(1, 2))
    longest = run = 0
    for is_blank in blank:
        run = run + 1 if is_blank else 0
        longest = max(longest, run)
    return longest


def test_tall_reconstruction_grid_has_no_blank_band_under_its_title(tmp_path):
    rng = np.random.default_rng(0)
    targets = [rng.random((32, 32)) + 0.5 for _ in range(4)]
    rows = [(f"method {i}", [t + 0.05 * rng.standard_normal(t.shape) for t in targets]) for i in range(15)]
    path = tmp_path / "grid.png"
    reconstruction_grid(path, ["a", "b", "c", "d"], targets, rows, title="seed 2")
    height = matplotlib.image.imread(str(path)).shape[0]
    panel_row = height / 16  # ground truth + 15 methods
    assert _longest_blank_band(path) < 0.5 * panel_row


def test_grid_panels_show_the_image_pixels_unsmoothed(tmp_path):
    """A 0/1 checkerboard stays two grey levels on screen: nearest-pixel display, no blending of
    neighbouring pixels (which would invent values the reconstruction does not have)."""
    board = (np.indices((96, 96)).sum(axis=0) % 2).astype(float)  # upsampled under 3x on screen
    path = tmp_path / "grid.png"
    reconstruction_grid(path, ["a"], [board], [("same", [board])])
    pixels = matplotlib.image.imread(str(path))[..., :3].mean(axis=2)
    height, width = pixels.shape
    panel = pixels[int(0.1 * height) : int(0.4 * height), int(0.3 * width) : int(0.7 * width)]
    intermediate = ((panel > 0.1) & (panel < 0.9)).mean()
    assert intermediate < 0.02, intermediate
