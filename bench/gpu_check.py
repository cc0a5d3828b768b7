"""The GPU check: what a full-size step, the contrastive term and a round of the paper's schedule cost.

    bash bench/gpu_check.sh                        # on a machine with one GPU: under 8 minutes
    bash bench/gpu_check.sh --dry                  # anywhere: the same code on tiny sizes (CPU)

Four parts, each written into ``gpu_check.json`` and ``gpu_check.md`` (in ``--out``):

1. one training step (``ReconModule.training_step`` + backward + RMSprop) of the paper's U-Net (chans 32,
   320 x 320, batch 8) in fp32, bf16-mixed, bf16-mixed + channels_last, and bf16-mixed + torch.compile:
   median time, slices/s, peak memory, achieved TFLOP/s (FLOPs counted by ``torch.utils.flop_counter``)
   and its share of the card's dense bf16 peak (``--peak-tflops``, or known from the card's name);
2. the contrastive term against the authors' formulation (value + backward, full-size encoder, 4 sites):
   time of each and the relative difference of the values and gradients against float64;
3. ``configs/paper.yaml`` (four full-size sites) with the subjects cut to ``--subjects`` per split so that
   the data is generated in seconds, and one local epoch: round 1 untimed (warm-up), round 2 (the first
   with the contrastive term) timed, split into training and validation;
4. the projection of the paper's schedule (50 rounds x 10 local epochs) from the per-slice times of
   round 2 and the slice counts of the full configs/paper.yaml.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.regulariser import authors_term, encoder_tensors, round_in_progress, term_steps  # noqa: E402
from bench.step import PEAK_BF16, variant  # noqa: E402
from bench.timing import interleaved, load, machine, median, sync  # noqa: E402

VARIANTS = {
    "fp32": ({}, False),
    "bf16-mixed": ({}, True),
    "bf16-mixed + channels_last": ({"channels_last": True}, True),
    "bf16-mixed + compile": ({"compile": True}, True),
}


def step_part(device: torch.device, chans: int, size: int, batch: int, reps: int, compile_: bool) -> dict:
    """Part 1: every variant's step, alternating; time, slices/s, peak memory, TFLOP/s."""
    from torch.utils.flop_counter import FlopCounterMode

    from models.recon_module import ReconModule

    args = SimpleNamespace(chans=chans, size=size, batch=batch)
    state = ReconModule(model={"chans": chans, "num_pool_layers": 4}, optim={}).model.state_dict()
    chosen = {k: v for k, v in VARIANTS.items() if compile_ or "compile" not in k}
    steps = {name: variant(options, bf16, device, args, state) for name, (options, bf16) in chosen.items()}
    first = {}
    for name, step in steps.items():
        start = time.perf_counter()
        step()  # compiles, where asked
        sync()
        first[name] = time.perf_counter() - start
    counter = FlopCounterMode(display=False)
    with counter:
        steps["fp32"]()
    flops = counter.get_total_flops()
    times = interleaved(steps, reps, warmup=1)
    gpu_name = torch.cuda.get_device_name(0) if device.type == "cuda" else ""
    rows = {}
    for name, step in steps.items():
        peak_memory = None
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            step()
            sync()
            peak_memory = torch.cuda.max_memory_allocated() / 2**30
        t = median(times[name])
        rows[name] = {
            "ms": 1e3 * t,
            "slices_per_s": batch / t,
            "speedup_vs_fp32": median(times["fp32"]) / t,
            "peak_memory_gib": peak_memory,
            "tflops": flops / t / 1e12,
            "first_step_s": first[name],
        }
    return {
        "chans": chans,
        "size": size,
        "batch": batch,
        "reps": reps,
        "gflop_per_step": flops / 1e9,
        "gpu": gpu_name,
        "variants": rows,
    }


def term_part(device: torch.device, chans: int, sites: int, reps: int) -> dict:
    """Part 2: the contrastive term against the authors' formulation, on ``device``."""
    local, server, previous = round_in_progress(chans, sites)
    exact = [copy.deepcopy(m).double() for m in (local, server, *previous)]
    exact_value = authors_term(exact[0], exact[1], exact[2:])
    exact_value.backward()
    exact_value = exact_value.detach()
    exact_grad = torch.cat([p.grad.flatten() for p in encoder_tensors(exact[0])])
    for model in (local, server, *previous):
        model.to(device)
    params, theirs, ours = term_steps(local, server, previous)

    result = {"chans": chans, "sites": sites, "values": sum(p.numel() for p in params)}
    for name, fn in (("authors", theirs), ("ours", ours)):
        value = fn().detach().double().cpu()
        grad = torch.cat([p.grad.flatten() for p in params]).double().cpu()
        result[f"{name}_value_rel_diff"] = abs(float(value - exact_value.detach())) / abs(
            float(exact_value.detach())
        )
        result[f"{name}_grad_rel_diff"] = float((grad - exact_grad).abs().max() / exact_grad.abs().max())
    timed = {k: median(v) for k, v in interleaved({"authors": theirs, "ours": ours}, reps).items()}
    result["authors_ms"], result["ours_ms"] = 1e3 * timed["authors"], 1e3 * timed["ours"]
    result["speedup"] = timed["authors"] / timed["ours"]
    return result


def paper_slices(data: dict) -> dict[str, int]:
    """Training and validation slices of a config of synthetic sites (subjects x slices x contrasts)."""
    totals = {"train": 0, "val": 0}
    for site in data["sites"]:
        source = site["source"]
        contrasts = len(source.get("contrasts", ["t1", "t2"]))
        for split in totals:
            totals[split] += source["subjects"][split] * source["slices_per_subject"] * contrasts
    return totals


def round_part(config_path: Path, subjects: int, dry: bool, out: Path, precision: str | None = None) -> dict:
    """Parts 3 and 4: rounds 1 and 2 of the paper's config on few subjects; the paper's schedule projected."""
    from assembly.build import Builder
    from assembly.config import validate_config
    from assembly.setup import in_process

    full = yaml.safe_load(config_path.read_text())
    data = copy.deepcopy(full)
    for site in data["sites"]:
        site["source"]["subjects"] = {"train": subjects, "val": 1, "test": 1}
        if dry:
            site["source"].update(size=32, slices_per_subject=2)
    if dry:
        data["model"] = {**data.get("model", {}), "chans": 4, "num_pool_layers": 2}
        full["sites"] = data["sites"]  # a dry run projects its own tiny sites
    data["fl"] = {**data["fl"], "rounds": 2, "local_epochs": 1}
    data["output_dir"], data["name"] = str(out / "runs"), "gpu_check"
    data["data"] = {**data.get("data", {}), "cache_dir": str(out / "cache")}
    if dry:
        data["trainer"] = {**data.get("trainer", {}), "accelerator": "cpu", "num_workers": 0}
    if precision:
        data["trainer"] = {**data.get("trainer", {}), "precision": precision}
    config = validate_config(data)
    start = time.perf_counter()
    fed = in_process(Builder(config, log=lambda line: None)).rounds
    setup = time.perf_counter() - start
    timings = {}
    for rnd in (1, 2):
        sync()
        start = time.perf_counter()
        fed.train(rnd)
        sync()
        trained = time.perf_counter() - start
        fed.transport.validate(rnd, fed.server.global_state)
        sync()
        timings[rnd] = (trained, time.perf_counter() - start - trained)
    sites = fed.transport.sites
    measured = {
        "train": sum(len(s.data.datasets["train"]) for s in sites),
        "val": sum(len(s.data.datasets["val"]) for s in sites),
    }
    train_s, val_s = timings[2]
    target = paper_slices(full)
    epochs, rounds = full["fl"]["local_epochs"], full["fl"]["rounds"]
    per_round = (
        train_s / measured["train"] * target["train"] * epochs + val_s / measured["val"] * target["val"]
    )
    return {
        "config": str(config_path.relative_to(ROOT) if config_path.is_relative_to(ROOT) else config_path),
        "precision": config.trainer.precision,
        "subjects_train": subjects,
        "measured_slices": measured,
        "setup_s": setup,
        "round1_train_s": timings[1][0],
        "round1_val_s": timings[1][1],
        "round2_train_s": train_s,
        "round2_val_s": val_s,
        "train_slices_per_s": measured["train"] / train_s,
        "paper_slices": target,
        "paper_schedule": f"{rounds} rounds x {epochs} local epochs",
        "projected_round_s": per_round,
        "projected_total_h": per_round * rounds / 3600,
    }


def markdown(result: dict) -> str:
    """The check as markdown tables."""
    step, term, rnd = result["step"], result["term"], result["round"]
    peak = result.get("peak_bf16_tflops")
    lines = [
        f"# GPU check ({'DRY RUN on tiny sizes, not a measurement' if result['dry'] else 'measured'})",
        "",
        f"{result['machine']}; {result['load']}; {result['seconds']:.0f} s in all",
        "",
        f"## Training step: U-Net chans {step['chans']}, {step['size']} x {step['size']}, "
        f"batch {step['batch']} ({step['gflop_per_step']:.1f} GFLOP per step, median of {step['reps']})",
        "",
        "| variant | ms | slices/s | vs fp32 | peak memory GiB | TFLOP/s | % of bf16 peak | first step s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, v in step["variants"].items():
        memory = "-" if v["peak_memory_gib"] is None else f"{v['peak_memory_gib']:.2f}"
        share = "-" if not peak else f"{100 * v['tflops'] / peak:.1f}"
        lines.append(
            f"| {name} | {v['ms']:.1f} | {v['slices_per_s']:.1f} | {v['speedup_vs_fp32']:.2f}x | {memory} | "
            f"{v['tflops']:.2f} | {share} | {v['first_step_s']:.1f} |"
        )
    lines += [
        "",
        f"## Contrastive term, {term['values']:,} encoder values, {term['sites']} sites (value + backward)",
        "",
        "| | ms | value vs float64 | gradient vs float64 |",
        "|---|---:|---:|---:|",
        f"| authors' formulation | {term['authors_ms']:.2f} | {term['authors_value_rel_diff']:.1e} | "
        f"{term['authors_grad_rel_diff']:.1e} |",
        f"| ours | {term['ours_ms']:.2f} | {term['ours_value_rel_diff']:.1e} | "
        f"{term['ours_grad_rel_diff']:.1e} |",
        "",
        f"speed-up {term['speedup']:.2f}x",
        "",
        f"## {rnd['config']}: a round, projected to {rnd['paper_schedule']} ({rnd['precision']})",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| slices measured (train / val) | {rnd['measured_slices']['train']} / "
        f"{rnd['measured_slices']['val']} |",
        f"| round 2: training (1 local epoch) | {rnd['round2_train_s']:.1f} s "
        f"({rnd['train_slices_per_s']:.0f} slices/s) |",
        f"| round 2: validation | {rnd['round2_val_s']:.1f} s |",
        f"| slices of the full config (train / val) | {rnd['paper_slices']['train']} / "
        f"{rnd['paper_slices']['val']} |",
        f"| projected time per round | {rnd['projected_round_s']:.0f} s |",
        f"| projected schedule | {rnd['projected_total_h']:.2f} h |",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the check and write gpu_check.json and gpu_check.md."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument(
        "--dry", action="store_true", help="tiny sizes on the CPU: checks the script, measures nothing"
    )
    parser.add_argument("--out", type=Path, default=Path("."), help="where gpu_check.json and .md go")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "paper.yaml")
    parser.add_argument("--subjects", type=int, default=4, help="training subjects per site in part 3")
    parser.add_argument("--reps", type=int, default=None, help="timed steps per variant (default 20, dry 2)")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile variant")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the card's dense bf16 peak")
    parser.add_argument(
        "--precision", default=None, help="trainer.precision of part 3 (default: the config's)"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    gpu = torch.cuda.is_available() and not args.dry
    if not gpu and not args.dry:
        print("error: no GPU here; run with --dry to check the script on the CPU", file=sys.stderr)
        return 2
    device = torch.device("cuda" if gpu else "cpu")
    if gpu:
        torch.backends.cudnn.benchmark = True
    chans, size, batch = (32, 320, 8) if gpu else (4, 32, 2)
    reps = args.reps or (20 if gpu else 2)
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict = {"dry": args.dry, "machine": machine()}
    print(f"step ({device.type}) ...", flush=True)
    result["step"] = step_part(device, chans, size, batch, reps, not args.no_compile)
    name = result["step"]["gpu"]
    result["peak_bf16_tflops"] = args.peak_tflops or next(
        (v for k, v in PEAK_BF16.items() if k in name), None
    )
    print("contrastive term ...", flush=True)
    result["term"] = term_part(device, 32 if gpu else 4, 4, max(reps // 2, 2))
    print("paper rounds ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        result["round"] = round_part(
            args.config, 1 if args.dry else args.subjects, args.dry, Path(tmp), args.precision
        )
    result["load"] = load()
    result["seconds"] = time.perf_counter() - start
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2))
    text = markdown(result)
    (args.out / "gpu_check.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
