"""One site of a federation: its data, its model and optimiser, its algorithm half, and its best round.

A :class:`Site` does everything that happens at a hospital: load the round's global tensors, train
locally as its client half plans, send back a reply, validate and keep its best model, test it. The
same object serves every transport: the in-process loop and a multi-process run call it directly,
the Flower ClientApp calls it once per message.
"""

from __future__ import annotations

import bisect
import copy
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch

from data.site import SiteDataModule
from fl.aggregation import TensorDict
from fl.algorithms.base import Client, Companion, LocalPlan, Payload, Reply, set_trainable
from models.recon_module import NonFiniteError, ReconModule, all_finite
from utils.metrics import summarise
from utils.seeding import stable_seed

# (max_epochs, fit) -> a Lightning Trainer for one local fit or one evaluation.
TrainerFactory = Callable[[int, bool], L.Trainer]
# Per-volume scores of this process -> per-volume scores of the whole split (a data-parallel run).
ScoreMerger = Callable[[dict[str, Any]], dict[str, Any]]


class SiteDiverged(Exception):
    """A site's local training produced a non-finite loss or non-finite weights."""

    def __init__(self, site: str, rnd: int, reason: str):
        super().__init__(f"site {site} diverged in round {rnd}: {reason}")
        self.site, self.round, self.reason = site, rnd, reason


@dataclass
class FitResult:
    """A site's local fit of one round: ``ok`` with its reply, or ``skipped`` (restored, left out)."""

    status: str
    loss: float
    train_slices: int
    reply: Reply | None = None
    steps: int = 0  # optimiser steps of the fit
    values: dict[str, float] = field(default_factory=dict)  # loss_rec, penalty, the plan's after_fit values


@dataclass
class Site:
    """One client: data, module (model + optimiser), algorithm half, and its best round so far.

    Args:
        name: the site's name.
        data: its data module (already set up).
        module: its ReconModule.
        client: its half of the algorithm.
        trainer: builds the Lightning Trainer of a local fit or an evaluation.
        seed: the run's seed (keys the local fit's randomness by site and round).
        merge_scores: combines per-volume scores across processes (identity in one process).
        reset_optimizer: clear the optimiser state (the site's, a companion's and the client's own, such as
            FL-MRCM's discriminator's) at the start of every
            round's local fit (``optim.reset_state``, ours); by default one state lasts the whole run.
    """

    name: str
    data: SiteDataModule
    module: ReconModule
    client: Client
    trainer: TrainerFactory
    seed: int = 0
    merge_scores: ScoreMerger = lambda scores: scores  # noqa: E731
    reset_optimizer: bool = False
    best_round: int = 0
    best_psnr: float = -math.inf
    best_state: TensorDict = field(default_factory=dict)
    last_steps: int = 0  # optimiser steps of the last local fit
    fit_values: dict[str, float] = field(default_factory=dict)  # loss parts, after_fit values: last fit
    shown: dict[str, Any] | None = None  # the slice of the last validation shown on TensorBoard

    # -- the round -----------------------------------------------------------------------------
    def load_global(self, global_state: TensorDict) -> None:
        """Copy the global shared tensors into the site's model."""
        state = self.module.model.state_dict()
        with torch.no_grad():
            for name, tensor in global_state.items():
                state[name].copy_(tensor)

    def shared_tensors(self, names: Any) -> TensorDict:
        """Copies of the named entries of the model's state dict, on the CPU."""
        state = self.module.model.state_dict()
        return {n: state[n].detach().clone().cpu() for n in names}

    def prepare(self, rnd: int, payload: Payload) -> Reply:
        """Answer the server's request to compute something from the round's global tensors."""
        self.load_global(payload.global_state)
        self.data.set_round(rnd)
        return self.client.prepare(rnd, payload, self.module.model, self.data.train_dataloader())

    def fit(self, rnd: int, payload: Payload, epochs: int, lr: float) -> tuple[Reply, float]:
        """Load the global tensors, train the round's local epochs as the client plans them, and
        return the reply and the mean training loss of the last epoch (its parts and the values of the
        plan's ``after_fit`` are left in :attr:`fit_values`).

        Raises:
            SiteDiverged: a step's loss, or a weight after the fit, is not finite.
        """
        self.load_global(payload.global_state)
        module = self.module
        if self.reset_optimizer:  # a fresh state; the learning rate lives in the param groups, kept
            module.optimizer.state.clear()
            self.client.reset_optimizers()
        module.set_lr(lr)
        plan = self.client.plan(rnd, payload, module.model, epochs)
        self.fit_values = {}
        self.data.set_round(rnd)
        torch.manual_seed(stable_seed(self.seed, "local", self.name, rnd))  # the same in any process layout
        steps, values = 0, {}
        try:
            if plan.companion is not None:  # its steps come out of the plan's
                steps, values = self._fit_companion(plan.companion, lr)
                torch.manual_seed(stable_seed(self.seed, "local-own", self.name, rnd))
            steps += self._fit_plan(plan, skip=steps)
            self.last_steps = steps
            if not all_finite(module.model):
                raise NonFiniteError("non-finite weights after local training")
        except NonFiniteError as err:
            raise SiteDiverged(self.name, rnd, str(err)) from None
        finally:
            module.install()
            set_trainable(module.model, None)
        self.fit_values = {**values, **module.mean_losses}
        if plan.after_fit is not None:
            self.fit_values.update(plan.after_fit(module.model))
        shared = self.shared_tensors(payload.global_state)
        return self.client.reply(rnd, payload, module.model, shared, steps, lr), module.mean_train_loss

    def _fit_plan(self, plan: LocalPlan, skip: int = 0) -> int:
        """Train the plan's phases with its hooks installed (after its ``before_fit``), less their first
        ``skip`` steps, taken by a companion; returns the optimiser steps."""
        module = self.module
        if plan.before_fit is not None:
            plan.before_fit(module.model)
        module.install(
            penalty=plan.penalty,
            after_backward=plan.after_backward,
            after_step=plan.after_step,
            reconstruction_weight=plan.reconstruction_weight,
        )
        if not skip and len(plan.phases) == 1 and float(plan.phases[0].epochs).is_integer():
            set_trainable(module.model, plan.phases[0])
            trainer = self.trainer(int(plan.phases[0].epochs), True)
            trainer.fit(module, train_dataloaders=self.data.train_dataloader())
            return trainer.global_step
        return self._fit_phases(plan, skip)

    def _fit_companion(self, companion: Companion, lr: float) -> tuple[int, dict[str, float]]:
        """Train ``companion`` as its plan says in place of the site's model and optimiser state, leave
        its new weights and optimiser state in it, and put the site's own back. Returns its optimiser
        steps and the values of its plan's ``after_fit``."""
        module = self.module
        own_model = {n: t.detach().clone() for n, t in module.model.state_dict().items()}
        own_optimizer = copy.deepcopy(module.optimizer.state_dict())
        module.model.load_state_dict(companion.state)
        if companion.optimizer and not self.reset_optimizer:
            module.optimizer.load_state_dict(companion.optimizer)
        else:
            module.optimizer.state.clear()
        module.set_lr(lr)
        try:
            steps = self._fit_plan(companion.plan)
            module.install()
            set_trainable(module.model, None)
            values = companion.plan.after_fit(module.model) if companion.plan.after_fit else {}
            companion.steps = steps
            companion.state = {n: t.detach().clone().cpu() for n, t in module.model.state_dict().items()}
            companion.optimizer = copy.deepcopy(module.optimizer.state_dict())
        finally:
            module.model.load_state_dict(own_model)
            module.optimizer.load_state_dict(own_optimizer)
            module.set_lr(lr)
        return steps, values

    def _fit_phases(self, plan: LocalPlan, skip: int = 0) -> int:
        """One pass of ``sum(phase.epochs)`` epochs in which phase i owns a run of consecutive optimiser
        steps (phase i ends at step ``round((epochs_1 + ... + epochs_i) * batches per epoch)``, fractions
        of an epoch allowed): before every step the gradients of the parameters the current phase does
        not train are dropped, so the optimiser leaves them and their state untouched. The first
        ``skip`` steps are left out (the phases end ``skip`` steps earlier). Returns the number of steps."""
        module = self.module
        loader = self.data.train_dataloader()
        batches = len(loader)
        bounds = [
            max(0, round(e * batches) - skip)
            for e in itertools.accumulate(phase.epochs for phase in plan.phases)
        ]
        if bounds[-1] == 0:
            return 0
        names = [n for n, _ in module.model.named_parameters()]
        frozen = [[n for n in names if not phase.trains(n)] for phase in plan.phases]
        inner, done = plan.after_backward, [0]

        def switch(model: torch.nn.Module) -> None:
            phase = bisect.bisect_right(bounds, done[0])
            if frozen[phase]:
                live = dict(model.named_parameters())
                for name in frozen[phase]:
                    live[name].grad = None
            done[0] += 1
            if inner is not None:
                inner(model)

        module.after_backward = switch
        set_trainable(module.model, None)
        trainer = self.trainer(max(1, math.ceil(bounds[-1] / max(1, batches))), True)
        trainer.fit_loop.epoch_loop.max_steps = bounds[-1]
        trainer.fit(module, train_dataloaders=loader)
        return trainer.global_step

    def fit_or_skip(self, rnd: int, payload: Payload, epochs: int, lr: float, skip: bool) -> FitResult:
        """:meth:`fit`, reporting divergence as a status: ``diverged: <why>``, or with ``skip``
        ``skipped: <why>`` after restoring the site to its state before the round."""
        snapshot = self.snapshot() if skip else None
        try:
            reply, loss = self.fit(rnd, payload, epochs, lr)
        except SiteDiverged as err:
            if snapshot is None:
                return FitResult(f"diverged: {err.reason}", math.nan, self.data.num_train_slices)
            self.restore(snapshot)
            return FitResult(f"skipped: {err.reason}", math.nan, self.data.num_train_slices)
        values = dict(self.fit_values)
        return FitResult("ok", loss, self.data.num_train_slices, reply, self.last_steps, values)

    def evaluate(self, split: str = "val") -> dict[str, Any]:
        """Per-volume metrics of the current model on ``split`` (and of the zero-filled input)."""
        trainer = self.trainer(1, False)
        if split == "val":
            trainer.validate(self.module, dataloaders=self.data.val_dataloader(), verbose=False)
            self.shown = self.figure_slice()  # one slice per site and round, for TensorBoard
        else:
            trainer.test(self.module, dataloaders=self.data.test_dataloader(), verbose=False)
        return self.merge_scores(self.module.collector.scores())

    def validate(self, rnd: int, global_state: TensorDict) -> tuple[dict[str, float], bool]:
        """Load the new global tensors, validate, and keep the model if it is the best so far.

        Returns the validation summary and whether this round became the site's best.
        """
        self.load_global(global_state)
        val = summarise(self.evaluate("val"), "model")
        improved = val["psnr"] > self.best_psnr
        if improved:
            self.best_psnr, self.best_round = val["psnr"], rnd
            self.best_state = {k: v.detach().clone().cpu() for k, v in self.module.model.state_dict().items()}
        return val, improved

    def test(self) -> dict[str, Any]:
        """Test the best model on the test split: summaries of the model and the zero-filled input,
        each test volume's metrics (``volumes``) and the slice shown in the site's figure."""
        if self.best_state:
            self.module.model.load_state_dict(self.best_state)
        per_volume = self.evaluate("test")
        return {
            "best_round": self.best_round,
            "model": summarise(per_volume, "model"),
            "zero_filled": summarise(per_volume, "zero_filled"),
            "volumes": {
                name: {which: {k: float(v) for k, v in scores.items()} for which, scores in entry.items()}
                for name, entry in sorted(per_volume.items())
            },
            "figure": self.figure_slice(),
        }

    def figure_slice(self) -> dict[str, Any] | None:
        """The middle slice of the first volume scored here in the last evaluation (a test volume for
        the reconstruction figure, a validation volume for TensorBoard); copies, not views of the volume."""
        collector = self.module.collector
        if not collector.slices:
            return None
        volume = sorted(collector.slices)[0]
        pred, target, zero_filled = collector.volume(volume)
        k = len(pred) // 2
        return {
            "volume": volume,
            "slice": k,
            "pred": pred[k].copy(),
            "target": target[k].copy(),
            "zero_filled": zero_filled[k].copy(),
        }

    # -- state ---------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """A copy of the model, optimiser and client state (to restore a diverged round)."""
        return copy.deepcopy(
            {
                "model": self.module.model.state_dict(),
                "optimizer": self.module.optimizer.state_dict(),
                "client": self.client.state_dict(),
            }
        )

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Go back to a :meth:`snapshot`."""
        self.module.model.load_state_dict(snapshot["model"])
        self.module.optimizer.load_state_dict(snapshot["optimizer"])
        self.client.load_state_dict(snapshot["client"])

    def state_dict(self) -> dict[str, Any]:
        """What the site needs to continue exactly besides its best round: model, optimiser, client state."""
        return {
            "model": self.module.model.state_dict(),
            "optimizer": self.module.optimizer.state_dict(),
            "client": self.client.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (raises RuntimeError, ValueError or KeyError if it does not fit)."""
        check_optimizer_state(self.module.optimizer, state["optimizer"])
        self.module.model.load_state_dict(state["model"])
        self.module.optimizer.load_state_dict(state["optimizer"])
        self.client.load_state_dict(state.get("client", {}))

    def best(self) -> dict[str, Any]:
        """The best round so far: its number, validation PSNR and model."""
        return {"round": self.best_round, "psnr": self.best_psnr, "model": self.best_state}

    def load_best(self, best: dict[str, Any]) -> None:
        """Restore :meth:`best`."""
        self.best_round, self.best_psnr, self.best_state = (
            int(best["round"]),
            float(best["psnr"]),
            best["model"],
        )


def check_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Refuse an optimiser state that would fail only at the next step: per-parameter state tensors
    (moments) whose shapes differ from their parameters', or states keyed by parameters that do not exist.

    Raises:
        ValueError: naming the parameter index and the shapes.
    """
    shapes = [p.shape for group in optimizer.param_groups for p in group["params"]]
    entries = state.get("state")
    if not isinstance(entries, dict) or not isinstance(state.get("param_groups"), list):
        raise ValueError("optimizer: expected a dict with 'state' and 'param_groups'")
    for index, entry in entries.items():
        if not isinstance(index, int) or not 0 <= index < len(shapes) or not isinstance(entry, dict):
            raise ValueError(f"optimizer: state of unknown parameter {index!r}")
        for name, value in entry.items():
            if isinstance(value, torch.Tensor) and value.dim() and value.shape != shapes[index]:
                raise ValueError(
                    f"optimizer state {index}.{name}: shape {tuple(value.shape)}, "
                    f"parameter {tuple(shapes[index])}"
                )
