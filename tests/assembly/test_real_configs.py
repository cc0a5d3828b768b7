"""The shipped real-data configs work on data laid out as the README says, and fail in one line without it."""

from __future__ import annotations

import numpy as np
import pytest

from assembly.config import load_config
from data.site import SiteDataModule
from tests.conftest import ROOT
from tests.fixtures.mri_files import phantom, write_brats, write_dicom_series, write_fastmri, write_ixi
from utils.errors import UserError


def setup_sites(config, tmp_path) -> dict[str, dict[str, int]]:
    counts = {}
    for site in config.sites:
        module = SiteDataModule(site, seed=0, cache_dir=tmp_path / "cache")
        module.setup()
        counts[site.name] = {split: len(d) for split, d in module.datasets.items()}
    return counts


def test_fastmri_knee_config(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "knee"
    root.mkdir()
    for i in range(8):
        acquisition = "CORPD_FBK" if i % 2 else "CORPDFS_FBK"
        write_fastmri(root / f"file{i}.h5", rng=rng, acquisition=acquisition, patient_id=f"p{i}", slices=2)
    config = load_config(ROOT / "configs" / "fastmri_knee.yaml", [f"paths.fastmri_knee={root}"])
    counts = setup_sites(config, tmp_path)
    assert counts == {name: {"train": 4, "val": 2, "test": 2} for name in ("knee_pd", "knee_pdfs")}


def test_brats_config_splits_sites_by_institution(tmp_path):
    rng = np.random.default_rng(1)
    ids = [f"BraTS19_CBICA_A{i}_1" for i in range(3)] + [f"BraTS19_TCIA0{i}_1_1" for i in range(4)]
    write_brats(tmp_path / "brats" / "HGG", ids, rng=rng, shape=(24, 24, 122))
    config = load_config(ROOT / "configs" / "brats.yaml", [f"paths.brats={tmp_path / 'brats'}"])
    counts = setup_sites(config, tmp_path)
    per_volume = 80  # slices 40-119
    assert counts["brats_cbica"] == {s: 2 * per_volume for s in ("train", "val", "test")}
    assert sum(counts["brats_tcia"].values()) == 4 * 2 * per_volume


def test_ixi_config_splits_sites_by_hospital(tmp_path):
    rng = np.random.default_rng(2)
    subjects = [f"IXI{i:03d}-{h}-{i:04d}" for i, h in enumerate(["Guys", "HH", "IOP"] * 3)]
    write_ixi(tmp_path / "ixi", subjects, rng=rng, shape=(20, 20, 3), contrasts=("T1", "T2"))
    config = load_config(ROOT / "configs" / "ixi.yaml", [f"paths.ixi={tmp_path / 'ixi'}"])
    counts = setup_sites(config, tmp_path)
    assert counts == {site: {"train": 6, "val": 6, "test": 6} for site in ("guys", "hh", "iop")}


def test_paper_real_config(tmp_path):
    rng = np.random.default_rng(3)
    for p in range(3):
        for description in ("AX T1", "AX T1 POST", "AX T2", "AX T2 FLAIR"):
            volume = (phantom(rng, (2, 24, 24)) * 500).astype(np.uint16)
            folder = tmp_path / "dicom" / f"p{p}" / description.replace(" ", "_")
            write_dicom_series(folder, volume, patient=f"p{p}", description=description, rng=rng)
    write_brats(tmp_path / "brats", [f"B{i}" for i in range(3)], rng=rng, shape=(20, 20, 42))
    for site in ("sms", "umr"):
        for s in range(3):
            (tmp_path / site / f"s{s}").mkdir(parents=True)
            for contrast in ("t1", "t2"):
                np.save(tmp_path / site / f"s{s}" / f"{contrast}.npy", phantom(rng, (2, 30, 30)))
    overrides = [
        f"paths.fastmri_brain_dicom={tmp_path / 'dicom'}",
        f"paths.brats={tmp_path / 'brats'}",
        f"paths.sms={tmp_path / 'sms'}",
        f"paths.umr={tmp_path / 'umr'}",
    ]
    config = load_config(ROOT / "configs" / "paper_real.yaml", overrides)
    counts = setup_sites(config, tmp_path)
    assert counts["fastmri"] == {s: 4 for s in ("train", "val", "test")}  # T1 and T2 only, 2 slices each
    assert counts["brats"] == {s: 4 for s in ("train", "val", "test")}  # slices 40-41 of t1 and t2
    assert counts["sms"] == counts["umr"] == {s: 4 for s in ("train", "val", "test")}


@pytest.mark.parametrize("name", ["fastmri_knee", "brats", "ixi", "paper_real"])
def test_placeholder_roots_fail_in_one_line(tmp_path, name):
    config = load_config(ROOT / "configs" / f"{name}.yaml", [f"data.cache_dir={tmp_path}"])
    site = config.sites[0]
    with pytest.raises(UserError, match=f"site '{site.name}': source.root .* does not exist") as info:
        SiteDataModule(site, seed=0, cache_dir=tmp_path).setup()
    assert "\n" not in str(info.value)
