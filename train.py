"""Train a federation from a YAML config on the CPU or one GPU.

    python train.py                                  # configs/default.yaml: the simulated 4-site federation
    python train.py --config configs/paper.yaml      # the paper's settings (GPU)
    python train.py fl.algorithm=fedavg fl.rounds=5 sites.0.mask.acceleration=8

Outputs go to <output_dir>/<name>/ (default runs/<name>/): config.yaml, metrics.csv, tb/,
checkpoints/, results.json, results.md and figures/.
"""

from __future__ import annotations

import argparse
import sys

from utils.cli import run_cli

DEFAULT_CONFIG = "configs/default.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments: a config file and dotted overrides."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML config (default: {DEFAULT_CONFIG})")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value", help="override config values")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point: load and validate the config, run the federation, print the results table."""
    args = parse_args(argv)

    def job() -> None:
        from fl.pooled import create_run
        from utils.config import load_config

        config = load_config(args.config, args.overrides)
        create_run(config).run()

    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
