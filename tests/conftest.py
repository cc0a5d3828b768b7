"""Shared fixtures: tiny federations that train in seconds on the CPU."""

from __future__ import annotations

import os

# Tiny tensors: one thread per process is faster than two fighting over a shared CPU, and the
# subprocesses the tests start inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def tiny_config_dict(tmp_path: Path, *, sites: int = 2, rounds: int = 2, algorithm: str = "fedmri") -> dict:
    """A 2-site, 2-round federation on 32x32 synthetic images with a 2-pool, 4-channel U-Net."""
    profiles = [
        ("fastmri", "uniform_1d", 3),
        ("brats", "random_1d", 4),
        ("sms", "radial_2d", 4),
        ("umr", "random_2d", 4),
    ]
    site_list = []
    for name, mask, accel in profiles[:sites]:
        site_list.append(
            {
                "name": name,
                "source": {
                    "kind": "synthetic",
                    "profile": name,
                    "size": 32,
                    "subjects": {"train": 2, "val": 1, "test": 1},
                    "slices_per_subject": 3,
                    "contrasts": ["t1"],
                },
                "mask": {"kind": mask, "acceleration": accel},
                "batch_size": 2,
            }
        )
    return {
        "name": "tiny",
        "seed": 0,
        "output_dir": str(tmp_path / "runs"),
        "data": {"cache_dir": str(tmp_path / "cache")},
        "model": {"chans": 4, "num_pool_layers": 2},
        "sites": site_list,
        "fl": {"algorithm": algorithm, "rounds": rounds, "local_epochs": 1},
        "optim": {"lr": 1e-3},
        "trainer": {"accelerator": "cpu", "precision": "32-true"},
    }


@pytest.fixture
def tiny_config(tmp_path):
    """Factory: ``tiny_config(**overrides)`` -> validated Config of a tiny federation."""
    from config import validate_config

    def make(**kwargs):
        return validate_config(copy.deepcopy(tiny_config_dict(tmp_path, **kwargs)))

    return make


@pytest.fixture
def tiny_config_file(tmp_path):
    """Factory: writes the tiny federation's YAML and returns its path."""

    def make(**kwargs) -> Path:
        path = tmp_path / "tiny.yaml"
        path.write_text(yaml.safe_dump(tiny_config_dict(tmp_path, **kwargs)))
        return path

    return make
