"""Checkpoint saving (atomic, through :mod:`utils.io`) and safe loading.

Checkpoints hold only tensors, numbers, strings, lists and dicts, and are always read with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch

from utils.errors import UserError
from utils.io import atomic_write_bytes


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
