"""Shared behaviour of the command-line entry points: one-line errors and exit codes."""

from __future__ import annotations

import errno
import logging
import re
import sys
import warnings
from collections.abc import Callable

from utils.errors import TrainingFailure, UserError

EXIT_USER_ERROR = 2
EXIT_TRAINING_FAILURE = 3
PACKAGES = ("data", "fl", "models", "utils")  # this project's loggers: INFO; everything else: WARNING
DISK_ERRORS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded"}
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|[\x00-\x08\x0b-\x1f\x7f]")


def one_line(text: str) -> str:
    """``text`` as one printable line: terminal escape codes and control characters removed, lines joined."""
    text = _CONTROL.sub("", text.replace("\r\n", "\n"))
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def run_cli(job: Callable[[], None], quiet: bool = False) -> int:
    """Run ``job``; a :class:`UserError` prints ``error: <message>`` on one line and returns 2,
    a :class:`TrainingFailure` prints ``failed: <message>`` and returns 3. ``quiet`` (the other ranks of
    a multi-process run) returns the same codes without printing.

    Library warnings raised while the job runs are held back: shown after a successful job, dropped when
    it ends in one of these errors (whose line says what matters). A full disk is a one-line error
    too (the last checkpoint is intact; ``--resume`` continues once there is space).
    """
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout)
    for package in PACKAGES:
        logging.getLogger(package).setLevel(logging.WARNING if quiet else logging.INFO)
    message, code = None, 0
    with warnings.catch_warnings(record=True) as caught:
        try:
            job()
        except UserError as err:
            message, code = f"error: {one_line(str(err))}", EXIT_USER_ERROR
        except TrainingFailure as err:
            message, code = f"failed: {one_line(str(err))}", EXIT_TRAINING_FAILURE
        except OSError as err:
            if err.errno not in DISK_ERRORS:
                raise
            where = f" writing {err.filename}" if err.filename else ""
            message = f"error: {DISK_ERRORS[err.errno]}{where}; free space and continue with --resume"
            code = EXIT_USER_ERROR
        except KeyboardInterrupt:
            message, code = "interrupted", 130
    if code == 0:
        for item in caught:
            warnings.showwarning(item.message, item.category, item.filename, item.lineno)
    if message is not None and (not quiet or code == 130):
        print(message, file=sys.stderr)
    return code
