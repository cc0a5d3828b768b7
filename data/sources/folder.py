"""A site's own images: NIfTI volumes, DICOM series, ``.npy`` or ``.h5`` stacks, named by a rule or manifest.

This is how in-house sites (the paper's SMS and uMR clients) join a federation. By default the layout is
``<root>/<subject>/<contrast>.<ext>`` (``.nii``, ``.nii.gz``, ``.npy``, ``.h5``) or
``<root>/<subject>/<contrast>/`` holding one DICOM series; ``pattern`` changes the naming rule (a regular
expression with the groups ``subject`` and ``contrast``, matched against paths relative to ``root``), and
``manifest`` replaces it with a CSV table ``subject,contrast,path``. ``.npy`` and ``.h5`` files hold a
magnitude (or complex) image (H, W) or a stack (slices, H, W); NIfTI volumes are sliced along ``plane``.

A pattern is matched within bounds (:mod:`data.sources.patterns`), the manifest is read as a regular
file of at most :data:`MAX_MANIFEST_BYTES`, and a folder that cannot be listed or a link loop under
``root`` is reported like an unreadable volume, never skipped silently.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from data.sources.patterns import check_pattern, time_bound
from data.sources.readers import (
    CorruptFile,
    Plane,
    read_dicom_header,
    read_dicom_series,
    read_h5_stack,
    read_nifti,
    read_npy,
)
from data.sources.volumes import ImageVolumeSource, NiftiOptions, VolumeFile, relative_label
from utils.errors import UserError
from utils.io import MiB, os_reason, read_text
from utils.paths import check_path_text, not_found, walk

DEFAULT_PATTERN = r"(?P<subject>[^/]+)/(?P<contrast>[^/]+?)(\.nii\.gz|\.nii|\.npy|\.h5|\.hdf5)?"
FILE_SUFFIXES = (".nii.gz", ".nii", ".npy", ".h5", ".hdf5")
DICOM_SUFFIX = ".dcm"
MAX_MANIFEST_BYTES = 64 * MiB  # a million rows of subject,contrast,path
MAX_MANIFEST_LINE = 16 * 1024


def _without_suffix(name: str) -> str:
    """A file name without its image-format suffix (``t1.nii.gz`` -> ``t1``)."""
    for suffix in FILE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def file_format(path: Path) -> str | None:
    """The reader for a path: "nifti", "npy", "h5", "dicom" (a folder of .dcm files), or None. A folder
    that cannot be listed is a :class:`CorruptFile` saying why."""
    name = path.name.lower()
    if path.is_dir():
        try:
            with os.scandir(path) as entries:
                return "dicom" if any(e.name.lower().endswith(DICOM_SUFFIX) for e in entries) else None
        except OSError as err:
            raise CorruptFile(f"cannot list this folder ({os_reason(err)})") from None
    if name.endswith((".nii.gz", ".nii")):
        return "nifti"
    if name.endswith(".npy"):
        return "npy"
    if name.endswith((".h5", ".hdf5")):
        return "h5"
    return None


class FolderOptions(NiftiOptions):
    """A site's own images in a folder, one volume per subject and contrast."""

    kind: Literal["folder"] = "folder"
    pattern: str = Field(
        DEFAULT_PATTERN,
        description="regular expression with groups `subject` and `contrast`, matched against each file's "
        "(or DICOM series folder's) path relative to root",
    )
    manifest: str | None = Field(
        None, description="CSV file with columns subject,contrast,path (relative to root); replaces `pattern`"
    )
    contrasts: list[str] | None = Field(None, description="keep only these contrasts; null = all found")
    h5_key: str = Field("image", description="dataset holding the images in .h5 files")
    plane: Plane = Field("axial", description="slicing plane of NIfTI volumes")

    @field_validator("pattern")
    @classmethod
    def _groups(cls, value: str) -> str:
        compiled = check_pattern(value)
        missing = {"subject", "contrast"} - set(compiled.groupindex)
        if missing:
            raise ValueError("pattern needs the named groups (?P<subject>...) and (?P<contrast>...)")
        return value


class FolderSource(ImageVolumeSource):
    """Volumes found by a naming rule or listed in a manifest, in any of the supported formats."""

    describe: ClassVar[str] = (
        "<subject>/<contrast>.nii.gz (.nii, .npy, .h5) files or <subject>/<contrast>/ DICOM series folders"
    )

    def scan(self, root: Path) -> tuple[list[VolumeFile], list[tuple[str, str]]]:
        """The volumes the manifest lists, or the files and DICOM folders the pattern names."""
        listed, bad = (self._manifest(root), []) if self.options.manifest else self._match(root)
        wanted = self.options.contrasts
        volumes = []
        for subject, contrast, path in listed:
            if wanted is not None and contrast not in wanted:
                self.passed_over.append((subject, contrast))
                continue
            try:
                path.stat()
            except OSError as err:
                listed_in = "listed in source.manifest but " if self.options.manifest else ""
                reason = not_found(path) if isinstance(err, FileNotFoundError) else os_reason(err)
                bad.append((str(path), listed_in + reason))
                continue
            try:
                fmt = file_format(path)
            except CorruptFile as err:
                bad.append((str(path), str(err)))
                continue
            if fmt is None:
                bad.append(
                    (str(path), f"expected a {', '.join(FILE_SUFFIXES)} file or a folder of .dcm files")
                )
                continue
            paths: tuple[Path, ...] = (path,)
            extra: tuple = (("format", fmt),)
            if fmt == "dicom":
                try:
                    paths, extra = self._series(path)
                except CorruptFile as err:
                    bad.append((str(path), str(err)))
                    continue
            volumes.append(VolumeFile(subject, contrast, paths, aliases=(), extra=extra))
        self._refuse_formats_of_one_volume(volumes, root)
        return volumes, bad

    def _refuse_formats_of_one_volume(self, volumes: list[VolumeFile], root: Path) -> None:
        """One volume stored twice (``s1/t1.npy`` beside ``s1/t1.nii.gz``) would be trained and tested
        twice as two volumes: an error naming both files."""
        seen: dict[tuple[str, str, Path], Path] = {}
        for volume in volumes:
            path = volume.paths[0] if dict(volume.extra)["format"] != "dicom" else volume.paths[0].parent
            stem = path.with_name(_without_suffix(path.name))
            first = seen.setdefault((volume.subject, volume.contrast, stem), path)
            if first != path:
                raise UserError(
                    f"{self.where}: {relative_label(first, root)} and {relative_label(path, root)} are one "
                    f"volume (subject {volume.subject!r}, contrast {volume.contrast!r}) in two formats; "
                    "keep one of them"
                )

    def _match(self, root: Path) -> tuple[list[tuple[str, str, Path]], list[tuple[str, str]]]:
        """The entries under ``root`` the pattern names (matched within :func:`time_bound`), and what
        could not be walked."""
        rule = re.compile(self.options.pattern)
        entries, problems = walk(root, f"{self.where}: source.root")
        matched = []
        with time_bound(f"{self.where}: source.pattern"):
            for relative, path, _ in entries:
                match = rule.fullmatch(relative)
                if match is not None:
                    matched.append((match["subject"], match["contrast"], path))
        listed = []
        for subject, contrast, path in matched:
            try:
                if file_format(path) is None:
                    continue
            except CorruptFile as err:
                problems.append((str(path), str(err)))
                continue
            listed.append((subject, contrast, path))
        return listed, problems

    def _manifest(self, root: Path) -> list[tuple[str, str, Path]]:
        check_path_text(self.options.manifest, f"{self.where}: source.manifest")
        manifest = Path(self.options.manifest).expanduser()
        if not manifest.exists():
            raise UserError(f"{self.where}: source.manifest {manifest}: cannot read ({not_found(manifest)})")
        text = read_text(  # a byte order mark, as spreadsheets save it, is dropped
            manifest, f"{self.where}: source.manifest", MAX_MANIFEST_BYTES, line_limit=MAX_MANIFEST_LINE
        )
        try:
            rows = list(csv.DictReader(io.StringIO(text, newline="")))
        except csv.Error as err:
            raise UserError(f"{self.where}: source.manifest {manifest}: not a CSV table ({err})") from None
        columns = {"subject", "contrast", "path"}
        if not rows or not columns <= set(rows[0]):
            raise UserError(
                f"{self.where}: source.manifest {manifest}: expected a CSV with columns subject,contrast,path"
            )
        listed, seen = [], {}
        for line, row in enumerate(rows, start=2):
            if not all((row[c] or "").strip() for c in columns):
                raise UserError(
                    f"{self.where}: source.manifest {manifest} line {line}: empty subject, contrast or path"
                )
            check_path_text(row["path"].strip(), f"{self.where}: source.manifest {manifest} line {line}")
            path = Path(row["path"].strip())
            if path in seen:
                raise UserError(
                    f"{self.where}: source.manifest {manifest} line {line}: {path} is listed twice "
                    f"(first on line {seen[path]})"
                )
            seen[path] = line
            listed.append(
                (row["subject"].strip(), row["contrast"].strip(), path if path.is_absolute() else root / path)
            )
        return listed

    def _series(self, folder: Path) -> tuple[tuple[Path, ...], tuple]:
        """The .dcm files of one series folder, with their headers; CorruptFile if unreadable or mixed."""
        try:
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() == DICOM_SUFFIX)
        except OSError as err:
            raise CorruptFile(f"cannot list this folder ({os_reason(err)})") from None
        headers = {}
        for path in files:
            try:
                headers[path] = read_dicom_header(path)
            except CorruptFile as err:
                raise CorruptFile(f"{path.name}: {err}") from None
        if len({h.series for h in headers.values()}) > 1:
            raise CorruptFile("holds more than one DICOM series; expected one series per folder")
        return tuple(files), (("format", "dicom"), ("headers", tuple(headers[p] for p in files)))

    def decode(self, volume: VolumeFile) -> np.ndarray:
        """The volume's slices, (slices, H, W), by its format."""
        extra = dict(volume.extra)
        path = volume.paths[0]
        fmt = extra["format"]
        if fmt == "nifti":
            return read_nifti(path, self.options.plane, self.options.volume_index)
        if fmt == "npy":
            return read_npy(path)
        if fmt == "h5":
            return read_h5_stack(path, self.options.h5_key)
        return read_dicom_series(volume.paths, extra.get("headers"))

    def decode_identity(self, volume: VolumeFile) -> dict:
        """NIfTI volumes depend on the plane, h5 stacks on the dataset key."""
        fmt = dict(volume.extra)["format"]
        identity = {"reader": fmt}
        if fmt == "nifti":
            identity["plane"] = self.options.plane
            if self.options.volume_index is not None:
                identity["volume_index"] = self.options.volume_index
        if fmt == "h5":
            identity["key"] = self.options.h5_key
        return identity
