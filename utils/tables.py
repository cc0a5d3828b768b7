"""Markdown tables of metrics: mean ± std cells and the best value per column in bold."""

from __future__ import annotations

import math
from collections.abc import Sequence

# Per metric: digits shown and whether higher is better.
METRIC_FORMAT = {"nmse": (4, False), "psnr": (2, True), "ssim": (4, True)}
METRIC_TITLES = {"nmse": "NMSE (lower is better)", "psnr": "PSNR (dB)", "ssim": "SSIM"}


def cell(mean: float | None, std: float | None = None, digits: int = 2) -> str:
    """``mean ± std`` (or ``mean``, or ``–`` when missing) with a fixed number of digits."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if std is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def best_rows(values: Sequence[float | None], higher_is_better: bool) -> set[int]:
    """Indices of the best value(s), compared at the precision they are shown with."""
    finite = [(i, v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    if not finite:
        return set()
    target = max(v for _, v in finite) if higher_is_better else min(v for _, v in finite)
    return {i for i, v in finite if v == target}


def _cell_text(text: str) -> str:
    """One table cell: a line break becomes a space and a ``|`` is escaped, so that text from a user's
    file (a site's or regime's name, a control's text) cannot end the row or add a column."""
    return " ".join(str(text).splitlines()).replace("|", "\\|")


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A markdown table; ``align`` has one character per column, ``l`` or ``r`` (default: l then r)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(map(_cell_text, header)) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(map(_cell_text, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def metric_table(
    labels: Sequence[str],
    columns: Sequence[str],
    means: Sequence[Sequence[float | None]],
    stds: Sequence[Sequence[float | None]] | None,
    metric: str,
    first: str = "method",
    extra_rows: Sequence[Sequence[str]] = (),
) -> str:
    """Rows ``labels`` x ``columns`` of one metric, best per column in bold; ``extra_rows`` (e.g.
    the zero-filled input) are appended and never marked."""
    digits, higher = METRIC_FORMAT[metric]
    cells = [
        [cell(m, None if stds is None else stds[r][c], digits) for c, m in enumerate(row)]
        for r, row in enumerate(means)
    ]
    for c in range(len(columns)):
        shown = [None if row[c] is None else round(row[c], digits) for row in means]
        for r in best_rows(shown, higher):
            cells[r][c] = f"**{cells[r][c]}**"
    rows = [[label, *row] for label, row in zip(labels, cells)] + [list(r) for r in extra_rows]
    return markdown([first, *columns], rows)
