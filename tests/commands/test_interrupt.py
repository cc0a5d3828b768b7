"""Ctrl-C (SIGINT) and SIGTERM: a real signal to a real process ends the run after its last completed
round with one line that says how to continue, and the status a shell gives that signal (130, 143)."""

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, tiny_config_dict
from utils.interrupt import Interrupted, held, interruptible

ROUND = re.compile(r"^round +(\d+)/(\d+) \|")


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    """A command of this repository in its own session (so that it and its children are signalled and
    cleaned up apart from the tests)."""
    return subprocess.Popen(
        [sys.executable, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def signal_after(
    proc: subprocess.Popen, rnd: int, signum: int, timeout: float = 240.0
) -> tuple[int, list[str]]:
    """Send ``signum`` once the command printed round ``rnd``'s line; its status and every line."""
    lines, sent = [], False
    deadline = time.monotonic() + timeout
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            found = ROUND.match(line)
            if not sent and found and int(found.group(1)) >= rnd:
                proc.send_signal(signum)
                sent = True
            if time.monotonic() > deadline:
                break
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert sent, "\n".join(lines[-20:])
    return proc.returncode, lines


def session_ended(pgid: int, timeout: float = 15.0) -> bool:
    """Whether every process of the session ``pgid`` (the command's children included) has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def checkpoint_round(run_dir: Path) -> int:
    from utils.checkpoint import load_checkpoint

    return int(load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["round"])


def metric_rounds(run_dir: Path) -> set[int]:
    lines = (run_dir / "metrics.csv").read_text().splitlines()[1:]
    return {int(line.split(",")[0]) for line in lines}


@pytest.fixture
def long_run(tmp_path):
    """A tiny federation with more rounds than a test waits for (it is always interrupted)."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(tmp_path, rounds=60)))
    return path, tmp_path / "runs" / "tiny"


def test_a_signal_while_a_round_is_written_waits_until_it_is_written():
    done = []
    with pytest.raises(Interrupted) as caught:
        with interruptible():
            with held():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)  # the handler has run: the signal is held, not raised
                done.append("checkpoint written")
            done.append("next round")  # never reached
    assert done == ["checkpoint written"]
    assert caught.value.exit_code == 143 and caught.value.signum == signal.SIGTERM


def test_outside_a_command_the_handlers_are_the_previous_ones():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with interruptible():
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
    assert {s: signal.getsignal(s) for s in before} == before


@pytest.mark.slow
def test_ctrl_c_then_sigterm_keep_the_last_round_and_say_how_to_continue(long_run):
    path, run_dir = long_run
    code, lines = signal_after(start([str(ROOT / "train.py"), "--config", str(path)], path.parent), 2,
                               signal.SIGINT)  # fmt: skip
    assert code == 130, lines[-5:]
    done = checkpoint_round(run_dir)
    assert (
        lines[-1]
        == f"interrupted after round {done} of 60; continue with: python train.py --resume {run_dir}"
    )
    assert done >= 2 and metric_rounds(run_dir) == set(range(1, done + 1))  # no row of a round cut short
    assert not (run_dir / "results.json").exists()
    assert not any("Traceback" in line for line in lines)

    # The printed command continues the run; SIGTERM (a scheduler, kill) stops it the same way.
    continued = shlex.split(lines[-1].partition("continue with: ")[2])
    assert continued[:2] == ["python", "train.py"]
    proc = start([str(ROOT / "train.py"), *continued[2:]], path.parent)
    code, lines = signal_after(proc, done + 1, signal.SIGTERM)
    assert code == 143, lines[-5:]
    assert f"resuming {run_dir} after round {done} of 60" in lines
    again = checkpoint_round(run_dir)
    assert again > done and lines[-1].startswith(f"interrupted after round {again} of 60; continue with:")
    assert metric_rounds(run_dir) == set(range(1, again + 1))
    assert session_ended(proc.pid)


@pytest.mark.slow
def test_sigterm_to_the_launcher_of_two_processes_stops_both_after_the_same_round(long_run):
    path, run_dir = long_run
    proc = start([str(ROOT / "train_multi_gpu.py"), "--devices", "2", "--config", str(path)], path.parent)
    code, lines = signal_after(proc, 2, signal.SIGTERM)
    assert code == 143, lines[-8:]
    done = checkpoint_round(run_dir)
    assert lines[-1] == (
        f"interrupted after round {done} of 60; continue with: "
        f"python train_multi_gpu.py --devices 2 --resume {run_dir}"
    )
    assert not any("Traceback" in line or "Error" in line for line in lines), lines[-8:]
    assert session_ended(proc.pid)  # the other rank ended too, by itself


@pytest.mark.slow
def test_sigterm_to_the_launcher_of_two_data_parallel_processes_stops_both_and_resumes(long_run):
    path, run_dir = long_run  # every site trained on both ranks by DDP (gloo): a collective in every step
    args = [str(ROOT / "train_multi_gpu.py"), "--devices", "2", "--config", str(path), "fl.parallel=data"]
    proc = start(args, path.parent)
    code, lines = signal_after(proc, 2, signal.SIGTERM)
    assert code == 143, lines[-8:]
    done = checkpoint_round(run_dir)
    resume = f"python train_multi_gpu.py --devices 2 --resume {run_dir}"
    assert lines[-1] == f"interrupted after round {done} of 60; continue with: {resume}", lines[-8:]
    assert done >= 2 and metric_rounds(run_dir) == set(range(1, done + 1))
    assert not any("Traceback" in line or "Error" in line for line in lines), lines[-8:]
    assert session_ended(proc.pid)  # the other rank ended too, without a collective left waiting

    proc = start([str(ROOT / "train_multi_gpu.py"), *shlex.split(resume)[2:]], path.parent)
    code, lines = signal_after(proc, done + 1, signal.SIGTERM)
    assert code == 143, lines[-8:]
    assert f"resuming {run_dir} after round {done} of 60" in lines
    again = checkpoint_round(run_dir)
    assert again > done and lines[-1] == f"interrupted after round {again} of 60; continue with: {resume}"
    assert metric_rounds(run_dir) == set(range(1, again + 1))
    assert not any("Traceback" in line or "Error" in line for line in lines), lines[-8:]
    assert session_ended(proc.pid)


FLOWER_SERVER = """
import json, sys
from flwr.app import Context, RecordDict
from deploy.local import LocalGrid
from deploy.server_app import main
nodes, run_config = json.loads(sys.argv[1]), json.loads(sys.argv[2])
context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config)
main(LocalGrid(nodes), context)
"""


@pytest.mark.slow
def test_sigterm_to_the_flower_server_app_keeps_its_last_round(long_run, tmp_path):
    import json

    path, _ = long_run
    config = yaml.safe_load(path.read_text())
    run_dir = Path(config["output_dir"]) / "flower"
    nodes = [
        {
            "site": s["name"],
            "data-root": str(tmp_path / "data" / s["name"]),
            "output-dir": str(tmp_path / "sites"),
        }
        for s in config["sites"]
    ]
    run_config = {"config": str(path), "overrides": "name=flower", "poll-interval": 0.001}
    proc = subprocess.Popen(
        [sys.executable, "-c", FLOWER_SERVER, json.dumps(nodes), json.dumps(run_config)], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    code, lines = signal_after(proc, 2, signal.SIGTERM)
    assert code == 143, lines[-5:]
    done = checkpoint_round(run_dir)
    assert lines[-1] == (
        f"interrupted after round {done} of 60; continue with: flwr run <app> <federation> "
        f'--run-config \'config="{path}" overrides="name=flower" resume=true\''
    )
    assert metric_rounds(run_dir) == set(range(1, done + 1))
