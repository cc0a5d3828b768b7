"""What a data source is: files (or a generator) -> volumes of 2D slices, split by subject.

A source knows nothing about masks, normalisation or batching; ``data/transforms.py`` turns one
of its slices into a training sample and ``data/site.py`` builds the loaders.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class VolumeInfo:
    """One reconstructable volume: a subject's scan in one contrast, a stack of 2D slices."""

    name: str  # unique within the site, e.g. "sub-003_t1"; keys the fixed val/test masks
    subject: str  # split key: one subject never appears in two splits
    contrast: str  # "t1", "t2", "pd", "flair", an acquisition name, ...
    num_slices: int
    shape: tuple[int, int]  # (H, W) of every slice's ground-truth image


@dataclass(frozen=True)
class SourceContext:
    """What every source may need besides its own options."""

    site: str  # the site's name, for messages and cache keys
    seed: int  # the run's seed (synthetic data and fraction splits derive from it)
    cache_dir: Path  # where generated or converted data may be cached


class Source(ABC):
    """A site's data: the volumes of each split, and the ground-truth image of any slice.

    Sources must be picklable before :meth:`prepare` opens anything (loader workers receive a
    copy), and :meth:`read_slice` must be safe to call from several worker processes.
    """

    @abstractmethod
    def prepare(self) -> None:
        """Check inputs, generate or convert data and build the index; once, in the main process."""

    @abstractmethod
    def volumes(self, split: Split) -> list[VolumeInfo]:
        """The volumes of one split, in a fixed order."""

    @abstractmethod
    def read_slice(self, volume: VolumeInfo, index: int) -> np.ndarray:
        """Ground-truth image of slice ``index`` of ``volume``: (H, W) float32 magnitude or complex64."""
