"""Atomic file writes and safe checkpoint loading.

Every output is written to a temporary file in the same directory, flushed to disk, then renamed
over the target, so a crash at any moment leaves either the old file or the new one, never a
truncated mix. Checkpoints hold only tensors, numbers, strings, lists and dicts, and are always
read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from utils.errors import UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() gives a new file; mkstemp's own mode is 0600
DIR_MODE = 0o777 & ~_umask()  # what mkdir() gives a new folder; mkdtemp's own mode is 0700


def temp_file(directory: str | Path, prefix: str, suffix: str) -> tuple[int, str]:
    """``tempfile.mkstemp`` in ``directory`` with the permissions a plain ``open()`` would give, so
    that renaming it over an output leaves a file as readable as one written directly."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    try:
        os.chmod(tmp, FILE_MODE)
    except OSError:
        pass
    return fd, tmp


def _atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(path.parent, f".{path.name}.", ".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


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
    _atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace ``path`` with UTF-8 ``text`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(obj: dict[str, Any], path: str | Path) -> None:
    """Serialise a checkpoint dict with ``torch.save`` and write it atomically."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; anything else is refused with a clear error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path}: file not found")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else "unsafe content"
        raise UserError(
            f"checkpoint {path}: refused, it holds more than tensors and plain data ({reason})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise UserError(f"checkpoint {path}: unreadable or truncated ({str(err).splitlines()[0]})") from None
    if not isinstance(obj, dict):
        raise UserError(f"checkpoint {path}: expected a dict, found {type(obj).__name__}")
    return obj
