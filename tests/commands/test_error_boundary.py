"""The error boundary of every entry point (utils/cli.py): a bad input is one line and exit 2, anything
unexpected one line naming the file its traceback went to and exit 1; never a bare traceback."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import compare
import evaluate
import latent
import train
import train_multi_gpu
from tests.conftest import ROOT
from utils.cli import ArgumentParser, doing, int_arg, path_arg, run_cli
from utils.errors import UserError


class Unexpected(ZeroDivisionError):
    """What a bug raises: no error the commands know."""


def boom(*_args, **_kwargs):
    with doing("reading the frobnicator"):
        raise Unexpected("a bug that no test foresaw")


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def traceback_file(line: str) -> Path:
    found = re.search(r"the traceback is in (\S+?); please report it", line)
    assert found, line
    path = Path(found.group(1))
    assert path.is_file() and "Unexpected: a bug that no test foresaw" in path.read_text()
    return path


# Each entry point with the library function its job calls, replaced by one that raises a bug.
ENTRY_POINTS = {
    "train.py": (train.main, ["--config", "configs/default.yaml"], "assembly.setup.train_in_process"),
    "train_multi_gpu.py": (
        train_multi_gpu.main,
        ["--config", "configs/default.yaml", "--devices", "2"],
        "assembly.setup.distributed",
    ),
    "evaluate.py": (evaluate.main, ["--run", "runs/nothing"], "assembly.evaluation.load_run"),
    "compare.py": (compare.main, ["--report", "nothing"], "compare.run_all"),
    "compare.py --map": (compare.main, ["--map", "nothing"], "study.regime_map.write_map"),
    "latent.py": (latent.main, ["runs/nothing"], "latent.write_tsne"),
}


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_an_unexpected_exception_is_one_line_naming_its_traceback_file(name, monkeypatch, capsys):
    main, argv, target = ENTRY_POINTS[name]
    monkeypatch.setattr(target, boom)
    code = main(argv)
    line = one_line(capsys)
    assert code == 1, line
    assert line.startswith(f"internal error in {name.split()[0]} while reading the frobnicator: Unexpected:")
    traceback_file(line).unlink()


def test_the_flower_apps_turn_a_bug_into_one_line(monkeypatch, capsys):
    from types import SimpleNamespace

    from deploy import client_app

    monkeypatch.setattr(client_app, "_handle", boom)
    monkeypatch.setattr(client_app.NodeSettings, "from_node_config", lambda _: SimpleNamespace(site="a"))
    monkeypatch.setattr(client_app, "Message", lambda content, reply_to: SimpleNamespace(content=content))
    reply = client_app._guarded(None, SimpleNamespace(node_config={}))
    error = str(reply.content["status"]["error"])
    assert "\n" not in error and error.startswith("internal error in ClientApp of site a")
    traceback_file(error).unlink()


def test_an_os_error_naming_a_file_is_a_user_error(capsys):
    def job():
        open("/nonexistent-folder/x.yaml")  # noqa: SIM115

    assert run_cli(job) == 2
    assert one_line(capsys) == "error: /nonexistent-folder/x.yaml: not found"


def test_a_user_error_is_one_bounded_line(capsys):
    def job():
        raise UserError("bad\nvalue \x1b[31mred\x1b[0m " + "x" * 10_000)

    assert run_cli(job) == 2
    line = one_line(capsys)
    assert line.startswith("error: bad value red x") and len(line) < 2100 and "more characters" in line


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--devices", "1" * 5000], "expected a whole number from 1 to 4096"),
        (["--devices", str(2**70)], "expected a whole number from 1 to 4096"),
        (["--devices", "-3"], "must be from 1 to 4096"),
        (["--config", ""], "empty path"),
        (["--resume", ""], "empty path"),
        (["--config", "a" * 300], "longer than 255 bytes"),
        (["--config", "a/" * 3000], "longer than 4096 bytes"),
        (["--nope"], "unrecognized arguments"),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_2(argv, expected, capsys):
    with pytest.raises(SystemExit) as info:
        train_multi_gpu.main(argv)
    assert info.value.code == 2
    line = one_line(capsys)
    assert line.startswith("error: ") and expected in line and "--help" in line


@pytest.mark.parametrize("main, argv", [(evaluate.main, ["--run", ""]), (latent.main, [""]),
                                        (compare.main, ["--report", ""])])  # fmt: skip
def test_an_empty_path_never_means_the_working_directory(main, argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and "empty path" in one_line(capsys)


@pytest.mark.parametrize("variable", ["RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "SLURM_PROCID"])
@pytest.mark.parametrize("value", ["abc", "1" * 5000, "-1", "2 3"])
def test_launcher_variables_are_whole_numbers(variable, value, monkeypatch, capsys):
    monkeypatch.setenv(variable, value)
    code = train_multi_gpu.main(["--config", "configs/default.yaml"])
    line = one_line(capsys)
    assert code == 2 and line.startswith(f"error: environment variable {variable}:"), line


@pytest.mark.parametrize(
    "env, argv",
    [
        ({"RANK": "1"}, []),
        ({"RANK": "3", "WORLD_SIZE": "2"}, []),
        ({"RANK": "1", "WORLD_SIZE": "2"}, ["--devices", "1"]),
    ],
)
def test_stray_rank_variables_are_refused_aloud(env, argv, monkeypatch, capsys):
    """Rank variables without a launch (no rendezvous address), or a rank that does not fit its world,
    have no rank 0 to speak for them: this process prints the line."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    code = train_multi_gpu.main(["--config", "configs/default.yaml", *argv])
    line = one_line(capsys)
    assert code == 2 and line.startswith("error: "), line


def test_a_rank_inside_a_launch_is_quiet(monkeypatch):
    from utils.bounds import launch_rank

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    assert launch_rank() == 0  # no launcher's rendezvous: a lone process
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    assert launch_rank() == 1
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert launch_rank() == 0


def test_devices_are_bounded_by_the_machine(tmp_path, tiny_config_file, capsys):
    code = train_multi_gpu.main(["--config", str(tiny_config_file()), "--devices", "4096"])
    line = one_line(capsys)
    assert code == 2 and "processes per CPU core" in line and "use at most" in line, line


def test_argument_types():
    parser = ArgumentParser(prog="p")
    parser.add_argument("--n", type=int_arg(0, 9))
    parser.add_argument("--p", type=path_arg)
    assert parser.parse_args(["--n", " 7 ", "--p", "x/y"]).n == 7


def test_a_command_line_with_a_broken_launcher_variable_fails_in_one_line_before_lightning_loads():
    """Lightning reads RANK as an integer when it is imported; the boundary checks it first."""
    proc = subprocess.run(
        [sys.executable, "train_multi_gpu.py", "--config", "configs/default.yaml"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={"RANK": "abc", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: environment variable RANK: expected a whole number from 0 to 65536, got 'abc'"
    ]


def test_the_traceback_goes_to_the_run_folder_once_it_is_known(tmp_path, capsys):
    from utils.cli import report_to

    def job():
        report_to(tmp_path)
        boom()

    assert run_cli(job) == 1
    path = traceback_file(one_line(capsys))
    assert path.parent == tmp_path
    assert json.dumps(str(path))  # a plain path, printable


@pytest.mark.parametrize(
    "run_config, needle",
    [
        ({"poll-interval": "abc"}, "run config poll-interval"),
        ({"node-wait": 1e300}, "run config node-wait"),
        ({"reply-wait": 0}, "run config reply-wait: must be from 1 to"),
        ({"reply-wait": "a day"}, "run config reply-wait: expected a number"),
        ({"overrides": "name='unclosed"}, "run config overrides"),
    ],
)
def test_the_server_apps_run_config_is_one_line(run_config, needle, capsys):
    from deploy.server_app import _main

    with pytest.raises(UserError):
        _main(None, {"config": "configs/default.yaml", **run_config}, print)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("error: ") and needle in line, line
