"""The Flower loopback command as the README gives it, run after ``python train.py`` in the same folder:
its own run name, train.py's ``--resume``/``--overwrite``, the run folder checked before any Flower
process starts, and every failure one line."""

import os
import subprocess
import sys

import pytest
import yaml

from deploy.loopback import failure_line, loopback_config, main, parse_args, without_tracebacks
from deploy.processes import RunOutcome
from tests.conftest import ROOT, tiny_config_dict

pytestmark = pytest.mark.slow


def command(args, cwd, timeout=300):
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A folder where ``python train.py --config tiny.yaml`` has run (relative paths, as a user's).

    One round: nothing here depends on the rounds, and on Flower every round costs a ClientApp process
    per site and message (tests/deploy/test_flower_deployment.py runs two rounds across processes)."""
    folder = tmp_path_factory.mktemp("newcomer")
    # the data cache: an absolute tmp folder
    data = tiny_config_dict(folder, rounds=1) | {"output_dir": "runs"}
    (folder / "tiny.yaml").write_text(yaml.safe_dump(data))
    done = command([str(ROOT / "train.py"), "--config", "tiny.yaml"], folder)
    assert done.returncode == 0, done.stderr[-2000:]
    return folder


def loopback(folder, *args, timeout=300):
    args = ["-m", "deploy.loopback", "--config", "tiny.yaml", "--sites-dir", "sites", *args]
    return command(args, folder, timeout)


def test_its_default_run_is_not_train_pys(trained, monkeypatch):
    monkeypatch.chdir(trained)
    config = loopback_config(parse_args(["--config", "tiny.yaml", "--sites-dir", "s"]))
    assert config.run_dir == trained / "runs" / "tiny-flower"
    named = loopback_config(parse_args(["--config", "tiny.yaml", "--sites-dir", "s", "name=mine"]))
    assert named.name == "mine"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["name=tiny"], "error: {runs}/tiny already holds a run: continue it with --resume, replace it "
         "with --overwrite, or choose another name=..."),
        (["--resume"], "error: --resume: {runs}/tiny-flower holds no run to continue; start it without "
         "--resume"),
        (["--resume", "--overwrite"], "error: --resume and --overwrite exclude each other"),
    ],
    ids=["same-name", "nothing-to-resume", "both"],
)  # fmt: skip
def test_run_folder_problems_are_one_line_before_any_flower_process(
    trained, args, expected, monkeypatch, capfd
):
    # The command's entry point in this process (what it writes to file descriptors 1 and 2 captured);
    # test_the_readme_command_runs_after_train_py runs the command line itself and meets this refusal.
    monkeypatch.chdir(trained)
    code = main(["--config", "tiny.yaml", "--sites-dir", "sites", *args])
    out, err = capfd.readouterr()
    assert code == 2, out[-2000:] + err[-2000:]
    assert err.strip() == expected.format(runs=trained / "runs") and "Traceback" not in out
    assert not (trained / "sites").exists()  # no SuperLink, no SuperNode, no site folder


def test_the_readme_command_runs_after_train_py(trained):
    done = loopback(trained, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert (trained / "runs" / "tiny-flower" / "results.json").is_file()
    assert (trained / "runs" / "tiny" / "results.json").is_file()  # train.py's run is untouched
    again = loopback(trained)  # a second trial: the same one-line choice as train.py's
    assert again.returncode == 2 and f"{trained}/runs/tiny-flower already holds a run" in again.stderr


def test_a_failed_run_is_its_error_line_without_flowers_traceback():
    log = "\n".join(
        [
            "round 1/2 | fastmri loss 0.5 psnr 20.1",
            "error: site brats: data root /x: not a folder",
            "\x1b[91mERROR \x1b[0m:     ServerApp raised an exception",
            "Traceback (most recent call last):",
            '  File "run_serverapp.py", line 1, in run',
            "    raise UserError(...)",
            "    ^^^^^^^^^^^^^^^^^^^^",
            "utils.errors.UserError: site brats: data root /x: not a folder",
            "Run finished",
        ]
    )
    kept = without_tracebacks(log)
    assert "Traceback" not in kept and "UserError" not in kept and "raised an exception" not in kept
    assert kept.splitlines() == [log.splitlines()[0], log.splitlines()[1], "Run finished"]
    outcome = RunOutcome("7", "finished:failed", "ServerApp failed with exception", log, {})
    assert failure_line(outcome) == ("error: site brats: data root /x: not a folder", 2)
    silent = RunOutcome("7", "finished:failed", "ServerApp failed", "", {})
    assert failure_line(silent) == ("failed: Flower run 7 ended finished:failed: ServerApp failed", 1)


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        text = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return text[text.rfind(")") + 2] != "Z"


SPAWNER = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)\n"
    "time.sleep(600)\n"
)


def test_stop_ends_what_the_started_processes_started_in_sessions_of_their_own(tmp_path):
    """As SuperExec starts the ServerApp: a grandchild in its own session outlives its parent's group."""
    import time

    from deploy.processes import Loopback

    loopback = Loopback(tmp_path, [])
    parent = loopback._start("spawner", [sys.executable, "-c", SPAWNER])
    deadline = time.monotonic() + 60
    while not loopback.descendants() and time.monotonic() < deadline:
        time.sleep(0.1)
    (child,) = loopback.descendants()
    loopback.stop(timeout=5)
    assert parent.poll() is not None
    deadline = time.monotonic() + 10
    while running(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(child)
    assert loopback.alive() == []
