"""Checks of user-given paths, so that a bad one is one line naming its key before anything runs."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from utils.errors import UserError

NAME_MAX = 255  # bytes of one path component on every common filesystem
PATH_MAX = 4096
SYSTEM_TREES = ("/proc", "/sys", "/dev")  # kernel interfaces, never a place for outputs


def check_path_text(text: str, key: str) -> None:
    """Refuse a path string no filesystem can hold: a NUL byte, a component over 255 bytes, a whole path
    over 4096 bytes, or ``~user`` naming an unknown user."""
    if "\0" in text:
        raise UserError(f"{key}: contains a NUL character ({text!r})")
    if len(text.encode("utf-8", "surrogateescape")) > PATH_MAX:
        raise UserError(f"{key}: path longer than {PATH_MAX} bytes")
    if text.startswith("~"):
        try:
            text = str(Path(text).expanduser())
        except RuntimeError:
            raise UserError(f"{key}: cannot expand {text.split('/')[0]!r}: no such user") from None
    for part in text.split("/"):
        if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise UserError(f"{key}: path component {part[:24]}... is longer than {NAME_MAX} bytes")


def check_writable_dir(path: str | Path, key: str) -> Path:
    """The directory ``path`` (expanded), checked to be creatable and writable: not a file, not below a
    file, not under /proc, /sys or /dev, not on a read-only filesystem; raises :class:`UserError` naming
    ``key`` otherwise."""
    check_path_text(str(path), key)
    folder = Path(path).expanduser().absolute()
    resolved = Path(os.path.realpath(folder))
    if any(resolved == Path(tree) or Path(tree) in resolved.parents for tree in SYSTEM_TREES):
        raise UserError(
            f"{key}: {path} is under a system directory ({resolved}); choose a folder for outputs"
        )
    existing = folder
    while not existing.exists():
        if existing.is_symlink():
            raise UserError(f"{key}: {existing} is a broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        where = "is" if existing == folder else f"is below {existing}, which is"
        raise UserError(f"{key}: {path} {where} a file, not a directory")
    try:
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        raise UserError(f"{key}: {path} is on a read-only filesystem")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{key}: {existing} is not writable")
    return folder


def not_found(path: Path) -> str:
    """Why an absent ``path`` cannot be read: "a link to TARGET, which does not exist" for a broken
    symbolic link (the link itself is there, so "not found" would mislead), else "not found"."""
    try:
        if path.is_symlink():
            return f"a link to {os.readlink(path)}, which does not exist"
    except OSError:
        pass
    return "not found"


MAX_ENTRIES = 1_000_000  # entries a data folder may hold before a walk stops with an error
MAX_DEPTH = 64  # folder nesting below a data root


def walk(root: Path, key: str) -> tuple[list[tuple[str, Path, bool]], list[tuple[str, str]]]:
    """Every entry below the folder ``root``: ``(relative POSIX path, path, is_folder)`` in sorted order,
    and ``(path, reason)`` of what could not be walked, so that nothing is skipped silently: a folder
    that cannot be listed (permission denied), a symbolic link loop or a link back into a folder above
    it. Linked folders are followed (each real folder once per branch); FIFOs, devices, sockets and
    broken links are listed as entries that are not folders, for the caller to name or its reader to
    refuse. More than :data:`MAX_ENTRIES` entries or :data:`MAX_DEPTH` levels is a :class:`UserError`
    naming ``key``."""
    entries: list[tuple[str, Path, bool]] = []
    problems: list[tuple[str, str]] = []
    try:
        top = os.stat(root)
    except OSError as err:
        raise UserError(f"{key}: {root}: cannot list ({err.strerror or err})") from None
    stack: list[tuple[Path, str, tuple[tuple[int, int], ...]]] = [(root, "", ((top.st_dev, top.st_ino),))]
    while stack:
        folder, prefix, above = stack.pop()
        if len(above) > MAX_DEPTH:
            raise UserError(f"{key}: {folder} is nested deeper than {MAX_DEPTH} folders below {root}")
        try:
            with os.scandir(folder) as listing:
                children = sorted(listing, key=lambda e: e.name)
        except OSError as err:
            problems.append((str(folder), f"cannot list this folder ({err.strerror or err})"))
            continue
        below = []
        for child in children:
            if len(entries) >= MAX_ENTRIES:
                raise UserError(f"{key}: {root} holds more than {MAX_ENTRIES} entries; point it at the data")
            path, relative = Path(child.path), f"{prefix}{child.name}"
            try:
                info = os.stat(child.path)  # follows links
            except FileNotFoundError:  # a broken link: the reader says so, if the name is wanted
                entries.append((relative, path, False))
                continue
            except OSError as err:
                reason = "a symbolic link loop" if err.errno == errno.ELOOP else (err.strerror or str(err))
                problems.append((str(path), reason))
                continue
            is_folder = stat.S_ISDIR(info.st_mode)
            if is_folder and (info.st_dev, info.st_ino) in above:
                problems.append((str(path), "a symbolic link back to a folder above it (a loop)"))
                continue
            entries.append((relative, path, is_folder))
            if is_folder:
                below.append((path, f"{relative}/", (*above, (info.st_dev, info.st_ino))))
        stack.extend(reversed(below))
    entries.sort(key=lambda e: e[0].split("/"))  # the order of sorted(root.rglob("*"))
    return entries, problems
