"""How many pytest-xdist workers ``-n auto`` starts (tests/conftest.py): CPUs, cgroup quota, memory."""

from __future__ import annotations

import os

import pytest

from tests import conftest

GiB = 2**30


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """A machine of 8 CPUs in the affinity mask, no cgroup quota file and 64 GiB available."""
    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(conftest, "CGROUP_CPU_MAX", tmp_path / "cpu.max")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(
        f"MemTotal: {128 * GiB // 1024} kB\nMemFree: 1024 kB\nMemAvailable: {64 * GiB // 1024} kB\n"
    )
    monkeypatch.setattr(conftest, "MEMINFO", meminfo)
    return tmp_path


def test_one_worker_per_cpu_of_the_affinity_mask(machine):
    assert conftest.usable_cpus() == 8
    assert conftest.pytest_xdist_auto_num_workers(None) == 8


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("200000 100000\n", 2), ("50000 100000\n", 1), ("max 100000\n", 8), ("garbage\n", 8)],
)
def test_a_cgroup_quota_caps_the_workers(machine, cpu_max, expected):
    (machine / "cpu.max").write_text(cpu_max)
    assert conftest.usable_cpus() == expected


def test_memory_caps_the_workers_by_what_is_available_not_what_is_free(machine):
    (machine / "meminfo").write_text(f"MemFree: 1024 kB\nMemAvailable: {7 * GiB // 1024} kB\n")
    assert conftest.pytest_xdist_auto_num_workers(None) == 7 * GiB // conftest.WORKER_MEMORY
    (machine / "meminfo").write_text("MemFree: 1024 kB\nMemAvailable: 1024 kB\n")
    assert conftest.pytest_xdist_auto_num_workers(None) == 1
    (machine / "meminfo").write_text("MemTotal: 1024 kB\n")  # no MemAvailable: CPUs alone
    assert conftest.pytest_xdist_auto_num_workers(None) == 8


def test_the_environment_variable_defers_to_pytest_xdist(machine, monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "3")
    assert conftest.pytest_xdist_auto_num_workers(None) is None
