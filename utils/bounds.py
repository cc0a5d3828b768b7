"""Numbers and values from outside (command lines, environment variables, files) checked where they
enter: parsed with bounds before any conversion, and shown in messages at a bounded length.

Python's ``int()`` refuses strings of more than 4,300 digits with a ValueError, formats huge integers
just as badly, and an integer of 10**30 processes or rounds would overflow whatever it reaches; so a
number is read here from at most :data:`MAX_DIGITS` digits, compared with its bounds, and only then used.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from utils.errors import UserError

MAX_DIGITS = 18  # every count, index or seed of this project fits; 10**18 < 2**63
_INTEGER = re.compile(rf"[+-]?[0-9]{{1,{MAX_DIGITS}}}")
SHOWN = 60  # characters of a value quoted in a message
MAX_RANKS = 1 << 16  # processes of one multi-process run, as a launcher's variables may state them


def shown(value: Any, limit: int = SHOWN) -> str:
    """``repr(value)`` for a message, at most about ``limit`` characters: an integer of thousands of
    digits is described by its size, a long string or structure is cut with "..."."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() > 200:
            return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
        text = repr(value)
    elif isinstance(value, (str, bytes)):
        text = repr(value[: limit + 1])
    else:
        try:
            text = repr(value)
        except Exception:  # noqa: BLE001 - a value whose repr fails is still described
            text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_int(text: str, what: str, low: int, high: int) -> int:
    """The whole number ``text`` (surrounding blanks allowed), checked to lie in ``[low, high]``; one
    :class:`UserError` line naming ``what`` otherwise."""
    stripped = text.strip() if isinstance(text, str) else ""
    if not _INTEGER.fullmatch(stripped):
        raise UserError(f"{what}: expected a whole number from {low} to {high}, got {shown(text)}")
    value = int(stripped)
    if not low <= value <= high:
        raise UserError(f"{what}: must be from {low} to {high} (got {value})")
    return value


def parse_number(value: Any, what: str, low: float, high: float) -> float:
    """``value`` (a number, or text of one of at most 40 characters) as a finite float in ``[low, high]``;
    one :class:`UserError` line naming ``what`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UserError(f"{what}: expected a number from {low:g} to {high:g}, got {shown(value)}")
    if isinstance(value, int) and not in_bounds(value, high):
        raise UserError(f"{what}: must be from {low:g} to {high:g} (got {shown(value)})")
    try:
        number = float(value) if not isinstance(value, str) or len(value) <= 40 else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise UserError(f"{what}: expected a number from {low:g} to {high:g}, got {shown(value)}")
    if not low <= number <= high:
        raise UserError(f"{what}: must be from {low:g} to {high:g} (got {shown(value)})")
    return number


def env_int(name: str, default: int | None, low: int, high: int) -> int | None:
    """The environment variable ``name`` as a bounded whole number (``default`` when unset)."""
    text = os.environ.get(name)
    if text is None:
        return default
    return parse_int(text, f"environment variable {name}", low, high)


def in_bounds(value: Any, magnitude: float) -> bool:
    """Whether a number from a file is usable: a finite float or an integer of at most ``magnitude``
    (decided without converting a huge integer to a float or to text)."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return value.bit_length() <= 1024 and abs(value) <= magnitude
    if isinstance(value, float):
        return math.isfinite(value) and abs(value) <= magnitude
    return True


# Variables a launcher (torchrun, SLURM, LSF) sets, which Lightning and torch read as integers when they
# are imported: checked before, so that a wrong one is one line instead of a crash on import.
LAUNCHER_VARIABLES = (
    "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "NODE_RANK", "GROUP_RANK",
    "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS", "JSM_NAMESPACE_RANK", "JSM_NAMESPACE_SIZE",
)  # fmt: skip


def check_launcher_env() -> None:
    """Each launcher variable that is set is a whole number from 0 to :data:`MAX_RANKS`; one
    :class:`UserError` line naming the variable otherwise."""
    for name in LAUNCHER_VARIABLES:
        env_int(name, None, 0, MAX_RANKS)


def launch_rank() -> int:
    """This process's rank as a launcher set it, or 0 where no launch is evident: before a launch, in a
    single process, without the rendezvous a launcher sets (``MASTER_ADDR`` from Lightning's launcher
    or torchrun, ``TORCHELASTIC_RUN_ID`` from torchrun), and whenever the variables do not agree (a rank
    that is no whole number, or not below ``WORLD_SIZE``, 1 where unset). Such a process prints its
    errors as rank 0 does: a lone process with stray rank variables has no rank 0 to speak for it."""

    def whole(name: str, default: str) -> int | None:
        text = os.environ.get(name, default).strip()
        return int(text) if text.isdigit() and len(text) <= 9 else None

    if not (os.environ.get("MASTER_ADDR") or os.environ.get("TORCHELASTIC_RUN_ID")):
        return 0
    rank = whole("RANK", os.environ.get("LOCAL_RANK", "0"))
    world = whole("WORLD_SIZE", "1")
    return rank if rank is not None and world is not None and rank < world else 0
