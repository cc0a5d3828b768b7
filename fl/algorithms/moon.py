"""MOON: FedAvg plus a model-contrastive term in every site's loss (Li, He, Song, "Model-Contrastive
Federated Learning", CVPR 2021, Eq. 3 and Algorithm 1).

The whole model is averaged as in FedAvg. At every local step the site's loss gains

    mu * -log( exp(sim(z, z_glob) / tau) / (exp(sim(z, z_glob) / tau) + exp(sim(z, z_prev) / tau)) )

averaged over the batch, with ``sim`` the cosine similarity and, for the same batch, ``z`` the
representation under the site's live model, ``z_glob`` under the round's global model and ``z_prev``
under the site's own model at the end of its previous local fit (both frozen copies, in eval mode).

The representation is the U-Net's bottleneck, averaged over space and flattened to (N, C): MOON's
variant without a projection head uses the base encoder's output, which in its ResNets is the
globally average-pooled last feature map. In a site's first fit there is no previous local model, so
the term (which would have no negative) is left out: that fit is FedAvg's.

Defaults are the paper's: ``tau`` = 0.5, and ``mu`` = 1, its value for CIFAR-100 and Tiny-ImageNet
(it uses 5 for CIFAR-10).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from fl.aggregation import TensorDict
from fl.algorithms.base import AlgorithmOptions, Client, LocalPlan, Payload, Phase, Reply, Server


class MOONOptions(AlgorithmOptions):
    """MOON's model-contrastive term: its weight and temperature."""

    mu: float = Field(
        1.0, ge=0.0, description="weight of the model-contrastive term (the paper: 1; 5 for CIFAR-10)"
    )
    tau: float = Field(0.5, gt=0.0, description="temperature of the cosine similarities (the paper: 0.5)")


def representation(features: Tensor) -> Tensor:
    """Bottleneck features (N, C, h, w) -> MOON's representation (N, C): the spatial mean."""
    return features.mean(dim=(-2, -1))


def model_contrastive_loss(z: Tensor, z_glob: Tensor, z_prev: Tensor, tau: float) -> Tensor:
    """MOON's term for one batch of representations (N, D) each, averaged over the batch (0-dim):
    cross-entropy of the positive pair (local, global) against the negative (local, previous local)."""
    positive = F.cosine_similarity(z, z_glob, dim=1) / tau
    negative = F.cosine_similarity(z, z_prev, dim=1) / tau
    return (torch.logsumexp(torch.stack([positive, negative], dim=1), dim=1) - positive).mean()


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` that never learns, in eval mode."""
    copied = copy.deepcopy(model)
    copied.eval()
    copied.requires_grad_(False)
    return copied


class MOONClient(Client):
    """Adds the model-contrastive term against a frozen copy of the round's global model and of the
    site's previous local model (kept here between rounds)."""

    options: MOONOptions

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.previous: TensorDict = {}  # the site's model after its last local fit (state dict, CPU)

    def plan(self, rnd: int, payload: Payload, model: nn.Module, epochs: int) -> LocalPlan:
        mu, tau = self.options.mu, self.options.tau
        if mu == 0 or not self.previous:
            return LocalPlan([Phase(epochs)])
        glob = frozen_copy(model)  # the global tensors are loaded: the whole model is shared
        prev = frozen_copy(model)
        prev.load_state_dict(self.previous)

        def contrastive(model: nn.Module, outputs: Mapping[str, Tensor]) -> Tensor:
            features, x = outputs["features"], outputs["input"]
            if next(glob.parameters()).device != x.device:
                glob.to(x.device), prev.to(x.device)
            with torch.no_grad():
                z_glob = representation(glob.encoder(x)[0])
                z_prev = representation(prev.encoder(x)[0])
            return mu * model_contrastive_loss(representation(features), z_glob, z_prev, tau)

        return LocalPlan([Phase(epochs)], penalty=contrastive)

    def reply(
        self, rnd: int, payload: Payload, model: nn.Module, shared: TensorDict, steps: int, lr: float
    ) -> Reply:
        self.previous = {n: t.detach().clone().cpu() for n, t in model.state_dict().items()}
        return Reply(shared)

    def state_dict(self) -> dict[str, Any]:
        return {"previous": self.previous}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.previous = dict(state.get("previous", {}))


class MOON(Server):
    """The whole model is averaged; the sites add the model-contrastive term."""

    name = "moon"
    label = "MOON"
    shared_patterns = ("*",)
    Options = MOONOptions
    client = MOONClient

    @classmethod
    def check(cls, options: MOONOptions | None, sites: list[str], model_kind: str) -> None:
        if model_kind == "dual_domain":
            raise ValueError(
                "fl.algorithm: moon contrasts the image U-Net's bottleneck representations; "
                "it is not available with model.kind=dual_domain"
            )
