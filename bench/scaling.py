"""Time per FedMRI round as the federation grows from 2 to 16 sites, on tiny models.

    python bench/scaling.py                         # 2, 4, 8, 16 sites, 3 rounds each
    python bench/scaling.py --sites 2 4 8 16 32 --reps 5 --threads 1

Every site is a small simulated one (32 x 32 images, 6 training slices, batch 2; a 4-channel,
2-pool U-Net), so the round's fixed costs (Lightning, the loop, the contrastive term, aggregation)
weigh as much as they ever will. All federations are built first; round 1 of each runs untimed;
then the timed rounds (training part of a round, validation excluded, as in
``bench/federation_overhead.py``) alternate between the federation sizes. Prints the time per
round, the least-squares fit ``a + b * sites`` (b: the per-site cost), and the shares of the
contrastive term and the aggregation. Then aggregation itself, per tensor (``weighted_average``)
against flat buffers (``FlatAverager``, ``fl.flat_aggregation``), on the default and the paper's
encoders, alternating.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assembly.config import validate_config  # noqa: E402
from bench.federation_overhead import build, federation_round, instrument  # noqa: E402
from bench.timing import interleaved, load, machine, median  # noqa: E402
from fl.aggregation import FlatAverager, weighted_average  # noqa: E402
from fl.algorithms import Context  # noqa: E402
from fl.algorithms.fedmri import FedMRI, FedMRIOptions  # noqa: E402
from fl.federation import Federation  # noqa: E402
from models.unet import Unet  # noqa: E402
from tests.conftest import tiny_config_dict  # noqa: E402


def tiny_federation(root: Path, sites: int) -> Federation:
    """A FedMRI federation of ``sites`` tiny simulated sites (the four profiles, repeated)."""
    data = tiny_config_dict(root, sites=4)
    profiles = data["sites"]
    data["sites"] = []
    for k in range(sites):
        site = {**profiles[k % 4], "name": f"{profiles[k % 4]['name']}{k}"}
        data["sites"].append(site)
    return build(validate_config(data))


def aggregation_table(reps: int) -> None:
    """Per-tensor against flat aggregation of FedMRI's shared encoder, alternating."""
    print(
        "  aggregation of the shared encoder, per tensor (weighted_average) vs flat buffers (FlatAverager):"
    )
    for chans in (16, 32):
        model = Unet(chans=chans)
        state = model.state_dict()
        names = FedMRI(FedMRIOptions(), Context()).shared_names(model)
        numel = sum(state[n].numel() for n in names)
        for sites in (4, 16):
            updates = {f"s{k}": {n: torch.randn_like(state[n]) for n in names} for k in range(sites)}
            weights = {s: 1.0 for s in updates}
            flat = FlatAverager()
            times = interleaved(
                {
                    "per_tensor": lambda u=updates, w=weights: weighted_average(u, w),
                    "flat": lambda f=flat, u=updates, w=weights: f(u, w),
                },
                reps,
            )
            t_plain, t_flat = median(times["per_tensor"]), median(times["flat"])
            print(
                f"    chans {chans:2d} ({numel / 1e6:.1f} M values), {sites:2d} sites: per tensor "
                f"{t_plain * 1e3:7.1f} ms, flat {t_flat * 1e3:7.1f} ms, ratio {t_plain / t_flat:5.2f}x"
            )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sites", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--reps", type=int, default=3, help="timed rounds per federation size")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        feds, watches, rounds = {}, {}, {}
        for sites in args.sites:
            fed = tiny_federation(Path(tmp) / f"k{sites}", sites)
            watches[sites] = instrument(fed)
            fed.round(1)  # untimed: warm-up and the previous encoders
            feds[sites], rounds[sites] = fed, 1
        spent = {sites: {"regulariser": [], "aggregation": []} for sites in args.sites}

        def round_of(sites: int):
            def run() -> None:
                regulariser, aggregation = watches[sites]
                regulariser.take(), aggregation.take()
                rounds[sites] += 1
                federation_round(feds[sites], rounds[sites])
                spent[sites]["regulariser"].append(regulariser.take())
                spent[sites]["aggregation"].append(aggregation.take())

            return run

        times = interleaved({sites: round_of(sites) for sites in args.sites}, args.reps, warmup=0)

    print(machine())
    print(
        f"FedMRI rounds on tiny sites (32 x 32, 6 training slices each, U-Net chans 4, 2 pools); "
        f"median of {args.reps} rounds per size, sizes alternating"
    )
    print(f"  {'sites':>5} | {'s/round':>8} | {'s/site':>7} | {'contrastive term':>16} | {'aggregation':>11}")
    medians = {}
    for sites in args.sites:
        t = medians[sites] = median(times[sites])
        reg, agg = median(spent[sites]["regulariser"]), median(spent[sites]["aggregation"])
        print(
            f"  {sites:>5} | {t:8.3f} | {t / sites:7.4f} | {100 * reg / t:14.2f} % | {100 * agg / t:9.2f} %"
        )
    x = np.array(args.sites, dtype=float)
    y = np.array([medians[s] for s in args.sites])
    slope, intercept = np.polyfit(x, y, 1)
    worst = float(np.max(np.abs(y - (intercept + slope * x)) / y))
    print(
        f"  fit: {intercept:.3f} s + {slope:.4f} s per site (largest deviation from the line "
        f"{100 * worst:.1f} % of a round)"
    )
    aggregation_table(max(3, args.reps))
    print(f"  {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
