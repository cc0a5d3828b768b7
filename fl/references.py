"""The non-federated references, Centralized and Transfer-Site: runners beside the federated round.

Centralized trains one model on every site's training split pooled. Transfer-Site (``transfer``) is
the FedMRI paper's baseline, "the model is transferred across different sites in a random order":
one model trained on the sites one after another (cyclic weight transfer, Chang et al., "Distributed
deep learning networks among institutions for medical imaging", JAMIA 2018), ``fl.local_epochs``
epochs per visit, every site once per round in a new order drawn from the seed, tested on every site.
``transfer_loo`` is a variant of ours: for each site, one model on the other sites' training splits
pooled (leave one site out), tested on that site. A "round" costs the same compute as one federated
round over the same sites. Each site keeps its best round as in the federation: by its own
validation PSNR under Centralized and Transfer-Site, and by the mean validation PSNR of the training
sites under ``transfer_loo`` (the tested site's data is never used). The loop
(:class:`fl.loop.RunLoop`) writes test metrics, figures, ``metrics.csv``, ``results.json`` and
checkpoints exactly as for a federated run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from data.pooled import PooledDataModule
from data.site import SiteDataModule
from fl.site import Site, TrainerFactory
from fl.transport import InProcess
from models.recon_module import ReconModule
from utils.metrics import summarise
from utils.seeding import stable_seed


class PooledReference(ABC):
    """Trains one model per group of pooled sites; every site is validated and tested with its group's.

    Args:
        sites: every site (data, a module to evaluate with, best round).
        modules: one ReconModule per group, all with the sites' initial weights.
        pools: one pooled training set per group.
        trainer: builds the Lightning Trainer of a fit or an evaluation.
        local_epochs: epochs over the pool per round.
        lr: learning rate of a round.
    """

    name: ClassVar[str]
    label: ClassVar[str]

    def __init__(
        self,
        sites: list[Site],
        modules: dict[str, ReconModule],
        pools: dict[str, PooledDataModule],
        *,
        trainer: TrainerFactory,
        local_epochs: int,
        lr: Callable[[int], float],
    ):
        self.sites, self.modules, self.pools = sites, modules, pools
        self.trainer, self.local_epochs, self.lr = trainer, local_epochs, lr
        self.transport = InProcess(sites)
        self.completed = 0

    @classmethod
    def check(cls, options: Any, sites: list[str], model_kind: str) -> None:
        """Refuse (ValueError naming the key) a federation this reference cannot run on (none by default)."""
        return None

    @staticmethod
    @abstractmethod
    def groups(names: list[str]) -> dict[str, list[str]]:
        """Group name -> the sites whose training data it pools."""

    @abstractmethod
    def group_of(self, site: str) -> str:
        """The pooled model that ``site`` is validated and tested with."""

    @abstractmethod
    def selection_score(self, site: Site, val: dict[str, float]) -> float:
        """The validation PSNR that decides ``site``'s best round."""

    @property
    def site_names(self) -> list[str]:
        """The sites, in config order."""
        return [s.name for s in self.sites]

    def describe(self, total_tensors: int) -> str:
        """What is pooled, for the run's first line."""
        return f"{len(self.modules)} pooled model(s), nothing shared"

    def _validate(self, module: ReconModule, data: SiteDataModule) -> float:
        self.trainer(1, False).validate(module, dataloaders=data.val_dataloader(), verbose=False)
        return summarise(module.collector.scores(), "model")["psnr"]

    def round(self, rnd: int) -> dict[str, dict[str, Any]]:
        """``fl.local_epochs`` epochs of every pooled model, then validation and best-round choice."""
        lr = self.lr(rnd)
        losses, steps = {}, {}
        for group, module in self.modules.items():
            module.set_lr(lr)
            pool = self.pools[group]
            pool.set_round(rnd)
            trainer = self.trainer(self.local_epochs, True)
            trainer.fit(module, train_dataloaders=pool.train_dataloader())
            losses[group], steps[group] = module.mean_train_loss, trainer.global_step
        summary = {}
        for site in self.sites:
            group = self.group_of(site.name)
            site.module.model.load_state_dict(self.modules[group].model.state_dict())
            val = summarise(site.evaluate("val"), "model")
            score = self.selection_score(site, val)
            summary[site.name] = {"loss": losses[group], "status": "ok", "steps": steps[group], **val,
                                  "shown": site.shown}  # fmt: skip
            if score > site.best_psnr:
                site.best_psnr, site.best_round = score, rnd
                site.best_state = {
                    k: v.detach().clone().cpu() for k, v in site.module.model.state_dict().items()
                }
        return summary

    def test(self) -> dict[str, dict[str, Any]]:
        """Every site's best model on its test split."""
        return self.transport.test()

    def state_dict(self) -> dict[str, Any]:
        """The pooled models with their optimisers, and the sites' states and best rounds."""
        models = {
            g: {"model": m.model.state_dict(), "optimizer": m.optimizer.state_dict()}
            for g, m in self.modules.items()
        }
        return {"global": {}, "server": {"models": models}, **self.transport.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        for group, module in self.modules.items():
            saved = state["server"]["models"][group]
            module.model.load_state_dict(saved["model"])
            module.optimizer.load_state_dict(saved["optimizer"])
        self.transport.load_state_dict(state)


class OneModel(PooledReference):
    """A reference with one model for every site; a site keeps its best round by its own validation PSNR."""

    @staticmethod
    def groups(names: list[str]) -> dict[str, list[str]]:
        return {"all": list(names)}

    def group_of(self, site: str) -> str:
        return "all"

    def selection_score(self, site: Site, val: dict[str, float]) -> float:
        return val["psnr"]


class Centralized(OneModel):
    """One model trained on all sites' training data pooled (an upper reference, not private)."""

    name = "centralized"
    label = "Centralized"


class TransferSite(OneModel):
    """One model trained on the sites one after another in a seeded random order, tested on every site."""

    name = "transfer"
    label = "Transfer-Site"

    def __init__(self, sites: list[Site], *args: Any, **kwargs: Any):
        super().__init__(sites, *args, **kwargs)
        self.seed = sites[0].seed if sites else 0
        self.visits: list[tuple[int, str]] = []  # (round, site) of every visit of this process

    @classmethod
    def check(cls, options: Any, sites: list[str], model_kind: str) -> None:
        if len(sites) < 2:
            raise ValueError("fl.algorithm: transfer moves a model between sites, so it needs at least two")

    def order(self, rnd: int) -> list[str]:
        """The sites in the order the model visits them in round ``rnd`` (a new one each round)."""
        rng = np.random.default_rng(stable_seed(self.seed, "transfer-order", rnd))
        return [self.site_names[i] for i in rng.permutation(len(self.site_names))]

    def round(self, rnd: int) -> dict[str, dict[str, Any]]:
        """One pass of the model over the sites in :meth:`order`, then validation and best rounds."""
        lr = self.lr(rnd)
        module = self.modules["all"]
        by_name = {s.name: s for s in self.sites}
        losses, steps = {}, {}
        for name in self.order(rnd):
            data = by_name[name].data
            module.set_lr(lr)
            data.set_round(rnd)
            torch.manual_seed(stable_seed(self.seed, "transfer", name, rnd))
            trainer = self.trainer(self.local_epochs, True)
            trainer.fit(module, train_dataloaders=data.train_dataloader())
            losses[name], steps[name] = module.mean_train_loss, trainer.global_step
            self.visits.append((rnd, name))
        summary = {}
        for site in self.sites:
            site.module.model.load_state_dict(module.model.state_dict())
            val = summarise(site.evaluate("val"), "model")
            summary[site.name] = {"loss": losses[site.name], "status": "ok", "steps": steps[site.name], **val,
                                  "shown": site.shown}  # fmt: skip
            if val["psnr"] > site.best_psnr:
                site.best_psnr, site.best_round = val["psnr"], rnd
                site.best_state = {
                    k: v.detach().clone().cpu() for k, v in site.module.model.state_dict().items()
                }
        return summary

    def describe(self, total_tensors: int) -> str:
        return f"one model moved across the {len(self.sites)} sites in a seeded random order; nothing shared"


class TransferLeaveOneOut(PooledReference):
    """Ours: for each site, a model trained on the other sites' data pooled, tested on that site."""

    name = "transfer_loo"
    label = "Transfer (leave-one-out)"

    @classmethod
    def check(cls, options: Any, sites: list[str], model_kind: str) -> None:
        if len(sites) < 2:
            raise ValueError("fl.algorithm: transfer_loo trains on the other sites, so it needs at least two")

    @staticmethod
    def groups(names: list[str]) -> dict[str, list[str]]:
        return {n: [o for o in names if o != n] for n in names}

    def group_of(self, site: str) -> str:
        return site

    def selection_score(self, site: Site, val: dict[str, float]) -> float:
        module = self.modules[site.name]
        members = self.groups(self.site_names)[site.name]
        data = {s.name: s.data for s in self.sites}
        return float(np.mean([self._validate(module, data[m]) for m in members]))

    def describe(self, total_tensors: int) -> str:
        return f"per site, one model on the other {len(self.sites) - 1} sites' data; nothing shared"


REFERENCES: dict[str, type[PooledReference]] = {
    cls.name: cls for cls in (Centralized, TransferSite, TransferLeaveOneOut)
}
