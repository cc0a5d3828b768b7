"""Checkpoint saving (atomic, through :mod:`utils.io`), safe loading, and integrity checks.

Checkpoints hold only tensors, numbers, strings, lists and dicts, and are always read with
``torch.load(..., weights_only=True)``. Every checkpoint carries ``checksum``, the SHA-256 of its tensor
payload (each tensor's key path, dtype, shape and bytes), so flipped bytes in the weights are refused
on loading; :func:`check_structure` compares a loaded checkpoint with the state the run would write,
so that a tampered or foreign one is refused in one line before anything is restored.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path
from typing import Any

import torch

from utils.errors import UserError
from utils.io import atomic_write_bytes

CHECKSUM_KEY = "checksum"


def tensor_checksum(obj: Any) -> str:
    """SHA-256 (hex) of every tensor in ``obj`` (nested dicts and lists), with its key path, dtype and
    shape; the top-level ``checksum`` key is left out."""
    digest = hashlib.sha256()
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, dict):
            items = [(k, v) for k, v in node.items() if not (where == "" and k == CHECKSUM_KEY)]
            stack.extend((f"{where}/{k}", v) for k, v in reversed(items))
        elif isinstance(node, (list, tuple)):
            stack.extend((f"{where}/{i}", v) for i, v in reversed(list(enumerate(node))))
        elif isinstance(node, torch.Tensor):
            tensor = node.detach().cpu().contiguous()
            digest.update(f"{where}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            if tensor.numel():
                digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def save_checkpoint(obj: dict[str, Any], path: str | Path) -> None:
    """Serialise a checkpoint dict (with its ``checksum``) with ``torch.save`` and write it atomically."""
    buffer = io.BytesIO()
    torch.save({**obj, CHECKSUM_KEY: tensor_checksum(obj)}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` and verify its checksum; anything else is refused
    with a one-line :class:`UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path}: file not found")
    if path.stat().st_size == 0:
        raise UserError(f"checkpoint {path}: empty file (0 bytes)")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else "unsafe content"
        raise UserError(
            f"checkpoint {path}: refused, it holds more than tensors and plain data ({reason})"
        ) from None
    except Exception as err:  # noqa: BLE001 - any failure to parse the file means it is not a checkpoint
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"checkpoint {path}: unreadable or truncated ({reason})") from None
    if not isinstance(obj, dict):
        raise UserError(f"checkpoint {path}: expected a dict, found {type(obj).__name__}")
    if CHECKSUM_KEY in obj:
        if obj[CHECKSUM_KEY] != tensor_checksum(obj):
            raise UserError(
                f"checkpoint {path}: the tensors do not match the checksum; the file is corrupted"
            )
        obj = {k: v for k, v in obj.items() if k != CHECKSUM_KEY}
    return obj


def check_structure(found: Any, expected: Any, where: str = "") -> None:
    """Compare a loaded checkpoint ``found`` with ``expected``, the state the run would write now.

    Every key of an expected dict must be present; where both hold a value, the kinds must agree (dict,
    list, string, integer, number, boolean) and tensors must have the expected shape and dtype. Keys
    that ``expected`` lacks (state created lazily, e.g. optimiser moments) are left to the loaders.

    Raises:
        ValueError: naming the first key path that differs.
    """
    at = where or "the top level"
    if expected is None:
        return  # e.g. a cached Gaussian in Python's RNG state: None or a number
    if isinstance(expected, dict):
        if not isinstance(found, dict):
            raise ValueError(f"{at}: expected a dict, found {type(found).__name__}")
        missing = [str(k) for k in expected if k not in found]
        if missing:
            raise ValueError(f"{at}: missing key(s) {', '.join(missing[:5])}")
        for key, value in expected.items():
            check_structure(found[key], value, f"{where}.{key}" if where else str(key))
    elif isinstance(expected, (list, tuple)):
        if not isinstance(found, (list, tuple)):
            raise ValueError(f"{at}: expected a list, found {type(found).__name__}")
        if expected:
            kinds = {_kind(v) for v in expected}
            for i, value in enumerate(found):
                if len(kinds) == 1 and _kind(value) not in kinds:
                    raise ValueError(f"{where}.{i}: expected {kinds.pop()}, found {type(value).__name__}")
                if i < len(expected):
                    check_structure(value, expected[i], f"{where}.{i}")
    elif isinstance(expected, torch.Tensor):
        if not isinstance(found, torch.Tensor):
            raise ValueError(f"{at}: expected a tensor, found {type(found).__name__}")
        if found.shape != expected.shape or found.dtype != expected.dtype:
            raise ValueError(f"{at}: expected a {_tensor(expected)} tensor, found {_tensor(found)}")
    elif _kind(found) != _kind(expected) and not (_kind(expected) == "number" and _kind(found) == "integer"):
        raise ValueError(f"{at}: expected {_kind(expected)}, found {type(found).__name__}")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "dict"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, torch.Tensor):
        return "tensor"
    return type(value).__name__


def _tensor(t: torch.Tensor) -> str:
    return f"{str(t.dtype).removeprefix('torch.')} {tuple(t.shape)}"
