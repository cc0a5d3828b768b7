"""Every table and figure of a study's results folder, rebuilt from its raw files alone.

:func:`write_report` turns ``manifest.json``, ``runs/``, ``latent/`` and ``slices/``
(:mod:`study.records`) into ``comparison.md``, ``comparison.csv``, ``comparison.json``, ``claims.md`` and
``figures/``; ``claims.md`` ends with the study in one paragraph (:mod:`study.headline`). ``python
compare.py --report DIR`` calls it; training calls it too, after every run, so
every table a study shows can be rebuilt from the committed raw files byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from study.claims import claim_lines, claims_markdown
from study.figures import bar_figures, curve_figure
from study.headline import headline_markdown
from study.panels import latent_panels, tsne_figure
from study.records import load_study
from study.rows import rows_of
from study.slices import load_reconstructions, reconstruction_figures
from study.tables import csv_report, markdown_report, summary
from utils.errors import UserError
from utils.io import atomic_write_text


def write_report(folder: str | Path, log: Callable[[str], None] = print) -> str:
    """Rebuild ``comparison.md``/``.csv``/``.json``, ``claims.md`` and the figures of ``folder`` from its
    raw files; logs the claims and the tables, then a line naming what was written; returns the
    markdown."""
    folder = Path(folder)
    manifest, runs = load_study(folder)
    rows = rows_of(manifest, runs)
    if not rows:
        raise UserError(f"{folder}: no finished run yet (runs/*.json); nothing to report")
    # Every file is read and every table made before anything is written: a bad raw file leaves the
    # folder's earlier outputs as they were.
    text = markdown_report(manifest, rows)
    data = summary(manifest, rows)
    table = csv_report(data)
    lines = claim_lines(folder, manifest.sites, rows)
    claims = claims_markdown(rows, lines)
    if claims:
        claims += "\n## In short\n\n" + headline_markdown(rows, lines)
    latent = latent_panels(folder, rows)
    slices = load_reconstructions(folder, manifest)
    atomic_write_text(folder / "comparison.md", text)
    atomic_write_text(folder / "comparison.csv", table)
    atomic_write_text(folder / "comparison.json", json.dumps(data, indent=1, sort_keys=True) + "\n")
    if claims:
        atomic_write_text(folder / "claims.md", claims)
    bar_figures(folder, manifest, rows)
    curve_figure(folder, manifest, rows)
    tsne_figure(folder, latent)
    if slices is not None:
        reconstruction_figures(folder, slices)
    log(claims + "\n" + text if claims else text)
    drawn = f" (reconstructions of seed {slices[0]})" if slices is not None else ""
    log(f"wrote {folder}/comparison.md, .csv, .json and figures/{drawn} from {len(runs)} raw run file(s)")
    return text
