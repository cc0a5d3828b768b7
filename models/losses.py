"""Reconstruction losses and FedMRI's weighted contrastive term in parameter space.

The contrastive term (REFERENCE.md section 1) over the shared encoder parameters E of a site k:

    pos   = sum_{p in E} |theta_k[p] - theta_global[p]|_1
    neg   = sum_j sum_{p in E} |theta_k[p] - theta_prev_j[p]|_1
    L_con = pos / (neg + 1e-14)

It is computed without building an autograd graph over the parameters: the value comes from fused
``torch._foreach`` reductions and the backward pass returns the analytic gradient

    d L_con / d theta = sign(theta - g) / neg  -  pos / neg^2 * sum_j sign(theta - theta_j),

so the cost per step is a few elementwise passes over the encoder, whatever its size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

NEG_EPS = 1e-14


def reconstruction_loss(kind: str):
    """The loss function by config name: ``mse`` (the authors' choice) or ``l1``."""
    losses = {"mse": F.mse_loss, "l1": F.l1_loss}
    if kind not in losses:
        raise ValueError(f"unknown loss {kind!r}; expected one of {sorted(losses)}")
    return losses[kind]


def _l1_distance(params: Sequence[Tensor], others: Sequence[Tensor]) -> Tensor:
    """sum_p |params[p] - others[p]|_1 as a 0-dim tensor on the parameters' device (no host sync)."""
    diffs = torch._foreach_sub(list(params), list(others))
    return torch.stack(torch._foreach_norm(diffs, 1)).sum()


class _ContrastiveL1(torch.autograd.Function):
    """pos / (neg + eps) with the analytic gradient; inputs after the two lists are the parameters."""

    @staticmethod
    def forward(ctx, anchor: list[Tensor], negatives: list[list[Tensor]], *params: Tensor) -> Tensor:
        with torch.no_grad():
            pos = _l1_distance(params, anchor)
            neg = sum(_l1_distance(params, negative) for negative in negatives) + NEG_EPS
        ctx.anchor, ctx.negatives = anchor, negatives
        ctx.save_for_backward(pos, neg, *params)
        return pos / neg

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        pos, neg, *params = ctx.saved_tensors
        grads = torch._foreach_sign(torch._foreach_sub(params, ctx.anchor))
        torch._foreach_div_(grads, neg)
        if ctx.negatives:
            push = torch._foreach_sign(torch._foreach_sub(params, ctx.negatives[0]))
            for negative in ctx.negatives[1:]:
                torch._foreach_add_(push, torch._foreach_sign(torch._foreach_sub(params, negative)))
            torch._foreach_mul_(push, pos / neg**2)
            torch._foreach_sub_(grads, push)
        torch._foreach_mul_(grads, grad_output)
        return (None, None, *grads)


def contrastive_l1(
    params: Sequence[Tensor], anchor: Sequence[Tensor], negatives: Sequence[Sequence[Tensor]]
) -> Tensor:
    """FedMRI's L_con = pos / (neg + 1e-14): pulls ``params`` to ``anchor``, pushes from ``negatives``.

    Args:
        params: the live encoder parameters of one site (gradients flow to these).
        anchor: the server's encoder, tensor for tensor.
        negatives: previous-round local encoders (each a list matching ``params``).
    Returns:
        A 0-dim tensor; its backward pass gives the exact (sub)gradient of the ratio.
    """
    anchor = [a.detach() for a in anchor]
    negatives = [[n.detach() for n in negative] for negative in negatives]
    for group in (anchor, *negatives):
        if len(group) != len(params):
            raise ValueError(f"expected {len(params)} tensors per encoder, got {len(group)}")
    return _ContrastiveL1.apply(anchor, negatives, *params)
