"""The Flower app deployed on loopback: a SuperLink and two SuperNodes, every one its own process."""

import copy
import csv
import io
import json
import time
from types import SimpleNamespace

import pytest
import torch
import yaml

from assembly.build import Builder
from assembly.config import validate_config
from assembly.setup import in_process
from deploy.processes import Loopback
from tests.conftest import tiny_config_dict
from utils.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

# Measured: 0 (the same floating-point operations in the same order, on one thread in every process).
TOLERANCE = 1e-6


def quiet(_):
    return None


def rows(path):
    return list(csv.DictReader(io.StringIO(path.read_text())))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """Two FedMRI rounds in-process, then the same federation on a loopback deployment."""
    tmp = tmp_path_factory.mktemp("deployment")
    data = tiny_config_dict(tmp)  # FedMRI, negatives: all, 2 sites, 2 rounds, 32x32 images
    reference = validate_config(copy.deepcopy(data) | {"name": "inproc"})
    data["name"] = "flower"
    config = validate_config(copy.deepcopy(data))
    path = tmp / "federation.yaml"
    path.write_text(yaml.safe_dump(data))
    nodes = [
        {"site": s.name, "data-root": config.data.cache_dir, "output-dir": str(tmp / "sites" / s.name)}
        for s in config.sites
    ]
    start = time.monotonic()
    loopback = Loopback(tmp / "flower", nodes, env={"OMP_NUM_THREADS": "1"})
    with loopback:  # the SuperNodes connect while the in-process run trains
        in_process(Builder(reference, log=quiet)).run()  # also generates the sites' data into data.cache_dir
        outcome = loopback.run({"config": str(path), "poll-interval": 0.1}, timeout=300)
    return SimpleNamespace(
        reference=reference,
        config=config,
        outcome=outcome,
        loopback=loopback,
        sites=tmp / "sites",
        seconds=time.monotonic() - start,
    )


def test_a_crashed_server_app_is_reported_although_flwr_run_exits_0(tmp_path):
    loopback = Loopback(tmp_path / "flower", [])  # a SuperLink alone: this run fails before any site
    with loopback:
        failed = loopback.run({"config": str(tmp_path / "missing.yaml")}, timeout=120)
    assert not failed.completed and failed.status == "finished:failed"
    assert "missing.yaml is not a file" in failed.log
    assert loopback.alive() == []


def test_two_fedmri_rounds_across_processes_write_every_output(deployment):
    outcome, config = deployment.outcome, deployment.config
    assert outcome.completed, outcome.log
    run_dir = config.run_dir
    for name in ("config.yaml", "metrics.csv", "traffic.csv", "results.json", "results.md"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "figures" / "val_psnr.png").is_file()
    assert [(r["round"], r["site"], r["split"]) for r in rows(run_dir / "metrics.csv")] == [
        (str(rnd), site, split)
        for rnd in (1, 2)
        for site in ("fastmri", "brats")
        for split in ("train", "val")
    ] + [("2", "fastmri", "test"), ("2", "brats", "test")]
    server = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert server["round"] == 2 and server["global"]
    assert all(n.startswith("encoder.") for n in server["global"])  # the shared encoder only
    assert all(n.startswith("encoder.") for t in server["server"]["previous"].values() for n in t)
    assert not list(run_dir.rglob("best_*.ckpt"))  # no site's model at the server
    for site in ("fastmri", "brats"):
        site_dir = deployment.sites / site / "flower" / site
        best = load_checkpoint(site_dir / "checkpoints" / f"best_{site}.ckpt")
        assert best["site"] == site and any(n.startswith("decoder.") for n in best["model"])
        assert (site_dir / "results.json").is_file() and (site_dir / "figures" / f"{site}.png").is_file()


def test_same_metrics_as_the_in_process_federation(deployment):
    reference, config = deployment.reference, deployment.config
    assert deployment.outcome.completed
    a = json.loads((reference.run_dir / "results.json").read_text())
    b = json.loads((config.run_dir / "results.json").read_text())
    for site in a["sites"]:
        assert a["sites"][site]["best_round"] == b["sites"][site]["best_round"]
        for which in ("model", "zero_filled"):
            for key, value in a["sites"][site][which].items():
                assert b["sites"][site][which][key] == pytest.approx(value, rel=TOLERANCE), (site, which, key)
    ours, theirs = rows(reference.run_dir / "metrics.csv"), rows(config.run_dir / "metrics.csv")
    for x, y in zip(ours, theirs, strict=True):
        for key in ("loss", "nmse", "psnr", "ssim"):
            if x[key]:
                assert float(y[key]) == pytest.approx(float(x[key]), rel=TOLERANCE), (x, y)
    ref = load_checkpoint(reference.run_dir / "checkpoints" / "last.ckpt")
    server = load_checkpoint(config.run_dir / "checkpoints" / "last.ckpt")
    for name, tensor in ref["global"].items():
        assert torch.allclose(server["global"][name], tensor, rtol=TOLERANCE, atol=TOLERANCE), name


def test_accounted_bytes_agree_with_flowers_own_traffic_counter(deployment):
    traffic = rows(deployment.config.run_dir / "traffic.csv")
    sent = sum(int(r["bytes"]) for r in traffic if r["direction"] == "to_site")
    received = sum(int(r["bytes"]) for r in traffic if r["direction"] == "from_site")
    counted = deployment.outcome.record["network-traffic"]
    # Flower also counts its request framing (measured: about 9 % more).
    assert 0.8 * counted["outbound-bytes"] <= sent <= counted["outbound-bytes"]
    assert 0.8 * counted["inbound-bytes"] <= received <= counted["inbound-bytes"]


def test_every_process_was_stopped_by_its_id(deployment):
    assert deployment.loopback.processes and deployment.loopback.alive() == []
    assert all(p.poll() is not None for p in deployment.loopback.processes)
