"""Shared behaviour of the command-line entry points: one-line errors and exit codes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from utils.errors import TrainingFailure, UserError

EXIT_USER_ERROR = 2
EXIT_TRAINING_FAILURE = 3
PACKAGES = ("data", "fl", "models", "utils")  # this project's loggers: INFO; everything else: WARNING


def run_cli(job: Callable[[], None], quiet: bool = False) -> int:
    """Run ``job``; a :class:`UserError` prints ``error: <message>`` on one line and returns 2,
    a :class:`TrainingFailure` prints ``failed: <message>`` and returns 3. ``quiet`` (the other ranks of
    a multi-process run) returns the same codes without printing."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout)
    for package in PACKAGES:
        logging.getLogger(package).setLevel(logging.WARNING if quiet else logging.INFO)
    try:
        job()
    except UserError as err:
        if not quiet:
            print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except TrainingFailure as err:
        if not quiet:
            print(f"failed: {err}", file=sys.stderr)
        return EXIT_TRAINING_FAILURE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
