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
from matplotlib.colors import PowerNorm  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from utils.io import atomic_write_bytes  # noqa: E402
from utils.metrics import psnr, ssim  # noqa: E402


def _save(fig, path: str | Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


# Every series of a figure gets its own colour, line style and marker: ten colours, three line styles
# (30 pairs) and seven markers (coprime with ten), so that at least 16 methods stay apart in print and for
# readers who tell fewer colours apart.
COLOURS = plt.cm.tab10.colors
LINE_STYLES = ("-", "--", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
HATCHES = ("", "//", "..")
SATURATION = 99.5  # percent of the error pixels of a figure below its colour scale's top


def series_style(i: int) -> dict:
    """Colour, line style and marker of series ``i`` (distinct pairs for the first 30 series)."""
    return {
        "color": COLOURS[i % len(COLOURS)],
        "linestyle": LINE_STYLES[(i // len(COLOURS)) % len(LINE_STYLES)],
        "marker": MARKERS[i % len(MARKERS)],
    }


def error_scale(errors: Sequence[np.ndarray]) -> float:
    """The top of a figure's shared error colour scale: the :data:`SATURATION` percentile of every error
    pixel shown, rounded up to 1, 2 or 5 x 10^k, so that only the brightest few pixels saturate."""
    values = np.concatenate([np.ravel(e) for e in errors]) if errors else np.zeros(1)
    top = float(np.percentile(values, SATURATION)) if values.size else 0.0
    if not np.isfinite(top) or top <= 0:
        return 1.0
    power = 10 ** np.floor(np.log10(top))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= top))


def error_norm(top: float) -> PowerNorm:
    """The error maps' colour scale: square root from 0 to ``top``, so that the small errors of a good
    reconstruction show beside the large ones of the zero-filled input, none saturating but the
    brightest few pixels."""
    return PowerNorm(gamma=0.5, vmin=0.0, vmax=top)


def relative_error(image: np.ndarray, target: np.ndarray) -> np.ndarray:
    """|image - target| as a fraction of the ground truth's maximum (comparable across sites)."""
    return np.abs(np.asarray(image, dtype=np.float64) - target) / (float(np.max(target)) or 1.0)


ERROR_LABEL = "|error| / max(ground truth)"


def reconstruction_row(
    path: str | Path, zero_filled: np.ndarray, recon: np.ndarray, target: np.ndarray, title: str = ""
) -> None:
    """One slice as zero-filled | reconstruction | ground truth | |error|, with PSNR/SSIM labels; the
    error map has a colour bar (the error as a fraction of the ground truth's maximum)."""
    vmax = float(target.max()) or 1.0
    error = relative_error(recon, target)
    top = error_scale([error])
    panels = [
        (zero_filled, "zero-filled input", _label(target, zero_filled, vmax)),
        (recon, "reconstruction", _label(target, recon, vmax)),
        (target, "ground truth", ""),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(12.5, 3.4), layout="constrained")
    for ax, (image, name, label) in zip(axes, panels):
        ax.imshow(image, cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(f"{name}\n{label}" if label else name, fontsize=9)
        ax.axis("off")
    shown = axes[3].imshow(error, cmap="inferno", norm=error_norm(top), interpolation="nearest")
    axes[3].set_title("|reconstruction - ground truth|", fontsize=9)
    axes[3].axis("off")
    bar = fig.colorbar(shown, ax=axes[3], fraction=0.046, extend="max")
    bar.set_label(ERROR_LABEL, fontsize=8)
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
    ylabel: str = "validation PSNR (dB)",
    title: str = "",
) -> None:
    """One line per series (a site, a method) over rounds (e.g. validation PSNR), each in its own colour,
    line style and marker (:func:`series_style`), with the legend beside the axes, not over the data."""
    fig, ax = plt.subplots(figsize=(7.2, 4.0))
    rounds = list(rounds)
    every = max(1, len(rounds) // 12)  # markers that tell the lines apart without hiding them
    for i, (name, series) in enumerate(values.items()):
        ax.plot(rounds[: len(series)], series, markersize=4, markevery=every, linewidth=1.4,
                label=name, **series_style(i))  # fmt: skip
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _save(fig, path)


def grouped_bars(
    path: str | Path,
    groups: Sequence[str],
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    ylabel: str = "test PSNR (dB)",
    title: str = "",
    reference: str | None = None,
) -> None:
    """One group of bars per entry of ``groups`` (e.g. sites), one bar per series (e.g. method), with
    (means, stds) per series drawn as bar heights and error bars. The axis starts at zero (a bar's
    length is its value), each bar is labelled with its value when there are few, and the series
    ``reference`` (e.g. FedMRI in an ablation) is drawn grey and named as the reference."""
    n = max(len(series), 1)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) * max(1.0, n / 4)), 4.2))
    x = np.arange(len(groups))
    others = 0
    for i, (name, (means, stds)) in enumerate(series.items()):
        if name == reference:
            style = {"color": "0.65", "label": f"{name} (reference)"}
        else:
            hatch = HATCHES[(others // len(COLOURS)) % len(HATCHES)]
            style = {
                "color": COLOURS[others % len(COLOURS)],
                "label": name,
                "hatch": hatch,
                "edgecolor": "white",
            }
            others += 1
        positions = x + (i - (n - 1) / 2) * width
        bars = ax.bar(positions, means, width, yerr=stds, capsize=2, **style)
        if n <= 4:  # few bars: each value inside its bar, clear of the error bar above it
            ax.bar_label(bars, labels=[f"{m:.2f}" if np.isfinite(m) else "" for m in means], fontsize=7,
                         label_type="center", rotation=90, color="white")  # fmt: skip
    ax.set_ylim(bottom=0)
    ax.set_xticks(x, groups)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=min(n, 4), loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
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
    column), each row named on its left and each panel labelled with its PSNR/SSIM. ``errors`` draws
    |image - target| instead, as a fraction of the column's ground-truth maximum, on one colour scale
    for the whole figure (its colour bar beside the panels)."""
    all_rows = [("ground truth", list(targets)), *rows]
    top = None
    if errors:
        shown = [relative_error(image, targets[c]) for _, images in rows for c, image in enumerate(images)
                 if image is not None]  # fmt: skip
        top = error_scale(shown)
    # constrained layout places the title just above the panels; the default subplot margins are a
    # fraction of the figure, which on a tall grid leaves inches of blank page under the title
    fig, axes = plt.subplots(
        len(all_rows),
        len(columns),
        figsize=(2.3 * len(columns) + (0.9 if errors else 0.3), 2.4 * len(all_rows)),
        squeeze=False,
        layout="constrained",
    )
    mappable = None
    for r, (label, images) in enumerate(all_rows):
        for c, image in enumerate(images):
            ax = axes[r][c]
            _bare(ax)
            if c == 0:
                ax.set_ylabel(label, fontsize=9, fontweight="bold")
            if image is None:
                continue
            target = targets[c]
            vmax = float(target.max()) or 1.0
            # nearest: each image pixel as it is, not blended with its neighbours on screen
            if errors and r > 0:
                mappable = ax.imshow(relative_error(image, target), cmap="inferno", norm=error_norm(top),
                                     interpolation="nearest")  # fmt: skip
            else:
                ax.imshow(image, cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
            ax.set_title(columns[c] if r == 0 else _label(target, image, vmax), fontsize=7)
    if mappable is not None:  # beside the first error rows, where a reader starts
        shrink = min(1.0, 3.0 / max(1, len(rows)))
        bar = fig.colorbar(mappable, ax=axes[1:, :], shrink=shrink, aspect=15, extend="max",
                           pad=0.01, anchor=(0.0, 1.0), panchor=(1.0, 1.0))  # fmt: skip
        bar.set_label(ERROR_LABEL, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, path)


def _bare(ax) -> None:
    """An image panel: no ticks, no frame, but room for a row label on its left."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def contrastive_diagnostics(path: str | Path, rows: Mapping[str, Mapping[int, Mapping[str, float]]]) -> None:
    """FedMRI's contrastive term per round and site, one titled panel per question: the penalty against
    the reconstruction loss; the fraction of encoder weights outside the negatives' range (the term's
    zero-gradient plateau); and the encoder's distance from the server's encoder against the negatives'
    spread (both the mean absolute difference per weight). Sites are colours (one legend, below the
    panels); the line style tells a panel's two quantities apart, as its title says."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    panels = (
        (axes[0], ("penalty", "loss_rec"), "penalty beta x L_con (solid)\n"
         "against the reconstruction loss (dotted)", "loss, mean per step", True),
        (axes[1], ("con_outside",), "encoder weights outside the range\nof the negatives (previous encoders)",
         "fraction of encoder weights", False),
        (axes[2], ("con_dist", "con_spread"), "encoder's distance from the server's (solid)\n"
         "against the negatives' spread (dotted)", "mean |difference| per weight", True),
    )  # fmt: skip
    for ax, keys, title, ylabel, log in panels:
        for i, by_round in enumerate(rows.values()):
            rounds = sorted(by_round)
            for key, style in zip(keys, ("-", ":")):
                points = [(r, by_round[r][key]) for r in rounds if by_round[r].get(key) is not None]
                if points:
                    ax.plot(*zip(*points), style, marker=MARKERS[i % len(MARKERS)], markersize=3,
                            color=COLOURS[i % len(COLOURS)])  # fmt: skip
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[1].set_ylim(0, 1.02)
    handles = [
        plt.Line2D(
            [],
            [],
            color=COLOURS[i % len(COLOURS)],
            marker=MARKERS[i % len(MARKERS)],
            markersize=4,
            label=site,
        )  # fmt: skip
        for i, site in enumerate(rows)
    ]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    _save(fig, path)


def scatter_panels(
    path: str | Path,
    panels: Sequence[tuple[str, np.ndarray, Sequence[str]]],
    title: str = "",
) -> None:
    """One row of 2-D scatter plots (title, (N, 2) points, N group labels), each point coloured by its
    group with the same colour for a group in every panel, and one legend of the groups for the row."""
    groups = list(dict.fromkeys(label for _, _, labels in panels for label in labels))
    colours = {g: (plt.cm.tab20(i % 20) if len(groups) > 10 else COLOURS[i]) for i, g in enumerate(groups)}
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
