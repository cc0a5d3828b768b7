"""An algorithm defined outside the project (here: a few lines in a test module) runs through the
in-process loop, under DDP on CPU/gloo and in compare.py, with no edit to any project file: its options,
its server half, and a site half whose local plan fills hooks (before the fit, after every optimiser
step, after the fit with a value to log)."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml

import compare
from assembly.build import Builder
from assembly.config import validate_config
from assembly.setup import in_process
from fl.algorithms import ALGORITHMS, register
from fl.algorithms.base import AlgorithmOptions, Server
from study.runner import run_all
from study.variants import choose, labels, variants
from tests.conftest import ROOT, tiny_config_dict

PLUGIN = '''
from pydantic import Field

from fl.algorithms import register
from fl.algorithms.base import AlgorithmOptions, Client, LocalPlan, Phase, Server


class EverythingOptions(AlgorithmOptions):
    """Options of a test algorithm (unused by its halves)."""

    note: str = Field("plain", description="a value that must reach the server half")


class CountingClient(Client):
    """Trains plainly; counts its optimiser steps with a hook per step and logs the count."""

    def plan(self, rnd, payload, model, epochs):
        rates = []
        return LocalPlan(
            [Phase(epochs)],
            before_fit=lambda model: rates.clear(),
            after_step=lambda model, lr: rates.append(lr),
            after_fit=lambda model: {"hooked_steps": float(len(rates)), "hooked_lr": rates[-1]},
        )


@register
class Everything(Server):
    """Share every weight, train plainly: FedAvg under another name."""

    name = "everything"
    label = "Everything (test)"
    shared_patterns = ("*",)
    Options = EverythingOptions
    client = CountingClient
'''


def quiet(_):
    return None


@pytest.fixture
def everything(tmp_path, monkeypatch):
    """The plugin module written to a folder on sys.path and imported (registered); removed afterwards."""
    (tmp_path / "plugin_everything.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    module = importlib.import_module("plugin_everything")
    yield module
    ALGORITHMS.pop("everything", None)
    sys.modules.pop("plugin_everything", None)


def checkpoint(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


def test_registered_algorithm_trains_in_process_like_the_algorithm_it_copies(everything, tmp_path):
    data = tiny_config_dict(tmp_path)
    mine = validate_config({**data, "name": "mine", "fl": {**data["fl"], "algorithm": "everything",
                                                          "everything": {"note": "reached"}}})  # fmt: skip
    assert mine.fl.options().note == "reached"
    assert Builder(mine).server(Builder(mine).module().model).options.note == "reached"
    run = in_process(Builder(mine, log=quiet))
    summaries = []
    report = run.reporter.round
    run.reporter.round = lambda rnd, summary, lr: (summaries.append((summary, lr)), report(rnd, summary, lr))
    results = run.run()
    assert len(summaries) == mine.fl.rounds
    for summary, lr in summaries:  # the hooks ran at every step, and the logged values reach the rows
        for values in summary.values():
            assert values["train"]["hooked_steps"] == values["steps"] > 0
            assert values["train"]["hooked_lr"] == lr
    fedavg = validate_config({**data, "name": "fedavg", "fl": {**data["fl"], "algorithm": "fedavg"}})
    reference = in_process(Builder(fedavg, log=quiet)).run()
    assert results["algorithm"] == "everything"
    assert results["sites"] == reference["sites"]
    ours, theirs = checkpoint(mine.run_dir), checkpoint(fedavg.run_dir)
    for site, state in ours["sites"].items():
        assert all(torch.equal(t, theirs["sites"][site]["model"][n]) for n, t in state["model"].items())


def test_registered_algorithm_appears_in_compare_all(everything, tmp_path):
    assert "everything" in labels()
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path, rounds=1)))
    args = compare.parse_args(["--config", str(config), "--algorithms", "all", "--name", "all"])
    from assembly.config import load_config

    chosen = choose(args.algorithms, list(labels()), "algorithms")
    planned = variants(chosen, [], load_config(config), [1])
    assert "everything" in [v.key for v in planned]
    options = compare.study_options(["--config", str(config), "--algorithms", "everything", "--name", "one"])
    data = run_all(options, log=quiet)
    assert "Everything (test)" in data["methods"]


@pytest.mark.slow
def test_registered_algorithm_runs_under_ddp(everything, tmp_path):
    """torchrun starts a launcher that imports the plugin, then train_multi_gpu.py's main on each rank."""
    launcher = tmp_path / "launch.py"
    launcher.write_text(
        "import sys\n"
        f"sys.path[:0] = [{str(ROOT)!r}, {str(tmp_path)!r}]\n"
        "import plugin_everything  # registers the algorithm\n"
        "import train_multi_gpu\n"
        "sys.exit(train_multi_gpu.main())\n"
    )
    data = tiny_config_dict(tmp_path)
    data["fl"]["algorithm"] = "everything"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**data, "name": "ddp"}))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        str(launcher),
        "--config",
        str(path),
    ]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    single = validate_config({**data, "name": "single"})
    in_process(Builder(single, log=quiet)).run()
    ddp, reference = checkpoint(tmp_path / "runs" / "ddp"), checkpoint(single.run_dir)
    for site, state in reference["sites"].items():
        assert all(torch.equal(t, ddp["sites"][site]["model"][n]) for n, t in state["model"].items())
    results = json.loads((tmp_path / "runs" / "ddp" / "results.json").read_text())
    assert results["algorithm"] == "everything"


def test_register_refuses_a_second_algorithm_of_the_same_name():
    class Impostor(Server):
        name = "fedavg"
        label = "not FedAvg"

    with pytest.raises(ValueError, match="registered twice"):
        register(Impostor)
    assert AlgorithmOptions  # the base every algorithm's options derive from
