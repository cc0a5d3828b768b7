"""NIfTI datasets with a fixed naming scheme: BraTS (one folder per subject) and IXI (one file per contrast).

BraTS: ``<root>/**/<ID>_t1.nii.gz``, ``_t1ce``, ``_t2``, ``_flair`` (``_seg`` is ignored); the 2023
names ``-t1n``, ``-t1c``, ``-t2w``, ``-t2f`` are read as t1, t1ce, t2, flair. IXI:
``<root>/**/IXI002-Guys-0828-T1.nii.gz``, ``-T2``, ``-PD``. Volumes are reoriented to RAS+ and cut
into slices along ``plane``; k-space is simulated from the magnitude images.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from data.sources.readers import Plane, read_nifti
from data.sources.volumes import ImageVolumeSource, NiftiOptions, VolumeFile
from utils.errors import UserError
from utils.paths import walk

NIFTI_SUFFIX = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)

BratsContrast = Literal["t1", "t1ce", "t2", "flair"]
BRATS_ALIASES = {
    "t1": "t1",
    "t1n": "t1",
    "t1ce": "t1ce",
    "t1c": "t1ce",
    "t2": "t2",
    "t2w": "t2",
    "flair": "flair",
    "t2f": "flair",
}
BRATS_NAME = re.compile(
    r"^(?P<subject>.+?)[_-](?P<contrast>t1ce|t1c|t1n|t1|t2w|t2f|t2|flair|seg)$", re.IGNORECASE
)

IxiContrast = Literal["t1", "t2", "pd"]
IXI_NAME = re.compile(r"^(?P<subject>IXI\d+(?:-[A-Za-z]+-\d+)?)-(?P<contrast>T1|T2|PD)$", re.IGNORECASE)


def unique_contrasts(value: list[str]) -> list[str]:
    """Validator body: a contrast list without repeats."""
    if len(set(value)) != len(value):
        raise ValueError(f"contrasts must not repeat (got {value})")
    return value


def nifti_files(root: Path, key: str = "source.root") -> tuple[list[Path], list[tuple[str, str]]]:
    """Every ``.nii`` / ``.nii.gz`` entry under ``root`` that is not a folder, in a fixed order, and what
    could not be walked (:func:`utils.paths.walk`)."""
    entries, problems = walk(root, key)
    return [path for _, path, folder in entries if not folder and NIFTI_SUFFIX.search(path.name)], problems


class NiftiSource(ImageVolumeSource):
    """What the NIfTI datasets share: files found by a naming scheme, one per subject and contrast,
    reoriented and sliced along the configured plane. A dataset names its scheme (``name_pattern``
    with ``subject`` and ``contrast`` groups), maps the contrast text (``contrast_of``) and names the
    subject id a split file may also use (``alias_of``)."""

    name_pattern: ClassVar[re.Pattern[str]]

    def contrast_of(self, text: str) -> str | None:
        """The configured contrast name of the file name's contrast part (None: not a contrast)."""
        return text.lower()

    def alias_of(self, subject: str, path: Path) -> str:
        """Another id of ``subject`` that split files may use."""
        raise NotImplementedError

    def scan(self, root: Path) -> tuple[list[VolumeFile], list[tuple[str, str]]]:
        """Every requested contrast file, keyed by the subject id in its name."""
        found: dict[tuple[str, str], Path] = {}
        paths, problems = nifti_files(root, f"{self.where}: source.root")
        for path in paths:
            match = self.name_pattern.match(NIFTI_SUFFIX.sub("", path.name))
            if match is None:
                continue
            contrast = self.contrast_of(match["contrast"])
            if contrast not in self.options.contrasts:
                if contrast is not None:
                    self.passed_over.append((match["subject"], contrast))
                continue
            key = (match["subject"], contrast)
            if key in found:
                raise_duplicate(self.where, key, found[key], path)
            found[key] = path
        volumes = [VolumeFile(s, c, (p,), aliases=(self.alias_of(s, p),)) for (s, c), p in found.items()]
        return volumes, problems

    def decode(self, volume: VolumeFile) -> np.ndarray:
        """The volume's slices along ``plane``, (slices, rows, columns)."""
        if self.options.volume_index is None:
            return read_nifti(volume.paths[0], self.options.plane)
        return read_nifti(volume.paths[0], self.options.plane, self.options.volume_index)

    def decode_identity(self, volume: VolumeFile) -> dict:
        """NIfTI volumes differ by slicing plane (and, of a 4D file, by the volume chosen)."""
        identity = {"reader": "nifti", "plane": self.options.plane}
        if self.options.volume_index is not None:
            identity["volume_index"] = self.options.volume_index
        return identity


class BratsOptions(NiftiOptions):
    """BraTS: a folder per subject with one NIfTI per modality (240 x 240 x 155, skull-stripped)."""

    kind: Literal["brats"] = "brats"
    contrasts: list[BratsContrast] = Field(
        default_factory=lambda: ["t1", "t2"], min_length=1, description="modalities: t1, t1ce, t2, flair"
    )
    plane: Plane = Field("axial", description="slicing plane: axial, coronal or sagittal")

    @field_validator("contrasts")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return unique_contrasts(value)


class BratsSource(NiftiSource):
    """BraTS subjects: ``<ID>_<modality>.nii.gz`` files, the subject id taken from the file name."""

    describe: ClassVar[str] = "BraTS subject folders with <ID>_t1.nii.gz, <ID>_t2.nii.gz, ... files"

    name_pattern = BRATS_NAME

    def contrast_of(self, text: str) -> str | None:
        """2023 names read as the classic ones; ``seg`` is no contrast."""
        return BRATS_ALIASES.get(text.lower())

    def alias_of(self, subject: str, path: Path) -> str:
        """The subject's folder name."""
        return path.parent.name


class IxiOptions(NiftiOptions):
    """IXI: one NIfTI per subject and contrast (``IXI002-Guys-0828-T1.nii.gz``, ``-T2``, ``-PD``)."""

    kind: Literal["ixi"] = "ixi"
    contrasts: list[IxiContrast] = Field(
        default_factory=lambda: ["t1", "t2"], min_length=1, description="contrasts: t1, t2, pd"
    )
    plane: Plane = Field("axial", description="slicing plane: axial, coronal or sagittal")

    @field_validator("contrasts")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return unique_contrasts(value)


class IxiSource(NiftiSource):
    """IXI subjects: the contrast is the file name's last part, the subject id what comes before it."""

    describe: ClassVar[str] = "IXI NIfTI files named like IXI002-Guys-0828-T1.nii.gz"

    name_pattern = IXI_NAME

    def alias_of(self, subject: str, path: Path) -> str:
        """Split files may name subjects by the IXI number alone (``IXI002``)."""
        return subject.split("-")[0]


def raise_duplicate(where: str, key: tuple[str, str], first: Path, second: Path) -> None:
    """Two files for one subject and contrast: a UserError naming both."""
    raise UserError(
        f"{where}: {first} and {second} are both subject {key[0]!r}, contrast {key[1]!r}; "
        "expected one file per subject and contrast"
    )
