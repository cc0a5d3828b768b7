"""Real-format sources on tiny files: fastMRI h5 (single- and multi-coil), BraTS, IXI, DICOM, a site's folder.

Files are written with h5py, nibabel and pydicom directly (tests/mri_files.py); expected values are
computed from what was written, with numpy.
"""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
from pydantic import TypeAdapter

from data.sources import SourceContext, SourceOptions, build_source
from data.sources import fastmri as fastmri_module
from data.sources.base import SPLITS, KspaceSlice
from tests.fixtures.mri_files import (
    phantom,
    write_brats,
    write_dicom_series,
    write_fastmri,
    write_ixi,
    write_nifti,
)

OPTIONS = TypeAdapter(SourceOptions)


def make(tmp_path, **options):
    source = build_source(OPTIONS.validate_python(options), SourceContext("site", 0, tmp_path / "cache"))
    source.prepare()
    return source


def by_split(source):
    return {split: source.volumes(split) for split in SPLITS}


def subjects_of(source):
    return {split: {v.subject for v in vols} for split, vols in by_split(source).items()}


def assert_disjoint(groups: dict[str, set]):
    splits = list(groups)
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            assert not groups[a] & groups[b], (a, b)


def oriented_axial(data: np.ndarray, k: int) -> np.ndarray:
    """Slice k of an (X, Y, Z) RAS array as the sources show it: anterior up, patient right on the left."""
    return np.flipud(np.fliplr(data[:, :, k].T))


# ------------------------------------------------------------------------------------------- fastMRI


@pytest.fixture
def knee(tmp_path):
    """Six single-coil PD / PD-FS files of patients p0..p4 (p0 has two); 40 x 36 k-space, 32 x 32 target."""
    root = tmp_path / "knee"
    root.mkdir()
    rng = np.random.default_rng(0)
    written = {}
    layout = [("p0", "CORPD_FBK"), ("p0", "CORPDFS_FBK"), ("p1", "CORPD_FBK"), ("p2", "CORPDFS_FBK")]
    layout += [("p3", "CORPD_FBK"), ("p4", "CORPD_FBK")]
    for i, (patient, acquisition) in enumerate(layout):
        name = f"file{1000 + i}"
        written[name] = write_fastmri(
            root / f"{name}.h5", rng=rng, acquisition=acquisition, patient_id=patient, slices=3
        )
    return root, written, dict(zip((f"file{1000 + i}" for i in range(6)), layout))


def test_fastmri_single_coil_slices(tmp_path, knee):
    root, written, layout = knee
    source = make(tmp_path, kind="fastmri", root=str(root))
    volumes = [v for split in SPLITS for v in source.volumes(split)]
    assert sorted(v.name for v in volumes) == sorted(written)
    for volume in volumes:
        assert volume.num_slices == 3 and volume.shape == (32, 32)
        assert volume.subject == layout[volume.name][0] and volume.contrast == layout[volume.name][1]
        item = source.read_slice(volume, 2)
        assert isinstance(item, KspaceSlice) and item.crop == (32, 32)
        assert item.kspace.shape == (40, 36) and item.kspace.dtype == np.complex64
        np.testing.assert_array_equal(item.kspace, written[volume.name]["kspace"][2])
        np.testing.assert_array_equal(item.target, written[volume.name]["target"][2])
    assert_disjoint(subjects_of(source))
    files_of_p0 = {split for split, vols in by_split(source).items() for v in vols if v.subject == "p0"}
    assert len(files_of_p0) == 1  # both of p0's files in one split


def test_fastmri_acquisition_filter_and_sampling(tmp_path, knee):
    root, written, layout = knee
    pd = make(tmp_path, kind="fastmri", root=str(root), acquisitions=["CORPD_FBK"])
    names = {v.name for split in SPLITS for v in pd.volumes(split)}
    assert names == {n for n, (_, acq) in layout.items() if acq == "CORPD_FBK"}
    assert {v.contrast for split in SPLITS for v in pd.volumes(split)} == {"CORPD_FBK"}
    sliced = make(tmp_path, kind="fastmri", root=str(root), slices=[1, 3], subject="file")
    volume = sliced.volumes("train")[0]
    assert volume.num_slices == 2 and volume.subject == volume.name
    np.testing.assert_array_equal(sliced.read_slice(volume, 0).kspace, written[volume.name]["kspace"][1])
    half = make(tmp_path, kind="fastmri", root=str(root), volume_sample_rate=0.5, sample_rate=0.5)
    kept = [v for split in SPLITS for v in half.volumes(split)]
    assert 0 < len(kept) < 6 and sum(v.num_slices for v in kept) < 3 * len(kept)


def test_fastmri_multi_coil_and_computed_targets(tmp_path):
    root = tmp_path / "brain"
    root.mkdir()
    rng = np.random.default_rng(1)
    written = {
        f"b{i}": write_fastmri(root / f"b{i}.h5", rng=rng, coils=4, acquisition="AXT2", target=i != 0)
        for i in range(3)
    }
    source = make(tmp_path, kind="fastmri", root=str(root), split={"train": 0.34, "val": 0.33, "test": 0.33})
    for volume in (v for split in SPLITS for v in source.volumes(split)):
        item = source.read_slice(volume, 1)
        assert item.kspace.shape == (4, 40, 36) and item.crop == (32, 32)
        if volume.name == "b0":  # no reconstruction_rss: the target is computed from the k-space
            assert item.target is None
        else:
            np.testing.assert_array_equal(item.target, written[volume.name]["target"][1])
    computed = make(tmp_path, kind="fastmri", root=str(root), target="kspace", crop=24)
    volume = computed.volumes("train")[0]
    assert volume.shape == (24, 24) and computed.read_slice(volume, 0).target is None


def test_fastmri_without_target_uses_the_header_recon_size(tmp_path):
    root = tmp_path / "raw"
    root.mkdir()
    write_fastmri(root / "a.h5", rng=np.random.default_rng(2), recon=(20, 24), target=False)
    source = make(tmp_path, kind="fastmri", root=str(root), split={"train": 1.0, "val": 0.0, "test": 0.0})
    assert source.volumes("train")[0].shape == (20, 24)


def test_fastmri_handles_are_few_per_process_and_never_pickled(tmp_path, knee, monkeypatch):
    root, _, _ = knee
    monkeypatch.setattr(fastmri_module, "OPEN_FILES", 2)
    source = make(tmp_path, kind="fastmri", root=str(root))
    for _ in range(2):
        for volume in (v for split in SPLITS for v in source.volumes(split)):
            for i in range(volume.num_slices):
                source.read_slice(volume, i)
            assert len(source._handles) <= 2
    clone = pickle.loads(pickle.dumps(source))
    assert clone._handles == {} and len(source._handles) == 2
    volume = clone.volumes("train")[0]
    np.testing.assert_array_equal(clone.read_slice(volume, 0).kspace, source.read_slice(volume, 0).kspace)


# --------------------------------------------------------------------------------------------- NIfTI


def test_brats_subjects_modalities_slices_and_orientation(tmp_path):
    rng = np.random.default_rng(3)
    ids = [f"BraTS19_CBICA_A{i:02d}_1" for i in range(4)] + ["BraTS19_TCIA01_123_1"]
    written = write_brats(tmp_path / "brats" / "HGG", ids, rng=rng, shape=(32, 30, 12))
    source = make(
        tmp_path, kind="brats", root=str(tmp_path / "brats"), slices=[2, 10], contrasts=["t2", "t1"]
    )
    volumes = [v for split in SPLITS for v in source.volumes(split)]
    assert len(volumes) == 10 and {v.contrast for v in volumes} == {"t1", "t2"}
    assert_disjoint(subjects_of(source))
    for volume in volumes:
        assert volume.num_slices == 8 and volume.shape == (30, 32)
        assert volume.name == f"{volume.subject}_{volume.contrast}"
        image = source.read_slice(volume, 3)  # file slice 5
        assert image.dtype == np.float32
        np.testing.assert_array_equal(image, oriented_axial(written[(volume.subject, volume.contrast)], 5))
    cbica = make(tmp_path, kind="brats", root=str(tmp_path / "brats"), include="_CBICA_", contrasts=["t1"])
    assert all("CBICA" in v.subject for split in SPLITS for v in cbica.volumes(split))


def test_brats_crop_and_pad_to_size(tmp_path):
    rng = np.random.default_rng(4)
    written = write_brats(tmp_path / "b", [f"S{i}" for i in range(3)], rng=rng, shape=(20, 26, 4))
    source = make(tmp_path, kind="brats", root=str(tmp_path / "b"), size=[24, 16], contrasts=["t1"])
    volume = source.volumes("train")[0]
    image = source.read_slice(volume, 1)
    full = oriented_axial(written[(volume.subject, "t1")], 1)  # 26 x 20
    assert volume.shape == (24, 16) and image.shape == (24, 16)
    np.testing.assert_array_equal(image, full[1:25, 2:18])  # rows cropped 26 -> 24, columns 20 -> 16
    padded = make(tmp_path, kind="brats", root=str(tmp_path / "b"), size=32, contrasts=["t1"])
    image = padded.read_slice(padded.volumes("train")[0], 1)
    assert image.shape == (32, 32) and image[:3].sum() == 0 and image[:, :6].sum() == 0
    np.testing.assert_array_equal(image[3:29, 6:26], full)


def test_ixi_contrasts_subjects_and_aliases(tmp_path):
    rng = np.random.default_rng(5)
    subjects = ["IXI002-Guys-0828", "IXI012-HH-1211", "IXI013-HH-1212", "IXI014-IOP-0100"]
    write_ixi(tmp_path / "ixi", subjects, rng=rng, shape=(24, 24, 6))
    (tmp_path / "ixi" / "IXI002-Guys-0828-MRA.nii.gz").write_bytes(b"not read")
    source = make(tmp_path, kind="ixi", root=str(tmp_path / "ixi"), contrasts=["pd", "t2"])
    volumes = [v for split in SPLITS for v in source.volumes(split)]
    assert {v.subject for v in volumes} == set(subjects) and {v.contrast for v in volumes} == {"pd", "t2"}
    assert all(v.num_slices == 6 and v.shape == (24, 24) for v in volumes)
    (tmp_path / "train.txt").write_text("IXI002\nIXI012-HH-1211\n")
    (tmp_path / "val.txt").write_text("IXI013\n")
    listed = make(
        tmp_path,
        kind="ixi",
        root=str(tmp_path / "ixi"),
        split_files={"train": str(tmp_path / "train.txt"), "val": str(tmp_path / "val.txt")},
    )
    assert subjects_of(listed) == {
        "train": {"IXI002-Guys-0828", "IXI012-HH-1211"},
        "val": {"IXI013-HH-1212"},
        "test": set(),
    }


# --------------------------------------------------------------------------------------------- DICOM


@pytest.fixture
def dicom_root(tmp_path):
    rng = np.random.default_rng(6)
    written = {}
    for p in range(4):
        for description in ("AX T1", "AX T2", "AX FLAIR"):
            volume = (phantom(rng, (5, 24, 20)) * 1000).astype(np.uint16)
            written[(f"PAT{p}", description)] = volume
            folder = tmp_path / "dicom" / f"patient{p}" / description.replace(" ", "_")
            write_dicom_series(folder, volume, patient=f"PAT{p}", description=description, rng=rng)
    return tmp_path / "dicom", written


def test_dicom_series_are_grouped_ordered_and_named(tmp_path, dicom_root):
    root, written = dicom_root
    source = make(tmp_path, kind="dicom", root=str(root), contrasts={"t1": "T1", "t2": r"\bT2"})
    volumes = [v for split in SPLITS for v in source.volumes(split)]
    assert len(volumes) == 8 and {v.contrast for v in volumes} == {"t1", "t2"}
    assert {v.subject for v in volumes} == {"PAT0", "PAT1", "PAT2", "PAT3"}
    assert_disjoint(subjects_of(source))
    for volume in volumes:
        assert volume.num_slices == 5 and volume.shape == (24, 20)
        stack = written[(volume.subject, "AX T1" if volume.contrast == "t1" else "AX T2")]
        for i in range(5):  # ordered by position, whatever the file names
            np.testing.assert_array_equal(source.read_slice(volume, i), stack[i].astype(np.float32))
    every = make(tmp_path, kind="dicom", root=str(root), subject="folder")
    contrasts = {v.contrast for split in SPLITS for v in every.volumes(split)}
    assert contrasts == {"ax_t1", "ax_t2", "ax_flair"}
    assert {v.subject for split in SPLITS for v in every.volumes(split)} == {f"patient{p}" for p in range(4)}


def test_dicom_headers_are_read_once(tmp_path, dicom_root, monkeypatch):
    from data.sources import dicom

    root, _ = dicom_root
    make(tmp_path, kind="dicom", root=str(root))
    read = []
    original = dicom.read_dicom_header
    monkeypatch.setattr(dicom, "read_dicom_header", lambda path: read.append(path) or original(path))
    again = make(tmp_path, kind="dicom", root=str(root))
    assert read == [] and len([v for split in SPLITS for v in again.volumes(split)]) == 12
    touched = next(root.rglob("*.dcm"))
    touched.write_bytes(touched.read_bytes())  # same content, new modification time
    make(tmp_path, kind="dicom", root=str(root))
    assert read == [touched]


def test_kspace_resize_keeps_the_field_of_view(tmp_path, dicom_root):
    root, written = dicom_root
    source = make(tmp_path, kind="dicom", root=str(root), contrasts={"t1": "T1"}, size=16, resize="kspace")
    volume = source.volumes("train")[0]
    image = source.read_slice(volume, 2)
    original = written[(volume.subject, "AX T1")][2].astype(np.float64)
    spectrum = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(original)))
    low = spectrum[12 - 8 : 12 + 8, 10 - 8 : 10 + 8]  # the centre 16 x 16 of k-space
    low_res = np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(low)))) * (16 * 16) / (24 * 20)
    assert image.shape == (16, 16)
    np.testing.assert_allclose(image, low_res, rtol=1e-4, atol=1e-2)
    assert image.mean() == pytest.approx(original.mean(), rel=0.05)  # same intensity scale


# -------------------------------------------------------------------------------------------- folder


def test_site_folder_reads_every_format(tmp_path, dicom_root):
    rng = np.random.default_rng(7)
    root = tmp_path / "site"
    stacks = {}
    for i in range(4):
        subject = root / f"sub{i}"
        subject.mkdir(parents=True)
        stacks[(f"sub{i}", "t1")] = phantom(rng, (4, 24, 20))
        np.save(subject / "t1.npy", stacks[(f"sub{i}", "t1")])
        stacks[(f"sub{i}", "t2")] = phantom(rng, (4, 24, 20))
        with h5py.File(subject / "t2.h5", "w") as handle:
            handle["image"] = stacks[(f"sub{i}", "t2")]
    nifti = phantom(rng, (4, 24, 20))  # (Z, Y, X) as shown
    write_nifti(root / "sub4" / "t1.nii.gz", np.ascontiguousarray(nifti[:, ::-1, ::-1].transpose(2, 1, 0)))
    stacks[("sub4", "t1")] = nifti
    dicom_volume = dicom_root[1][("PAT0", "AX T2")]
    write_dicom_series(root / "sub4" / "t2", dicom_volume, patient="x", description="T2")
    stacks[("sub4", "t2")] = dicom_volume.astype(np.float32)
    (root / "README.txt").write_text("not data")

    source = make(tmp_path, kind="folder", root=str(root))
    volumes = [v for split in SPLITS for v in source.volumes(split)]
    assert {(v.subject, v.contrast) for v in volumes} == set(stacks)
    assert_disjoint(subjects_of(source))
    for volume in volumes:
        assert volume.num_slices == 4 or volume.subject == "sub4"
        np.testing.assert_allclose(
            source.read_slice(volume, 1), stacks[(volume.subject, volume.contrast)][1], rtol=1e-6
        )
    only_t1 = make(tmp_path, kind="folder", root=str(root), contrasts=["t1"], include="sub[0-3]")
    assert {v.subject for split in SPLITS for v in only_t1.volumes(split)} == {f"sub{i}" for i in range(4)}


def test_site_folder_pattern_and_manifest(tmp_path):
    rng = np.random.default_rng(8)
    root = tmp_path / "flat"
    root.mkdir()
    arrays = {}
    for i in range(3):
        for contrast in ("T1", "T2"):
            arrays[(f"case{i}", contrast)] = phantom(rng, (2, 16, 16))
            np.save(root / f"case{i}_{contrast}.npy", arrays[(f"case{i}", contrast)])
    pattern = r"(?P<subject>case\d+)_(?P<contrast>T[12])\.npy"
    source = make(tmp_path, kind="folder", root=str(root), pattern=pattern)
    assert {(v.subject, v.contrast) for split in SPLITS for v in source.volumes(split)} == set(arrays)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("subject,contrast,path\nA,t1,case0_T1.npy\nB,t1,case1_T1.npy\nC,t1,case2_T2.npy\n")
    listed = make(tmp_path, kind="folder", root=str(root), manifest=str(manifest))
    volumes = {v.subject: v for split in SPLITS for v in listed.volumes(split)}
    assert set(volumes) == {"A", "B", "C"}
    np.testing.assert_array_equal(listed.read_slice(volumes["C"], 1), arrays[("case2", "T2")][1])
    # A spreadsheet's "CSV UTF-8" starts with a byte-order mark; the header still reads.
    manifest.write_text("\ufeff" + manifest.read_text(), encoding="utf-8")
    listed = make(tmp_path / "bom", kind="folder", root=str(root), manifest=str(manifest))
    assert {v.subject for split in SPLITS for v in listed.volumes(split)} == {"A", "B", "C"}


# --------------------------------------------------------------------------------------------- cache


def test_volumes_are_decoded_once_and_redone_when_a_file_changes(tmp_path, monkeypatch):
    from data.sources import nifti

    rng = np.random.default_rng(9)
    write_brats(tmp_path / "b", ["S0", "S1", "S2"], rng=rng, shape=(16, 16, 4))
    decoded = []
    original = nifti.read_nifti
    monkeypatch.setattr(
        nifti, "read_nifti", lambda path, plane: decoded.append(path) or original(path, plane)
    )
    first = make(tmp_path, kind="brats", root=str(tmp_path / "b"))
    assert len(decoded) == 6
    volume = first.volumes("train")[0]
    for i in range(volume.num_slices):
        first.read_slice(volume, i)
    assert len(decoded) == 6  # slices come from the cache
    make(tmp_path, kind="brats", root=str(tmp_path / "b"))
    assert len(decoded) == 6  # a second run reuses it
    changed = np.full((16, 16, 4), 7, dtype=np.int16)
    write_nifti(tmp_path / "b" / "S1" / "S1_t1.nii.gz", changed)
    again = make(tmp_path, kind="brats", root=str(tmp_path / "b"))
    assert len(decoded) == 7
    volume = next(v for split in SPLITS for v in again.volumes(split) if v.name == "S1_t1")
    assert (again.read_slice(volume, 0) == 7).all()
    clone = pickle.loads(pickle.dumps(again))
    np.testing.assert_array_equal(clone.read_slice(volume, 2), again.read_slice(volume, 2))
