"""End to end through the command line: a 2-site, 2-round federation writes every output."""

import csv
import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def run_train(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "train.py", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_two_sites_two_rounds_write_every_output(tiny_config_file, tmp_path):
    proc = run_train("--config", tiny_config_file())
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "tiny"
    for name in [
        "config.yaml",
        "metrics.csv",
        "results.json",
        "results.md",
        "checkpoints/last.ckpt",
        "checkpoints/best_fastmri.ckpt",
        "checkpoints/best_brats.ckpt",
        "figures/fastmri.png",
        "figures/brats.png",
        "figures/val_psnr.png",
    ]:
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    assert list((run / "tb").glob("events.out.tfevents.*"))

    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert {(r["round"], r["site"], r["split"]) for r in rows if r["split"] != "test"} == {
        (str(r), s, split) for r in (1, 2) for s in ("fastmri", "brats") for split in ("train", "val")
    }
    assert {r["site"] for r in rows if r["split"] == "test"} == {"fastmri", "brats"}
    assert all(float(r["psnr"]) > 0 for r in rows if r["split"] in ("val", "test"))

    results = json.loads((run / "results.json").read_text())
    assert set(results["sites"]) == {"fastmri", "brats"}
    for site in results["sites"].values():
        assert site["best_round"] in (1, 2)
        for which in ("model", "zero_filled"):
            assert {"nmse", "psnr", "ssim"} <= set(site[which])
    assert "zero-filled" in (run / "results.md").read_text()

    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert {"format", "round", "config", "global", "server", "sites", "best", "history", "rng"} <= set(ckpt)
    assert ckpt["format"] == 2 and ckpt["round"] == 2
    assert set(ckpt["sites"]) == set(ckpt["best"]) == {"fastmri", "brats"}
    assert {"model", "optimizer", "client"} <= set(ckpt["sites"]["brats"])
    assert {"round", "psnr", "model"} <= set(ckpt["best"]["brats"])
    assert set(ckpt["server"]) == {"previous"}  # FedMRI's sites' encoders of the last round
    assert ckpt["global"] and all(n.startswith("encoder.") for n in ckpt["global"])
    assert "round 2/2" in proc.stdout


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("sites.0.mask.acceleration=0.5", "sites.0.mask.acceleration"),
        ("fl.rounds=0", "fl.rounds"),
        ("fl.algorithm=nope", "fl.algorithm"),
    ],
)
def test_bad_config_values_exit_2_with_one_line(tiny_config_file, override, key):
    proc = run_train("--config", tiny_config_file(), override)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and lines[0].startswith("error:")
