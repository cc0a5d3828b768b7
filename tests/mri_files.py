"""Writers of small MRI files in the real formats (fastMRI h5, NIfTI, DICOM), for tests and benchmarks.

Everything here uses numpy, h5py, nibabel and pydicom directly, never the project's own code, so tests
can compare what the sources return against values computed independently.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import nibabel as nib
import numpy as np

ISMRMRD_HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <studyInformation><studyTime>12:00:00</studyTime></studyInformation>
  <acquisitionSystemInformation>
    <systemVendor>SIEMENS</systemVendor><systemFieldStrength_T>2.89</systemFieldStrength_T>
    <receiverChannels>{coils}</receiverChannels>
  </acquisitionSystemInformation>
  <experimentalConditions><H1resonanceFrequency_Hz>123252074</H1resonanceFrequency_Hz></experimentalConditions>
  <encoding>
    <encodedSpace>
      <matrixSize><x>{enc_x}</x><y>{enc_y}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>280</x><y>140</y><z>4.5</z></fieldOfView_mm>
    </encodedSpace>
    <reconSpace>
      <matrixSize><x>{rec_x}</x><y>{rec_y}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>140</x><y>140</y><z>3</z></fieldOfView_mm>
    </reconSpace>
    <trajectory>cartesian</trajectory>
    <encodingLimits>
      <kspace_encoding_step_1><minimum>0</minimum><maximum>{max_y}</maximum><center>{centre_y}</center>
      </kspace_encoding_step_1>
      <slice><minimum>0</minimum><maximum>{max_slice}</maximum><center>0</center></slice>
    </encodingLimits>
  </encoding>
</ismrmrdHeader>
"""


def np_fft2c(image: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2D FFT over the last two axes (numpy, independent of data/fourier.py)."""
    shifted = np.fft.ifftshift(image, axes=(-2, -1))
    return np.fft.fftshift(np.fft.fft2(shifted, axes=(-2, -1), norm="ortho"), axes=(-2, -1))


def np_ifft2c(kspace: np.ndarray) -> np.ndarray:
    """Inverse of :func:`np_fft2c`."""
    shifted = np.fft.ifftshift(kspace, axes=(-2, -1))
    return np.fft.fftshift(np.fft.ifft2(shifted, axes=(-2, -1), norm="ortho"), axes=(-2, -1))


def np_crop(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """fastMRI's centre crop of the last two axes."""
    top, left = (x.shape[-2] - shape[0]) // 2, (x.shape[-1] - shape[1]) // 2
    return x[..., top : top + shape[0], left : left + shape[1]]


def phantom(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Smooth positive random images (..., H, W): blobs on a dark background, float32."""
    *lead, height, width = shape
    y, x = np.mgrid[0:height, 0:width]
    out = np.zeros((*lead, height, width), dtype=np.float32)
    for index in np.ndindex(*lead) if lead else [()]:
        img = np.zeros((height, width), dtype=np.float32)
        for _ in range(4):
            cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
            r = rng.uniform(0.1, 0.3) * min(height, width)
            img += rng.uniform(0.5, 1.0) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r**2))
        out[index] = img
    return out


def write_fastmri(
    path: Path,
    *,
    rng: np.random.Generator,
    slices: int = 3,
    kspace_shape: tuple[int, int] = (40, 36),
    recon: tuple[int, int] = (32, 32),
    coils: int | None = None,
    acquisition: str = "CORPD_FBK",
    patient_id: str | None = None,
    target: bool = True,
    header: bool = True,
) -> dict[str, np.ndarray]:
    """A fastMRI-style raw-data file; returns the k-space and the target written (or that would be)."""
    height, width = kspace_shape
    if coils is None:
        images = phantom(rng, (slices, height, width)).astype(np.complex64)
        images *= np.exp(1j * rng.uniform(0, 0.5))
        kspace = np_fft2c(images).astype(np.complex64)
        reference = np.abs(np_crop(images, recon)).astype(np.float32)
        target_name = "reconstruction_esc"
    else:
        base = phantom(rng, (slices, height, width))
        sens = rng.uniform(0.5, 1.5, size=(1, coils, 1, 1)).astype(np.float32)
        images = (base[:, None] * sens).astype(np.complex64)
        kspace = np_fft2c(images).astype(np.complex64)
        reference = np.sqrt((np.abs(np_crop(images, recon)) ** 2).sum(axis=1)).astype(np.float32)
        target_name = "reconstruction_rss"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("kspace", data=kspace)
        if target:
            handle.create_dataset(target_name, data=reference)
        if header:
            xml = ISMRMRD_HEADER.format(
                coils=coils or 1,
                enc_x=height,
                enc_y=width,
                rec_x=recon[0],
                rec_y=recon[1],
                max_y=width - 1,
                centre_y=width // 2,
                max_slice=slices - 1,
            )
            handle.create_dataset("ismrmrd_header", data=np.bytes_(xml.encode()))
        handle.attrs["acquisition"] = acquisition
        handle.attrs["max"] = float(reference.max())
        handle.attrs["norm"] = float(np.linalg.norm(reference))
        if patient_id is not None:
            handle.attrs["patient_id"] = patient_id
    return {"kspace": kspace, "target": reference}


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """A NIfTI-1 file (``.nii`` or ``.nii.gz`` by the suffix) holding ``data`` as stored (X, Y, Z)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def write_brats(
    root: Path, subjects: list[str], *, rng: np.random.Generator, shape=(32, 32, 12), modalities=("t1", "t2")
) -> dict[tuple[str, str], np.ndarray]:
    """BraTS subject folders ``<root>/<ID>/<ID>_<modality>.nii.gz`` (and a ``_seg``); returns the arrays."""
    written = {}
    for subject in subjects:
        for modality in (*modalities, "seg"):
            if modality == "seg":
                data = (rng.random(shape) > 0.9).astype(np.uint8)
            else:
                image = phantom(rng, (shape[2], shape[1], shape[0])).transpose(2, 1, 0)
                data = (image * 1000).astype(np.int16)
                written[(subject, modality)] = data
            write_nifti(root / subject / f"{subject}_{modality}.nii.gz", data)
    return written


def write_ixi(
    root: Path,
    subjects: list[str],
    *,
    rng: np.random.Generator,
    shape=(32, 32, 10),
    contrasts=("T1", "T2", "PD"),
) -> dict[tuple[str, str], np.ndarray]:
    """IXI files ``<root>/<subject>-<contrast>.nii.gz`` (float32); returns the arrays."""
    written = {}
    for subject in subjects:
        for contrast in contrasts:
            data = phantom(rng, (shape[2], shape[1], shape[0])).transpose(2, 1, 0).copy()
            written[(subject, contrast)] = data
            write_nifti(root / f"{subject}-{contrast}.nii.gz", data)
    return written


def write_dicom_series(
    folder: Path,
    volume: np.ndarray,
    *,
    patient: str,
    description: str,
    shuffle_names: bool = True,
    rng: np.random.Generator | None = None,
) -> list[Path]:
    """One DICOM file per slice of ``volume`` (slices, rows, columns), uint16, with positions along z.

    File names are in scrambled order when ``shuffle_names`` so that readers must sort by position.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid, study_uid = generate_uid(), generate_uid()
    order = np.arange(volume.shape[0])
    if shuffle_names:
        order = (rng or np.random.default_rng(0)).permutation(order)
    paths = []
    for name_index, slice_index in enumerate(order):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        instance_uid = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = instance_uid
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, instance_uid
        ds.Modality = "MR"
        ds.PatientID, ds.PatientName = patient, patient
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SeriesDescription = description
        ds.SeriesNumber = 1
        ds.InstanceNumber = int(slice_index) + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, 5.0 * float(slice_index)]
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = 5.0
        ds.set_pixel_data(np.ascontiguousarray(volume[slice_index], dtype=np.uint16), "MONOCHROME2", 12)
        path = folder / f"IM_{name_index:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
