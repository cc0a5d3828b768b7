"""Reading and writing files safely: bounded reads of regular files only, and atomic writes.

Reading (:func:`read_bytes`, :func:`read_text`, :func:`check_regular`, :func:`open_append`): only a
regular file is opened; a FIFO, device, socket or folder in its place is one :class:`UserError` line
naming it (a FIFO is opened without blocking, so it cannot hang the command), and so is a file larger
than the caller's bound, a line longer than its bound, a path no filesystem can hold, a symbolic link
loop or an unreadable file.

Writing: every output is written to a temporary file in the same directory, flushed to disk, then
renamed over the target, so a crash at any moment leaves either the old file or the new one, never a
truncated mix. Temporary files get the mode ``open()`` would give, not ``mkstemp``'s 0600, so
renaming them into place changes no permissions. A kill between the two steps leaves the temporary
file (``.<name>.<random>.tmp``); :func:`remove_stale_temps` removes them when the run starts again.
A target that cannot be written (a folder in its place, a file where its folder should be) is one
:class:`UserError` line; a full disk stays an ``OSError`` for the command line to report.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

from utils.errors import UserError
from utils.paths import check_path_text

T = TypeVar("T")
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # reported by the command line with a hint to --resume
MiB = 1 << 20


def file_kind(mode: int) -> str:
    """What a ``st_mode`` is, in words ("a regular file", "a folder", "a FIFO", ...)."""
    kinds = (
        (stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
    )  # fmt: skip
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def os_reason(err: OSError) -> str:
    """An ``OSError`` as a short reason: "permission denied", "a symbolic link loop", ..."""
    reasons = {
        errno.ENOENT: "not found", errno.EACCES: "permission denied", errno.EPERM: "permission denied",
        errno.ELOOP: "a symbolic link loop", errno.ENAMETOOLONG: "a path too long for the filesystem",
        errno.ENOTDIR: "a path through a file", errno.EISDIR: "a folder",
    }  # fmt: skip
    return reasons.get(err.errno, err.strerror or type(err).__name__)


def _open_regular(path: Path, what: str, flags: int, mode: int = 0o666) -> int:
    """A descriptor of the regular file ``path`` (FIFOs opened without blocking, then refused)."""
    check_path_text(str(path), what)
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, mode)
    except OSError as err:
        if err.errno in DISK_FULL:
            raise
        try:
            kind = os.stat(path).st_mode
        except OSError:
            kind = None
        if kind is not None and not stat.S_ISREG(kind):  # e.g. a FIFO opened to write with no reader
            raise UserError(f"{what} {path}: is {file_kind(kind)}; expected a regular file") from None
        raise UserError(f"{what} {path}: cannot open ({os_reason(err)})") from None
    try:
        kind = os.fstat(fd).st_mode
        if not stat.S_ISREG(kind):
            raise UserError(f"{what} {path}: is {file_kind(kind)}; expected a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_regular(path: str | Path, what: str) -> None:
    """Refuse, in one line naming ``what``, a ``path`` that is not a readable regular file (a FIFO, a
    device, a folder, a link loop, unreadable): what a reader that opens the file itself (h5py, nibabel,
    torch) must be spared."""
    os.close(_open_regular(Path(path), what, os.O_RDONLY))


def read_bytes(path: str | Path, what: str, limit: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them (a larger file is refused)."""
    path = Path(path)
    fd = _open_regular(path, what, os.O_RDONLY)
    try:
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as err:
        raise UserError(f"{what} {path}: cannot read ({os_reason(err)})") from None
    if len(data) > limit:
        raise UserError(f"{what} {path}: larger than {_size(limit)}; not such a file")
    return data


def read_text(path: str | Path, what: str, limit: int, line_limit: int | None = None) -> str:
    """The UTF-8 text of the regular file ``path`` (a byte order mark dropped), at most ``limit`` bytes
    and, with ``line_limit``, no line longer than that."""
    path = Path(path)
    data = read_bytes(path, what, limit)
    if line_limit is not None:
        start = 0
        while start < len(data):
            end = data.find(b"\n", start)
            end = len(data) if end < 0 else end
            if end - start > line_limit:
                line = data.count(b"\n", 0, start) + 1
                raise UserError(
                    f"{what} {path}: line {line} is longer than {_size(line_limit)}; not such a file"
                )
            start = end + 1
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"{what} {path}: not a text file (no UTF-8 at byte {err.start})") from None


def open_append(path: str | Path, what: str) -> IO[str]:
    """``path`` opened to append UTF-8 text, created if absent; refused unless a regular file."""
    fd = _open_regular(Path(path), what, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    return os.fdopen(fd, "a", encoding="utf-8")


def _size(limit: int) -> str:
    if limit >= MiB:
        return f"{limit // MiB} MiB"
    return f"{limit // 1024} KiB" if limit >= 1024 else f"{limit} bytes"


STALE_TEMP = re.compile(r"\..+\.[A-Za-z0-9_]{8}\.tmp")  # what temp_file(directory, ".<name>.", ".tmp") names


def remove_stale_temps(folder: str | Path, max_depth: int = 4) -> list[Path]:
    """Remove the temporary files that atomic writes killed midway left in ``folder`` and its folders
    (``.<name>.<random>.tmp``); only call it while no other process writes there (the run's lock).
    Returns what was removed."""
    removed: list[Path] = []
    stack = [(Path(folder), 0)]
    while stack:
        directory, depth = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False) and depth < max_depth:
                    stack.append((Path(entry.path), depth + 1))
                elif entry.is_file(follow_symlinks=False) and STALE_TEMP.fullmatch(entry.name):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
            except OSError:
                continue
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() gives a new file; mkstemp's own mode is 0600


def temp_file(directory: str | Path, prefix: str, suffix: str) -> tuple[int, str]:
    """``tempfile.mkstemp`` in ``directory`` with the permissions a plain ``open()`` would give, so
    that renaming it over an output leaves a file as readable as one written directly."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    try:
        os.chmod(tmp, FILE_MODE)
    except OSError:
        pass
    return fd, tmp


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], T]) -> T:
    """Replace ``path`` atomically with what ``write`` writes to a binary handle; returns its result.

    A target that is not a regular file (a folder, a FIFO) or a folder that cannot be made or written is
    one :class:`UserError` line naming the path; a full disk is raised as the ``OSError`` it is.
    """
    path = Path(path)
    try:
        kind = os.lstat(path).st_mode
    except FileNotFoundError:
        kind = None
    except OSError as err:
        raise UserError(f"{path}: cannot write ({os_reason(err)})") from None
    if kind is not None and not (stat.S_ISREG(kind) or stat.S_ISLNK(kind)):
        raise UserError(f"{path}: is {file_kind(kind)}; expected a regular file to replace")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_file(path.parent, f".{path.name}.", ".tmp")
    except OSError as err:
        if err.errno in DISK_FULL:
            raise
        reason = "a file is in the way of its folder" if err.errno in (errno.EEXIST, errno.ENOTDIR) else None
        raise UserError(f"{path}: cannot write ({reason or os_reason(err)})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            result = write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno not in DISK_FULL and err.filename in (tmp, str(path)):
            raise UserError(f"{path}: cannot write ({os_reason(err)})") from None
        raise
    _fsync_dir(path.parent)
    return result


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace ``path`` with UTF-8 ``text`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
