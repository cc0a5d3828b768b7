"""Latent features of trained runs: the t-SNE panels of the FedMRI paper and a site-separability score.

    python latent.py runs/study/runs/singleset-s0 runs/study/runs/fedavg-s0 \\
        runs/study/runs/fedmri-beta0-s0 runs/study/runs/fedmri-s0 \\
        --title SingleSet --title FedAvg --title "FedMRI w/o L_con" --title FedMRI --out latent/tsne.png
    python latent.py runs/default          # one run: <run>/evaluation/latent_tsne.png and .json

Every test slice of every site is encoded by that site's own model (its best checkpoint); the
bottleneck feature map is averaged over space to one vector per slice. The vectors of all sites are
embedded in 2-D with t-SNE (one panel per run) and a linear classifier is cross-validated at telling
the sites apart from them: the lower its accuracy, the less the sites are separated in the latent space
(the paper's claim is that FedMRI's shared encoder keeps the sites apart less than SingleSet does).

Writes the figure and, beside it with the suffix ``.json``, every run's :func:`latent_summary` (the
points, their sites and the score), and prints one line per run. Only ``model.kind: unet`` runs have
such features; a ``dual_domain`` run is refused in one line (see :func:`bottleneck_features`).
"""

from __future__ import annotations

import argparse
import sys

from study.latent import write_tsne
from utils.cli import ArgumentParser, int_arg, path_arg, run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments: the runs, their panel titles, the figure's path, seed and slice cap."""
    parser = ArgumentParser(description=__doc__)
    parser.add_argument(
        "runs", nargs="+", metavar="RUN_DIR", type=path_arg, help="run directories written by train.py"
    )
    parser.add_argument(
        "--title", action="append", default=[], help="a panel's title, once per run in order (default: "
        "the run directory's name)"
    )  # fmt: skip
    parser.add_argument(
        "--out", type=path_arg,
        help="figure path (.png); the summaries go beside it as .json (default with one run: "
        "<run>/evaluation/latent_tsne.png; required with several)"
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int_arg(0, 2**31 - 1), default=0, help="seed of t-SNE and of the folds (default 0)"
    )
    parser.add_argument(
        "--max-slices-per-site", type=int_arg(1, 10**9), metavar="N",
        help="at most N evenly spaced test slices per site",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point: every run's summary, one line each, then the figure and the summaries' JSON."""
    args = parse_args(argv)

    def job() -> None:
        write_tsne(
            args.runs, args.title, args.out, args.seed, args.max_slices_per_site,
            log=lambda line: print(line, flush=True),
        )  # fmt: skip

    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
