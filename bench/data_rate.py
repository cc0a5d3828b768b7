"""Slices per second each data source delivers against the slices per second the model trains on.

    python bench/data_rate.py                       # default config's model and workers
    python bench/data_rate.py --workers 2 --threads 1

Three sources, each through its SiteDataModule's training loader (batch 8, masks redrawn per
sample, the way a local fit reads them): the simulated cache (the config's first simulated site;
the default's ``fastmri``, 96 x 96), fastMRI single-coil ``.h5`` files (640 x 368 k-space,
320 x 320 targets, written here) and BraTS NIfTI volumes (240 x 240 x 155, slices 40-119, written
here and converted once into the cache before timing). The model's consumption is a training step
of the config's U-Net (forward, MSE, backward, RMSprop) on batches of the same size. Loader epochs
and model steps alternate; the ratio loader / model must be at least 5 for the loaders never to
starve the model.

Then, with loader workers (``--persistent-workers N``, default 2), one epoch per fit as the
federation runs it: workers kept alive between fits (``trainer.persistent_workers: true``) against
workers started for every fit, alternating. ``trainer.pin_memory`` needs a GPU and is not measured
on a machine without one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assembly.config import load_config  # noqa: E402
from bench.timing import interleaved, load, machine, median  # noqa: E402
from data.options import SiteOptions  # noqa: E402
from data.site import SiteDataModule  # noqa: E402
from models.recon_module import ReconModule  # noqa: E402
from tests.fixtures.mri_files import write_brats, write_fastmri  # noqa: E402
from utils.hardware import loader_workers  # noqa: E402


def site_config(name: str, source: dict, mask: dict) -> SiteOptions:
    """A validated site entry (batch 8)."""
    return SiteOptions.model_validate({"name": name, "source": source, "mask": mask, "batch_size": 8})


def data_module(site: SiteOptions, cache: Path, workers: int, persistent: bool = True) -> SiteDataModule:
    """The site's data module, set up (sources checked, volumes converted into the cache)."""
    dm = SiteDataModule(site, seed=0, cache_dir=cache, num_workers=workers, persistent_workers=persistent)
    dm.setup()
    return dm


def epoch(dm: SiteDataModule) -> int:
    """Read one training epoch; returns the number of slices."""
    count = 0
    for batch in dm.train_dataloader():
        count += len(batch["input"])
    return count


def model_step(config, size: int):
    """One training step of the config's U-Net on a batch of 8 slices of ``size``."""
    torch.manual_seed(0)
    module = ReconModule(model=config.model.model_dump(), optim={"name": "rmsprop", "lr": 1e-4})
    optimizer = module.optimizer
    batch = {"input": torch.randn(8, 1, *size), "target": torch.randn(8, 1, *size)}

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        module.training_step(batch, 0).backward()
        optimizer.step()

    return step


def sources(config, tmp: Path, rng: np.random.Generator) -> dict[str, tuple[SiteOptions, Path]]:
    """{label: (site, its cache)} of the three sources: the config's first simulated site, and
    fastMRI ``.h5`` files and BraTS NIfTI volumes written under ``tmp``."""
    knee = tmp / "knee"
    knee.mkdir()
    for i in range(4):
        write_fastmri(knee / f"file{i}.h5", rng=rng, slices=20, kspace_shape=(640, 368), recon=(320, 320))
    ids = [f"BraTS19_BENCH_{i:03d}_1" for i in range(2)]
    write_brats(tmp / "brats", ids, rng=rng, shape=(240, 240, 155), modalities=("t1", "t2"))
    train_only = {"train": 1.0, "val": 0.0, "test": 0.0}
    simulated = next(s for s in config.sites if s.source.kind == "synthetic")
    return {
        f"simulated ({simulated.name})": (simulated, Path(config.data.cache_dir)),
        "fastMRI h5": (
            site_config(
                "knee",
                {"kind": "fastmri", "root": str(knee), "split": train_only},
                {"kind": "random_1d", "acceleration": 4},
            ),
            tmp / "cache",
        ),
        "BraTS NIfTI": (
            site_config(
                "brats",
                {"kind": "brats", "root": str(tmp / "brats"), "slices": [40, 120], "split": train_only},
                {"kind": "random_1d", "acceleration": 5},
            ),
            tmp / "cache",
        ),
    }


def persistent_workers(simulated: SiteOptions, cache: Path, n: int, reps: int) -> None:
    """One fit's epoch of the simulated site with ``n`` workers: kept alive against started per fit."""
    kept = data_module(simulated, cache, n, persistent=True)
    fresh = data_module(simulated, cache, n, persistent=False)
    times = interleaved({"kept": lambda: epoch(kept), "fresh": lambda: epoch(fresh)}, reps)
    t_kept, t_fresh = median(times["kept"]), median(times["fresh"])
    slices = len(kept.datasets["train"])
    print(
        f"  one fit's epoch of the simulated site with {n} workers ({slices} slices): workers kept "
        f"{t_kept:.2f} s, started per fit {t_fresh:.2f} s: persistent workers {t_fresh / t_kept:.2f}x"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/default.yaml", help="model, cache and workers")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: the config's)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--persistent-workers", type=int, default=2, metavar="N", help="0 skips that part")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(args.config)
    workers = loader_workers(config.trainer.num_workers) if args.workers is None else args.workers
    rng = np.random.default_rng(0)

    with tempfile.TemporaryDirectory() as tmp:
        sites = sources(config, Path(tmp), rng)
        print(machine())
        print(
            f"loaders with {workers} worker(s), batch 8; model: U-Net chans {config.model.chans}, "
            f"{config.model.num_pool_layers} pools; medians of {args.reps}, "
            "loader epochs and model steps alternating"
        )
        print(f"  | {'source':<20} | {'size':>9} | {'loader sl/s':>11} | {'model sl/s':>10} | {'ratio':>7} |")
        print(f"  |{'-' * 22}|{'-' * 10}:|{'-' * 12}:|{'-' * 11}:|{'-' * 8}:|")
        for label, (site, cache) in sites.items():
            dm = data_module(site, cache, workers)
            size = tuple(dm.datasets["train"][0]["input"].shape[-2:])
            count = {"slices": 0}

            def read(dm=dm, count=count) -> None:
                count["slices"] = epoch(dm)

            step = model_step(config, size)
            times = interleaved({"loader": read, "model": step}, args.reps)
            loader = count["slices"] / median(times["loader"])
            model = 8 / median(times["model"])
            print(
                f"  | {label:<20} | {size[0]:>4}x{size[1]:<4} | {loader:>11.1f} | {model:>10.1f} | "
                f"{loader / model:>6.1f}x |"
            )

        if args.persistent_workers:
            simulated = next(s for s in config.sites if s.source.kind == "synthetic")
            persistent_workers(simulated, Path(config.data.cache_dir), args.persistent_workers, args.reps)
    print("  pin_memory: not measured (no GPU)" if not torch.cuda.is_available() else "")
    print(f"  {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
