"""Per-round metrics of a run: ``metrics.csv`` (whole lines only), and TensorBoard scalars and images."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from utils.errors import UserError
from utils.io import MiB, atomic_write_text, open_append, read_text

MAX_METRICS_BYTES = 1024 * MiB  # rows of 100,000 rounds of 16 sites fit many times over
MAX_LINE = 64 * 1024  # a row is a few hundred bytes

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


def _is_number(text: str, integer: bool = False) -> bool:
    try:
        int(text) if integer else float(text)
    except ValueError:
        return False
    return True


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def read_metrics(path: str | Path) -> list[dict[str, str]]:
    """All complete rows (newline-terminated) of a run's ``metrics.csv`` as dicts of strings, read only;
    a file that is not this log (a foreign header, a round that is not a number, a metric that is not
    one) is a UserError naming the file and line, before anything is rewritten."""
    path = Path(path)
    try:
        text = read_text(path, "metrics", MAX_METRICS_BYTES, line_limit=MAX_LINE)
    except UserError as err:
        raise UserError(f"{err}; move it aside to go on without it") from None
    complete = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(complete))
    try:
        rows = list(reader)
    except csv.Error as err:
        raise UserError(f"{path}: not a CSV table ({err}); move it aside to go on without it") from None
    if reader.fieldnames is None or not {"round", "site", "split"} <= set(reader.fieldnames):
        raise UserError(
            f"{path}: line 1 is not the header of a run's metrics.csv "
            f"({','.join(METRIC_COLUMNS[:3])},...); move it aside to go on without it"
        )
    numeric = [c for c in reader.fieldnames if c in METRIC_COLUMNS and c not in ("site", "split", "status")]
    for line, row in enumerate(rows, start=2):
        for column in numeric:
            value = row.get(column) or ""
            if value and not _is_number(value, integer=column == "round"):
                raise UserError(
                    f"{path}: line {line}: {column} {value!r} is not a number; "
                    "move the file aside to go on without it"
                )
    return rows


class MetricsCSV:
    """Appends rows to ``metrics.csv``, each as one ``write`` + flush + fsync.

    A row cut short by a kill is never read back (:meth:`rows` ignores an unterminated last line),
    and :meth:`truncate_to` rewrites the file atomically without the rows a resumed run will redo.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open_append(self.path, "metrics") as handle:  # a regular file (created), never a FIFO
            empty = os.fstat(handle.fileno()).st_size == 0
        if empty:
            self._append(",".join(METRIC_COLUMNS) + "\n")

    def _append(self, text: str) -> None:
        with open_append(self.path, "metrics") as handle:
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
        """All complete rows: :func:`read_metrics`."""
        return read_metrics(self.path)

    def truncate_to(self, rnd: int) -> None:
        """Keep the training and validation rows of rounds <= ``rnd``; drop test rows and the rest."""
        kept = [r for r in self.rows() if r["split"] != "test" and r["round"] and int(r["round"]) <= rnd]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
        atomic_write_text(self.path, buffer.getvalue())


class TensorBoardLog:
    """Scalars and images per site and round under ``<run>/tb`` (silently off if tensorboard is missing)."""

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

    def image(self, tag: str, image: Any, step: int) -> None:
        """Log one grey-level image, (H, W) values in [0, 1]."""
        if self.writer is None:
            return
        self.writer.add_image(tag, image, step, dataformats="HW")
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self.writer is not None:
            self.writer.close()
