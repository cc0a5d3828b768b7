"""The transfer check's volumes from Debian 12 packages (bench/realism_debian.py): the MetaImage reader
on files the test writes itself, the one-line note and the volumes that remain when a package is not
installed, a root named by FEDMRI_DEBIAN_ROOT, and, where the packages are installed, the volumes
themselves."""

from __future__ import annotations

import dataclasses
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from utils.errors import UserError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import realism  # noqa: E402
import realism_debian  # noqa: E402
import realism_sites  # noqa: E402
import realism_volumes  # noqa: E402

DEBIAN = [name for name, v in realism.TEST_VOLUMES.items() if realism_debian.is_debian(v.package)]


def _header(sizes: tuple[int, ...], element: str, data_file: str, **extra: str) -> bytes:
    lines = [
        "ObjectType = Image",
        f"NDims = {len(sizes)}",
        "BinaryData = True",
        "BinaryDataByteOrderMSB = False",
        "TransformMatrix = 1 0 0 1",
        "Offset = 0 0",
        "ElementSpacing = 2 3",
        f"DimSize = {' '.join(map(str, sizes))}",
        f"ElementType = {element}",
    ]
    lines += [f"{key} = {value}" for key, value in extra.items()]
    return ("\n".join(lines) + f"\nElementDataFile = {data_file}\n").encode()  # fmt: skip


def test_a_metaimage_with_its_data_inside_reads_x_first(tmp_path):
    # a 5 (x) by 3 (y) image; MetaImage stores x fastest: byte y * 5 + x holds pixel (x, y)
    stored = np.arange(15, dtype=np.uint8) * 7
    path = tmp_path / "slice.mha"
    path.write_bytes(_header((5, 3), "MET_UCHAR", "LOCAL") + stored.tobytes())
    image, header = realism_debian.read_metaimage(path)
    assert image.shape == (5, 3) and image.dtype == np.uint8
    assert image[0, 0] == 0 and image[1, 0] == 7 and image[0, 1] == 35 and image[4, 2] == 98
    assert header["ElementSpacing"] == "2 3"
    # read as a volume: one slice, float32
    volume = realism_volumes.read_stored(path)
    assert volume.shape == (5, 3, 1) and volume.dtype == np.float32 and volume[4, 2, 0] == 98.0


def test_a_compressed_big_endian_metaimage_beside_its_header_reads(tmp_path):
    rng = np.random.default_rng(0)
    zyx = rng.normal(size=(2, 3, 4)).astype(">f4")  # z, y, x: x fastest on disk
    (tmp_path / "volume.zraw").write_bytes(zlib.compress(zyx.tobytes()))
    path = tmp_path / "volume.mhd"
    header = _header((4, 3, 2), "MET_FLOAT", "volume.zraw", CompressedData="True",
                     CompressedDataSize=str(len((tmp_path / "volume.zraw").read_bytes())))  # fmt: skip
    path.write_bytes(header.replace(b"MSB = False", b"MSB = True"))
    volume, _ = realism_debian.read_metaimage(path)
    assert volume.shape == (4, 3, 2)
    assert volume[3, 1, 0] == pytest.approx(float(zyx[0, 1, 3])) and volume[0, 2, 1] == pytest.approx(
        float(zyx[1, 2, 0])
    )
    # raw, little-endian 16-bit, two channels: channels last, and not a volume for the check
    pairs = np.arange(24, dtype="<i2").reshape(3, 4, 2)  # y, x, channel
    (tmp_path / "pairs.raw").write_bytes(pairs.tobytes())
    two = tmp_path / "pairs.mhd"
    two.write_bytes(_header((4, 3), "MET_SHORT", "pairs.raw", ElementNumberOfChannels="2"))
    image, _ = realism_debian.read_metaimage(two)
    assert image.shape == (4, 3, 2) and image[2, 1, 1] == pairs[1, 2, 1]
    with pytest.raises(UserError, match="several channels per pixel is not a volume"):
        realism_volumes.read_stored(two)


@pytest.mark.parametrize(
    ("header", "data", "needle"),
    [
        (b"ObjectType = Image\nNDims = 2\nDimSize = 2 2\n", b"", "no ElementDataFile line"),
        (b"just some bytes\nElementDataFile = LOCAL\n", b"", "is not 'Key = Value'"),
        (_header((2, 2), "MET_UCHAR", "LOCAL", HeaderSize="-1"), b"\0" * 4, "key 'HeaderSize'"),
        (_header((2, 2), "MET_UCHAR", "LIST"), b"", "ElementDataFile 'LIST'"),
        (_header((2, 2), "MET_UCHAR", "../elsewhere.raw"), b"", "ElementDataFile '../elsewhere.raw'"),
        (_header((2, 2), "MET_LONG_LONG", "LOCAL"), b"\0" * 32, "ElementType 'MET_LONG_LONG'"),
        (_header((2, 2), "MET_UCHAR", "LOCAL"), b"\0" * 3, "holds 3 bytes, its header needs 4"),
        (_header((2, 2), "MET_UCHAR", "LOCAL", CompressedData="True"), b"not zlib", "not a zlib stream"),
        (_header((2,), "MET_UCHAR", "LOCAL"), b"\0" * 2, "DimSize '2'"),
        (_header((2, 2), "MET_UCHAR", "LOCAL").replace(b"NDims = 2", b"NDims = two"), b"", "no valid"),
    ],
)  # fmt: skip
def test_a_metaimage_the_reader_does_not_support_is_one_line_naming_the_file(tmp_path, header, data, needle):
    path = tmp_path / "bad.mha"
    path.write_bytes(header + data)
    with pytest.raises(UserError) as info:
        realism_debian.read_metaimage(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and needle in message, message


def test_a_missing_debian_package_is_one_line_and_the_other_volumes_still_load(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDMRI_DEBIAN_ROOT", str(tmp_path))  # an empty root: neither package is there
    lines: list[str] = []
    kept = realism.available(realism.TEST_VOLUMES, log=lines.append)
    assert DEBIAN and set(kept) == set(realism.TEST_VOLUMES) - set(DEBIAN)
    assert len(lines) == 2  # one line for each package, naming it, its volumes and the install command
    for package, line in zip(("mricron-data", "insighttoolkit5-examples"), lines):
        assert "\n" not in line and line.startswith(f"note: Debian package {package} is not installed")
        assert f"apt-get install {package}" in line and "FEDMRI_DEBIAN_ROOT" in line
    assert "colin27, colin27_brain left out" in lines[0] and "kmeans_t1, kmeans_t1_brain" in lines[1]
    for name in ("t1slice", "example_func"):  # the other volumes read as before
        assert realism.read_real(kept[name]).max() > 0
    # reading a Debian volume anyway is one line naming the install command, not a traceback
    with pytest.raises(UserError) as info:
        realism.read_real(realism.TEST_VOLUMES["colin27"])
    assert "\n" not in str(info.value) and "apt-get install mricron-data" in str(info.value)


def _nifti(path: Path, data: np.ndarray, mm: float = 1.0) -> None:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([mm, mm, mm, 1.0])), str(path))


def test_an_unpacked_root_is_read_and_no_site_gets_one_scan_twice(tmp_path, monkeypatch, tiny_config, capsys):
    """Packages unpacked under FEDMRI_DEBIAN_ROOT: their files are read from there; a brain-only copy
    goes to the skull-stripped site only; a missing package is a note on stderr and the sites are
    written from the rest."""
    root = tmp_path / "debian"
    head = np.zeros((40, 40, 6), dtype=np.float32)
    head[8:32, 6:34] = 50.0
    head[14:26, 12:28] = 100.0  # the "brain"
    templates = root / "usr/share/mricron/templates"
    _nifti(templates / "head.nii.gz", head)
    _nifti(templates / "brain.nii.gz", np.where(head == 100.0, head, 0.0))
    monkeypatch.setenv("FEDMRI_DEBIAN_ROOT", str(root))
    scan = realism.RealVolume("mricron-data", "head.nii.gz", 6.0, False, (1, 5), contrast="x", licence="y")
    volumes = {
        "head": scan,
        "brain": dataclasses.replace(scan, path="brain.nii.gz", skull_stripped=True, stripped_from="head"),
        "absent": dataclasses.replace(scan, package="insighttoolkit5-examples"),
    }
    assert realism.read_real(volumes["head"]).shape == (4, 40, 40)
    config = realism.write_real_sites(tiny_config(), tmp_path / "real", volumes)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "insighttoolkit5-examples is not installed" in err[0] and "absent" in err[0]
    written = {site["name"]: sorted(p.name for p in Path(site["source"]["root"]).iterdir())
               for site in config["sites"]}  # fmt: skip
    assert written == {"fastmri": ["head"], "brats": ["brain"]}
    # without the whole-head volume in the set, a whole-head site is tested on the brain-only copy
    assert realism_sites.tested_on(volumes["brain"], False, {"brain": volumes["brain"]})
    assert not realism_sites.tested_on(volumes["head"], True, volumes)


def _installed(package: str) -> bool:
    return realism_debian.installed_folder(package).is_dir()


@pytest.mark.skipif(
    not all(_installed(p) for p in realism_debian.DEBIAN_FOLDERS),
    reason=f"Debian packages not installed: {realism_debian.INSTALL} (or FEDMRI_DEBIAN_ROOT)",
)
def test_the_debian_volumes_read_with_their_shapes_and_pixel_sizes():
    import nibabel as nib

    # (slices used, rows, columns, header pixel size in mm) as the packages ship them
    expected = {"colin27": (11, 181, 217, 1.0), "colin27_brain": (11, 181, 217, 1.0),
                "kmeans_t1": (12, 128, 128, 2.0), "kmeans_t1_brain": (12, 128, 128, 2.0)}  # fmt: skip
    assert sorted(DEBIAN) == sorted(expected)
    data = {}
    for name, (slices, rows, cols, mm) in expected.items():
        volume = realism.TEST_VOLUMES[name]
        data[name] = realism.read_real(volume)
        assert data[name].shape == (slices, rows, cols) and data[name].max() > 0, name
        path = realism.package_folder(volume.package) / volume.path
        zooms = nib.load(path).header.get_zooms()
        assert zooms[:2] == (mm, mm) and volume.pixel_mm == mm and volume.stored == (rows, cols), name
    # the brain-only copies: the same scan, less of it (no scalp, skull or face)
    for brain, whole in (("colin27_brain", "colin27"), ("kmeans_t1_brain", "kmeans_t1")):
        inside = data[brain] > 0
        assert inside.sum() < 0.7 * (data[whole] > 0).sum(), brain
    kept = data["kmeans_t1_brain"] > 0
    assert np.array_equal(data["kmeans_t1_brain"][kept], data["kmeans_t1"][kept])  # masked, not changed


@pytest.mark.skipif(
    not _installed("insighttoolkit5-examples"),
    reason="Debian package insighttoolkit5-examples not installed: apt-get install insighttoolkit5-examples",
)
def test_itks_complex_brain_slice_is_brainwebs_simulated_pd_slice():
    """Why itkBrainSliceComplex*.mha is not a test volume: its magnitude is the BrainWeb PD slice."""
    from PIL import Image

    folder = realism.package_folder("insighttoolkit5-examples")
    magnitude, header = realism_debian.read_metaimage(folder / "itkBrainSliceComplexMagnitude.mha")
    pd = np.asarray(Image.open(folder / "BrainProtonDensitySlice.png"), dtype=np.float64).T  # x first
    assert magnitude.shape == pd.shape == (181, 217) and header["ElementSpacing"] == "1 1"
    assert np.corrcoef(magnitude.ravel(), pd.ravel())[0, 1] > 0.95
