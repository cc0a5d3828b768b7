"""docs/results/map/commit_runs.sh: each raw result file a study writes is committed as it lands, and
nothing else that happens to be staged goes into those commits."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "docs" / "results" / "map" / "commit_runs.sh"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "docs" / "results" / "map").mkdir(parents=True)
    shutil.copy(SCRIPT, repo / "docs" / "results" / "map" / "commit_runs.sh")
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "t@example.org")
    git(repo, "config", "user.name", "t")
    (repo / "other.txt").write_text("first\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "start")
    return repo


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_each_finished_raw_file_is_committed_and_nothing_else(tmp_path):
    repo = _repo(tmp_path)
    (repo / "other.txt").write_text("staged, not part of any result\n")
    git(repo, "add", "other.txt")
    study = repo / "results" / "cell"
    command = f"mkdir -p {study}/runs && echo '{{}}' > {study}/runs/a-s0.json && echo t > {study}/table.md"
    done = subprocess.run(
        ["bash", "docs/results/map/commit_runs.sh", "results", "--", "bash", "-c", command],
        cwd=repo, capture_output=True, text=True, timeout=120, env={**os.environ, "COMMIT_POLL": "0.2"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    log = git(repo, "log", "--format=%s").splitlines()
    assert log[0] == "Regime map: raw results of cell/a-s0" and len(log) == 2
    assert sorted(git(repo, "show", "--name-only", "--format=", "HEAD").split()) == [
        "results/cell/runs/a-s0.json",
        "results/cell/table.md",
    ]
    assert git(repo, "diff", "--cached", "--name-only").split() == ["other.txt"]  # still staged, uncommitted
    # a failing command keeps its exit status, and commits what it finished
    fail = f"echo '{{}}' > {study}/runs/b-s0.json; exit 3"
    done = subprocess.run(
        ["bash", "docs/results/map/commit_runs.sh", "results", "--", "bash", "-c", fail],
        cwd=repo, capture_output=True, text=True, timeout=120, env={**os.environ, "COMMIT_POLL": "0.2"},
    )  # fmt: skip
    assert done.returncode == 3
    assert git(repo, "log", "-1", "--format=%s").strip() == "Regime map: raw results of cell/b-s0"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_sigterm_stops_a_study_started_in_the_background_and_commits_what_it_finished(tmp_path):
    """Started by a script with ``&``, the wrapper and its command ignore SIGINT; SIGTERM to the wrapper
    stops the command (which would otherwise run on) and commits its finished raw file."""
    repo = _repo(tmp_path)
    raw = repo / "results" / "cell" / "runs" / "c-s0.json"
    command = f"mkdir -p {raw.parent} && echo '{{}}' > {raw} && exec sleep 300"
    wrapper = subprocess.Popen(
        ["bash", "docs/results/map/commit_runs.sh", "results", "--", "bash", "-c", command],
        cwd=repo, env={**os.environ, "COMMIT_POLL": "0.2"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not raw.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        wrapper.send_signal(signal.SIGTERM)
        assert wrapper.wait(timeout=60) == 143
    finally:
        wrapper.kill()
    assert git(repo, "log", "-1", "--format=%s").strip() == "Regime map: raw results of cell/c-s0"
