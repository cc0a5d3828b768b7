"""A study's figures from its rows: test PSNR per site (the comparison and each ablation, with their
intervals) and the compared methods' validation curves."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from study.records import Manifest
from study.rows import Row, reference_row


def bar_figures(folder: Path, manifest: Manifest, rows: list[Row]) -> list[Path]:
    """``psnr_per_site.png`` and ``ablation_<kind>.png``: PSNR per site and mean, with intervals (or
    stds), of every family's rows; an ablation's figure shows FedMRI's bars beside its variants'."""
    from utils.figures import grouped_bars

    out = []
    sites = manifest.sites
    reference = reference_row(rows)
    for family in ("comparison", *manifest.ablations):
        members = [r for r in rows if family in r.families]
        if not members:
            continue
        shown_as_reference = None  # an ablation's bars beside FedMRI's, whose runs it may share
        if family != "comparison" and reference is not None:
            same = next((r for r in members if r.same_runs(reference)), None)
            if same is None:
                members = [reference, *members]
            shown_as_reference = (same or reference).label
        series = {}
        for r in members:
            cells = [r.score(c, "psnr") for c in [*sites, "mean"]]
            series[r.label] = ([c[0] for c in cells], [c[1] if c[1] is not None else math.nan for c in cells])
        name = "psnr_per_site.png" if family == "comparison" else f"ablation_{family}.png"
        title = (
            "test PSNR per site" if family == "comparison" else f"FedMRI ablation: {family.replace('_', ' ')}"
        )
        grouped_bars(folder / "figures" / name, [*sites, "mean"], series, title=title,
                     reference=shown_as_reference)  # fmt: skip
        out.append(folder / "figures" / name)
    return out


def mean_curves(rows: list[Row], sites: list[str]) -> dict[str, list[float]]:
    """Per compared method: validation PSNR per round, the mean over sites and seeds (methods whose
    curves are of another length than the first method's are left out)."""
    curves = {}
    for r in rows:
        if "comparison" not in r.families:
            continue
        per_seed = [
            np.mean([rec.val_psnr[s] for s in sites if s in rec.val_psnr], axis=0)
            for rec in r.records.values()
            if all(s in rec.val_psnr for s in sites)
        ]
        lengths = {len(c) for c in per_seed}
        if per_seed and len(lengths) == 1:
            curves[r.label] = list(np.mean(per_seed, axis=0))
    if curves:
        length = len(next(iter(curves.values())))
        curves = {k: v for k, v in curves.items() if len(v) == length}
    return curves


def curve_figure(folder: Path, manifest: Manifest, rows: list[Row]) -> list[Path]:
    """``val_psnr.png``: the compared methods' validation curves, if any."""
    from utils.figures import metric_curves

    curves = mean_curves(rows, manifest.sites)
    if not curves:
        return []
    length = len(next(iter(curves.values())))
    path = folder / "figures" / "val_psnr.png"
    metric_curves(path, range(1, length + 1), curves, ylabel="validation PSNR, mean over sites (dB)")
    return [path]
