"""Decoders of image volumes: NIfTI, DICOM series, ``.npy`` and ``.h5`` stacks -> (slices, H, W) arrays.

Every reader returns a 3D numpy array of real magnitudes (slices first) in a compact dtype (the file's
integer type when it has one, else float32) and raises :class:`CorruptFile` with a short reason when a
file cannot be decoded or does not hold what was expected; callers turn that into a ``UserError`` that
names the file, or skip the volume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

Plane = Literal["axial", "coronal", "sagittal"]

# Axis order that brings a RAS+ volume (x: left->Right, y: posterior->Anterior, z: inferior->Superior)
# to (slices, rows, columns); rows and columns are then reversed so that images show anterior (axial,
# sagittal) or superior (coronal) at the top and the patient's right on the left (radiological view).
_PLANE_AXES: dict[str, tuple[int, int, int]] = {
    "axial": (2, 1, 0),
    "coronal": (1, 2, 0),
    "sagittal": (0, 2, 1),
}
_KEEP_DTYPES = {np.dtype(t) for t in ("uint8", "int8", "uint16", "int16", "int32", "float32")}


class CorruptFile(Exception):
    """A file that cannot be decoded, or that does not hold a volume of the expected form."""


class SeriesOfVolumes(Exception):
    """A valid 4D NIfTI (an fMRI time series, diffusion directions, echoes) where one 3D volume is
    read: not corrupt, but which of its volumes to use is the user's choice (``source.volume_index``)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__(
            f"a 4D series of {shape[3]} volumes (shape {shape}), not one 3D volume; choose one with "
            f"source.volume_index: 0 to {shape[3] - 1} (the same for every file of the site)"
        )


def compact(array: np.ndarray, what: str) -> np.ndarray:
    """A real, finite, C-contiguous array in its own compact dtype or float32; CorruptFile otherwise."""
    array = np.asarray(array)
    if array.dtype.kind == "c":
        array = np.abs(array)
    if array.dtype.kind not in "biuf":
        raise CorruptFile(f"{what} has dtype {array.dtype}; expected a numeric image array")
    if array.dtype not in _KEEP_DTYPES:
        array = array.astype(np.float32)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise CorruptFile(f"{what} contains {bad} NaN or infinite values; expected finite intensities")
    if array.size == 0:
        raise CorruptFile(f"{what} is empty")
    return np.ascontiguousarray(array)


def as_stack(array: np.ndarray, what: str) -> np.ndarray:
    """(H, W) -> (1, H, W); (S, H, W) unchanged; anything else is CorruptFile, and so is an (H, W, 3) or
    (H, W, 4) array (a colour image, or slices last), which would otherwise read as H slices 3 or 4
    pixels wide."""
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise CorruptFile(f"{what} has shape {array.shape}; expected a 2D image or a 3D stack of slices")
    if array.shape[2] in (3, 4) and min(array.shape[:2]) > 4:
        raise CorruptFile(
            f"{what} has shape {array.shape}: colour channels (RGB) or slices on the last axis; expected a "
            "grey-scale image (H, W) or a stack of slices (slices, H, W)"
        )
    return array


def read_nifti(path: Path, plane: Plane = "axial", volume_index: int | None = None) -> np.ndarray:
    """A NIfTI volume reoriented to RAS+ and sliced along ``plane``: (slices, rows, columns). Of a 4D
    file, the volume ``volume_index`` (a 4D file without it raises :class:`SeriesOfVolumes`)."""
    import nibabel as nib

    try:
        image = nib.as_closest_canonical(nib.load(str(path)))
        shape = tuple(int(n) for n in image.shape)
        if len(shape) == 4 and shape[3] > 1:
            if volume_index is None:
                raise SeriesOfVolumes(shape)
            if volume_index >= shape[3]:
                raise CorruptFile(
                    f"a 4D series of {shape[3]} volumes has no volume {volume_index} (source.volume_index)"
                )
            data = np.asanyarray(image.dataobj[..., volume_index])
        else:
            data = np.asanyarray(image.dataobj)
    except (SeriesOfVolumes, CorruptFile):
        raise
    except Exception as err:  # nibabel raises many types for truncated or foreign files
        raise CorruptFile(f"not a readable NIfTI file ({_reason(err)})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3:
        raise CorruptFile(f"expected a 3D volume, got shape {data.shape}")
    data = compact(data, "the volume")
    oriented = np.transpose(data, _PLANE_AXES[plane])[:, ::-1, ::-1]
    return np.ascontiguousarray(oriented)


def read_npy(path: Path) -> np.ndarray:
    """A ``.npy`` image (H, W) or stack (slices, H, W)."""
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as err:
        raise CorruptFile(f"not a readable .npy array ({_reason(err)})") from None
    try:
        return compact(as_stack(data, "the array"), "the array")
    except (OSError, ValueError) as err:  # a truncated memory map fails on access
        raise CorruptFile(f"not a readable .npy array ({_reason(err)})") from None


def read_h5_stack(path: Path, key: str) -> np.ndarray:
    """Dataset ``key`` of an HDF5 file: an image (H, W) or stack (slices, H, W)."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            if key not in handle:
                found = ", ".join(sorted(handle.keys())) or "nothing"
                raise CorruptFile(f"has no dataset {key!r} (found: {found})")
            data = handle[key][()]
    except CorruptFile:
        raise
    except Exception as err:
        raise CorruptFile(f"not a readable HDF5 file ({_reason(err)})") from None
    return compact(as_stack(np.asarray(data), f"dataset {key!r}"), f"dataset {key!r}")


# --------------------------------------------------------------------------------------------- DICOM

HEADER_TAGS = (
    "SeriesInstanceUID",
    "SeriesDescription",
    "ProtocolName",
    "PatientID",
    "InstanceNumber",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "Rows",
    "Columns",
)


@dataclass(frozen=True)
class DicomHeader:
    """What grouping and ordering DICOM files into series needs, read without the pixel data."""

    series: str
    description: str
    patient: str
    instance: int
    position: float | None  # ImagePositionPatient along the slice normal (mm)
    shape: tuple[int, int]


def read_dicom_header(path: Path) -> DicomHeader:
    """The series, patient and slice position of one DICOM file (pixel data not read)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(HEADER_TAGS))
        series = str(ds.get("SeriesInstanceUID", "") or "")
        description = str(ds.get("SeriesDescription", "") or ds.get("ProtocolName", "") or "")
        patient = str(ds.get("PatientID", "") or "")
        instance = int(ds.get("InstanceNumber", 0) or 0)
        shape = (int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0))
        position = _slice_position(ds)
    except Exception as err:
        raise CorruptFile(f"not a readable DICOM file ({_reason(err)})") from None
    if not series:
        raise CorruptFile("DICOM file without SeriesInstanceUID")
    return DicomHeader(series, description, patient, instance, position, shape)


def _slice_position(ds) -> float | None:
    """Position of a slice along its normal (ImagePositionPatient . (row x column cosines)), if present."""
    position, orientation = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient")
    if position is None or orientation is None or len(position) != 3 or len(orientation) != 6:
        return None
    row, column = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    return float(np.dot(np.cross(row, column), np.asarray(position, float)))


def read_dicom_series(paths: Sequence[Path], headers: Sequence[DicomHeader] | None = None) -> np.ndarray:
    """The slices of one DICOM series, ordered along the slice normal (else by InstanceNumber, then name).

    Pixel values are rescaled by RescaleSlope / RescaleIntercept; multi-frame files contribute every frame.
    """
    import pydicom

    headers = list(headers) if headers is not None else [read_dicom_header(p) for p in paths]
    if all(h.position is not None for h in headers):
        order = sorted(range(len(paths)), key=lambda i: (headers[i].position, headers[i].instance, paths[i]))
    else:
        order = sorted(range(len(paths)), key=lambda i: (headers[i].instance, str(paths[i])))
    slices = []
    for i in order:
        path = paths[i]
        try:
            ds = pydicom.dcmread(path)
            pixels = np.asarray(ds.pixel_array)
        except Exception as err:
            raise CorruptFile(f"{path.name}: not a readable DICOM image ({_reason(err)})") from None
        try:
            slope = float(ds.get("RescaleSlope", 1) or 1)
            intercept = float(ds.get("RescaleIntercept", 0) or 0)
        except (TypeError, ValueError) as err:
            raise CorruptFile(
                f"{path.name}: RescaleSlope/RescaleIntercept is not a number ({_reason(err)})"
            ) from None
        if not (np.isfinite(slope) and np.isfinite(intercept)):
            raise CorruptFile(f"{path.name}: RescaleSlope/RescaleIntercept is not finite")
        if pixels.ndim == 3 and int(ds.get("NumberOfFrames", 1) or 1) == pixels.shape[0]:
            frames = list(pixels)
        elif pixels.ndim == 2:
            frames = [pixels]
        else:
            raise CorruptFile(
                f"{path.name}: expected a greyscale image, got pixel array of shape {pixels.shape}"
            )
        for frame in frames:
            if slope != 1 or intercept != 0:
                frame = frame.astype(np.float32) * np.float32(slope) + np.float32(intercept)
            if slices and frame.shape != slices[0].shape:
                raise CorruptFile(
                    f"{path.name}: image of shape {frame.shape} in a series of {slices[0].shape} images"
                )
            slices.append(frame)
    return compact(np.stack(slices), "the series")


def _reason(err: BaseException) -> str:
    """The first line of an exception's message, or its type."""
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:200]
