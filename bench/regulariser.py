"""FedMRI's contrastive term: this project's implementation against the authors' formulation.

    python bench/regulariser.py                 # full-size U-Net (chans 32), 4 sites
    python bench/regulariser.py --reps 20 --chans 32 --sites 4

The reference re-implements the authors' formulation: every step, per-parameter Python loops that
rebuild ``dict(model.named_parameters())`` for the local, global and each previous model and add
``torch.norm(p=1)`` terms through autograd. Ours (``models.losses.contrastive_l1``) uses fused
``torch._foreach`` reductions for the value and an analytic gradient. Both are timed side by side in
this process (value + backward, median of ``--reps``), checked equal (value and every gradient to
1e-6 relative), and set against the time of one training step of the U-Net at the default and
the paper's sizes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.losses import contrastive_l1  # noqa: E402
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
    return [p for n, p in model.named_parameters() if n.startswith("encoder.")]


def median_time(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_time(chans: int, size: int, batch: int, reps: int) -> float:
    """One optimiser step of the plain U-Net (forward, MSE, backward, RMSprop)."""
    torch.manual_seed(0)
    model = Unet(chans=chans)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-4)
    x, y = torch.randn(batch, 1, size, size), torch.randn(batch, 1, size, size)

    def step():
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()

    return median_time(step, reps)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chans", type=int, default=32)
    parser.add_argument("--sites", type=int, default=4, help="previous-round encoders (negatives)")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--step-reps", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    local, server = Unet(chans=args.chans), Unet(chans=args.chans)
    previous = [Unet(chans=args.chans) for _ in range(args.sites)]
    params = encoder_tensors(local)
    anchor = [t.detach() for t in encoder_tensors(server)]
    negatives = [[t.detach() for t in encoder_tensors(m)] for m in previous]
    count = sum(p.numel() for p in params)

    def theirs():
        local.zero_grad(set_to_none=True)
        value = authors_term(local, server, previous)
        value.backward()
        return value

    def ours():
        local.zero_grad(set_to_none=True)
        value = contrastive_l1(params, anchor, negatives)
        value.backward()
        return value

    value_theirs = theirs().detach()
    grads_theirs = [p.grad.clone() for p in params]
    value_ours = ours().detach()
    grads_ours = [p.grad.clone() for p in params]
    value_err = abs(float(value_ours - value_theirs)) / abs(float(value_theirs))
    grad_err = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(grads_ours, grads_theirs))

    t_theirs = median_time(theirs, args.reps)
    t_ours = median_time(ours, args.reps)
    print(
        f"U-Net chans={args.chans}: encoder {count:,} parameters, {args.sites} previous encoders, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"  authors' formulation  {t_theirs * 1e3:8.2f} ms  (value + backward, median of {args.reps})")
    print(f"  this implementation   {t_ours * 1e3:8.2f} ms")
    print(f"  speed-up              {t_theirs / t_ours:8.2f} x   (target >= 5)")
    print(f"  value rel. diff {value_err:.1e}, max gradient rel. diff {grad_err:.1e}   (target <= 1e-6)")

    for label, chans, size in (("default", 16, 128), ("paper", 32, 320)):
        step = step_time(chans, size, 8, args.step_reps)
        small = Unet(chans=chans)
        p_small = encoder_tensors(small)
        a_small = [t.detach().clone() + 0.01 for t in p_small]
        n_small = [[t.detach().clone() - 0.01 * (k + 1) for t in p_small] for k in range(args.sites)]

        def reg(p_small=p_small, a_small=a_small, n_small=n_small):
            contrastive_l1(p_small, a_small, n_small).backward()

        t_reg = median_time(reg, args.reps)
        print(
            f"  {label:7s} size (chans {chans}, {size}x{size}, batch 8): step {step * 1e3:8.1f} ms, "
            f"regulariser {t_reg * 1e3:6.2f} ms = {100 * t_reg / step:.2f} % of a step   (target <= 2 %)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
