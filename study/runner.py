"""Training a study: every planned run (:mod:`study.plan`) trained, continued or reused, one at a time
or ``--jobs`` at once in worker processes, each finished run's raw file kept at once, with the tables
and figures rebuilt from the raw files so far, and the time left said after each run."""

from __future__ import annotations

import heapq
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from study.panels import embed_runs
from study.plan import (
    Plan,
    StudyOptions,
    check_report_only,
    git_ignore_rule,
    is_complete,
    is_resumable,
    make_plan,
    overrides_of,
    raw_file_matches,
    variant_of,
)
from study.records import run_record
from study.report import write_report
from study.slices import FigureSlices
from utils.io import atomic_write_text

Log = Callable[[str], None]


def run_all(options: StudyOptions, log: Log = print) -> dict[str, Any]:
    """Train (or reuse) every variant and seed, keep each run's raw results, then write the tables and
    figures from them; with ``options.report``, only rebuild that folder's. Returns the numbers of
    comparison.json."""
    if options.report:
        check_report_only(options)
        write_report(options.report, log)
        return json.loads((Path(options.report) / "comparison.json").read_text())
    plan = make_plan(options)
    _write_manifest(plan, options, log)
    study = _Study(plan, options, log)
    study.reuse()
    if options.no_train and study.todo:
        log(f"--no-train: {len(study.todo)} run(s) left untrained: {', '.join(study.todo)}")
        study.todo = []
    if options.jobs > 1 and len(study.todo) > 1:
        _train_in_parallel(study)
    else:
        _train_in_turn(study)
    embed_runs(plan.results, plan.planned, plan.manifest.rows, log)
    write_report(plan.results, log)  # and printed
    return json.loads((plan.results / "comparison.json").read_text())


def _write_manifest(plan: Plan, options: StudyOptions, log: Log) -> None:
    """``manifest.json`` into the results folder, with a warning where git would not keep the raw files."""
    results, manifest = plan.results, plan.manifest
    (results / "runs").mkdir(parents=True, exist_ok=True)
    atomic_write_text(results / "manifest.json", json.dumps(manifest.model_dump(), indent=1) + "\n")
    if options.results and (rule := git_ignore_rule(results / "runs" / "run.json")):
        kept = results / "runs"
        log(f"warning: git ignores the raw results in {kept} ({rule}); they will not be committed")
    log(
        f"comparison {plan.root}: {len(manifest.rows)} table rows x {len(plan.seeds)} seed(s), "
        f"{len(plan.planned)} distinct runs of {manifest.rounds} rounds x {manifest.local_epochs} local "
        f"epochs on {len(manifest.sites)} sites; raw results in {results}"
    )


class _Study:
    """A study in progress: which runs are left, what each finished run adds, how long the rest takes."""

    def __init__(self, plan: Plan, options: StudyOptions, log: Log):
        self.plan, self.options, self.log = plan, options, log
        self.number = {key: i for i, key in enumerate(plan.planned, 1)}
        self.slices = FigureSlices(plan.results, plan.manifest.rows)
        self.start, self.timed_seconds, self.timed_rounds = time.perf_counter(), 0.0, 0
        self.done: set[str] = set()
        # A run whose folder is gone (a fresh clone of a committed study) is not retrained when its raw
        # file in --results is still there and was made by this run's seed, algorithm, overrides and
        # schedule.
        self.recorded: set[str] = set()
        self.todo: list[str] = []
        for key, (config, run_dir) in plan.planned.items():
            if options.force:
                self.todo.append(key)
            elif not is_complete(run_dir, config_dict := config.to_dict()):
                raw = self.raw_file(key)
                overrides = overrides_of(key, plan.manifest.rows)
                if not is_resumable(run_dir, config_dict) and raw_file_matches(raw, config, overrides):
                    self.recorded.add(key)
                else:
                    self.todo.append(key)
        self.todo.sort(key=self._order)

    def _order(self, key: str) -> tuple[int, int]:
        """--first variants with all their seeds, then seed by seed: every other variant's first seed
        finishes before any second one starts."""
        first, seeds, seed = self.plan.first, self.plan.seeds, self.plan.planned[key][0].seed
        variant = variant_of(key)
        rank = first.index(variant) if variant in first else len(first)
        return rank, seeds.index(seed) if seed in seeds else 0

    def tag(self, key: str) -> str:
        """``[i/n] run``: the run and its place among the study's runs."""
        return f"[{self.number[key]}/{len(self.plan.planned)}] {key}"

    def raw_file(self, key: str) -> Path:
        return self.plan.results / "runs" / f"{key}.json"

    def reuse(self) -> None:
        """Keep the raw files of the runs already complete (their folders' or the committed ones)."""
        for key, (_, run_dir) in self.plan.planned.items():
            if key in self.recorded:
                self.log(f"{self.tag(key)}: kept from {self.raw_file(key)} (no run folder)")
            elif key not in self.todo:
                self.keep(key)
                self.log(f"{self.tag(key)}: complete in {run_dir}, reused")

    def keep(self, key: str) -> dict[str, Any]:
        """The run's raw file and, for a method of the reconstruction figures, its slices; returns the
        raw record."""
        config, run_dir = self.plan.planned[key]
        overrides = overrides_of(key, self.plan.manifest.rows)
        record = run_record(run_dir, config.seed, config.fl.algorithm, overrides)
        atomic_write_text(self.raw_file(key), json.dumps(record, indent=1) + "\n")
        self.slices.record(key, config, run_dir)
        return record

    def outputs(self, key: str) -> None:
        """Everything a finished run adds, written at once so that an interrupted study keeps it: the
        latent file of a t-SNE panel's run, and the tables and figures (the reconstruction figures once a
        seed's methods all have their slices)."""
        results, log = self.plan.results, self.log
        embed_runs(results, self.plan.planned, self.plan.manifest.rows, log, only=key)
        write_report(results, lambda line: log(line) if line.startswith("wrote ") else None)

    def finished(self, key: str, took: float) -> None:
        """Keep a run that has just finished, say how long the rest takes, and write the outputs."""
        timing = self.keep(key).get("timing") or {}
        self.done.add(key)
        # Time left from the seconds per round measured so far (a resumed run counts only the rounds
        # it trained here) and the rounds each unfinished run still has, in flight or queued.
        if timing.get("rounds_timed"):
            self.timed_seconds += timing["seconds_per_round"] * timing["rounds_timed"]
            self.timed_rounds += timing["rounds_timed"]
        planned = self.plan.planned
        left = [k for k in self.todo if k not in self.done]
        rounds_left = [planned[k][0].fl.rounds - rounds_done(planned[k][1]) for k in left]
        eta = ""
        if left and self.timed_rounds:
            seconds = time_left(rounds_left, self.timed_seconds / self.timed_rounds, self.options.jobs)
            eta = f", about {minutes(seconds)} left ({len(left)} run(s), {sum(rounds_left)} rounds)"
        so_far = minutes(time.perf_counter() - self.start)
        self.log(f"{self.tag(key)}: done in {minutes(took)}; {so_far} so far{eta}")
        self.outputs(key)


# -- time ------------------------------------------------------------------------------------------------
def rounds_done(run_dir: Path) -> int:
    """The last round with a validation row in ``run_dir/metrics.csv`` (0 when there is none)."""
    from utils.errors import UserError
    from utils.run_log import read_metrics

    try:
        rows = read_metrics(run_dir / "metrics.csv")
    except (OSError, UserError):
        return 0
    return max((int(row["round"]) for row in rows if row["split"] == "val" and row["round"]), default=0)


def time_left(rounds_left: list[int], seconds_per_round: float, jobs: int) -> float:
    """Wall seconds until runs with ``rounds_left`` rounds each are done, trained in this order ``jobs``
    at a time (each run taking the first free slot), at ``seconds_per_round`` for one round of one run."""
    slots = [0.0] * max(jobs, 1)
    for rounds in rounds_left:
        heapq.heappush(slots, heapq.heappop(slots) + rounds * seconds_per_round)
    return max(slots)


def minutes(seconds: float) -> str:
    """``1h05m`` or ``4m07s``."""
    seconds = int(round(seconds))
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )


# -- training --------------------------------------------------------------------------------------------
def _what(config: Any) -> str:
    return f"{config.fl.algorithm}, {config.fl.rounds} rounds"


def _train(config: Any, run_dir: Path, force: bool, log: Log) -> float:
    """Train one variant into ``run_dir``: continue it if it was cut short, else start it afresh."""
    from assembly.build import Builder
    from assembly.setup import in_process

    run_start = time.perf_counter()
    run = in_process(Builder(config, log=log))
    if not force and is_resumable(run_dir, config.to_dict()):
        run.resume()  # an interrupted study continues this run after its last completed round
    elif run_dir.exists():
        # Outputs of another config (or of a forced retrain) must not outlive this run's start:
        # an interruption would otherwise leave this config beside another run's results.json.
        log(f"replacing the earlier run in {run_dir}")
        shutil.rmtree(run_dir)
    run.run()
    return time.perf_counter() - run_start


def _train_in_turn(study: _Study) -> None:
    """The runs left, one after the other in this process, their log lines indented."""

    def log(line: str) -> None:
        study.log("    " + line.replace("\n", "\n    "))

    for key in study.todo:
        config, run_dir = study.plan.planned[key]
        study.log(f"{study.tag(key)}: training ({_what(config)}) -> {run_dir}")
        study.finished(key, _train(config, run_dir, study.options.force, log))


def _train_worker(key: str, config_dict: dict[str, Any], run_dir: str, force: bool, threads: int) -> float:
    """One variant in a worker process; its log lines go to this process's stdout, prefixed."""
    import torch

    from assembly.config import validate_config

    _exit_with_parent()
    torch.set_num_threads(threads)

    def log(line: str) -> None:
        print("\n".join(f"    {key} | {part}" for part in line.split("\n")), flush=True)

    return _train(validate_config(config_dict), Path(run_dir), force, log)


def _exit_with_parent(poll_seconds: float = 2.0) -> None:
    """End this worker process when the study that started it is gone (killed, not interrupted from
    the terminal, which stops the whole process group): an orphan would go on training, and the next
    study would meet its run locks. Its run resumes after its last completed round."""
    import os
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(3)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _train_in_parallel(study: _Study) -> None:
    """``--jobs`` worker processes (spawned: no state shared with this one) train the runs left."""
    import multiprocessing
    import os
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    todo, planned, force = study.todo, study.plan.planned, study.options.force
    jobs = min(study.options.jobs, len(todo))
    threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or max(1, (os.cpu_count() or 1) // jobs)
    study.log(f"training {len(todo)} runs, {jobs} at a time, {threads} torch thread(s) each")
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    try:
        running = {}
        for key in todo:
            config, run_dir = planned[key]
            study.log(f"{study.tag(key)}: queued ({_what(config)}) -> {run_dir}")
            future = pool.submit(_train_worker, key, config.to_dict(), str(run_dir), force, threads)
            running[future] = key
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                study.finished(running.pop(future), future.result())  # a failed run raises here
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
