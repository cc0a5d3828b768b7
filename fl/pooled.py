"""The non-federated references, Centralized and Transfer-Site, on the same sites and outputs.

Both pool training data instead of federating: Centralized trains one model on every site's
training split; Transfer-Site trains, for each site, one model on the other sites' training splits
and tests it on that site. A "round" is ``fl.local_epochs`` epochs over the pool, which costs the
same compute as one federated round over the same sites. Each site keeps its best round as in the
federation: by its own validation PSNR under Centralized, and by the mean validation PSNR of the
training sites under Transfer-Site (the tested site's data is never used). Test metrics, figures,
``metrics.csv``, ``results.json`` and checkpoints are written exactly as for a federated run.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from data.site import PooledDataModule, SiteDataModule
from fl.federation import Federation, _summarise, lr_at
from fl.strategies import ALGORITHMS
from models.recon_module import ReconModule
from utils.config import Config


class PooledTraining(Federation):
    """Runs ``fl.algorithm: centralized`` or ``transfer``: pooled data, the federation's outputs."""

    pooled_data = True

    def setup(self) -> None:
        """Build the sites as the federation does, then one pooled model and loader per group."""
        super().setup()
        names = [s.name for s in self.sites]
        if self.strategy.pooled == "all":
            self.groups = {"all": names}
        else:
            self.groups = {n: [o for o in names if o != n] for n in names}
        by_name = {s.name: s for s in self.sites}
        initial = self.sites[0].module.model.state_dict()
        self.pools: dict[str, PooledDataModule] = {}
        for group, members in self.groups.items():
            module = self._new_module()
            module.model.load_state_dict(initial)
            self.strategy.modules[group] = module
            self.pools[group] = PooledDataModule(
                [by_name[m].data for m in members],
                seed=self.config.seed,
                name=f"{self.strategy.name}-{group}",
                num_workers=self.config.trainer.num_workers,
                persistent_workers=self.config.trainer.persistent_workers,
                pin_memory=self.config.trainer.pin_memory,
            )
        if self.strategy.pooled == "all":
            self.log(f"{self.strategy.name}: one model on the pooled training data of {', '.join(names)}")
        else:
            self.log(f"{self.strategy.name}: per site, one model on the other {len(names) - 1} sites' data")

    def group_of(self, site: str) -> str:
        """The pooled model that ``site`` is tested with."""
        return "all" if self.strategy.pooled == "all" else site

    def _validate(self, module: ReconModule, data: SiteDataModule) -> float:
        trainer = self._trainer()
        trainer.validate(module, dataloaders=data.val_dataloader(), verbose=False)
        return _summarise(module.collector.scores(), "model")["psnr"]

    def run_round(self, rnd: int) -> dict[str, dict[str, float]]:
        """``fl.local_epochs`` epochs of every pooled model, then validation and best-round choice."""
        lr = lr_at(self.config, rnd)
        losses = {}
        for group, module in self.strategy.modules.items():
            module.set_lr(lr)
            pool = self.pools[group]
            pool.set_round(rnd)
            self._trainer(self.config.fl.local_epochs).fit(module, train_dataloaders=pool.train_dataloader())
            losses[group] = module.mean_train_loss
        by_name = {s.name: s for s in self.sites}
        summary = {}
        for site in self.sites:
            group = self.group_of(site.name)
            model = self.strategy.modules[group]
            site.module.model.load_state_dict(model.model.state_dict())
            val = _summarise(self.evaluate_site(site, "val"), "model")
            if self.strategy.pooled == "all":
                score = val["psnr"]
            else:
                score = float(np.mean([self._validate(model, by_name[m].data) for m in self.groups[group]]))
            summary[site.name] = {"loss": losses[group], "status": "ok", **val}
            if score > site.best_psnr:
                site.best_psnr, site.best_round = score, rnd
                site.best_state = {
                    k: v.detach().clone().cpu() for k, v in site.module.model.state_dict().items()
                }
        self.completed_rounds = rnd
        return summary


def create_run(config: Config, log: Callable[[str], None] = print) -> Federation:
    """The runner for ``config``: a :class:`Federation`, or :class:`PooledTraining` for the references."""
    pooled = ALGORITHMS[config.fl.algorithm].pooled
    return (PooledTraining if pooled else Federation)(config, log=log)


def is_federated(algorithm: str) -> bool:
    """Whether ``algorithm`` trains by federation (False for Centralized and Transfer-Site)."""
    return ALGORITHMS[algorithm].pooled is None
