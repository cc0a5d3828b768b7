"""FedRep: a shared body, a local head, head trained first then body each round (Collins et al.,
"Exploiting Shared Representations for Personalized Federated Learning", ICML 2021, Algorithm 1).

The paper's head is the network's final layer, so the head here is the 1x1 output conv unless
``fl.head`` says otherwise. At equal compute with the other algorithms the head and body steps share
the round's ``fl.local_epochs``: the first ``head_epochs`` epochs' worth of optimiser steps (fractions
of an epoch allowed) train only the head, the remaining steps only the body, in one pass over the data.
"""

from __future__ import annotations

from pydantic import Field
from torch import nn

from fl.algorithms.base import AlgorithmOptions, Client, LocalPlan, Payload, Phase, head_names
from fl.algorithms.heads import HeadSplit, head_of


class FedRepOptions(AlgorithmOptions):
    """FedRep's alternation within the round's fl.local_epochs: head steps, then body steps."""

    head_epochs: float = Field(
        0.5,
        gt=0.0,
        description="epochs' worth of each round's steps that train only the head (body frozen), taken "
        "from fl.local_epochs (must be less); the rest train the body with the head frozen",
    )


class FedRepClient(Client):
    """Trains the first ``head_epochs`` worth of steps with only the head learning, then the body."""

    options: FedRepOptions

    def plan(self, rnd: int, payload: Payload, model: nn.Module, epochs: int) -> LocalPlan:
        head_epochs = self.options.head_epochs
        if head_epochs >= epochs:
            raise ValueError(
                f"fl.fedrep.head_epochs: {head_epochs:g} leaves no body steps in fl.local_epochs={epochs}"
            )
        names = [n for n, _ in model.named_parameters()]
        head = tuple(sorted(head_names(names, head_of(self.context, FedRep.default_head))))
        return LocalPlan([Phase(head_epochs, train=head), Phase(epochs - head_epochs, freeze=head)])


class FedRep(HeadSplit):
    """Only the body is averaged; the head (``fl.head``, default the 1x1 output conv) stays local."""

    name = "fedrep"
    label = "FedRep"
    Options = FedRepOptions
    client = FedRepClient
    default_head = "conv"
