"""What a data source is: files (or a generator) -> volumes of 2D slices, split by subject.

A source knows nothing about masks, normalisation or batching; ``data/transforms.py`` turns one
of its slices into a training sample and ``data/site.py`` builds the loaders. A slice is either a
ground-truth image (k-space is then simulated from it by FFT) or measured k-space (:class:`KspaceSlice`,
fastMRI's raw data) with the reference image it is scored against.
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
    shape: tuple[int, int]  # (H, W) of every slice's ground-truth image (the network's input and output)


@dataclass(frozen=True)
class KspaceSlice:
    """Measured k-space of one slice, the image it is scored against and the size the network sees.

    ``kspace`` is centred (DC at (H // 2, W // 2)), complex64, (H, W) single-coil or (C, H, W) multi-coil;
    masks are drawn for its (H, W). ``target`` is the (h, w) float32 reference magnitude, or None to use
    the magnitude (root sum of squares over coils) of the fully sampled k-space, centre-cropped to ``crop``.
    ``crop`` is (h, w), at most (H, W): the zero-filled image is centre-cropped to it (fastMRI's convention).
    """

    kspace: np.ndarray
    target: np.ndarray | None
    crop: tuple[int, int]


# What Source.read_slice returns: an (H, W) image, or measured k-space with its target.
SliceData = np.ndarray | KspaceSlice


@dataclass(frozen=True)
class SourceContext:
    """What every source may need besides its own options."""

    site: str  # the site's name, for messages and cache keys
    seed: int  # the run's seed (synthetic data derives from it)
    cache_dir: Path  # where generated or converted data may be cached


class Source(ABC):
    """A site's data: the volumes of each split, and the ground truth (image or k-space) of any slice.

    Sources must be picklable before :meth:`prepare` opens anything (loader workers receive a
    copy), and :meth:`read_slice` must be safe to call from several worker processes.
    """

    @abstractmethod
    def prepare(self) -> None:
        """Check inputs, generate or convert data and build the index; once, in the main process.

        Everything a user can get wrong (missing folders, unreadable files, wrong shapes) should raise
        :class:`~utils.errors.UserError` here, before any training starts.
        """

    @abstractmethod
    def volumes(self, split: Split) -> list[VolumeInfo]:
        """The volumes of one split, in a fixed order."""

    @abstractmethod
    def read_slice(self, volume: VolumeInfo, index: int) -> SliceData:
        """Slice ``index`` of ``volume``: an (H, W) float32 magnitude or complex64 image, or a KspaceSlice."""
