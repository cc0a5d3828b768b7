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
from data.sources.volumes import ImageVolumeSource, VolumeFile, VolumeSourceOptions
from utils.errors import UserError

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


def nifti_files(root: Path) -> list[Path]:
    """Every ``.nii`` / ``.nii.gz`` file under ``root``, in a fixed order."""
    return sorted(p for p in root.rglob("*") if NIFTI_SUFFIX.search(p.name) and p.is_file())


class NiftiSource(ImageVolumeSource):
    """Shared decoding of the NIfTI datasets: reorient, slice along the configured plane."""

    def decode(self, volume: VolumeFile) -> np.ndarray:
        """The volume's slices along ``plane``, (slices, rows, columns)."""
        return read_nifti(volume.paths[0], self.options.plane)

    def decode_identity(self, volume: VolumeFile) -> dict:
        """NIfTI volumes differ by slicing plane."""
        return {"reader": "nifti", "plane": self.options.plane}


class BratsOptions(VolumeSourceOptions):
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

    def scan(self, root: Path) -> tuple[list[VolumeFile], list[tuple[str, str]]]:
        """Every requested modality file, keyed by the subject id in its name."""
        found: dict[tuple[str, str], Path] = {}
        for path in nifti_files(root):
            match = BRATS_NAME.match(NIFTI_SUFFIX.sub("", path.name))
            if match is None:
                continue
            contrast = BRATS_ALIASES.get(match["contrast"].lower())
            if contrast not in self.options.contrasts:
                continue
            key = (match["subject"], contrast)
            if key in found:
                raise_duplicate(self.where, key, found[key], path)
            found[key] = path
        volumes = [VolumeFile(s, c, (p,), aliases=(p.parent.name,)) for (s, c), p in found.items()]
        return volumes, []


class IxiOptions(VolumeSourceOptions):
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

    def scan(self, root: Path) -> tuple[list[VolumeFile], list[tuple[str, str]]]:
        """Every requested contrast file; split files may name subjects by id or by the IXI number alone."""
        found: dict[tuple[str, str], Path] = {}
        for path in nifti_files(root):
            match = IXI_NAME.match(NIFTI_SUFFIX.sub("", path.name))
            if match is None:
                continue
            contrast = match["contrast"].lower()
            if contrast not in self.options.contrasts:
                continue
            key = (match["subject"], contrast)
            if key in found:
                raise_duplicate(self.where, key, found[key], path)
            found[key] = path
        volumes = [VolumeFile(s, c, (p,), aliases=(s.split("-")[0],)) for (s, c), p in found.items()]
        return volumes, []


def raise_duplicate(where: str, key: tuple[str, str], first: Path, second: Path) -> None:
    """Two files for one subject and contrast: a UserError naming both."""
    raise UserError(
        f"{where}: {first} and {second} are both subject {key[0]!r}, contrast {key[1]!r}; "
        "expected one file per subject and contrast"
    )
