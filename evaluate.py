"""Test trained site models: each on its own test split, and every model on every site's test split.

    python evaluate.py --run runs/default                     # the best model of each site of a run
    python evaluate.py --run runs/default --weights last      # the weights after the last round
    python evaluate.py --ckpt runs/default/checkpoints/last.ckpt
    python evaluate.py --run runs/default --config configs/other.yaml   # on another config's sites

Writes <out>/evaluation.md, evaluation.csv, evaluation.json (default <out>: <run>/evaluation, or
evaluation/ beside the checkpoint) and figures: cross_site_psnr.png (site i's model on site j's
test data) and cross_site_reconstructions.png (the same slice of each test site through every model).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

from assembly.keys import OptionsAction
from utils.cli import ArgumentParser, path_arg, run_cli

METRICS = ("nmse", "psnr", "ssim")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments: what to evaluate, on which config's sites, where to write."""
    parser = ArgumentParser(description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--run", type=path_arg, help="run directory written by train.py (uses checkpoints/best_<site>.ckpt)"
    )
    source.add_argument(
        "--ckpt", type=path_arg, help="a checkpoint: last.ckpt (every site) or best_<site>.ckpt (one site)"
    )
    parser.add_argument(
        "--config", type=path_arg, help="test on this config's sites instead of the run's own"
    )
    parser.add_argument(
        "--weights", choices=("best", "last"), default="best",
        help="each site's best round by validation PSNR (default), or the weights after the last round",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=path_arg,
        help="output directory (default: <run>/evaluation, or evaluation/ beside --ckpt)",
    )  # fmt: skip
    parser.add_argument("overrides", nargs="*", metavar="key.path=value", help="override the test config")
    parser.add_argument("--options", action=OptionsAction)
    return parser.parse_args(argv)


def evaluate(trained: Any, test_config: Any, out: Path, log: Any = print) -> dict[str, Any]:
    """Cross-site evaluation of ``trained`` on ``test_config``'s sites; writes every output to ``out``."""
    from assembly.build import quiet_lightning
    from assembly.evaluation import (
        build_sites,
        figure_slice,
        new_module,
        reconstruct_slice,
        score_model,
        summarise,
    )
    from utils.figures import heatmap, reconstruction_grid

    quiet_lightning()
    start = time.perf_counter()
    sites = build_sites(test_config)
    model_sites, test_sites = list(trained.models), list(sites)
    log(f"evaluating {len(model_sites)} model(s) from {trained.source} on {len(test_sites)} test site(s)")
    log(f"weights: {trained.describe()}")
    matrix: dict[str, dict[str, dict[str, float]]] = {}
    zero_filled: dict[str, dict[str, float]] = {}
    pictures: dict[str, dict[str, Any]] = {}
    own_volumes: dict[str, dict[str, Any]] = {}  # per volume, each site's model on its own test data
    slices = {name: figure_slice(data) for name, data in sites.items()}
    for m, model_site in enumerate(model_sites, 1):
        module = new_module(trained.config, trained.models[model_site])
        matrix[model_site], pictures[model_site] = {}, {}
        for test_site, data in sites.items():
            per_volume = score_model(test_config, module, data)
            matrix[model_site][test_site] = summarise(per_volume, "model")
            zero_filled.setdefault(test_site, summarise(per_volume, "zero_filled"))
            if test_site == model_site:
                own_volumes[test_site] = per_volume
            pictures[model_site][test_site] = reconstruct_slice(module, data, *slices[test_site])
        row = " | ".join(f"{t} {matrix[model_site][t]['psnr']:.2f}" for t in test_sites)
        took = time.perf_counter() - start
        log(f"[{m}/{len(model_sites)}] model of {model_site}: PSNR {row} [{took:.0f} s]")

    results = {
        "source": trained.source,
        "weights": trained.weights,
        "model_rounds": trained.rounds,
        "test_sites": test_sites,
        "own": {s: matrix[s][s] for s in model_sites if s in sites},
        "zero_filled": zero_filled,
        "cross_site": matrix,
        "own_volumes": own_volumes,
        "slices": {s: {"volume": v, "slice": i} for s, (v, i) in slices.items()},
    }
    out.mkdir(parents=True, exist_ok=True)
    _write(results, out)
    figures = out / "figures"
    psnr = [[matrix[m][t]["psnr"] for t in test_sites] for m in model_sites]
    heatmap(figures / "cross_site_psnr.png", psnr, model_sites, test_sites, title="test PSNR (dB)")
    reconstruction_grid(
        figures / "cross_site_reconstructions.png",
        test_sites,
        [pictures[model_sites[0]][t]["target"] for t in test_sites],
        [("zero-filled", [pictures[model_sites[0]][t]["zero_filled"] for t in test_sites])]
        + [(f"model of {m}", [pictures[m][t]["recon"] for t in test_sites]) for m in model_sites],
        title="each test site's figure slice through every site's model",
    )
    log((out / "evaluation.md").read_text())
    log(f"wrote {out}/evaluation.md, .csv, .json and figures/ [{time.perf_counter() - start:.0f} s]")
    return results


def markdown(results: dict[str, Any]) -> str:
    """The own-test-split table and the cross-site PSNR and SSIM matrices."""
    from utils.tables import cell, markdown, metric_table

    tests = results["test_sites"]
    weights = {"best": "each site's best round", "last": "the last round's weights"}
    which = weights.get(results.get("weights", "best"), results.get("weights"))
    parts = [f"# Evaluation of {results['source']} ({which})\n"]
    own = results["own"]
    if own:
        parts.append("## Each site's model on its own test split (mean ± std over test volumes)\n")
        rows = []
        for site, m in own.items():
            zf = results["zero_filled"][site]
            rows.append(
                [site, str(results["model_rounds"].get(site, "")), str(m["volumes"])]
                + [cell(m[k], m[f"{k}_std"], 4 if k != "psnr" else 2) for k in METRICS]
                + [cell(zf["psnr"], zf["psnr_std"], 2)]
            )
        parts.append(
            markdown(["site", "round", "volumes", "NMSE", "PSNR (dB)", "SSIM", "zero-filled PSNR (dB)"], rows)
        )
    for metric in ("psnr", "ssim"):
        title = "PSNR (dB)" if metric == "psnr" else "SSIM"
        parts.append(
            f"\n## Cross-site {title}: rows are models, columns test sites (best per column in bold)\n"
        )
        labels = [f"model of {m}" for m in results["cross_site"]]
        means = [[results["cross_site"][m][t][metric] for t in tests] for m in results["cross_site"]]
        zf = [
            [
                "zero-filled",
                *[cell(results["zero_filled"][t][metric], None, 4 if metric == "ssim" else 2) for t in tests],
            ]
        ]
        parts.append(metric_table(labels, tests, means, None, metric, first="model", extra_rows=zf))
    return "\n".join(parts)


def _write(results: dict[str, Any], out: Path) -> None:
    from utils.io import atomic_write_text

    atomic_write_text(out / "evaluation.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(out / "evaluation.md", markdown(results))
    buffer = io.StringIO()
    fields = ["model_site", "test_site", "volumes"] + [f"{k}{s}" for k in METRICS for s in ("", "_std")]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for model_site, row in results["cross_site"].items():
        for test_site, m in row.items():
            writer.writerow(
                {"model_site": model_site, "test_site": test_site, **{k: m[k] for k in fields[2:]}}
            )
    for test_site, m in results["zero_filled"].items():
        writer.writerow(
            {"model_site": "zero-filled", "test_site": test_site, **{k: m[k] for k in fields[2:]}}
        )
    atomic_write_text(out / "evaluation.csv", buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    """Entry point: load the models and the test config, evaluate, write the outputs."""
    args = parse_args(argv)

    def job() -> None:
        from assembly.config import load_config
        from assembly.evaluation import load_ckpt, load_run
        from utils.paths import check_writable_dir

        trained = load_run(args.run, args.weights) if args.run else load_ckpt(args.ckpt, args.weights)
        if args.config:
            test_config = load_config(args.config, args.overrides)
        elif args.overrides:
            test_config = load_config(overrides=args.overrides, base=trained.config.to_dict())
        else:
            test_config = trained.config
        default_out = Path(args.run) / "evaluation" if args.run else Path(args.ckpt).parent / "evaluation"
        out = Path(args.out) if args.out else default_out
        check_writable_dir(out, "--out")  # before any work: not a file, not below one, writable
        evaluate(trained, test_config, out)

    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
