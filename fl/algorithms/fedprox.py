"""FedProx: FedAvg plus a proximal term mu/2 ||theta - theta_global||^2 in every site's loss (Li et al.,
"Federated Optimization in Heterogeneous Networks", MLSys 2020, Eq. 2)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from pydantic import Field
from torch import Tensor, nn

from fl.algorithms.base import (
    AlgorithmOptions,
    Client,
    LocalPlan,
    OnDevice,
    Payload,
    Phase,
    Server,
    shared_parameters,
)


class FedProxOptions(AlgorithmOptions):
    """FedProx's proximal term mu/2 ||theta - theta_global||^2."""

    mu: float = Field(0.01, ge=0.0, description="weight of the proximal term")


class _Proximal(torch.autograd.Function):
    """mu/2 * sum_p ||theta_p - g_p||^2 with the gradient mu * (theta - g), without an autograd graph."""

    @staticmethod
    def forward(ctx, anchor: list[Tensor], mu: float, *params: Tensor) -> Tensor:
        with torch.no_grad():
            diffs = torch._foreach_sub(list(params), anchor)
            value = 0.5 * mu * torch.stack(torch._foreach_norm(diffs, 2)).square().sum()
        ctx.diffs, ctx.mu = diffs, mu
        return value

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        grads = torch._foreach_mul(ctx.diffs, ctx.mu)
        torch._foreach_mul_(grads, grad_output)
        return (None, None, *grads)


class FedProxClient(Client):
    """Adds the proximal term, anchored at the round's global tensors, over the shared parameters."""

    options: FedProxOptions

    def plan(self, rnd: int, payload: Payload, model: nn.Module, epochs: int) -> LocalPlan:
        names = shared_parameters(model, payload.global_state)
        mu = self.options.mu
        if mu == 0 or not names:
            return LocalPlan([Phase(epochs)])
        anchor = OnDevice([payload.global_state[n] for n in names])

        def proximal(model: nn.Module, outputs: Mapping[str, Tensor] | None = None) -> Tensor:
            live = dict(model.named_parameters())
            params = [live[n] for n in names]
            return _Proximal.apply(anchor.on(params[0].device), mu, *params)

        return LocalPlan([Phase(epochs)], penalty=proximal)


class FedProx(Server):
    """The whole model is averaged; the sites add the proximal term."""

    name = "fedprox"
    label = "FedProx"
    shared_patterns = ("*",)
    Options = FedProxOptions
    client = FedProxClient
