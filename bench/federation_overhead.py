"""Throughput of a FedMRI round through the Federation against a bare PyTorch loop on the same data.

    python bench/federation_overhead.py                          # configs/default.yaml, 2 repetitions
    python bench/federation_overhead.py --reps 3 --threads 1 fl.local_epochs=2

The federation is the in-process run ``train.py`` builds (``in_process(Builder(config))``); its round is the
training part of ``Federation.round`` (the server's pre-round requests and payloads, every site's
local fit through ``transport.fit`` with a Lightning Trainer and the contrastive term, the server's
aggregation and every site loading the new global encoder; validation excluded). The bare loop runs
the same forward / backward / RMSprop steps over the same loaders (same batches, same masks), with
no Lightning, no regulariser and no aggregation. Round 1 runs first, untimed (a whole
``Federation.round``: it warms up and gives the server the previous encoders, so the timed rounds
have the contrastive term); then federation rounds and bare rounds alternate. Prints the throughput
ratio (target >= 0.9) and where the federation's extra time goes.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assembly.build import Builder  # noqa: E402
from assembly.config import Config, load_config  # noqa: E402
from assembly.setup import in_process  # noqa: E402
from bench.timing import Stopwatch, interleaved, load, machine, median  # noqa: E402
from fl.algorithms.fedmri import term as losses  # noqa: E402
from fl.federation import Federation  # noqa: E402

REGULARISER = Stopwatch()  # time inside the contrastive term's forward and backward, all federations


def build(config: Config) -> Federation:
    """The in-process federation of ``train.py`` for ``config`` (data prepared, sites built)."""
    rounds = in_process(Builder(config, log=lambda _: None)).rounds
    if not isinstance(rounds, Federation):
        raise SystemExit(f"fl.algorithm={config.fl.algorithm} is not federated")
    return rounds


def instrument(fed: Federation) -> tuple[Stopwatch, Stopwatch]:
    """Stopwatches around the contrastive term (value and gradient) and the server's aggregation."""
    function = losses._ContrastiveL1
    if not hasattr(function, "_timed"):
        function._timed = True
        function.forward = staticmethod(REGULARISER.wrap(function.forward))
        function.backward = staticmethod(REGULARISER.wrap(function.backward))
    aggregation = Stopwatch()
    fed.server.aggregate = aggregation.wrap(fed.server.aggregate)
    return REGULARISER, aggregation


def federation_round(fed: Federation, rnd: int) -> int:
    """The training half of :meth:`Federation.round` (validation excluded): the pre-round exchange,
    the local fits, the aggregation and the round's traffic, then every site loading the new global
    tensors (which validation would do first). Returns the number of optimiser steps."""
    trained = fed.train(rnd)
    failed = {site: r.status for site, r in trained.results.items() if r.status != "ok"}
    if failed:
        raise SystemExit(f"round {rnd}: sites did not train: {failed}")
    trained.traffic()
    for site in fed.transport.sites:
        site.load_global(fed.server.global_state)
    return sum(len(site.data.train_dataloader()) for site in fed.transport.sites) * fed.local_epochs


def bare_round(fed: Federation, models: list[tuple[torch.nn.Module, torch.optim.Optimizer]], rnd: int) -> int:
    """The same steps as a federation round, as a plain PyTorch loop over the same loaders."""
    steps = 0
    for site, (model, optimizer) in zip(fed.transport.sites, models):
        site.data.set_round(rnd)
        loader = site.data.train_dataloader()
        for epoch in range(fed.local_epochs):
            site.data.train_sampler.set_epoch(epoch)
            for batch in loader:
                optimizer.zero_grad(set_to_none=True)
                F.mse_loss(model(batch["input"]), batch["target"]).backward()
                optimizer.step()
                steps += 1
    return steps


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value")
    parser.add_argument("--reps", type=int, default=2, help="timed rounds of each kind")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(args.config, [*args.overrides, f"output_dir={tmp}", "fl.algorithm=fedmri"])
        fed = build(config)
        sites = fed.transport.sites
        regulariser, aggregation = instrument(fed)

        fed.round(1)  # untimed: warm-up, and the previous encoders for the contrastive term
        models = []
        for site in sites:
            model = copy.deepcopy(site.module.model)
            models.append((model, torch.optim.RMSprop(model.parameters(), lr=config.optim.lr)))
        bare_round(fed, models, 1)
        regulariser.take(), aggregation.take()

        counter = {"fed": 1, "bare": 1, "steps": 0}
        spent = {"regulariser": [], "aggregation": []}

        def ours() -> None:
            counter["fed"] += 1
            counter["steps"] = federation_round(fed, counter["fed"])
            spent["regulariser"].append(regulariser.take())
            spent["aggregation"].append(aggregation.take())

        def bare() -> None:
            counter["bare"] += 1
            bare_round(fed, models, counter["bare"])

        times = interleaved({"bare": bare, "federation": ours}, args.reps, warmup=0)
        # What every local fit builds first: the site's Trainer (one per phase; FedMRI has one).
        construct = {"trainer": lambda: sites[0].trainer(fed.local_epochs, True)}
        trainers = interleaved(construct, 20, warmup=1)["trainer"]

    slices = sum(s.data.num_train_slices for s in sites) * config.fl.local_epochs
    t_bare, t_fed = median(times["bare"]), median(times["federation"])
    t_reg, t_agg = median(spent["regulariser"]), median(spent["aggregation"])
    fits = len(sites)
    print(machine())
    print(
        f"{args.config} {' '.join(args.overrides)}: {len(sites)} sites, "
        f"{config.fl.local_epochs} local epoch(s), {counter['steps']} steps and {slices} slices per round, "
        f"U-Net chans {config.model.chans}; median of {args.reps} rounds each, alternating"
    )
    print(f"  bare PyTorch loop        {t_bare:8.2f} s/round  {slices / t_bare:8.1f} slices/s")
    print(f"  Federation (FedMRI)      {t_fed:8.2f} s/round  {slices / t_fed:8.1f} slices/s")
    print(f"  throughput ratio         {t_bare / t_fed:8.3f}   (federation / bare, target >= 0.9)")
    print("  inside the federation's round:")
    print(f"    contrastive term       {t_reg:8.3f} s  ({100 * t_reg / t_fed:.2f} % of the round)")
    print(f"    aggregation            {t_agg:8.3f} s  ({100 * t_agg / t_fed:.2f} %)")
    t_trainer = median(trainers)
    print(
        f"    Trainer construction   {fits * t_trainer:8.3f} s  ({fits} x {t_trainer * 1e3:.1f} ms, "
        f"{100 * fits * t_trainer / t_fed:.2f} %)"
    )
    rest = t_fed - t_bare - t_reg - t_agg - fits * t_trainer
    print(f"    everything else        {rest:8.3f} s  (Lightning's loop and hooks, timing noise)")
    print(f"  {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
