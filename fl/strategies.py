"""Federated algorithms as small server-side objects: what is shared, the local penalty, aggregation.

A strategy decides three things and nothing else:

* which state-dict entries travel (:meth:`Strategy.is_shared`, by name pattern: FedMRI shares
  ``encoder.*``, FedAvg ``*``, SingleSet nothing);
* an optional penalty added to a site's loss during its local training (:meth:`Strategy.penalty`);
* how the sites' shared tensors become the new global ones (:meth:`Strategy.aggregate`).

The federation loop (``fl/federation.py``) knows nothing about any particular algorithm.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import Tensor, nn

from models.losses import contrastive_l1

TensorDict = dict[str, Tensor]
Penalty = Callable[[nn.Module], Tensor]


def weighted_average(updates: Mapping[str, TensorDict], weights: Mapping[str, float]) -> TensorDict:
    """Average the sites' tensors name by name with the given (normalised here) weights.

    Floating tensors are averaged in float64 and cast back; integer buffers (e.g. BatchNorm's
    ``num_batches_tracked``) take the weighted average rounded to the nearest integer.
    """
    if not updates:
        return {}
    total = sum(weights[site] for site in updates)
    if total <= 0:
        raise ValueError("aggregation weights must sum to a positive number")
    names = next(iter(updates.values())).keys()
    averaged: TensorDict = {}
    for name in names:
        acc = None
        for site, tensors in updates.items():
            term = tensors[name].to(torch.float64) * (weights[site] / total)
            acc = term if acc is None else acc.add_(term)
        reference = next(iter(updates.values()))[name]
        averaged[name] = (
            acc.round().to(reference.dtype) if not reference.is_floating_point() else acc.to(reference.dtype)
        )
    return averaged


class Strategy:
    """Base class: share tensors whose names match :attr:`shared_patterns`, average them, no penalty."""

    name = "base"
    shared_patterns: tuple[str, ...] = ("*",)
    excluded_patterns: tuple[str, ...] = ()

    def __init__(self, config: Any = None):
        self.config = config

    def is_shared(self, name: str) -> bool:
        """Whether the state-dict entry ``name`` travels between the sites and the server."""
        matches = any(fnmatchcase(name, p) for p in self.shared_patterns)
        return matches and not any(fnmatchcase(name, p) for p in self.excluded_patterns)

    def shared_names(self, names: list[str]) -> list[str]:
        """The shared subset of ``names``, in order."""
        return [n for n in names if self.is_shared(n)]

    def penalty(self, site: str, rnd: int, model: nn.Module, global_state: TensorDict) -> Penalty | None:
        """A term added to ``site``'s loss during round ``rnd`` (None = plain local training)."""
        return None

    def aggregate(
        self, rnd: int, updates: Mapping[str, TensorDict], weights: Mapping[str, float]
    ) -> TensorDict:
        """New global tensors from each site's shared tensors after its local training."""
        return weighted_average(updates, weights)

    def state_dict(self) -> dict[str, Any]:
        """Server-side state that must survive a checkpoint (tensors and plain data only)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


class FedAvg(Strategy):
    """FedAvg: the whole model is averaged every round (McMahan et al., AISTATS 2017)."""

    name = "fedavg"
    shared_patterns = ("*",)


class SingleSet(Strategy):
    """SingleSet: every site trains alone and nothing is shared (the paper's lower reference)."""

    name = "singleset"
    shared_patterns = ()


class FedMRI(Strategy):
    """FedMRI: shared encoder, local decoders, weighted contrastive term (Feng et al., IEEE TMI 2022).

    The server keeps every site's encoder from the end of the previous round (before averaging);
    from ``fl.fedmri.start_round`` on, site k's loss gains ``beta * pos / neg`` with ``pos`` the L1
    distance of its encoder to the server encoder and ``neg`` the summed L1 distances to the
    previous local encoders of all sites (``negatives: all``) or of itself only (``negatives: self``).
    ``lam`` weights the reconstruction loss.
    """

    name = "fedmri"
    shared_patterns = ("encoder.*",)

    def __init__(self, config: Any = None):
        super().__init__(config)
        options = getattr(config, "fedmri", None)
        self.lam = float(getattr(options, "lam", 1.0))
        self.beta = float(getattr(options, "beta", 100.0))
        self.negatives = getattr(options, "negatives", "all")
        self.start_round = int(getattr(options, "start_round", 2))
        self.previous: dict[str, TensorDict] = {}

    @property
    def reconstruction_weight(self) -> float:
        """``lam``: the weight of the reconstruction loss."""
        return self.lam

    def penalty(self, site: str, rnd: int, model: nn.Module, global_state: TensorDict) -> Penalty | None:
        if rnd < self.start_round or not self.previous or self.beta == 0:
            return None
        if self.negatives == "self":
            if site not in self.previous:
                return None
            negative_sites = [site]
        else:
            negative_sites = sorted(self.previous)
        named = dict(model.named_parameters())
        names = [n for n in global_state if n in named and named[n].requires_grad]
        device = named[names[0]].device
        anchor = [global_state[n].to(device) for n in names]
        negatives = [[self.previous[s][n].to(device) for n in names] for s in negative_sites]
        beta = self.beta

        def contrastive(model: nn.Module) -> Tensor:
            live = dict(model.named_parameters())
            return beta * contrastive_l1([live[n] for n in names], anchor, negatives)

        return contrastive

    def aggregate(
        self, rnd: int, updates: Mapping[str, TensorDict], weights: Mapping[str, float]
    ) -> TensorDict:
        self.previous = {
            site: {n: t.detach().clone() for n, t in tensors.items()} for site, tensors in updates.items()
        }
        return weighted_average(updates, weights)

    def state_dict(self) -> dict[str, Any]:
        return {"previous": self.previous}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.previous = {site: dict(tensors) for site, tensors in state.get("previous", {}).items()}


ALGORITHMS: dict[str, type[Strategy]] = {cls.name: cls for cls in (FedMRI, FedAvg, SingleSet)}


def build_strategy(fl_config: Any) -> Strategy:
    """The strategy named by ``fl.algorithm``, configured from the ``fl`` section."""
    return ALGORITHMS[fl_config.algorithm](fl_config)
