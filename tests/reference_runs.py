"""Bitwise references of tiny runs: every algorithm and transport, fingerprinted.

A fingerprint is the SHA-256 of every group of tensors a run leaves behind (each site's weights, its
optimiser state, its best model, the global shared tensors), its ``metrics.csv`` and its
``results.json``. ``tests/data/reference_runs.json`` holds the fingerprints recorded at a known-good
commit, one recording per environment (torch version, CPU identity, thread count: see
:func:`environment`); ``tests/test_reference_runs.py`` re-runs the same tiny configs and compares with
this environment's recording, so that a refactor cannot move a number silently.

    python -m tests.reference_runs record        # (re)record this environment; other recordings are kept
    python -m tests.reference_runs check         # compare with this environment's recording

Run at one torch thread: float reductions depend on the thread count.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
import yaml

from utils.hardware import cpu_identity

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "data" / "reference_runs.json"

def _algorithms() -> tuple[str, ...]:
    """Every registered algorithm and reference, read from the registry (a new one joins by itself)."""
    from fl.options import algorithm_names

    return tuple(algorithm_names())


ALGORITHMS = _algorithms()

# Runs beyond the defaults: every algorithm option away from its default at least once.
VARIANTS: dict[str, dict[str, Any]] = {
    "fedmri-self": {"fl": {"algorithm": "fedmri", "fedmri": {"negatives": "self", "beta": 10.0}}},
    "fedmri-whole": {"fl": {"algorithm": "fedmri", "fedmri": {"share": "whole", "lam": 0.5, "start_round": 1}}},  # noqa: E501
    "fedmri-all_but_head": {"fl": {"algorithm": "fedmri", "head": "conv", "fedmri": {"share": "all_but_head"}}},  # noqa: E501
    "fedavg-samples-flat": {"fl": {"algorithm": "fedavg", "client_weights": "samples", "flat_aggregation": True}},  # noqa: E501
    "fedprox-mu": {"fl": {"algorithm": "fedprox", "fedprox": {"mu": 0.5}}},
    "fedbn-affine": {"fl": {"algorithm": "fedbn"}, "model": {"norm": "instance_affine"}},
    "fedrep-conv": {"fl": {"algorithm": "fedrep", "head": "stage", "fedrep": {"head_epochs": 0.25}}},
    "scaffold-delta": {"fl": {"algorithm": "scaffold", "scaffold": {"variates": "delta"}}, "optim": {"name": "sgd"}},  # noqa: E501
    "flmrcm-options": {
        "fl": {"algorithm": "flmrcm", "flmrcm": {"mode": "features", "target_site": "fastmri", "weight": 0.5,
                                                 "features": 8, "disc_lr": 1e-2, "hidden": 16}}
    },
    "flmrcm-paper-options": {
        "fl": {"algorithm": "flmrcm", "flmrcm": {"target_site": "fastmri", "weight": 0.5, "disc_lr": 1e-2,
                                                 "hidden": 16}}
    },
    "fedmri-dual": {"fl": {"algorithm": "fedmri"}, "model": {"kind": "dual_domain"}},
    "moon-options": {"fl": {"algorithm": "moon", "moon": {"mu": 5.0, "tau": 0.2}}},
    "ditto-options": {"fl": {"algorithm": "ditto", "ditto": {"lam": 1.0, "global_share": 0.25}}},
}  # fmt: skip


def tiny(tmp: Path, name: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The tiny three-site config of the reference runs (2 rounds), with ``extra`` merged in."""
    from tests.conftest import tiny_config_dict

    data = tiny_config_dict(tmp, sites=3, rounds=2)
    data["name"] = name
    data["data"]["cache_dir"] = str(tmp / "cache")
    data["trainer"] = {**data.get("trainer", {}), "precision": "32-true"}  # fingerprints are fp32 anywhere
    for key, value in (extra or {}).items():
        if isinstance(value, dict):
            data.setdefault(key, {})
            _merge(data[key], value)
        else:
            data[key] = value
    return data


def _merge(into: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def reference_configs(tmp: Path) -> dict[str, dict[str, Any]]:
    """Every in-process reference run: name -> config mapping."""
    configs = {a: tiny(tmp, a, {"fl": {"algorithm": a}}) for a in ALGORITHMS}
    configs.update({k: tiny(tmp, k, v) for k, v in VARIANTS.items()})
    return configs


def digest(value: Any) -> str:
    """SHA-256 of a nested structure of tensors and plain values, in sorted key order."""
    h = hashlib.sha256()

    def feed(node: Any) -> None:
        if isinstance(node, torch.Tensor):
            t = node.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(node, dict):
            h.update(b"{")
            for key in sorted(node, key=str):
                h.update(str(key).encode() + b":")
                feed(node[key])
            h.update(b"}")
        elif isinstance(node, (list, tuple)):
            h.update(b"[")
            for item in node:
                feed(item)
            h.update(b"]")
        else:
            h.update(repr(node).encode())

    feed(value)
    return h.hexdigest()[:16]


def fingerprint_run(run_dir: Path) -> dict[str, str]:
    """Group digests of a finished in-process run directory."""
    out: dict[str, str] = {}
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    out["round"] = str(last["round"])
    out["global"] = digest(last["global"])
    for site, state in sorted(last["sites"].items()):
        out[f"sites/{site}/model"] = digest(state["model"])
        out[f"sites/{site}/optimizer"] = digest(state["optimizer"]["state"])
    for site, best in sorted(last["best"].items()):
        out[f"best/{site}"] = digest([best["round"], best["psnr"], best["model"]])
    out["history"] = digest(last["history"])
    for path in sorted((run_dir / "checkpoints").glob("best_*.ckpt")):
        ckpt = torch.load(path, weights_only=True, map_location="cpu")
        out[f"file/{path.name}"] = digest([ckpt["round"], ckpt["val_psnr"], ckpt["model"]])
    out["metrics.csv"] = hashlib.sha256((run_dir / "metrics.csv").read_bytes()).hexdigest()[:16]
    results = json.loads((run_dir / "results.json").read_text())
    out["results.json"] = digest(results)
    return out


def run_in_process(tmp: Path, name: str, data: dict[str, Any]) -> dict[str, str]:
    """Train ``data`` with train.py's entry point in this process and fingerprint the run."""
    import train

    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    code = train.main(["--config", str(path)])
    if code != 0:
        raise RuntimeError(f"reference run {name} exited with {code}")
    return fingerprint_run(Path(data["output_dir"]) / name)


def run_ddp(tmp: Path, name: str, data: dict[str, Any]) -> dict[str, str]:
    """Train ``data`` with train_multi_gpu.py on 2 CPU processes (gloo) and fingerprint the run."""
    import subprocess

    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = subprocess.run(
        [sys.executable, "train_multi_gpu.py", "--devices", "2", "--config", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"reference run {name} exited with {proc.returncode}: {proc.stderr[-2000:]}")
    return fingerprint_run(Path(data["output_dir"]) / name)


def ddp_configs(tmp: Path) -> dict[str, dict[str, Any]]:
    """The multi-process reference runs: both layouts."""
    return {
        "ddp-sites-fedmri": tiny(tmp, "ddp-sites-fedmri", {"fl": {"parallel": "sites"}}),
        "ddp-sites-scaffold": tiny(tmp, "ddp-sites-scaffold", {"fl": {"algorithm": "scaffold"}}),
        "ddp-data-fedmri": tiny(tmp, "ddp-data-fedmri", {"fl": {"parallel": "data"}}),
    }


def flower_configs(tmp: Path) -> dict[str, dict[str, Any]]:
    """The Flower reference runs (every site its own ClientApp, in one process)."""
    return {
        "flower-fedmri": tiny(tmp, "flower-fedmri"),
        "flower-fedmri-self": tiny(tmp, "flower-fedmri-self", {"fl": {"fedmri": {"negatives": "self"}}}),
        "flower-scaffold": tiny(tmp, "flower-scaffold", {"fl": {"algorithm": "scaffold"}}),
    }


def run_flower(tmp: Path, name: str, data: dict[str, Any]) -> dict[str, str]:
    """Run ``data`` on the in-process Flower grid; fingerprint the server's and every site's outputs."""
    from assembly.config import validate_config
    from deploy.local import LocalGrid
    from deploy.server_app import serve

    config = validate_config(copy.deepcopy(data))
    nodes = [
        {"site": s.name, "data-root": config.data.cache_dir, "output-dir": str(tmp / "sites" / s.name)}
        for s in config.sites
    ]
    serve(LocalGrid(nodes), config, log=lambda _: None)
    run_dir = Path(data["output_dir"]) / name
    out: dict[str, str] = {}
    server = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    out["round"] = str(server["round"])
    out["global"] = digest(server["global"])
    out["history"] = digest(server["history"])
    out["metrics.csv"] = hashlib.sha256((run_dir / "metrics.csv").read_bytes()).hexdigest()[:16]
    out["results.json"] = digest(json.loads((run_dir / "results.json").read_text()))
    for site in config.sites:
        site_dir = tmp / "sites" / site.name / name / site.name
        last = torch.load(site_dir / "checkpoints" / "last.ckpt", weights_only=True)
        out[f"sites/{site.name}/model"] = digest(last["sites"][site.name]["model"])
        out[f"sites/{site.name}/optimizer"] = digest(last["sites"][site.name]["optimizer"]["state"])
        best = last["best"][site.name]
        out[f"best/{site.name}"] = digest([best["round"], best["psnr"], best["model"]])
        out[f"site/{site.name}/metrics.csv"] = hashlib.sha256(
            (site_dir / "metrics.csv").read_bytes()
        ).hexdigest()[:16]
    return out


def environment() -> dict[str, Any]:
    """What bitwise equality depends on besides the code."""
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu": cpu_identity(),
        "threads": torch.get_num_threads(),
    }


def recording_for(stored: dict[str, Any], env: dict[str, Any]) -> dict[str, Any] | None:
    """The recording of ``stored`` made in environment ``env``, or None."""
    return next((r for r in stored["recordings"] if r["environment"] == env), None)


def environment_differences(stored: dict[str, Any], env: dict[str, Any]) -> str:
    """What differs between ``env`` and each recorded environment, one clause per recording."""
    clauses = []
    for recording in stored["recordings"]:
        recorded = recording["environment"]
        keys = sorted(set(recorded) | set(env))
        clauses.append(
            ", ".join(f"{k}: recorded {recorded.get(k)!r}, here {env.get(k)!r}" for k in keys
                      if recorded.get(k) != env.get(k))
        )  # fmt: skip
    return "; or ".join(clauses) or "nothing recorded"


def record(tmp: Path, only: list[str] | None = None) -> dict[str, Any]:
    """Run every reference config and return the fingerprints."""
    torch.set_num_threads(1)
    runs = {}
    groups = (
        (reference_configs(tmp), run_in_process),
        (ddp_configs(tmp), run_ddp),
        (flower_configs(tmp), run_flower),
    )
    for configs, runner in groups:
        for name, data in configs.items():
            if only and name not in only:
                continue
            runs[name] = runner(tmp, name, data)
            print(f"recorded {name}", flush=True)
    return {"environment": environment(), "runs": runs}


def differences(found: dict[str, Any], stored: dict[str, Any]) -> list[str]:
    """``run: key`` for every fingerprint of ``found`` that differs from (or is missing in) ``stored``."""
    out = []
    for name, prints in found["runs"].items():
        reference = stored["runs"].get(name)
        if reference is None:
            out.append(f"{name}: no reference")
            continue
        out += [
            f"{name}: {k}" for k in sorted(set(prints) | set(reference)) if prints.get(k) != reference.get(k)
        ]
    return out


def merge_recording(stored: dict[str, Any], found: dict[str, Any], partial: bool) -> dict[str, Any]:
    """``stored`` with ``found`` (one environment's runs) in place of that environment's recording;
    ``partial`` keeps the recorded runs that ``found`` does not have."""
    recordings = [r for r in stored.get("recordings", []) if r["environment"] != found["environment"]]
    previous = recording_for(stored, found["environment"]) if stored.get("recordings") else None
    runs = {**(previous["runs"] if previous and partial else {}), **found["runs"]}
    recordings.append({"environment": found["environment"], "runs": runs})
    return {"recordings": recordings}


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:2] not in (["record"], ["check"]):
        sys.exit("usage: python -m tests.reference_runs record|check [NAME ...]")
    stored = json.loads(REFERENCE.read_text()) if REFERENCE.exists() else {"recordings": []}
    if sys.argv[1] == "check" and recording_for(stored, environment()) is None:
        differing = environment_differences(stored, environment())
        sys.exit(f"no fingerprints recorded in this environment ({differing}); record them with: "
                 "python -m tests.reference_runs record")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        found = record(Path(tmp), sys.argv[2:] or None)
    if sys.argv[1] == "check":
        diff = differences(found, recording_for(stored, found["environment"]))
        print("\n".join(diff) if diff else "all fingerprints match")
        sys.exit(1 if diff else 0)
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    merged = merge_recording(stored, found, partial=bool(sys.argv[2:]))
    REFERENCE.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")
    print(f"wrote {REFERENCE} ({len(merged['recordings'])} environment(s))")
