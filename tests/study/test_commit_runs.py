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
@pytest.mark.parametrize("tail", ["exec sleep 313", "sleep 313 && true"])  # a program, or a chain running one
def test_sigterm_stops_a_study_started_in_the_background_and_commits_what_it_finished(tmp_path, tail):
    """Started by a script with ``&``, the wrapper and its command ignore SIGINT; SIGTERM to the wrapper
    stops the command (which would otherwise run on) and commits its finished raw file."""
    repo = _repo(tmp_path)
    raw = repo / "results" / "cell" / "runs" / "c-s0.json"
    command = f"mkdir -p {raw.parent} && echo '{{}}' > {raw} && {tail}"
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
        deadline = time.monotonic() + 10  # the program the command ran is gone too, not left running
        while subprocess.run(["pgrep", "-f", "sleep 313"], capture_output=True).returncode == 0:
            assert time.monotonic() < deadline, "the command's program still runs after SIGTERM"
            time.sleep(0.1)
    finally:
        wrapper.kill()
    assert git(repo, "log", "-1", "--format=%s").strip() == "Regime map: raw results of cell/c-s0"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_studys_commit_also_rebuilds_its_tables_and_the_map_named_by_MAP(tmp_path):
    """FOLDER a study's (manifest.json) and MAP a regime map: each commit runs compare.py --report on the
    study, refresh_results on both, compare.py --map on the map, and takes the map, RESULTS.md and the
    README with the raw file (here compare.py and refresh_results.py are stand-ins that log their calls)."""
    import sys

    repo = _repo(tmp_path)
    log = tmp_path / "calls.txt"
    (repo / "compare.py").write_text(
        "import sys, pathlib\n"
        f"open({str(log)!r}, 'a').write('compare ' + ' '.join(sys.argv[1:]) + '\\n')\n"
        "if sys.argv[1] == '--map':\n"
        "    pathlib.Path(sys.argv[2], 'map.md').write_text('rebuilt\\n')\n"
    )  # fmt: skip
    (repo / "docs" / "results" / "refresh_results.py").write_text(
        "import sys, pathlib\n"
        f"open({str(log)!r}, 'a').write('refresh ' + sys.argv[1] + '\\n')\n"
        "pathlib.Path('RESULTS.md').write_text('refreshed from ' + sys.argv[1] + '\\n')\n"
    )  # fmt: skip
    bin_dir = tmp_path / "bin"  # `python` in the wrapper: this interpreter
    bin_dir.mkdir()
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    (repo / "RESULTS.md").write_text("old\n")
    (repo / "README.md").write_text("readme\n")
    (repo / "results" / "map").mkdir(parents=True)
    (repo / "results" / "map" / "regimes.yaml").write_text("regimes: []\n")
    (repo / "results" / "study").mkdir(parents=True)
    (repo / "results" / "study" / "manifest.json").write_text("{}\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "layout")
    study = repo / "results" / "study"
    command = f"mkdir -p {study}/runs && echo '{{}}' > {study}/runs/a-s3.json"
    env = {
        **os.environ,
        "COMMIT_POLL": "0.2",
        "MAP": "results/map",
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    done = subprocess.run(
        ["bash", "docs/results/map/commit_runs.sh", "results/study", "--", "bash", "-c", command],
        cwd=repo, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert calls == [
        "compare --report results/study",
        "refresh results/study",
        "compare --map results/map",
        "refresh results/map",
    ]
    assert git(repo, "log", "-1", "--format=%s").strip() == "Regime map: raw results of study/a-s3"
    assert sorted(git(repo, "show", "--name-only", "--format=", "HEAD").split()) == [
        "RESULTS.md",
        "results/map/map.md",
        "results/study/runs/a-s3.json",
    ]
    assert (repo / "RESULTS.md").read_text() == "refreshed from results/map\n"
    assert not git(repo, "status", "--porcelain").strip()
