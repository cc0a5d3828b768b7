"""What a site's files get told: a valid 4D NIfTI is no corrupt file but a series to choose from
(``source.volume_index``), and "no volumes found" lists what the search saw instead."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import TypeAdapter

from data.sources import SourceContext, SourceOptions, build_source
from tests.fixtures.mri_files import phantom, write_ixi, write_nifti
from utils.errors import UserError

OPTIONS = TypeAdapter(SourceOptions)


def make(tmp_path, **options):
    source = build_source(OPTIONS.validate_python(options), SourceContext("site", 0, tmp_path / "cache"))
    source.prepare()
    return source


@pytest.fixture
def series(tmp_path):
    """Three subjects, each one 4D NIfTI of 5 volumes (an fMRI run): s1/bold.nii.gz ..."""
    rng = np.random.default_rng(0)
    written = {}
    for subject in ("s1", "s2", "s3"):
        data = np.stack([phantom(rng, (8, 16, 16)).transpose(2, 1, 0) for _ in range(5)], axis=-1)
        written[subject] = data.astype(np.float32)
        write_nifti(tmp_path / "data" / subject / "bold.nii.gz", written[subject])
    return tmp_path / "data", written


def test_a_4d_file_is_a_series_to_choose_from_not_a_corrupt_file(tmp_path, series):
    root, _ = series
    with pytest.raises(UserError) as caught:
        make(tmp_path, kind="folder", root=str(root))
    message = str(caught.value)
    assert message == (
        f"site 'site': {root}/s1/bold.nii.gz: a 4D series of 5 volumes (shape (16, 16, 8, 5)), not one 3D "
        "volume; choose one with source.volume_index: 0 to 4 (the same for every file of the site)"
    )
    assert "corrupt" not in message


def test_volume_index_reads_that_volume(tmp_path, series):
    root, written = series
    source = make(tmp_path, kind="folder", root=str(root), volume_index=3)
    volume = next(v for split in ("train", "val", "test") for v in source.volumes(split))
    subject = volume.subject
    k = 4
    expected = np.flipud(np.fliplr(written[subject][:, :, k, 3].T))
    np.testing.assert_array_equal(source.read_slice(volume, k), expected)
    with pytest.raises(UserError, match=r"has no volume 7 \(source.volume_index\)"):
        make(tmp_path / "other", kind="folder", root=str(root), volume_index=7)


def test_no_volumes_found_lists_the_contrasts_it_left_out(tmp_path):
    root = tmp_path / "ixi"
    write_ixi(root, ["IXI002-Guys-0828", "IXI012-HH-1211"], rng=np.random.default_rng(0), contrasts=("PD",))
    with pytest.raises(UserError) as caught:
        make(tmp_path, kind="ixi", root=str(root), contrasts=["t1", "t2"])
    assert str(caught.value).endswith(
        "; found contrast(s) pd of subject(s) IXI002-Guys-0828, IXI012-HH-1211, none of source.contrasts "
        "['t1', 't2']"
    )


def test_no_volumes_found_lists_the_subjects_include_left_out(tmp_path):
    root = tmp_path / "ixi"
    write_ixi(root, ["IXI002-Guys-0828", "IXI012-HH-1211"], rng=np.random.default_rng(0), contrasts=("T1",))
    with pytest.raises(UserError) as caught:
        make(tmp_path, kind="ixi", root=str(root), contrasts=["t1"], include="^IXI9")
    assert "no volumes found under" in str(caught.value) and "with a subject matching include='^IXI9'" in str(
        caught.value
    )
    assert str(caught.value).endswith(
        "; found subject(s) IXI002-Guys-0828, IXI012-HH-1211, none matching include"
    )


def test_no_volumes_found_names_a_few_of_the_files_named_otherwise(tmp_path):
    root = tmp_path / "brats"
    for name in ("notes.txt", "a/scan_01.nii.gz", "b/scan_02.nii.gz", "c/x.nii", "d/y.nii", "e/z.nii"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    with pytest.raises(UserError) as caught:
        make(tmp_path, kind="brats", root=str(root))
    assert str(caught.value).endswith(
        "; found 6 file(s) named otherwise: a/scan_01.nii.gz, b/scan_02.nii.gz, c/x.nii, d/y.nii, e/z.nii, "
        "... (6 in all)"
    )
