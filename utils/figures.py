"""Figures written with every run: reconstructions per site and validation PSNR per round."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from utils.checkpoint import atomic_write_bytes  # noqa: E402
from utils.metrics import psnr, ssim  # noqa: E402


def _save(fig, path: str | Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def reconstruction_row(
    path: str | Path, zero_filled: np.ndarray, recon: np.ndarray, target: np.ndarray, title: str = ""
) -> None:
    """One slice as zero-filled | reconstruction | ground truth | |error| x5, with PSNR/SSIM labels."""
    vmax = float(target.max()) or 1.0
    error = np.abs(recon - target)
    panels = [
        (zero_filled, "zero-filled", _label(target, zero_filled, vmax)),
        (recon, "reconstruction", _label(target, recon, vmax)),
        (target, "ground truth", ""),
        (error, "|error| x5", ""),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))
    for ax, (image, name, label) in zip(axes, panels):
        scale = vmax / 5 if name.startswith("|error|") else vmax
        ax.imshow(image, cmap="gray" if not name.startswith("|error|") else "inferno", vmin=0, vmax=scale)
        ax.set_title(f"{name}\n{label}" if label else name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, path)


def _label(target: np.ndarray, image: np.ndarray, vmax: float) -> str:
    t, i = target[None], image[None]
    return f"PSNR {psnr(t, i, vmax):.2f} dB  SSIM {ssim(t, i, vmax):.3f}"


def metric_curves(
    path: str | Path,
    rounds: Sequence[int],
    values: Mapping[str, Sequence[float]],
    ylabel: str = "val PSNR (dB)",
) -> None:
    """One line per site over rounds (e.g. validation PSNR)."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for site, series in values.items():
        ax.plot(list(rounds)[: len(series)], series, marker="o", markersize=3, label=site)
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
