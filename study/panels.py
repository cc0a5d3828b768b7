"""A study's t-SNE panels, the FedMRI paper's four: SingleSet, FedAvg, FedMRI without and with the
contrastive term. Each run of those methods has its bottleneck features embedded once, into
``<results>/latent/<run>.json`` (:func:`embed_runs`); the figure and the latent claim read those files."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from study.records import LatentFile, ManifestRow, Separability, read_latent
from study.rows import Row, find_row, is_variant

TSNE_PANELS = (
    ("SingleSet", "singleset", ()),
    ("FedAvg", "fedavg", ()),
    ("FedMRI without L_con", "fedmri", ("fl.fedmri.beta=0",)),
    ("FedMRI", "fedmri", ()),
)


def latent_panels(folder: Path, rows: list[Row]) -> list[tuple[str, LatentFile]]:
    """The t-SNE panels whose latent files exist (the first such seed of each of the paper's four methods)."""
    panels = []
    for title, algorithm, overrides in TSNE_PANELS:
        row = find_row(rows, algorithm, overrides)
        if row is None:
            continue
        path = next(
            (p for s in row.seeds if os.path.lexists(p := folder / "latent" / f"{row.keys[s]}.json")), None
        )
        if path is not None:
            panels.append((title, read_latent(path)))
    return panels


def latent_scores(folder: Path, rows: list[Row]) -> dict[str, dict[int, Separability]]:
    """Per t-SNE method present: the site separability of each seed that has a latent file with a
    silhouette."""
    out: dict[str, dict[int, Separability]] = {}
    for title, algorithm, overrides in TSNE_PANELS:
        row = find_row(rows, algorithm, overrides)
        if row is None:
            continue
        for seed, key in row.keys.items():
            path = folder / "latent" / f"{key}.json"
            if os.path.lexists(path):  # present but no regular file: refused by read_latent, not skipped
                separability = read_latent(path).separability
                if separability.silhouette is not None:
                    out.setdefault(title, {})[seed] = separability
    return out


def tsne_figure(folder: Path, panels: list[tuple[str, LatentFile]]) -> list[Path]:
    """``figures/tsne.png`` from :func:`latent_panels`, if there is any panel."""
    if not panels:
        return []
    from study.latent import tsne_figure as draw

    path = folder / "figures" / "tsne.png"
    draw(path, panels)
    return [path]


def embed_runs(
    results: Path,
    planned: dict[str, tuple[Any, Path]],
    rows: Sequence[ManifestRow],
    log: Callable[[str], None],
    only: str | None = None,
) -> None:
    """The t-SNE embedding and site separability of bottleneck features (:func:`study.latent.latent_summary`)
    of every run of the paper's four t-SNE methods present (or of run ``only``), written once to
    ``<results>/latent/<run>.json``; ``planned`` maps a run to its config and run folder."""
    from study.latent import latent_summary
    from utils.io import atomic_write_text

    for title, algorithm, overrides in TSNE_PANELS:
        row = next((r for r in rows if is_variant(r.algorithm, r.overrides, algorithm, overrides)), None)
        if row is None:
            continue
        unfinished = []
        for key in row.runs.values():
            path = results / "latent" / f"{key}.json"
            if (only is not None and key != only) or path.is_file() or planned[key][0].model.kind != "unet":
                continue
            if not (planned[key][1] / "results.json").is_file():
                unfinished.append(key)
                continue
            summary = latent_summary(planned[key][1], seed=0)
            atomic_write_text(path, json.dumps(summary) + "\n")
            log(f"{title}: bottleneck features of {key} embedded -> {path}")
        if unfinished:
            log(f"{title}: not embedded, no finished run folder: {', '.join(unfinished)}")
