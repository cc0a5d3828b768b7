"""FedMRI's contrastive term step by step: what the encoder of one site does within each round.

    python bench/contrastive_trace.py                                # RMSprop at lr 1e-3 and 1e-4, Adam, SGD
    python bench/contrastive_trace.py --runs rmsprop:1e-3 --variant clipped --rounds 6

Runs the default federation's four sites (``configs/default.yaml``) at a reduced image size (48 px,
the U-Net with 16 channels) for a few rounds, and after every optimiser step of one site (``--site``;
every site with ``--all-sites``) records what the paper's term sees (``contrastive_stats``):
beta * L_con, the fraction of encoder weights outside the range of the previous encoders, the
encoder's mean distance per weight from the server's encoder, and the mean size per weight of the
step just taken. Writes one JSON file per run and prints that site's steps of each round and a
per-round summary, the trace RESULTS.md quotes. ``--figure`` also draws the per-step trace.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from fl.algorithms import fedmri  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def traced(steps: dict[str, list[dict[str, Any]]], sites: set[str] | None):
    """A FedMRI client ``plan`` that also records the term's diagnostics after every optimiser step
    (of the named ``sites``; None: every site)."""
    original = fedmri.FedMRIClient.plan

    def plan(self, rnd, payload, model, epochs):
        local = original(self, rnd, payload, model, epochs)
        if local.after_fit is None or (sites is not None and self.site not in sites):
            return local
        inner, diagnostics = local.after_step, local.after_fit
        names = [n for n, _ in model.named_parameters() if n in payload.global_state]
        state = {"last": None}

        def after_step(model, lr):
            if inner is not None:
                inner(model, lr)
            live = dict(model.named_parameters())
            flat = torch.cat([live[n].detach().reshape(-1) for n in names]).double()
            moved = float((flat - state["last"]).abs().mean()) if state["last"] is not None else float("nan")
            state["last"] = flat.clone()
            values = diagnostics(model)
            steps.setdefault(self.site, []).append(
                {
                    "round": rnd,
                    "step": len([s for s in steps.get(self.site, []) if s["round"] == rnd]) + 1,
                    "lr": lr,
                    "beta_l_con": self.options.beta * values["con_l_con"],
                    "outside": values["con_outside"],
                    "dist": values["con_dist"],
                    "spread": values["con_spread"],
                    "moved": moved,
                }
            )

        def before_first(model):
            live = dict(model.named_parameters())
            if state["last"] is None:
                state["last"] = torch.cat([live[n].detach().reshape(-1) for n in names]).double().clone()

        hook = local.after_backward

        def after_backward(model):
            before_first(model)
            if hook is not None:
                hook(model)

        local.after_backward, local.after_step = after_backward, after_step
        return local

    return plan


def run(name: str, optimiser: str, lr: float, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """One traced run: returns and writes its per-step records."""
    from assembly.build import Builder
    from assembly.config import load_config
    from assembly.setup import in_process

    overrides = [
        f"fl.rounds={args.rounds}",
        f"optim.name={optimiser}",
        f"optim.lr={lr}",
        f"fl.fedmri.variant={args.variant}",
        f"fl.fedmri.beta={args.beta}",
        f"model.chans={args.chans}",
        "trainer.accelerator=cpu",
        f"name=trace-{name}",
        *[f"sites.{i}.source.size={args.size}" for i in range(4)],
    ]
    steps: dict[str, list[dict[str, Any]]] = {}
    plan = fedmri.FedMRIClient.plan
    fedmri.FedMRIClient.plan = traced(steps, None if args.all_sites else {args.site})
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = load_config(ROOT / "configs" / "default.yaml", [*overrides, f"output_dir={tmp}"])
            loop = in_process(Builder(config, log=lambda line: None))
            loop.run()
            rows = (Path(tmp) / f"trace-{name}" / "metrics.csv").read_text()
    finally:
        fedmri.FedMRIClient.plan = plan
    record = {
        "name": name,
        "optimiser": optimiser,
        "lr": lr,
        "variant": args.variant,
        "beta": args.beta,
        "size": args.size,
        "chans": args.chans,
        "rounds": args.rounds,
        "seconds": round(time.perf_counter() - start, 1),
        "threads": torch.get_num_threads(),
        "load": os.getloadavg()[0],
        "steps": steps,
        "metrics_csv": rows,
    }
    (out / f"trace_{name}.json").write_text(json.dumps(record) + "\n")
    return record


def report(record: dict[str, Any], site: str, shown: tuple[int, ...] = (1, 2, 3, 4, 8, 16, 32)) -> str:
    """A markdown trace of one site: chosen steps of every round, then beta * L_con per round."""
    rows = record["steps"][site]
    lines = [
        f"#### {record['name']}: {record['optimiser']} lr {record['lr']:g}, variant {record['variant']}, "
        f"site {site}",
        "",
        "| round | step | beta * L_con | outside | dist / weight | step / weight | spread / weight |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["step"] in shown:
            lines.append(
                f"| {r['round']} | {r['step']} | {r['beta_l_con']:.3f} | {r['outside']:.1%} "
                f"| {r['dist']:.2e} | {r['moved']:.2e} | {r['spread']:.2e} |"
            )
    lines += ["", "beta * L_con at the last step of each round: " + ", ".join(
        f"round {rnd} {[r for r in rows if r['round'] == rnd][-1]['beta_l_con']:.2f}"
        for rnd in sorted({r["round"] for r in rows})
    )]  # fmt: skip
    return "\n".join(lines) + "\n"


def figure(record: dict[str, Any], site: str, path: Path) -> None:
    """Per-step trace of one site over all traced rounds."""
    from utils.figures import _save, plt

    rows = record["steps"][site]
    x = list(range(1, len(rows) + 1))
    fig, axes = plt.subplots(3, 1, figsize=(8, 6.5), sharex=True)
    axes[0].plot(x, [r["beta_l_con"] for r in rows], ".-")
    axes[0].set_ylabel("beta * L_con")
    axes[1].plot(x, [r["outside"] for r in rows], ".-")
    axes[1].set_ylabel("outside range")
    axes[2].semilogy(x, [r["dist"] for r in rows], ".-", label="|theta - g| per weight")
    axes[2].semilogy(x, [r["moved"] for r in rows], ".-", label="step per weight")
    axes[2].semilogy(x, [r["spread"] for r in rows], ":", label="spread of the negatives")
    axes[2].set_ylabel("per weight")
    axes[2].legend(fontsize=7)
    axes[2].set_xlabel("local step (all rounds)")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"{record['name']}: site {site}", fontsize=9)
    _save(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", nargs="+", default=["rmsprop:1e-3", "rmsprop:1e-4", "adam:1e-4", "sgd:1e-4"],
        help="optimiser:lr pairs, one traced run each",
    )  # fmt: skip
    parser.add_argument("--variant", default="paper", choices=fedmri.VARIANTS)
    parser.add_argument("--beta", type=float, default=100.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=48, help="image size of every site (px)")
    parser.add_argument("--chans", type=int, default=16)
    parser.add_argument("--site", default="fastmri", help="the site whose steps are printed")
    parser.add_argument("--all-sites", action="store_true", help="trace every site (slower)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "contrastive")
    parser.add_argument("--figure", action="store_true", help="also draw trace_<name>.png")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for spec in args.runs:
        optimiser, lr = spec.split(":")
        name = f"{args.variant}-{optimiser}-{lr}"
        record = run(name, optimiser, float(lr), args, args.out)
        print(report(record, args.site), flush=True)
        print(f"({record['seconds']} s, {record['threads']} thread(s), load average {record['load']:.2f})\n")
        if args.figure:
            figure(record, args.site, args.out / f"trace_{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
