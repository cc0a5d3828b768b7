"""Where the wall time of ``python train.py`` goes: the default config, two rounds, every part measured.

    python bench/profile_run.py                    # configs/default.yaml, 2 rounds, the config's data cache
    python bench/profile_run.py --cold             # an empty data cache: the sites are generated first
    python bench/profile_run.py fl.rounds=10 trainer.precision=32-true

The run is the one ``train.py`` makes (``in_process`` of assembly.setup), with timers wrapped around its
parts. Time is charged exclusively: a part's time excludes that of the parts nested in it (a local fit's
data loading is "data", not "Lightning"), so the parts add up to the wall time from the first import to
the last output. The parts:

- startup: importing torch, Lightning and the project, reading the config;
- site data: preparing the sites (generating or reading the cache, indexing, the first sample of each split);
- data: producing samples (read, mask, undersample, normalise) and collating batches, in every loop;
- training steps: forward, loss, backward and optimiser step of every local step (less the term's forward);
- term: the algorithm's penalty (FedMRI's contrastive term, forward only; its backward is in the steps)
  and step hooks;
- Lightning: everything else inside a local fit or an evaluation: building the Trainer, its per-fit
  setup and teardown, hooks, loading and copying the shared tensors;
- validation / test: the forward passes of the evaluation steps and the volume metrics;
- aggregation: the server's payloads and aggregation;
- logging: metrics.csv rows, TensorBoard scalars and the progress lines;
- checkpoints: ``checkpoints/last.ckpt`` after each round and each site's best model;
- figures: the reconstruction figures and the validation curve;
- other: the rest (the round loop itself, results.json/md, config.yaml).
"""

from __future__ import annotations

import time

START = time.perf_counter()

import argparse  # noqa: E402
import functools  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PARTS = (
    "startup",
    "site data",
    "data",
    "training steps",
    "term",
    "Lightning",
    "validation",
    "test",
    "aggregation",
    "logging",
    "checkpoints",
    "figures",
    "other",
)


class ExclusiveClock:
    """Charges wall time to one part at a time; entering a nested part pauses the enclosing one."""

    def __init__(self, start: float, first: str = "startup"):
        self.seconds = {part: 0.0 for part in PARTS}
        self.current, self.mark, self.stack = first, start, []

    def switch(self, part: str) -> None:
        """From now on, time goes to ``part`` (the previous part keeps what it had)."""
        now = time.perf_counter()
        self.seconds[self.current] += now - self.mark
        self.current, self.mark = part, now

    def enter(self, part: str) -> None:
        """Start a nested part."""
        self.stack.append(self.current)
        self.switch(part)

    def leave(self) -> None:
        """End the innermost part; its enclosing part runs on."""
        self.switch(self.stack.pop())

    def wrap(self, part, fn):
        """``fn`` with its time charged to ``part`` (a name, or a function of the call's arguments)."""

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self.enter(part(*args, **kwargs) if callable(part) else part)
            try:
                return fn(*args, **kwargs)
            finally:
                self.leave()

        return timed

    def patch(self, owner, name: str, part) -> None:
        """Replace ``owner.name`` with its timed version."""
        setattr(owner, name, self.wrap(part, getattr(owner, name)))


def instrument(clock: ExclusiveClock) -> None:
    """Wrap the parts of a run (classes and module functions) with ``clock``'s timers."""
    import torch.utils.data._utils.collate as collate

    import fl.reporter as reporter_module
    from data.site import SliceDataset
    from fl.loop import RunLoop
    from fl.reporter import Reporter
    from fl.site import Site
    from models.recon_module import ReconModule, VolumeCollector
    from utils import checkpoint

    clock.patch(SliceDataset, "__getitem__", "data")
    clock.patch(collate, "default_collate", "data")  # DataLoader reads it when it is built
    clock.patch(ReconModule, "optimizer_step", "training steps")
    clock.patch(ReconModule, "validation_step", "validation")
    clock.patch(ReconModule, "test_step", "test")
    evaluating = ["validation"]  # the split being evaluated: where its volume metrics are charged

    def evaluation_part(site, split: str = "val") -> str:
        evaluating[0] = "validation" if split == "val" else "test"
        return "Lightning"

    clock.patch(VolumeCollector, "scores", lambda collector: evaluating[0])
    clock.patch(Site, "evaluate", evaluation_part)
    plan = Site.fit

    def fit_with_timed_term(site, rnd, payload, epochs, lr):
        original = site.client.plan

        def timed_plan(*args, **kwargs):
            local = original(*args, **kwargs)
            if local.penalty is not None:
                local.penalty = clock.wrap("term", local.penalty)
            if local.after_backward is not None:
                local.after_backward = clock.wrap("term", local.after_backward)
            return local

        site.client.plan = timed_plan
        try:
            return plan(site, rnd, payload, epochs, lr)
        finally:
            del site.client.plan

    Site.fit = clock.wrap("Lightning", fit_with_timed_term)
    clock.patch(Reporter, "round", "logging")
    clock.patch(Reporter, "progress", "logging")
    clock.patch(RunLoop, "save", "checkpoints")
    clock.patch(checkpoint, "save_checkpoint", "checkpoints")
    for name in ("metric_curves", "reconstruction_row"):
        clock.patch(reporter_module, name, "figures")
    if hasattr(reporter_module, "save_checkpoint"):
        clock.patch(reporter_module, "save_checkpoint", "checkpoints")


def table(clock: ExclusiveClock, rounds: int, total: float) -> str:
    """The markdown table of the parts: seconds, share of the wall time, seconds per round."""
    lines = ["| part | s | share | s per round |", "|---|---:|---:|---:|"]
    for part in PARTS:
        seconds = clock.seconds[part]
        lines.append(f"| {part} | {seconds:.1f} | {100 * seconds / total:.1f}% | {seconds / rounds:.2f} |")
    lines.append(f"| **total** | {total:.1f} | 100.0% | {total / rounds:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the profile and print its table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("overrides", nargs="*", metavar="key.path=value")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cold", action="store_true", help="an empty data cache (the sites are generated)")
    args = parser.parse_args(argv)

    clock = ExclusiveClock(START)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="profile_run_") as tmp:
        from assembly.build import Builder
        from assembly.config import load_config
        from assembly.setup import in_process
        from bench.timing import load, machine

        overrides = [f"fl.rounds={args.rounds}", f"output_dir={tmp}/runs", "name=profile", *args.overrides]
        if args.cold:
            overrides.append(f"data.cache_dir={tmp}/cache")
        config = load_config(args.config, overrides)
        instrument(clock)
        clock.switch("site data")
        run = in_process(Builder(config, log=lambda line: None))
        server = getattr(run.rounds, "server", None)  # None for the non-federated references
        if server is not None:
            for name in ("payload", "aggregate"):
                clock.patch(server, name, "aggregation")
        clock.switch("other")
        run.run()
        clock.switch("other")
        total = time.perf_counter() - START
    rounds = config.fl.rounds
    cache = "cold (generated)" if args.cold else f"{config.data.cache_dir}"
    print(
        f"profile of {Path(args.config).name}, {rounds} rounds, precision {config.trainer.precision}, "
        f"data cache {cache}"
    )
    print(
        f"{machine()}; load average before {' '.join(f'{x:.2f}' for x in load_before)}, after {load()[13:]}"
    )
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(table(clock, rounds, total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
