"""What a federated algorithm is: its options, a server half and a site half that exchange payloads.

An algorithm is one module under ``fl/algorithms/`` with three things, in the spirit of Flower's
split between a server strategy and its client:

- ``Options``: a pydantic model of its settings (the config section ``fl.<name>``), defaults written
  once, or None when it has none;
- a :class:`Server` subclass, the server half: which state-dict entries are shared, what each site
  is sent for a round (a :class:`Payload`), how the sites' :class:`Reply` objects become the new
  global tensors, and its state for checkpoints;
- a :class:`Client` subclass, the site half: from the payload and the site's model, the local plan
  (:class:`LocalPlan`: phases, a penalty added to the loss, hooks before the fit, after every backward
  pass and optimiser step and after the fit, a companion model trained first) and what goes back.

Only payloads and replies cross between the halves. One process passes them by reference; a
multi-process run gathers them; the Flower app sends them as message records. An algorithm never
knows which transport runs it. The round loop that drives the halves is ``fl/federation.py``.

An algorithm that needs some site to compute something from the round's global tensors before any
site trains (FL-MRCM's target features) says so with :meth:`Server.prepare_requests`; its client
answers in :meth:`Client.prepare`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from fl.aggregation import FlatAverager, TensorDict, nbytes, weighted_average

# (model, step outputs) -> 0-dim loss term; outputs holds ``features``: the batch's bottleneck features,
# ``input``: the batch's network input, and ``batch_idx``: the step's index within its local epoch.
Penalty = Callable[..., Tensor]
# (key, round) -> endless training batches of one site, readable by another site in the same process.
PeerData = Callable[[str, int], Iterator[dict]]
Value = int | float | str | bool

NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm
    nn.GroupNorm,
    nn.LayerNorm,
)


class AlgorithmOptions(BaseModel):
    """Base of every algorithm's options: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


@dataclass(frozen=True)
class Context:
    """What every algorithm may read besides its own options: the run's seed and the federation's
    settings that concern which tensors travel and how they are averaged."""

    seed: int = 0
    sites: tuple[str, ...] = ()
    head: str | None = None  # fl.head: the U-Net's head for head-splitting algorithms (None: theirs)
    flat_aggregation: bool = False
    lr: float = 1e-4  # optim.lr, the base learning rate of every site's optimiser


@dataclass
class Payload:
    """What the server sends one site for a round: the global shared tensors, the algorithm's own
    tensors (``extra``, e.g. other sites' previous encoders) and plain values."""

    global_state: TensorDict
    extra: TensorDict = field(default_factory=dict)
    values: dict[str, Value] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Bytes of the tensors it carries."""
        return nbytes(self.global_state.values()) + nbytes(self.extra.values())


@dataclass
class Reply:
    """What a site sends back: its shared tensors after the local fit (``shared``; empty for a
    :meth:`Client.prepare` answer), the algorithm's own tensors and plain values."""

    shared: TensorDict = field(default_factory=dict)
    extra: TensorDict = field(default_factory=dict)
    values: dict[str, Value] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Bytes of the tensors it carries."""
        return nbytes(self.shared.values()) + nbytes(self.extra.values())


@dataclass(frozen=True)
class Phase:
    """One stage of a site's local training: its epochs and which parameters learn in it.

    A parameter learns when its name matches a pattern of ``train`` and none of ``freeze``. A plan of
    several phases runs as one pass over the data in which each phase owns ``epochs`` epochs' worth of
    consecutive optimiser steps (fractions of an epoch allowed), so the phases split the round's steps.
    """

    epochs: float
    train: tuple[str, ...] = ("*",)
    freeze: tuple[str, ...] = ()

    def trains(self, name: str) -> bool:
        """Whether parameter ``name`` is updated during this phase."""
        return any(fnmatchcase(name, p) for p in self.train) and not any(
            fnmatchcase(name, p) for p in self.freeze
        )


@dataclass
class Companion:
    """A second model a site trains on its own data before its model in a round (Ditto's global
    model): the site swaps in ``state`` and ``optimizer`` (its optimiser's state; empty: fresh), trains
    it as ``plan`` says, and leaves the results here. Its steps come out of the round's: the site's
    own model takes the rest of them."""

    state: TensorDict
    optimizer: dict[str, Any]
    plan: LocalPlan
    steps: int = 0  # optimiser steps it took

    @property
    def epochs(self) -> float:
        """Epochs' worth of steps it trains."""
        return sum(phase.epochs for phase in self.plan.phases)


@dataclass
class LocalPlan:
    """A site's local training for one round, as its client half plans it: which parameters learn when
    (``phases``), the loss, and hooks at the points of the fit where an algorithm acts. Every hook gets
    the live model (on the device it trains on, except ``before_fit``); each may be None.

    - ``before_fit(model)``: once, before the first step (the round's global tensors are loaded);
    - ``penalty(model, outputs)``: a 0-dim tensor added to the loss at every step; ``outputs`` holds
      ``features`` (the batch's bottleneck features), ``input`` and ``batch_idx`` (the step's index in
      its local epoch);
    - ``after_backward(model)``: at every step, with the gradients computed, before the optimiser step;
    - ``after_step(model, lr)``: after every optimiser step, with the step's learning rate;
    - ``after_fit(model)``: once, after the last step: values logged with the site's training row.

    ``companion`` is a second model trained first, with its own weights, optimiser state and plan.
    """

    phases: list[Phase]
    reconstruction_weight: float = 1.0
    penalty: Penalty | None = None
    before_fit: Callable[[nn.Module], None] | None = None
    after_backward: Callable[[nn.Module], None] | None = None
    after_step: Callable[[nn.Module, float], None] | None = None
    after_fit: Callable[[nn.Module], dict[str, float]] | None = None
    companion: Companion | None = None


def set_trainable(model: nn.Module, phase: Phase | None) -> None:
    """Switch ``requires_grad`` of every parameter to the phase's choice (None: all learn)."""
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(phase is None or phase.trains(name))


def head_names(names: Iterable[str], head: str | None = "stage") -> set[str]:
    """The network's head: the 1x1 output conv (``conv``), or the whole last decoder stage (``stage``:
    the full-resolution up block and the 1x1 conv; also for None). In the dual-domain cascade it is
    the image U-Net's (``image.decoder.*``), the network that produces the output."""
    names = list(names)
    head = head or "stage"
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


def prefixed(prefix: str, tensors: Mapping[str, Tensor]) -> TensorDict:
    """``{prefix/name: tensor}``: names for tensors that travel next to the shared ones."""
    return {f"{prefix}/{name}": t for name, t in tensors.items()}


def unprefixed(prefix: str, tensors: Mapping[str, Tensor]) -> TensorDict:
    """The tensors of :func:`prefixed` under ``prefix``, with their own names again."""
    start = f"{prefix}/"
    return {name[len(start) :]: t for name, t in tensors.items() if name.startswith(start)}


class OnDevice:
    """Fixed tensors of a penalty, copied to the live parameters' device the first time they meet there.

    A penalty is built before the local fit, while the module is still on the CPU; Lightning moves
    the module to the accelerator when the fit starts (and back when it ends).
    """

    def __init__(self, tensors: list[Tensor]):
        self.tensors = tensors

    def on(self, device: torch.device) -> list[Tensor]:
        """The tensors on ``device``."""
        if self.tensors and self.tensors[0].device != device:
            self.tensors = [t.to(device) for t in self.tensors]
        return self.tensors


def shared_parameters(model: nn.Module, shared: Iterable[str]) -> list[str]:
    """The shared names that are trainable parameters of ``model`` (not buffers), in order."""
    named = dict(model.named_parameters())
    return [n for n in shared if n in named and named[n].requires_grad]


class Server:
    """Server half. The default shares every state-dict entry matching :attr:`shared_patterns` (and
    none of :attr:`excluded_patterns`), sends each site the global tensors, and averages.

    Subclasses set ``name`` (the config's ``fl.algorithm``), ``label`` (tables and figures) and
    ``Options``, and override the hooks they need.
    """

    name: ClassVar[str] = "base"
    label: ClassVar[str] = "base"
    Options: ClassVar[type[AlgorithmOptions] | None] = None
    shared_patterns: ClassVar[tuple[str, ...]] = ("*",)
    excluded_patterns: ClassVar[tuple[str, ...]] = ()
    # The transports the algorithm cannot run over, each with the one line that says why and what to
    # use instead, naming the config key: ``ddp_sites`` and ``ddp_data`` (train_multi_gpu.py under
    # fl.parallel sites and data), ``flower`` (every site in its own process), ``in_process`` (train.py).
    refused_transports: ClassVar[Mapping[str, str]] = {}
    client: ClassVar[type[Client]]  # the site half (set below for the base class)

    def __init__(self, options: AlgorithmOptions | None, context: Context):
        self.options = options
        self.context = context
        self.global_state: TensorDict = {}

        self._averager = FlatAverager() if context.flat_aggregation else None

    @classmethod
    def check(cls, options: AlgorithmOptions | None, sites: list[str], model_kind: str) -> None:
        """Refuse (ValueError naming the config key) sites or a model the algorithm cannot work with;
        may fill options whose default depends on the sites."""

    @classmethod
    def refusal(cls, transport: str, options: AlgorithmOptions | None) -> str | None:
        """Why the algorithm with ``options`` cannot run over ``transport`` (one line; None: it can). The
        run set-up asks before anything is built; the default reads :attr:`refused_transports`."""
        return cls.refused_transports.get(transport)

    # -- set-up --------------------------------------------------------------------------------
    def shared_names(self, model: nn.Module) -> list[str]:
        """The state-dict names of ``model`` that travel, in order."""
        return [
            n
            for n in model.state_dict()
            if any(fnmatchcase(n, p) for p in self.shared_patterns)
            and not any(fnmatchcase(n, p) for p in self.excluded_patterns)
        ]

    def setup(self, model: nn.Module) -> None:
        """Take the initial model's shared tensors as the global ones."""
        state = model.state_dict()
        self.global_state = {n: state[n].detach().clone().cpu() for n in self.shared_names(model)}

    # -- a round -------------------------------------------------------------------------------
    def prepare_requests(self, rnd: int) -> list[str]:
        """Sites that must answer :meth:`Client.prepare` (with the global tensors loaded) before any
        site trains in round ``rnd`` (default: none)."""
        return []

    def receive_prepared(self, rnd: int, replies: Mapping[str, Reply]) -> None:
        """Adopt the :meth:`Client.prepare` answers of round ``rnd``."""

    def payload(self, site: str, rnd: int) -> Payload:
        """What ``site`` is sent for round ``rnd``: the global tensors and :meth:`extra`."""
        return Payload(self.global_state, self.extra(site, rnd))

    def extra(self, site: str, rnd: int) -> TensorDict:
        """Tensors ``site`` needs in round ``rnd`` besides the global ones (default: none)."""
        return {}

    def aggregate(self, rnd: int, replies: Mapping[str, Reply], weights: Mapping[str, float]) -> None:
        """New global tensors from the replies of the sites that trained (in site order)."""
        self.global_state = self.average({s: r.shared for s, r in replies.items()}, weights)

    def average(self, updates: Mapping[str, TensorDict], weights: Mapping[str, float]) -> TensorDict:
        """:func:`weighted_average`, on flat buffers under ``fl.flat_aggregation`` (same numbers)."""
        if self._averager is not None:
            return self._averager(updates, weights)
        return weighted_average(updates, weights)

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The global tensors and the algorithm's server state (tensors and plain data only)."""
        return {"global": self.global_state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.global_state = dict(state["global"])


class Client:
    """Site half. The default trains every parameter for ``epochs`` epochs with no penalty and sends
    back its shared tensors."""

    def __init__(self, options: AlgorithmOptions | None, context: Context, site: str):
        self.options = options
        self.context = context
        self.site = site

    def connect(self, peers: Mapping[str, PeerData]) -> None:
        """Receive every site's training batches (``peers[site](key, rnd)``); only a transport holding
        every site in one process calls it, and only FL-MRCM's paper mode reads them."""

    def prepare(self, rnd: int, payload: Payload, model: nn.Module, batches: Iterable[dict]) -> Reply:
        """Answer :meth:`Server.prepare_requests` (the global tensors are loaded into ``model``)."""
        return Reply()

    def plan(self, rnd: int, payload: Payload, model: nn.Module, epochs: int) -> LocalPlan:
        """The local training of round ``rnd`` from ``payload`` (the global tensors are loaded)."""
        return LocalPlan([Phase(epochs)])

    def reply(
        self, rnd: int, payload: Payload, model: nn.Module, shared: TensorDict, steps: int, lr: float
    ) -> Reply:
        """What goes back after a successful local fit of ``steps`` steps at rate ``lr``."""
        return Reply(shared)

    def reset_optimizers(self) -> None:
        """Forget the state of any optimiser of the client's own (``optim.reset_state``, at the start of
        every round's local fit); the site's model optimiser and a companion's are reset by the site."""

    def state_dict(self) -> dict[str, Any]:
        """The site's algorithm state that must survive a checkpoint (tensors and plain data only)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


Server.client = Client
