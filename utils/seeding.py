"""Seeds derived from the config seed, stable across processes, platforms and Python versions, and the
global random generators' state, saved in a checkpoint and restored on resume."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import numpy as np
import torch


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from any printable parts, e.g. ``stable_seed(seed, "val", volume, slice)``.

    Unlike ``hash()``, the result does not change between interpreter runs (no hash randomisation).
    """
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def rng_state() -> dict[str, Any]:
    """Every global random generator's state, as tensors and plain data (``weights_only``-safe)."""
    version, python_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "state": list(python_state), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "cached": cached,
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached"])
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
