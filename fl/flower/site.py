"""One site of the Flower app: a :class:`~fl.site.Site` driven by messages, its state kept on disk.

The site's data module, model, local fit (the algorithm's plan, the NaN guard), validation, best
model and test are the in-process run's own code (:class:`fl.site.Site`). Flower starts a fresh
process for every message, so between messages everything lives in the site's run directory
``<output-dir>/<name>/<site>/``, written atomically:

- ``checkpoints/last.ckpt``: the site after its last validated round (model with its decoder,
  optimiser state, its algorithm state, best model so far, history), and ``checkpoints/previous.ckpt``,
  the round before (the server's checkpoint may lag one round behind the sites' when it stops between
  their validation and its own);
- ``checkpoints/trained.ckpt``: the site after the local fit of the round in progress;
- ``config.yaml``, ``metrics.csv``, ``checkpoints/best_<site>.ckpt``, ``results.*``, ``figures/``.

A SuperNode restart loses nothing: the next message continues from these files. SIGINT and SIGTERM
(:mod:`utils.interrupt`) wait while a step writes them, so they always hold a completed step.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from fl.aggregation import TensorDict
from fl.algorithms.base import Payload
from fl.fingerprint import fingerprint
from fl.flower.node import NodeSettings
from fl.loop import LOAD_ERRORS, check_checkpoint
from fl.reporter import Reporter
from fl.site import FitResult, Site
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.errors import UserError
from utils.interrupt import held
from utils.io import atomic_write_text

SITE_FORMAT = 2


def site_config(config: Mapping[str, Any], settings: NodeSettings) -> dict[str, Any]:
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
    return data


class SiteWorker:
    """The site's side of every message: load its state, do the step, save its state.

    Args:
        site: the site (built from the federation config restricted to it).
        reporter: the site's own rows, results and figures.
        config: the site's resolved config (plain data).
        local_epochs: ``fl.local_epochs``; ``lr``: learning rate of a round; ``skip``: ``fl.on_site_failure``
            is ``skip``.
    """

    def __init__(
        self,
        site: Site,
        reporter: Reporter,
        *,
        config: dict[str, Any],
        local_epochs: int,
        lr: Callable[[int], float],
        skip: bool,
    ):
        self.site, self.reporter, self.config = site, reporter, config
        self.local_epochs, self.lr, self.skip = local_epochs, lr, skip
        self.run_dir = Path(reporter.run_dir)
        self.last = self.run_dir / "checkpoints" / "last.ckpt"
        self.previous = self.run_dir / "checkpoints" / "previous.ckpt"
        self.trained = self.run_dir / "checkpoints" / "trained.ckpt"
        self.completed = 0
        self.loaded = False  # whether ``completed`` is the state's (read from disk, or a fresh start)
        self.fit: dict[str, Any] = {}

    @property
    def name(self) -> str:
        """The site's name."""
        return self.site.name

    # -- state between messages ----------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        """What a site checkpoint holds: its config and fingerprint, the site's state, its best model,
        history, the timing of its rounds and the fit of the round in progress."""
        return {
            "format": SITE_FORMAT,
            "kind": "flower-site",
            "fingerprint": fingerprint(self.config),
            "round": self.completed,
            "config": self.config,
            "sites": {self.name: self.site.state_dict()},
            "best": {self.name: self.site.best()},
            "history": self.reporter.history,
            "timing": self.reporter.timing_state(),
            "fit": self.fit,
        }

    def _save(self, path: Path) -> None:
        save_checkpoint(self._state(), path)

    def _load(self, path: Path) -> None:
        """Restore a site checkpoint after the checks of :meth:`fl.loop.RunLoop.load`: the config
        fingerprint, the structure, types and tensor shapes, the round and the history."""
        ckpt = load_checkpoint(path)
        if ckpt.get("format") != SITE_FORMAT or ckpt.get("kind") != "flower-site":
            raise UserError(f"site {self.name}: {path} is not a site checkpoint of this version")
        template = {k: v for k, v in self._state().items() if k not in ("config", "fingerprint", "fit")}
        check_checkpoint(ckpt, path, self.config, template, self.reporter.history)
        try:
            self.site.load_state_dict(ckpt["sites"][self.name])
            self.site.load_best(ckpt["best"][self.name])
            fit = dict(ckpt.get("fit", {}))
        except UserError:
            raise
        except LOAD_ERRORS as err:
            raise UserError(
                f"site {self.name}: {path} does not fit the site ({str(err).splitlines()[0]})"
            ) from None
        self.reporter.history = {k: list(v) for k, v in ckpt["history"].items()}
        if "timing" in ckpt:
            self.reporter.load_timing(ckpt["timing"])
        self.completed, self.fit, self.loaded = int(ckpt["round"]), fit, True

    def start_fresh(self, overwrite: bool) -> None:
        """Begin a new run here: refuse to replace another run of the same name unless ``overwrite``."""
        if self.run_dir.exists() and any(self.run_dir.iterdir()) and not overwrite:
            raise UserError(
                f"site {self.name}: {self.run_dir} already holds a run of this name; "
                "start the run with overwrite=true, continue it with resume=true, or choose another name"
            )
        with held():
            if self.run_dir.exists():
                shutil.rmtree(self.run_dir)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / "config.yaml", yaml.safe_dump(self.config, sort_keys=False))
        self.completed, self.loaded = 0, True

    def load_completed(self, rnd: int) -> None:
        """Continue from the state after round ``rnd`` (validated): ``last.ckpt`` or ``previous.ckpt``."""
        held = []
        for path in (self.last, self.previous):
            if path.exists():
                self._load(path)
                if self.completed == rnd:
                    return
                held.append(self.completed)
        raise UserError(
            f"site {self.name}: the server continues after round {rnd}, but {self.last.parent} holds "
            f"{'rounds ' + str(held) if held else 'no completed round'}"
        )

    def load_latest(self) -> None:
        """Continue from the last validated round (``last.ckpt``)."""
        if not self.last.exists():
            raise UserError(f"site {self.name}: no validated round to test ({self.last} is missing)")
        self._load(self.last)

    # -- the steps -----------------------------------------------------------------------------
    def train(self, rnd: int, payload: Payload) -> FitResult:
        """Round ``rnd``'s local fit from the payload, as the in-process round does it."""
        result = self.site.fit_or_skip(rnd, payload, self.local_epochs, self.lr(rnd), self.skip)
        if result.status.startswith("skipped"):
            print(f"site {self.name} diverged in round {rnd}: {result.status.partition(': ')[2]}; "
                  "left out of this round's aggregation, retried next round", flush=True)  # fmt: skip
        with held():
            self.fit = {"round": rnd, "loss": result.loss, "status": result.status}
            self._save(self.trained)
        return result

    def validate(self, rnd: int, global_state: TensorDict) -> dict[str, float]:
        """Load the new global tensors into the fitted model, validate, keep the best; round done."""
        if not self.trained.exists():
            raise UserError(f"site {self.name}: no local fit of round {rnd} to validate ({self.trained})")
        self._load(self.trained)
        if self.fit.get("round") != rnd:
            raise UserError(f"site {self.name}: {self.trained} is the fit of round {self.fit.get('round')}, "
                            f"the server validates round {rnd}")  # fmt: skip
        val, _ = self.site.validate(rnd, global_state)
        loss = self.fit["loss"]
        with held():  # the round's row and checkpoints are written whole, or not at all
            self.reporter.open(rnd - 1)
            row = {"loss": math.nan if loss is None else loss, "status": self.fit["status"], **val}
            self.reporter.round(rnd, {self.name: row}, self.lr(rnd))
            self.reporter.close()
            self.completed, self.fit = rnd, {}
            if self.last.exists():
                os.replace(self.last, self.previous)
            self._save(self.last)
            self.trained.unlink(missing_ok=True)
        return val

    def test(self) -> dict[str, Any]:
        """Test the site's best model on its test split; writes its best checkpoint, figures, results."""
        self.reporter.open(self.completed)
        try:
            results = self.reporter.results(
                {self.name: {**self.site.test(), "best": self.site.best()}}, self.completed
            )
        finally:
            self.reporter.close()
        with held():
            self.reporter.write_results(results)
        return {**results["sites"][self.name], "best_psnr": self.site.best_psnr}
