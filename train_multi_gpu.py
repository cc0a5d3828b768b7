"""Train a federation on several GPUs (or CPU processes) with the same YAML as train.py.

    python train_multi_gpu.py --config configs/paper.yaml --devices 4            # Lightning's DDP launcher
    torchrun --nproc_per_node 4 train_multi_gpu.py --config configs/paper.yaml   # torchrun
    python train_multi_gpu.py --config C --devices 2 fl.parallel=data            # every site data-parallel
    python train_multi_gpu.py --devices 2 --resume runs/paper                    # continue a run

``fl.parallel: sites`` (default) divides the sites among the ranks; ``fl.parallel: data`` trains each
site on all ranks with DDP (global batch = batch_size x ranks). ``trainer.accelerator`` picks GPUs
(NCCL) or the CPU (gloo). Only rank 0 prints and writes. Exit status as for train.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from utils.cli import run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """train.py's arguments plus ``--devices``."""
    from train import add_arguments

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    parser.add_argument(
        "--devices",
        type=int,
        help="processes (GPUs) to launch; under torchrun the default is its --nproc_per_node",
    )
    return parser.parse_args(argv)


def launched_world_size() -> int | None:
    """Processes started by an external launcher such as torchrun (None when this script launches)."""
    if "TORCHELASTIC_RUN_ID" in os.environ or "RANK" in os.environ:
        return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", 1)))
    return None


def main(argv: list[str] | None = None) -> int:
    """Validate the config, start (or join) the process group, run the federation on every rank."""
    args = parse_args(argv)
    from fl.distributed import launch_rank

    quiet = launch_rank() != 0

    def job() -> None:
        from lightning.fabric import Fabric

        from assembly.build import Builder, check_accelerator, is_federated, quiet_lightning
        from fl.distributed import Distributed, agree
        from train import resolve_config
        from utils.errors import UserError

        config = resolve_config(args, check_existing=False)  # the same on every rank: no side effects
        external = launched_world_size()
        if args.devices is not None and args.devices < 2:
            raise UserError(f"--devices: a multi-process run needs at least 2 (got {args.devices}); use train.py")
        devices = args.devices or external or config.trainer.devices
        if external is not None and args.devices and args.devices != external:
            raise UserError(
                f"--devices {args.devices} differs from the {external} processes torchrun started"
            )
        if devices < 2:
            raise UserError(f"--devices: a multi-process run needs at least 2 (got {devices}); use train.py")
        if not is_federated(config.fl.algorithm):
            raise UserError(f"fl.algorithm: {config.fl.algorithm} is not federated; train it with train.py")
        if config.fl.parallel == "data" and config.fl.algorithm == "flmrcm":
            raise UserError(
                "fl.parallel: data does not support fl.algorithm=flmrcm (each rank would train its own "
                "discriminator); use fl.parallel: sites"
            )
        flmrcm = config.fl.options("flmrcm")
        if config.fl.algorithm == "flmrcm" and flmrcm.mode == "paper":
            raise UserError(
                "fl.flmrcm.mode: paper passes the target site's training images through every source "
                "site's network at every step, so all sites must share one process; use train.py, or "
                "mode: features"
            )
        check_accelerator(config.trainer.accelerator)  # as train.py: no GPU asked for that is not here
        accelerator = "gpu" if config.trainer.accelerator in ("gpu", "cuda") else config.trainer.accelerator
        quiet_lightning()
        Fabric(accelerator=accelerator, devices=devices, strategy="ddp").launch()

        import torch.distributed as dist

        first = dist.get_rank() == 0
        agree((lambda: resolve_config(args)) if first else (lambda: None))  # refuses to replace a run
        builder = Builder(config, log=print if first else (lambda _: None))
        # Rank 0 prepares (and caches) the data first, then the others; a data error stops every rank.
        data = agree(builder.prepare_data if first else (lambda: None))
        data = agree((lambda: None) if first else builder.prepare_data) or data
        sites, initial = builder.sites(data)
        transport = Distributed(
            sites,
            mode=config.fl.parallel,
            assignment=config.fl.site_assignment,
            trainer=builder.trainer,
            accelerator=config.trainer.accelerator,
            step_progress=config.trainer.step_progress,
            log=builder.log,
        )
        federation = builder.federation(builder.server(initial), transport)
        run = builder.loop(
            federation, len(initial.state_dict()), writer=transport.writer, barrier=transport.barrier
        )
        if args.resume:
            run.resume()
        elif args.overwrite and first and config.run_dir.exists():
            shutil.rmtree(config.run_dir)
        dist.barrier()
        run.run()
        dist.barrier()

    return run_cli(job, quiet=quiet)


if __name__ == "__main__":
    sys.exit(main())
