"""Transfer check: do the simulated sites teach a model something true about real MR images?

    python bench/realism.py                          # trains configs/default.yaml (runs/default), then tests
    python bench/realism.py --run runs/default       # tests an existing run of the default federation
    python bench/realism.py --config configs/default.yaml source_overrides...

Each site's model (the run's best checkpoint of that site) is tested twice, with the site's own mask and
matrix size: on its simulated test split, and on real brain MR volumes that no training or tuning saw.
The table gives, per site, the gain over the zero-filled input in PSNR and SSIM on both, side by side.

The real volumes are the human brain scans shipped inside the ``dipy`` wheel (``dipy/data/files``; a
development requirement, read from the installed package, never downloaded): a skull-stripped
T1-weighted slice (``t1_coronal_slice.npy``, 256 x 256), the b=0 (T2-weighted) volumes of three
diffusion scans (``S0_10slices.nii.gz`` 128 x 128 x 10 skull-stripped, ``aniso_vox.nii.gz``
58 x 58 x 24 and ``test_piesno.nii.gz`` 96 x 96 x 14 with the head and background). They are
resampled to each site's pixel size, centre-cropped or zero-padded to its matrix, scaled to [0, 1] and
written as NIfTI volumes, one test-only folder site per simulated site (``split: {test: 1}``); the
skull-stripped site (``brats``) gets the skull-stripped volumes only.

Without --run, a finished run of the config (its results.json) is tested again without training; a run
directory that holds an unfinished run or a finished one of another config is refused, as train.py
refuses it (``train.py --resume`` finishes a run). Overrides apply to --config only: --run tests a run
with its own config.

Writes <out>/realism.md and realism.json (default <out>: <run>/realism) and each evaluation's outputs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_CONFIG = "configs/default.yaml"

# name -> (file under dipy/data/files, in-plane pixel mm, skull-stripped, slices kept [start, stop))
REAL_VOLUMES: dict[str, tuple[str, float, bool, tuple[int, int] | None]] = {
    "t1slice": ("t1_coronal_slice.npy", 1.0, True, None),
    "s0": ("S0_10slices.nii.gz", 2.0, True, None),
    "aniso": ("aniso_vox.nii.gz", 4.0, False, (4, 20)),
    "piesno": ("test_piesno.nii.gz", 2.5, False, (2, 12)),
}


def dipy_files() -> Path:
    """``dipy/data/files`` of the installed dipy package (found without importing dipy)."""
    from utils.errors import UserError

    spec = importlib.util.find_spec("dipy")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the real test volumes ship with 'dipy'; pip install -r requirements-dev.txt")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "files"


def read_real(name: str, folder: Path) -> np.ndarray:
    """One real volume as (slices, H, W) float32 magnitudes, axial, in its stored orientation."""
    import nibabel as nib

    filename, _, _, keep = REAL_VOLUMES[name]
    path = folder / filename
    if path.suffix == ".npy":
        data = np.load(path)[..., None]
    else:
        data = np.asarray(nib.load(path).dataobj, dtype=np.float32)
        data = data[..., 0] if data.ndim == 4 else data
    if keep is not None:
        data = data[:, :, keep[0] : keep[1]]
    return np.ascontiguousarray(np.abs(np.moveaxis(data, -1, 0)).astype(np.float32))


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


def write_real_sites(config: Any, folder: Path) -> dict:
    """Write each site's real test volumes under ``folder/<site>/`` and return the test config dict."""
    import nibabel as nib

    from data.simulation import PROFILES

    files = dipy_files()
    sites = []
    for site in config.sites:
        source = site.source
        if source.kind != "synthetic":
            continue
        profile = PROFILES[source.profile]
        root = folder / site.name
        for name, (_, pixel_mm, stripped, _) in REAL_VOLUMES.items():
            if profile.skull_stripped and not stripped:
                continue
            volume = fit_to_site(read_real(name, files), pixel_mm, profile.fov_mm / source.size, source.size)
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


def gains(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per site: its own model's PSNR and SSIM minus the zero-filled input's on the same test data."""
    out = {}
    for site in results["test_sites"]:
        model, zf = results["cross_site"][site][site], results["zero_filled"][site]
        out[site] = {f"{k}_gain": model[k] - zf[k] for k in ("psnr", "ssim")} | {
            f"{k}_zero_filled": zf[k] for k in ("psnr", "ssim")
        }
    return out


def table(simulated: dict, real: dict) -> str:
    """Markdown: per site, the gains on the simulated test split and on the real volumes side by side."""
    from utils.tables import markdown

    rows = [
        [
            site,
            f"{simulated[site]['psnr_gain']:+.2f} dB / {simulated[site]['ssim_gain']:+.3f}",
            f"{real[site]['psnr_gain']:+.2f} dB / {real[site]['ssim_gain']:+.3f}",
            "yes" if real[site]["psnr_gain"] > 0 and real[site]["ssim_gain"] > 0 else "**no**",
        ]
        for site in simulated
        if site in real
    ]
    header = [
        "site",
        "simulated test: PSNR / SSIM gain",
        "real volumes: PSNR / SSIM gain",
        "beats zero-filled",
    ]
    return markdown(header, rows)


def existing_or_new_run(config_path: str, overrides: list[str]) -> Any:
    """The config to test: a finished run of exactly this config is reused; train.py's rule refuses a
    directory that holds an unfinished run (or a finished one of another config) rather than replacing it."""
    from config import config_differences, load_config
    from train import holds_run
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
    parser.add_argument("--out", help="output directory (default: <run>/realism)")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value", help="overrides of --config")
    args = parser.parse_args(argv)

    def job() -> None:
        import evaluate
        from build import Builder
        from config import validate_config
        from evaluation import load_run
        from utils.errors import UserError
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
        out = Path(args.out) if args.out else run_dir / "realism"
        check_writable_dir(out, "--out" if args.out else "--run" if args.run else "output_dir")
        if config is not None and not (run_dir / "results.json").is_file():
            Builder(config).run().run()
        trained = load_run(run_dir)
        real_config = validate_config(write_real_sites(trained.config, out / "real_volumes"))
        simulated = gains(evaluate.evaluate(trained, trained.config, out / "simulated", log=lambda _: None))
        real = gains(evaluate.evaluate(trained, real_config, out / "real", log=lambda _: None))
        report = (
            f"# Transfer of {run_dir}: gain over zero-filled, simulated test split vs real volumes\n\n"
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
