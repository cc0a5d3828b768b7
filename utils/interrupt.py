"""Ctrl-C (SIGINT) and SIGTERM, the same way in every command: the current step is abandoned, the run
keeps its last completed round, and the command says how to continue.

Lightning catches ``KeyboardInterrupt`` inside a fit and exits with status 1, and turns SIGTERM into a
silent ``SystemExit`` (status 0). :func:`interruptible` installs handlers of its own for both signals
that raise :class:`Interrupted`, a ``BaseException`` that is neither (Lightning tears its trainer down
and lets it pass). The round loop holds a signal back while it writes a round's rows and checkpoint
(:func:`held`), so a round is either complete on disk or not counted, and records in the exception the
last round it completed (:attr:`Interrupted.completed`); the command line prints one line naming it
and how to continue, and exits with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM), as a
shell reports a process ended by that signal (:func:`command`, around a command's error boundary).

A second signal while the first is being handled ends the process at once (the signal's default).

Under DDP a rank that abandons its step leaves the others waiting in a collective until it has gone,
and they then fail there: such an error after a signal is the interruption's (:func:`received`), and
the round loop reports it as one. Lightning's own SIGTERM handler (a broadcast inside the handler,
which meets whatever collective the other rank is in) is kept out of every Trainer
(:func:`keep_handlers`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import NoReturn

SIGNALS = (signal.SIGINT, signal.SIGTERM)
NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


class Interrupted(BaseException):
    """The process received SIGINT or SIGTERM; raised where it was, to unwind the command.

    Attributes:
        signum: the signal's number; :attr:`exit_code` is 128 + it.
        completed: the last round whose checkpoint was written (None: not known here).
        total: the run's rounds (None: not known here).
        run_dir: the run's folder, once a run was under way (None before).
    """

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {NAMES.get(signum, signum)}")
        self.signum = int(signum)
        self.completed: int | None = None
        self.total: int | None = None
        self.run_dir: Path | None = None

    @property
    def exit_code(self) -> int:
        """The exit status a shell gives a process ended by this signal: 130 (SIGINT), 143 (SIGTERM)."""
        return 128 + self.signum

    def describe(self, resume: Callable[[Path], str] | None = None) -> str:
        """The command's one line: where the run stopped and, given ``resume`` (the command that
        continues a run folder), how to continue it."""
        if self.run_dir is None:
            return "interrupted before training started; nothing to continue"
        if self.completed is None:
            where = "interrupted before the run continued"
            return f"{where}; continue with: {resume(self.run_dir)}" if resume else where
        where = (
            f"interrupted after round {self.completed}"
            + (f" of {self.total}" if self.total is not None else "")
            if self.completed
            else "interrupted before round 1 completed"
        )
        if self.total is not None and self.completed >= self.total:
            where += " (while testing)"
        return f"{where}; continue with: {resume(self.run_dir)}" if resume else where


class _State:
    """What the handlers share: whether a signal is being handled, and signals held back."""

    def __init__(self) -> None:
        self.installed = 0
        self.holding = 0
        self.pending: int | None = None
        self.raised = False
        self.received: int | None = None
        self.forward: list[Callable[[int], None]] = []


_STATE = _State()


def _handler(signum: int, frame: FrameType | None) -> None:
    state = _STATE
    state.received = signum if state.received is None else state.received
    for forward in list(state.forward):
        forward(signum)
    if state.raised:  # a second signal while the first unwinds: the signal's default, now
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    if state.holding:
        state.pending = signum if state.pending is None else state.pending
        return
    state.raised = True
    raise Interrupted(signum)


@contextmanager
def interruptible() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` (in the main thread only; a
    signal a parent process set to be ignored stays ignored). The previous handlers come back after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for signum in SIGNALS:
        current = signal.getsignal(signum)
        if current is signal.SIG_IGN or current is _handler:
            continue
        previous[signum] = signal.signal(signum, _handler)
    _STATE.installed += 1
    if _STATE.installed == 1:
        _STATE.raised, _STATE.pending, _STATE.received = False, None, None
    try:
        yield
    finally:
        _STATE.installed -= 1
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while the block runs (a round's rows and checkpoint being written);
    one that came meanwhile raises :class:`Interrupted` when it ends."""
    _STATE.holding += 1
    try:
        yield
    finally:
        _STATE.holding -= 1
    if not _STATE.holding and _STATE.pending is not None and not _STATE.raised:
        signum, _STATE.pending = _STATE.pending, None
        _STATE.raised = True
        raise Interrupted(signum)


def handled() -> bool:
    """Whether a command's handlers are in place already (an app called inside a command: its
    interruption is that command's to report)."""
    return _STATE.installed > 0


def pass_on(err: Interrupted) -> NoReturn:
    """End the process for ``err`` after its line was printed: the signal goes to the handler that was
    in place before :func:`interruptible` (a framework's own stop, such as Flower's, with its exit
    handlers), or else the process exits with the signal's status."""
    handler = signal.getsignal(err.signum)
    if callable(handler) and handler is not signal.default_int_handler:
        signal.raise_signal(err.signum)  # its handler runs now, and usually ends the process
    raise SystemExit(err.exit_code) from None


def received() -> int | None:
    """The number of the first SIGINT or SIGTERM the command received (None: none so far)."""
    return _STATE.received


def keep_handlers(trainer: object) -> None:
    """Keep Lightning from installing its SIGTERM handler for the fits of ``trainer``: the command's
    handler (installed by :func:`interruptible`) stays the only one. Lightning's would run first and,
    under DDP, broadcast from inside the handler, meeting whatever collective another rank is in at
    that moment (the runs then hang or fail in it); its ``SIGTERMException`` at the next step is
    superseded by :class:`Interrupted`."""
    connector = getattr(trainer, "_signal_connector", None)
    if connector is not None and hasattr(connector, "register_signal_handlers"):
        connector.register_signal_handlers = lambda: None


@contextmanager
def forwarded(forward: Callable[[int], None]) -> Iterator[None]:
    """Within the block, every signal handled here is first passed to ``forward`` (e.g. to the other
    processes a launcher started, which a ``kill`` of this process alone would leave running)."""
    _STATE.forward.append(forward)
    try:
        yield
    finally:
        _STATE.forward.remove(forward)


def command(run: Callable[[], int], resume: Callable[[Path], str] | None = None, quiet: bool = False) -> int:
    """Run a command (``run``: its error boundary, returning its exit status) with SIGINT and SIGTERM
    handled: an interruption prints :meth:`Interrupted.describe` on one line (unless ``quiet``: the
    other ranks of a multi-process run) and returns 130 or 143. ``resume`` gives the command line that
    continues a run folder."""
    try:
        with interruptible():
            return run()
    except Interrupted as err:
        if not quiet:
            print(err.describe(resume), file=sys.stderr, flush=True)
        return err.exit_code
