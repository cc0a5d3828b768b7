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
# rounds of the interrupted runs: so many that no run ends before its signal arrives, even when a loaded
# machine leaves the test reading its output seconds behind (a tiny round takes a fraction of a second)
LONG = 5000


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
    path.write_text(yaml.safe_dump(tiny_config_dict(tmp_path, rounds=LONG)))
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
        == f"interrupted after round {done} of {LONG}; continue with: python train.py --resume {run_dir}"
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
    assert f"resuming {run_dir} after round {done} of {LONG}" in lines
    again = checkpoint_round(run_dir)
    assert again > done and lines[-1].startswith(f"interrupted after round {again} of {LONG}; continue with:")
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
        f"interrupted after round {done} of {LONG}; continue with: "
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
    assert lines[-1] == f"interrupted after round {done} of {LONG}; continue with: {resume}", lines[-8:]
    assert done >= 2 and metric_rounds(run_dir) == set(range(1, done + 1))
    assert not any("Traceback" in line or "Error" in line for line in lines), lines[-8:]
    assert session_ended(proc.pid)  # the other rank ended too, without a collective left waiting

    proc = start([str(ROOT / "train_multi_gpu.py"), *shlex.split(resume)[2:]], path.parent)
    code, lines = signal_after(proc, done + 1, signal.SIGTERM)
    assert code == 143, lines[-8:]
    assert f"resuming {run_dir} after round {done} of {LONG}" in lines
    again = checkpoint_round(run_dir)
    assert again > done and lines[-1] == f"interrupted after round {again} of {LONG}; continue with: {resume}"
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
        f"interrupted after round {done} of {LONG}; continue with: flwr run <app> <federation> "
        f'--run-config \'config="{path}" overrides="name=flower" resume=true\''
    )
    assert metric_rounds(run_dir) == set(range(1, done + 1))


# The ClientApp as Flower's flwr-clientapp runs it: in a process of its own, with Flower's signal
# handlers (SIGINT when the SuperNode ends, SIGTERM), here one process for every node and message.
CLIENT_APP_PROCESS = """
import base64, json, pickle, sys
from flwr.app import Context, RecordDict
from flwr.supercore.exit import register_signal_handlers
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents
from flwr.supercore.telemetry import EventType
from deploy.client_app import app
from fl.flower.site import SiteWorker

def train(self, rnd, payload, train=SiteWorker.train):
    print("training", self.name, rnd, flush=True)  # the site's local fit starts
    return train(self, rnd, payload)

SiteWorker.train = train
register_signal_handlers(event_type=EventType.FLWR_CLIENTAPP_RUN_LEAVE, exit_message="Task stopped.")
contexts = {
    node: Context(run_id=1, node_id=node, node_config=config, state=RecordDict(), run_config={})
    for node, config in enumerate(json.loads(sys.argv[1]), start=1)
}
for line in sys.stdin:
    node, contents, object_id, message_id = pickle.loads(base64.b64decode(line))
    message = inflate_object_from_contents(object_id, contents)
    message.metadata.__dict__["_message_id"] = message_id
    reply = app(message, contexts[node])
    objects = {i: o.deflate() for i, o in get_all_nested_objects(reply).items()}
    print("reply", base64.b64encode(pickle.dumps((objects, reply.object_id))).decode(), flush=True)
"""


def client_app_process(node_configs: list[dict], signal_at: tuple[int, str] | None = None):
    """deploy/local.py's grid with its ClientApp in :data:`CLIENT_APP_PROCESS`; ``signal_at``:
    ``(signal, line)``, the signal sent once the process printed that line. A message left without a
    reply gets the SuperNode's error reply."""
    import base64
    import json
    import pickle

    from flwr.app import Message
    from flwr.app.error import Error
    from flwr.common.constant import ErrorCode
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
    from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents

    from deploy.local import LocalGrid

    class Grid(LocalGrid):
        def __init__(self):
            super().__init__(node_configs)
            self.lines: list[str] = []
            self.proc = subprocess.Popen(
                [sys.executable, "-c", CLIENT_APP_PROCESS, json.dumps(node_configs)], cwd=ROOT,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
                                             "FLWR_TELEMETRY_ENABLED": "0"},
            )  # fmt: skip

        def answer(self, message):
            node = message.metadata.dst_node_id
            objects = {i: o.deflate() for i, o in get_all_nested_objects(message).items()}
            question = pickle.dumps((node, objects, message.object_id, message.object_id))
            try:
                self.proc.stdin.write(base64.b64encode(question).decode() + "\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
            for line in self.proc.stdout:
                if line.startswith("reply "):
                    objects, object_id = pickle.loads(base64.b64decode(line.split()[1]))
                    return inflate_object_from_contents(object_id, objects)
                self.lines.append(line.rstrip("\n"))
                if signal_at and line.strip() == signal_at[1]:
                    self.proc.send_signal(signal_at[0])
            self.proc.wait(timeout=60)
            error = Error(ErrorCode.CLIENT_APP_CRASHED, "ClientApp stopped responding.")
            return Message(error, reply_to=message)

        def push_messages(self, messages):
            for message in messages:
                message.metadata.__dict__["_message_id"] = message.object_id
                self._replies[message.object_id] = self.answer(message)
            return [m.object_id for m in messages]

        def close(self):
            self.proc.stdin.close()
            self.proc.wait(timeout=60)

    return Grid()


@pytest.mark.slow
def test_sigterm_to_the_client_app_keeps_the_sites_last_round_and_the_run_resumes_exactly(tmp_path):
    from assembly.build import Builder
    from assembly.setup import in_process
    from deploy.server_app import serve
    from tests.deploy.test_flower import assert_same_run, configs, nodes, quiet
    from utils.errors import UserError

    reference, flower = configs(tmp_path, "fedmri", rounds=2)
    in_process(Builder(reference, log=quiet)).run()  # also generates the sites' data
    grid = client_app_process(nodes(flower, tmp_path), signal_at=(signal.SIGTERM, "training brats 2"))
    with pytest.raises(UserError, match="site brats: no answer to the train message of round 2"):
        serve(grid, flower, log=quiet)
    assert [line for line in grid.lines if "interrupted" in line] == [
        "site brats: interrupted after round 1, in the train step of round 2; continue with: "
        "flwr run <app> <federation> --run-config '... resume=true'"
    ], grid.lines[-8:]
    assert grid.lines[-1].endswith("Task stopped.") and grid.proc.returncode == 0  # then Flower's own stop
    assert not any("Traceback" in line for line in grid.lines), grid.lines
    site_dir = tmp_path / "sites" / "brats" / "flower" / "brats"
    assert checkpoint_round(site_dir) == 1 and metric_rounds(site_dir) == {1}
    assert checkpoint_round(flower.run_dir) == 1

    grid = client_app_process(nodes(flower, tmp_path))
    serve(grid, flower, resume=True, log=quiet)
    grid.close()
    assert_same_run(reference, flower, tmp_path)


def test_a_signal_while_a_site_writes_its_round_waits_until_it_is_written(tmp_path, monkeypatch, capsys):
    from deploy.local import LocalGrid
    from deploy.server_app import serve
    from fl.reporter import Reporter
    from tests.deploy.test_flower import configs, nodes, quiet

    _, flower = configs(tmp_path, "fedmri", rounds=2)
    write_rows = Reporter.round

    def signalled(self, rnd, summary, lr):  # SIGTERM as brats starts to write round 2 (rows, checkpoints)
        if rnd == 2 and list(summary) == ["brats"]:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        return write_rows(self, rnd, summary, lr)

    def flower_stop(signum, frame):  # what flwr-clientapp's handler does: its exit handlers, then exit
        raise SystemExit(0)

    monkeypatch.setattr(Reporter, "round", signalled)
    previous = signal.signal(signal.SIGTERM, flower_stop)
    try:
        with pytest.raises(SystemExit):
            serve(LocalGrid(nodes(flower, tmp_path)), flower, log=quiet)
    finally:
        signal.signal(signal.SIGTERM, previous)
    site_dir = tmp_path / "sites" / "brats" / "flower" / "brats"
    assert checkpoint_round(site_dir) == 2 and metric_rounds(site_dir) == {1, 2}  # round 2, whole
    assert not (site_dir / "checkpoints" / "trained.ckpt").exists()
    assert capsys.readouterr().err.splitlines()[-1] == (
        "site brats: interrupted after round 2, in the validate step of round 2; continue with: "
        "flwr run <app> <federation> --run-config '... resume=true'"
    )
