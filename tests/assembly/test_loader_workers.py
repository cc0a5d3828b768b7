"""``trainer.num_workers: auto``: the loader workers a machine can run (no warning on a 2-core CPU),
resolved when the loaders are built, and what every config that uses workers asks for."""

import os
from pathlib import Path

import pytest
import yaml

from assembly.build import Builder
from assembly.config import load_config
from utils import hardware
from utils.errors import UserError

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize(
    ("cpus", "cpu_max", "expected"), [(2, None, 2), (16, None, 4), (16, "100000 100000", 1)]
)
def test_auto_is_the_usable_cpus_capped(monkeypatch, tmp_path, cpus, cpu_max, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    quota = tmp_path / "cpu.max"
    if cpu_max:
        quota.write_text(cpu_max)
    monkeypatch.setattr(hardware, "CGROUP_CPU_MAX", quota)
    assert hardware.usable_cpus(quota) == min(cpus, 1 if cpu_max else cpus)
    monkeypatch.setattr(hardware, "usable_cpus", lambda: min(cpus, 1 if cpu_max else cpus))
    assert hardware.loader_workers("auto") == expected
    assert hardware.loader_workers(3) == 3


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_a_config_that_uses_workers_asks_for_auto(path):
    workers = yaml.safe_load(path.read_text()).get("trainer", {}).get("num_workers", 0)
    assert workers in (0, "auto"), (
        f"{path.name}: num_workers {workers}; a fixed count warns on small machines"
    )


def test_the_loaders_get_a_number_and_the_run_keeps_auto(tiny_config_file, monkeypatch):
    monkeypatch.setattr(hardware, "usable_cpus", lambda: 2)
    config = load_config(tiny_config_file(), ["trainer.num_workers=auto"])
    assert config.trainer.num_workers == "auto" and config.to_dict()["trainer"]["num_workers"] == "auto"
    assert Builder(config, log=lambda _: None).data_module(config.sites[0]).num_workers == 2
    with pytest.raises(UserError, match="trainer.num_workers"):
        load_config(tiny_config_file(), ["trainer.num_workers=many"])
    with pytest.raises(UserError, match="trainer.num_workers"):
        load_config(tiny_config_file(), ["trainer.num_workers=-1"])
