"""What every image-volume source shares (BraTS, IXI, DICOM, a site's own folders): options, splits,
slice ranges, crop/pad to a fixed size, and one-line errors for bad files.

A subclass only finds its volumes on disk (:meth:`ImageVolumeSource.scan`) and decodes one
(:meth:`ImageVolumeSource.decode`). :meth:`~ImageVolumeSource.prepare` decodes every volume of the
splits once into the shared :class:`~data.sources.volume_cache.VolumeCache`; a slice is then read from
the cache in any worker process.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from data.sources.base import SPLITS, Source, SourceContext, Split, VolumeInfo
from data.sources.patterns import check_pattern, time_bound
from data.sources.readers import CorruptFile, SeriesOfVolumes
from data.sources.splits import SplitFiles, SplitFractions, assign_splits
from data.sources.volume_cache import CachedVolume, VolumeCache, read_cached_slice
from utils.errors import UserError
from utils.io import check_regular
from utils.paths import not_found

logger = logging.getLogger(__name__)


class SourceOptionsBase(BaseModel):
    """Options every file-based source takes: where the data is, which slices, how subjects split."""

    model_config = ConfigDict(extra="forbid")

    root: str = Field(description="folder holding the data (override it on the command line)")
    slices: tuple[int, int] | None = Field(
        None,
        description="[start, stop): the slice range of every volume (0-based, stop excluded); null = all",
    )
    include: str | None = Field(
        None, description="regular expression: keep subjects whose id contains a match"
    )
    split: SplitFractions = Field(
        default_factory=SplitFractions, description="fractions of subjects per split (hash of the subject id)"
    )
    split_files: SplitFiles | None = Field(
        None, description="text files listing each split's subjects; replaces `split` when given"
    )
    skip_corrupt: bool = Field(
        False, description="skip unreadable volumes with one warning instead of stopping with an error"
    )

    @field_validator("slices")
    @classmethod
    def _range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not 0 <= value[0] < value[1]:
            raise ValueError(f"slices must be [start, stop) with 0 <= start < stop (got {list(value)})")
        return value

    @field_validator("include")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            check_pattern(value)
        return value


class VolumeSourceOptions(SourceOptionsBase):
    """Options of the image-volume sources: the common ones plus the slice size."""

    size: int | tuple[int, int] | None = Field(
        None, description="(H, W) or one number for square images; null = the volumes' own size"
    )
    resize: Literal["crop", "kspace"] = Field(
        "crop",
        description="how `size` is reached: centre crop/zero-pad the image (smaller field of view), "
        "or crop/zero-pad its k-space (same field of view, lower resolution; the paper's fastMRI client)",
    )

    @field_validator("size", mode="before")
    @classmethod
    def _square(cls, value: Any) -> Any:
        return (value, value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("size")
    @classmethod
    def _positive(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and min(value) < 8:
            raise ValueError(f"size must be at least 8 pixels (got {list(value)})")
        return value


class NiftiOptions(VolumeSourceOptions):
    """Options of the sources that read NIfTI files: which volume of a 4D file to use."""

    volume_index: int | None = Field(
        None,
        ge=0,
        description="the volume of a 4D NIfTI (fMRI time point, diffusion direction, echo) to use, counted "
        "from 0; null: a 4D file is refused with its shape",
    )


@dataclass(frozen=True)
class VolumeFile:
    """One volume found on disk, before decoding: whose, which contrast, and the file(s) holding it."""

    subject: str
    contrast: str
    paths: tuple[Path, ...]  # one file, or the files of a DICOM series
    aliases: tuple[str, ...] = ()  # other names split files may use for the subject (file names)
    extra: tuple[tuple[str, Any], ...] = ()  # reader details (DICOM headers, an h5 key)

    @property
    def label(self) -> str:
        """How messages name the volume: its file, or the folder of its series."""
        if len(self.paths) == 1:
            return str(self.paths[0])
        return str(self.paths[0].parent)


def fit_to_size(image: np.ndarray, size: tuple[int, int] | None, mode: str = "crop") -> np.ndarray:
    """Centre crop / zero-pad an (H, W) image to ``size``, in image space or in k-space ("kspace").

    The centre pixel (H // 2, W // 2) lands on (h // 2, w // 2), so k-space stays centred on DC. A
    k-space resize keeps the mean intensity of the image.
    """
    if size is None or tuple(image.shape) == tuple(size):
        return image.astype(np.float32, copy=False)
    if mode == "crop":
        return _crop_or_pad(image, size).astype(np.float32, copy=False)
    kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image), norm="ortho"))
    resized = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(_crop_or_pad(kspace, size)), norm="ortho"))
    scale = math.sqrt(size[0] * size[1] / (image.shape[0] * image.shape[1]))
    return (np.abs(resized) * scale).astype(np.float32)


def _crop_or_pad(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Crop or zero-pad the last two axes around the centre pixel (n // 2 -> t // 2)."""
    out = np.zeros((*array.shape[:-2], *size), dtype=array.dtype)
    src, dst = [], []
    for n, t in zip(array.shape[-2:], size):
        start_src = max(0, n // 2 - t // 2)
        start_dst = max(0, t // 2 - n // 2)
        length = min(n - start_src, t - start_dst)
        src.append(slice(start_src, start_src + length))
        dst.append(slice(start_dst, start_dst + length))
    out[..., dst[0], dst[1]] = array[..., src[0], src[1]]
    return out


SEARCHED = 1000  # entries under a root listed for a "no volumes found" message, at most
SHOWN = 5  # names a message lists, at most


def _some(names: list[str]) -> str:
    """The first :data:`SHOWN` names, and how many there are in all."""
    text = ", ".join(names[:SHOWN])
    return f"{text}, ... ({len(names)} in all)" if len(names) > SHOWN else text


class FileSource(Source):
    """What every file-based source shares: the root check, one-line errors or warnings, the split index."""

    describe: ClassVar[str] = "data files"  # the expected layout, for messages

    def __init__(self, options: SourceOptionsBase, context: SourceContext) -> None:
        self.options = options
        self.context = context
        self._volumes: dict[str, list[VolumeInfo]] = {}
        # (subject, contrast) of volumes :meth:`scan` saw but the options leave out (their contrast)
        self.passed_over: list[tuple[str, str]] = []

    @property
    def where(self) -> str:
        """How messages name this source."""
        return f"site {self.context.site!r}"

    def root(self) -> Path:
        """The data folder, checked to exist."""
        if not self.options.root.strip():  # Path("") is the working directory: never meant
            raise UserError(f"{self.where}: source.root is empty; expected {self.describe}")
        root = Path(self.options.root).expanduser()
        if not root.exists():
            reason = not_found(root)
            reason = "does not exist" if reason == "not found" else f"is {reason}"
            raise UserError(f"{self.where}: source.root {root} {reason}; expected {self.describe}")
        if not root.is_dir():
            raise UserError(f"{self.where}: source.root {root} is not a folder; expected {self.describe}")
        return root

    def report(self, bad: list[tuple[str, str]]) -> None:
        """One error for the first bad volume, or (skip_corrupt) one warning listing every skipped one."""
        if not bad:
            return
        if not self.options.skip_corrupt:
            label, reason = bad[0]
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise UserError(
                f"{self.where}: {label}: {reason}{more}; set skip_corrupt: true to skip such volumes"
            )
        listed = "; ".join(f"{label}: {reason}" for label, reason in bad)
        logger.warning("%s: skipped %d unreadable volume(s): %s", self.where, len(bad), listed)

    def volumes(self, split: Split) -> list[VolumeInfo]:
        """The volumes of one split, ordered by subject and contrast."""
        if not self._volumes:
            raise RuntimeError(f"{type(self).__name__}.prepare() must be called before reading volumes")
        if split not in self._volumes:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return list(self._volumes[split])

    def check_sizes(self, infos: dict[Split, list[VolumeInfo]], root: Path, hint: str) -> None:
        """All slices of a site must share one size (they are batched together)."""
        shapes = {v.shape for split in SPLITS for v in infos[split]}
        if len(shapes) > 1:
            listed = ", ".join(f"{h}x{w}" for h, w in sorted(shapes))
            raise UserError(
                f"{self.where}: volumes under {root} have different slice sizes ({listed}); {hint}"
            )


class ImageVolumeSource(FileSource):
    """A source of image volumes (slices, H, W) on disk: finds, splits, converts once, serves slices.

    Subclasses set ``describe`` (the expected layout, for "nothing found" errors) and implement
    :meth:`scan` and :meth:`decode`; k-space is simulated from the images by the transform.
    """

    def __init__(self, options: VolumeSourceOptions, context: SourceContext) -> None:
        super().__init__(options, context)
        self._entries: dict[str, CachedVolume] = {}

    # -- what subclasses provide ----------------------------------------------------------------
    @abstractmethod
    def scan(self, root: Path) -> tuple[list[VolumeFile], list[tuple[str, str]]]:
        """The volumes under ``root``, and (file, reason) of files found unreadable while scanning."""

    @abstractmethod
    def decode(self, volume: VolumeFile) -> np.ndarray:
        """The (slices, H, W) array of one volume; raises CorruptFile with a reason."""

    def decode_identity(self, volume: VolumeFile) -> dict:
        """What a decoded volume depends on besides its files (e.g. the slicing plane): part of its key."""
        return {"kind": type(self).__name__}

    # -- the shared part ------------------------------------------------------------------------
    def prepare(self) -> None:
        """Find the volumes, split them by subject, decode each once into the cache and index the slices."""
        root = self.root()
        found, bad = self.scan(root)
        everything = list(found)
        if self.options.include is not None:
            pattern = re.compile(self.options.include)
            with time_bound(f"{self.where}: source.include"):
                found = [v for v in found if pattern.search(v.subject)]
        if not found and not bad:
            extra = (
                f" with a subject matching include={self.options.include!r}" if self.options.include else ""
            )
            raise UserError(
                f"{self.where}: no volumes found under {root}{extra}; expected {self.describe}; "
                f"{self.found_instead(root, everything)}"
            )
        aliases: dict[str, set[str]] = {}
        for volume in found:
            aliases.setdefault(volume.subject, set()).update(volume.aliases)
        assignment = assign_splits(aliases, self.options.split, self.options.split_files)
        cache = VolumeCache(Path(self.context.cache_dir) / "volumes")
        infos: dict[Split, list[VolumeInfo]] = {split: [] for split in SPLITS}
        entries: dict[str, CachedVolume] = {}
        names: set[str] = set()
        for volume in sorted(found, key=lambda v: (v.subject, v.contrast, v.label)):
            split = assignment.get(volume.subject)
            if split is None:
                continue
            try:
                entry = self._convert(cache, volume)
            except CorruptFile as err:
                bad.append((volume.label, str(err)))
                continue
            except SeriesOfVolumes as err:  # a valid file: the user chooses which of its volumes
                raise UserError(f"{self.where}: {volume.label}: {err}") from None
            name = _unique(f"{volume.subject}_{volume.contrast}", names)
            count = self._slice_count(entry)
            if count == 0:
                a, b = self.options.slices
                bad.append((volume.label, f"has {entry.shape[0]} slices; slices [{a}, {b}) selects none"))
                continue
            shape = self.options.size or entry.shape[1:]
            infos[split].append(VolumeInfo(name, volume.subject, volume.contrast, count, tuple(shape)))
            entries[name] = entry
        self.report(bad)
        self.check_sizes(infos, root, "set source.size to crop/pad them to one size")
        self._note_padding(entries)
        if not entries:
            raise UserError(f"{self.where}: no usable volumes under {root}; expected {self.describe}")
        self._volumes, self._entries = infos, entries

    def found_instead(self, root: Path, found: list[VolumeFile]) -> str:
        """What a search that selected nothing saw: the subjects that ``include`` left out, the contrasts
        that ``contrasts`` left out, or a few of the files that are not named as expected."""
        if found:
            subjects = sorted({v.subject for v in found})
            return f"found subject(s) {_some(subjects)}, none matching include"
        if self.passed_over:
            contrasts = sorted({c for _, c in self.passed_over})
            subjects = sorted({s for s, _ in self.passed_over})
            return (
                f"found contrast(s) {_some(contrasts)} of subject(s) {_some(subjects)}, none of "
                f"source.contrasts {list(getattr(self.options, 'contrasts', []) or [])}"
            )
        files = [p for p in itertools.islice(root.rglob("*"), SEARCHED) if p.is_file()]
        if not files:
            return "the folder holds no files"
        more = " (or more)" if len(files) >= SEARCHED else ""
        named = _some(sorted(relative_label(p, root) for p in files))
        return f"found {len(files)} file(s){more} named otherwise: {named}"

    def _note_padding(self, entries: dict[str, CachedVolume]) -> None:
        """One warning when ``source.size`` is larger than the slices, which are then zero-padded."""
        size = self.options.size
        if size is None:
            return
        shapes = {e.shape[1:] for e in entries.values()}
        small = sorted(shape for shape in shapes if shape[0] < size[0] or shape[1] < size[1])
        if small:
            listed = ", ".join(f"{h}x{w}" for h, w in small)
            how = "image" if self.options.resize == "crop" else "k-space"
            logger.warning(
                "%s: slices of %s are smaller than source.size %dx%d; their %s is zero-padded to it",
                self.where, listed, size[0], size[1], how,
            )  # fmt: skip

    def _convert(self, cache: VolumeCache, volume: VolumeFile) -> CachedVolume:
        """The cache entry of a volume, decoding it first if it is absent or stale."""
        for path in volume.paths:  # a FIFO would hang the reader, a device flood it
            try:
                check_regular(path, "volume")
            except UserError as err:
                raise CorruptFile(str(err).split(": ", 1)[-1]) from None
        try:
            key = cache.key(volume.paths, self.decode_identity(volume))
            found = cache.lookup(key, volume.paths)
            if found is None:
                found = cache.store(key, volume.paths, self.decode(volume))
        except OSError as err:
            if not all(p.exists() for p in volume.paths):
                raise CorruptFile(f"disappeared while reading ({err.strerror or err})") from None
            raise UserError(
                f"data.cache_dir: cannot write the volume cache {cache.folder} ({err.strerror or err})"
            ) from None
        path, offset, dtype, shape = found
        first = self.options.slices[0] if self.options.slices else 0
        return CachedVolume(path, offset, dtype, shape, first)

    def _slice_count(self, entry: CachedVolume) -> int:
        if self.options.slices is None:
            return entry.shape[0]
        start, stop = self.options.slices
        return max(0, min(stop, entry.shape[0]) - start)

    def read_slice(self, volume: VolumeInfo, index: int) -> np.ndarray:
        """Image (H, W) float32 of slice ``index`` of ``volume``, cropped/padded to ``size``."""
        entry = self._entries.get(volume.name)
        if entry is None:
            raise KeyError(f"{self.where} has no volume {volume.name!r} (was prepare() called?)")
        if not 0 <= index < volume.num_slices:
            raise IndexError(f"slice {index} out of range: {volume.name!r} has {volume.num_slices} slices")
        return fit_to_size(read_cached_slice(entry, index), self.options.size, self.options.resize)


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3``, ... if already taken; records the result."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    taken.add(candidate)
    return candidate


def relative_label(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` in POSIX form (for naming rules and split-file aliases)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
