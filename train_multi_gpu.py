"""Train a federation on several GPUs (or CPU processes) with the same YAML as train.py.

    python train_multi_gpu.py --config configs/paper.yaml --devices 4            # Lightning's DDP launcher
    torchrun --nproc_per_node 4 train_multi_gpu.py --config configs/paper.yaml   # torchrun
    python train_multi_gpu.py --config C --devices 2 fl.parallel=data            # every site data-parallel
    python train_multi_gpu.py --devices 2 --resume runs/paper                    # continue a run

``fl.parallel: sites`` (default) divides the sites among the ranks; ``fl.parallel: data`` trains each
site on all ranks with DDP (global batch = batch_size x ranks). ``trainer.accelerator`` picks GPUs
(NCCL) or the CPU (gloo). Only rank 0 prints and writes. Exit status as for train.py.

``--devices`` is at most the GPUs present, or on the CPU 4 processes per core (each process is a whole
site's training, so more only queue for the cores); torchrun's ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``
and ``LOCAL_WORLD_SIZE`` must be whole numbers that agree with each other.
"""

from __future__ import annotations

import argparse
import sys

from utils.cli import ArgumentParser, int_arg, run_cli
from utils.interrupt import command

MAX_DEVICES = 4096  # what --devices parses; the hardware bounds it further (assembly.setup)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """train.py's arguments plus ``--devices``."""
    from train import add_arguments

    parser = ArgumentParser(description=__doc__)
    add_arguments(parser)
    parser.add_argument(
        "--devices",
        type=int_arg(1, MAX_DEVICES),
        help="processes (GPUs) to launch; under torchrun the default is its --nproc_per_node",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Validate the config, start (or join) the process group, run the federation on every rank."""
    args = parse_args(argv)
    from utils.bounds import launch_rank  # not through Lightning, which reads RANK when imported

    def job() -> None:
        from assembly.setup import RunRequest, distributed
        from train import DEFAULT_CONFIG

        distributed(RunRequest.from_args(args, DEFAULT_CONFIG), args.devices)

    devices = f"--devices {args.devices} " if args.devices else ""
    resume = lambda run_dir: f"python train_multi_gpu.py {devices}--resume {run_dir}"  # noqa: E731
    quiet = launch_rank() != 0
    return command(lambda: run_cli(job, quiet=quiet), resume=resume, quiet=quiet)


if __name__ == "__main__":
    sys.exit(main())
