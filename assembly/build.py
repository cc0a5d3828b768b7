"""The one place that turns a :class:`~config.Config` into objects: data modules, LightningModules,
Trainers, an algorithm's halves, sites, and the round loop that ties them together.

``train.py``, ``train_multi_gpu.py``, ``evaluate.py``, ``compare.py`` and the Flower apps build
everything here, so the same config always gives the same objects; ``setup.py`` assembles them into
a run over a transport.
"""

from __future__ import annotations

import logging
import random
import time
import warnings
from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch

from assembly.config import Config
from assembly.repository import in_repository
from data.pooled import PooledDataModule
from data.site import SiteDataModule
from fl.algorithms import ALGORITHMS, Client, Context, Server, build_client, build_server
from fl.federation import Federation
from fl.loop import RunLoop
from fl.references import REFERENCES, PooledReference
from fl.reporter import Reporter
from fl.site import Site, TrainerFactory
from fl.transport import Transport
from models.recon_module import ReconModule
from models.unet import activation_bytes
from utils.errors import UserError
from utils.hardware import loader_workers, resolve_precision
from utils.interrupt import keep_handlers
from utils.resources import available_memory, human
from utils.seeding import stable_seed


def quiet_lightning() -> None:
    """Silence Lightning's per-fit banners and hints; the run prints its own progress."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for message in (
        r".*does not have many workers.*",
        r".*LeafSpec.*",
        r".*(litlogger|tensorboardX).*",
        r".*You defined a `validation_step` but have no `val_dataloader`.*",
        r".*number of training batches.*is smaller than the logging interval.*",
    ):
        warnings.filterwarnings("ignore", message=message)


def is_federated(algorithm: str) -> bool:
    """Whether ``algorithm`` trains by federation (False for the non-federated references)."""
    return algorithm in ALGORITHMS


def check_accelerator(accelerator: str) -> None:
    """Refuse ``trainer.accelerator`` naming a device this machine does not have, in one line."""
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(
            f"trainer.accelerator: {accelerator!r} but this machine has no CUDA GPU; use auto or cpu"
        )
    if accelerator == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise UserError("trainer.accelerator: 'mps' but this machine has no Apple GPU; use auto or cpu")


class Builder:
    """Builds the objects of one run from its config.

    Args:
        config: the run's configuration.
        log: where progress lines go.
    """

    def __init__(self, config: Config, log: Callable[[str], None] = print):
        self.config = config
        self.log = log
        self._model_fits = False  # checked by the first module()
        check_accelerator(config.trainer.accelerator)

    # -- parts ---------------------------------------------------------------------------------
    def data_module(self, site) -> SiteDataModule:
        """The data module of one site (``sites.<i>``), not yet set up."""
        cfg = self.config
        return SiteDataModule(
            site,
            seed=cfg.seed,
            cache_dir=in_repository(cfg.data.cache_dir),
            clamp=cfg.data.clamp,
            num_workers=loader_workers(cfg.trainer.num_workers),
            return_kspace=cfg.model.kind == "dual_domain",
            persistent_workers=cfg.trainer.persistent_workers,
            pin_memory=cfg.trainer.pin_memory,
            sample_cache_mb=cfg.data.sample_cache_mb,
        )

    def module(self, state: dict[str, torch.Tensor] | None = None) -> ReconModule:
        """A ReconModule with the config's network, optimiser and loss; optionally loaded with ``state``.
        The first call checks that the network fits the machine (:meth:`check_model_fits`)."""
        if not self._model_fits:
            self._model_fits = True
            self.check_model_fits()
        return self._module(state)

    def check_model_fits(self) -> None:
        """Refuse, in one line, a network whose weights, gradients and optimiser state for every site (and
        the server's copy) cannot fit the memory: counted on PyTorch's meta device, which allocates
        nothing, so that model.chans=4096 is refused at once instead of allocating for minutes."""
        model = self.config.model
        try:
            with torch.random.fork_rng(devices=[]), torch.device("meta"):  # no draw leaves a trace
                count = sum(p.numel() for p in self._module(None).parameters())
        except (RuntimeError, OverflowError, ValueError):  # sizes beyond what PyTorch can index
            raise UserError(
                f"model.chans: {model.chans} channels over {model.num_pool_layers} pools make a network too "
                "large to build"
            ) from None
        copies = len(self.config.sites) + 1
        need = 4 * count * 4 * copies  # float32 weights, gradients and two optimiser moments per copy
        room = available_memory()
        if need > room:
            raise UserError(
                f"model.chans: a network of {count:,} parameters (model.chans={model.chans}, "
                f"model.num_pool_layers={model.num_pool_layers}) needs at least {human(need)} for "
                f"{copies - 1} site(s)' weights, gradients and optimiser state; the available memory is "
                f"{human(room)}"
            )

    def _module(self, state: dict[str, torch.Tensor] | None = None) -> ReconModule:
        cfg = self.config
        module = ReconModule(
            model=cfg.model.model_dump(),
            optim={"name": cfg.optim.name, "lr": cfg.optim.lr, "weight_decay": cfg.optim.weight_decay},
            loss=cfg.loss,
        )
        if state is not None:
            try:
                module.model.load_state_dict(state)
            except RuntimeError as err:
                raise UserError(
                    f"model does not fit the config's network (model.*): {str(err).splitlines()[0]}"
                ) from None
        return module

    def trainer(self, max_epochs: int = 1, fit: bool = False, **overrides: Any) -> L.Trainer:
        """A Lightning Trainer for one local fit or one evaluation (``overrides`` replace its arguments)."""
        t = self.config.trainer
        arguments = {
            "accelerator": t.accelerator,
            "devices": t.devices,
            "precision": t.precision,
            "max_epochs": max_epochs,
            "logger": False,
            "enable_checkpointing": False,
            "enable_progress_bar": t.step_progress,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
        }
        trainer = L.Trainer(**{**arguments, **overrides})
        keep_handlers(trainer)  # SIGINT and SIGTERM stay utils.interrupt's (Lightning's broadcast under DDP)
        return trainer

    def precision_line(self) -> str:
        """One line naming the run's precision and why (``auto`` was resolved when the config was read)."""
        t = self.config.trainer
        choice = resolve_precision(t.accelerator)
        if t.precision == choice.precision:
            return f"precision {t.precision}: {choice.reason}"
        auto = f"auto would choose {choice.precision}: {choice.reason}"
        return f"precision {t.precision} (set in the config; {auto})"

    def context(self) -> Context:
        """What every algorithm may read besides its options."""
        cfg = self.config
        return Context(
            seed=cfg.seed,
            sites=tuple(s.name for s in cfg.sites),
            head=cfg.fl.head,
            flat_aggregation=cfg.fl.flat_aggregation,
            lr=cfg.optim.lr,
        )

    def server(self, model: torch.nn.Module) -> Server:
        """The algorithm's server half, set up with the initial ``model``."""
        fl = self.config.fl
        server = build_server(fl.algorithm, fl.options(), self.context())
        server.setup(model)
        return server

    def client(self, site: str) -> Client:
        """The algorithm's site half for ``site`` (a plain one for the non-federated references)."""
        fl = self.config.fl
        if not is_federated(fl.algorithm):
            return Client(None, self.context(), site)
        return build_client(fl.algorithm, fl.options(), self.context(), site)

    def initial_model(self) -> torch.nn.Module:
        """The initial network every site starts from (seeded by the config's seed)."""
        torch.manual_seed(stable_seed(self.config.seed, "init"))
        return self.module().model

    # -- sites ---------------------------------------------------------------------------------
    def prepare_data(self, names: list[str] | None = None) -> list[SiteDataModule]:
        """Every site's data (or the named ones'), prepared and checked before any training, so a bad
        fourth site fails before anything is written."""
        cfg = self.config
        prepared = []
        for site in cfg.sites:
            if names is not None and site.name not in names:
                continue
            dm = self.data_module(site)
            start = time.perf_counter()
            dm.setup()
            self._check_fits_model(site.name, dm)
            self._check_fits_machine(site.name, dm)
            counts = {s: len(d) for s, d in dm.datasets.items()}
            if not counts["train"] or not counts["val"]:
                raise UserError(
                    f"sites.{site.name}: needs training and validation slices, found {counts} "
                    "(a test-only data set can be tested with evaluate.py --config, not trained on)"
                )
            accel = f" x{site.mask.acceleration:g}" if site.mask.acceleration else ""
            self.log(
                f"site {site.name}: {counts['train']} train / {counts['val']} val / "
                f"{counts['test']} test slices ({site.source.kind}, {site.mask.kind}{accel}) "
                f"[{time.perf_counter() - start:.1f} s]"
            )
            prepared.append(dm)
        return prepared

    def _check_fits_model(self, site: str, data: SiteDataModule) -> None:
        """The dual-domain cascade reads single-coil k-space: refuse multi-coil sites in one line."""
        if self.config.model.kind != "dual_domain" or not len(data.datasets["train"]):
            return
        shape = tuple(data.datasets["train"][0]["masked_kspace"].shape)
        if len(shape) != 2:
            raise UserError(
                f"sites.{site}: model.kind=dual_domain needs single-coil k-space (H, W), "
                f"this site's is multi-coil {shape}; use model.kind=unet"
            )

    def _check_fits_machine(self, site: str, data: SiteDataModule) -> None:
        """Refuse a network too deep for the site's images (each pool halves them; the bottleneck needs at
        least 2 x 2) and a batch whose training step cannot fit the memory, in one line each."""
        train = data.datasets["train"]
        if not len(train):
            return
        height, width = tuple(train[0]["input"].shape[-2:])
        model = self.config.model
        bottleneck = (height >> model.num_pool_layers, width >> model.num_pool_layers)
        if min(bottleneck) < 2:
            deepest = max(0, min(height, width).bit_length() - 2)
            raise UserError(
                f"model.num_pool_layers: {model.num_pool_layers} pools halve site {site}'s "
                f"{height} x {width} images to {bottleneck[0]} x {bottleneck[1]}; the bottleneck needs at "
                f"least 2 x 2, so at most {deepest} pools"
            )
        batch = min(data.batch_size, len(train))  # a batch never holds more than the training split
        need = activation_bytes(model.chans, model.num_pool_layers, height, width, batch)
        if model.kind == "dual_domain":
            need *= 2 * model.cascades  # a k-space and an image U-Net per cascade
        where, room = "memory", available_memory()
        if self.config.trainer.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
            where, room = "GPU memory", torch.cuda.mem_get_info()[0]
        if need > room:
            raise UserError(
                f"sites.{site}.batch_size: a training step of {batch} slices of {height} x {width} needs at "
                f"least {human(need)} of activations (model.chans={model.chans}, "
                f"model.num_pool_layers={model.num_pool_layers}); the available {where} is {human(room)}"
            )

    def sites(
        self, data: list[SiteDataModule], trainer: TrainerFactory | None = None
    ) -> tuple[list[Site], torch.nn.Module]:
        """One :class:`Site` per data module, every model with the same initial weights; and that
        initial model (the first site's)."""
        cfg = self.config
        torch.manual_seed(stable_seed(cfg.seed, "init"))
        # Nothing draws from Python's or NumPy's global generators today; seeded anyway, so that the states
        # saved in checkpoints (and anything that draws from them later) are the same in identical runs.
        random.seed(stable_seed(cfg.seed, "python"))
        np.random.seed(stable_seed(cfg.seed, "numpy") % (1 << 32))
        modules = [self.module() for _ in data]
        initial = modules[0].model.state_dict()
        for module in modules[1:]:
            module.model.load_state_dict(initial)
        factory = trainer or (lambda epochs, fit: self.trainer(epochs, fit))
        reset = cfg.optim.reset_state
        sites = [
            Site(dm.name, dm, module, self.client(dm.name), factory, seed=cfg.seed, reset_optimizer=reset)
            for dm, module in zip(data, modules)
        ]
        return sites, modules[0].model

    # -- runs ----------------------------------------------------------------------------------
    def reporter(
        self, writer: bool = True, log: Callable[[str], None] | None = None, tensorboard: bool = True
    ) -> Reporter:
        """The run's outputs (``writer=False``: keep the history only)."""
        cfg = self.config
        return Reporter(
            cfg.run_dir,
            name=cfg.name,
            algorithm=cfg.fl.algorithm,
            rounds=cfg.fl.rounds,
            config=cfg.to_dict(),
            sites=[s.name for s in cfg.sites],
            writer=writer,
            tensorboard=tensorboard,
            log=log or self.log,
        )

    def federation(self, server: Server, transport: Transport) -> Federation:
        """The federated rounds of ``server`` over ``transport``."""
        fl = self.config.fl
        return Federation(
            server,
            transport,
            local_epochs=fl.local_epochs,
            lr=self.config.optim.lr_at,
            client_weights=fl.client_weights,
            on_site_failure=fl.on_site_failure,
            log=self.log,
        )

    def reference(self, sites: list[Site], initial: torch.nn.Module) -> PooledReference:
        """The non-federated reference of ``fl.algorithm`` over ``sites``: one pooled model per group."""
        cfg = self.config
        cls = REFERENCES[cfg.fl.algorithm]
        groups = cls.groups([s.name for s in sites])
        by_name = {s.name: s for s in sites}
        modules, pools = {}, {}
        for group, members in groups.items():
            module = self.module()
            module.model.load_state_dict(initial.state_dict())
            modules[group] = module
            pools[group] = PooledDataModule(
                [by_name[m].data for m in members],
                seed=cfg.seed,
                name=f"{cls.name}-{group}",
                num_workers=loader_workers(cfg.trainer.num_workers),
                persistent_workers=cfg.trainer.persistent_workers,
                pin_memory=cfg.trainer.pin_memory,
            )
        return cls(
            sites,
            modules,
            pools,
            trainer=lambda epochs, fit: self.trainer(epochs, fit),
            local_epochs=cfg.fl.local_epochs,
            lr=cfg.optim.lr_at,
        )

    def headline(self, rounds: Federation | PooledReference, total_tensors: int, where: str = "") -> str:
        """The run's first line: algorithm, sites, schedule, what is shared, where outputs go."""
        cfg = self.config
        return (
            f"{cfg.fl.algorithm}{where}: {len(cfg.sites)} sites, {cfg.fl.rounds} rounds x "
            f"{cfg.fl.local_epochs} local epochs; {rounds.describe(total_tensors)}; outputs in {cfg.run_dir}"
        )

    def loop(
        self,
        rounds: Federation | PooledReference,
        total_tensors: int,
        *,
        writer: bool = True,
        barrier: Callable[[], None] = lambda: None,
        where: str = "",
        reporter: Reporter | None = None,
    ) -> RunLoop:
        """The round loop of ``rounds`` with this run's reporter and checkpoints."""
        cfg = self.config
        return RunLoop(
            rounds,
            reporter or self.reporter(writer),
            config=cfg.to_dict(),
            total=cfg.fl.rounds,
            lr=cfg.optim.lr_at,
            headline=self.headline(rounds, total_tensors, where),
            writer=writer,
            barrier=barrier,
            log=self.log,
        )
