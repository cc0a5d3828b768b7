"""FL-MRCM: FedAvg of the reconstruction network plus adversarial alignment of each source site's
bottleneck features to a target site's (Guo et al., "Multi-institutional Collaborations for Improving
Deep Learning-based Magnetic Resonance Image Reconstruction Using Federated Learning", CVPR 2021).

``mode: paper`` (default) is the method as its authors ran it (github guopengf/FL-MRCM,
``models/recon_Update.py`` ``LocalUpdate_ad_da.train`` and ``main_fl_mrcm.py``):

- at every local step of a source site a batch of the target site's training images goes through
  the source site's current network (``output_t, z_t = net(input_t)``; the target set is cycled to
  the source's length, as ``main_fl_mrcm.py`` repeats the target examples), so every step sees both;
- the features are the bottleneck 2x2-average-pooled and flattened
  (``UnetModel_ad_da.forward``: ``F.adaptive_avg_pool2d(output, 2)``);
- one discriminator per source site, never averaged (``FD[i]``): Linear(4C, 256), LeakyReLU(0.2),
  Linear(256, 2), LeakyReLU(0.2) (``Feature_discriminator``), with its own RMSprop at ten times the
  network's base learning rate (``opt_FD ... lr=args.lr*10``);
- domain codes ``[1, 0]`` for source and ``[0, 1]`` for target features; the discriminator first
  takes a step on BCE-with-logits of the detached features against the FLIPPED codes
  (``1 - src_domain_code``, ``1 - tgt_domain_code``), mean of the two terms;
- then the network's loss is the reconstruction loss plus ``(BCE(D(z_s), src) + BCE(D(z_t), tgt)) / 2``
  with the discriminator frozen (``loss = L1_loss + loss_adv_g``); the authors' reconstruction loss
  is L1 (``nn.L1Loss``), which the config's ``loss: l1`` selects;
- the target site trains on its reconstruction loss alone (``flag``), and the whole network is
  averaged as in FedAvg.

It moves target images into the source sites' fits, so every site must be in one process: the
Flower app and ``train_multi_gpu.py`` refuse it. Discriminator steps are not reconstruction steps:
a source site takes one per reconstruction step and reports their number (``disc_steps``).

``mode: features`` is a private variant of ours: at the start of every round the target site sends
``features`` 2x2-pooled bottleneck vectors of its training slices under the global model (never
images); a source site's discriminator (one logit, ``hidden`` units, RMSprop at ``disc_lr``) takes a
step per local step to tell its own features from those, and the site's loss gains
``weight * BCE(D(own), target)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from fl.algorithms.base import (
    AlgorithmOptions,
    Client,
    LocalPlan,
    OnDevice,
    Payload,
    PeerData,
    Phase,
    Reply,
    Server,
)
from utils.seeding import stable_seed


class FLMRCMOptions(AlgorithmOptions):
    """FL-MRCM's adversarial alignment of bottleneck features to a target site."""

    mode: Literal["paper", "features"] = Field(
        "paper",
        description="paper: the authors' per-step target images through each source network; features: "
        "our private variant, pooled target features sent once per round",
    )
    target_site: str | None = Field(
        None, description="the site whose features the others align to; null = last"
    )
    weight: float = Field(1.0, ge=0.0, description="weight of the adversarial term (the authors' is 1)")
    disc_lr: float | None = Field(
        None,
        gt=0.0,
        description="learning rate of each source site's discriminator; null: 10 x optim.lr (the "
        "authors') in paper mode, 1e-3 in features mode",
    )
    hidden: int = Field(256, ge=1, description="hidden units of the discriminator (the authors': 256)")
    features: int = Field(
        64, ge=1, description="features mode: pooled feature vectors the target site sends each round"
    )


def pooled_features(features: Tensor) -> Tensor:
    """Bottleneck features (N, C, h, w) -> (N, 4C): 2x2 average pooling, as FL-MRCM's authors do."""
    return F.adaptive_avg_pool2d(features, 2).flatten(1)


def feature_discriminator(dim: int, hidden: int) -> nn.Module:
    """The features mode's discriminator: pooled bottleneck features -> one logit (target site or not)."""
    return nn.Sequential(nn.Linear(dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))


def paper_discriminator(dim: int, hidden: int = 256) -> nn.Module:
    """The authors' ``Feature_discriminator``: pooled features (N, dim) -> two domain logits (N, 2),
    LeakyReLU(0.2) after both layers."""
    return nn.Sequential(nn.Linear(dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 2), nn.LeakyReLU(0.2))


SOURCE_CODE = (1.0, 0.0)  # the authors' src_domain_code
TARGET_CODE = (0.0, 1.0)  # the authors' tgt_domain_code


def discriminator_loss(disc: nn.Module, source: Tensor, target: Tensor) -> Tensor:
    """The authors' discriminator loss: BCE-with-logits of D on source and target features against the
    flipped domain codes, mean of the two."""
    src = source.new_tensor(SOURCE_CODE).expand(len(source), 2)
    tgt = target.new_tensor(TARGET_CODE).expand(len(target), 2)
    return 0.5 * (
        F.binary_cross_entropy_with_logits(disc(source), 1 - src)
        + F.binary_cross_entropy_with_logits(disc(target), 1 - tgt)
    )


def generator_loss(disc: nn.Module, source: Tensor, target: Tensor) -> Tensor:
    """The authors' adversarial term of the network: BCE-with-logits of D on source and target features
    against their own domain codes, mean of the two."""
    src = source.new_tensor(SOURCE_CODE).expand(len(source), 2)
    tgt = target.new_tensor(TARGET_CODE).expand(len(target), 2)
    return 0.5 * (
        F.binary_cross_entropy_with_logits(disc(source), src)
        + F.binary_cross_entropy_with_logits(disc(target), tgt)
    )


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
        self.peers: Mapping[str, PeerData] = {}
        self.disc_steps = 0  # discriminator steps of the last local fit

    def connect(self, peers: Mapping[str, PeerData]) -> None:
        self.peers = peers

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
            paper = self.options.mode == "paper"
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(stable_seed(self.context.seed, "flmrcm-discriminator", self.site))
                build = paper_discriminator if paper else feature_discriminator
                self.discriminator = build(dim, self.options.hidden)
            lr = self.options.disc_lr or (10 * self.context.lr if paper else 1e-3)
            self.disc_optimizer = torch.optim.RMSprop(self.discriminator.parameters(), lr=lr)
        return self.discriminator

    def reset_optimizers(self) -> None:
        if self.disc_optimizer is not None:
            self.disc_optimizer.state.clear()

    def _on(self, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
        """The discriminator and its optimiser on ``device`` (they follow the model to its device)."""
        disc, optimizer = self.discriminator, self.disc_optimizer
        if next(disc.parameters()).device != device:
            disc.to(device)
            _optimizer_to(optimizer, device)
        return disc, optimizer

    def _step(self, disc: nn.Module, optimizer: torch.optim.Optimizer, loss: Callable[[], Tensor]) -> None:
        """One discriminator step on ``loss()`` (gradients reach only the discriminator)."""
        disc.requires_grad_(True)
        optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss().backward()
        optimizer.step()
        disc.requires_grad_(False)
        self.disc_steps += 1

    def plan(self, rnd: int, payload: Payload, model: nn.Module, epochs: int) -> LocalPlan:
        self.disc_steps = 0
        if self.options.mode == "paper":
            return self._paper_plan(rnd, model, epochs)
        plan = LocalPlan([Phase(epochs)])
        if "features" not in payload.extra:
            return plan
        features = payload.extra["features"]
        self._discriminator(features.shape[1])
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
            disc, optimizer = self._on(device)
            target = targets.on(device)[0]
            index = torch.randint(len(target), (own.shape[0],), generator=generator).to(device)
            theirs = target[index]
            ones, zeros = torch.ones(len(own), 1, device=device), torch.zeros(len(own), 1, device=device)
            self._step(
                disc,
                optimizer,
                lambda: (
                    0.5
                    * (
                        F.binary_cross_entropy_with_logits(disc(own.detach()), zeros)
                        + F.binary_cross_entropy_with_logits(disc(theirs), ones)
                    )
                ),
            )
            return weight * F.binary_cross_entropy_with_logits(disc(own), ones)

        plan.penalty = adversarial
        return plan

    def _paper_plan(self, rnd: int, model: nn.Module, epochs: int) -> LocalPlan:
        """The authors' step: target images through this network, a discriminator step, two-part term."""
        plan = LocalPlan([Phase(epochs)])
        if self.site == self.target or self.options.weight == 0:
            return plan  # the target site trains on its reconstruction loss alone
        if self.target not in self.peers:
            raise ValueError(
                "fl.flmrcm.mode: paper reads the target site's training images during every source "
                "site's fit, which needs every site in one process (train.py); use mode: features"
            )
        batches = self.peers[self.target](f"flmrcm-target-of-{self.site}", rnd)
        weight = self.options.weight

        def adversarial(model: nn.Module, outputs: Mapping[str, Tensor] | None = None) -> Tensor:
            if outputs is None or "features" not in outputs:
                raise ValueError("FL-MRCM's penalty needs the batch's bottleneck features")
            source = pooled_features(outputs["features"]).float()
            device = source.device
            target_features, _ = model.encoder(next(batches)["input"].to(device))
            target = pooled_features(target_features).float()
            self._discriminator(source.shape[1])
            disc, optimizer = self._on(device)
            self._step(disc, optimizer, lambda: discriminator_loss(disc, source.detach(), target.detach()))
            return weight * generator_loss(disc, source, target)

        plan.penalty = adversarial
        return plan

    def reply(
        self, rnd: int, payload: Payload, model: nn.Module, shared: dict[str, Tensor], steps: int, lr: float
    ) -> Reply:
        return Reply(shared, values={"disc_steps": self.disc_steps})

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
    refused_transports = {
        "flower": "fl.algorithm: flmrcm cannot run with every site in its own process: its sites exchange "
        "data between aggregation and their local fits (mode: paper passes the target site's training "
        "images through every source site's network at every step; mode: features sends the target's "
        "features to the source sites), which needs every site in one process",
        "ddp_data": "fl.parallel: data does not support fl.algorithm=flmrcm (each rank would train its own "
        "discriminator); use fl.parallel: sites",
    }
    options: FLMRCMOptions

    @classmethod
    def refusal(cls, transport: str, options: FLMRCMOptions | None) -> str | None:
        if transport == "ddp_sites" and options is not None and options.mode == "paper":
            return (
                "fl.flmrcm.mode: paper passes the target site's training images through every source "
                "site's network at every step, so all sites must share one process; use train.py, or "
                "mode: features"
            )
        return super().refusal(transport, options)

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
        return [self.target] if self.options.mode == "features" else []

    def receive_prepared(self, rnd: int, replies: Mapping[str, Reply]) -> None:
        if self.target in replies:
            self.features = replies[self.target].extra["features"]

    def extra(self, site: str, rnd: int) -> dict[str, Tensor]:
        if (
            self.options.mode != "features"
            or site == self.target
            or self.features is None
            or self.options.weight == 0
        ):
            return {}
        return {"features": self.features}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "features": self.features}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.features = state.get("features")
