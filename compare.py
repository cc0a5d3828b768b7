"""Run several algorithms and FedMRI ablations on the same data and seed, then tabulate and plot them.

    python compare.py --config configs/default.yaml --algorithms fedmri,fedavg,fedprox,singleset
    python compare.py --config configs/default.yaml --algorithms fedmri --ablations beta,negatives fl.rounds=5
    python compare.py --algorithms all --ablations all --name comparison --jobs 2

Every variant is the config plus overrides (the same data, seed and schedule), trained with
train.py's code into <output_dir>/<name>/runs/<variant>/. A run whose results.json exists and whose
config.yaml equals the variant's resolved config is reused, and one that was interrupted continues
after its last completed round, so an interrupted comparison picks up where it stopped (--force
retrains from scratch). Writes <output_dir>/<name>/comparison.md, comparison.csv,
comparison.json and figures/: psnr_per_site.png (PSNR per site and method), reconstructions.png
and errors.png (the same test slice of every site through every method), ablation_<kind>.png.

Ablations (FedMRI variants): sharing (encoder / whole model / all but the head, each with the
contrastive term), contrastive (with and without it), beta (1, 10, 100), negatives (all / self),
local_epochs (the config's E and 2E, or --local-epochs), domain (FedMRI and FedAvg with the image
U-Net and with the dual-domain cascade, model.kind=dual_domain).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.cli import run_cli

DEFAULT_CONFIG = "configs/default.yaml"
METRICS = ("nmse", "psnr", "ssim")


def labels() -> dict[str, str]:
    """Every algorithm ``fl.algorithm`` accepts (registered ones included), with its table label."""
    from fl.options import algorithm_label, algorithm_names

    return {name: algorithm_label(name) for name in algorithm_names()}


ABLATIONS = ("sharing", "contrastive", "beta", "negatives", "local_epochs", "domain")
TITLES = {"domain": "image only vs dual domain (FedMRI and FedAvg)"}


@dataclass
class Variant:
    """One configuration to train: a label for the tables, a run name and its overrides."""

    label: str
    key: str
    overrides: list[str]
    families: list[str] = field(default_factory=list)  # "comparison" and/or ablation names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments: the config, what to compare, where to write, overrides."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML config (default: {DEFAULT_CONFIG})")
    parser.add_argument(
        "--algorithms",
        default="",
        help="comma-separated algorithms, or 'all' (every registered one: "
        "fedmri, fedavg, fedprox, ..., centralized, transfer)",
    )
    parser.add_argument(
        "--ablations",
        default="",
        help="comma-separated FedMRI ablations, or 'all' (" + ", ".join(ABLATIONS) + ")",
    )
    parser.add_argument("--local-epochs", default="", help="local epochs for that ablation, e.g. 1,2,5")
    parser.add_argument(
        "--name", default="comparison", help="output folder under output_dir (default: comparison)"
    )
    parser.add_argument("--force", action="store_true", help="retrain runs that are already complete")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs trained at once, each in its own process with CPUs // jobs torch threads "
        "(OMP_NUM_THREADS, when set, fixes that number); default 1",
    )
    parser.add_argument("overrides", nargs="*", metavar="key.path=value", help="overrides for every run")
    return parser.parse_args(argv)


def _split(text: str, allowed: tuple[str, ...] | list[str], what: str) -> list[str]:
    from utils.errors import UserError

    items = [t.strip() for t in text.split(",") if t.strip()]
    if items == ["all"]:
        return list(allowed)
    unknown = [t for t in items if t not in allowed]
    if unknown:
        raise UserError(f"--{what}: unknown {', '.join(unknown)}; expected some of {', '.join(allowed)}")
    return items


def variants(
    algorithms: list[str], ablations: list[str], base: Any, local_epochs: list[int]
) -> list[Variant]:
    """The variants to train, in table order; FedMRI ablations override ``fl.fedmri.*``."""
    names = labels()
    out = [Variant(names[a], a, [f"fl.algorithm={a}"], ["comparison"]) for a in algorithms]
    fedmri = ["fl.algorithm=fedmri"]
    beta = base.fl.fedmri.beta
    for ablation in ablations:
        if ablation == "sharing":
            out += [
                Variant("share encoder (FedMRI)", "fedmri", fedmri + ["fl.fedmri.share=encoder"]),
                Variant("share whole model", "fedmri-share-whole", fedmri + ["fl.fedmri.share=whole"]),
                Variant(
                    "share all but head",
                    "fedmri-share-all-but-head",
                    fedmri + ["fl.fedmri.share=all_but_head"],
                ),
            ]
        elif ablation == "contrastive":
            with_con = beta if beta > 0 else 100.0
            out += [
                Variant(
                    f"with L_con (beta={with_con:g})",
                    f"fedmri-beta{with_con:g}",
                    fedmri + [f"fl.fedmri.beta={with_con}"],
                ),
                Variant("without L_con (beta=0)", "fedmri-beta0", fedmri + ["fl.fedmri.beta=0"]),
            ]
        elif ablation == "beta":
            out += [
                Variant(f"beta={b:g}", f"fedmri-beta{b:g}", fedmri + [f"fl.fedmri.beta={b}"])
                for b in (1, 10, 100)
            ]
        elif ablation == "negatives":
            out += [
                Variant(f"negatives: {n}", f"fedmri-negatives-{n}", fedmri + [f"fl.fedmri.negatives={n}"])
                for n in ("all", "self")
            ]
        elif ablation == "domain":
            out += [
                Variant(f"{names[a]} ({label})", f"{a}{suffix}", [f"fl.algorithm={a}", f"model.kind={kind}"])
                for a in ("fedmri", "fedavg")
                for kind, label, suffix in (("unet", "image", ""), ("dual_domain", "dual-domain", "-dual"))
            ]
        elif ablation == "local_epochs":
            out += [
                Variant(f"E={e}", f"fedmri-e{e}", fedmri + [f"fl.local_epochs={e}"]) for e in local_epochs
            ]
        for v in out:
            if not v.families:
                v.families.append(ablation)
    return out


def _canonical(config_dict: dict[str, Any]) -> str:
    keep = {k: v for k, v in config_dict.items() if k not in ("name", "output_dir")}
    return json.dumps(keep, sort_keys=True)


def _saved_config(run_dir: Path) -> dict[str, Any] | None:
    """The config a run in ``run_dir`` was started with, read with today's schema (so keys added
    since the run, at their defaults, still compare equal); None if there is none or it is invalid."""
    import yaml

    from config import validate_config
    from utils.errors import UserError

    try:
        return validate_config(yaml.safe_load((run_dir / "config.yaml").read_text())).to_dict()
    except (OSError, ValueError, yaml.YAMLError, UserError):
        return None


def _is_complete(run_dir: Path, config_dict: dict[str, Any]) -> bool:
    """Whether ``run_dir`` holds finished results of exactly this config."""
    if _saved_config(run_dir) != config_dict:
        return False
    try:
        json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def _is_resumable(run_dir: Path, config_dict: dict[str, Any]) -> bool:
    """Whether ``run_dir`` holds an unfinished run of exactly this config with a completed round."""
    return (run_dir / "checkpoints" / "last.ckpt").is_file() and _saved_config(run_dir) == config_dict


def _minutes(seconds: float) -> str:
    seconds = int(round(seconds))
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def run_all(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    """Train (or reuse) every variant, then write the tables and figures; returns the JSON data."""
    from config import load_config
    from utils.errors import UserError

    base = load_config(args.config, args.overrides)
    algorithms = _split(args.algorithms, list(labels()), "algorithms")
    ablations = _split(args.ablations, ABLATIONS, "ablations")
    if not algorithms and not ablations:
        raise UserError("--algorithms/--ablations: nothing to compare; name at least one")
    try:
        local_epochs = [int(e) for e in args.local_epochs.split(",") if e.strip()] or [
            base.fl.local_epochs,
            2 * base.fl.local_epochs,
        ]
    except ValueError:
        raise UserError(f"--local-epochs: expected integers like 1,2 (got {args.local_epochs!r})") from None
    if any(e < 1 for e in local_epochs):
        raise UserError("--local-epochs: every value must be >= 1")
    root = Path(base.output_dir) / args.name
    runs_dir = root / "runs"

    # Resolve every variant; identical resolved configs train once under the first variant's key.
    planned: dict[str, tuple[Any, Path]] = {}
    by_config: dict[str, str] = {}
    table: list[tuple[Variant, str]] = []
    for variant in variants(algorithms, ablations, base, local_epochs):
        probe = load_config(args.config, [*args.overrides, *variant.overrides])
        canonical = _canonical(probe.to_dict())
        if canonical not in by_config:
            key = variant.key
            while key in planned:
                key += "_"
            config = load_config(
                args.config, [*args.overrides, *variant.overrides, f"name={key}", f"output_dir={runs_dir}"]
            )
            by_config[canonical] = key
            planned[key] = (config, runs_dir / key)
        table.append((variant, by_config[canonical]))

    log(
        f"comparison {root}: {len(table)} table rows, {len(planned)} distinct runs of "
        f"{base.fl.rounds} rounds x {base.fl.local_epochs} local epochs on {len(base.sites)} sites "
        f"(seed {base.seed})"
    )
    if args.jobs < 1:
        raise UserError(f"--jobs: must be >= 1 (got {args.jobs})")
    start, trained_time, trained = time.perf_counter(), 0.0, 0
    todo = [k for k, (c, d) in planned.items() if args.force or not _is_complete(d, c.to_dict())]
    number = {key: i for i, key in enumerate(planned, 1)}

    def finished(key: str, took: float) -> None:
        nonlocal trained_time, trained
        trained_time, trained = trained_time + took, trained + 1
        left = len(todo) - trained
        per_run = trained_time / trained / min(args.jobs, max(len(todo), 1))
        eta = f", about {_minutes(left * per_run)} left" if left else ""
        so_far = _minutes(time.perf_counter() - start)
        log(f"[{number[key]}/{len(planned)}] {key}: done in {_minutes(took)}; {so_far} so far{eta}")

    for key, (_, run_dir) in planned.items():
        if key not in todo:
            log(f"[{number[key]}/{len(planned)}] {key}: complete in {run_dir}, reused")
    if args.jobs > 1 and len(todo) > 1:
        _train_in_parallel(todo, planned, number, args, log, finished)
    else:
        for key in todo:
            config, run_dir = planned[key]
            log(f"[{number[key]}/{len(planned)}] {key}: training ({_what(config)}) -> {run_dir}")
            took = _train(
                config, run_dir, args.force, lambda line: log("    " + line.replace("\n", "\n    "))
            )
            finished(key, took)

    data = collect(base, table, planned, args)
    write_outputs(data, root, planned, table, log)
    return data


def _what(config: Any) -> str:
    return f"{config.fl.algorithm}, {config.fl.rounds} rounds"


def _train(config: Any, run_dir: Path, force: bool, log: Any) -> float:
    """Train one variant into ``run_dir``: continue it if it was cut short, else start it afresh."""
    from build import Builder

    run_start = time.perf_counter()
    run = Builder(config, log=log).run()
    if not force and _is_resumable(run_dir, config.to_dict()):
        run.resume()  # an interrupted comparison continues this run after its last completed round
    elif run_dir.exists():
        # Outputs of another config (or of a forced retrain) must not outlive this run's start:
        # an interruption would otherwise leave this config beside another run's results.json.
        log(f"replacing the earlier run in {run_dir}")
        shutil.rmtree(run_dir)
    run.run()
    return time.perf_counter() - run_start


def _train_worker(key: str, config_dict: dict[str, Any], run_dir: str, force: bool, threads: int) -> float:
    """One variant in a worker process; its log lines go to this process's stdout, prefixed."""
    import torch

    from config import validate_config

    torch.set_num_threads(threads)

    def log(line: str) -> None:
        print("\n".join(f"    {key} | {part}" for part in line.split("\n")), flush=True)

    return _train(validate_config(config_dict), Path(run_dir), force, log)


def _train_in_parallel(
    todo: list[str],
    planned: dict[str, tuple[Any, Path]],
    number: dict[str, int],
    args: argparse.Namespace,
    log: Any,
    finished: Any,
) -> None:
    """``--jobs`` worker processes (spawned: no state shared with this one) train the variants."""
    import multiprocessing
    import os
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    jobs = min(args.jobs, len(todo))
    threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or max(1, (os.cpu_count() or 1) // jobs)
    log(f"training {len(todo)} runs, {jobs} at a time, {threads} torch thread(s) each")
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    try:
        running = {}
        for key in todo:
            config, run_dir = planned[key]
            log(f"[{number[key]}/{len(planned)}] {key}: queued ({_what(config)}) -> {run_dir}")
            future = pool.submit(_train_worker, key, config.to_dict(), str(run_dir), args.force, threads)
            running[future] = key
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                finished(running.pop(future), future.result())  # a failed run raises here
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _communication(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return None
    rows = [r for r in csv.DictReader(open(path, encoding="utf-8")) if r["split"] == "train"]
    rows = [r for r in rows if r.get("bytes_sent")]
    if not rows:
        return None
    sites = sorted({r["site"] for r in rows})
    rounds = sorted({int(r["round"]) for r in rows})
    per_site = {
        s: {
            "sent_per_round": sum(float(r["bytes_sent"]) for r in rows if r["site"] == s) / len(rounds),
            "received_per_round": sum(float(r["bytes_received"]) for r in rows if r["site"] == s)
            / len(rounds),
        }
        for s in sites
    }
    total = sum(float(r["bytes_sent"]) + float(r["bytes_received"]) for r in rows)
    mean = {
        k: sum(v[k] for v in per_site.values()) / len(per_site)
        for k in ("sent_per_round", "received_per_round")
    }
    return {"rounds": len(rounds), "sites": per_site, "mean": mean, "total_bytes": total}


def _timing(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``timing.json``: seconds and mean local optimiser steps of a site per round."""
    path = run_dir / "timing.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _per_round(timing: dict[str, Any] | None, key: str, digits: int) -> str:
    value = (timing or {}).get(key)
    return "–" if value is None else f"{value:.{digits}f}"


def collect(
    base: Any, table: list[tuple[Variant, str]], planned: dict[str, Any], args: Any
) -> dict[str, Any]:
    """Test metrics and communication of every table row, read from the runs' outputs."""
    methods: dict[str, Any] = {}
    for variant, key in table:
        run_dir = planned[key][1]
        results = json.loads((run_dir / "results.json").read_text())
        methods.setdefault(
            variant.label,
            {
                "run": key,
                "algorithm": planned[key][0].fl.algorithm,
                "overrides": variant.overrides,
                "families": [],
                "sites": {
                    s: {"best_round": v["best_round"], **v["model"]} for s, v in results["sites"].items()
                },
                "mean": results["mean"]["model"],
                "zero_filled": {s: v["zero_filled"] for s, v in results["sites"].items()},
                "communication": _communication(run_dir),
                "timing": _timing(run_dir),
            },
        )
        for family in variant.families:
            if family not in methods[variant.label]["families"]:
                methods[variant.label]["families"].append(family)
    command = "python compare.py " + " ".join(
        shlex.quote(a)
        for a in [
            "--config",
            str(args.config),
            *(["--algorithms", args.algorithms] if args.algorithms else []),
            *(["--ablations", args.ablations] if args.ablations else []),
            *(["--local-epochs", args.local_epochs] if args.local_epochs else []),
            *(["--name", args.name] if args.name != "comparison" else []),
            *args.overrides,
        ]
    )
    return {
        "command": command,
        "config": str(args.config),
        "seed": base.seed,
        "rounds": base.fl.rounds,
        "local_epochs": base.fl.local_epochs,
        "sites": [s.name for s in base.sites],
        "methods": methods,
    }


def _mb(value: float | None) -> str:
    return "–" if value is None else f"{value / 1e6:.2f}"


def _labels(data: dict[str, Any], family: str) -> list[str]:
    return [label for label, m in data["methods"].items() if family in m["families"]]


def markdown(data: dict[str, Any]) -> str:
    """comparison.md: one table per metric for the algorithms, communication, then each ablation."""
    from utils.tables import METRIC_TITLES, cell, markdown, metric_table

    sites = data["sites"]
    methods = data["methods"]
    parts = [
        f"# Comparison on {data['config']}: {data['rounds']} rounds x {data['local_epochs']} local epochs, "
        f"seed {data['seed']}\n",
        f"Command: `{data['command']}`\n",
        "Test split, each site's best round by validation PSNR; cells are mean ± std over the site's test "
        "volumes, `mean` is the mean over sites; the best value per column is in bold.\n",
    ]
    compared = _labels(data, "comparison")
    any_method = next(iter(methods.values()))
    if compared:
        for metric in ("psnr", "ssim", "nmse"):
            digits = 2 if metric == "psnr" else 4
            parts.append(f"## {METRIC_TITLES[metric]}\n")
            means = [
                [methods[m]["sites"][s][metric] for s in sites] + [methods[m]["mean"][metric]]
                for m in compared
            ]
            stds = [[methods[m]["sites"][s][f"{metric}_std"] for s in sites] + [None] for m in compared]
            zf = any_method["zero_filled"]
            zf_mean = sum(zf[s][metric] for s in sites) / len(sites)
            extra = [
                [
                    "zero-filled input",
                    *[cell(zf[s][metric], zf[s][f"{metric}_std"], digits) for s in sites],
                    cell(zf_mean, None, digits),
                ]
            ]
            parts.append(metric_table(compared, [*sites, "mean"], means, stds, metric, extra_rows=extra))
        parts.append(
            "## Communication per site and round (MB; shared tensors plus each algorithm's extras)\n"
        )
        rows = []
        for m in compared:
            comm = methods[m]["communication"]
            if comm is None:
                rows.append(
                    [
                        m,
                        "–",
                        "–",
                        "–",
                        "not federated (data pooled)"
                        if methods[m]["algorithm"] in ("centralized", "transfer", "transfer_loo")
                        else "",
                    ]
                )
                continue
            rows.append(
                [
                    m,
                    _mb(comm["mean"]["sent_per_round"]),
                    _mb(comm["mean"]["received_per_round"]),
                    _mb(comm["total_bytes"]),
                    ", ".join(
                        f"{s} {_mb(v['sent_per_round'])}/{_mb(v['received_per_round'])}"
                        for s, v in comm["sites"].items()
                    ),
                ]
            )
        parts.append(
            markdown(
                ["method", "sent", "received", "all sites, whole run", "per site sent/received"],
                rows,
                "lrrrl",
            )
        )
        parts.append("## Compute per round (local optimiser steps of a site; wall seconds of the round)\n")
        parts.append(
            markdown(
                ["method", "local steps per round", "seconds per round"],
                [
                    [
                        m,
                        _per_round(methods[m]["timing"], "local_steps_per_round", 1),
                        _per_round(methods[m]["timing"], "seconds_per_round", 1),
                    ]
                    for m in compared
                ],
                "lrr",
            )
        )
        parts.append("## Best round per site\n")
        parts.append(
            markdown(
                ["method", *sites],
                [[m, *[str(methods[m]["sites"][s]["best_round"]) for s in sites]] for m in compared],
            )
        )
    for family in ABLATIONS:
        labels = _labels(data, family)
        if not labels:
            continue
        parts.append(f"## Ablation: {TITLES.get(family, family.replace('_', ' ') + ' (FedMRI)')}\n")
        columns = [f"{s} PSNR" for s in sites] + ["mean PSNR", "mean SSIM", "mean NMSE", "MB/round/site"]
        rows_mean = [
            [methods[m]["sites"][s]["psnr"] for s in sites] + [methods[m]["mean"]["psnr"]] for m in labels
        ]
        rows_std = [[methods[m]["sites"][s]["psnr_std"] for s in sites] + [None] for m in labels]
        body = metric_table(
            labels, columns[: len(sites) + 1], rows_mean, rows_std, "psnr", first="variant"
        ).splitlines()
        ssim_best = _best_cells([methods[m]["mean"]["ssim"] for m in labels], 4, True)
        nmse_best = _best_cells([methods[m]["mean"]["nmse"] for m in labels], 4, False)
        header = body[0][:-1] + "| mean SSIM | mean NMSE | MB/round/site |"
        rule = body[1] + "---:|---:|---:|"
        lines = [header, rule]
        for i, (line, m) in enumerate(zip(body[2:], labels)):
            comm = methods[m]["communication"]
            traffic = (
                None if comm is None else comm["mean"]["sent_per_round"] + comm["mean"]["received_per_round"]
            )
            lines.append(line + f" {ssim_best[i]} | {nmse_best[i]} | {_mb(traffic)} |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def _best_cells(values: list[float], digits: int, higher: bool) -> list[str]:
    from utils.tables import best_rows

    best = best_rows([round(v, digits) for v in values], higher)
    return [f"**{v:.{digits}f}**" if i in best else f"{v:.{digits}f}" for i, v in enumerate(values)]


def csv_text(data: dict[str, Any]) -> str:
    """comparison.csv: one row per method (or ablation variant) and site, plus its mean row."""
    fields = ["families", "method", "run", "site", "best_round", "volumes"]
    fields += [f"{k}{s}" for k in METRICS for s in ("", "_std")] + [
        "bytes_sent_per_round",
        "bytes_received_per_round",
        "local_steps_per_round",
        "seconds_per_round",
    ]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for label, m in data["methods"].items():
        comm = m["communication"] or {}
        base = {"families": ";".join(m["families"]), "method": label, "run": m["run"]}
        for site, values in m["sites"].items():
            traffic = comm.get("sites", {}).get(site, {})
            writer.writerow(
                {
                    **base,
                    "site": site,
                    **values,
                    "bytes_sent_per_round": traffic.get("sent_per_round"),
                    "bytes_received_per_round": traffic.get("received_per_round"),
                }
            )
        traffic = comm.get("mean", {})
        timing = m.get("timing") or {}
        writer.writerow(
            {
                **base,
                "site": "mean",
                **m["mean"],
                "local_steps_per_round": timing.get("local_steps_per_round"),
                "seconds_per_round": timing.get("seconds_per_round"),
                "bytes_sent_per_round": traffic.get("sent_per_round"),
                "bytes_received_per_round": traffic.get("received_per_round"),
            }
        )
    return buffer.getvalue()


def write_outputs(
    data: dict[str, Any],
    root: Path,
    planned: dict[str, Any],
    table: list[tuple[Variant, str]],
    log: Any = print,
) -> None:
    """comparison.md/.csv/.json and the figures."""
    from utils.figures import grouped_bars
    from utils.io import atomic_write_text

    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "comparison.json", json.dumps(data, indent=2) + "\n")
    atomic_write_text(root / "comparison.csv", csv_text(data))
    atomic_write_text(root / "comparison.md", markdown(data))
    figures = root / "figures"
    sites = data["sites"]
    for family in ("comparison", *ABLATIONS):
        labels = _labels(data, family)
        if not labels:
            continue
        series = {
            m: (
                [data["methods"][m]["sites"][s]["psnr"] for s in sites]
                + [data["methods"][m]["mean"]["psnr"]],
                [data["methods"][m]["sites"][s]["psnr_std"] for s in sites] + [float("nan")],  # no std bar
            )
            for m in labels
        }
        name = "psnr_per_site.png" if family == "comparison" else f"ablation_{family}.png"
        title = (
            "test PSNR per site" if family == "comparison" else f"FedMRI ablation: {family.replace('_', ' ')}"
        )
        grouped_bars(figures / name, [*sites, "mean"], series, title=title)
    reconstruction_figures(data, root, planned, table)
    log((root / "comparison.md").read_text())
    log(f"wrote {root}/comparison.md, .csv, .json and figures/")


def reconstruction_figures(data: dict[str, Any], root: Path, planned: dict[str, Any], table: list) -> None:
    """The same test slice of every site through every compared method (and the zero-filled input)."""
    from build import quiet_lightning
    from evaluation import build_sites, figure_slice, load_run, new_module, reconstruct_slice
    from utils.figures import reconstruction_grid

    labels = _labels(data, "comparison") or list(data["methods"])
    if not labels:
        return
    quiet_lightning()
    first = planned[data["methods"][labels[0]]["run"]][0]
    sites = build_sites(first)
    slices = {name: figure_slice(dm) for name, dm in sites.items()}
    rows, zero_filled, targets = [], [], []
    for label in labels:
        trained = load_run(planned[data["methods"][label]["run"]][1])
        images = []
        for name, dm in sites.items():
            picture = reconstruct_slice(new_module(trained.config, trained.models[name]), dm, *slices[name])
            images.append(picture["recon"])
            if len(targets) < len(sites):
                targets.append(picture["target"])
                zero_filled.append(picture["zero_filled"])
        rows.append((label, images))
    columns = [f"{name}: {v}, slice {i}" for name, (v, i) in slices.items()]
    grid = [("zero-filled", zero_filled), *rows]
    reconstruction_grid(root / "figures" / "reconstructions.png", columns, targets, grid)
    reconstruction_grid(
        root / "figures" / "errors.png", columns, targets, grid, errors=True, title="|error| x5"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point: train or reuse every variant, then write the comparison."""
    args = parse_args(argv)
    return run_cli(lambda: run_all(args))


if __name__ == "__main__":
    sys.exit(main())
