"""Inputs a hostile user tries, one class at a time: huge numbers, special files in place of files and
folders, patterns that backtrack, tampered checkpoints, impossible result files, temporary files of
killed writes. Each ends in one line and exit 2 (within a time bound), through the commands' own entry
points, in this process."""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import time
from pathlib import Path

import pytest
import torch
import yaml

import compare
import evaluate
import train
from tests.conftest import tiny_config_dict
from utils.checkpoint import CHECKSUM_KEY, load_checkpoint, save_checkpoint, tensor_checksum
from utils.errors import UserError

HUGE = "1" * 5000  # Python refuses to convert more than 4,300 digits


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, dict]:
    """A finished one-round tiny run, copied afresh for each test by :func:`run_copy`."""
    root = tmp_path_factory.mktemp("hostile")
    config = tiny_config_dict(root, rounds=1)
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    assert train.main(["--config", str(path)]) == 0
    return root / "runs" / "tiny", config


@pytest.fixture
def run_copy(finished, tmp_path) -> Path:
    run_dir, _ = finished
    copy_dir = tmp_path / "runs" / "tiny"
    shutil.copytree(run_dir, copy_dir)
    saved = yaml.safe_load((copy_dir / "config.yaml").read_text())
    saved["output_dir"] = str(tmp_path / "runs")
    (copy_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    return copy_dir


@pytest.fixture
def config_file(finished, tmp_path) -> Path:
    _, config = finished
    config = {**copy.deepcopy(config), "output_dir": str(tmp_path / "new-runs")}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def fails_in_one_line(capsys, call, *needles: str, seconds: float = 60) -> str:
    """``call()`` returns (or exits with) 2 within ``seconds`` and prints one error line with ``needles``."""
    capsys.readouterr()
    start = time.perf_counter()
    try:
        code = call()
    except SystemExit as exit_:
        code = exit_.code
    took = time.perf_counter() - start
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    assert took < seconds, took
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# -- numbers -----------------------------------------------------------------------------------------
def test_a_huge_integer_override_is_one_line(capsys, config_file):
    fails_in_one_line(capsys, lambda: train.main(["--config", str(config_file), f"seed={HUGE}"]), "seed")


def test_a_huge_integer_in_a_config_file_is_one_line(capsys, config_file):
    config_file.write_text(config_file.read_text().replace("seed: 0", f"seed: {HUGE}"))
    fails_in_one_line(capsys, lambda: train.main(["--config", str(config_file)]), str(config_file), "digits")


def test_a_huge_integer_in_a_runs_config_is_one_line_on_resume(capsys, run_copy):
    saved = run_copy / "config.yaml"
    saved.write_text(saved.read_text().replace("seed: 0", f"seed: {HUGE}"))
    fails_in_one_line(capsys, lambda: train.main(["--resume", str(run_copy)]), "config.yaml")


def test_a_huge_integer_evaluate_override_is_one_line(capsys, run_copy):
    fails_in_one_line(capsys, lambda: evaluate.main(["--run", str(run_copy), f"seed={HUGE}"]), "seed")


def test_a_huge_integer_in_data_given_whole_is_one_line(finished):
    from assembly.config import validate_config

    _, config = finished
    with pytest.raises(UserError, match="seed"):
        validate_config({**config, "seed": int("9" * 4000) ** 2})


# -- paths and special files ---------------------------------------------------------------------------
def special(kind: str, path: Path) -> Path:
    """``path`` made into a FIFO, a link to /dev/zero, a folder, or a link loop."""
    path.unlink(missing_ok=True) if not path.is_dir() or path.is_symlink() else shutil.rmtree(path)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "devzero":
        path.symlink_to("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    elif kind == "loop":
        path.symlink_to(path.name)
    return path


KINDS = ["fifo", "devzero", "folder", "loop"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_config_that_is_no_regular_file_is_one_line(capsys, tmp_path, kind):
    path = special(kind, tmp_path / "c.yaml")
    fails_in_one_line(capsys, lambda: train.main(["--config", str(path)]), "c.yaml", seconds=20)


@pytest.mark.parametrize("kind", KINDS)
def test_a_metrics_csv_that_is_no_regular_file_is_one_line_before_training(capsys, run_copy, kind):
    special(kind, run_copy / "metrics.csv")
    fails_in_one_line(capsys, lambda: train.main(["--resume", str(run_copy)]), "metrics.csv", seconds=20)


def test_a_metrics_csv_with_a_line_of_megabytes_is_one_line(capsys, run_copy):
    (run_copy / "metrics.csv").write_text("round,site,split\n" + "x" * 200_000 + "\n")
    fails_in_one_line(capsys, lambda: train.main(["--resume", str(run_copy)]), "metrics.csv", "line 2")


@pytest.mark.parametrize("folder", ["tb", "figures", "checkpoints"])
def test_a_file_in_place_of_a_runs_folder_is_one_line_before_training(capsys, run_copy, folder):
    shutil.rmtree(run_copy / folder)
    (run_copy / folder).write_text("x")
    argv = ["--resume", str(run_copy), "fl.rounds=2", "--force"]
    fails_in_one_line(capsys, lambda: train.main(argv), folder, seconds=20)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--config", "a" * 300], "longer than 255 bytes"),
        (["--resume", ""], "empty path"),
        (["--config", ""], "empty path"),
    ],
)
def test_paths_no_filesystem_holds_are_one_line(capsys, argv, needle):
    fails_in_one_line(capsys, lambda: train.main(argv), needle, seconds=5)


def test_an_empty_run_for_evaluate_is_one_line(capsys):
    fails_in_one_line(capsys, lambda: evaluate.main(["--run", ""]), "empty path", seconds=5)


def folder_site(config_file: Path, tmp_path: Path, **source) -> Path:
    config = yaml.safe_load(config_file.read_text())
    config["sites"][0]["source"] = {"kind": "folder", "root": str(tmp_path / "data"), **source}
    (tmp_path / "data" / "s1").mkdir(parents=True, exist_ok=True)
    config_file.write_text(yaml.safe_dump(config))
    return config_file


@pytest.mark.parametrize("kind", ["fifo", "devzero", "long"])
def test_a_manifest_that_is_no_regular_file_is_one_line(capsys, config_file, tmp_path, kind):
    manifest = tmp_path / ("m" * 300 if kind == "long" else "manifest.csv")
    if kind != "long":
        special(kind, manifest)
    path = folder_site(config_file, tmp_path, manifest=str(manifest))
    fails_in_one_line(capsys, lambda: train.main(["--config", str(path)]), "manifest", seconds=30)


def test_a_volume_file_that_is_a_fifo_is_reported_not_read(capsys, config_file, tmp_path):
    path = folder_site(config_file, tmp_path)
    os.mkfifo(tmp_path / "data" / "s1" / "t1.npy")
    fails_in_one_line(capsys, lambda: train.main(["--config", str(path)]), "t1.npy", "FIFO", seconds=30)


def test_a_link_loop_and_an_unreadable_folder_under_a_data_root_are_reported(tmp_path, monkeypatch):
    from utils.paths import walk

    (tmp_path / "s1" / "series").mkdir(parents=True)
    (tmp_path / "s1" / "loop").symlink_to(tmp_path)
    (tmp_path / "s2").symlink_to("s2")
    real_scandir = os.scandir

    def scandir(path):  # root reads every folder, so the refusal is simulated
        if str(path).endswith("series"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    entries, problems = walk(tmp_path, "source.root")
    reasons = dict(problems)
    assert "loop" in reasons[str(tmp_path / "s1" / "loop")]
    assert "loop" in reasons[str(tmp_path / "s2")]
    assert "Permission denied" in reasons[str(tmp_path / "s1" / "series")]
    assert [e[0] for e in entries] == ["s1", "s1/series"]


# -- patterns ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "subject", ["(a+)+", "(a*)*b", "(x+x+)+y", "a{99999999999}", "a" * 2000, "(?:a?){30}a{30}"]
)
def test_a_pattern_that_can_backtrack_forever_is_refused_with_the_config(
    capsys, config_file, tmp_path, subject
):
    path = folder_site(config_file, tmp_path, pattern=f"(?P<subject>{subject})/(?P<contrast>x)")
    argv = ["--config", str(path)]
    fails_in_one_line(capsys, lambda: train.main(argv), "sites.0.source.pattern", seconds=30)


def test_matching_is_bounded_in_time_whatever_the_pattern(capsys, config_file, tmp_path, monkeypatch):
    """(a|aa)+ passes the structural check; on a 61-character name it would run for hours."""
    monkeypatch.setattr("data.sources.patterns.MATCH_SECONDS", 1.0)
    path = folder_site(config_file, tmp_path, pattern="(?P<subject>(?:a|aa)+)/(?P<contrast>x)")
    (tmp_path / "data" / ("a" * 61 + "b")).mkdir()
    (tmp_path / "data" / ("a" * 61 + "b") / "x").write_text("")
    argv = ["--config", str(path)]
    fails_in_one_line(capsys, lambda: train.main(argv), "source.pattern", "longer than 1 s", seconds=30)


# -- checkpoints ---------------------------------------------------------------------------------------
def rewrite(path: Path, change, keep_checksum: bool = True) -> None:
    """``change`` the checkpoint at ``path``; keep its old checksum (a bit flip) or write a new one."""
    ckpt = torch.load(path, weights_only=True)
    stated = ckpt.pop(CHECKSUM_KEY)
    change(ckpt)
    if keep_checksum:
        torch.save({**ckpt, CHECKSUM_KEY: stated}, path)
    else:
        save_checkpoint(ckpt, path)


RESUME = ["fl.rounds=2", "--force"]


def test_a_checkpoint_without_its_checksum_is_refused(capsys, run_copy):
    last = run_copy / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    del ckpt[CHECKSUM_KEY]
    next(iter(ckpt["sites"].values()))["model"]["encoder.down.0.layers.0.weight"].fill_(math.nan)
    torch.save(ckpt, last)
    fails_in_one_line(capsys, lambda: train.main(["--resume", str(run_copy), *RESUME]), "no checksum")


@pytest.mark.parametrize(
    "where",
    ["round", "history", "rng.python.state", "best", "config.seed", "timing.seconds"],
)
def test_the_checksum_covers_every_entry(run_copy, where):
    last = run_copy / "checkpoints" / "last.ckpt"

    def flip(ckpt):
        *parents, leaf = where.split(".")
        node = ckpt
        for part in parents:
            node = node[part]
        value = node[leaf]
        if isinstance(value, int):
            node[leaf] = value + 1
        elif isinstance(value, list):
            value[0] = value[0] + 1 if isinstance(value[0], (int, float)) else value[0]
        elif isinstance(value, dict):
            first = next(iter(value))
            value[first] = {**value[first], "round": 0} if isinstance(value[first], dict) else value[first]
            if isinstance(value[first], list):
                value[first] = value[first][:-1]

    rewrite(last, flip)
    with pytest.raises(UserError, match="do not match the checksum"):
        load_checkpoint(last)


def test_a_checkpoint_of_the_last_version_still_loads(run_copy):
    """Its checksum covers the tensors alone: it is checked as far as that goes."""
    last = run_copy / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    ckpt[CHECKSUM_KEY] = tensor_checksum(ckpt)
    torch.save(ckpt, last)
    assert load_checkpoint(last)["round"] == 1


@pytest.mark.parametrize("round_", [0, 10**30, 2, -1, True])
def test_a_round_that_does_not_fit_the_history_is_refused(capsys, run_copy, round_):
    last = run_copy / "checkpoints" / "last.ckpt"
    rewrite(last, lambda c: c.__setitem__("round", round_), keep_checksum=False)
    fails_in_one_line(capsys, lambda: train.main(["--resume", str(run_copy), *RESUME]), "round")


def test_a_best_entry_that_is_a_tensor_is_refused_by_evaluate(capsys, run_copy):
    last = run_copy / "checkpoints" / "last.ckpt"
    rewrite(last, lambda c: c["best"].__setitem__(next(iter(c["best"])), torch.zeros(3)), keep_checksum=False)
    fails_in_one_line(capsys, lambda: evaluate.main(["--ckpt", str(last)]), "last.ckpt")


def test_a_best_model_with_nan_weights_is_refused_by_evaluate(capsys, run_copy):
    best = next((run_copy / "checkpoints").glob("best_*.ckpt"))
    rewrite(best, lambda c: next(iter(c["model"].values())).fill_(math.nan), keep_checksum=False)
    fails_in_one_line(capsys, lambda: evaluate.main(["--run", str(run_copy)]), "NaN")


def test_swapped_best_models_are_refused_by_evaluate(capsys, run_copy):
    a, b = sorted((run_copy / "checkpoints").glob("best_*.ckpt"))
    data = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(data)
    fails_in_one_line(capsys, lambda: evaluate.main(["--run", str(run_copy)]), "holds the model of site")


def test_a_checkpoint_that_is_a_fifo_is_one_line(capsys, run_copy):
    special("fifo", next((run_copy / "checkpoints").glob("best_*.ckpt")))
    fails_in_one_line(capsys, lambda: evaluate.main(["--run", str(run_copy)]), "best_", seconds=30)


# -- result files --------------------------------------------------------------------------------------
def study(tmp_path: Path, change=None) -> Path:
    folder = tmp_path / "study"
    (folder / "runs").mkdir(parents=True)
    volume = {"model": {"psnr": 30.0, "ssim": 0.9, "nmse": 0.01}, "zero_filled": {"psnr": 20.0, "ssim": 0.5,
                                                                                  "nmse": 0.1}}  # fmt: skip
    run = {"overrides": [], "sites": {"a": {"best_round": 1, "volumes": {"v1": volume}}},
           "val_psnr": {"a": [1.0]}, "communication": None, "timing": None}  # fmt: skip
    manifest = {"command": "x", "config": "c", "rounds": 1, "local_epochs": 1, "sites": ["a"], "seeds": [0],
                "rows": [{"label": "FedAvg", "families": ["comparison"], "algorithm": "fedavg",
                          "runs": {"0": "fedavg-s0"}}]}  # fmt: skip
    text = change(manifest, run, folder) if change else None
    (folder / "manifest.json").write_text(text if isinstance(text, str) else json.dumps(manifest))
    (folder / "runs" / "fedavg-s0.json").write_text(json.dumps(run))
    return folder


def volume_scores(run: dict) -> dict:
    return run["sites"]["a"]["volumes"]["v1"]["model"]


CHANGES = {
    "nan": (lambda m, r, f: volume_scores(r).__setitem__("psnr", math.nan), "psnr"),
    "inf": (lambda m, r, f: volume_scores(r).__setitem__("nmse", math.inf), "nmse"),
    "1e308": (lambda m, r, f: volume_scores(r).__setitem__("psnr", 1e308), "psnr"),
    "ssim above 1": (lambda m, r, f: volume_scores(r).__setitem__("ssim", 3.0), "ssim"),
    "empty volumes": (lambda m, r, f: r["sites"]["a"].__setitem__("volumes", {}), "volumes"),
    "negative best round": (lambda m, r, f: r["sites"]["a"].__setitem__("best_round", -3), "best_round"),
    "best round past the rounds": (
        lambda m, r, f: r["sites"]["a"].__setitem__("best_round", 9),
        "best_round",
    ),
    "nan curve": (lambda m, r, f: r["val_psnr"].__setitem__("a", [math.nan]), "val_psnr"),
    "long run name": (lambda m, r, f: m["rows"][0]["runs"].__setitem__("0", "k" * 300), "not a run name"),
    "nested deep": (lambda m, r, f: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "zero rounds": (lambda m, r, f: m.__setitem__("rounds", 0), "rounds"),
    "comparison.md a folder": (lambda m, r, f: (f / "comparison.md").mkdir(), "comparison.md"),
    "manifest a fifo": (lambda m, r, f: os.mkfifo(f / "manifest.json.fifo") or "x", None),
}


@pytest.mark.parametrize("name", list(CHANGES))
def test_a_damaged_results_folder_is_one_line_naming_file_and_field(capsys, tmp_path, name):
    change, needle = CHANGES[name]
    folder = study(tmp_path, change)
    if name == "manifest a fifo":
        (folder / "manifest.json").unlink()
        os.replace(folder / "manifest.json.fifo", folder / "manifest.json")
        needle = "FIFO"
    fails_in_one_line(capsys, lambda: compare.main(["--report", str(folder)]), needle, seconds=30)


def test_a_sound_results_folder_is_reported(tmp_path):
    assert compare.main(["--report", str(study(tmp_path))]) == 0


# -- temporary files of killed writes -----------------------------------------------------------------
def test_temporary_files_of_killed_writes_are_removed_when_the_run_is_taken_again(run_copy):
    left = [run_copy / ".results.json.a1b2c3d4.tmp", run_copy / "figures" / ".brats.png.zz_x1234.tmp",
            run_copy / "checkpoints" / ".last.ckpt.q9w8e7r6.tmp"]  # fmt: skip
    for path in left:
        path.write_text("half")
    kept = run_copy / "notes.tmp"
    kept.write_text("mine")
    assert train.main(["--resume", str(run_copy)]) == 0
    assert not any(path.exists() for path in left) and kept.exists()


@pytest.mark.parametrize("chans", ["4096", "2147483647"])
def test_a_network_too_large_for_the_memory_is_refused_before_it_is_built(capsys, config_file, chans):
    fails_in_one_line(capsys, lambda: train.main(["--config", str(config_file), f"model.chans={chans}"]),
                      "model.chans", seconds=30)  # fmt: skip
