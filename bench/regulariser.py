"""FedMRI's contrastive term: this project's implementation against the authors' formulation.

    python bench/regulariser.py                      # full-size U-Net (chans 32), 4 sites
    python bench/regulariser.py --threads 1 --reps 15 --sites 4

The reference re-implements the authors' formulation: every step, per-parameter Python loops that
rebuild ``dict(model.named_parameters())`` for the local, global and each previous model and add
``torch.norm(p=1)`` terms through autograd. Ours (``fl.algorithms.fedmri.term.ContrastiveL1``, kept
for a whole local fit as the FedMRI strategy does) stacks the references once and computes the value
and the analytic gradient chunk by chunk.

The encoders are those of a round in progress: the server's encoder, K previous local encoders
around it, and the live encoder a few steps away from the server's. Value and gradient of both
implementations are compared with the same formula evaluated in float64 (the authors' float32
``torch.norm`` itself drifts from it on large tensors). Timings (value + backward) alternate
between the two implementations in this one process, medians of ``--reps``; then the term is set
against one training step of the U-Net at the default and the paper's sizes, again alternating.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.timing import interleaved, load, machine, median  # noqa: E402
from fl.algorithms.fedmri.term import ContrastiveL1, contrastive_stats  # noqa: E402
from models.unet import Unet  # noqa: E402


def authors_term(model: Unet, global_model: Unet, previous: list[Unet]) -> torch.Tensor:
    """The authors' per-parameter formulation, rebuilt every step."""
    params = dict(model.named_parameters())
    glob = dict(global_model.named_parameters())
    pos = 0.0
    for name in params:
        if name.startswith("encoder."):
            pos = pos + torch.norm(params[name] - glob[name].detach(), p=1)
    neg = 0.0
    for prev_model in previous:
        prev = dict(prev_model.named_parameters())
        for name in params:
            if name.startswith("encoder."):
                neg = neg + torch.norm(params[name] - prev[name].detach(), p=1)
    return pos / (neg + 1e-14)


def encoder_tensors(model: Unet) -> list[torch.Tensor]:
    """The encoder's parameters, in order."""
    return [p for n, p in model.named_parameters() if n.startswith("encoder.")]


def round_in_progress(chans: int, sites: int, seed: int = 0) -> tuple[Unet, Unet, list[Unet]]:
    """(live model, server model, previous local models): the previous encoders drifted from the
    server's during the last round, the live one has taken a few steps since this round started."""
    torch.manual_seed(seed)
    server = Unet(chans=chans)
    previous, local = [], copy.deepcopy(server)
    with torch.no_grad():
        for _ in range(sites):
            model = copy.deepcopy(server)
            for p in encoder_tensors(model):
                p.add_(torch.randn_like(p), alpha=1e-3)
            previous.append(model)
        for p in encoder_tensors(local):
            p.add_(torch.randn_like(p), alpha=2e-4)
    return local, server, previous


def term_steps(
    local: Unet, server: Unet, previous: list[Unet]
) -> tuple[list[torch.Tensor], Callable[[], torch.Tensor], Callable[[], torch.Tensor]]:
    """The local encoder's parameters and two steps that compute the term's value and gradient into
    them: the authors' formulation and this project's :class:`ContrastiveL1` (references stacked once)."""
    params = encoder_tensors(local)
    term = ContrastiveL1(
        [t.detach() for t in encoder_tensors(server)],
        [[t.detach() for t in encoder_tensors(m)] for m in previous],
    )

    def theirs() -> torch.Tensor:
        local.zero_grad(set_to_none=True)
        value = authors_term(local, server, previous)
        value.backward()
        return value.detach()

    def ours() -> torch.Tensor:
        local.zero_grad(set_to_none=True)
        value = term(params)
        value.backward()
        return value.detach()

    return params, theirs, ours


def step_fn(chans: int, size: int, batch: int) -> Callable[[], None]:
    """One optimiser step of the plain U-Net (forward, MSE, backward, RMSprop)."""
    torch.manual_seed(0)
    model = Unet(chans=chans)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-4)
    x, y = torch.randn(batch, 1, size, size), torch.randn(batch, 1, size, size)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()

    return step


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chans", type=int, default=32)
    parser.add_argument("--sites", type=int, default=4, help="previous-round encoders (negatives)")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--step-reps", type=int, default=3)
    parser.add_argument(
        "--steps-per-round", type=int, default=32, help="local steps per round (default run: 32)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--sizes", nargs="+", choices=["default", "paper"], default=["default", "paper"],
        help="model sizes of the share-of-a-step part",
    )  # fmt: skip
    return parser.parse_args()


def against_float64(
    local: Unet, server: Unet, previous: list[Unet], params: list[torch.Tensor], steps: dict[str, Callable]
) -> tuple[dict[str, tuple], float, float]:
    """Each step's (value's relative difference, gradient's largest relative difference, gradient, value)
    against the formula in float64, and the two steps' value and gradient differences from each other."""
    exact_models = [copy.deepcopy(m).double() for m in (local, server, *previous)]
    exact_value = authors_term(exact_models[0], exact_models[1], exact_models[2:])
    exact_value.backward()
    exact_value = exact_value.detach()
    exact_grad = torch.cat([p.grad.flatten() for p in encoder_tensors(exact_models[0])])
    results = {}
    for name, fn in steps.items():
        value = fn()
        grad = torch.cat([p.grad.flatten() for p in params]).double()
        results[name] = (
            abs(float(value.double() - exact_value)) / abs(float(exact_value)),
            float((grad - exact_grad).abs().max() / exact_grad.abs().max()),
            grad,
            value,
        )
    between_value = abs(float(results["ours"][3] - results["authors"][3])) / abs(float(results["authors"][3]))
    between_grad = float(
        (results["ours"][2] - results["authors"][2]).abs().max() / results["authors"][2].abs().max()
    )
    return results, between_value, between_grad


def print_term(
    args: argparse.Namespace, count: int, timed: dict[str, float], results: dict[str, tuple],
    between_value: float, between_grad: float,
) -> None:  # fmt: skip
    """The term's timings and its differences from float64 and between the two implementations."""
    print(machine())
    print(f"U-Net chans={args.chans}: encoder {count:,} parameters, {args.sites} previous encoders; {load()}")
    print(
        f"  authors' formulation  {timed['authors'] * 1e3:8.2f} ms  (value + backward, median of {args.reps})"
    )
    print(f"  this implementation   {timed['ours'] * 1e3:8.2f} ms")
    print(f"  speed-up              {timed['authors'] / timed['ours']:8.2f} x   (target >= 5)")
    for name in ("authors", "ours"):
        value_err, grad_err = results[name][:2]
        print(
            f"  {name:9s} vs float64: value rel. diff {value_err:.1e}, max gradient rel. diff {grad_err:.1e}"
            + ("   (target <= 1e-6)" if name == "ours" else "")
        )
    print(
        f"  ours vs authors':     value rel. diff {between_value:.1e}, "
        f"max gradient rel. diff {between_grad:.1e}"
    )


def share_of_a_step(args: argparse.Namespace, label: str, chans: int, size: int) -> None:
    """The term (every step) and its diagnostics (once per local fit) against one training step of the
    U-Net of ``chans`` channels on ``size`` x ``size`` images, alternating; print their shares."""
    small_local, small_server, small_previous = round_in_progress(chans, args.sites)
    p_small = encoder_tensors(small_local)
    small_term = ContrastiveL1(
        [t.detach() for t in encoder_tensors(small_server)],
        [[t.detach() for t in encoder_tensors(m)] for m in small_previous],
    )

    def reg(p_small=p_small, small_term=small_term) -> None:
        small_term(p_small).backward()

    anchor = [t.detach() for t in encoder_tensors(small_server)]
    negatives = [[t.detach() for t in encoder_tensors(m)] for m in small_previous]

    def diagnostics(p_small=p_small, anchor=anchor, negatives=negatives) -> None:
        contrastive_stats(p_small, anchor, negatives)

    step = step_fn(chans, size, 8)
    fns = {"step": step, "reg": reg, "diag": diagnostics}
    timed = {k: median(v) for k, v in interleaved(fns, args.step_reps).items()}
    print(
        f"  {label:7s} size (chans {chans}, {size}x{size}, batch 8): step {timed['step'] * 1e3:8.1f} ms, "
        f"regulariser {timed['reg'] * 1e3:6.2f} ms = {100 * timed['reg'] / timed['step']:.2f} % of a step"
        "   (target <= 2 %)"
    )
    # the diagnostics run once per local fit; --steps-per-round steps share their cost
    share = timed["diag"] / (timed["step"] * args.steps_per_round)
    print(
        f"          diagnostics (once per local fit) {timed['diag'] * 1e3:6.2f} ms = {100 * share:.3f} % "
        f"of a step over a {args.steps_per_round}-step round   (target < 1 %)"
    )


def main() -> int:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    local, server, previous = round_in_progress(args.chans, args.sites)
    params, theirs, ours = term_steps(local, server, previous)
    count = sum(p.numel() for p in params)
    steps = {"authors": theirs, "ours": ours}
    results, between_value, between_grad = against_float64(local, server, previous, params, steps)

    timed = {k: median(v) for k, v in interleaved({"authors": theirs, "ours": ours}, args.reps).items()}
    print_term(args, count, timed, results, between_value, between_grad)

    sizes = {"default": (16, 128), "paper": (32, 320)}
    for label, (chans, size) in ((k, sizes[k]) for k in args.sizes):
        share_of_a_step(args, label, chans, size)
    print(f"  at the end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
