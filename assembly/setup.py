"""The run set-up of every training command, written once: which config runs, whether its run folder
may be written, the folder's write lock, and the transport the rounds travel over.

``train.py`` (one process), ``train_multi_gpu.py`` (DDP) and the Flower ServerApp differ only in how
their users ask to continue or replace a run (``--resume RUN_DIR`` and ``--overwrite`` on the command
line, ``resume=true`` and ``overwrite=true`` in Flower's run config: :class:`~assembly.run_folder.Asking`)
and in the transport. A run goes through the same steps under each; this module holds the transports and
the commands, :mod:`assembly.run_folder` the run folder's steps (1, 2 and 4):

1. the request is checked against the run folder: a new run must not replace one unasked, a resumed
   one must keep its config (:func:`~assembly.run_folder.resolve_config` for the command lines,
   :func:`~assembly.run_folder.check_request` for a config given whole);
2. the output folders are checked writable, before any data is read
   (:func:`~assembly.run_folder.check_folders`);
3. the transport is checked against the algorithm's own refusals (:func:`check_transport`) and the
   rounds are assembled over it (:func:`in_process`, :func:`distributed`, :func:`flower`);
4. the folder is taken (:func:`~assembly.run_folder.claimed`): its lock, the request checked again under
   it (another process may have started the same run meanwhile), then the run resumed or the old one
   removed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from assembly.build import Builder, check_accelerator, is_federated, quiet_lightning
from assembly.config import Config
from assembly.run_folder import RunRequest, check_folders, check_request, claimed, resolve_config
from fl.algorithms import ALGORITHMS
from fl.loop import RunLoop
from fl.transport import InProcess
from utils.bounds import MAX_RANKS, env_int
from utils.cli import doing
from utils.errors import UserError
from utils.hardware import on_cpu
from utils.interrupt import Interrupted

# The transports, as an algorithm's :meth:`~fl.algorithms.base.Server.refusal` names them.
IN_PROCESS, DDP_SITES, DDP_DATA, FLOWER = "in_process", "ddp_sites", "ddp_data", "flower"

# Why a non-federated reference (one pooled model, no server half) cannot run over a transport.
NOT_FEDERATED = {
    DDP_SITES: "fl.algorithm: {algorithm} is not federated; train it with train.py",
    DDP_DATA: "fl.algorithm: {algorithm} is not federated; train it with train.py",
    FLOWER: "fl.algorithm: {algorithm} cannot run with every site in its own process: it is not "
    "federated: one model trains on pooled training data",
}


# -- 3. the transport --------------------------------------------------------------------------------
def check_transport(config: Config, transport: str) -> None:
    """Refuse, in one line, a transport the configured algorithm cannot run over: the algorithm's own
    refusal (:meth:`~fl.algorithms.base.Server.refusal`), or a reference's, which has no server half."""
    algorithm = config.fl.algorithm
    if not is_federated(algorithm):
        if transport in NOT_FEDERATED:
            raise UserError(NOT_FEDERATED[transport].format(algorithm=algorithm))
        return
    reason = ALGORITHMS[algorithm].refusal(transport, config.fl.options())
    if reason:
        raise UserError(reason)


def in_process(builder: Builder) -> RunLoop:
    """The run of ``train.py``: every site's data prepared, the federation (or the reference) over sites
    in this process, ready to :meth:`~fl.loop.RunLoop.resume` or run."""
    config = builder.config
    if config.trainer.devices != 1:
        raise UserError(
            f"trainer.devices: {config.trainer.devices} devices would run DDP inside every "
            "local fit and change the results; train.py trains on one device (trainer.devices=1); "
            f"use train_multi_gpu.py --devices {config.trainer.devices}"
        )
    check_transport(config, IN_PROCESS)
    quiet_lightning()
    builder.log(builder.precision_line())
    sites, initial = builder.sites(builder.prepare_data())
    total = len(initial.state_dict())
    if is_federated(config.fl.algorithm):
        rounds = builder.federation(builder.server(initial), InProcess(sites))
    else:
        rounds = builder.reference(sites, initial)
    return builder.loop(rounds, total)


# -- the commands ------------------------------------------------------------------------------------
@contextmanager
def continuing(request: RunRequest) -> Iterator[None]:
    """An interruption before a resumed run got under way still names its folder (to continue it)."""
    try:
        yield
    except Interrupted as err:
        if err.run_dir is None and request.resume:
            err.run_dir = Path(request.resume)
        raise


def train_in_process(request: RunRequest) -> dict[str, Any]:
    """train.py: run (or resume) the federation of ``request`` in this process; the results."""
    with continuing(request):
        return _train_in_process(request)


def _train_in_process(request: RunRequest) -> dict[str, Any]:
    with doing("reading the config"):
        config = resolve_config(request)
        check_folders(config)
    with doing("preparing every site's data"):
        run = in_process(Builder(config))  # validates every site's data before anything is written or removed
    with claimed(
        run, config, resume=bool(request.resume), overwrite=request.overwrite,
        recheck=lambda: resolve_config(request),
    ):  # fmt: skip
        return run.run()


def launched_world_size() -> int | None:
    """Processes started by an external launcher such as torchrun (None when this process launches).
    Its variables (``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``) must be whole numbers
    that agree (each rank below its world's size); one line naming the variable otherwise."""
    if "TORCHELASTIC_RUN_ID" not in os.environ and "RANK" not in os.environ:
        return None
    world = env_int("WORLD_SIZE", 1, 1, MAX_RANKS)
    local = env_int("LOCAL_WORLD_SIZE", world, 1, world)
    env_int("RANK", 0, 0, world - 1)
    env_int("LOCAL_RANK", 0, 0, local - 1)
    return local


CPU_PROCESSES_PER_CORE = 4  # on the CPU each process trains whole sites; more would only queue


def max_processes(accelerator: str) -> tuple[int, str]:
    """How many processes this machine can run a multi-process run with, and why: the GPUs present, or
    on the CPU :data:`CPU_PROCESSES_PER_CORE` per usable core."""
    import torch

    if not on_cpu(accelerator) and torch.cuda.is_available():
        count = torch.cuda.device_count()
        return count, f"this machine has {count} GPU(s)"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    why = f"{CPU_PROCESSES_PER_CORE} processes per CPU core, {cores} core(s)"
    return CPU_PROCESSES_PER_CORE * cores, why


def world_size(config: Config, devices: int | None) -> int:
    """The processes of a multi-process run: ``--devices``, torchrun's, or ``trainer.devices``; at most
    what :func:`max_processes` allows when this process launches them."""
    external = launched_world_size()
    if devices is not None and devices < 2:
        raise UserError(f"--devices: a multi-process run needs at least 2 (got {devices}); use train.py")
    if external is not None and devices and devices != external:
        raise UserError(f"--devices {devices} differs from the {external} processes torchrun started")
    given = "--devices" if devices else "trainer.devices"
    devices = devices or external or config.trainer.devices
    if devices < 2:
        raise UserError(f"--devices: a multi-process run needs at least 2 (got {devices}); use train.py")
    if external is None:
        limit, why = max_processes(config.trainer.accelerator)
        if devices > limit:
            raise UserError(f"{given}: {devices} processes is more than this machine runs ({why}); "
                            f"use at most {limit}")  # fmt: skip
    return devices


def distributed(request: RunRequest, devices: int | None = None) -> None:
    """train_multi_gpu.py: start (or join) the process group and run the federation of ``request`` on
    every rank, as ``fl.parallel`` lays it out; only rank 0 prints and writes."""
    import torch.distributed as dist
    from lightning.fabric import Fabric

    from fl.distributed import signals_to_children

    config = resolve_config(request, check_existing=False)  # the same on every rank: no side effects
    devices = world_size(config, devices)
    check_transport(config, DDP_DATA if config.fl.parallel == "data" else DDP_SITES)
    check_accelerator(config.trainer.accelerator)  # as train.py: no GPU asked for that is not here
    accelerator = "gpu" if config.trainer.accelerator in ("gpu", "cuda") else config.trainer.accelerator
    quiet_lightning()
    fabric = Fabric(accelerator=accelerator, devices=devices, strategy="ddp")
    fabric.launch()
    with signals_to_children(fabric.strategy.launcher), continuing(request):
        _distributed(request, config, dist.get_rank() == 0)


def _distributed(request: RunRequest, config: Config, first: bool) -> None:
    import torch.distributed as dist

    from fl.distributed import Distributed, agree

    def check_new() -> None:
        resolve_config(request)  # refuses to replace a run
        check_folders(config)

    agree(check_new if first else (lambda: None))
    builder = Builder(config, log=print if first else (lambda _: None))
    # Rank 0 prepares (and caches) the data first, then the others; a data error stops every rank.
    data = agree(builder.prepare_data if first else (lambda: None))
    data = agree((lambda: None) if first else builder.prepare_data) or data
    sites, initial = builder.sites(data)
    transport = Distributed(
        sites,
        mode=config.fl.parallel,
        assignment=config.fl.site_assignment,
        trainer=builder.trainer,
        accelerator=config.trainer.accelerator,
        step_progress=config.trainer.step_progress,
        log=builder.log,
    )
    federation = builder.federation(builder.server(initial), transport)
    run = builder.loop(
        federation, len(initial.state_dict()), writer=transport.writer, barrier=transport.barrier
    )
    with claimed(
        run, config, resume=bool(request.resume), overwrite=request.overwrite,
        recheck=lambda: resolve_config(request), writer=first, agree=agree,
    ):  # fmt: skip
        dist.barrier()
        run.run()
        dist.barrier()


def flower(
    grid: Any,
    config: Config,
    *,
    resume: bool = False,
    overwrite: bool = False,
    poll_interval: float = 0.2,
    node_wait: float = 600.0,
    reply_wait: float = 86400.0,
    log: Callable[[str], None] = print,
    directory: Any = None,
) -> dict[str, Any]:
    """The Flower ServerApp: run the federation of ``config`` over ``grid`` (each site in its own
    process, reached by messages) and write the server's outputs; the results."""
    from fl.flower.nodes import SiteDirectory, describe
    from fl.flower.transport import FlowerTransport, TrafficCSV

    check_transport(config, FLOWER)
    quiet_lightning()
    builder = Builder(config, log=log)
    check_request(config, resume=resume, overwrite=overwrite)
    check_folders(config)

    def site_config(site: str) -> dict[str, Any]:
        data = config.to_dict()
        data["sites"] = [s for s in data["sites"] if s["name"] == site]
        data["paths"] = {}
        return data

    initial = builder.initial_model()
    transport = FlowerTransport(
        grid,
        [s.name for s in config.sites],
        site_config=site_config,
        name=config.name,
        directory=directory or SiteDirectory(grid, poll_interval, node_wait, log),
        poll_interval=poll_interval,
        reply_wait=reply_wait,
        overwrite=overwrite or resume,
        log=log,
    )
    run = builder.loop(builder.federation(builder.server(initial), transport), len(initial.state_dict()),
                       where=" on Flower")  # fmt: skip
    recheck = lambda: check_request(config, resume=resume, overwrite=overwrite)  # noqa: E731
    with claimed(run, config, resume=resume, overwrite=overwrite, recheck=recheck):
        transport.fresh = run.completed == 0
        config.run_dir.mkdir(parents=True, exist_ok=True)
        transport.traffic_log = TrafficCSV(config.run_dir / "traffic.csv", keep_rounds=run.completed)
        start = time.perf_counter()
        nodes = transport.connect()
        log(f"sites on Flower: {describe(nodes)}, named in {time.perf_counter() - start:.0f} s")
        return run.run()
