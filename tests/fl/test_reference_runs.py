"""Guards every number a run leaves behind against the recorded reference fingerprints.

Re-runs the tiny reference configs of :mod:`tests.fixtures.reference_runs` (every algorithm and option
variant in this process; both layouts of train_multi_gpu.py on two CPU processes) and compares their
fingerprints with ``tests/fixtures/reference_runs.json`` bit for bit. Bitwise equality depends on the torch
version, the CPU (its vector capability, model and cache) and the thread count, so the file keeps one
recording per environment and a test skips, saying what differs, when none was recorded in this one.
Record this environment with ``python -m tests.fixtures.reference_runs record``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.fixtures import reference_runs
from utils.hardware import cache_sizes, cpu_identity, cpu_summary

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


def _recording() -> dict:
    """This environment's recording; skips, saying what differs, when there is none."""
    env = reference_runs.environment()
    recording = reference_runs.recording_for(STORED, env)
    if recording is None:
        pytest.skip("bitwise references were recorded elsewhere ("
                    + reference_runs.environment_differences(STORED, env) + ")")  # fmt: skip
    return recording


def _check(recording: dict, found_runs: dict[str, dict[str, str]]) -> None:
    diff = reference_runs.differences({"runs": found_runs}, recording)
    assert diff == [], "fingerprints differ from tests/fixtures/reference_runs.json:\n" + "\n".join(diff)


@pytest.mark.slow  # together about 40 s at one thread
@pytest.mark.parametrize("name", IN_PROCESS)
def test_in_process_run_matches_reference(workdir, name, without_run_figures):
    # The fingerprints hold no figure: the PNGs are left undrawn (more than half of a tiny run's time).
    recording = _recording()
    if name not in recording["runs"] and name in reference_runs.ALGORITHMS:
        pytest.skip(f"{name}: a newly registered algorithm with no fingerprint recorded here yet "
                    "(python -m tests.fixtures.reference_runs record)")  # fmt: skip
    data = reference_runs.reference_configs(workdir)[name]
    _check(recording, {name: reference_runs.run_in_process(workdir, name, data)})
    assert without_run_figures  # the figures were asked for (and left undrawn)


@pytest.mark.slow
def test_ddp_runs_match_reference(workdir):
    recording = _recording()
    configs = reference_runs.ddp_configs(workdir)
    _check(recording, {name: reference_runs.run_ddp(workdir, name, data) for name, data in configs.items()})


def test_every_reference_run_is_recorded():
    unused = Path("unused")
    names = [*IN_PROCESS, *reference_runs.ddp_configs(unused), *reference_runs.flower_configs(unused)]
    assert STORED["recordings"], "no recording in tests/fixtures/reference_runs.json"
    for recording in STORED["recordings"]:
        # An algorithm registered after a recording has none there until the next recording; every
        # option variant and transport run must have one.
        missing = [n for n in names if n not in recording["runs"] and n not in reference_runs.ALGORITHMS]
        assert not missing, f"no recorded fingerprints for {missing} in {recording['environment']}"
        assert len(set(recording["runs"]) & set(reference_runs.ALGORITHMS)) >= 15, "algorithms unrecorded"


def test_environment_tells_cpus_of_one_capability_apart(tmp_path):
    """Two AVX-512 CPUs that differ in model, cache or AMX are different environments."""
    intel = (
        "vendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n"
        "model name\t: Intel(R) Xeon(R) Platinum\nstepping\t: 8\ncache size\t: 107520 KB\n"
        "flags\t\t: fpu avx2 fma avx512f avx512bw avx512vl avx512_bf16 amx_tile amx_bf16\n\n"
        "vendor_id\t: GenuineIntel\nmodel name\t: other\n"
    )
    amd = (
        "vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n"
        "cache size\t: 1024 KB\nflags\t\t: fpu avx2 fma avx512f avx512bw avx512vl avx512_bf16\n"
    )
    assert cpu_identity(intel, caches="L1 48K, L2 2048K, L3 107520K") == (
        "GenuineIntel; Intel(R) Xeon(R) Platinum; family/model/stepping 6/143/8; caches L1 48K, L2 2048K, "
        "L3 107520K; avx2 fma avx512f avx512bw avx512vl avx512_bf16 amx_tile amx_bf16"
    )
    assert cpu_identity(amd, caches="") != cpu_identity(intel, caches="")
    assert "caches 1024 KB" in cpu_identity(amd, caches="")  # no sysfs: cpuinfo's size
    unknown = "?; ?; family/model/stepping ?/?/?; caches ?; no vector flags"
    assert cpu_identity("", caches="") == unknown
    # the caches are read from sysfs: data and unified ones, by level
    caches = ((1, "Data", "32K"), (1, "Instruction", "64K"), (2, "Unified", "512K"), (3, "Unified", "8192K"))
    for level, kind, size in caches:
        index = tmp_path / f"index{level}{kind[0]}"
        index.mkdir()
        (index / "level").write_text(f"{level}\n")
        (index / "type").write_text(f"{kind}\n")
        (index / "size").write_text(f"{size}\n")
    assert cache_sizes(tmp_path) == "L1 32K, L2 512K, L3 8192K"


def test_cpu_summary_names_the_model_and_its_widest_vector_tier():
    def identity(flags: str) -> str:
        return f"AuthenticAMD; AMD EPYC; family/model/stepping 25/17/1; caches L1 32K; {flags}"

    assert cpu_summary(identity("avx2 fma")) == "AMD EPYC, AVX2"
    assert cpu_summary(identity("avx2 fma avx512f avx512bw")) == "AMD EPYC, AVX-512"
    assert cpu_summary(identity("avx2 avx512f avx512_bf16")) == "AMD EPYC, AVX-512 BF16"
    assert cpu_summary(identity("avx2 avx512f avx512_bf16 amx_tile amx_bf16")) == "AMD EPYC, AMX"
    assert cpu_summary(identity("no vector flags")) == "AMD EPYC, no AVX2"
    assert cpu_summary("arm") == "arm"  # another platform's processor string is kept as it is


def test_recording_is_replaced_per_environment():
    a, b = {"cpu": "a", "threads": 1}, {"cpu": "b", "threads": 1}
    stored = {"recordings": [{"environment": a, "runs": {"x": {"k": "1"}, "y": {"k": "2"}}}]}
    found = {"environment": b, "runs": {"x": {"k": "3"}}}
    both = reference_runs.merge_recording(stored, found, partial=False)
    assert reference_runs.recording_for(both, a)["runs"] == {"x": {"k": "1"}, "y": {"k": "2"}}
    assert reference_runs.recording_for(both, b)["runs"] == {"x": {"k": "3"}}
    again = reference_runs.merge_recording(both, {"environment": a, "runs": {"x": {"k": "4"}}}, partial=True)
    assert reference_runs.recording_for(again, a)["runs"] == {"x": {"k": "4"}, "y": {"k": "2"}}
    assert len(again["recordings"]) == 2
    differing = reference_runs.environment_differences(again, {"cpu": "c", "threads": 1})
    assert "cpu: recorded 'a', here 'c'" in differing
