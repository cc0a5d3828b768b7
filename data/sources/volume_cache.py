"""The decode-once volume cache shared by every image-volume source and the simulated site.

A decoded volume is stored uncompressed as ``<cache_dir>/volumes/<key>.npy`` with a ``<key>.json``
manifest (source files with size and modification time, shape, dtype); later runs reuse it until a
source file changes. A slice is then one seek and one read of H * W values, in any worker process,
instead of decompressing the whole volume per slice. The simulated site (``data/sources/synthetic.py``)
stores its generated volumes here too, keyed by what they are generated from instead of files.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from utils.errors import UserError
from utils.io import atomic_write, atomic_write_text, read_text

CACHE_VERSION = 1  # bump when the cached arrays change meaning; it invalidates old caches


@dataclass(frozen=True)
class CachedVolume:
    """Where a decoded volume lies in the cache and which of its slices a site uses."""

    path: str
    offset: int  # bytes before the array data
    dtype: str
    shape: tuple[int, int, int]  # (slices, H, W) of the whole volume
    first: int  # first slice used


def _file_stats(paths: Sequence[Path]) -> list[list]:
    """[path, size, mtime_ns] of every source file: what invalidates a cached volume."""
    stats = []
    for path in paths:
        st = path.stat()
        stats.append([str(path), st.st_size, st.st_mtime_ns])
    return stats


class VolumeCache:
    """Volumes as ``.npy`` files, each with a JSON manifest, keyed by source files and an identity.

    An entry's key hashes ``CACHE_VERSION``, the absolute paths of its source files and an identity
    dict (everything else the array depends on); its manifest records the files' size and modification
    time. An entry is used only if its manifest has this ``CACHE_VERSION``, the same file stats and an
    ``.npy`` of the expected length. A generated volume has no source files (``paths=()``): its identity
    alone keys it, so it must name everything the generator's output depends on.

    Entries are written to a temporary file and renamed into place, the manifest last, so a killed
    write leaves no entry that loads (only ignored ``.<key>.*.tmp`` temporary files), and processes
    writing the same entry at once each rename a complete file over it.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def key(self, paths: Sequence[Path], identity: dict) -> str:
        """A stable name for one volume's cache entry."""
        spec = {"version": CACHE_VERSION, "paths": [os.path.abspath(p) for p in paths], **identity}
        return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:24]

    def lookup(self, key: str, paths: Sequence[Path]) -> tuple[str, int, str, tuple[int, int, int]] | None:
        """(npy path, data offset, dtype, shape) of a valid entry, or None if absent, stale or incomplete."""
        meta_path, data_path = self.folder / f"{key}.json", self.folder / f"{key}.npy"
        try:
            meta = json.loads(read_text(meta_path, "cache entry", 1 << 20))
            if meta.get("version") != CACHE_VERSION or meta["sources"] != _file_stats(paths):
                return None
            shape = tuple(int(n) for n in meta["shape"])
            dtype = np.dtype(meta["dtype"])
            expected = meta["offset"] + math.prod(shape) * dtype.itemsize
            if data_path.stat().st_size != expected:
                return None
        except (OSError, ValueError, KeyError, TypeError, RecursionError, UserError):
            return None
        return str(data_path), int(meta["offset"]), dtype.str, shape

    def store(self, key: str, paths: Sequence[Path], array: np.ndarray) -> tuple[str, int, str, tuple]:
        """Write a decoded volume and its manifest atomically; returns what :meth:`lookup` would."""
        self.folder.mkdir(parents=True, exist_ok=True)
        data_path, meta_path = self.folder / f"{key}.npy", self.folder / f"{key}.json"
        stats = _file_stats(paths)

        def write_npy(handle: IO[bytes]) -> int:
            np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)
            return handle.tell() - array.nbytes  # .npy is header + raw data, nothing after

        offset = atomic_write(data_path, write_npy)
        meta = {
            "version": CACHE_VERSION,
            "sources": stats,
            "shape": list(array.shape),
            "dtype": array.dtype.str,
            "offset": offset,
        }
        atomic_write_text(meta_path, json.dumps(meta))
        return str(data_path), offset, array.dtype.str, tuple(array.shape)


def read_cached_slice(entry: CachedVolume, index: int) -> np.ndarray:
    """Slice ``entry.first + index`` of a cached volume as (H, W) float32: one seek and one read."""
    _, height, width = entry.shape
    dtype = np.dtype(entry.dtype)
    count = height * width
    with open(entry.path, "rb") as handle:
        handle.seek(entry.offset + (entry.first + index) * count * dtype.itemsize)
        data = handle.read(count * dtype.itemsize)
    return np.frombuffer(data, dtype=dtype, count=count).reshape(height, width).astype(np.float32)
