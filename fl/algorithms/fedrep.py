"""FedRep: a shared body, a local head, head trained first then body each round (Collins et al.,
"Exploiting Shared Representations for Personalized Federated Learning", ICML 2021, Algorithm 1)."""

from __future__ import annotations

from pydantic import Field
from torch import nn

from fl.algorithms.base import AlgorithmOptions, Client, LocalPlan, Payload, Phase, head_names
from fl.algorithms.heads import HeadSplit


class FedRepOptions(AlgorithmOptions):
    """FedRep's alternation: head epochs (body frozen), then fl.local_epochs body epochs (head frozen)."""

    head_epochs: int = Field(1, ge=1, description="epochs training only the head at the start of each round")


class FedRepClient(Client):
    """Trains ``head_epochs`` epochs with only the head learning, then the body with the head frozen."""

    options: FedRepOptions

    def plan(self, rnd: int, payload: Payload, model: nn.Module, epochs: int) -> LocalPlan:
        head = tuple(sorted(head_names([n for n, _ in model.named_parameters()], self.context.head)))
        return LocalPlan([Phase(self.options.head_epochs, train=head), Phase(epochs, freeze=head)])


class FedRep(HeadSplit):
    """Only the body is averaged; the head stays local."""

    name = "fedrep"
    label = "FedRep"
    Options = FedRepOptions
    client = FedRepClient
