"""train_multi_gpu.py on the CPU with gloo, 2 processes: both launch forms, both layouts, equivalence
with the single-process run (MOON's and Ditto's site state included), volumes scored once, resume,
and only rank 0 writing."""

import json
import subprocess
import sys

import pytest
import torch
import yaml

from data.site import volume_shard
from fl.distributed import assign_sites
from tests.conftest import ROOT, tiny_config_dict, train_at_one_thread

pytestmark = pytest.mark.slow


def command(*args, torchrun=False):
    if torchrun:
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "train_multi_gpu.py",
            *args,
        ]
    return [sys.executable, "train_multi_gpu.py", "--devices", "2", *args]


def run(cmd, script="train_multi_gpu.py"):
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def load(run_dir):
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    return ckpt, (run_dir / "metrics.csv").read_text(), json.loads((run_dir / "results.json").read_text())


def same(a, b):
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return set(a) == set(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    data = tiny_config_dict(root, sites=3, rounds=2)
    for site in data["sites"]:
        site["source"]["subjects"] = {"train": 2, "val": 3, "test": 3}  # 3 volumes: 2 on rank 0, 1 on rank 1
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    assert train_at_one_thread("--config", str(path), "name=single") == 0
    return root, path


def test_sites_layout_equals_the_single_process_run_bitwise(workspace):
    root, path = workspace
    proc = run(command("--config", str(path), "name=sites", "fl.parallel=sites"))
    assert "rank 0: fastmri, sms; rank 1: brats" in proc.stdout
    ckpt, metrics, results = load(root / "runs" / "sites")
    ref_ckpt, ref_metrics, ref_results = load(root / "runs" / "single")
    for key in ("format", "global", "sites", "server", "best", "history", "round"):
        assert same(ckpt[key], ref_ckpt[key]), key
    assert metrics == ref_metrics
    assert results | {"name": ""} == ref_results | {"name": ""}
    # Only rank 0 wrote: one TensorBoard file, no repeated metric rows, no stray temporary files.
    run_dir = root / "runs" / "sites"
    assert len(list((run_dir / "tb").glob("events.out.tfevents.*"))) == 1
    rows = metrics.strip().splitlines()
    assert len(rows) == len(set(rows))
    assert not [p for p in run_dir.rglob("*") if p.name.startswith(".") and p.suffix == ".tmp"]
    assert proc.stdout.count("round 2/2") == 1


def test_data_layout_under_torchrun_matches_the_doubled_batch(workspace):
    root, path = workspace
    proc = run(command("--config", str(path), "name=data", "fl.parallel=data", torchrun=True))
    assert "global batch per site" in proc.stdout
    batch4 = [f"sites.{i}.batch_size=4" for i in range(3)]
    assert train_at_one_thread("--config", str(path), "name=single4", *batch4) == 0
    ckpt, _, results = load(root / "runs" / "data")
    ref_ckpt, _, ref_results = load(root / "runs" / "single4")
    for site, state in ckpt["sites"].items():
        for name, tensor in state["model"].items():
            ref = ref_ckpt["sites"][site]["model"][name]
            assert torch.allclose(tensor, ref, rtol=1e-3, atol=1e-5), (site, name)
    for site, values in results["sites"].items():
        assert values["model"]["volumes"] == 3  # every test volume scored, once
        for metric in ("nmse", "psnr", "ssim"):
            assert values["model"][metric] == pytest.approx(
                ref_results["sites"][site]["model"][metric], abs=1e-4
            )


def test_resume_under_ddp_continues_exactly(workspace):
    root, path = workspace
    run(command("--config", str(path), "name=resumed", "fl.rounds=1"))
    run(command("--resume", str(root / "runs" / "resumed"), "fl.rounds=2", "--force"))
    ckpt, metrics, _ = load(root / "runs" / "resumed")
    ref_ckpt, ref_metrics, _ = load(root / "runs" / "single")
    for key in ("global", "sites", "server", "best"):
        assert same(ckpt[key], ref_ckpt[key]), key
    assert metrics == ref_metrics


@pytest.mark.parametrize(
    "algorithm, resume",
    [("moon", False), ("ditto", True)],
    ids=["moon", "ditto-resumed"],
)
def test_site_state_of_moon_and_ditto_lives_on_the_owning_rank(tmp_path, algorithm, resume):
    """MOON's previous local models and Ditto's personal models (and the optimiser state of its global
    copy) stay on the rank that owns the site: round 2 reads them there (MOON), or from the checkpoint
    after a restart of every rank (Ditto, whose server state resumes too). The run ends bitwise where
    the single-process run ends."""
    data = tiny_config_dict(tmp_path, algorithm=algorithm, rounds=2)  # 2 sites: one per rank
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    assert train_at_one_thread("--config", str(path), "name=single") == 0
    if resume:
        run(command("--config", str(path), "name=ddp", "fl.parallel=sites", "fl.rounds=1"))
        run(command("--resume", str(tmp_path / "runs" / "ddp"), "fl.rounds=2", "--force"))
    else:
        proc = run(command("--config", str(path), "name=ddp", "fl.parallel=sites"))
        assert "rank 0: fastmri; rank 1: brats" in proc.stdout
    ckpt, metrics, results = load(tmp_path / "runs" / "ddp")
    ref_ckpt, ref_metrics, ref_results = load(tmp_path / "runs" / "single")
    for key in ("global", "sites", "server", "best", "history", "round"):
        assert same(ckpt[key], ref_ckpt[key]), key
    for site, state in ref_ckpt["sites"].items():  # the site state the ranks kept, not a fresh one
        assert state["client"] and same(ckpt["sites"][site]["client"], state["client"]), site
    assert metrics == ref_metrics
    assert results | {"name": ""} == ref_results | {"name": ""}


def test_bad_config_is_one_line_from_one_rank(workspace):
    _, path = workspace
    proc = subprocess.run(
        command("--config", str(path), "fl.rounds=0", torchrun=True),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "fl.rounds" in errors[0]


def test_device_requests_that_cannot_be_met_are_one_line(tiny_config_file, capsys):
    import train_multi_gpu

    path = str(tiny_config_file())
    with pytest.raises(SystemExit) as refused:  # refused while the arguments are parsed, in one line
        train_multi_gpu.main(["--config", path, "--devices", "0"])
    assert refused.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--devices" in err[0] and "(got 0)" in err[0], err
    if not torch.cuda.is_available():
        assert train_multi_gpu.main(["--config", path, "--devices", "2", "trainer.accelerator=gpu"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "trainer.accelerator" in err[0] and "no CUDA GPU" in err[0], err


def test_volume_shards_cover_every_volume_once():
    class Fake:
        index = [(v, s) for v in range(5) for s in range(3)]

    shards = [volume_shard(Fake, 2, r) for r in range(2)]
    assert sorted(shards[0] + shards[1]) == list(range(15))
    volumes = [{Fake.index[i][0] for i in shard} for shard in shards]
    assert volumes == [{0, 2, 4}, {1, 3}]  # whole volumes, odd counts per rank


def test_site_assignment():
    sizes = {"a": 10, "b": 40, "c": 30, "d": 20}
    assert assign_sites(sizes, 2) == {"a": 0, "b": 1, "c": 0, "d": 1}
    by_size = assign_sites(sizes, 2, "size")
    load = [sum(n for s, n in sizes.items() if by_size[s] == r) for r in range(2)]
    assert load == [50, 50]
