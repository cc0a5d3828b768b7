"""Train a federation from a YAML config on the CPU or one GPU.

    python train.py                                  # configs/default.yaml: the simulated 4-site federation
    python train.py --config configs/paper.yaml      # the paper's settings (GPU)
    python train.py fl.algorithm=fedavg fl.rounds=5 sites.0.mask.acceleration=8
    python train.py --resume runs/default            # continue after the last completed round

Outputs go to <output_dir>/<name>/ (default runs/<name>/): config.yaml, metrics.csv, tb/,
checkpoints/, results.json, results.md and figures/. Exit status: 0 done, 2 bad input (one line
naming the file or key), 3 a site diverged under fl.on_site_failure=abort, 130 Ctrl-C and 143 SIGTERM
(the last completed round is kept; the line printed says how to continue).
"""

from __future__ import annotations

import argparse
import sys

from assembly.keys import OptionsAction
from utils.cli import ArgumentParser, path_arg, run_cli
from utils.interrupt import command

DEFAULT_CONFIG = "configs/default.yaml"  # found in the repository when the working directory lacks it


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """A config file, dotted overrides, and how to treat an existing run (shared with train_multi_gpu.py)."""
    parser.add_argument(
        "--config", type=path_arg,
        help=f"YAML config (default: {DEFAULT_CONFIG}, or the run's own with --resume)",
    )  # fmt: skip
    parser.add_argument("overrides", nargs="*", metavar="key.path=value", help="override config values")
    parser.add_argument("--options", action=OptionsAction)
    parser.add_argument(
        "--resume", metavar="RUN_DIR", type=path_arg,
        help="continue the run in RUN_DIR after its last completed round",
    )  # fmt: skip
    parser.add_argument(
        "--force", action="store_true", help="with --resume: accept a config that differs from the run's"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run of the same name")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments of train.py."""
    parser = ArgumentParser(description=__doc__)
    add_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point: load and validate the config, run (or resume) the federation, print the results."""
    args = parse_args(argv)

    def job() -> None:
        from assembly.setup import RunRequest, train_in_process

        train_in_process(RunRequest.from_args(args, DEFAULT_CONFIG))

    return command(lambda: run_cli(job), resume=lambda run_dir: f"python train.py --resume {run_dir}")


if __name__ == "__main__":
    sys.exit(main())
