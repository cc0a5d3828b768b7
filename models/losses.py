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


class _ContrastiveL1(torch.autograd.Function):
    """pos / (neg + eps) with the analytic gradient; inputs after the two lists are the parameters.

    The forward pass keeps sign(theta - g) and sum_j sign(theta - theta_j) (two parameter-sized lists,
    built in place from the differences it needs anyway), so the backward pass is two fused passes.
    """

    @staticmethod
    def forward(ctx, anchor: list[Tensor], negatives: list[list[Tensor]], *params: Tensor) -> Tensor:
        with torch.no_grad():
            pos, toward = _distance_and_sign(params, anchor)
            neg, away = torch.zeros_like(pos), None
            for negative in negatives:
                distance, signs = _distance_and_sign(params, negative)
                neg = neg + distance
                if away is None:
                    away = signs
                else:
                    torch._foreach_add_(away, signs)
            neg = neg + NEG_EPS
        ctx.toward, ctx.away = toward, away
        ctx.save_for_backward(pos, neg)
        return pos / neg

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        pos, neg = ctx.saved_tensors
        grads, away = ctx.toward, ctx.away
        ctx.toward = ctx.away = None
        torch._foreach_mul_(grads, grad_output / neg)
        if away is not None:
            torch._foreach_mul_(away, grad_output * pos / neg**2)
            torch._foreach_sub_(grads, away)
        return (None, None, *grads)


def _distance_and_sign(params: Sequence[Tensor], others: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """(sum_p |params - others|_1 as a 0-dim device tensor, sign(params - others) per tensor)."""
    diffs = torch._foreach_sub(list(params), list(others))
    distance = torch.stack(torch._foreach_norm(diffs, 1)).sum()
    torch._foreach_sign_(diffs)
    return distance, diffs


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
