"""FL-MRCM: FedAvg plus adversarial alignment of each source site's bottleneck features to a target
site's (Guo et al., "Multi-institutional Collaborations for Improving Deep Learning-based Magnetic
Resonance Image Reconstruction Using Federated Learning", CVPR 2021), in a feature-exchange form.

At the start of every round the target site (``fl.flmrcm.target_site``) runs the global encoder on
``features`` of its training slices and sends the 2x2-pooled bottleneck features, never images, to
the other sites. At every local step of a source site its discriminator (kept at that site) takes
one RMSprop step to tell the site's own pooled features from the target's, and the site's loss
gains ``weight * BCE(D(own features), target)``. The target site trains plainly; the whole model is
averaged as in FedAvg.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from fl.algorithms.base import AlgorithmOptions, Client, LocalPlan, OnDevice, Payload, Phase, Reply, Server
from utils.seeding import stable_seed


class FLMRCMOptions(AlgorithmOptions):
    """FL-MRCM's adversarial alignment of bottleneck features to a target site."""

    target_site: str | None = Field(
        None, description="the site whose features the others align to; null = last"
    )
    weight: float = Field(1.0, ge=0.0, description="weight of the adversarial term (the authors' is 1)")
    features: int = Field(64, ge=1, description="pooled feature vectors the target site sends each round")
    disc_lr: float = Field(1e-3, gt=0.0, description="learning rate of each source site's discriminator")
    hidden: int = Field(256, ge=1, description="hidden units of the discriminator")


def pooled_features(features: Tensor) -> Tensor:
    """Bottleneck features (N, C, h, w) -> (N, 4C): 2x2 average pooling, as FL-MRCM's authors do."""
    return F.adaptive_avg_pool2d(features, 2).flatten(1)


def feature_discriminator(dim: int, hidden: int) -> nn.Module:
    """FL-MRCM's small discriminator: pooled bottleneck features -> one logit (target site or not)."""
    return nn.Sequential(nn.Linear(dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))


def _optimizer_to(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, Tensor) and key != "step":
                state[key] = value.to(device)


def target_of(options: FLMRCMOptions, sites: Iterable[str]) -> str:
    """The target site: the configured one, or the last site."""
    return options.target_site or list(sites)[-1]


class FLMRCMClient(Client):
    """The target site computes features; a source site trains its discriminator and the adversarial term."""

    options: FLMRCMOptions

    def __init__(self, options: FLMRCMOptions, context, site: str):
        super().__init__(options, context, site)
        self.target = target_of(options, context.sites)
        self.discriminator: nn.Module | None = None
        self.disc_optimizer: torch.optim.Optimizer | None = None

    def prepare(self, rnd: int, payload: Payload, model: nn.Module, batches: Iterable[dict]) -> Reply:
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        collected, count = [], 0
        with torch.no_grad():
            for batch in batches:
                features, _ = model.encoder(batch["input"].to(device))
                collected.append(pooled_features(features).float().cpu())
                count += len(collected[-1])
                if count >= self.options.features:
                    break
        model.train(was_training)
        return Reply(extra={"features": torch.cat(collected)[: self.options.features]})

    def _discriminator(self, dim: int) -> nn.Module:
        if self.discriminator is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(stable_seed(self.context.seed, "flmrcm-discriminator", self.site))
                self.discriminator = feature_discriminator(dim, self.options.hidden)
            self.disc_optimizer = torch.optim.RMSprop(
                self.discriminator.parameters(), lr=self.options.disc_lr
            )
        return self.discriminator

    def plan(self, rnd: int, payload: Payload, model: nn.Module, epochs: int) -> LocalPlan:
        plan = LocalPlan([Phase(epochs)])
        if "features" not in payload.extra:
            return plan
        features = payload.extra["features"]
        disc = self._discriminator(features.shape[1])
        optimizer = self.disc_optimizer
        targets = OnDevice([features])
        generator = torch.Generator().manual_seed(
            stable_seed(self.context.seed, "flmrcm-sample", self.site, rnd)
        )
        weight = self.options.weight

        def adversarial(model: nn.Module, outputs: Mapping[str, Tensor] | None = None) -> Tensor:
            if outputs is None or "features" not in outputs:
                raise ValueError("FL-MRCM's penalty needs the batch's bottleneck features")
            own = pooled_features(outputs["features"]).float()
            device = own.device
            if next(disc.parameters()).device != device:  # follow the model to its training device
                disc.to(device)
                _optimizer_to(optimizer, device)
            target = targets.on(device)[0]
            index = torch.randint(len(target), (own.shape[0],), generator=generator).to(device)
            theirs = target[index]
            ones, zeros = torch.ones(len(own), 1, device=device), torch.zeros(len(own), 1, device=device)
            disc.requires_grad_(True)
            optimizer.zero_grad(set_to_none=True)
            with torch.enable_grad():
                disc_loss = 0.5 * (
                    F.binary_cross_entropy_with_logits(disc(own.detach()), zeros)
                    + F.binary_cross_entropy_with_logits(disc(theirs), ones)
                )
                disc_loss.backward()
            optimizer.step()
            disc.requires_grad_(False)
            return weight * F.binary_cross_entropy_with_logits(disc(own), ones)

        plan.penalty = adversarial
        return plan

    def state_dict(self) -> dict[str, Any]:
        if self.discriminator is None:
            return {}
        return {
            "discriminator": self.discriminator.state_dict(),
            "optimizer": self.disc_optimizer.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.discriminator = self.disc_optimizer = None
        if "discriminator" in state:
            weights = state["discriminator"]
            self._discriminator(weights["0.weight"].shape[1]).load_state_dict(weights)
            self.disc_optimizer.load_state_dict(state["optimizer"])


class FLMRCM(Server):
    """The whole model is averaged; the target site's features of the round go to every source site."""

    name = "flmrcm"
    label = "FL-MRCM"
    shared_patterns = ("*",)
    Options = FLMRCMOptions
    client = FLMRCMClient
    separate_sites_unsupported = (
        "its target site must send features of the round's global model to the other sites between "
        "aggregation and their local fits, an exchange the Flower app does not make"
    )
    options: FLMRCMOptions

    @classmethod
    def check(cls, options: FLMRCMOptions, sites: list[str], model_kind: str) -> None:
        if model_kind == "dual_domain":
            raise ValueError(
                "fl.algorithm: flmrcm aligns the image U-Net's bottleneck features; "
                "it is not available with model.kind=dual_domain"
            )
        if options.target_site is None:
            options.target_site = sites[-1]
        elif options.target_site not in sites:
            raise ValueError(
                f"fl.flmrcm.target_site: {options.target_site!r} is not a site; expected one of {sites}"
            )
        if len(sites) < 2:
            raise ValueError("fl.algorithm: flmrcm needs a target site and at least one other site")

    def __init__(self, options: FLMRCMOptions, context):
        super().__init__(options, context)
        self.target = target_of(options, context.sites)
        self.features: Tensor | None = None

    def prepare_requests(self, rnd: int) -> list[str]:
        return [self.target]

    def receive_prepared(self, rnd: int, replies: Mapping[str, Reply]) -> None:
        if self.target in replies:
            self.features = replies[self.target].extra["features"]

    def extra(self, site: str, rnd: int) -> dict[str, Tensor]:
        if site == self.target or self.features is None or self.options.weight == 0:
            return {}
        return {"features": self.features}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "features": self.features}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.features = state.get("features")
