"""Shared fixtures: tiny federations that train in seconds on the CPU."""

from __future__ import annotations

import os

# Tiny tensors: one thread per process is faster than two fighting over a shared CPU, and the
# subprocesses the tests start inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

WORKER_MEMORY = 3 * 2**30  # a worker's peak with the subprocesses it starts (DDP, Flower), with headroom
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # "<quota> <period>" or "max <period>" (cgroup v2)
MEMINFO = Path("/proc/meminfo")


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), fewer when a cgroup quota allows less."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return cpus


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (the default, see pyproject.toml): one worker per usable CPU, as many as memory
    allows (``WORKER_MEMORY`` each). ``PYTEST_XDIST_AUTO_NUM_WORKERS`` overrides."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # pytest-xdist's own hook reads it
    cpus, available = usable_cpus(), available_memory()
    return cpus if available is None else max(1, min(cpus, available // WORKER_MEMORY))


def pytest_collection_modifyitems(config, items):
    """The files with ``slow`` tests (whole runs through the command line or several processes) first,
    each file's tests in their order: the longest work units start early and the workers end together.
    ``--no-loadscope-reorder`` (pyproject.toml) keeps this order; xdist would otherwise send the files with
    the most tests first, which leaves the long files of a few end-to-end tests for last."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: the rest keeps its order


def available_memory() -> int | None:
    """Bytes of memory available to new processes (``MemAvailable``: free plus reclaimable cache), or
    None where ``/proc/meminfo`` does not say."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


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
    from assembly.config import validate_config

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


@contextlib.contextmanager
def run_figures_undrawn() -> Iterator[list[str]]:
    """While inside: a run's PNG figures (each site's reconstruction, the validation curves, FedMRI's
    term) are left undrawn, their paths listed instead. For tests that check a run's numbers only:
    drawing the figures takes more than half of a tiny run's time. The figures themselves are checked in
    tests/utils/test_figures*.py and by the runs that leave them drawn (tests/commands/test_train_cli.py,
    tests/deploy/test_flower_deployment.py among them)."""
    import fl.reporter

    asked: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        for name in ("reconstruction_row", "metric_curves", "contrastive_diagnostics"):
            patch.setattr(fl.reporter, name, lambda path, *args, **kwargs: asked.append(str(path)))
        yield asked


@pytest.fixture
def without_run_figures():
    """:func:`run_figures_undrawn` for one test: the paths of the figures its runs asked for."""
    with run_figures_undrawn() as asked:
        yield asked


def train_at_one_thread(*args: str) -> int:
    """``train.py``'s entry point in this process at one torch thread, as the processes the tests start
    run (``OMP_NUM_THREADS=1``): float reductions depend on the thread count, so the run is bit for bit
    that of ``python train.py`` in a process of its own, without the seconds of starting one."""
    import torch

    import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train.main([str(a) for a in args])
    finally:
        torch.set_num_threads(threads)


def save_hand_round(run, path) -> None:
    """Save ``run``'s checkpoint after a round the test trained by hand (``run.rounds.round``), outside
    the loop: the loop has counted no completed round, so the checkpoint's best entries say round 0, as
    the whole-checkpoint check on loading requires; the models and algorithm state are as trained."""
    import torch

    from utils.checkpoint import CHECKSUM_KEY, save_checkpoint

    run.save(path)
    ckpt = torch.load(path, weights_only=True)
    for best in ckpt["best"].values():
        best["round"] = 0
    save_checkpoint({k: v for k, v in ckpt.items() if k != CHECKSUM_KEY}, path)
