"""The round loop, written once: every round, then the test, reported and checkpointed.

:class:`RunLoop` drives anything with four methods (``round``, ``test``, ``state_dict``,
``load_state_dict``): a :class:`~fl.federation.Federation` over any transport, or one of the
non-federated references. After every round it writes the round's rows and progress line and the
checkpoint ``checkpoints/last.ckpt``, from which :meth:`RunLoop.resume` continues exactly; after the
last round every site tests its best model and the results are written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import yaml

from fl.fingerprint import fingerprint, fingerprint_differences
from fl.reporter import Reporter
from utils.bounds import shown
from utils.checkpoint import check_structure, load_checkpoint, save_checkpoint
from utils.cli import doing
from utils.errors import UserError
from utils.interrupt import Interrupted, held, received
from utils.io import atomic_write_text
from utils.lock import lock_run, unlock_run
from utils.seeding import rng_state, set_rng_state

CHECKPOINT_FORMAT = 2
MAX_ROUNDS = 2**31 - 1  # fl.rounds' own bound (assembly.config.MAX_INT)
# What restoring a tampered or mismatched checkpoint raises, turned into one UserError line.
LOAD_ERRORS = (RuntimeError, ValueError, KeyError, TypeError, AttributeError, IndexError, OverflowError)


def check_checkpoint(
    ckpt: dict[str, Any],
    path: Path,
    config: dict[str, Any],
    template: dict[str, Any],
    history: dict[str, Any],
) -> None:
    """Check that a loaded checkpoint belongs to a run of ``config``: its config fingerprint
    (:func:`fingerprint`), then its structure, types and tensor shapes against ``template`` (the state the
    run would write now), its round count, its history of the sites in ``history`` (one value per
    completed round), its timing (optional; at most
    one entry per round: a run resumed from a checkpoint without timing has fewer) and each site's best
    round (within the completed ones); any mismatch is one :class:`UserError` line naming ``path``."""
    theirs = ckpt.get("fingerprint")
    if not isinstance(theirs, dict):
        if not isinstance(ckpt.get("config"), dict):
            raise UserError(f"checkpoint {path}: no fingerprint and no config; not one of this project's")
        theirs = fingerprint(ckpt["config"])
    if "timing" not in ckpt:  # optional: written before checkpoints kept it; those resume timing afresh
        template = {k: v for k, v in template.items() if k != "timing"}
    differing = fingerprint_differences(theirs, fingerprint(config))
    if differing:
        raise UserError(f"checkpoint {path}: belongs to another config; it differs in {'; '.join(differing)}")
    try:
        check_structure(ckpt, template)
        round_ = ckpt["round"]
        if not isinstance(round_, int) or isinstance(round_, bool) or not 0 <= round_ <= MAX_ROUNDS:
            raise ValueError(f"round: expected a count of completed rounds, found {shown(round_)}")
        if not isinstance(ckpt["history"], dict) or set(ckpt["history"]) != set(history):
            found = sorted(map(str, ckpt["history"])) if isinstance(ckpt["history"], dict) else None
            raise ValueError(f"history: sites {shown(found)} do not match the config's {sorted(history)}")
        lists = [(f"history.{site}", values) for site, values in ckpt["history"].items()]
        lists += [(f"timing.{k}", ckpt["timing"][k]) for k in ("seconds", "steps") if "timing" in ckpt]
        for where, values in lists:
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                raise ValueError(f"{where}: expected a list of numbers")
            if len(values) > round_ or (where.startswith("history") and len(values) != round_):
                raise ValueError(f"{where}: {len(values)} values for {round_} completed rounds")
        bests = ckpt.get("best")
        for site, best in bests.items() if isinstance(bests, dict) else ():
            stated = best.get("round") if isinstance(best, dict) else None
            if stated is not None and (type(stated) is not int or not 0 <= stated <= round_):
                raise ValueError(
                    f"best.{site}.round: expected a round from 0 to {round_}, found {shown(stated)}"
                )
    except ValueError as err:
        raise UserError(f"checkpoint {path}: does not fit the run ({err})") from None


class Rounds(Protocol):
    """What the loop runs: one round at a time, then the test; its state for checkpoints."""

    completed: int

    def round(self, rnd: int) -> dict[str, dict[str, Any]]: ...

    def test(self) -> dict[str, dict[str, Any]]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class RunLoop:
    """Runs ``rounds`` for ``total`` rounds with ``reporter``, checkpointing into ``run_dir``.

    Args:
        rounds: the rounds to run (a Federation or a reference runner).
        reporter: the run's outputs.
        config: the resolved config as plain data (written as ``config.yaml`` and into checkpoints).
        total: ``fl.rounds``.
        lr: learning rate of a round, for the rows.
        headline: the run's first line (algorithm, sites, schedule, what is shared).
        writer: whether this process writes (only one process of a multi-process run does).
        barrier: waits for every process (after a checkpoint is written); a no-op in one process.
    """

    def __init__(
        self,
        rounds: Rounds,
        reporter: Reporter,
        *,
        config: dict[str, Any],
        total: int,
        lr: Callable[[int], float],
        headline: str,
        writer: bool = True,
        barrier: Callable[[], None] = lambda: None,
        log: Callable[[str], None] = print,
    ):
        self.rounds, self.reporter, self.config = rounds, reporter, config
        self.total, self.lr, self.headline = total, lr, headline
        self.writer, self.barrier, self.log = writer, barrier, log
        self.run_dir = reporter.run_dir
        self.checkpoint = self.run_dir / "checkpoints" / "last.ckpt"
        self.completed = 0
        self.kept = 0  # the round of the checkpoint this run last wrote or read

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train every remaining round, test each site's best model and write every output.

        SIGINT or SIGTERM (:mod:`utils.interrupt`) abandons the round under way; the
        :class:`~utils.interrupt.Interrupted` that ends the run names the last round on disk. An error
        after the signal is the interruption's too: under DDP, the collective this process waited in
        fails once another process has abandoned its step and gone."""
        locked = lock_run(self.run_dir) if self.writer else False  # one writer per run directory
        try:
            return self._run()
        except Interrupted as err:
            err.completed, err.total, err.run_dir = self.kept, self.total, self.run_dir
            raise
        except Exception as err:
            signum = received()
            if signum is None:
                raise
            stopped = Interrupted(signum)
            stopped.completed, stopped.total, stopped.run_dir = self.kept, self.total, self.run_dir
            raise stopped from err
        finally:
            if locked:
                unlock_run(self.run_dir)

    def _run(self) -> dict[str, Any]:
        if self.writer:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / "config.yaml", yaml.safe_dump(self.config, sort_keys=False))
        self.reporter.open(self.completed)
        self.log(self.headline)
        try:
            for rnd in range(self.completed + 1, self.total + 1):
                with doing(f"training round {rnd}"):
                    summary = self.rounds.round(rnd)
                with held(), doing(f"writing the rows and checkpoint of round {rnd}"):
                    self.reporter.round(rnd, summary, self.lr(rnd))  # a round is on disk whole or not counted
                    self.completed = self.rounds.completed = rnd
                    self.save(self.checkpoint)
                    self.reporter.progress(rnd, summary)
            with doing("testing each site's best model"):
                results = self.reporter.results(self.rounds.test(), self.completed)
        finally:
            self.reporter.close()
        with doing("writing the results"):
            self.reporter.write_results(results)
        return results

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run exactly: loadable with ``weights_only=True``."""
        return {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": fingerprint(self.config),
            "round": self.completed,
            "config": self.config,
            **self.rounds.state_dict(),
            "history": self.reporter.history,
            "timing": self.reporter.timing_state(),
            "rng": rng_state(),
        }

    def save(self, path: Path) -> None:
        """Write :meth:`state_dict` atomically (this process writes) and wait for every process."""
        state = self.state_dict()  # every process takes part (a multi-process run gathers here)
        if self.writer:
            save_checkpoint(state, path)
        self.kept = int(state["round"])
        self.barrier()

    def resume(self) -> bool:
        """Continue from ``checkpoints/last.ckpt``; False if no round was completed yet."""
        if not self.checkpoint.exists():
            self.log(f"{self.run_dir}: no completed round to resume from; starting at round 1")
            return False
        self.load(self.checkpoint)
        self.log(f"resuming {self.run_dir} after round {self.completed} of {self.total}")
        return True

    def load(self, path: Path) -> None:
        """Restore a checkpoint written by :meth:`save`, after checking that it belongs to this run: its
        format, its config fingerprint (:func:`fingerprint`), and its structure, types and tensor shapes
        against the state this run would write; any mismatch is one :class:`UserError` line."""
        with doing(f"reading checkpoint {path}"):
            ckpt = load_checkpoint(path)
        stated = ckpt.get("format")
        if type(stated) is not int or stated != CHECKPOINT_FORMAT:  # a tampered file may hold a tensor here
            shown = stated if type(stated) is int else f"of type {type(stated).__name__}"
            raise UserError(
                f"checkpoint {path}: unsupported format {shown} (this version reads {CHECKPOINT_FORMAT})"
            )
        template = {k: v for k, v in self.state_dict().items() if k not in ("config", "fingerprint")}
        check_checkpoint(ckpt, path, self.config, template, self.reporter.history)
        try:
            self.rounds.load_state_dict(ckpt)
            set_rng_state(ckpt["rng"])
        except UserError:
            raise
        except LOAD_ERRORS as err:
            raise UserError(f"checkpoint {path}: does not fit the run ({str(err).splitlines()[0]})") from None
        self.reporter.history = {k: list(v) for k, v in ckpt["history"].items()}
        if "timing" in ckpt:
            self.reporter.load_timing(ckpt["timing"])
        self.completed = self.rounds.completed = self.kept = int(ckpt["round"])
