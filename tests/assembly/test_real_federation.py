"""A federation of a simulated, a BraTS-format and a fastMRI-format site runs two rounds end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from assembly.build import Builder
from assembly.config import load_config
from assembly.setup import in_process
from tests.conftest import tiny_config_dict
from tests.fixtures.mri_files import write_brats, write_fastmri


@pytest.fixture
def one_thread():
    """32 x 32 tensors: on a busy CPU, waking intra-op threads costs far more than they save."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_simulated_brats_and_fastmri_sites_train_together(tmp_path, one_thread):
    rng = np.random.default_rng(0)
    brats_root, knee_root = tmp_path / "brats", tmp_path / "knee"
    write_brats(brats_root, [f"BraTS19_X_{i}_1" for i in range(5)], rng=rng, shape=(32, 32, 6))
    knee_root.mkdir()
    for i in range(5):
        write_fastmri(knee_root / f"file{i}.h5", rng=rng, slices=2, kspace_shape=(40, 36), recon=(32, 32))

    config = tiny_config_dict(tmp_path, sites=1, rounds=2)
    config["paths"] = {"knee": "/not/yet/set"}
    config["sites"] += [
        {
            "name": "brats",
            "source": {"kind": "brats", "root": str(brats_root), "contrasts": ["t1"], "slices": [1, 4]},
            "mask": {"kind": "random_1d", "acceleration": 4},
            "batch_size": 2,
        },
        {
            "name": "knee",
            "source": {"kind": "fastmri", "root": "${paths.knee}"},
            "mask": {"kind": "equispaced_1d", "acceleration": 4},
            "batch_size": 2,
        },
    ]
    path = tmp_path / "real.yaml"
    path.write_text(json.dumps(config))
    lines: list[str] = []
    results = in_process(Builder(load_config(path, [f"paths.knee={knee_root}"]), log=lines.append)).run()

    assert set(results["sites"]) == {"fastmri", "brats", "knee"}
    assert any("site brats: 9 train / 3 val / 3 test slices (brats" in line for line in lines)
    assert any("site knee: 6 train / 2 val / 2 test slices (fastmri" in line for line in lines)
    for site in results["sites"].values():
        assert site["best_round"] in (1, 2)
        for which in ("model", "zero_filled"):
            assert all(math.isfinite(site[which][k]) for k in ("nmse", "psnr", "ssim"))
        assert site["zero_filled"]["psnr"] > 10
    run = tmp_path / "runs" / "tiny"
    assert (run / "figures" / "knee.png").is_file() and (run / "checkpoints" / "best_brats.ckpt").is_file()
