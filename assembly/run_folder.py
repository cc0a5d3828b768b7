"""The run folder of every training command: whether a run may be written there, and holding it while
the run goes on. :mod:`assembly.setup` assembles the run itself and calls these in turn.

A command's users ask to continue or to replace a run in their own words (:class:`Asking`). The request
is checked against the run folder: a new run must not replace one unasked, a resumed one must keep its
config (:func:`resolve_config` for the command lines, :func:`check_request` for a config given whole).
The folders are checked writable, the run's own folders and files too, before any data is read
(:func:`check_folders`). Then the folder is taken (:func:`claimed`): its lock, the request checked again
under it (another process may have started the same run meanwhile), then the run resumed or the old one
removed.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assembly.config import Config, config_differences, load_config, validate_config
from fl.loop import RunLoop
from utils.checkpoint import load_checkpoint
from utils.cli import report_to
from utils.errors import UserError
from utils.io import file_kind, os_reason, remove_stale_temps
from utils.lock import lock_run, unlock_run
from utils.paths import check_writable_dir

PLACEMENT = ("name", "output_dir")  # a run directory's place: fixed by --resume's path


@dataclass(frozen=True)
class Asking:
    """How a command's users ask to continue or to replace a run, as its messages tell them
    (``{run_dir}`` stands for the run's folder)."""

    resume: str
    overwrite: str


COMMAND_LINE = Asking("--resume {run_dir}", "--overwrite")
RUN_CONFIG = Asking("resume=true", "overwrite=true")


@dataclass(frozen=True)
class RunRequest:
    """What a training command was asked: a config (``config``, or ``default_config``) with dotted
    overrides for a new run, or the run folder to continue (``resume``); whether to replace an existing
    run of the same name, and whether to resume with a config that differs from the run's (``force``)."""

    config: str | None = None
    overrides: tuple[str, ...] = ()
    resume: str | None = None
    overwrite: bool = False
    force: bool = False
    default_config: str = "configs/default.yaml"

    @classmethod
    def from_args(cls, args: Any, default_config: str) -> RunRequest:
        """The request of train.py's arguments (``--config``, overrides, ``--resume``, ``--overwrite``,
        ``--force``)."""
        return cls(
            args.config, tuple(args.overrides), args.resume, args.overwrite, args.force, default_config
        )


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run, finished or not (what a new run must not replace unasked)."""
    return (run_dir / "metrics.csv").exists() or (run_dir / "checkpoints").exists()


def refuse_replacing(run_dir: Path, overwrite: bool, asking: Asking) -> None:
    """Refuse a new run in a folder that holds one, unless it is to be replaced."""
    if holds_run(run_dir) and not overwrite:
        raise UserError(
            f"{run_dir} already holds a run: continue it with {asking.resume.format(run_dir=run_dir)}, "
            f"replace it with {asking.overwrite}, or choose another name=..."
        )


# -- the request -------------------------------------------------------------------------------------
def resolve_config(request: RunRequest, check_existing: bool = True) -> Config:
    """The config a command line asks to run: a new one, or with ``resume`` the run's own (checked
    against any changes). With ``check_existing``, a new run whose folder already holds one is refused
    (unless ``overwrite``)."""
    if not request.resume:
        config = load_config(request.config or request.default_config, request.overrides)
        if check_existing:
            refuse_replacing(config.run_dir, request.overwrite, COMMAND_LINE)
        return config
    if request.overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    run_dir = Path(request.resume)
    placed = [o.partition("=")[0].strip() for o in request.overrides]
    placed = [key for key in placed if key in PLACEMENT]
    if placed:
        raise UserError(
            f"--resume {run_dir}: {', '.join(placed)} come from the run directory; "
            "to train elsewhere, copy the run directory there and resume the copy"
        )
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        raise UserError(f"--resume {run_dir}: no config.yaml there, so it is not a run directory")
    placement = [f"output_dir={run_dir.parent}", f"name={run_dir.name}"]
    saved = load_config(saved_path, placement)
    if not request.config and not request.overrides:
        return saved
    wanted = load_config(request.config or saved_path, [*request.overrides, *placement])
    differences = config_differences(saved, wanted)
    if differences and not request.force:
        raise UserError(
            f"--resume {run_dir}: the config differs from the run's in {'; '.join(differences)}; "
            "pass --force to resume with the new values"
        )
    return wanted


def check_request(config: Config, *, resume: bool, overwrite: bool, asking: Asking = RUN_CONFIG) -> None:
    """Check a config given whole against its run folder: resumed, the run's checkpoint must hold the
    same config; new, the folder must not hold a run (unless ``overwrite``)."""
    checkpoint = config.run_dir / "checkpoints" / "last.ckpt"
    if resume and checkpoint.exists():
        differences = config_differences(validate_config(load_checkpoint(checkpoint)["config"]), config)
        if differences:
            raise UserError(
                f"resume {checkpoint}: the config differs from the run's in {'; '.join(differences)}"
            )
    elif not resume:
        refuse_replacing(config.run_dir, overwrite, asking)


# -- the folders -------------------------------------------------------------------------------------
RUN_FOLDERS = ("checkpoints", "tb", "figures", "evaluation")  # what a run writes below its folder
RUN_FILES = ("config.yaml", "metrics.csv", "results.json", "results.md", "timing.json", "traffic.csv")


def check_folders(config: Config) -> None:
    """The run's folders can be written: before the data is prepared, and writing nothing. The run's own
    folders and files too: a file where a folder goes (``tb``, ``figures``) or a folder, FIFO or device
    where a file goes (``metrics.csv``) would otherwise end the run at its first write, or hang it."""
    for folder in (config.run_dir.parent, config.run_dir, *(config.run_dir / f for f in RUN_FOLDERS)):
        check_writable_dir(folder, "output_dir")
    for name in RUN_FILES:
        path = config.run_dir / name
        try:
            kind = os.stat(path).st_mode
        except FileNotFoundError:
            continue
        except OSError as err:
            raise UserError(f"output_dir: {path}: cannot be read ({os_reason(err)})") from None
        if not stat.S_ISREG(kind):
            raise UserError(f"output_dir: {path} is {file_kind(kind)}; expected a regular file or nothing")


# -- the folder, taken -------------------------------------------------------------------------------
@contextmanager
def claimed(
    run: RunLoop,
    config: Config,
    *,
    resume: bool,
    overwrite: bool,
    recheck: Callable[[], Any],
    writer: bool = True,
    agree: Callable[[Callable[[], Any]], Any] = lambda job: job(),
) -> Iterator[None]:
    """Hold the run folder while the block runs: its write lock (a second writer is refused, naming the
    PID), ``recheck`` of the request under it, then the old run removed (``overwrite``) or the run
    continued after its last completed round (``resume``). Only the ``writer`` locks and removes;
    ``agree`` runs that part so that every process of a multi-process run sees its errors."""
    run_dir = config.run_dir

    def take() -> bool:
        if not writer:
            return False
        locked = lock_run(run_dir)
        try:
            recheck()
            if overwrite and not resume and run_dir.exists():
                shutil.rmtree(run_dir)
            remove_stale_temps(run_dir)  # of writes a kill cut short; the lock keeps other writers out
            report_to(run_dir)  # an internal error's traceback goes to the run's folder
        except BaseException:
            if locked:
                unlock_run(run_dir)
            raise
        return locked

    locked = agree(take)
    try:
        if resume:
            run.resume()
        yield
    finally:
        if locked:
            unlock_run(run_dir)
