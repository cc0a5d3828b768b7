"""The error boundary of every command: whatever happens, one line on stderr and a known exit status.

Every command (``train.py``, ``train_multi_gpu.py``, ``evaluate.py``, ``compare.py``, ``latent.py``, the
loopback) parses its arguments with :class:`ArgumentParser` and runs its job inside :func:`run_cli`, and
nothing else catches exceptions on the way out:

- a :class:`UserError` (bad input: a config key, a file, an argument) prints ``error: <message>`` and
  exits 2; so does an argument the parser refuses (:class:`ArgumentParser` prints one line instead of
  its usage), a full disk, and any ``OSError`` naming a file (the filesystem refused that path);
- a :class:`TrainingFailure` prints ``failed: <message>`` and exits 3;
- Ctrl-C prints ``interrupted`` and exits 130 (a run's own signal handling, :mod:`utils.interrupt`,
  passes through to the command's wrapper);
- anything else is a bug: its traceback goes to a file (the run folder once the run has one, see
  :func:`report_to`, else a temporary file), and one line says it is an internal error, what the command
  was doing (:func:`doing`) and where the traceback is, with exit status 1.

So no input can make a command print a bare traceback: a new failure mode shows up as one line with a
file to attach to a bug report. Messages are one printable line of bounded length.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from utils.bounds import check_launcher_env, parse_int
from utils.errors import TrainingFailure, UserError, single_line
from utils.paths import NAME_MAX, PATH_MAX, check_path_text

EXIT_INTERNAL_ERROR = 1
EXIT_USER_ERROR = 2
EXIT_TRAINING_FAILURE = 3
EXIT_INTERRUPTED = 130
PACKAGES = ("data", "fl", "models", "utils")  # this project's loggers: INFO; everything else: WARNING
DISK_ERRORS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded"}
MAX_MESSAGE = 2000  # characters of an error line; the rest is cut


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` as one printable line (:func:`utils.errors.single_line`) of at most about ``limit``
    characters."""
    line = single_line(text)
    return line if len(line) <= limit else f"{line[:limit]} ... ({len(line) - limit} more characters)"


# -- what the command is doing, and where a traceback goes ------------------------------------------
_activities: list[str] = []
_failed_in: list[tuple[BaseException, str]] = []  # (exception, the innermost activity it left)
_report_dirs: list[Path] = []


@contextmanager
def doing(what: str) -> Iterator[None]:
    """Name what the block does ("reading checkpoint X"), for the line an internal error prints."""
    _activities.append(what)
    try:
        yield
    except BaseException as err:
        if not any(seen is err for seen, _ in _failed_in):
            del _failed_in[:-15]
            _failed_in.append((err, what))
        raise
    finally:
        _activities.pop()


def report_to(folder: str | Path) -> None:
    """Write the traceback of an internal error into ``folder`` (a run's folder), not a temporary file."""
    _report_dirs.append(Path(folder))


def _write_traceback(command: str, err: BaseException) -> str:
    """The traceback of ``err`` written to a file; the file's path (or why none could be written)."""
    text = (
        f"{command}: internal error at {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
        f"command line: {' '.join(map(repr, sys.argv))}\n"
        f"python {sys.version.split()[0]} on {sys.platform}\n\n"
        + "".join(traceback.format_exception(type(err), err, err.__traceback__))
    )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for folder in reversed(_report_dirs):
        try:
            if folder.is_dir():
                path = folder / f"traceback-{stamp}-{os.getpid()}.txt"
                path.write_text(text, encoding="utf-8", errors="backslashreplace")
                return str(path)
        except OSError:
            continue
    try:
        label = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(command).stem)[:40]
        fd, name = tempfile.mkstemp(prefix=f"fedmri-{label}-{stamp}-", suffix=".traceback.txt")
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as handle:
            handle.write(text)
        return name
    except OSError as failure:
        return f"nowhere (writing it failed: {failure.strerror or failure})"


# -- arguments -------------------------------------------------------------------------------------
class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose refusal of an argument is one line, ``error: <prog>: <message> (see <prog>
    --help)``, and exit status 2, like every other bad input, instead of the usage block; it exits
    (``SystemExit``, which the boundary lets through) so that parsing may happen before :func:`run_cli`
    or inside it. ``--help`` still prints and exits 0."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(**kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"error: {one_line(f'{self.prog}: {message} (see {self.prog} --help)')}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)


def path_arg(text: str) -> str:
    """An argparse ``type`` for paths: refuses an empty path (the working directory, never meant), a
    NUL character and lengths no filesystem holds."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path")
    if "\0" in text:
        raise argparse.ArgumentTypeError("the path contains a NUL character")
    if len(text.encode("utf-8", "surrogateescape")) > PATH_MAX:
        raise argparse.ArgumentTypeError(f"path longer than {PATH_MAX} bytes")
    long = next((p for p in text.split("/") if len(p.encode("utf-8", "surrogateescape")) > NAME_MAX), None)
    if long is not None:
        raise argparse.ArgumentTypeError(f"path component {long[:24]}... is longer than {NAME_MAX} bytes")
    try:
        check_path_text(text, "path")  # and a ~user that exists
    except UserError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("path: ")) from None
    return text


def int_arg(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number in ``[low, high]``, read from at most 18 digits."""

    def parse(text: str) -> int:
        try:
            return parse_int(text, "value", low, high)
        except UserError as err:
            raise argparse.ArgumentTypeError(str(err).removeprefix("value: ")) from None

    parse.__name__ = "whole number"
    return parse


# -- the boundary ----------------------------------------------------------------------------------
def _text(err: BaseException) -> str:
    try:
        return str(err)
    except Exception:  # noqa: BLE001 - an exception whose message fails is still reported
        return ""


def _os_error(err: OSError) -> tuple[str, int] | None:
    """The line and status of an ``OSError`` a user can fix (a full disk, a path the filesystem
    refused); None for one that names no file."""
    where = f" writing {err.filename}" if err.filename else ""
    if err.errno in DISK_ERRORS:
        hint = "free space and continue with --resume"
        return f"error: {DISK_ERRORS[err.errno]}{where}; {hint}", EXIT_USER_ERROR
    if err.filename is None:
        return None
    from utils.io import os_reason

    return f"error: {err.filename}: {os_reason(err)}", EXIT_USER_ERROR


def describe_failure(err: Exception, command: str) -> tuple[str, int]:
    """The one line and exit status of an exception that ended ``command`` (the module's docstring);
    for an internal error, its traceback is written to a file first. For :func:`run_cli` and for the
    entry points that are not command lines (the Flower apps)."""
    if isinstance(err, UserError):
        return f"error: {one_line(_text(err))}", EXIT_USER_ERROR
    if isinstance(err, TrainingFailure):
        return f"failed: {one_line(_text(err))}", EXIT_TRAINING_FAILURE
    known = _os_error(err) if isinstance(err, OSError) else None
    if known is not None:
        return one_line(known[0]), known[1]
    where = _write_traceback(command, err)
    during = next((f" while {what}" for seen, what in _failed_in if seen is err), "")
    return one_line(
        f"internal error in {command}{during}: {type(err).__name__}: {one_line(_text(err), 300)}"
        f"; the traceback is in {where}; please report it with that file"
    ), EXIT_INTERNAL_ERROR


def run_cli(
    job: Callable[[], None],
    quiet: bool | Callable[[], bool] = False,
    command: str | None = None,
) -> int:
    """Run ``job`` behind the error boundary (the module's docstring); returns the exit status.

    ``quiet`` (the other ranks of a multi-process run; a callable is evaluated inside the boundary)
    returns the same codes without printing, except for interruptions and internal errors. Library
    warnings raised while the job runs are held back: shown after a successful job, dropped when it ends
    in an error (whose line says what matters).
    """
    module = getattr(sys.modules.get(getattr(job, "__module__", "") or ""), "__file__", None)
    command = command or Path(module or sys.argv[0] or "command").name
    _failed_in.clear()
    _report_dirs.clear()
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout)
    message, code, silent = None, 0, False
    with warnings.catch_warnings(record=True) as caught:
        try:
            check_launcher_env()  # before anything imports Lightning, which reads them as integers
            silent = quiet() if callable(quiet) else quiet
            for package in PACKAGES:
                logging.getLogger(package).setLevel(logging.WARNING if silent else logging.INFO)
            job()
        except KeyboardInterrupt:
            message, code = "interrupted", EXIT_INTERRUPTED
        except Exception as err:  # noqa: BLE001 - the boundary: nothing leaves as a traceback
            message, code = describe_failure(err, command)
            silent = silent and code != EXIT_INTERNAL_ERROR
    if code == 0:
        for item in caught:
            warnings.showwarning(item.message, item.category, item.filename, item.lineno)
    if message is not None and (not silent or code == EXIT_INTERRUPTED):
        try:
            print(message, file=sys.stderr)
        except (OSError, ValueError):  # stderr closed or a broken pipe: the status still tells
            pass
    return code
