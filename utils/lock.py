"""One writer per run directory: an OS file lock, released by the kernel when its process ends.

A killed run therefore never leaves a stale lock. The lock file sits beside the run directory
(``<output_dir>/.<name>.lock``) so that replacing the run (``--overwrite``) does not remove it while held.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from utils.errors import UserError
from utils.paths import check_writable_dir

_HELD: dict[Path, int] = {}  # run directory -> open descriptor of its lock, in this process


def lock_path(run_dir: str | Path) -> Path:
    """The lock file of ``run_dir``."""
    run_dir = Path(run_dir).expanduser().absolute()
    return run_dir.parent / f".{run_dir.name}.lock"


def lock_run(run_dir: str | Path, other: str = "choose another name=...") -> bool:
    """Hold the write lock of ``run_dir`` until this process ends (or :func:`unlock_run`); False (and
    nothing done) when this process holds it already, True when it took it now. ``other`` ends the
    message when another process holds it: how to write somewhere else.

    Raises:
        UserError: the output folder is unusable, or another process holds the lock (named by its PID).
    """
    run_dir = Path(run_dir).expanduser().absolute()
    if run_dir in _HELD:
        return False
    check_writable_dir(run_dir.parent, "output_dir")
    path = lock_path(run_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as err:
        raise UserError(f"output_dir: cannot create the run lock {path} ({err.strerror or err})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        holder = _read_pid(fd)
        os.close(fd)
        if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise UserError(f"output_dir: cannot lock {path} ({err.strerror or err})") from None
        raise UserError(
            f"{run_dir}: another process (PID {holder}) is writing this run; wait for it to end or {other}"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD[run_dir] = fd
    return True


def unlock_run(run_dir: str | Path) -> None:
    """Release the lock of ``run_dir`` held by this process (if any)."""
    fd = _HELD.pop(Path(run_dir).expanduser().absolute(), None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"
