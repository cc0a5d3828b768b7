"""Bad input: each problem in a user's data gives one UserError line naming the file and what was expected.

Errors appear in ``prepare()`` (called by ``SiteDataModule.setup()`` for every site before any training);
``skip_corrupt: true`` skips unreadable volumes with one warning listing them.
"""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest
import scipy.io
from pydantic import TypeAdapter

from data.options import SiteOptions
from data.site import SiteDataModule
from data.sources import SourceContext, SourceOptions, build_source
from data.sources.base import SPLITS
from tests.fixtures.mri_files import phantom, write_brats, write_dicom_series, write_fastmri, write_nifti
from utils.errors import UserError

OPTIONS = TypeAdapter(SourceOptions)


def prepare(tmp_path, **options):
    source = build_source(OPTIONS.validate_python(options), SourceContext("site-x", 0, tmp_path / "cache"))
    source.prepare()
    return source


def error_of(tmp_path, **options) -> str:
    with pytest.raises(UserError) as info:
        prepare(tmp_path, **options)
    message = str(info.value)
    assert "\n" not in message and "site-x" in message
    return message


def truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture
def knee(tmp_path):
    root = tmp_path / "knee"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        write_fastmri(root / f"file{i}.h5", rng=rng, patient_id=f"p{i}")
    return root


@pytest.fixture
def brats(tmp_path):
    write_brats(
        tmp_path / "brats", [f"S{i}" for i in range(4)], rng=np.random.default_rng(1), shape=(16, 16, 4)
    )
    return tmp_path / "brats"


@pytest.mark.parametrize("kind", ["fastmri", "brats", "ixi", "dicom", "folder"])
def test_missing_root(tmp_path, kind):
    message = error_of(tmp_path, kind=kind, root=str(tmp_path / "nowhere"))
    assert f"source.root {tmp_path / 'nowhere'} does not exist" in message and "expected" in message


@pytest.mark.parametrize("kind", ["fastmri", "brats", "ixi", "dicom", "folder"])
def test_empty_root_is_not_the_working_directory(tmp_path, kind, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for root in ("", "  "):
        assert "source.root is empty" in error_of(tmp_path, kind=kind, root=root)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("fastmri", ".h5"),
        ("brats", "_t1.nii.gz"),
        ("ixi", "T1.nii.gz"),
        ("dicom", "DICOM"),
        ("folder", "<subject>"),
    ],
)
def test_no_matching_files(tmp_path, kind, expected):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("nothing here")
    message = error_of(tmp_path, kind=kind, root=str(tmp_path / "empty"))
    assert str(tmp_path / "empty") in message and expected in message


def test_filters_that_match_nothing(tmp_path, knee, brats):
    assert "CORPDFS_FBK" in error_of(tmp_path, kind="fastmri", root=str(knee), acquisitions=["CORPDFS_FBK"])
    assert "include='TCIA'" in error_of(tmp_path, kind="brats", root=str(brats), include="TCIA")


def test_truncated_h5(tmp_path, knee):
    truncate(knee / "file2.h5")
    message = error_of(tmp_path, kind="fastmri", root=str(knee))
    assert f"{knee / 'file2.h5'}: not a readable HDF5 file" in message and "skip_corrupt" in message


def test_fastmri_missing_dataset_key_and_wrong_dimensions(tmp_path, knee):
    with h5py.File(knee / "file1.h5", "a") as handle:
        del handle["kspace"]
    message = error_of(tmp_path, kind="fastmri", root=str(knee))
    assert f"{knee / 'file1.h5'}: has no dataset 'kspace'" in message
    with h5py.File(knee / "file1.h5", "a") as handle:
        handle["kspace"] = np.zeros((40, 36), np.complex64)
    message = error_of(tmp_path, kind="fastmri", root=str(knee))
    assert "'kspace' has shape (40, 36); expected (slices, H, W)" in message
    with h5py.File(knee / "file1.h5", "a") as handle:
        del handle["kspace"]
        handle["kspace"] = np.zeros((3, 40, 36), np.float32)
    assert "expected complex k-space" in error_of(tmp_path, kind="fastmri", root=str(knee))


def test_fastmri_requested_target_missing(tmp_path, knee):
    message = error_of(tmp_path, kind="fastmri", root=str(knee), target="reconstruction_rss")
    assert "has no dataset 'reconstruction_rss'" in message and "file0.h5" in message


def test_fastmri_target_of_the_wrong_shape(tmp_path, knee):
    with h5py.File(knee / "file3.h5", "a") as handle:
        del handle["reconstruction_esc"]
        handle["reconstruction_esc"] = np.zeros((2, 32, 32), np.float32)
    message = error_of(tmp_path, kind="fastmri", root=str(knee))
    assert (
        "file3.h5" in message and "'reconstruction_esc' has shape (2, 32, 32); expected (3, h, w)" in message
    )


def test_fastmri_complex_target_and_empty_matrix(tmp_path, knee):
    with h5py.File(knee / "file1.h5", "a") as handle:
        target = handle["reconstruction_esc"][()]
        del handle["reconstruction_esc"]
        handle["reconstruction_esc"] = target.astype(np.complex64) * 1j
    message = error_of(tmp_path, kind="fastmri", root=str(knee))
    assert "file1.h5" in message and "has dtype complex64; expected a real-valued" in message

    bare = tmp_path / "bare"
    bare.mkdir()
    write_fastmri(bare / "f.h5", rng=np.random.default_rng(2), target=False, recon=(32, 32))
    with h5py.File(bare / "f.h5", "a") as handle:
        header = handle["ismrmrd_header"][()].decode()
        del handle["ismrmrd_header"]
        handle["ismrmrd_header"] = np.bytes_(header.replace("<matrixSize><x>32</x>", "<matrixSize><x>0</x>"))
    message = error_of(tmp_path, kind="fastmri", root=str(bare))
    assert "f.h5" in message and "matrixSize is 0 x 32; expected positive sizes" in message


@pytest.mark.parametrize("damage", ["empty k-space slice", "all-zero target"])
def test_fastmri_slices_with_nothing_to_learn_fail_in_one_line(tmp_path, knee, damage):
    with h5py.File(knee / "file2.h5", "a") as handle:
        if damage == "empty k-space slice":  # not the middle one: found when the slice is read
            data = handle["kspace"][()]
            data[2] = 0
            handle["kspace"][...] = data
        else:
            handle["reconstruction_esc"][...] = 0
    site = SiteOptions.model_validate(
        {"name": "k", "source": {"kind": "fastmri", "root": str(knee)},
         "mask": {"kind": "random_1d", "acceleration": 2}}
    )  # fmt: skip
    module = SiteDataModule(site, seed=0, cache_dir=tmp_path / "cache")
    with pytest.raises(UserError) as info:
        module.setup()
        for dataset in module.datasets.values():  # what training and testing read
            for i in range(len(dataset)):
                dataset[i]
    message = str(info.value)
    assert "\n" not in message and "file2" in message, message
    if damage == "empty k-space slice":
        assert "slice 2" in message and "zero-filled input is constant" in message
    else:
        assert "target of its middle slice (slice 1) is constant" in message


def test_fastmri_nan_values(tmp_path, knee):
    with h5py.File(knee / "file0.h5", "a") as handle:
        data = handle["kspace"][()]
        data[1, 3, 3] = np.nan
        handle["kspace"][...] = data
    message = error_of(tmp_path, kind="fastmri", root=str(knee), verify_values=True)
    assert f"{knee / 'file0.h5'}: slice 1 of 'kspace' contains NaN or infinite values" in message
    source = prepare(tmp_path, kind="fastmri", root=str(knee))  # checked per slice when read
    volume = next(v for split in SPLITS for v in source.volumes(split) if v.name == "file0")
    source.read_slice(volume, 0)
    with pytest.raises(UserError, match="file0.h5: slice 1 of 'kspace' contains NaN"):
        source.read_slice(volume, 1)


def test_truncated_nifti(tmp_path, brats):
    truncate(brats / "S1" / "S1_t2.nii.gz")
    message = error_of(tmp_path, kind="brats", root=str(brats))
    assert f"{brats / 'S1' / 'S1_t2.nii.gz'}: not a readable NIfTI file" in message


def test_nifti_with_nan_and_wrong_dimensions(tmp_path, brats):
    data = np.ones((16, 16, 4), np.float32)
    data[2, 2, 2] = np.inf
    write_nifti(brats / "S2" / "S2_t1.nii.gz", data)
    message = error_of(tmp_path, kind="brats", root=str(brats))
    assert "S2_t1.nii.gz: the volume contains 1 NaN or infinite values" in message
    write_nifti(brats / "S2" / "S2_t1.nii.gz", np.ones((16, 16, 4, 3, 2), np.float32))
    message = error_of(tmp_path, kind="brats", root=str(brats))
    assert "S2_t1.nii.gz: expected a 3D volume, got shape (16, 16, 4, 3, 2)" in message
    # a 4D file is valid, a series to choose from (tests/data/test_source_messages.py)


def test_slice_range_beyond_a_volume(tmp_path, brats):
    message = error_of(tmp_path, kind="brats", root=str(brats), slices=[10, 20])
    assert "has 4 slices; slices [10, 20) selects none" in message


def test_mixed_sizes_need_a_size(tmp_path, brats):
    write_nifti(brats / "S3" / "S3_t1.nii.gz", np.ones((20, 16, 4), np.int16))
    message = error_of(tmp_path, kind="brats", root=str(brats))
    assert "different slice sizes (16x16, 16x20)" in message and "source.size" in message
    prepare(tmp_path, kind="brats", root=str(brats), size=16)


def test_corrupt_dicom(tmp_path):
    rng = np.random.default_rng(2)
    for p in range(3):
        volume = (phantom(rng, (3, 16, 16)) * 100).astype(np.uint16)
        write_dicom_series(tmp_path / "dcm" / f"p{p}", volume, patient=f"p{p}", description="T1", rng=rng)
    bad = tmp_path / "dcm" / "p1" / "IM_0001.dcm"
    bad.write_bytes(b"\0" * 64)
    message = error_of(tmp_path, kind="dicom", root=str(tmp_path / "dcm"))
    assert f"{bad}: not a readable DICOM file" in message
    truncate(bad.parent.parent / "p2" / "IM_0002.dcm", 0.9)  # header intact, pixel data cut
    bad.unlink()
    message = error_of(tmp_path, kind="dicom", root=str(tmp_path / "dcm"))
    assert "p2" in message and "IM_0002.dcm: not a readable DICOM image" in message


def test_folder_stacks_with_missing_keys_and_wrong_dimensions(tmp_path):
    root = tmp_path / "site"
    for i in range(3):
        (root / f"s{i}").mkdir(parents=True)
        np.save(root / f"s{i}" / "t1.npy", np.ones((2, 16, 16), np.float32))
    with h5py.File(root / "s0" / "t2.h5", "w") as handle:
        handle["data"] = np.ones((2, 16, 16), np.float32)
    message = error_of(tmp_path, kind="folder", root=str(root))
    assert f"{root / 's0' / 't2.h5'}: has no dataset 'image' (found: data)" in message
    prepare(tmp_path, kind="folder", root=str(root), h5_key="data")
    np.save(root / "s1" / "t1.npy", np.ones((2, 2, 16, 16), np.float32))
    message = error_of(tmp_path, kind="folder", root=str(root), h5_key="data")
    assert "s1/t1.npy: the array has shape (2, 2, 16, 16); expected a 2D image or a 3D stack" in message


def test_skip_corrupt_warns_once_and_keeps_the_rest(tmp_path, brats, caplog):
    truncate(brats / "S1" / "S1_t1.nii.gz")
    write_nifti(brats / "S2" / "S2_t2.nii.gz", np.full((16, 16, 4), np.nan, np.float32))
    with caplog.at_level(logging.WARNING):
        source = prepare(tmp_path, kind="brats", root=str(brats), skip_corrupt=True)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert "skipped 2 unreadable volume(s)" in text and "S1_t1.nii.gz" in text and "S2_t2.nii.gz" in text
    names = {v.name for split in SPLITS for v in source.volumes(split)}
    assert names == {"S0_t1", "S0_t2", "S1_t2", "S2_t1", "S3_t1", "S3_t2"}


def test_skip_corrupt_for_fastmri(tmp_path, knee, caplog):
    truncate(knee / "file2.h5")
    with caplog.at_level(logging.WARNING):
        source = prepare(tmp_path, kind="fastmri", root=str(knee), skip_corrupt=True)
    assert "file2.h5" in caplog.text
    assert {v.name for split in SPLITS for v in source.volumes(split)} == {"file0", "file1", "file3"}


def test_a_mask_file_of_the_wrong_size_fails_in_setup(tmp_path, brats):
    mask_path = tmp_path / "mask.mat"
    scipy.io.savemat(mask_path, {"mask": np.ones((20, 20), np.uint8)})
    site = SiteOptions.model_validate(
        {
            "name": "b",
            "source": {"kind": "brats", "root": str(brats)},
            "mask": {"kind": "file", "path": str(mask_path)},
        }
    )
    module = SiteDataModule(site, seed=0, cache_dir=tmp_path / "cache")
    with pytest.raises(UserError) as info:
        module.setup()
    message = str(info.value)
    assert "\n" not in message and str(mask_path) in message and "(16, 16)" in message


@pytest.mark.parametrize("kind", ["fastmri", "brats", "ixi", "dicom", "folder"])
def test_root_that_is_a_broken_link(tmp_path, kind):
    (tmp_path / "data").symlink_to(tmp_path / "unmounted")
    message = error_of(tmp_path, kind=kind, root=str(tmp_path / "data"))
    target = tmp_path / "unmounted"
    assert f"source.root {tmp_path / 'data'} is a link to {target}, which does not exist" in message


def _npy_site(root, subjects=3, shape=(2, 16, 16)):
    for i in range(subjects):
        (root / f"s{i}").mkdir(parents=True, exist_ok=True)
        np.save(root / f"s{i}" / "t1.npy", np.ones(shape, np.float32))


def test_folder_file_that_is_a_broken_link(tmp_path):
    root = tmp_path / "site"
    _npy_site(root)
    (root / "s1" / "t2.npy").symlink_to(tmp_path / "elsewhere.npy")
    message = error_of(tmp_path, kind="folder", root=str(root))
    target = tmp_path / "elsewhere.npy"
    assert f"{root / 's1' / 't2.npy'}: a link to {target}, which does not exist" in message
    assert "manifest" not in message  # found by the pattern, not listed in a manifest
    manifest = tmp_path / "list.csv"
    manifest.write_text("subject,contrast,path\ns0,t1,s0/t1.npy\ns1,t2,s1/t2.npy\n")
    message = error_of(tmp_path, kind="folder", root=str(root), manifest=str(manifest))
    assert "listed in source.manifest but a link to" in message


def test_colour_images_are_refused_not_read_as_slices(tmp_path):
    root = tmp_path / "site"
    _npy_site(root)
    np.save(root / "s2" / "t1.npy", np.ones((16, 16, 3), np.uint8))  # an RGB screenshot
    message = error_of(tmp_path, kind="folder", root=str(root))
    assert "s2/t1.npy: the array has shape (16, 16, 3): colour channels (RGB) or slices on" in message
    np.save(root / "s2" / "t1.npy", np.ones((3, 16, 16), np.float32))  # three slices: fine
    prepare(tmp_path, kind="folder", root=str(root))


def test_one_volume_in_two_formats_is_refused(tmp_path):
    root = tmp_path / "site"
    _npy_site(root)
    write_nifti(root / "s1" / "t1.nii.gz", np.ones((16, 16, 2), np.float32))
    message = error_of(tmp_path, kind="folder", root=str(root))
    assert "s1/t1.nii.gz and s1/t1.npy are one volume (subject 's1', contrast 't1') in two formats" in message
    (root / "s1" / "t1.nii.gz").rename(root / "s1" / "t2.nii.gz")  # another contrast: two volumes
    prepare(tmp_path, kind="folder", root=str(root))


def test_slices_smaller_than_the_size_are_padded_with_a_warning(tmp_path, caplog):
    root = tmp_path / "site"
    _npy_site(root)
    with caplog.at_level(logging.WARNING):
        source = prepare(tmp_path, kind="folder", root=str(root), size=24)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["site 'site-x': slices of 16x16 are smaller than source.size 24x24; their image is "
                        "zero-padded to it"]  # fmt: skip
    volume = source.volumes("train")[0]
    assert source.read_slice(volume, 0).shape == (24, 24)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        prepare(tmp_path, kind="folder", root=str(root), size=12)  # cropped: nothing to say
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
