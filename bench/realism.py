"""Transfer check: do the simulated sites teach a model something true about real MR images?

    python bench/realism.py                          # trains configs/default.yaml (runs/default), then tests
    python bench/realism.py --run runs/default       # tests an existing run of the default federation
    python bench/realism.py --config configs/default.yaml source_overrides...
    python bench/realism.py --run runs/default --volumes tuning   # the separate set for tuning

Each site's model (the run's best checkpoint of that site) is tested twice, with the site's own mask and
matrix size: on its simulated test split, and on real brain MR volumes that no training or tuning saw.
The table gives, per site, the gain over the zero-filled input in PSNR and SSIM on both, side by side,
each ± the 95 % Student-t half-width over the site's test volumes (a handful of real volumes per site,
so the intervals are wide), and whether the model beats zero-filled on the real volumes: "yes" or
"no" when both intervals lie on one side of zero, "not detectable" when one holds it.

The real volumes are the human brain scans shipped inside the ``dipy`` wheel (``dipy/data/files``; a
development requirement, read from the installed package, never downloaded): a skull-stripped
T1-weighted slice (``t1_coronal_slice.npy``, 256 x 256), the b=0 (T2-weighted) volumes of three
diffusion scans (``S0_10slices.nii.gz`` 128 x 128 x 10 skull-stripped, ``aniso_vox.nii.gz``
58 x 58 x 24 and ``test_piesno.nii.gz`` 96 x 96 x 14 with the head and background). They are
resampled to each site's pixel size, centre-cropped or zero-padded to its matrix, scaled to [0, 1] and
written as NIfTI volumes, one test-only folder site per simulated site (``split: {test: 1}``); the
skull-stripped site (``brats``) gets the skull-stripped volumes only.

``--volumes tuning`` tests on a second, separate real set instead (nibabel's example EPI series, a 2 mm
T2*-weighted brain masked to the head's interior), so that the simulator can be tuned without looking
at the test volumes; the test volumes are for the final measurement.

Without --run, a finished run of the config (its results.json) is tested again without training; a run
directory that holds an unfinished run or a finished one of another config is refused, as train.py
refuses it (``train.py --resume`` finishes a run). Overrides apply to --config only: --run tests a run
with its own config.

Writes <out>/realism.md and realism.json (default <out>: <run>/realism, or
<run>/realism-tuning) and each evaluation's outputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_CONFIG = "configs/default.yaml"


@dataclasses.dataclass(frozen=True)
class RealVolume:
    """A real brain MR volume shipped inside an installed package (read from disk, never downloaded)."""

    package: str  # the installed package that ships the file
    path: str  # the file, relative to the package's folder
    pixel_mm: float  # in-plane pixel size
    skull_stripped: bool  # brain only (zero background): the only kind a skull-stripped site is tested on
    slices: tuple[int, int] | None = None  # axial slices kept, [start, stop); None = all
    frame: int = 0  # the volume of a 4D series
    turns: int = 0  # in-plane quarter turns: the same scan stored in another orientation
    matrix: float = 1.0  # fraction of k-space kept along each axis: the same scan from a smaller matrix


# The final measurement: the volumes every number of RESULTS.md's "Transfer to real scans" comes from.
TEST_VOLUMES: dict[str, RealVolume] = {
    "t1slice": RealVolume("dipy", "data/files/t1_coronal_slice.npy", 1.0, True),
    "s0": RealVolume("dipy", "data/files/S0_10slices.nii.gz", 2.0, True),
    "aniso": RealVolume("dipy", "data/files/aniso_vox.nii.gz", 4.0, False, (4, 20)),
    "piesno": RealVolume("dipy", "data/files/test_piesno.nii.gz", 2.5, False, (2, 12)),
}
# A second, separate real set for tuning the simulator, so that no tuning decision looks at the test
# volumes: nibabel's example EPI series (a 2 mm T2*-weighted brain, masked to the head's interior), as
# stored, turned a quarter, and from half its matrix: scanners store slices in any orientation and
# acquire at coarser resolutions than the matrix they reconstruct to.
_EPI = RealVolume("nibabel", "tests/data/example4d.nii.gz", 2.0, True, (4, 22))
TUNING_VOLUMES: dict[str, RealVolume] = {
    "epi": _EPI,
    "epi_turned": dataclasses.replace(_EPI, turns=1),
    "epi_half_matrix": dataclasses.replace(_EPI, matrix=0.5),
}
VOLUME_SETS: dict[str, dict[str, RealVolume]] = {"test": TEST_VOLUMES, "tuning": TUNING_VOLUMES}


def package_folder(package: str) -> Path:
    """The folder of an installed package, found without importing it."""
    from utils.errors import UserError

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the real volumes ship with {package!r}; pip install -r requirements-dev.txt")
    return Path(next(iter(spec.submodule_search_locations)))


def read_real(volume: RealVolume) -> np.ndarray:
    """One real volume as (slices, H, W) float32 magnitudes, axial, in its stored orientation turned
    ``volume.turns`` quarters, from ``volume.matrix`` of its k-space."""
    import nibabel as nib

    from utils.errors import UserError

    path = package_folder(volume.package) / volume.path
    if not path.is_file():
        raise UserError(f"real volume {path} is missing; reinstall {volume.package}")
    if path.suffix == ".npy":
        data = np.load(path)[..., None]
    else:
        data = np.asarray(nib.load(path).dataobj, dtype=np.float32)
        data = data[..., volume.frame] if data.ndim == 4 else data
    if volume.slices is not None:
        data = data[:, :, volume.slices[0] : volume.slices[1]]
    data = np.abs(np.rot90(np.moveaxis(data, -1, 0), volume.turns, axes=(1, 2))).astype(np.float32)
    if volume.matrix < 1.0:
        from data.simulation.imaging import acquisition_matrix

        data = acquisition_matrix(data, volume.matrix)
    return np.ascontiguousarray(data)


def fit_to_site(volume: np.ndarray, pixel_mm: float, site_mm: float, size: int) -> np.ndarray:
    """Resample (S, H, W) to the site's pixel size, centre-crop/zero-pad to size x size, scale to [0, 1]."""
    from scipy import ndimage

    zoom = pixel_mm / site_mm
    out = np.zeros((volume.shape[0], size, size), dtype=np.float32)
    for i, image in enumerate(volume):
        resampled = np.maximum(ndimage.zoom(image, zoom, order=3), 0.0)
        h, w = resampled.shape
        top, left = (h - size) // 2, (w - size) // 2
        src = resampled[max(top, 0) : max(top, 0) + size, max(left, 0) : max(left, 0) + size]
        dy, dx = max(-top, 0), max(-left, 0)
        out[i, dy : dy + src.shape[0], dx : dx + src.shape[1]] = src
    return out / max(float(np.percentile(out, 99.9)), 1e-6)


def write_real_sites(config: Any, folder: Path, volumes: dict[str, RealVolume] = TEST_VOLUMES) -> dict:
    """Write each site's real test volumes under ``folder/<site>/`` and return the test config dict."""
    import nibabel as nib

    from data.simulation import PROFILES

    sites = []
    for site in config.sites:
        source = site.source
        if source.kind != "synthetic":
            continue
        profile = PROFILES[source.profile]
        root = folder / site.name
        for name, real in volumes.items():
            if profile.skull_stripped and not real.skull_stripped:
                continue
            volume = fit_to_site(read_real(real), real.pixel_mm, profile.fov_mm / source.size, source.size)
            path = root / name / "real.nii.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(np.ascontiguousarray(np.moveaxis(volume, 0, -1)), np.eye(4)), str(path))
        sites.append(
            {
                "name": site.name,
                "source": {"kind": "folder", "root": str(root), "split": {"train": 0, "val": 0, "test": 1}},
                "mask": site.mask.model_dump(mode="json"),
                "batch_size": site.batch_size,
            }
        )
    test = config.to_dict()
    test["sites"] = sites
    return test


def gains(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per site: its own model's PSNR and SSIM minus the zero-filled input's on the same test data, and,
    where the per-volume scores are there, the 95 % Student-t half-width of that gain over the test
    volumes (None with one volume) and their number."""
    from utils.stats import mean_interval

    out = {}
    for site in results["test_sites"]:
        model, zf = results["cross_site"][site][site], results["zero_filled"][site]
        out[site] = {f"{k}_gain": model[k] - zf[k] for k in ("psnr", "ssim")} | {
            f"{k}_zero_filled": zf[k] for k in ("psnr", "ssim")
        }
        volumes = (results.get("own_volumes") or {}).get(site)
        if volumes:
            out[site]["volumes"] = len(volumes)
            for k in ("psnr", "ssim"):
                differences = [v["model"][k] - v["zero_filled"][k] for v in volumes.values()]
                half = mean_interval(differences).half_width
                out[site][f"{k}_gain_ci"] = None if np.isnan(half) else half
    return out


def verdict(gain: dict[str, Any]) -> str:
    """Whether a site's model beats zero-filled in both PSNR and SSIM: "yes" / "**no**" when both
    intervals (or, without them, both means) are on one side of zero, "not detectable" when an interval
    holds zero."""
    bounds = []
    for k in ("psnr", "ssim"):
        mean, half = gain[f"{k}_gain"], gain.get(f"{k}_gain_ci")
        bounds.append((mean - half, mean + half) if half is not None else (mean, mean))
    if all(low > 0 for low, _ in bounds):
        return "yes"
    if any(high < 0 for _, high in bounds):
        return "**no**"
    return "not detectable"


def _gain_cell(gain: dict[str, Any]) -> str:
    parts = []
    for k, unit, digits in (("psnr", " dB", 2), ("ssim", "", 3)):
        half = gain.get(f"{k}_gain_ci")
        interval = f" ± {half:.{digits}f}" if half is not None else ""
        parts.append(f"{gain[f'{k}_gain']:+.{digits}f}{interval}{unit}")
    count = f" ({gain['volumes']} vol.)" if "volumes" in gain else ""
    return " / ".join(parts) + count


def table(simulated: dict, real: dict) -> str:
    """Markdown: per site, the gains on the simulated test split and on the real volumes side by side,
    each ± its 95 % interval over the test volumes."""
    from utils.tables import markdown

    rows = [
        [site, _gain_cell(simulated[site]), _gain_cell(real[site]), verdict(real[site])]
        for site in simulated
        if site in real
    ]
    header = [
        "site",
        "simulated test: PSNR / SSIM gain",
        "real volumes: PSNR / SSIM gain",
        "beats zero-filled on the real volumes",
    ]
    return markdown(header, rows)


def existing_or_new_run(config_path: str, overrides: list[str]) -> Any:
    """The config to test: a finished run of exactly this config is reused; train.py's rule refuses a
    directory that holds an unfinished run (or a finished one of another config) rather than replacing it."""
    from assembly.config import config_differences, load_config
    from assembly.setup import holds_run
    from utils.errors import UserError

    config = load_config(config_path, overrides)
    run_dir = config.run_dir
    if (run_dir / "results.json").is_file() and (run_dir / "config.yaml").is_file():
        saved = load_config(run_dir / "config.yaml")
        placed = saved.model_copy(update={"output_dir": config.output_dir, "name": config.name})
        differences = config_differences(placed, config)
        if differences:
            raise UserError(
                f"{run_dir} holds a finished run of another config ({'; '.join(differences)}): test it with "
                "--run, or choose another name=..."
            )
    elif holds_run(run_dir):
        raise UserError(
            f"{run_dir} already holds an unfinished run: finish it (train.py --resume {run_dir}) or replace "
            "it (train.py --overwrite), then test it with --run; or choose another name=..."
        )
    return config


def main(argv: list[str] | None = None) -> int:
    """Entry point: train (or load) the federation, write the real sites, evaluate both, tabulate."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", help="an existing run of the federation (default: train --config first)")
    parser.add_argument(
        "--config", help=f"config to train when --run is not given (default: {DEFAULT_CONFIG})"
    )
    parser.add_argument(
        "--volumes",
        choices=sorted(VOLUME_SETS),
        default="test",
        help="test: the real volumes of the final measurement (default); tuning: a separate real set for "
        "tuning the simulator without looking at the test volumes",
    )
    parser.add_argument("--out", help="output directory (default: <run>/realism, or realism-tuning)")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value", help="overrides of --config")
    args = parser.parse_args(argv)

    def job() -> None:
        import evaluate
        from assembly.build import Builder
        from assembly.config import validate_config
        from assembly.evaluation import load_run
        from utils.errors import UserError
        from utils.lock import lock_run
        from utils.paths import check_writable_dir

        start = time.perf_counter()
        if args.run:
            if args.config or args.overrides:
                given = " ".join(([f"--config {args.config}"] if args.config else []) + args.overrides)
                raise UserError(f"--run: {given} would be ignored; a run is tested with its own config")
            run_dir, config = Path(args.run), None
        else:
            config = existing_or_new_run(args.config or DEFAULT_CONFIG, args.overrides)
            run_dir = config.run_dir
        default_out = "realism" if args.volumes == "test" else "realism-tuning"
        out = Path(args.out) if args.out else run_dir / default_out
        check_writable_dir(out, "--out" if args.out else "--run" if args.run else "output_dir")
        lock_run(out, other="give another --out")  # one transfer check writes a folder at a time
        if config is not None and not (run_dir / "results.json").is_file():
            Builder(config).run().run()
        trained = load_run(run_dir)
        volumes = VOLUME_SETS[args.volumes]
        real_config = validate_config(write_real_sites(trained.config, out / "real_volumes", volumes))
        simulated = gains(evaluate.evaluate(trained, trained.config, out / "simulated", log=lambda _: None))
        real = gains(evaluate.evaluate(trained, real_config, out / "real", log=lambda _: None))
        report = (
            f"# Transfer of {run_dir}: gain over zero-filled, simulated test split vs real volumes "
            f"({args.volumes} set: {', '.join(volumes)})\n\n"
            + table(simulated, real)
            + "\n"
        )
        from utils.io import atomic_write_text

        atomic_write_text(out / "realism.md", report)
        atomic_write_text(out / "realism.json", json.dumps({"simulated": simulated, "real": real}, indent=2))
        print(report)
        print(f"wrote {out}/realism.md and realism.json [{time.perf_counter() - start:.0f} s]")

    from utils.cli import run_cli

    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
