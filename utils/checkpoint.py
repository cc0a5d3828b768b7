"""Checkpoint saving (atomic, through :mod:`utils.io`), safe loading, and integrity checks.

Checkpoints hold only tensors, numbers, strings, lists and dicts, and are always read with
``torch.load(..., weights_only=True)`` from a regular file (a FIFO or device is refused before it could
hang or flood the reader). Every checkpoint carries ``checksum``: ``sha256:`` and the SHA-256 of every
entry but itself (:func:`checksum`: each key and value with its type, tensors with dtype, shape and
bytes, so the round, the history, the best models, the RNG state and the config are covered as much as
the weights). Loading refuses a checkpoint without one, or whose entries do not match it, in one line.
Checkpoints written before this version carry the SHA-256 of their tensors alone (hex digits without a
prefix); they are still read, checked as far as that checksum goes. :func:`check_structure` compares a
loaded checkpoint with the state the run would write, so that a tampered or foreign one is refused in
one line before anything is restored.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path
from typing import Any

import torch

from utils.errors import UserError
from utils.io import atomic_write_bytes, check_regular
from utils.paths import check_path_text

CHECKSUM_KEY = "checksum"
CHECKSUM_PREFIX = "sha256:"  # a checksum of every entry; a bare hex digest covers the tensors alone


def checksum(obj: dict[str, Any]) -> str:
    """``sha256:`` and the SHA-256 (hex) of every entry of ``obj`` except its top-level ``checksum``:
    each dict, list and tuple with its length, each key and scalar with its type (integers in hex, floats
    exactly, strings as UTF-8), each tensor with its dtype, shape and bytes, in order."""
    digest = hashlib.sha256()

    def token(kind: str, data: bytes = b"") -> None:
        digest.update(kind.encode() + len(data).to_bytes(8, "little") + data)

    stack: list[Any] = [{k: v for k, v in obj.items() if k != CHECKSUM_KEY}]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            token("dict", str(len(node)).encode())
            for key, value in reversed(list(node.items())):
                stack.extend((value, _Key(key)))
        elif isinstance(node, (list, tuple)):
            token("list" if isinstance(node, list) else "tuple", str(len(node)).encode())
            stack.extend(reversed(node))
        elif isinstance(node, torch.Tensor):
            tensor = node.detach().cpu().contiguous()
            token("tensor", f"{tensor.dtype}|{tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data if tensor.numel() else b"")
        else:
            key = isinstance(node, _Key)
            value = node.value if key else node
            token(("key:" if key else "") + type(value).__name__, _scalar(value))
    return CHECKSUM_PREFIX + digest.hexdigest()


class _Key:
    """A dict key on the checksum's stack (told apart from a value)."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


def _scalar(value: Any) -> bytes:
    if isinstance(value, bool) or value is None:
        return repr(value).encode()
    if isinstance(value, int):
        return format(value, "x").encode()  # hex: no digit limit, unlike str()
    if isinstance(value, float):
        return value.hex().encode()
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, bytes):
        return value
    return repr(value).encode("utf-8", "surrogatepass")  # torch.dtype, torch.Size: short, exact reprs


def tensor_checksum(obj: Any) -> str:
    """SHA-256 (hex) of every tensor in ``obj`` (nested dicts and lists), with its key path, dtype and
    shape; the top-level ``checksum`` key is left out. The checksum of checkpoints written before
    :func:`checksum` covered every entry; read only to check those."""
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
    torch.save({**obj, CHECKSUM_KEY: checksum(obj)}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` and verify its checksum; anything else is refused
    with a one-line :class:`UserError`."""
    check_path_text(str(path), "checkpoint")
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint {path}: file not found")
    check_regular(path, "checkpoint")  # a FIFO would hang torch.load, a folder or device fail in it
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
    stated = obj.get(CHECKSUM_KEY)
    if not isinstance(stated, str):
        raise UserError(
            f"checkpoint {path}: no checksum; not a checkpoint this project wrote, or a damaged one"
        )
    if stated.startswith(CHECKSUM_PREFIX):
        if stated != checksum(obj):
            raise UserError(
                f"checkpoint {path}: its entries do not match the checksum; the file is corrupted"
            )
    elif stated != tensor_checksum(obj):  # written before the checksum covered every entry
        raise UserError(f"checkpoint {path}: the tensors do not match the checksum; the file is corrupted")
    return {k: v for k, v in obj.items() if k != CHECKSUM_KEY}


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
