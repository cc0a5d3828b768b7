"""DICOM series (e.g. fastMRI's brain DICOM magnitude images, the paper's fastMRI client), read with pydicom.

Every file matching ``pattern`` under ``root`` is grouped into series by ``SeriesInstanceUID``; a series
is one volume, its slices ordered along the slice normal (``ImagePositionPatient``), else by
``InstanceNumber``. The contrast comes from ``SeriesDescription`` (or ``ProtocolName``) through the
``contrasts`` rules, the subject from ``PatientID`` or from the first folder under ``root``. Headers are
read once and remembered in the cache (by file size and modification time); k-space is simulated from
the magnitude images.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from data.sources.patterns import check_pattern, glob_matches, time_bound
from data.sources.readers import CorruptFile, DicomHeader, read_dicom_header, read_dicom_series
from data.sources.volumes import ImageVolumeSource, VolumeFile, VolumeSourceOptions, relative_label
from utils.errors import UserError
from utils.io import MiB, atomic_write_text, check_regular, read_text
from utils.paths import walk

HEADER_CACHE_VERSION = 1


class DicomOptions(VolumeSourceOptions):
    """DICOM series under one folder; one volume per series."""

    kind: Literal["dicom"] = "dicom"
    pattern: str = Field(
        "**/*.dcm",
        min_length=1,
        pattern=r"^[^/~]",
        description="glob, relative to root, of the DICOM files ('**/*' for no suffix)",
    )
    contrasts: dict[str, str] | None = Field(
        None,
        description="contrast name -> regular expression searched (case-insensitively) in SeriesDescription; "
        "series matching none are left out; null = every series, named after its description",
    )
    subject: Literal["patient_id", "folder"] = Field(
        "patient_id", description="subject id: the PatientID tag, or the first folder under root"
    )

    @field_validator("contrasts")
    @classmethod
    def _regexes(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name, pattern in (value or {}).items():
            try:
                check_pattern(pattern, re.IGNORECASE)
            except ValueError as err:
                raise ValueError(f"contrasts.{name}: {err}") from None
        if value is not None and not value:
            raise ValueError("contrasts must name at least one contrast, or be null")
        return value


def contrast_name(description: str) -> str:
    """A series description as a contrast name: lower case, runs of other characters as '_'."""
    return re.sub(r"[^a-z0-9]+", "_", description.lower()).strip("_") or "series"


class DicomSource(ImageVolumeSource):
    """DICOM series grouped by SeriesInstanceUID, one volume each."""

    describe: ClassVar[str] = "DICOM series (one folder of .dcm files per series, any nesting)"

    def scan(self, root: Path) -> tuple[list[VolumeFile], list[tuple[str, str]]]:
        """Group the files into series and name each series' subject and contrast."""
        entries, problems = walk(root, f"{self.where}: source.root")
        files = [
            path for relative, path, folder in entries
            if not folder and glob_matches(relative, self.options.pattern)
        ]  # fmt: skip
        headers, unreadable = self._headers(root, files)
        unreadable += [(Path(path), reason) for path, reason in problems]
        with time_bound(f"{self.where}: source.contrasts"):
            return group_series(root, headers, unreadable, self.options.contrasts, self.options.subject)

    def decode(self, volume: VolumeFile) -> np.ndarray:
        """The series' slices in order, (slices, rows, columns)."""
        return read_dicom_series(volume.paths, dict(volume.extra).get("headers"))

    def decode_identity(self, volume: VolumeFile) -> dict:
        """DICOM volumes depend on their files only."""
        return {"reader": "dicom"}

    def _headers(
        self, root: Path, files: list[Path]
    ) -> tuple[dict[Path, DicomHeader], list[tuple[Path, str]]]:
        """Each file's header, from the header cache when the file is unchanged."""
        digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
        cache_file = Path(self.context.cache_dir) / "dicom-headers" / f"{digest}.json"
        try:
            cached = json.loads(read_text(cache_file, "header cache", 256 * MiB))
            if not isinstance(cached, dict) or cached.get("version") != HEADER_CACHE_VERSION:
                cached = {}
        except (OSError, ValueError, RecursionError, UserError):
            cached = {}
        known = cached.get("files", {})
        known = known if isinstance(known, dict) else {}
        headers: dict[Path, DicomHeader] = {}
        unreadable: list[tuple[Path, str]] = []
        fresh: dict[str, list] = {}
        for path in files:
            try:
                check_regular(path, "file")  # a FIFO would hang the reader
                st = path.stat()
            except (OSError, UserError) as err:
                unreadable.append((path, str(err).split(": ", 1)[-1]))
                continue
            stamp = [st.st_size, st.st_mtime_ns]
            header = _cached_header(known.get(str(path)), stamp)
            if header is None:
                try:
                    header = read_dicom_header(path)
                except CorruptFile as err:
                    unreadable.append((path, str(err)))
                    continue
            headers[path] = header
            fields = [header.series, header.description, header.patient, header.instance, header.position]
            fresh[str(path)] = [*stamp, [*fields, list(header.shape)]]
        if fresh != known:
            _write_json(cache_file, {"version": HEADER_CACHE_VERSION, "files": fresh})
        return headers, unreadable


def group_series(
    root: Path,
    headers: dict[Path, DicomHeader],
    unreadable: list[tuple[Path, str]],
    contrasts: dict[str, str] | None,
    subject_from: str,
) -> tuple[list[VolumeFile], list[tuple[str, str]]]:
    """DICOM files -> one VolumeFile per series; a folder with an unreadable file is reported, not read."""
    bad_folders = {path.parent: reason for path, reason in unreadable}
    bad = [(str(path), reason) for path, reason in unreadable]
    series: dict[str, list[Path]] = {}
    for path, header in headers.items():
        if path.parent not in bad_folders:
            series.setdefault(header.series, []).append(path)
    rules = {name: re.compile(pattern, re.IGNORECASE) for name, pattern in (contrasts or {}).items()}
    volumes = []
    for paths in series.values():
        paths.sort()
        first = headers[paths[0]]
        if rules:
            contrast = next((name for name, rule in rules.items() if rule.search(first.description)), None)
            if contrast is None:
                continue
        else:
            contrast = contrast_name(first.description)
        folder = relative_label(paths[0], root).split("/")[0]
        subject = first.patient if subject_from == "patient_id" and first.patient else folder
        volumes.append(
            VolumeFile(
                subject,
                contrast,
                tuple(paths),
                aliases=(folder,),
                extra=(("headers", tuple(headers[p] for p in paths)),),
            )
        )
    return volumes, bad


def _cached_header(entry: Any, stamp: list[int]) -> DicomHeader | None:
    """The header an entry of the header cache holds for a file of ``stamp`` (size, mtime); None when
    the file changed or the entry is not one (a damaged cache is read again from the files)."""
    try:
        if entry[:2] != stamp:
            return None
        series, description, patient, instance, position = entry[2][:5]
        shape = tuple(int(n) for n in entry[2][5])
        if not (isinstance(series, str) and isinstance(description, str) and isinstance(patient, str)):
            return None
        return DicomHeader(series, description, patient, int(instance),
                           None if position is None else float(position), shape)  # fmt: skip
    except (TypeError, ValueError, IndexError, KeyError, OverflowError):
        return None


def _write_json(path: Path, data: dict) -> None:
    """Write JSON atomically; a cache that cannot be written is only slower next time."""
    try:
        atomic_write_text(path, json.dumps(data))
    except OSError:
        pass
