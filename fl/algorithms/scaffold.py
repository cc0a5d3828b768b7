"""SCAFFOLD: FedAvg with server and client control variates that correct client drift (Karimireddy et
al., "SCAFFOLD: Stochastic Controlled Averaging for Federated Learning", ICML 2020, Algorithm 1).

Local steps follow ``grad + c - c_i`` (a penalty whose gradient is ``c - c_i``). After the fit the
client variate becomes, with ``fl.scaffold.variates``:

* ``gradients``: the mean raw minibatch gradient over the local steps, which equals the paper's
  option II for plain SGD and keeps the variates in gradient units under RMSprop or Adam;
* ``delta``: the paper's option II, ``c_i - c + (x - y_i) / (steps * lr)`` (for ``optim.name: sgd``).

The server starts from ``c = 0`` and adds ``1/N`` times the sum of the variate changes of the sites
that trained (all N when none sits a round out). The variates cover the shared floating-point
parameters; each costs one model's worth of bytes per round in each direction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from fl.aggregation import TensorDict
from fl.algorithms.base import (
    AlgorithmOptions,
    Client,
    LocalPlan,
    OnDevice,
    Payload,
    Phase,
    Reply,
    Server,
    prefixed,
    shared_parameters,
    unprefixed,
)


class ScaffoldOptions(AlgorithmOptions):
    """SCAFFOLD's client control variates."""

    variates: Literal["gradients", "delta"] = Field(
        "gradients",
        description="mean raw gradient over the local steps, or the paper's option II (x - y) / (steps * lr)",
    )


class _Linear(torch.autograd.Function):
    """sum_p <d_p, theta_p>: a loss term whose gradient is the constant direction d."""

    @staticmethod
    def forward(ctx, directions: list[Tensor], *params: Tensor) -> Tensor:
        with torch.no_grad():
            value = torch.stack([(d * p).sum() for d, p in zip(directions, params)]).sum()
        ctx.directions = directions
        return value

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        return (None, *[d * grad_output for d in ctx.directions])


class ScaffoldClient(Client):
    """Corrects every step by ``c - c_i``, taps the gradients, and sends back its variate change."""

    options: ScaffoldOptions

    def __init__(self, options: ScaffoldOptions, context, site: str):
        super().__init__(options, context, site)
        self.c_local: TensorDict = {}
        self._names: list[str] = []
        self._correction: TensorDict = {}
        self._grad_sum: list[Tensor] | None = None
        self._steps = 0

    def plan(self, rnd: int, payload: Payload, model: nn.Module, epochs: int) -> LocalPlan:
        names = [
            n
            for n in shared_parameters(model, payload.global_state)
            if payload.global_state[n].is_floating_point()
        ]
        c = unprefixed("c", payload.extra)
        c_i = {n: self.c_local.get(n, torch.zeros_like(c[n])) for n in names}
        self._names, self._grad_sum, self._steps = names, None, 0
        self._correction = {n: (c[n] - c_i[n]) for n in names}
        plan = LocalPlan([Phase(epochs)], after_backward=self._on_step)
        if not names or all(not torch.any(d) for d in self._correction.values()):
            return plan
        directions = OnDevice([self._correction[n] for n in names])

        def drift_correction(model: nn.Module, outputs: Mapping[str, Tensor] | None = None) -> Tensor:
            live = dict(model.named_parameters())
            params = [live[n] for n in names]
            return _Linear.apply(directions.on(params[0].device), *params)

        plan.penalty = drift_correction
        return plan

    def _on_step(self, model: nn.Module) -> None:
        self._steps += 1
        if self.options.variates != "gradients":
            return
        named = dict(model.named_parameters())
        grads = [
            named[n].grad.detach() if named[n].grad is not None else torch.zeros_like(named[n])
            for n in self._names
        ]
        if self._grad_sum is None:
            self._grad_sum = [g.clone() for g in grads]
        else:
            torch._foreach_add_(self._grad_sum, grads)

    def reply(
        self, rnd: int, payload: Payload, model: nn.Module, shared: TensorDict, steps: int, lr: float
    ) -> Reply:
        names, correction = self._names, self._correction
        steps = self._steps or steps
        if not names or steps <= 0:
            return Reply(shared)
        old = {n: self.c_local.get(n, torch.zeros_like(correction[n])) for n in names}
        if self.options.variates == "gradients":
            # The tapped gradients include the correction c - c_i; remove it to get the raw mean.
            new = {n: g.detach().cpu() / steps - correction[n] for n, g in zip(names, self._grad_sum or [])}
            if not new:
                return Reply(shared)
        else:
            live = dict(model.named_parameters())
            c = unprefixed("c", payload.extra)
            new = {
                n: old[n]
                - c[n]
                + (payload.global_state[n].to(torch.float32) - live[n].detach().cpu()) / (steps * lr)
                for n in names
            }
        delta = {n: new[n] - old[n] for n in names}
        self.c_local = new
        return Reply(shared, extra=prefixed("delta", delta))

    def state_dict(self) -> dict[str, Any]:
        return {"c_local": self.c_local}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.c_local = dict(state.get("c_local", {}))


class Scaffold(Server):
    """The whole model is averaged; the server variate ``c`` travels to every site each round."""

    name = "scaffold"
    label = "SCAFFOLD"
    shared_patterns = ("*",)
    Options = ScaffoldOptions
    client = ScaffoldClient

    def __init__(self, options: ScaffoldOptions, context):
        super().__init__(options, context)
        self.c: TensorDict = {}

    def setup(self, model: nn.Module) -> None:
        super().setup(model)
        names = shared_parameters(model, self.global_state)
        self.c = {
            n: torch.zeros_like(self.global_state[n])
            for n in names
            if self.global_state[n].is_floating_point()
        }

    def extra(self, site: str, rnd: int) -> TensorDict:
        return prefixed("c", self.c)

    def aggregate(self, rnd: int, replies: Mapping[str, Reply], weights: Mapping[str, float]) -> None:
        deltas = [unprefixed("delta", r.extra) for r in replies.values()]
        deltas = [d for d in deltas if d]
        if deltas:
            # c += (1/N) sum over the sites that trained of their variate change (Algorithm 1, line 17)
            total = len(self.context.sites) or len(replies)
            self.c = {n: self.c[n] + sum(d[n] for d in deltas) / total for n in deltas[0]}
        super().aggregate(rnd, replies, weights)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "c": self.c}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.c = dict(state.get("c", {}))
