"""What a checkpoint belongs to: the config keys that shape its tensors and optimiser state."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from fl.algorithms import ALGORITHMS
from models.options import ModelOptions


def fingerprint(config: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint belongs to: the config keys that shape its tensors and optimiser state (the
    network, the algorithm with its options and head, the optimiser, the sites), as plain data."""
    fl = config.get("fl") or {}
    algorithm = fl.get("algorithm")
    model = {k: v for k, v in (config.get("model") or {}).items() if k not in ("compile", "channels_last")}
    return {
        "model": model,
        "fl.algorithm": algorithm,
        f"fl.{algorithm}": fl.get(algorithm),
        "fl.head": fl.get("head"),
        "optim.name": (config.get("optim") or {}).get("name"),
        "sites": [s.get("name") for s in config.get("sites") or [] if isinstance(s, dict)],
    }


def fingerprint_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys whose values differ between two fingerprints, as ``key (old -> new)``; values are compared
    by their text, so a tampered fingerprint holding tensors or odd types is a difference, never an error.

    An option of the network or of the algorithm that ``old`` does not name at all was added after its
    checkpoint was written; the run behaved as the option's default does, so ``new`` holding that default
    is no difference (any other value is)."""
    differing = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            defaults = _defaults(key, new)
            differing += [
                f"{key}.{k} ({_show(a.get(k))} -> {_show(b.get(k))})"
                for k in sorted(set(a) | set(b), key=str)
                if repr(a.get(k)) != repr(b.get(k))
                and not (k not in a and k in defaults and repr(b.get(k)) == repr(defaults[k]))
            ]
        elif repr(a) != repr(b):
            differing.append(f"{key} ({_show(a)} -> {_show(b)})")
    return differing


def _defaults(key: str, stated: dict[str, Any]) -> dict[str, Any]:
    """The default of every option of fingerprint section ``key`` (the network's, or the algorithm's
    ``fl.<name>`` of fingerprint ``stated``), as plain data; empty for any other section."""
    algorithm = stated.get("fl.algorithm")
    if key == "model":
        options: type[BaseModel] | None = ModelOptions
    elif key == f"fl.{algorithm}" and algorithm in ALGORITHMS:
        options = ALGORITHMS[algorithm].Options
    else:
        options = None
    if options is None:
        return {}
    defaults = {}
    for name, field in options.model_fields.items():
        if not field.is_required():
            value = field.get_default(call_default_factory=True)
            defaults[name] = value.model_dump() if isinstance(value, BaseModel) else value
    return defaults


def _show(value: Any) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= 80 else text[:77] + "..."
