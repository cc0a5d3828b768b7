"""Slices per second of the NIfTI loader (decode once into the cache) against reloading the volume per slice.

The FedMRI authors' loader reads a BraTS slice by loading and decompressing its whole ``.nii.gz`` volume
every time. This writes a BraTS-shaped dataset (240 x 240 x 155 int16 volumes, gzip, in a temporary
folder), then measures side by side in one run:

- reload per slice: ``nibabel.load(path)`` and the whole volume decoded for every slice read;
- this loader: ``BratsSource.prepare()`` (decodes every volume once into the cache), then ``read_slice``;

for raw slice reads and for whole training samples (read + mask + FFT + normalise), over the paper's
slices 40-119; torch runs on one thread, as in DataLoader workers. It also reads every slice of a
folder of fastMRI-shaped ``.h5`` files for three epochs and prints the process's resident memory after
each, to show that lazily opened files do not make it grow.

    python bench/data_loading.py [--subjects 4] [--baseline-slices 24]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data.masks import create  # noqa: E402
from data.sources import SourceContext, build_source  # noqa: E402
from data.sources.fastmri import FastMRIOptions  # noqa: E402
from data.sources.nifti import BratsOptions  # noqa: E402
from data.transforms import ReconTransform  # noqa: E402
from tests.fixtures.mri_files import write_brats, write_fastmri  # noqa: E402

SLICES = (40, 120)  # the paper's BraTS slices


def reload_per_slice(path: Path, index: int) -> np.ndarray:
    """The authors' way: load and decode the whole volume, keep one slice."""
    volume = np.asarray(nib.load(str(path)).get_fdata(), dtype=np.float32)
    return volume[:, :, index]


def rss_mib() -> float:
    """Resident memory of this process, MiB (Linux)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    import resource

    return pages * resource.getpagesize() / 2**20


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def timed(fn, items) -> float:
    """Seconds ``fn(volume, i)`` takes over every ``(volume, i)`` of ``items``."""
    start = time.perf_counter()
    for volume, i in items:
        fn(volume, i)
    return time.perf_counter() - start


def compare_brats(subjects: int, baseline_slices: int, rng: np.random.Generator, transform) -> None:
    """Write ``subjects`` BraTS subjects, time reload-per-slice against this loader (raw reads, samples,
    the first epoch with the one-time conversion), print the table with ratios."""
    with tempfile.TemporaryDirectory() as tmp:
        root, cache = Path(tmp) / "brats", Path(tmp) / "cache"
        start = time.perf_counter()
        ids = [f"BraTS19_BENCH_{i:03d}_1" for i in range(subjects)]
        write_brats(root, ids, rng=rng, shape=(240, 240, 155), modalities=("t1", "t2"))
        took = time.perf_counter() - start
        print(f"wrote {2 * subjects} BraTS volumes 240x240x155 (.nii.gz) in {took:.1f} s")

        options = BratsOptions(root=str(root), slices=SLICES, split={"train": 1.0, "val": 0.0, "test": 0.0})
        source = build_source(options, SourceContext("bench", 0, cache))
        start = time.perf_counter()
        source.prepare()
        convert = time.perf_counter() - start
        volumes = source.volumes("train")
        keys = [(v, i) for v in volumes for i in range(v.num_slices)]
        files = {v.name: root / v.subject / f"{v.name}.nii.gz" for v in volumes}

        # the baseline is slow: time a spread of its slices, the same ones for both loaders
        picks = [keys[j] for j in np.linspace(0, len(keys) - 1, baseline_slices).astype(int)]

        base_read = timed(lambda v, i: reload_per_slice(files[v.name], SLICES[0] + i), picks)
        ours_read = timed(source.read_slice, keys)
        base_sample = timed(lambda v, i: transform(reload_per_slice(files[v.name], SLICES[0] + i), 1), picks)
        ours_sample = timed(lambda v, i: transform(source.read_slice(v, i), 1), keys)
        # a second source on the warm cache: what every later run pays in prepare()
        start = time.perf_counter()
        build_source(options, SourceContext("bench", 0, cache)).prepare()
        warm = time.perf_counter() - start

        rows = [
            ("raw slice reads", rate(len(picks), base_read), rate(len(keys), ours_read)),
            (
                "samples (read + mask + FFT + normalise)",
                rate(len(picks), base_sample),
                rate(len(keys), ours_sample),
            ),
            (
                "first epoch incl. one-time conversion",
                rate(len(picks), base_sample),
                rate(len(keys), convert + ours_sample),
            ),
        ]
        print(f"\n{len(volumes)} volumes, slices {SLICES[0]}-{SLICES[1] - 1}: {len(keys)} slices")
        print(f"one-time conversion in prepare(): {convert:.2f} s; on the warm cache: {warm:.3f} s\n")
        print(f"| {'measure':<40} | {'reload per slice':>18} | {'this loader':>14} | {'ratio':>8} |")
        print(f"|{'-' * 42}|{'-' * 19}:|{'-' * 15}:|{'-' * 9}:|")
        for name, base, ours in rows:
            print(f"| {name:<40} | {base:>12.1f} sl/s | {ours:>9.0f} sl/s | {ours / base:>7.0f}x |")


def fastmri_memory(rng: np.random.Generator, transform) -> None:
    """Read every slice of a folder of fastMRI ``.h5`` files for three epochs; print the rate and the
    resident memory before and after each epoch."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "knee"
        root.mkdir()
        for i in range(12):
            write_fastmri(root / f"file{i}.h5", rng=rng, slices=20, kspace_shape=(320, 184), recon=(160, 160))
        options = FastMRIOptions(root=str(root), split={"train": 1.0, "val": 0.0, "test": 0.0})
        source = build_source(options, SourceContext("bench", 0, Path(tmp) / "cache"))
        source.prepare()
        volumes = source.volumes("train")
        count = sum(v.num_slices for v in volumes)
        memory = [rss_mib()]
        start = time.perf_counter()
        for _ in range(3):
            for volume in volumes:
                for i in range(volume.num_slices):
                    transform(source.read_slice(volume, i), i)
            memory.append(rss_mib())
        elapsed = time.perf_counter() - start
        print(
            f"\nfastMRI h5, {len(volumes)} files x 20 slices of 320x184 k-space, 3 epochs: "
            f"{rate(3 * count, elapsed):.0f} samples/s; resident memory before and after each epoch: "
            + " -> ".join(f"{m:.0f}" for m in memory)
            + " MiB"
        )


def main() -> None:
    """Write the data, time both loaders, print the table with ratios."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subjects", type=int, default=4, help="BraTS subjects (two volumes each)")
    parser.add_argument("--baseline-slices", type=int, default=24, help="slices timed for reload-per-slice")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    transform = ReconTransform(create("random_1d", acceleration=5))
    compare_brats(args.subjects, args.baseline_slices, rng, transform)
    fastmri_memory(rng, transform)


if __name__ == "__main__":
    main()
