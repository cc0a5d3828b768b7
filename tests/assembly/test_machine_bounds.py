"""Bounds from the machine and degenerate data: refused at setup in one line, before anything is allocated
or trained; and the command line's stderr is that one line."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
import yaml

import data.sources.synthetic as synthetic
from assembly import build
from assembly.build import Builder
from assembly.config import load_config
from data.options import SiteOptions
from data.site import SiteDataModule
from models.unet import Unet, activation_bytes
from tests.conftest import ROOT, tiny_config_dict
from tests.fixtures.mri_files import write_fastmri
from utils.errors import UserError


@pytest.fixture
def base(tmp_path) -> dict:
    return tiny_config_dict(tmp_path)


def _prepare(base: dict, *overrides: str) -> None:
    Builder(load_config(overrides=list(overrides), base=base), log=lambda _: None).prepare_data()


def test_a_network_too_deep_for_a_sites_images_names_the_key_and_the_site(base) -> None:
    with pytest.raises(UserError) as info:
        _prepare(base, "model.num_pool_layers=6")
    message = str(info.value)
    assert message.startswith("model.num_pool_layers: 6 pools halve site fastmri's 32 x 32 images to 0 x 0")
    assert "at most 4 pools" in message
    with pytest.raises(UserError, match="model.num_pool_layers: 5 .* 1 x 1"):
        _prepare(base, "model.num_pool_layers=5")
    _prepare(base, "model.num_pool_layers=4")  # a 2 x 2 bottleneck trains
    Unet(chans=2, num_pool_layers=4)(torch.ones(1, 1, 32, 32))


def test_synthetic_volumes_that_cannot_fit_are_refused_before_generating(base, tmp_path, monkeypatch) -> None:
    with pytest.raises(UserError, match=r"sites\.fastmri\.source\.subjects: the index of 1000000002 volumes"):
        _prepare(base, "sites.0.source.subjects.train=1000000000")
    with pytest.raises(UserError, match=r"sites\.0\.source\.size: must be <= 1024 \(got 1000000\)"):
        _prepare(base, "sites.0.source.size=1000000")  # minutes of simulation for nothing
    monkeypatch.setattr(synthetic, "available_memory", lambda: 10 * 2**20)
    with pytest.raises(UserError, match=r"sites\.fastmri\.source\.size: one subject's volumes .* = 12\.6 MB"):
        _prepare(base, "sites.0.source.size=1024")
    assert not (tmp_path / "cache" / "volumes").exists()  # nothing generated


def test_the_volume_cache_must_fit_the_free_disk(base, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(synthetic, "free_disk", lambda path: 10_000)
    with pytest.raises(UserError) as info:
        _prepare(base)
    message = str(info.value)
    assert "4 subjects x 1 contrasts x 3 slices x 32 x 32 x 4 bytes = 49.2 kB" in message
    assert "data.cache_dir (10.0 kB" in message
    monkeypatch.setattr(synthetic, "free_disk", lambda path: 60_000)
    _prepare(base)
    monkeypatch.setattr(synthetic, "free_disk", lambda path: 0)  # cached: what the cache holds counts
    _prepare(base)


def test_a_batch_whose_activations_exceed_the_memory_is_refused(base, monkeypatch) -> None:
    need = activation_bytes(4, 2, 32, 32, 6)  # the batch is at most the 6 training slices
    assert need == 4 * 6 * (16 * 4 * 1024 + 8 * 4 * 1024 + 6 * 4 * 256)
    monkeypatch.setattr(build, "available_memory", lambda: need - 1)
    with pytest.raises(
        UserError, match=r"sites\.fastmri\.batch_size: a training step of 6 slices of 32 x 32"
    ):
        _prepare(base, "sites.0.batch_size=100000")
    monkeypatch.setattr(build, "available_memory", lambda: need)
    _prepare(base, "sites.0.batch_size=100000")


def test_the_activation_estimate_is_near_what_autograd_saves() -> None:
    model, x = Unet(chans=4, num_pool_layers=2), torch.randn(4, 1, 32, 32)
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved[tensor.data_ptr()] = tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    assert 0.5 < sum(saved.values()) / activation_bytes(4, 2, 32, 32, 4) < 1.5


# -- degenerate data -------------------------------------------------------------------------------
def _folder_site(tmp_path, volumes: dict[str, np.ndarray], **mask) -> SiteDataModule:
    root = tmp_path / "site"
    for subject, array in volumes.items():
        (root / subject).mkdir(parents=True)
        np.save(root / subject / "t1.npy", array)
    site = SiteOptions.model_validate(
        {
            "name": "f",
            "source": {"kind": "folder", "root": str(root)},
            "mask": mask or {"kind": "uniform_1d", "acceleration": 2},
        }
    )
    return SiteDataModule(site, seed=0, cache_dir=tmp_path / "cache")


def _images(n: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {f"s{i}": rng.random((3, 16, 16), dtype=np.float32) + 0.1 for i in range(n)}


@pytest.mark.parametrize(
    "array, expected",
    [
        (np.zeros((3, 16, 16), np.float32), "is constant (value 0)"),
        (np.full((3, 16, 16), 7.0, np.float32), "is constant (value 7)"),
        (np.full((3, 16, 16), 1e37, np.float32), "overflow float32"),
        (np.where(np.eye(16, dtype=bool), np.inf, 1).astype(np.float32)[None].repeat(3, 0), "infinite"),
    ],
)
def test_degenerate_volumes_are_refused_at_setup_naming_them(tmp_path, array, expected) -> None:
    volumes = _images()
    volumes["s4"] = array
    module = _folder_site(tmp_path, volumes)
    with pytest.raises(UserError) as info:
        module.setup()
    message = str(info.value)
    assert "\n" not in message and "s4" in message and expected in message, message


def test_a_bad_slice_read_later_is_one_line_naming_it(tmp_path) -> None:
    volumes = _images()
    volumes["s2"][0] = 1e37  # slice 0 overflows; the middle slice (1) checked at setup is fine
    module = _folder_site(tmp_path, volumes)
    module.setup()
    dataset = next(d for d in module.datasets.values() if any(v.name.startswith("s2") for v in d.volumes))
    index = next(i for i, (v, s) in enumerate(dataset.index) if dataset.volumes[v].name.startswith("s2"))
    overflow = r"volume s2.*slice 0: its values \(largest magnitude 1e\+37\) overflow float32"
    with pytest.raises(UserError, match=overflow):
        dataset[index]


def test_multicoil_kspace_with_no_coils_is_refused_naming_the_file(tmp_path) -> None:
    root = tmp_path / "knee"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        write_fastmri(root / f"file{i}.h5", rng=rng, coils=2)
    with h5py.File(root / "file1.h5", "a") as handle:
        del handle["kspace"]
        handle["kspace"] = np.zeros((3, 0, 40, 36), np.complex64)
    site = SiteOptions.model_validate(
        {"name": "k", "source": {"kind": "fastmri", "root": str(root)}, "mask": {"kind": "uniform_1d"}}
    )
    with pytest.raises(UserError) as info:
        SiteDataModule(site, seed=0, cache_dir=tmp_path / "cache").setup()
    message = str(info.value)
    assert "\n" not in message and "file1.h5" in message and "(3, 0, 40, 36)" in message, message


def test_a_truncated_matlab_73_mask_file_is_one_line(tmp_path) -> None:
    path = tmp_path / "mask.mat"
    with h5py.File(path, "w", userblock_size=512) as handle:  # MATLAB v7.3: HDF5 after a 512-byte header
        handle["mask"] = np.ones((16, 16), np.uint8)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116, b" ") + b"\0" * 8 + b"\x00\x02IM"
    raw = bytearray(path.read_bytes())
    raw[: len(header)] = header
    path.write_bytes(bytes(raw))
    site = {"name": "m", "source": {"kind": "synthetic", "profile": "fastmri", "size": 32}}
    SiteOptions.model_validate({**site, "mask": {"kind": "file", "path": str(path)}})  # the whole file reads
    path.write_bytes(bytes(raw[: len(raw) // 2]))
    truncated = tmp_path / "truncated.mat"
    path.rename(truncated)
    with pytest.raises(Exception) as info:
        SiteOptions.model_validate({**site, "mask": {"kind": "file", "path": str(truncated)}})
    message = str(info.value)
    assert "not a readable MATLAB v7.3 file" in message and str(truncated) in message


# -- the command line ------------------------------------------------------------------------------
def _train(tmp_path, *overrides: str) -> subprocess.CompletedProcess:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path)))
    return subprocess.run(
        [sys.executable, "train.py", "--config", str(config), *overrides],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_bad_input_on_the_command_line_is_exactly_one_line_on_stderr(tmp_path) -> None:
    """A corrupt NIfTI, an h5 without k-space, a DICOM RescaleSlope 'abc' and a GPU this machine lacks."""
    import pydicom

    from tests.fixtures.mri_files import phantom, write_brats, write_dicom_series

    write_brats(tmp_path / "brats", ["S0", "S1", "S2", "S3"], rng=np.random.default_rng(1), shape=(16, 16, 4))
    nifti = tmp_path / "brats" / "S1" / "S1_t1.nii.gz"
    nifti.write_bytes(nifti.read_bytes()[:100])
    (tmp_path / "knee").mkdir()
    with h5py.File(tmp_path / "knee" / "a.h5", "w") as handle:
        handle["image"] = np.ones((2, 8, 8), np.float32)
    rng = np.random.default_rng(2)
    for p in range(3):
        volume = (phantom(rng, (3, 16, 16)) * 100).astype(np.uint16)
        write_dicom_series(tmp_path / "dcm" / f"p{p}", volume, patient=f"p{p}", description="T1", rng=rng)
    first = tmp_path / "dcm" / "p1" / "IM_0001.dcm"
    ds = pydicom.dcmread(first)
    ds.add_new(0x00281053, "LO", "abc")  # RescaleSlope that is not a number
    ds.save_as(first)
    cases = {
        "nifti": (["sites.0.source={kind: brats, root: " + str(tmp_path / "brats") + "}"], "S1_t1.nii.gz"),
        "h5": (["sites.0.source={kind: fastmri, root: " + str(tmp_path / "knee") + "}"], "a.h5"),
        "dicom": (["sites.0.source={kind: dicom, root: " + str(tmp_path / "dcm") + "}"], "IM_0001.dcm"),
        "gpu": (["trainer.accelerator=gpu"], "trainer.accelerator"),
    }
    for name, (overrides, expected) in cases.items():
        if name == "gpu" and torch.cuda.is_available():
            continue
        result = _train(tmp_path, *overrides)
        lines = result.stderr.splitlines()
        assert result.returncode == 2 and len(lines) == 1, (name, result.stderr)
        assert lines[0].startswith("error: ") and expected in lines[0], (name, lines[0])


# -- Flower site checkpoints -----------------------------------------------------------------------
def test_a_flower_site_checkpoint_is_checked_like_the_round_loops(tmp_path) -> None:
    """A site checkpoint of another config is refused naming the keys; one whose tensors were reshaped, or
    whose round is not a count, is refused naming the key; its own loads."""
    from deploy.client_app import _worker
    from utils.checkpoint import save_checkpoint

    data = tiny_config_dict(tmp_path)
    data["sites"], data["name"] = data["sites"][:1], "fastmri"
    worker = _worker(load_config(overrides=[], base=data), log=lambda _: None)
    worker._save(worker.last)
    state = torch.load(worker.last, weights_only=True)
    worker._load(worker.last)
    other = load_config(overrides=["model.chans=8"], base=data).to_dict()
    save_checkpoint({**state, "config": other, "fingerprint": None}, worker.last)
    with pytest.raises(UserError, match=r"belongs to another config.*model\.chans \(8 -> 4\)"):
        worker._load(worker.last)
    model = state["sites"]["fastmri"]["model"]
    name = next(iter(model))
    reshaped = {**model, name: torch.zeros(3)}
    sites = {"fastmri": {**state["sites"]["fastmri"], "model": reshaped}}
    save_checkpoint({**state, "sites": sites}, worker.last)
    with pytest.raises(UserError, match=rf"does not fit the run .*{name}"):
        worker._load(worker.last)
    save_checkpoint({**state, "round": "two"}, worker.last)
    with pytest.raises(UserError, match=r"does not fit the run \(round: expected integer"):
        worker._load(worker.last)
