"""One site of the Flower app: the in-process federation restricted to this site, driven by messages.

The site builds a :class:`~fl.federation.Federation` of one site from the server's config and its
node config, so its data module, ReconModule, local fit (strategy penalty, phases, step hook, NaN
guard), validation, best-model choice and test are the in-process run's own code. Flower starts a
fresh process for every message, so between messages everything lives in the site's run directory
``<output-dir>/<name>/<site>/``, written atomically:

- ``checkpoints/last.ckpt``: the site after its last validated round (model with its decoder,
  optimiser state, its strategy state, best model so far), as the in-process ``last.ckpt``, and
  ``checkpoints/previous.ckpt``, the round before (the server's checkpoint may lag one round behind
  the sites' when it stops between their validation and its own);
- ``checkpoints/trained.ckpt``: the site after the local fit of the round in progress;
- ``config.yaml``, ``metrics.csv``, ``checkpoints/best_<site>.ckpt``, ``results.*``, ``figures/``.

A SuperNode restart loses nothing: the next message continues from these files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from fl.federation import Federation, SiteDiverged, lr_at
from fl.flower.node import NodeSettings
from utils.config import Config, save_config, validate_config
from utils.errors import UserError
from utils.metrics import METRICS
from utils.run_log import MetricsCSV

logger = logging.getLogger(__name__)


def site_config(config: Mapping[str, Any], settings: NodeSettings) -> Config:
    """The federation config (plain form) restricted to this site, with its data root, caches and
    run directory ``<output-dir>/<name>/<site>`` taken from the node config."""
    data = json.loads(json.dumps(config))  # a deep copy
    names = [s["name"] for s in data.get("sites", [])]
    entries = [s for s in data.get("sites", []) if s["name"] == settings.site]
    if not entries:
        raise UserError(f"node config site: {settings.site!r} is not a site of the federation config {names}")
    entry = entries[0]
    source = entry["source"]
    default_cache = data.get("data", {}).get("cache_dir", ".cache/fedmri")
    if "root" in source:
        if settings.data_root is None:
            raise UserError(
                f"node config data-root: required for site {settings.site} (source kind {source['kind']})"
            )
        source["root"] = str(settings.data_root)
        cache = settings.cache_dir or default_cache
    else:  # simulated data: generated once into the data root
        cache = settings.data_root or settings.cache_dir or default_cache
    data["sites"] = [entry]
    data.setdefault("data", {})["cache_dir"] = str(cache)
    data["output_dir"] = str(settings.output_dir / data.get("name", "fedmri"))
    data["name"] = settings.site
    return validate_config(data)


@dataclass
class TrainOutcome:
    """What a site reports after its local fit of a round."""

    status: str
    loss: float
    train_slices: int
    shared: dict[str, Tensor] | None = None
    uplink: dict[str, Tensor] = field(default_factory=dict)


class SiteWorker:
    """The site's side of every message: load its state, do the step, save its state.

    Args:
        config: the federation config restricted to this site (:func:`site_config`).
        log: where progress lines go.
    """

    def __init__(self, config: Config, log: Callable[[str], None] = logger.info):
        self.config = config
        self.fed = Federation(config, log=log)
        self.fed.setup()
        self.site = self.fed.sites[0]
        self.strategy = self.fed.strategy
        self.run_dir = config.run_dir
        self.last = self.run_dir / "checkpoints" / "last.ckpt"
        self.previous = self.run_dir / "checkpoints" / "previous.ckpt"
        self.trained = self.run_dir / "checkpoints" / "trained.ckpt"

    @property
    def name(self) -> str:
        """The site's name."""
        return self.site.name

    # -- state between messages ----------------------------------------------------------------
    def start_fresh(self, overwrite: bool) -> None:
        """Begin a new run here: refuse to replace another run of the same name unless ``overwrite``."""
        if self.run_dir.exists() and any(self.run_dir.iterdir()):
            if not overwrite:
                raise UserError(
                    f"site {self.name}: {self.run_dir} already holds a run of this name; "
                    "start the run with overwrite=true, continue it with resume=true, or choose another name"
                )
            shutil.rmtree(self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(self.config, self.run_dir / "config.yaml")

    def load_completed(self, rnd: int) -> None:
        """Continue from the state after round ``rnd`` (validated): ``last.ckpt`` or ``previous.ckpt``."""
        held = []
        for path in (self.last, self.previous):
            if path.exists():
                self.fed.load(path)
                if self.fed.completed_rounds == rnd:
                    self._metrics().truncate_to(rnd)
                    return
                held.append(self.fed.completed_rounds)
        raise UserError(
            f"site {self.name}: the server continues after round {rnd}, but {self.last.parent} holds "
            f"{'rounds ' + str(held) if held else 'no completed round'}"
        )

    def load_trained(self, rnd: int) -> None:
        """Continue from the state after the local fit of round ``rnd``, kept in ``trained.ckpt``."""
        if not self.trained.exists():
            raise UserError(f"site {self.name}: no local fit of round {rnd} to validate ({self.trained})")
        self.fed.load(self.trained)
        if self.fed.completed_rounds != rnd - 1:
            raise UserError(
                f"site {self.name}: {self.trained} is the fit of round {self.fed.completed_rounds + 1}, "
                f"the server validates round {rnd}"
            )

    def _metrics(self) -> MetricsCSV:
        return MetricsCSV(self.run_dir / "metrics.csv")

    # -- the steps -----------------------------------------------------------------------------
    def validate(self, rnd: int, global_state: dict[str, Tensor]) -> dict[str, float]:
        """Load the new global tensors into the fitted model, validate, keep the best; round done."""
        fed, site = self.fed, self.site
        fed.global_state = global_state
        val = fed._validate_and_keep_best(site, rnd)["val"]
        fed.history[site.name].append(val["psnr"])
        fed.completed_rounds = rnd
        self._metrics().write(round=rnd, site=site.name, split="val", **{k: val[k] for k in METRICS})
        if self.last.exists():
            os.replace(self.last, self.previous)
        fed.save(self.last)
        self.trained.unlink(missing_ok=True)
        return val

    def train(self, rnd: int, global_state: dict[str, Tensor], downlink: dict[str, Tensor]) -> TrainOutcome:
        """Round ``rnd``'s local fit from the global tensors, as the in-process round does it."""
        fed, site, strategy = self.fed, self.site, self.strategy
        fed.global_state = global_state
        strategy.receive_downlink(site.name, rnd, downlink)
        fed.prepare_round(rnd)
        snapshot = Federation._snapshot(site) if self.config.fl.on_site_failure == "skip" else None
        slices = site.data.num_train_slices
        try:
            shared, loss = fed.train_site(site, rnd)
        except SiteDiverged as err:
            if snapshot is None:
                return TrainOutcome(status=f"diverged: {err.reason}", loss=math.nan, train_slices=slices)
            Federation._restore(site, snapshot)
            fed.log(f"{err}; left out of round {rnd}'s aggregation, retried next round")
            outcome = TrainOutcome(status=f"skipped: {err.reason}", loss=math.nan, train_slices=slices)
        else:
            uplink = strategy.uplink(site.name, rnd, shared)
            outcome = TrainOutcome(status="ok", loss=loss, train_slices=slices, shared=shared, uplink=uplink)
        self._metrics().write(
            round=rnd,
            site=site.name,
            split="train",
            loss=outcome.loss,
            lr=lr_at(self.config, rnd),
            status=outcome.status,
        )
        fed.save(self.trained)
        return outcome

    def finish(self) -> dict[str, Any]:
        """Test the site's best model on its test split; writes its best checkpoint, figures, results."""
        results = self.fed.test(self._metrics())
        self.fed.write_results(results)
        return results["sites"][self.name]
