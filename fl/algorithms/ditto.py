"""Ditto: a global model trained by FedAvg and a personal model per site pulled toward it (Li, Hu,
Beirami, Smith, "Ditto: Fair and Robust Federated Learning Through Personalization", ICML 2021,
Algorithm 1).

Every round each site receives the global model w and, as Algorithm 1 does, first updates a copy of
w on its data with the plain loss (the FedAvg update, sent back and averaged), then updates its
personal model v with the loss plus ``lambda/2 ||v - w||^2`` toward the w it received. The site's
model in this project is v: it is what is validated, kept as the site's best and tested. The global
model never enters a site's model: the server shares no tensors through the usual path and sends w
in ``Payload.extra`` (``global/<name>``); the trained copy comes back in ``Reply.extra``.

Equal compute (ours): Algorithm 1 runs E local steps on w and s on v; here the two split the
round's ``fl.local_epochs`` worth of optimiser steps: ``round(global_share * steps)`` on w (default
half, E = s) and the rest on v, so a site takes as many steps per round as under every other method. The
copy of w is trained exactly as a FedAvg site trains its model (same seed, data order, learning
rate, and its own optimiser state carried from round to round in the site's client state), so with
``fl.local_epochs`` doubled Ditto's global model is FedAvg's, bit for bit.

The paper tunes lambda per data set; the default 0.1 here is ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field
from torch import Tensor, nn

from fl.aggregation import TensorDict
from fl.algorithms.base import (
    AlgorithmOptions,
    Client,
    Companion,
    LocalPlan,
    OnDevice,
    Payload,
    Phase,
    Reply,
    Server,
    prefixed,
    unprefixed,
)

PREFIX = "global"  # Payload.extra / Reply.extra names of the global model: global/<state-dict name>


class DittoOptions(AlgorithmOptions):
    """Ditto's pull of the personal model toward the global one, and the split of a round's steps."""

    lam: float = Field(
        0.1, ge=0.0, description="lambda of lambda/2 ||v - w||^2 (tuned per data set in the paper)"
    )
    global_share: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description="share of each round's fl.local_epochs worth of steps that train the global model; "
        "the rest train the personal model (ours, for equal compute)",
    )


def proximity(lam: float, anchor: OnDevice, names: list[str]):
    """The penalty ``lam/2 * sum_p ||v_p - w_p||^2`` over the named parameters of the live model."""

    def penalty(model: nn.Module, outputs: Mapping[str, Tensor] | None = None) -> Tensor:
        live = dict(model.named_parameters())
        params = [live[n] for n in names]
        fixed = anchor.on(params[0].device)
        return 0.5 * lam * sum((p - w).square().sum() for p, w in zip(params, fixed))

    return penalty


class DittoClient(Client):
    """Trains a copy of the global model as FedAvg would, then the site's personal model with the
    proximal pull toward the global model it received."""

    options: DittoOptions

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.optimizer: dict[str, Any] = {}  # the optimiser state of the global copy, between rounds
        self.companion: Companion | None = None

    def plan(self, rnd: int, payload: Payload, model: nn.Module, epochs: int) -> LocalPlan:
        received = unprefixed(PREFIX, payload.extra)
        share = self.options.global_share
        self.companion = Companion(dict(received), self.optimizer, LocalPlan([Phase(epochs * share)]))
        names = [n for n, p in model.named_parameters() if n in received]
        penalty = None
        if self.options.lam > 0 and names:
            penalty = proximity(self.options.lam, OnDevice([received[n] for n in names]), names)
        return LocalPlan([Phase(epochs)], penalty=penalty, companion=self.companion)

    def reply(
        self, rnd: int, payload: Payload, model: nn.Module, shared: TensorDict, steps: int, lr: float
    ) -> Reply:
        companion, self.companion = self.companion, None
        self.optimizer = companion.optimizer
        return Reply(
            shared, extra=prefixed(PREFIX, companion.state), values={"global_steps": companion.steps}
        )

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimizer = dict(state.get("optimizer", {}))


class Ditto(Server):
    """Keeps the global model (FedAvg of the sites' trained copies); shares nothing with the sites'
    own models, which stay personal."""

    name = "ditto"
    label = "Ditto"
    shared_patterns = ()
    Options = DittoOptions
    client = DittoClient

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.model: TensorDict = {}  # the global model w (every state-dict entry)

    def setup(self, model: nn.Module) -> None:
        super().setup(model)
        self.model = {n: t.detach().clone().cpu() for n, t in model.state_dict().items()}

    def extra(self, site: str, rnd: int) -> TensorDict:
        return prefixed(PREFIX, self.model)

    def aggregate(self, rnd: int, replies: Mapping[str, Reply], weights: Mapping[str, float]) -> None:
        self.model = self.average({s: unprefixed(PREFIX, r.extra) for s, r in replies.items()}, weights)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "model": self.model}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.model = dict(state["model"])
