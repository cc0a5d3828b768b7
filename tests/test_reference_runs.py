"""Guards every number a run leaves behind against the recorded reference fingerprints.

Re-runs the tiny reference configs of :mod:`tests.reference_runs` (every algorithm and option variant in
this process; both layouts of train_multi_gpu.py on two CPU processes) and compares their fingerprints
with ``tests/data/reference_runs.json`` bit for bit. Bitwise equality depends on the torch version, the
CPU's vector capability and the thread count, so a test skips, saying what differs, when the recorded
environment is not this one. Record again with ``python -m tests.reference_runs record``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests import reference_runs

STORED = json.loads(reference_runs.REFERENCE.read_text())
IN_PROCESS = list(reference_runs.reference_configs(Path("unused")))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One directory for every run of this file, so the synthetic data cache is generated once; and
    one torch thread while they run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield tmp_path_factory.mktemp("reference_runs")
    finally:
        torch.set_num_threads(threads)


def _same_environment() -> None:
    current, stored = reference_runs.environment(), STORED["environment"]
    differing = [
        f"{k}: recorded {stored.get(k)!r}, here {current.get(k)!r}"
        for k in sorted(set(current) | set(stored))
        if current.get(k) != stored.get(k)
    ]
    if differing:
        pytest.skip("bitwise references were recorded elsewhere (" + "; ".join(differing) + ")")


def _check(found_runs: dict[str, dict[str, str]]) -> None:
    diff = reference_runs.differences({"runs": found_runs}, STORED)
    assert diff == [], "fingerprints differ from tests/data/reference_runs.json:\n" + "\n".join(diff)


@pytest.mark.slow  # together about 40 s at one thread
@pytest.mark.parametrize("name", IN_PROCESS)
def test_in_process_run_matches_reference(workdir, name):
    _same_environment()
    data = reference_runs.reference_configs(workdir)[name]
    _check({name: reference_runs.run_in_process(workdir, name, data)})


@pytest.mark.slow
def test_ddp_runs_match_reference(workdir):
    _same_environment()
    configs = reference_runs.ddp_configs(workdir)
    _check({name: reference_runs.run_ddp(workdir, name, data) for name, data in configs.items()})


def test_every_reference_run_is_recorded():
    names = [*IN_PROCESS, *reference_runs.ddp_configs(Path("unused"))]
    missing = [n for n in names if n not in STORED["runs"]]
    assert not missing, f"no recorded fingerprints for {missing}"
