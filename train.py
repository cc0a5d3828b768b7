"""Train a federation from a YAML config on the CPU or one GPU.

    python train.py                                  # configs/default.yaml: the simulated 4-site federation
    python train.py --config configs/paper.yaml      # the paper's settings (GPU)
    python train.py fl.algorithm=fedavg fl.rounds=5 sites.0.mask.acceleration=8
    python train.py --resume runs/default            # continue after the last completed round

Outputs go to <output_dir>/<name>/ (default runs/<name>/): config.yaml, metrics.csv, tb/,
checkpoints/, results.json, results.md and figures/. Exit status: 0 done, 2 bad input (one line
naming the file or key), 3 a site diverged under fl.on_site_failure=abort.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from utils.cli import run_cli

DEFAULT_CONFIG = "configs/default.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """A config file, dotted overrides, and how to treat an existing run (shared with train_multi_gpu.py)."""
    parser.add_argument(
        "--config", help=f"YAML config (default: {DEFAULT_CONFIG}, or the run's own with --resume)"
    )
    parser.add_argument("overrides", nargs="*", metavar="key.path=value", help="override config values")
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR after its last completed round"
    )
    parser.add_argument(
        "--force", action="store_true", help="with --resume: accept a config that differs from the run's"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run of the same name")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments of train.py."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    return parser.parse_args(argv)


def resolve_config(args: argparse.Namespace, check_existing: bool = True):
    """The config to run: a new one, or with ``--resume`` the run's own (checked against any changes).

    With ``check_existing``, a new run whose directory already holds one is refused (unless ``--overwrite``).
    """
    from assembly.config import config_differences, load_config
    from utils.errors import UserError

    if not args.resume:
        config = load_config(args.config or DEFAULT_CONFIG, args.overrides)
        if check_existing and holds_run(config.run_dir) and not args.overwrite:
            raise UserError(
                f"{config.run_dir} already holds a run: continue it with --resume {config.run_dir}, "
                "replace it with --overwrite, or choose another name=..."
            )
        return config
    if args.overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    run_dir = Path(args.resume)
    placed = [o.partition("=")[0].strip() for o in args.overrides if o.partition("=")[0].strip() in PLACEMENT]
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
    if not args.config and not args.overrides:
        return saved
    wanted = load_config(args.config or saved_path, [*args.overrides, *placement])
    differences = config_differences(saved, wanted)
    if differences and not args.force:
        raise UserError(
            f"--resume {run_dir}: the config differs from the run's in {'; '.join(differences)}; "
            "pass --force to resume with the new values"
        )
    return wanted


PLACEMENT = ("name", "output_dir")  # a run directory's place: fixed by --resume's path


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run, finished or not (what a new run must not replace unasked)."""
    return (run_dir / "metrics.csv").exists() or (run_dir / "checkpoints").exists()


def main(argv: list[str] | None = None) -> int:
    """Entry point: load and validate the config, run (or resume) the federation, print the results."""
    args = parse_args(argv)

    def job() -> None:
        from assembly.build import Builder
        from utils.lock import lock_run
        from utils.paths import check_writable_dir

        config = resolve_config(args)
        # Before the data is prepared; writes nothing. The run's own folders too: a file in their place
        # would otherwise end the run at its first checkpoint.
        for folder in (config.run_dir.parent, config.run_dir, config.run_dir / "checkpoints"):
            check_writable_dir(folder, "output_dir")
        run = Builder(config).run()  # validates every site's data before anything is written or removed
        lock_run(config.run_dir)  # one writer per run directory: a second one is refused, naming the PID
        resolve_config(args)  # again under the lock: another process may have started this run meanwhile
        if args.resume:
            run.resume()
        elif args.overwrite and config.run_dir.exists():
            shutil.rmtree(config.run_dir)
        run.run()

    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
