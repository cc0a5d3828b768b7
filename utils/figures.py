"""Figures: reconstructions per site, validation curves, FedMRI's contrastive-term diagnostics, the
comparison and evaluation plots (bars, cross-site heatmap, reconstruction grid), and scatter panels of
embedded features."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from utils.io import atomic_write_bytes  # noqa: E402
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


def grouped_bars(
    path: str | Path,
    groups: Sequence[str],
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    ylabel: str = "test PSNR (dB)",
    title: str = "",
) -> None:
    """One group of bars per entry of ``groups`` (e.g. sites), one bar per series (e.g. method),
    with (means, stds) per series drawn as bar heights and error bars."""
    n = max(len(series), 1)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) * max(1.0, n / 4)), 4.0))
    x = np.arange(len(groups))
    lows = []
    colours = plt.cm.tab20(np.arange(n) % 20) if n > 10 else [f"C{i}" for i in range(n)]
    for i, (name, (means, stds)) in enumerate(series.items()):
        ax.bar(
            x + (i - (n - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=name, color=colours[i]
        )
        lows.extend(np.asarray(means) - np.asarray(stds))
    if lows:
        finite = [v for v in lows if np.isfinite(v)]
        if finite:
            ax.set_ylim(bottom=max(0.0, min(finite) - 1.0))
    ax.set_xticks(x, groups)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=min(n, 4), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    if title:
        ax.set_title(title, fontsize=10)
    _save(fig, path)


def heatmap(
    path: str | Path,
    matrix: np.ndarray,
    rows: Sequence[str],
    cols: Sequence[str],
    title: str = "",
    xlabel: str = "test site",
    ylabel: str = "model of site",
) -> None:
    """A labelled matrix of values (e.g. PSNR of site i's model on site j's test data)."""
    matrix = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(1.3 * len(cols) + 2, 1.0 * len(rows) + 1.5))
    image = ax.imshow(matrix, cmap="viridis")
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            if np.isfinite(matrix[i, j]):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", color="w", fontsize=8)
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.colorbar(image, ax=ax, fraction=0.046)
    if title:
        ax.set_title(title, fontsize=10)
    _save(fig, path)


def reconstruction_grid(
    path: str | Path,
    columns: Sequence[str],
    targets: Sequence[np.ndarray],
    rows: Sequence[tuple[str, Sequence[np.ndarray | None]]],
    errors: bool = False,
    title: str = "",
) -> None:
    """Images in a grid: a ground-truth row, then one row per entry of ``rows`` (label, one image per
    column), each labelled with its PSNR/SSIM; ``errors`` draws |image - target| x5 instead."""
    all_rows = [("ground truth", list(targets)), *rows]
    # constrained layout places the title just above the panels; the default subplot margins are a
    # fraction of the figure, which on a tall grid leaves inches of blank page under the title
    fig, axes = plt.subplots(
        len(all_rows),
        len(columns),
        figsize=(2.3 * len(columns), 2.4 * len(all_rows)),
        squeeze=False,
        layout="constrained",
    )
    for r, (label, images) in enumerate(all_rows):
        for c, image in enumerate(images):
            ax = axes[r][c]
            ax.axis("off")
            if image is None:
                continue
            target = targets[c]
            vmax = float(target.max()) or 1.0
            # nearest: each image pixel as it is, not blended with its neighbours on screen
            if errors and r > 0:
                shown, cmap, top = np.abs(image - target), "inferno", vmax / 5
            else:
                shown, cmap, top = image, "gray", vmax
            ax.imshow(shown, cmap=cmap, vmin=0, vmax=top, interpolation="nearest")
            text = label if r > 0 else columns[c]
            if r > 0:
                text += "\n" + _label(target, image, vmax)
            ax.set_title(text, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, path)


def contrastive_diagnostics(path: str | Path, rows: Mapping[str, Mapping[int, Mapping[str, float]]]) -> None:
    """FedMRI's contrastive term per round and site: the penalty against the reconstruction loss, the
    fraction of encoder weights outside the negatives' range, and the encoder's distance from the
    server's encoder against the negatives' spread (both per weight)."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = (
        (axes[0], (("penalty", "-", "penalty"), ("loss_rec", ":", "loss_rec")), "loss (mean per step)", True),
        (axes[1], (("con_outside", "-", "outside"),), "fraction of encoder weights outside", False),
        (axes[2], (("con_dist", "-", "|theta - g|"), ("con_spread", ":", "spread")), "per weight", True),
    )
    for ax, series, ylabel, log in panels:
        for i, (site, by_round) in enumerate(rows.items()):
            rounds = sorted(by_round)
            for key, style, label in series:
                points = [(r, by_round[r][key]) for r in rounds if by_round[r].get(key) is not None]
                if points:
                    ax.plot(*zip(*points), style, marker="o", markersize=3, color=f"C{i}",
                            label=f"{site} {label}")  # fmt: skip
        ax.set_xlabel("round")
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2)
    axes[2].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    _save(fig, path)


def scatter_panels(
    path: str | Path,
    panels: Sequence[tuple[str, np.ndarray, Sequence[str]]],
    title: str = "",
) -> None:
    """One row of 2-D scatter plots (title, (N, 2) points, N group labels), each point coloured by its
    group with the same colour for a group in every panel, and one legend of the groups for the row."""
    groups = list(dict.fromkeys(label for _, _, labels in panels for label in labels))
    colours = {g: (plt.cm.tab20(i % 20) if len(groups) > 10 else f"C{i}") for i, g in enumerate(groups)}
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(3.6 * max(len(panels), 1), 3.9), squeeze=False)
    for ax, (name, points, labels) in zip(axes[0], panels):
        points, labels = np.asarray(points, dtype=float).reshape(-1, 2), np.asarray(labels)
        for group in groups:
            chosen = points[labels == group]
            if len(chosen):
                ax.scatter(chosen[:, 0], chosen[:, 1], s=9, alpha=0.75, color=colours[group], linewidths=0)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [
        plt.Line2D([], [], marker="o", linestyle="", color=colours[g], markersize=6, label=g) for g in groups
    ]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(groups), 6), fontsize=8,
               bbox_to_anchor=(0.5, -0.02), frameon=False)  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    _save(fig, path)
