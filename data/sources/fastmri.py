"""fastMRI raw data: ``.h5`` files holding measured k-space, single-coil or multi-coil, with their targets.

Each file is one volume: dataset ``kspace`` (slices, H, W) single-coil or (slices, coils, H, W)
multi-coil, complex; the target ``reconstruction_esc`` (single-coil) or ``reconstruction_rss``
(multi-coil), (slices, 320, 320); ``ismrmrd_header`` XML with the encoded and reconstruction matrix
sizes; attributes ``acquisition`` (CORPD_FBK, CORPDFS_FBK, AXT1, AXT2, ...) and ``patient_id``.
The zero-filled input is cropped to the target size (the reconstruction matrix when there is no target
dataset, whose target is then the magnitude / root sum of squares of the fully sampled k-space).
Files are opened lazily in each worker process and at most ``OPEN_FILES`` stay open.
"""

from __future__ import annotations

import logging
import os
import re
import xml.etree.ElementTree as ET
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from data.sources.base import SPLITS, KspaceSlice, SourceContext, Split, VolumeInfo
from data.sources.patterns import time_bound
from data.sources.readers import CorruptFile
from data.sources.splits import assign_splits
from data.sources.volumes import FileSource, SourceOptionsBase, relative_label
from utils.errors import UserError
from utils.io import check_regular
from utils.paths import walk
from utils.seeding import stable_seed

logger = logging.getLogger(__name__)

OPEN_FILES = 16  # h5 handles kept open per process (least recently used are closed)
TARGETS = ("reconstruction_esc", "reconstruction_rss")
_ISMRMRD = "{http://www.ismrm.org/ISMRMRD}"


class FastMRIOptions(SourceOptionsBase):
    """fastMRI ``.h5`` raw data (knee or brain, single- or multi-coil) under one folder."""

    kind: Literal["fastmri"] = "fastmri"
    acquisitions: list[str] | None = Field(
        None,
        description="keep files whose `acquisition` attribute is one of these (e.g. [CORPD_FBK]); null = all",
    )
    target: Literal["auto", "reconstruction_esc", "reconstruction_rss", "kspace"] = Field(
        "auto",
        description="reference image: a target dataset, or `kspace` = magnitude (RSS) of the full k-space; "
        "auto = reconstruction_esc or reconstruction_rss if present, else kspace",
    )
    crop: int | tuple[int, int] | None = Field(
        None, description="crop every slice to at most this size; null = the target size (320 x 320)"
    )
    sample_rate: float = Field(
        1.0, gt=0.0, le=1.0, description="fraction of each volume's slices to keep (fixed per file and slice)"
    )
    volume_sample_rate: float = Field(
        1.0, gt=0.0, le=1.0, description="fraction of the files to keep (fixed per file name)"
    )
    subject: Literal["patient_id", "file"] = Field(
        "patient_id",
        description="subject id: the `patient_id` attribute (file name if absent), or the file name",
    )
    verify_values: bool = Field(
        False,
        description="read every slice in prepare to check for NaN/Inf (else each slice is checked when read)",
    )

    @field_validator("crop", mode="before")
    @classmethod
    def _square(cls, value: Any) -> Any:
        return (value, value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("crop")
    @classmethod
    def _positive(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and min(value) < 8:
            raise ValueError(f"crop must be at least 8 pixels (got {list(value)})")
        return value


@dataclass(frozen=True)
class FastMRIFile:
    """What prepare learned about one file."""

    path: str
    subject: str
    acquisition: str
    slices: tuple[int, ...]  # the file's slice indices used, in order
    target: str | None  # dataset name, or None = computed from the k-space
    crop: tuple[int, int]


def _fraction(*parts: object) -> float:
    """A number in [0, 1) fixed by ``parts``."""
    return stable_seed(*parts) / float(1 << 63)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def recon_size(header: bytes | str) -> tuple[int, int]:
    """(x, y) of an ISMRMRD header's reconstruction matrix: the image rows and columns fastMRI crops to."""
    try:
        root = ET.fromstring(header)
    except ET.ParseError as err:
        raise CorruptFile(f"ismrmrd_header is not valid XML ({err})") from None
    size = root.find(f"{_ISMRMRD}encoding/{_ISMRMRD}reconSpace/{_ISMRMRD}matrixSize")
    if size is None:  # headers written without the namespace
        size = root.find("encoding/reconSpace/matrixSize")
    try:
        x, y = (
            int(size.findtext(f"{_ISMRMRD}x") or size.findtext("x")),
            int(size.findtext(f"{_ISMRMRD}y") or size.findtext("y")),
        )
    except (AttributeError, TypeError, ValueError):
        raise CorruptFile("ismrmrd_header has no encoding/reconSpace/matrixSize x and y") from None
    if x < 1 or y < 1:
        raise CorruptFile(f"ismrmrd_header's reconSpace matrixSize is {x} x {y}; expected positive sizes")
    return x, y


class FastMRISource(FileSource):
    """fastMRI ``.h5`` files: measured k-space per slice, its target and the crop size."""

    describe: ClassVar[str] = (
        "fastMRI .h5 files (datasets kspace and reconstruction_esc/_rss, ismrmrd_header)"
    )

    def __init__(self, options: FastMRIOptions, context: SourceContext) -> None:
        super().__init__(options, context)
        self._files: dict[str, FastMRIFile] = {}
        self._handles: OrderedDict[str, Any] = OrderedDict()
        self._pid = os.getpid()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"] = OrderedDict()
        return state

    # -- prepare --------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Read every file's metadata, filter, split by subject and check shapes (data is read lazily)."""
        options: FastMRIOptions = self.options
        root = self.root()
        entries, walked = walk(root, f"{self.where}: source.root")
        paths = [path for _, path, folder in entries if not folder and path.name.endswith(".h5")]
        if not paths and not walked:
            raise UserError(f"{self.where}: no .h5 files under {root}; expected {self.describe}")
        files, bad = [], list(walked)
        for path in paths:
            name = relative_label(path, root)
            if (
                options.volume_sample_rate < 1
                and _fraction("volume-sample", name) >= options.volume_sample_rate
            ):
                continue
            try:
                found = self._inspect(path)
            except CorruptFile as err:
                bad.append((str(path), str(err)))
                continue
            if found is not None:
                files.append(found)
        if options.include is not None:
            pattern = re.compile(options.include)
            with time_bound(f"{self.where}: source.include"):
                files = [f for f in files if pattern.search(f.subject)]
        if not files and not bad:
            wanted = f" with acquisition in {options.acquisitions}" if options.acquisitions else ""
            raise UserError(
                f"{self.where}: no usable .h5 files{wanted} under {root}; expected {self.describe}"
            )
        aliases = {}
        for f in files:
            aliases.setdefault(f.subject, set()).update({Path(f.path).name, Path(f.path).stem})
        assignment = assign_splits(aliases, options.split, options.split_files)
        infos: dict[Split, list[VolumeInfo]] = {split: [] for split in SPLITS}
        kept: dict[str, FastMRIFile] = {}
        for f in sorted(files, key=lambda f: (f.subject, f.path)):
            split = assignment.get(f.subject)
            if split is None:
                continue
            if options.verify_values:
                try:
                    self._verify(f)
                except CorruptFile as err:
                    bad.append((f.path, str(err)))
                    continue
            name = relative_label(Path(f.path), root).removesuffix(".h5")
            infos[split].append(VolumeInfo(name, f.subject, f.acquisition, len(f.slices), f.crop))
            kept[name] = f
        self.report(bad)
        if not kept:
            raise UserError(f"{self.where}: no usable .h5 files under {root}; expected {self.describe}")
        self.check_sizes(infos, root, "set source.crop to one size they all reach")
        self._volumes, self._files = infos, kept

    def _inspect(self, path: Path) -> FastMRIFile | None:
        """One file's metadata and checks; None if filtered out by acquisition or slice selection."""
        import h5py

        try:
            check_regular(path, "file")  # a FIFO would hang h5py
        except UserError as err:
            raise CorruptFile(str(err).split(": ", 1)[-1]) from None
        try:
            with h5py.File(path, "r") as handle:
                return self._inspect_open(path, handle)
        except CorruptFile:
            raise
        except Exception as err:  # truncated or foreign files raise OSError and others
            raise CorruptFile(f"not a readable HDF5 file ({_first_line(err)})") from None

    def _inspect_open(self, path: Path, handle) -> FastMRIFile | None:
        options: FastMRIOptions = self.options
        acquisition = _text(handle.attrs.get("acquisition", "unknown"))
        if options.acquisitions is not None and acquisition not in options.acquisitions:
            return None
        if "kspace" not in handle:
            found = ", ".join(sorted(handle.keys())) or "nothing"
            raise CorruptFile(f"has no dataset 'kspace' (found: {found}); expected fastMRI raw data")
        kspace = handle["kspace"]
        if kspace.ndim not in (3, 4):
            raise CorruptFile(
                f"dataset 'kspace' has shape {kspace.shape}; expected (slices, H, W) single-coil "
                "or (slices, coils, H, W) multi-coil"
            )
        if kspace.dtype.kind != "c":
            raise CorruptFile(f"dataset 'kspace' has dtype {kspace.dtype}; expected complex k-space")
        if 0 in kspace.shape:
            dims = "(slices, coils, H, W)" if kspace.ndim == 4 else "(slices, H, W)"
            raise CorruptFile(f"dataset 'kspace' has shape {kspace.shape}, an empty {dims}; nothing to read")
        num_slices, height, width = kspace.shape[0], kspace.shape[-2], kspace.shape[-1]
        target = self._target_name(handle, kspace.ndim)
        if target is not None:
            data = handle[target]
            if data.dtype.kind not in "fiu":
                raise CorruptFile(
                    f"dataset {target!r} has dtype {data.dtype}; expected a real-valued magnitude image"
                )
            if data.ndim != 3 or data.shape[0] != num_slices:
                raise CorruptFile(
                    f"dataset {target!r} has shape {data.shape}; expected ({num_slices}, h, w) like 'kspace'"
                )
            crop = tuple(data.shape[-2:])
        elif "ismrmrd_header" in handle:
            crop = recon_size(handle["ismrmrd_header"][()])
        else:
            raise CorruptFile(
                "has neither a target dataset nor an ismrmrd_header to read the target size from"
            )
        if options.crop is not None:
            crop = (min(crop[0], options.crop[0]), min(crop[1], options.crop[1]))
        crop = (min(crop[0], height), min(crop[1], width))
        indices = range(num_slices)
        if options.slices is not None:
            indices = range(options.slices[0], min(options.slices[1], num_slices))
        name = path.name
        slices = tuple(
            s
            for s in indices
            if options.sample_rate >= 1 or _fraction("slice-sample", name, s) < options.sample_rate
        )
        if not slices:
            if options.slices is not None and options.slices[0] >= num_slices:
                a, b = options.slices
                raise CorruptFile(f"has {num_slices} slices; slices [{a}, {b}) selects none")
            return None
        patient = _text(handle.attrs.get("patient_id", "")).strip()
        subject = patient if options.subject == "patient_id" and patient else path.stem
        return FastMRIFile(str(path), subject, acquisition, slices, target, crop)

    def _target_name(self, handle, kspace_ndim: int) -> str | None:
        """The target dataset to use, or None to compute the target from the k-space."""
        wanted = self.options.target
        if wanted == "kspace":
            return None
        if wanted != "auto":
            if wanted not in handle:
                found = ", ".join(sorted(handle.keys())) or "nothing"
                raise CorruptFile(
                    f"has no dataset {wanted!r} (found: {found}); set source.target: kspace to compute it"
                )
            return wanted
        preferred = TARGETS if kspace_ndim == 3 else TARGETS[::-1]
        return next((name for name in preferred if name in handle), None)

    def _verify(self, f: FastMRIFile) -> None:
        for index in range(len(f.slices)):
            self._read(f, index)

    # -- reading --------------------------------------------------------------------------------
    def _handle(self, path: str):
        """An open h5py file, from this process's small LRU of handles."""
        import h5py

        if self._pid != os.getpid():  # a forked worker: never use the parent's handles
            self._handles, self._pid = OrderedDict(), os.getpid()
        handle = self._handles.pop(path, None)
        if handle is None:
            while len(self._handles) >= OPEN_FILES:
                self._handles.popitem(last=False)[1].close()
            handle = h5py.File(path, "r")
        self._handles[path] = handle
        return handle

    def _read(self, f: FastMRIFile, index: int) -> KspaceSlice:
        try:
            handle = self._handle(f.path)
            s = f.slices[index]
            kspace = np.asarray(handle["kspace"][s], dtype=np.complex64)
            target = None if f.target is None else np.asarray(handle[f.target][s], dtype=np.float32)
        except Exception as err:
            raise CorruptFile(f"slice {f.slices[index]} cannot be read ({_first_line(err)})") from None
        if not np.isfinite(kspace).all():
            raise CorruptFile(f"slice {s} of 'kspace' contains NaN or infinite values")
        if target is not None:
            if not np.isfinite(target).all():
                raise CorruptFile(f"slice {s} of {f.target!r} contains NaN or infinite values")
            if target.shape != f.crop:
                target = _centre_crop(target, f.crop)
        return KspaceSlice(kspace=kspace, target=target, crop=f.crop)

    def read_slice(self, volume: VolumeInfo, index: int) -> KspaceSlice:
        """Measured k-space of slice ``index`` of ``volume``, its target and the crop size."""
        f = self._files.get(volume.name)
        if f is None:
            raise KeyError(f"{self.where} has no volume {volume.name!r} (was prepare() called?)")
        if not 0 <= index < len(f.slices):
            raise IndexError(f"slice {index} out of range: {volume.name!r} has {len(f.slices)} slices")
        try:
            return self._read(f, index)
        except CorruptFile as err:
            raise UserError(f"{self.where}: {f.path}: {err}") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:200]


def _centre_crop(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre crop of the last two axes, fastMRI's convention (top = (H - h) // 2)."""
    top, left = (image.shape[-2] - size[0]) // 2, (image.shape[-1] - size[1]) // 2
    return np.ascontiguousarray(image[..., top : top + size[0], left : left + size[1]])
