"""Federated algorithms as small server-side objects: what is shared, the local penalty, aggregation.

A strategy decides, through a handful of hooks that the federation loop (``fl/federation.py``) calls
in this order every round, and nothing else:

1. :meth:`Strategy.shared_names` (once, at set-up): which state-dict entries travel, by name
   pattern or by looking at the model (FedMRI shares ``encoder.*``, FedAvg ``*``, FedBN all but the
   normalisation layers, SingleSet nothing);
2. :meth:`Strategy.prepare_site`: every site, with the round's global tensors loaded, before any
   site trains (FL-MRCM's target site computes the encoder features it sends);
3. per site, :meth:`Strategy.penalty` at the start of its local fit: a term added to its loss
   (FedProx's proximal term, FedMRI's contrastive term, SCAFFOLD's drift correction, FL-MRCM's
   adversarial term); :meth:`Strategy.local_plan`: the local epochs as phases, each with the
   parameters that learn (FedRep: head, then body); :meth:`Strategy.on_local_step` after every
   backward pass; :meth:`Strategy.after_local_fit` with the number of steps and the learning rate
   (SCAFFOLD's client control variates);
4. :meth:`Strategy.aggregate`: the sites' shared tensors become the new global ones;
5. :meth:`Strategy.pop_traffic`: bytes a site exchanged besides the shared tensors (FedMRI's other
   sites' encoders, SCAFFOLD's control variates, FL-MRCM's features), for the communication columns.

Server and client state that must survive a checkpoint goes in :meth:`Strategy.state_dict`.

When every site runs in its own process and only messages cross (the Flower app, ``fl/flower``),
the server and each site hold their own instance, and two hook pairs carry what an algorithm needs
besides the shared tensors: :meth:`Strategy.downlink` / :meth:`Strategy.receive_downlink` from the
server to a site before its round (FedMRI's other sites' encoders, SCAFFOLD's server variate), and
:meth:`Strategy.uplink` / :meth:`Strategy.receive_uplink` from a site to the server after its local
fit (SCAFFOLD's variate change).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.losses import ContrastiveL1
from utils.seeding import stable_seed

TensorDict = dict[str, Tensor]
# (model, step outputs) -> 0-dim loss term; outputs holds ``features``: the batch's bottleneck features.
Penalty = Callable[..., Tensor]

NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm
    nn.GroupNorm,
    nn.LayerNorm,
)


def nbytes(tensors: Iterable[Tensor]) -> int:
    """Bytes a collection of tensors occupies on the wire (numel x element size, no framing)."""
    return sum(t.numel() * t.element_size() for t in tensors)


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


class FlatAverager:
    """:func:`weighted_average` in place on buffers kept from round to round: the same numbers, bit for
    bit, without allocating float64 temporaries for every tensor of every site.

    The floating tensors are averaged into one flat float64 accumulator, tensor by tensor (so each
    tensor's slice of the accumulator stays in cache while every site's term is added to it), each
    site's term scaled in a float64 scratch buffer of the largest tensor's size: exactly the
    operations ``weighted_average`` applies, in the same order. Integer buffers take
    ``weighted_average``'s own path. The buffers are reallocated only when the shared tensors change.
    """

    def __init__(self) -> None:
        self._accumulator: Tensor | None = None
        self._term: Tensor | None = None

    def _buffers(self, numel: int, largest: int, device: torch.device) -> tuple[Tensor, Tensor]:
        acc, term = self._accumulator, self._term
        if acc is None or acc.numel() != numel or term.numel() != largest or acc.device != device:
            self._accumulator = self._term = None  # release the old pair first
            self._accumulator = torch.empty(numel, dtype=torch.float64, device=device)
            self._term = torch.empty(largest, dtype=torch.float64, device=device)
        return self._accumulator, self._term

    def __call__(self, updates: Mapping[str, TensorDict], weights: Mapping[str, float]) -> TensorDict:
        """The weighted average of ``updates``, name by name, as :func:`weighted_average` computes it."""
        if not updates:
            return {}
        total = sum(weights[site] for site in updates)
        if total <= 0:
            raise ValueError("aggregation weights must sum to a positive number")
        first = next(iter(updates.values()))
        names = [n for n, t in first.items() if t.is_floating_point()]
        others = [n for n, t in first.items() if not t.is_floating_point()]
        averaged: TensorDict = {}
        if names:
            sizes = [first[n].numel() for n in names]
            acc, term = self._buffers(sum(sizes), max(sizes), first[names[0]].device)
            factors = [weights[site] / total for site in updates]
            for name, piece in zip(names, acc.split(sizes)):
                scratch = term[: piece.numel()]
                for index, tensors in enumerate(updates.values()):
                    values = tensors[name].reshape(-1)
                    if index == 0:
                        piece.copy_(values).mul_(factors[0])
                    else:
                        scratch.copy_(values).mul_(factors[index])
                        piece.add_(scratch)
                averaged[name] = piece.view(first[name].shape).to(first[name].dtype)
        if others:
            rest = {site: {n: tensors[n] for n in others} for site, tensors in updates.items()}
            averaged.update(weighted_average(rest, weights))
        return {n: averaged[n] for n in first}


def head_names(names: Iterable[str], head: str = "stage") -> set[str]:
    """The network's head: the 1x1 output conv (``conv``), or the whole last decoder stage (``stage``:
    the full-resolution up block and the 1x1 conv). In the dual-domain cascade it is the image
    U-Net's (``image.decoder.*``), the network that produces the output."""
    names = list(names)
    prefixes = [n[: -len("decoder.head.weight")] for n in names if n.endswith("decoder.head.weight")]
    if not prefixes:
        raise ValueError("no head found: expected parameter names decoder.head.* (the U-Net's output conv)")
    prefix = "" if "" in prefixes else "image." if "image." in prefixes else prefixes[-1]
    found = {n for n in names if n.startswith(f"{prefix}decoder.head.")}
    if head == "stage":
        up = f"{prefix}decoder.up."
        stages = [int(n[len(up) :].split(".")[0]) for n in names if n.startswith(up)]
        if stages:
            found |= {n for n in names if n.startswith(f"{up}{max(stages)}.")}
    elif head != "conv":
        raise ValueError(f"unknown head {head!r}; expected stage or conv")
    return found


def norm_names(model: nn.Module) -> set[str]:
    """State-dict names of the parameters and buffers of every normalisation layer of ``model``."""
    found = set()
    for prefix, module in model.named_modules():
        if isinstance(module, NORM_TYPES):
            for name, _ in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
                found.add(f"{prefix}.{name}" if prefix else name)
    return found


@dataclass(frozen=True)
class Phase:
    """One stage of a site's local training: its epochs and which parameters learn in it.

    A parameter learns when its name matches a pattern of ``train`` and none of ``freeze``.
    """

    epochs: int
    train: tuple[str, ...] = ("*",)
    freeze: tuple[str, ...] = ()

    def trains(self, name: str) -> bool:
        """Whether parameter ``name`` is updated during this phase."""
        return any(fnmatchcase(name, p) for p in self.train) and not any(
            fnmatchcase(name, p) for p in self.freeze
        )


def set_trainable(model: nn.Module, phase: Phase | None) -> None:
    """Switch ``requires_grad`` of every parameter to the phase's choice (None: all learn)."""
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(phase is None or phase.trains(name))


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


class _OnDevice:
    """Fixed tensors of a penalty, copied to the live parameters' device the first time they meet there.

    The federation builds a site's penalty before its fit, while the module is still on the CPU;
    Lightning moves the module to the accelerator when the fit starts (and back when it ends).
    """

    def __init__(self, tensors: list[Tensor]):
        self.tensors = tensors

    def on(self, device: torch.device) -> list[Tensor]:
        """The tensors on ``device``."""
        if self.tensors and self.tensors[0].device != device:
            self.tensors = [t.to(device) for t in self.tensors]
        return self.tensors


def _trainable_shared(model: nn.Module, global_state: TensorDict) -> list[str]:
    named = dict(model.named_parameters())
    return [n for n in global_state if n in named and named[n].requires_grad]


class Strategy:
    """Base class: share tensors whose names match :attr:`shared_patterns`, average them, no penalty."""

    name = "base"
    shared_patterns: tuple[str, ...] = ("*",)
    excluded_patterns: tuple[str, ...] = ()
    # Non-federated references train on pooled data instead ("all" sites, or the "others").
    pooled: str | None = None
    # Why the algorithm cannot run with its sites in separate processes that exchange only the shared
    # tensors and what downlink/uplink carry (None: it can).
    separate_sites_unsupported: str | None = None

    def __init__(self, config: Any = None, seed: int = 0):
        self.config = config
        self.seed = seed
        self._traffic: dict[str, list[int]] = {}
        self._averager = FlatAverager() if getattr(config, "flat_aggregation", False) else None

    # -- what travels ---------------------------------------------------------------------------
    def is_shared(self, name: str) -> bool:
        """Whether the state-dict entry ``name`` matches the shared patterns."""
        matches = any(fnmatchcase(name, p) for p in self.shared_patterns)
        return matches and not any(fnmatchcase(name, p) for p in self.excluded_patterns)

    def shared_names(self, names: list[str], model: nn.Module | None = None) -> list[str]:
        """The shared subset of the state-dict ``names`` of ``model``, in order."""
        return [n for n in names if self.is_shared(n)]

    # -- a site's round -------------------------------------------------------------------------
    def prepare_site(self, site: str, rnd: int, model: nn.Module, batches: Iterable[dict]) -> None:
        """Called for every site, global tensors loaded, before any site trains in round ``rnd``."""

    def local_plan(self, site: str, rnd: int, epochs: int, model: nn.Module) -> list[Phase]:
        """The site's local training as phases (default: all ``epochs`` with every parameter)."""
        return [Phase(epochs)]

    def penalty(self, site: str, rnd: int, model: nn.Module, global_state: TensorDict) -> Penalty | None:
        """A term added to ``site``'s loss during round ``rnd`` (None = plain local training).

        Called once at the start of every local fit; the returned callable receives the live
        model and the step's outputs (``features``: the bottleneck features of the batch).
        """
        return None

    def on_local_step(self, site: str, model: nn.Module) -> None:
        """Called after every backward pass of a local fit, before the optimiser step."""

    def after_local_fit(
        self, site: str, rnd: int, model: nn.Module, global_state: TensorDict, steps: int, lr: float
    ) -> None:
        """Called when ``site`` finished its local epochs (``steps`` optimiser steps at rate ``lr``)."""

    def aggregate(
        self, rnd: int, updates: Mapping[str, TensorDict], weights: Mapping[str, float]
    ) -> TensorDict:
        """New global tensors from each site's shared tensors after its local training."""
        return self.average(updates, weights)

    def average(self, updates: Mapping[str, TensorDict], weights: Mapping[str, float]) -> TensorDict:
        """:func:`weighted_average`, on flat buffers under ``fl.flat_aggregation`` (same numbers)."""
        if self._averager is not None:
            return self._averager(updates, weights)
        return weighted_average(updates, weights)

    # -- communication --------------------------------------------------------------------------
    def record_traffic(self, site: str, sent: int = 0, received: int = 0) -> None:
        """Count bytes ``site`` sends or receives this round besides the shared tensors."""
        counts = self._traffic.setdefault(site, [0, 0])
        counts[0] += int(sent)
        counts[1] += int(received)

    def pop_traffic(self, site: str) -> tuple[int, int]:
        """(sent, received) extra bytes of ``site`` since the last call."""
        sent, received = self._traffic.pop(site, (0, 0))
        return sent, received

    # -- per-site state, for runs where sites live in other processes ---------------------------
    def site_state(self, site: str) -> dict[str, Any]:
        """What this object holds about ``site`` that only the process training ``site`` computed in
        this round (client variates, discriminators, features it sends, traffic counts).

        A distributed run copies it from the site's process to every other with
        :meth:`load_site_state`, so that :meth:`aggregate` and checkpoints see the same state everywhere.
        """
        return {"traffic": list(self._traffic.get(site, (0, 0)))}

    def load_site_state(self, site: str, state: Mapping[str, Any]) -> None:
        """Adopt :meth:`site_state` of ``site`` computed in another process."""
        self._traffic[site] = list(state.get("traffic", (0, 0)))

    # -- what crosses the network when every site is its own process (fl/flower) -----------------
    def downlink(self, site: str, rnd: int) -> TensorDict:
        """Server side: tensors ``site`` needs for round ``rnd`` besides the global shared tensors."""
        return {}

    def receive_downlink(self, site: str, rnd: int, tensors: Mapping[str, Tensor]) -> None:
        """Site side: adopt :meth:`downlink`, after the global tensors are loaded and before the fit."""

    def uplink(self, site: str, rnd: int, shared: Mapping[str, Tensor]) -> TensorDict:
        """Site side, after a successful local fit: tensors the server needs besides ``shared`` (the
        site's shared tensors, which it sends anyway and may keep)."""
        return {}

    def receive_uplink(self, site: str, rnd: int, tensors: Mapping[str, Tensor]) -> None:
        """Server side: adopt :meth:`uplink` of ``site`` before :meth:`aggregate`."""

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Server and client state that must survive a checkpoint (tensors and plain data only)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


def _options(config: Any, section: str) -> Any:
    return getattr(config, section, None)


def prefixed(prefix: str, tensors: Mapping[str, Tensor]) -> TensorDict:
    """``{prefix/name: tensor}``: names for tensors that travel next to the shared ones."""
    return {f"{prefix}/{name}": t for name, t in tensors.items()}


def unprefixed(prefix: str, tensors: Mapping[str, Tensor]) -> TensorDict:
    """The tensors of :func:`prefixed` under ``prefix``, with their own names again."""
    start = f"{prefix}/"
    return {name[len(start) :]: t for name, t in tensors.items() if name.startswith(start)}


class FedAvg(Strategy):
    """FedAvg: the whole model is averaged every round (McMahan et al., AISTATS 2017)."""

    name = "fedavg"
    shared_patterns = ("*",)


class SingleSet(Strategy):
    """SingleSet: every site trains alone and nothing is shared (the paper's lower reference)."""

    name = "singleset"
    shared_patterns = ()


class FedProx(Strategy):
    """FedProx: FedAvg plus the proximal term mu/2 ||theta - theta_global||^2 (Li et al., MLSys 2020)."""

    name = "fedprox"
    shared_patterns = ("*",)

    def __init__(self, config: Any = None, seed: int = 0):
        super().__init__(config, seed)
        self.mu = float(getattr(_options(config, "fedprox"), "mu", 0.01))

    def penalty(self, site: str, rnd: int, model: nn.Module, global_state: TensorDict) -> Penalty | None:
        names = _trainable_shared(model, global_state)
        if self.mu == 0 or not names:
            return None
        anchor = _OnDevice([global_state[n] for n in names])
        mu = self.mu

        def proximal(model: nn.Module, outputs: Mapping[str, Tensor] | None = None) -> Tensor:
            live = dict(model.named_parameters())
            params = [live[n] for n in names]
            return _Proximal.apply(anchor.on(params[0].device), mu, *params)

        return proximal


class FedBN(Strategy):
    """FedBN: everything is averaged except normalisation parameters and statistics (Li et al., ICLR 2021).

    Under the default ``model.norm: instance`` (InstanceNorm without affine parameters or running
    statistics) the U-Net has nothing to keep local, and FedBN is exactly FedAvg; it differs with
    ``model.norm: instance_affine`` or ``batch``.
    """

    name = "fedbn"

    def shared_names(self, names: list[str], model: nn.Module | None = None) -> list[str]:
        if model is None:
            raise ValueError("FedBN needs the model to find its normalisation layers")
        local = norm_names(model)
        return [n for n in names if n not in local]


class _HeadSplit(Strategy):
    """Shares the U-Net's head (``share_head``) or everything but it; ``fl.head`` says what the head is."""

    share_head = False

    def __init__(self, config: Any = None, seed: int = 0):
        super().__init__(config, seed)
        self.head = getattr(config, "head", "stage")

    def shared_names(self, names: list[str], model: nn.Module | None = None) -> list[str]:
        head = head_names(names, self.head)
        return [n for n in names if (n in head) == self.share_head]


class LGFedAvg(_HeadSplit):
    """LG-FedAvg: the head is averaged, the body stays at each site (Liang et al., arXiv 2001.01523, 2020)."""

    name = "lgfedavg"
    share_head = True


class FedPer(_HeadSplit):
    """FedPer (the paper's GD-GD): all but the head is averaged (Arivazhagan et al., arXiv 1912.00818)."""

    name = "fedper"


class FedRep(_HeadSplit):
    """FedRep: shared body, local head, trained head first then body each round (Collins et al., ICML 2021).

    Each round a site trains ``fl.fedrep.head_epochs`` epochs with only the head learning, then
    ``fl.local_epochs`` epochs with only the body learning; only the body is averaged.
    """

    name = "fedrep"

    def __init__(self, config: Any = None, seed: int = 0):
        super().__init__(config, seed)
        self.head_epochs = int(getattr(_options(config, "fedrep"), "head_epochs", 1))

    def local_plan(self, site: str, rnd: int, epochs: int, model: nn.Module) -> list[Phase]:
        head = tuple(sorted(head_names([n for n, _ in model.named_parameters()], self.head)))
        return [Phase(self.head_epochs, train=head), Phase(epochs, freeze=head)]


class Scaffold(Strategy):
    """SCAFFOLD: FedAvg with server and client control variates that correct client drift
    (Karimireddy et al., ICML 2020).

    Local steps follow ``grad + c - c_i`` (a penalty whose gradient is ``c - c_i``). After the fit the
    client variate becomes, with ``fl.scaffold.variates``:

    * ``gradients``: the mean raw minibatch gradient over the local steps, which equals the paper's
      option II for plain SGD and keeps the variates in gradient units under RMSprop or Adam;
    * ``delta``: the paper's option II, ``c_i - c + (x - y_i) / (steps * lr)`` (for ``optim.name: sgd``).

    The server moves ``c`` by the mean of the clients' variate changes (all sites take part every
    round). The variates cover the shared floating-point parameters; each costs one model's worth of
    bytes per round in each direction.
    """

    name = "scaffold"
    shared_patterns = ("*",)

    def __init__(self, config: Any = None, seed: int = 0):
        super().__init__(config, seed)
        self.variates = getattr(_options(config, "scaffold"), "variates", "gradients")
        if self.variates not in ("gradients", "delta"):
            raise ValueError(f"unknown SCAFFOLD variates {self.variates!r}; expected gradients or delta")
        self.c: TensorDict = {}
        self.c_local: dict[str, TensorDict] = {}
        self._deltas: dict[str, TensorDict] = {}
        self._fit: dict[str, dict[str, Any]] = {}

    def penalty(self, site: str, rnd: int, model: nn.Module, global_state: TensorDict) -> Penalty | None:
        names = [n for n in _trainable_shared(model, global_state) if global_state[n].is_floating_point()]
        named = dict(model.named_parameters())
        zeros = {n: torch.zeros_like(named[n], device="cpu") for n in names}
        c = {n: self.c.get(n, zeros[n]) for n in names}
        c_i = {n: self.c_local.get(site, {}).get(n, zeros[n]) for n in names}
        correction = {n: (c[n] - c_i[n]) for n in names}
        self._fit[site] = {"names": names, "correction": correction, "grad_sum": None, "steps": 0}
        self.record_traffic(site, received=nbytes(c.values()))
        if not names or all(not torch.any(d) for d in correction.values()):
            return None
        directions = _OnDevice([correction[n] for n in names])

        def drift_correction(model: nn.Module, outputs: Mapping[str, Tensor] | None = None) -> Tensor:
            live = dict(model.named_parameters())
            params = [live[n] for n in names]
            return _Linear.apply(directions.on(params[0].device), *params)

        return drift_correction

    def on_local_step(self, site: str, model: nn.Module) -> None:
        fit = self._fit.get(site)
        if fit is None or self.variates != "gradients":
            if fit is not None:
                fit["steps"] += 1
            return
        named = dict(model.named_parameters())
        grads = [
            named[n].grad.detach() if named[n].grad is not None else torch.zeros_like(named[n])
            for n in fit["names"]
        ]
        if fit["grad_sum"] is None:
            fit["grad_sum"] = [g.clone() for g in grads]
        else:
            torch._foreach_add_(fit["grad_sum"], grads)
        fit["steps"] += 1

    def after_local_fit(
        self, site: str, rnd: int, model: nn.Module, global_state: TensorDict, steps: int, lr: float
    ) -> None:
        fit = self._fit.pop(site, None)
        if fit is None or not fit["names"]:
            return
        names, correction = fit["names"], fit["correction"]
        steps = fit["steps"] or steps
        if steps <= 0:
            return
        old = {n: self.c_local.get(site, {}).get(n, torch.zeros_like(correction[n])) for n in names}
        if self.variates == "gradients":
            # The tapped gradients include the correction c - c_i; remove it to get the raw mean.
            new = {n: g.detach().cpu() / steps - correction[n] for n, g in zip(names, fit["grad_sum"] or [])}
            if not new:
                return
        else:
            live = dict(model.named_parameters())
            c = {n: self.c.get(n, torch.zeros_like(old[n])) for n in names}
            new = {
                n: old[n] - c[n] + (global_state[n].to(torch.float32) - live[n].detach().cpu()) / (steps * lr)
                for n in names
            }
        self._deltas[site] = {n: new[n] - old[n] for n in names}
        self.c_local[site] = new
        self.record_traffic(site, sent=nbytes(self._deltas[site].values()))

    def aggregate(
        self, rnd: int, updates: Mapping[str, TensorDict], weights: Mapping[str, float]
    ) -> TensorDict:
        deltas = [self._deltas.pop(site) for site in updates if site in self._deltas]
        if deltas:
            names = deltas[0].keys()
            self.c = {
                n: self.c.get(n, torch.zeros_like(deltas[0][n])) + sum(d[n] for d in deltas) / len(updates)
                for n in names
            }
        return self.average(updates, weights)

    def site_state(self, site: str) -> dict[str, Any]:
        state = super().site_state(site)
        if site in self.c_local:
            state["c_local"] = self.c_local[site]
        if site in self._deltas:
            state["delta"] = self._deltas[site]
        return state

    def load_site_state(self, site: str, state: Mapping[str, Any]) -> None:
        super().load_site_state(site, state)
        if "c_local" in state:
            self.c_local[site] = dict(state["c_local"])
        if "delta" in state:
            self._deltas[site] = dict(state["delta"])

    def downlink(self, site: str, rnd: int) -> TensorDict:
        return prefixed("c", self.c)

    def receive_downlink(self, site: str, rnd: int, tensors: Mapping[str, Tensor]) -> None:
        self.c = unprefixed("c", tensors)

    def uplink(self, site: str, rnd: int, shared: Mapping[str, Tensor]) -> TensorDict:
        return prefixed("delta", self._deltas.pop(site, {}))

    def receive_uplink(self, site: str, rnd: int, tensors: Mapping[str, Tensor]) -> None:
        delta = unprefixed("delta", tensors)
        if delta:
            self._deltas[site] = delta

    def state_dict(self) -> dict[str, Any]:
        return {"c": self.c, "c_local": self.c_local}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.c = dict(state.get("c", {}))
        self.c_local = {site: dict(t) for site, t in state.get("c_local", {}).items()}


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


class FLMRCM(Strategy):
    """FL-MRCM: FedAvg plus adversarial alignment of each source site's bottleneck features to a target
    site's, with a small discriminator per source site (Guo et al., CVPR 2021).

    At the start of every round the target site (``fl.flmrcm.target_site``) runs the global encoder
    on ``features`` of its training slices and sends the 2x2-pooled bottleneck features, never
    images, to the other sites. At every local step of a source site its discriminator (kept at
    that site) takes one RMSprop step to tell the site's own pooled features from the target's,
    and the site's loss gains ``weight * BCE(D(own features), target)``. The target site trains
    plainly; the whole model is averaged as in FedAvg.
    """

    name = "flmrcm"
    shared_patterns = ("*",)
    separate_sites_unsupported = (
        "its target site must send features of the round's global model to the other sites between "
        "aggregation and their local fits, an exchange downlink/uplink do not make"
    )

    def __init__(self, config: Any = None, seed: int = 0):
        super().__init__(config, seed)
        options = _options(config, "flmrcm")
        self.target = getattr(options, "target_site", None)
        self.weight = float(getattr(options, "weight", 1.0))
        self.num_features = int(getattr(options, "features", 64))
        self.disc_lr = float(getattr(options, "disc_lr", 1e-3))
        self.hidden = int(getattr(options, "hidden", 256))
        self.target_features: Tensor | None = None
        self.discriminators: dict[str, nn.Module] = {}
        self.disc_optimizers: dict[str, torch.optim.Optimizer] = {}

    def prepare_site(self, site: str, rnd: int, model: nn.Module, batches: Iterable[dict]) -> None:
        if site != self.target:
            return
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        collected, count = [], 0
        with torch.no_grad():
            for batch in batches:
                features, _ = model.encoder(batch["input"].to(device))
                collected.append(pooled_features(features).float().cpu())
                count += len(collected[-1])
                if count >= self.num_features:
                    break
        model.train(was_training)
        self.target_features = torch.cat(collected)[: self.num_features]
        self.record_traffic(site, sent=nbytes([self.target_features]))

    def _discriminator(self, site: str, dim: int) -> nn.Module:
        if site not in self.discriminators:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(stable_seed(self.seed, "flmrcm-discriminator", site))
                self.discriminators[site] = feature_discriminator(dim, self.hidden)
            self.disc_optimizers[site] = torch.optim.RMSprop(
                self.discriminators[site].parameters(), lr=self.disc_lr
            )
        return self.discriminators[site]

    def penalty(self, site: str, rnd: int, model: nn.Module, global_state: TensorDict) -> Penalty | None:
        if site == self.target or self.target_features is None or self.weight == 0:
            return None
        self.record_traffic(site, received=nbytes([self.target_features]))
        disc = self._discriminator(site, self.target_features.shape[1])
        optimizer = self.disc_optimizers[site]
        targets = _OnDevice([self.target_features])
        generator = torch.Generator().manual_seed(stable_seed(self.seed, "flmrcm-sample", site, rnd))
        weight = self.weight

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

        return adversarial

    def site_state(self, site: str) -> dict[str, Any]:
        state = super().site_state(site)
        if site == self.target and self.target_features is not None:
            state["target_features"] = self.target_features
        if site in self.discriminators:
            state["discriminator"] = self.discriminators[site].state_dict()
            state["optimizer"] = self.disc_optimizers[site].state_dict()
        return state

    def load_site_state(self, site: str, state: Mapping[str, Any]) -> None:
        super().load_site_state(site, state)
        if "target_features" in state:
            self.target_features = state["target_features"]
        if "discriminator" in state:
            weights = state["discriminator"]
            self._discriminator(site, weights["0.weight"].shape[1]).load_state_dict(weights)
            self.disc_optimizers[site].load_state_dict(state["optimizer"])

    def state_dict(self) -> dict[str, Any]:
        return {
            "target_features": self.target_features,
            "discriminators": {s: d.state_dict() for s, d in self.discriminators.items()},
            "optimizers": {s: o.state_dict() for s, o in self.disc_optimizers.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.target_features = state.get("target_features")
        self.discriminators, self.disc_optimizers = {}, {}
        for site, weights in state.get("discriminators", {}).items():
            disc = self._discriminator(site, weights["0.weight"].shape[1])
            disc.load_state_dict(weights)
            if site in state.get("optimizers", {}):
                self.disc_optimizers[site].load_state_dict(state["optimizers"][site])


class FedMRI(Strategy):
    """FedMRI: shared encoder, local decoders, weighted contrastive term (Feng et al., IEEE TMI 2022).

    The server keeps every site's encoder from the end of the previous round (before averaging);
    from ``fl.fedmri.start_round`` on, site k's loss gains ``beta * pos / neg`` with ``pos`` the L1
    distance of its encoder to the server encoder and ``neg`` the summed L1 distances to the
    previous local encoders of all sites (``negatives: all``, which sends every site the other
    sites' encoders too) or of itself only (``negatives: self``, no extra traffic). ``lam`` weights
    the reconstruction loss. ``share`` (an ablation) shares the ``encoder``, the ``whole`` model or
    everything but the head (``all_but_head``); the contrastive term covers whatever is shared.
    """

    name = "fedmri"
    shared_patterns = ("encoder.*", "*.encoder.*")  # the U-Net's, or both of the dual-domain cascade

    def __init__(self, config: Any = None, seed: int = 0):
        super().__init__(config, seed)
        options = _options(config, "fedmri")
        self.lam = float(getattr(options, "lam", 1.0))
        self.beta = float(getattr(options, "beta", 100.0))
        self.negatives = getattr(options, "negatives", "all")
        self.start_round = int(getattr(options, "start_round", 2))
        self.share = getattr(options, "share", "encoder")
        self.head = getattr(config, "head", "stage")
        self.previous: dict[str, TensorDict] = {}
        self._own_round: int | None = None  # at a site: the round of its own encoder in previous

    @property
    def reconstruction_weight(self) -> float:
        """``lam``: the weight of the reconstruction loss."""
        return self.lam

    def shared_names(self, names: list[str], model: nn.Module | None = None) -> list[str]:
        if self.share == "whole":
            return list(names)
        if self.share == "all_but_head":
            head = head_names(names, self.head)
            return [n for n in names if n not in head]
        if self.share != "encoder":
            raise ValueError(
                f"unknown FedMRI sharing {self.share!r}; expected encoder, whole or all_but_head"
            )
        return super().shared_names(names, model)

    def penalty(self, site: str, rnd: int, model: nn.Module, global_state: TensorDict) -> Penalty | None:
        if rnd < self.start_round or not self.previous or self.beta == 0:
            return None
        if self.negatives == "self":
            if site not in self.previous:
                return None
            negative_sites = [site]
        else:
            negative_sites = sorted(self.previous)
        names = _trainable_shared(model, global_state)
        if not names:
            return None
        # Stacked on the live parameters' device at the first step, reused by every later step.
        term = ContrastiveL1(
            [global_state[n] for n in names], [[self.previous[s][n] for n in names] for s in negative_sites]
        )
        others = [self.previous[s][n] for s in negative_sites if s != site for n in names]
        self.record_traffic(site, received=nbytes(others))
        beta = self.beta

        def contrastive(model: nn.Module, outputs: Mapping[str, Tensor] | None = None) -> Tensor:
            live = dict(model.named_parameters())
            return beta * term([live[n] for n in names])

        return contrastive

    def aggregate(
        self, rnd: int, updates: Mapping[str, TensorDict], weights: Mapping[str, float]
    ) -> TensorDict:
        self.previous = {
            site: {n: t.detach().clone() for n, t in tensors.items()} for site, tensors in updates.items()
        }
        return self.average(updates, weights)

    def _contrastive_round(self, rnd: int) -> bool:
        return rnd >= self.start_round and self.beta != 0

    def downlink(self, site: str, rnd: int) -> TensorDict:
        """With ``negatives: all``, the other sites' previous encoders; a site keeps its own."""
        if self.negatives != "all" or not self._contrastive_round(rnd):
            return {}
        out: TensorDict = {}
        for other in sorted(self.previous):
            if other != site:
                out.update(prefixed(f"previous/{other}", self.previous[other]))
        return out

    def receive_downlink(self, site: str, rnd: int, tensors: Mapping[str, Tensor]) -> None:
        others: dict[str, TensorDict] = {}
        for key, tensor in tensors.items():
            _, other, name = key.split("/", 2)
            others.setdefault(other, {})[name] = tensor
        own = self.previous.get(site) if self._own_round == rnd - 1 else None
        self.previous = {**others, **({site: own} if own is not None else {})}

    def uplink(self, site: str, rnd: int, shared: Mapping[str, Tensor]) -> TensorDict:
        """Keeps the site's own encoder for its next round's negatives; sends nothing more."""
        self.previous = {site: {n: t.detach().clone() for n, t in shared.items()}}
        self._own_round = rnd
        return {}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"previous": self.previous}
        if self._own_round is not None:
            state["own_round"] = self._own_round
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.previous = {site: dict(tensors) for site, tensors in state.get("previous", {}).items()}
        self._own_round = state.get("own_round")


class Centralized(Strategy):
    """Centralized: one model trained on all sites' training data pooled (an upper reference, not private).

    Not federated: ``fl.pooled.PooledTraining`` runs it. The strategy only carries the pooled
    models' weights and optimiser state into checkpoints.
    """

    name = "centralized"
    shared_patterns = ()
    pooled = "all"
    separate_sites_unsupported = "it is not federated: one model trains on the sites' training data pooled"

    def __init__(self, config: Any = None, seed: int = 0):
        super().__init__(config, seed)
        self.modules: dict[str, Any] = {}  # group -> ReconModule, registered by PooledTraining
        self._pending: dict[str, Any] = {}

    def state_dict(self) -> dict[str, Any]:
        return {
            "models": {
                group: {"model": m.model.state_dict(), "optimizer": m.optimizer.state_dict()}
                for group, m in self.modules.items()
            }
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._pending = dict(state.get("models", {}))
        for group, module in self.modules.items():
            if group in self._pending:
                saved = self._pending.pop(group)
                module.model.load_state_dict(saved["model"])
                module.optimizer.load_state_dict(saved["optimizer"])


class TransferSite(Centralized):
    """Transfer-Site: for each site, a model trained on the other sites' data pooled, tested on that site."""

    name = "transfer"
    pooled = "others"
    separate_sites_unsupported = (
        "it is not federated: each site's model trains on the other sites' training data pooled"
    )


ALGORITHMS: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (
        FedMRI,
        FedAvg,
        FedProx,
        FedBN,
        LGFedAvg,
        FedPer,
        FedRep,
        Scaffold,
        FLMRCM,
        SingleSet,
        Centralized,
        TransferSite,
    )
}


def build_strategy(fl_config: Any, seed: int = 0) -> Strategy:
    """The strategy named by ``fl.algorithm``, configured from the ``fl`` section."""
    return ALGORITHMS[fl_config.algorithm](fl_config, seed=seed)
