"""Faults: exact resume, atomic outputs, safe loading, the NaN guard, site failures, privacy boundary."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml

import train
from assembly.build import Builder
from assembly.setup import in_process
from tests.conftest import ROOT, tiny_config_dict, train_at_one_thread
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.errors import TrainingFailure, UserError
from utils.io import atomic_write_text
from utils.run_log import MetricsCSV


def quiet(_):
    return None


def create_run(config, log=quiet):
    """train.py's run of ``config``: a RunLoop over the in-process Federation (``.rounds``)."""
    run = in_process(Builder(config, log=log))
    run.rounds.sites = run.rounds.transport.sites
    return run


def final_state(run_dir):
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    return ckpt, (run_dir / "metrics.csv").read_text(), (run_dir / "results.json").read_text()


def assert_same_tensors(a, b, path="ckpt"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert set(a) == set(b), path
        for key in a:
            assert_same_tensors(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{path}[{i}]")
    else:
        assert a == b or (a != a and b != b), path  # nan == nan here


def test_resume_after_interruption_equals_uninterrupted_run(tiny_config, tmp_path):
    reference = tiny_config(rounds=3)
    reference.name = "reference"
    create_run(reference).run()

    interrupted = tiny_config(rounds=3)
    run = create_run(interrupted)
    fed = run.rounds
    original = fed.round

    def crash_in_round_3(rnd):
        if rnd == 3:
            fed.sites[0].module.model.encoder.down[0].layers[0].weight.data.add_(1.0)  # half-done work
            raise KeyboardInterrupt
        return original(rnd)

    fed.round = crash_in_round_3
    with pytest.raises(KeyboardInterrupt):
        run.run()
    with open(interrupted.run_dir / "metrics.csv", "a") as handle:
        handle.write("3,fastmri,train,0.12")  # a row cut short by the kill

    resumed = create_run(interrupted)
    assert resumed.resume() and resumed.completed == 2
    resumed.run()

    ref_ckpt, ref_metrics, ref_results = final_state(reference.run_dir)
    ckpt, metrics, results = final_state(interrupted.run_dir)
    assert ckpt["format"] == ref_ckpt["format"] == 2
    for key in ("global", "sites", "server", "best", "history", "round"):
        assert_same_tensors(ref_ckpt[key], ckpt[key], key)
    assert metrics == ref_metrics
    assert json.loads(results) | {"name": "x"} == json.loads(ref_results) | {"name": "x"}


def run_train(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "train.py", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_sigkill_then_resume_matches_reference(tmp_path):
    def config_file(name):  # 8 rounds: the run is still going when a loaded machine's poll sees round 1
        data = tiny_config_dict(tmp_path, rounds=8)
        data["name"] = name
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    assert train_at_one_thread("--config", config_file("reference")) == 0  # the reference, in this process
    killed = tmp_path / "runs" / "killed"
    proc = subprocess.Popen(
        [sys.executable, "train.py", "--config", config_file("killed")],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        ckpt = killed / "checkpoints" / "last.ckpt"
        if ckpt.exists() and torch.load(ckpt, weights_only=True)["round"] >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = run_train("--resume", killed)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming" in done.stdout
    ref_ckpt, ref_metrics, _ = final_state(tmp_path / "runs" / "reference")
    ckpt, metrics, _ = final_state(killed)
    for key in ("global", "sites", "server", "best"):
        assert_same_tensors(ref_ckpt[key], ckpt[key], key)
    assert metrics == ref_metrics


def test_resume_refuses_a_changed_config_unless_forced(tiny_config_file, tmp_path, capsys):
    path = tiny_config_file(rounds=1)
    assert train.main(["--config", str(path)]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    before = (run_dir / "metrics.csv").read_text()
    capsys.readouterr()
    assert train.main(["--resume", str(run_dir), "fl.rounds=2", "optim.lr=0.01"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1 and "fl.rounds (1 -> 2)" in err and "optim.lr" in err and "--force" in err
    )
    assert (run_dir / "metrics.csv").read_text() == before
    assert train.main(["--resume", str(run_dir), "fl.rounds=2", "--force"]) == 0
    rounds = {row["round"] for row in MetricsCSV(run_dir / "metrics.csv").rows() if row["split"] == "val"}
    assert rounds == {"1", "2"}
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["fl"]["rounds"] == 2


def test_a_resumed_run_times_the_rounds_of_every_process(tiny_config_file, tmp_path, capsys):
    """timing.json covers the rounds trained before the resume too; a checkpoint without timing (an
    older one) still resumes, timing only what it trains; a damaged timing is one line naming it."""
    path = tiny_config_file(rounds=1)
    assert train.main(["--config", str(path)]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    first = json.loads((run_dir / "timing.json").read_text())
    assert first["rounds_timed"] == 1 and first["threads"] == torch.get_num_threads()
    assert first["cpu"] and first["seconds_per_round"] > 0
    ckpt_path = run_dir / "checkpoints" / "last.ckpt"
    assert load_checkpoint(ckpt_path)["timing"]["seconds"] == [first["seconds_per_round"]]
    assert train.main(["--resume", str(run_dir), "fl.rounds=2", "--force"]) == 0
    second = json.loads((run_dir / "timing.json").read_text())
    ckpt = load_checkpoint(ckpt_path)
    assert second["rounds_timed"] == 2 and ckpt["timing"]["seconds"][0] == first["seconds_per_round"]
    assert second["seconds_per_round"] == pytest.approx(sum(ckpt["timing"]["seconds"]) / 2)
    del ckpt["timing"]  # as written before checkpoints kept the timing
    save_checkpoint(ckpt, ckpt_path)
    assert train.main(["--resume", str(run_dir), "fl.rounds=3", "--force"]) == 0
    assert json.loads((run_dir / "timing.json").read_text())["rounds_timed"] == 1
    ckpt = load_checkpoint(ckpt_path)
    ckpt["timing"]["seconds"][0] = "slow"
    save_checkpoint(ckpt, ckpt_path)
    capsys.readouterr()
    assert train.main(["--resume", str(run_dir), "fl.rounds=4", "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "timing.seconds" in err and str(ckpt_path) in err


def test_a_finished_run_is_never_silently_replaced(tiny_config_file, tmp_path, capsys):
    path = tiny_config_file(rounds=1)
    assert train.main(["--config", str(path)]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    ckpt_bytes = (run_dir / "checkpoints" / "last.ckpt").read_bytes()
    capsys.readouterr()
    assert train.main(["--config", str(path)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() == ckpt_bytes
    assert train.main(["--resume", str(run_dir)]) == 0  # nothing left to train: tests again, same results
    assert train.main(["--config", str(path), "--overwrite", "seed=1"]) == 0
    assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() != ckpt_bytes


def test_a_damaged_run_directory_is_refused_in_one_line_before_training(tiny_config_file, tmp_path, capsys):
    path = tiny_config_file(rounds=1)
    assert train.main(["--config", str(path)]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    ckpt_bytes = (run_dir / "checkpoints" / "last.ckpt").read_bytes()
    good = (run_dir / "metrics.csv").read_bytes()
    damaged = {
        "hello,world\n": "line 1",
        good.decode().replace("\n1,", "\nabc,", 1): "round 'abc'",
        good.decode().replace("\n", "\n1,x,train,oops\n", 1): "loss 'oops'",
    }
    for text, named in damaged.items():
        (run_dir / "metrics.csv").write_text(text)
        capsys.readouterr()
        assert train.main(["--resume", str(run_dir)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "metrics.csv" in err[0] and named in err[0], err
        assert (run_dir / "metrics.csv").read_text() == text  # refused before anything is rewritten
    (run_dir / "metrics.csv").write_bytes(b"\xff\xfe\x00binary")
    assert train.main(["--resume", str(run_dir)]) == 2
    assert "metrics.csv: not a text file" in capsys.readouterr().err
    (run_dir / "metrics.csv").write_bytes(good)

    # name= and output_dir= cannot move a resumed run: they were silently replaced by its place.
    assert train.main(["--resume", str(run_dir), f"output_dir={tmp_path / 'elsewhere'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "output_dir" in err[0] and "come from the run directory" in err[0]
    assert not (tmp_path / "elsewhere").exists()

    # A file where the run's folders go: refused before training, not at the first checkpoint.
    (tmp_path / "runs" / "afile").write_text("x")
    assert train.main(["--config", str(path), "name=afile"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "afile is a file" in err[0], err
    (run_dir / "checkpoints").rename(tmp_path / "moved")
    (run_dir / "checkpoints").write_text("x")
    assert train.main(["--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoints is a file" in err[0], err
    assert (tmp_path / "moved" / "last.ckpt").read_bytes() == ckpt_bytes


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save_checkpoint({"round": 1, "w": torch.ones(3)}, path)
    good = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        save_checkpoint({"round": 2, "w": torch.zeros(3)}, path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_atomic_outputs_are_as_readable_as_plainly_written_files(tmp_path):
    """The temporary file's private 0600 mode must not carry over to checkpoints and results."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic_write_text(tmp_path / "results.md", "x")
    save_checkpoint({"round": 1}, tmp_path / "last.ckpt")
    expected = plain.stat().st_mode & 0o777
    assert (tmp_path / "results.md").stat().st_mode & 0o777 == expected
    assert (tmp_path / "last.ckpt").stat().st_mode & 0o777 == expected


class Payload:
    """A pickled object: a hostile checkpoint could run code when it is unpickled."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_checkpoints_with_pickled_objects_are_refused(tmp_path, capsys):
    path = tmp_path / "evil.ckpt"
    torch.save({"round": 1, "payload": Payload()}, path)
    with pytest.raises(UserError, match="refused"):
        load_checkpoint(path)
    assert "must never run" not in capsys.readouterr().out
    with open(tmp_path / "plain.pkl", "wb") as handle:
        pickle.dump({"round": 1}, handle)
    truncated = tmp_path / "truncated.ckpt"
    save_checkpoint({"w": torch.ones(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(UserError, match="truncated"):
        load_checkpoint(truncated)


def test_checkpoint_that_does_not_fit_the_model_is_refused(tiny_config, tmp_path):
    config = tiny_config(rounds=1)
    create_run(config).run()
    other = tiny_config(rounds=1)
    other.model.chans = 8
    run = create_run(other)
    with pytest.raises(
        UserError, match=r"belongs to another config; it differs in model\.chans \(4 -> 8\)"
    ) as info:
        run.load(config.run_dir / "checkpoints" / "last.ckpt")
    assert "\n" not in str(info.value)


def poison(fed, site_name, rounds):
    """Make ``site_name``'s loss NaN from its second step in the given rounds."""
    site = next(s for s in fed.sites if s.name == site_name)
    clean = site.module.loss_fn
    state = {"round": 0}
    fit = site.fit

    def tracking(rnd, *args, **kwargs):
        state["round"] = rnd
        return fit(rnd, *args, **kwargs)

    def loss_fn(pred, target):
        loss = clean(pred, target)
        if state["round"] in rounds and site.module.global_step >= 1:
            return loss * float("nan")
        return loss

    site.module.loss_fn = loss_fn
    site.fit = tracking


def test_nan_guard_aborts_naming_site_round_and_step(tiny_config):
    config = tiny_config(rounds=3)
    run = create_run(config)
    poison(run.rounds, "brats", rounds={2})
    with pytest.raises(TrainingFailure) as info:
        run.run()
    message = str(info.value)
    assert "brats" in message and "round 2" in message and "step 2" in message
    ckpt = load_checkpoint(config.run_dir / "checkpoints" / "last.ckpt")
    assert ckpt["round"] == 1
    assert all(
        torch.isfinite(t).all() for t in ckpt["sites"]["brats"]["model"].values() if t.is_floating_point()
    )


def test_skip_policy_leaves_the_site_out_and_retries_it(tiny_config):
    config = tiny_config(rounds=3)
    config.fl.on_site_failure = "skip"
    config.fl.algorithm = "fedavg"
    run = create_run(config)
    fed = run.rounds
    poison(fed, "brats", rounds={2})
    seen = {}
    aggregate = fed.server.aggregate

    def spy(rnd, replies, weights):
        seen[rnd] = (sorted(replies), dict(weights), {s: dict(r.shared) for s, r in replies.items()})
        return aggregate(rnd, replies, weights)

    fed.server.aggregate = spy
    run.run()
    assert seen[1][0] == ["brats", "fastmri"] and seen[3][0] == ["brats", "fastmri"]
    assert seen[2][0] == ["fastmri"] and seen[2][1] == {"fastmri": 1.0}
    rows = MetricsCSV(config.run_dir / "metrics.csv").rows()
    failed = [r for r in rows if r["status"].startswith("skipped")]
    assert [(r["round"], r["site"]) for r in failed] == [("2", "brats")]
    assert "non-finite loss" in failed[0]["status"]
    ckpt = load_checkpoint(config.run_dir / "checkpoints" / "last.ckpt")
    for state in ckpt["sites"].values():
        assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def test_aggregation_only_ever_sees_shared_tensors(tiny_config):
    fed = create_run(tiny_config(rounds=2)).rounds
    model = fed.sites[0].module.model
    shapes = {n: tuple(t.shape) for n, t in model.state_dict().items()}
    shared = {n for n in shapes if n.startswith("encoder.")}
    received = []
    aggregate = fed.server.aggregate

    def spy(rnd, replies, weights):
        received.append((replies, weights))
        return aggregate(rnd, replies, weights)

    fed.server.aggregate = spy
    fed.round(1)
    fed.round(2)
    assert len(received) == 2
    for replies, weights in received:
        assert set(weights) == {"fastmri", "brats"} and all(isinstance(w, float) for w in weights.values())
        for reply in replies.values():
            tensors = reply.shared
            assert not reply.extra  # FedMRI's sites send their encoder and nothing else
            assert set(tensors) == shared  # no decoder weights
            for name, tensor in tensors.items():
                assert isinstance(tensor, torch.Tensor) and tuple(tensor.shape) == shapes[name]
                assert tensor.dim() != 4 or tensor.shape[-1] == 3  # conv kernels only: no images
    assert not any(n.startswith("decoder.") for n in fed.server.global_state)


def test_bad_fourth_site_fails_before_any_training(tmp_path):
    data = tiny_config_dict(tmp_path, sites=4)
    bad_mask = tmp_path / "mask.npy"
    np.save(bad_mask, np.ones((20, 20), dtype=bool))
    data["sites"][3]["mask"] = {"kind": "file", "path": str(bad_mask)}
    path = tmp_path / "four.yaml"
    path.write_text(yaml.safe_dump(data))
    start = time.time()
    proc = run_train("--config", path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "mask.npy" in lines[0]
    assert "round" not in proc.stdout
    assert not (tmp_path / "runs").exists()
    assert time.time() - start < 60
