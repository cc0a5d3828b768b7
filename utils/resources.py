"""What this machine can hold: available memory and free disk, and sizes in readable units.

Bounds checked before anything is allocated (a synthetic site's generated volumes, a batch's
activations) compare an estimate with these numbers and name both in the one-line error.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def available_memory() -> int:
    """Bytes of RAM available to a new allocation: MemAvailable of /proc/meminfo, else free physical pages."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return 1 << 62  # unknown: never refuse


def free_disk(path: str | Path) -> int:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
    folder = Path(path).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 1 << 62  # unknown: never refuse


def folder_bytes(path: str | Path) -> int:
    """Total size of the files directly inside ``path`` (0 if it does not exist)."""
    try:
        return sum(e.stat().st_size for e in os.scandir(path) if e.is_file(follow_symlinks=False))
    except OSError:
        return 0


def human(size: float) -> str:
    """``size`` bytes as a short text such as ``41.8 GB`` (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(size) < 1000 or unit == "PB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} EB"  # unreachable
