"""Per-round metrics of a run: ``metrics.csv`` (whole lines only) and TensorBoard scalars."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from utils.io import atomic_write_text

# Per site and round, on its training row: the loss without and the penalty alone (algorithms with a
# penalty), and what FedMRI's contrastive term sees at the end of the local fit (pos, neg, pos / neg,
# the fraction of encoder weights outside the negatives' range, the mean distance per weight from the
# server's encoder, and the negatives' mean absolute deviation per weight).
DIAGNOSTIC_COLUMNS = (
    "loss_rec",
    "penalty",
    "con_pos",
    "con_neg",
    "con_l_con",
    "con_outside",
    "con_dist",
    "con_spread",
)

METRIC_COLUMNS = (
    "round",
    "site",
    "split",
    "loss",
    "nmse",
    "psnr",
    "ssim",
    "lr",
    "bytes_sent",
    "bytes_received",
    "status",
    *DIAGNOSTIC_COLUMNS,
)


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class MetricsCSV:
    """Appends rows to ``metrics.csv``, each as one ``write`` + flush + fsync.

    A row cut short by a kill is never read back (:meth:`rows` ignores an unterminated last line),
    and :meth:`truncate_to` rewrites the file atomically without the rows a resumed run will redo.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists() or self.path.stat().st_size == 0:
            self._append(",".join(METRIC_COLUMNS) + "\n")

    def _append(self, text: str) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    def write(self, **row: Any) -> None:
        """Append one row; unknown columns are an error, missing ones are left empty."""
        unknown = set(row) - set(METRIC_COLUMNS)
        if unknown:
            raise KeyError(f"unknown metric columns: {sorted(unknown)}")
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([_format(row.get(c)) for c in METRIC_COLUMNS])
        self._append(buffer.getvalue())

    def rows(self) -> list[dict[str, str]]:
        """All complete rows (newline-terminated) as dicts of strings."""
        text = self.path.read_text(encoding="utf-8")
        complete = text[: text.rfind("\n") + 1]
        return list(csv.DictReader(io.StringIO(complete)))

    def truncate_to(self, rnd: int) -> None:
        """Keep the training and validation rows of rounds <= ``rnd``; drop test rows and the rest."""
        kept = [r for r in self.rows() if r["split"] != "test" and r["round"] and int(r["round"]) <= rnd]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
        atomic_write_text(self.path, buffer.getvalue())


class TensorBoardLog:
    """Scalars per site and round under ``<run>/tb`` (silently off if tensorboard is missing)."""

    def __init__(self, directory: str | Path, purge_step: int | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # pragma: no cover - tensorboard is in requirements.txt
            self.writer = None
            return
        self.writer = SummaryWriter(log_dir=str(directory), purge_step=purge_step)

    def scalars(self, prefix: str, values: Mapping[str, float], step: int) -> None:
        """Log ``prefix/name`` for every finite value."""
        if self.writer is None:
            return
        for name, value in values.items():
            if value is not None and math.isfinite(value):
                self.writer.add_scalar(f"{prefix}/{name}", value, step)
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self.writer is not None:
            self.writer.close()
