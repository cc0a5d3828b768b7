"""FedMRI: a shared encoder, site-specific decoders, and a weighted contrastive term in parameter space
(Feng et al., "Specificity-Preserving Federated Learning for MR Image Reconstruction", IEEE TMI 2022).

Section III-B of the paper: the server averages only the encoder, with uniform weights, and every
decoder stays at its site. Section III-C (Eq. 5-7): from the second round on, site k's loss is
``lam * L_rec + beta * pos / neg``, where ``pos`` is the L1 distance of its encoder to the server's
encoder and ``neg`` the summed L1 distances to the previous round's local encoders of all sites (the
authors' code takes every site's, the site's own included; ``lam = 1``, ``beta = 100`` there). As in
the authors' training loop (``if i > 0``), the term is left out of the first minibatch of every local
epoch (``skip_first_batch``).

``variant`` replaces the paper's term by one of ours (off by default; RESULTS.md measures them):
``l2`` squared L2 distances in the same ratio; ``moon`` a bounded, smooth contrastive form over
per-weight distances normalised by the negatives' spread; ``decoupled`` the paper's gradient applied
outside the optimiser after each step (as AdamW decouples weight decay), so RMSprop's running
average never sees it; ``clipped`` the decoupled step, clipped per weight to the negatives' spread
and never past the server's encoder. Every variant logs the same per-round diagnostics.

``frozen_rounds`` (ours, off by default: ``none``) holds the shared parameters at the server's in every
even round (``even``: 2, 4, ...), so only the site's own parameters (the decoder) train then, through
FedRep's mechanism: a :class:`~fl.algorithms.base.Phase` that freezes them. It tests whether FedMRI's
gain in the authors' regime comes from its term holding the encoder every other round (RESULTS.md,
"Where a verdict flips, and why"). A frozen round's replies are the server's encoder, so with
``beta > 0`` the next round's negatives all equal its anchor.

This package holds the algorithm (here: its options, server half and site half) and, in ``term.py``,
the maths of its term: the paper's ratio with its analytic gradient, our variants and the diagnostics.
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
    Payload,
    Phase,
    Reply,
    Server,
    head_names,
    prefixed,
    shared_parameters,
)
from fl.algorithms.fedmri.term import (
    ContrastiveL1,
    contrastive_l2,
    contrastive_moon,
    contrastive_stats,
    contrastive_step,
    encoder_spread,
    spread_per_weight,
)

VARIANTS = ("paper", "l2", "moon", "decoupled", "clipped")


class FedMRIOptions(AlgorithmOptions):
    """FedMRI's weighted contrastive regulariser: loss = lam * L_rec + beta * pos / neg."""

    lam: float = Field(1.0, ge=0.0, description="weight of the reconstruction loss")
    beta: float = Field(100.0, ge=0.0, description="weight of the contrastive term (the paper's lambda)")
    negatives: Literal["all", "self"] = Field(
        "all", description="previous-round encoders to push away from: every site's, or only the site's own"
    )
    start_round: int = Field(2, ge=1, description="first round (1-based) with the contrastive term")
    share: Literal["encoder", "whole", "all_but_head"] = Field(
        "encoder",
        description="what is averaged (an ablation): the encoder (the paper's), all, or all but fl.head "
        "(null: the 1x1 output conv, the authors' except_last)",
    )
    variant: Literal["paper", "l2", "moon", "decoupled", "clipped"] = Field(
        "paper",
        description="the contrastive term: the paper's, or one of ours (l2, moon, decoupled, clipped)",
    )
    tau: float = Field(1.0, gt=0.0, description="temperature of variant moon")
    skip_first_batch: bool = Field(
        True,
        description="leave the term out of the first minibatch of every local epoch, as the authors' code "
        "does (`if i > 0`); with one local epoch this changes nothing, the term's gradient being zero at "
        "a round's first step (variants decoupled and clipped step the term after every batch)",
    )
    frozen_rounds: Literal["none", "even"] = Field(
        "none",
        description="ours, not the paper's: even freezes the shared parameters (what share averages: the "
        "encoder by default) at the server's in every even round (2, 4, ...), so only the site's own "
        "parameters (the decoder) train then, and the term (whose gradient reaches only the frozen "
        "parameters) is left out, its diagnostics still logged; none is the paper's",
    )


def _contrastive_round(options: FedMRIOptions, rnd: int) -> bool:
    return rnd >= options.start_round and options.beta != 0


def _frozen_round(options: FedMRIOptions, rnd: int) -> bool:
    return options.frozen_rounds == "even" and rnd % 2 == 0


class FedMRIClient(Client):
    """Adds ``beta * L_con`` over the shared parameters; keeps its own encoder of the last round it
    trained, the negative it never needs to be sent."""

    options: FedMRIOptions

    def __init__(self, options: FedMRIOptions, context, site: str):
        super().__init__(options, context, site)
        self.own: TensorDict = {}
        self.own_round: int | None = None

    def plan(self, rnd: int, payload: Payload, model: nn.Module, epochs: int) -> LocalPlan:
        plan = LocalPlan([Phase(epochs)], reconstruction_weight=self.options.lam)
        if _frozen_round(self.options, rnd):
            return self._frozen_plan(rnd, payload, model, epochs)
        if not _contrastive_round(self.options, rnd):
            return plan
        negatives = self._negatives(rnd, payload)
        names = shared_parameters(model, payload.global_state)
        if not negatives or not names:
            return plan
        anchor = [payload.global_state[n] for n in names]
        refs = [[negatives[s][n] for n in names] for s in sorted(negatives)]
        plan.after_fit = self._diagnostics(names, anchor, refs)
        variant, beta = self.options.variant, self.options.beta
        if variant in ("decoupled", "clipped"):
            plan.after_step = self._decoupled_step(names, anchor, refs, plan)
            return plan
        if variant == "paper":
            # Stacked on the live parameters' device at the first step, reused by every later step.
            term = ContrastiveL1(anchor, refs)
        elif variant == "l2":
            term = lambda params: contrastive_l2(params, anchor, refs)  # noqa: E731
        else:
            tau, scale = self.options.tau, encoder_spread(refs)
            term = lambda params: contrastive_moon(params, anchor, refs, tau, scale)  # noqa: E731

        skip_first = self.options.skip_first_batch

        def contrastive(model: nn.Module, outputs: Mapping[str, Any] | None = None) -> Tensor:
            live = dict(model.named_parameters())
            if skip_first and outputs is not None and outputs.get("batch_idx") == 0:
                return torch.zeros((), device=live[names[0]].device)
            return beta * term([live[n] for n in names])

        plan.penalty = contrastive
        return plan

    def _negatives(self, rnd: int, payload: Payload) -> dict[str, Mapping[str, Tensor]]:
        """The previous round's encoders the term pushes away from, by site."""
        negatives: dict[str, Mapping[str, Tensor]] = {}
        for key, tensor in payload.extra.items():  # previous/<site>/<name>
            _, other, name = key.split("/", 2)
            negatives.setdefault(other, {})[name] = tensor
        if self.own_round == rnd - 1:
            negatives[self.site] = self.own
        if self.options.negatives == "self":
            negatives = {s: t for s, t in negatives.items() if s == self.site}
        return negatives

    def _frozen_plan(self, rnd: int, payload: Payload, model: nn.Module, epochs: int) -> LocalPlan:
        """A round of ``frozen_rounds``: one phase that freezes every shared parameter (no gradient, so
        the optimiser, its weight decay and momentum included, leaves them), no term, and after the fit
        the shared buffers (``model.norm: batch`` running statistics) put back to the server's, so every
        shared tensor returns as received. The term's diagnostics are still logged when it is on."""
        names = shared_parameters(model, payload.global_state)
        plan = LocalPlan([Phase(epochs, freeze=tuple(names))], reconstruction_weight=self.options.lam)
        negatives = self._negatives(rnd, payload) if _contrastive_round(self.options, rnd) else {}
        trained = set(names)
        buffers = [n for n in payload.global_state if n not in trained]
        diagnostics = None
        if negatives and names:
            anchor = [payload.global_state[n] for n in names]
            diagnostics = self._diagnostics(
                names, anchor, [[negatives[s][n] for n in names] for s in sorted(negatives)]
            )

        def restore(model: nn.Module) -> dict[str, float]:
            state = model.state_dict()
            with torch.no_grad():
                for name in buffers:
                    state[name].copy_(payload.global_state[name])
            return diagnostics(model) if diagnostics is not None else {}

        plan.after_fit = restore
        return plan

    def _decoupled_step(
        self, names: list[str], anchor: list[Tensor], refs: list[list[Tensor]], plan: LocalPlan
    ):
        """The ``decoupled``/``clipped`` update: after each optimiser step, theta -= lr * beta * dL_con."""
        term, beta = ContrastiveL1(anchor, refs), self.options.beta
        limits = spread_per_weight(refs) if self.options.variant == "clipped" else None
        sums: list[Tensor] = []

        def step(model: nn.Module, lr: float) -> None:
            live = dict(model.named_parameters())
            params = [live[n] for n in names]
            with torch.enable_grad():
                value = term(params)
                grads = torch.autograd.grad(value, params)
            sums.append(beta * value.detach())
            contrastive_step(params, grads, lr * beta, anchor if limits is not None else None, limits)

        diagnostics = plan.after_fit

        def with_penalty(model: nn.Module) -> dict[str, float]:
            out = diagnostics(model)
            if sums:
                out["penalty"] = float(torch.stack(sums).mean())
            return out

        plan.after_fit = with_penalty
        return step

    @staticmethod
    def _diagnostics(names: list[str], anchor: list[Tensor], refs: list[list[Tensor]]):
        """The per-round diagnostics of the term at the end of the local fit (see ``contrastive_stats``)."""

        def diagnostics(model: nn.Module) -> dict[str, float]:
            live = dict(model.named_parameters())
            stats = contrastive_stats([live[n] for n in names], anchor, refs)
            return {f"con_{k}": v for k, v in stats.items()}

        return diagnostics

    def reply(
        self, rnd: int, payload: Payload, model: nn.Module, shared: TensorDict, steps: int, lr: float
    ) -> Reply:
        self.own, self.own_round = {n: t.detach().clone() for n, t in shared.items()}, rnd
        return Reply(shared)

    def state_dict(self) -> dict[str, Any]:
        return {"own": self.own, "own_round": self.own_round}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.own, self.own_round = dict(state.get("own", {})), state.get("own_round")


class FedMRI(Server):
    """Averages the encoder; keeps every site's encoder of the last round (before averaging) and, with
    ``negatives: all``, sends each site the others' for its contrastive term."""

    name = "fedmri"
    label = "FedMRI"
    Options = FedMRIOptions
    client = FedMRIClient
    shared_patterns = ("encoder.*", "*.encoder.*")  # the U-Net's, or both of the dual-domain cascade
    options: FedMRIOptions

    def __init__(self, options: FedMRIOptions, context):
        super().__init__(options, context)
        self.previous: dict[str, TensorDict] = {}
        self.parameters: list[str] = []

    @classmethod
    def check(cls, options: FedMRIOptions, sites: list[str], model_kind: str) -> None:
        if options.frozen_rounds != "none" and options.share == "whole":
            raise ValueError(
                f"fl.fedmri.frozen_rounds: {options.frozen_rounds} freezes what fl.fedmri.share averages, "
                "and with share=whole that is every parameter: nothing would train in a frozen round"
            )

    def shared_names(self, model: nn.Module) -> list[str]:
        names = list(model.state_dict())
        share = self.options.share
        if share == "whole":
            return names
        if share == "all_but_head":  # the authors' except_last keeps only the 1x1 output conv local
            head = head_names(names, self.context.head or "conv")
            return [n for n in names if n not in head]
        return super().shared_names(model)

    def setup(self, model: nn.Module) -> None:
        super().setup(model)
        self.parameters = shared_parameters(model, self.global_state)

    def extra(self, site: str, rnd: int) -> TensorDict:
        """With ``negatives: all``, the other sites' previous encoders (the parameters the term uses)."""
        if self.options.negatives != "all" or not _contrastive_round(self.options, rnd):
            return {}
        out: TensorDict = {}
        for other in sorted(self.previous):
            if other != site:
                out.update(
                    prefixed(f"previous/{other}", {n: self.previous[other][n] for n in self.parameters})
                )
        return out

    def aggregate(self, rnd: int, replies: Mapping[str, Reply], weights: Mapping[str, float]) -> None:
        self.previous = {s: {n: t.detach().clone() for n, t in r.shared.items()} for s, r in replies.items()}
        super().aggregate(rnd, replies, weights)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "previous": self.previous}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.previous = {site: dict(tensors) for site, tensors in state.get("previous", {}).items()}
