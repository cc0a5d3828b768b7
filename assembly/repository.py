"""Where the repository is, so that a command started from another folder finds what it ships.

A config named by a relative path that the working directory does not hold is looked up in the
repository (``python /path/to/train.py`` reads ``configs/default.yaml`` from there), and a relative
``data.cache_dir`` is the repository's (the default ``.cache/fedmri``: generated data is made once, not
once per working directory). Outputs (``output_dir``) stay relative to the working directory.
"""

from __future__ import annotations

from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


def _expanded(path: str | Path) -> Path:
    """``path`` with ``~`` expanded; as given when it names no home (the reader then says so)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:  # ~user of an unknown user
        return Path(path)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long for the filesystem, a NUL: the reader says so
        return False


def locate(path: str | Path) -> Path:
    """``path`` as given where it exists (or is absolute); else the repository's file of that name,
    if there is one."""
    given = _expanded(path)
    if given.is_absolute() or _exists(given):
        return given
    shipped = REPOSITORY / given
    return shipped if _exists(shipped) else given


def in_repository(path: str | Path) -> Path:
    """A relative ``path`` taken from the repository's folder; an absolute one as it is."""
    given = _expanded(path)
    return given if given.is_absolute() else REPOSITORY / given
