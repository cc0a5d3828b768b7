"""Regular expressions from a config, matched within bounds: naming rules (``source.pattern``), subject
filters (``source.include``) and DICOM contrast rules.

Python's backtracking engine can take exponential time on a pattern such as ``(a+)+`` against a name
it almost matches: a config would hang the command. So a pattern is checked when the config is read
(:func:`check_pattern`: at most :data:`MAX_PATTERN` characters, it compiles, and no repeat holds
another repeat, the shape of every classic catastrophic case), and every matching runs under a time
bound (:func:`time_bound`, :data:`MATCH_SECONDS` for a whole folder), which interrupts what the check
cannot see (alternatives inside a repeat, back references) with one line naming the key. Globs
(``source.pattern`` of DICOM folders) are matched name by name (:func:`glob_matches`), which cannot
backtrack.
"""

from __future__ import annotations

import fnmatch
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from utils.errors import UserError

MAX_PATTERN = 1000  # characters of one pattern
MATCH_SECONDS = 10.0  # for every match of one scan together

try:  # the parser of the re module: its structure, without compiling
    from re import _parser as _sre_parse  # Python >= 3.11
except ImportError:  # pragma: no cover
    import sre_parse as _sre_parse  # type: ignore[no-redef]

_REPEATS = {_sre_parse.MAX_REPEAT, _sre_parse.MIN_REPEAT}


def check_pattern(value: str, flags: int = 0) -> re.Pattern:
    """``value`` compiled, or ValueError (for a config validator) saying why it cannot be used."""
    if len(value) > MAX_PATTERN:
        raise ValueError(f"a pattern of {len(value)} characters; at most {MAX_PATTERN}")
    try:
        compiled = re.compile(value, flags)
        parsed = _sre_parse.parse(value, flags)
    except (re.error, OverflowError, RecursionError, ValueError, TypeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"not a valid regular expression ({reason})") from None
    if _nested_repeat(parsed):
        raise ValueError(
            "a repeat inside a repeat, such as (a+)+ or (x*y?)*, can take exponential time to match; "
            "write it with one repeat, e.g. (a+) or [xy]*"
        )
    return compiled


def _nested_repeat(parsed: Any) -> bool:
    """Whether a repeat of more than one (``*``, ``+``, ``{2,}``) holds, at any depth, a repeat of a
    variable count (``+``, ``?``, ``{1,3}``; a fixed ``{2}`` is plain text repeated)."""
    stack: list[tuple[Any, bool]] = [(parsed, False)]
    while stack:
        items, inside = stack.pop()
        for op, av in items:
            if op in _REPEATS:
                low, high, body = av
                many = high is _sre_parse.MAXREPEAT or high > 1
                if inside and low != high:  # a variable count inside a repeat: many ways to split
                    return True
                stack.append((body, inside or many))
            elif op is _sre_parse.SUBPATTERN:
                stack.append((av[-1], inside))
            elif op is _sre_parse.BRANCH:
                stack.extend((branch, inside) for branch in av[1])
            elif op in (_sre_parse.ASSERT, _sre_parse.ASSERT_NOT):
                stack.append((av[1], inside))
            elif op is _sre_parse.ATOMIC_GROUP:
                stack.append((av, inside))
            elif op is _sre_parse.GROUPREF_EXISTS:
                stack.extend((branch, inside) for branch in av[1:] if branch is not None)
    return False


class _Expired(Exception):
    pass


def _expire(signum: int, frame: Any) -> None:
    raise _Expired


@contextmanager
def time_bound(key: str, seconds: float | None = None) -> Iterator[None]:
    """Run the block (the matching of a scan, nothing else) for at most ``seconds`` (default
    :data:`MATCH_SECONDS`); past that, a
    :class:`UserError` naming ``key``. Python's matcher checks for signals while it backtracks, so an
    interval timer interrupts it; in a thread other than the main one (no signals there) the block runs
    unbounded, with :func:`check_pattern`'s structural bound alone."""
    seconds = MATCH_SECONDS if seconds is None else seconds
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _expire)
    earlier = signal.setitimer(signal.ITIMER_REAL, seconds)[0]
    try:
        yield
    except _Expired:
        raise UserError(
            f"{key}: matching took longer than {seconds:g} s; the pattern backtracks too much, "
            "simplify it (fewer repeats, no alternatives inside a repeat)"
        ) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, earlier)  # 0 when no other timer was running
        signal.signal(signal.SIGALRM, previous)


def glob_matches(relative: str, pattern: str) -> bool:
    """Whether the relative POSIX path ``relative`` matches the glob ``pattern`` as ``Path.glob`` reads
    it (``*``, ``?`` and ``[...]`` within a name, ``**`` for any number of folders), decided in time
    proportional to names x pattern parts: no pattern can make it backtrack."""
    names = relative.split("/")
    globs = [part for part in pattern.split("/") if part not in ("", ".")]
    reach = [[False] * (len(globs) + 1) for _ in range(len(names) + 1)]
    reach[0][0] = True
    for j, glob in enumerate(globs):
        if glob == "**":
            seen = False
            for i in range(len(names) + 1):
                seen = seen or reach[i][j]
                reach[i][j + 1] = seen
        else:
            for i, name in enumerate(names):
                if reach[i][j] and fnmatch.fnmatchcase(name, glob):
                    reach[i + 1][j + 1] = True
    return reach[len(names)][len(globs)]
