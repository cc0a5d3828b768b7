"""Why a site's model loses to the zero-filled input on a real volume: where its error lies.

    python bench/realism_diagnose.py --run runs/default --site sms --volume s1045 --volume piesno
    python bench/realism_diagnose.py --run runs/default --site sms --volume s1045 --figure s1045.png

For each slice of each named real volume (bench/realism.py's sets; the volume fitted to the site's
matrix and pixel size as the transfer check fits it) the site's best model reconstructs the site's
zero-filled input, and the error of the model and of the zero-filled input against the real image is
split three ways:

- an intensity fit: the least-squares a x model + b against the target and the PSNR after it. A PSNR
  that the fit restores is a global scale or offset (e.g. a background the model makes darker than the
  scan's noise floor), not a loss of structure;
- the error's energy in k-space at low spatial frequencies (within ``--radius`` of the matrix from the
  centre, default 8 %) and at the rest: a model that raises the low band changed the image's contrast or
  background; one that raises the high band blurred or invented edges and texture.

Prints one line per slice and the means per volume; ``--figure`` draws one slice (``--slice``, default the
middle one): zero-filled input, model and target, their errors and the model's change to its input.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from utils.cli import ArgumentParser, path_arg, run_cli  # noqa: E402


@dataclass(frozen=True)
class SliceDiagnosis:
    """One slice: PSNR of the input, of the model and of the model after its best intensity fit; the fit
    (target ~ scale x model + offset); the error energy in the low and high band, input and model."""

    psnr_input: float
    psnr_model: float
    psnr_fitted: float
    scale: float
    offset: float
    low_input: float
    low_model: float
    high_input: float
    high_model: float


def psnr(image: np.ndarray, target: np.ndarray) -> float:
    """PSNR of one slice with the target's maximum as the peak: the project's metric
    (:func:`utils.metrics.psnr`) on a one-slice volume."""
    from utils.metrics import psnr as volume_psnr

    return volume_psnr(target[None], image[None])


def band_energies(error: np.ndarray, radius: float) -> tuple[float, float]:
    """The energy of ``error`` in k-space inside ``radius`` x the matrix from the centre, and outside it
    (their sum is the error's energy times the number of pixels: Parseval)."""
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(error))) ** 2
    rows, cols = np.indices(error.shape)
    distance = np.hypot(rows - error.shape[0] // 2, cols - error.shape[1] // 2)
    low = distance < radius * max(error.shape)
    return float(spectrum[low].sum()), float(spectrum[~low].sum())


def diagnose(
    zero_filled: np.ndarray, model: np.ndarray, target: np.ndarray, radius: float = 0.08
) -> SliceDiagnosis:
    """The error of ``model`` and of ``zero_filled`` against ``target`` (2D magnitudes), split as above."""
    design = np.stack([model.ravel(), np.ones(model.size)], axis=1)
    (scale, offset), *_ = np.linalg.lstsq(design, target.ravel(), rcond=None)
    fitted = (design @ np.array([scale, offset])).reshape(model.shape)
    low_input, high_input = band_energies(zero_filled - target, radius)
    low_model, high_model = band_energies(model - target, radius)
    return SliceDiagnosis(
        psnr(zero_filled, target), psnr(model, target), psnr(fitted, target), float(scale), float(offset),
        low_input, low_model, high_input, high_model,
    )  # fmt: skip


def line(name: str, d: SliceDiagnosis) -> str:
    """One printed line: PSNRs, the fit, and each band's error of the model relative to the input's."""
    low, high = d.low_model / max(d.low_input, 1e-30), d.high_model / max(d.high_input, 1e-30)
    return (
        f"{name}: PSNR {d.psnr_input:.2f} -> {d.psnr_model:.2f} dB (after a x model + b: "
        f"{d.psnr_fitted:.2f}; a = {d.scale:.3f}, b = {d.offset:+.4f}); error, model / input: "
        f"low band {low:.2f}x, high band {high:.2f}x"
    )


def mean_diagnosis(slices: list[SliceDiagnosis]) -> SliceDiagnosis:
    """The field-by-field mean over a volume's slices."""
    return SliceDiagnosis(
        *(float(np.mean([getattr(s, f) for s in slices])) for f in SliceDiagnosis.__dataclass_fields__)
    )


def reconstructions(trained: Any, data: Any, site: str, volume: str) -> list[dict[str, np.ndarray]]:
    """Every slice of ``volume`` of a real test site: zero-filled input, model and target."""
    from assembly.evaluation import new_module, reconstruct_slice

    module = new_module(trained.config, trained.models[site])
    found = next((v for v in data.datasets["test"].volumes if v.name == f"{volume}_real"), None)
    return [reconstruct_slice(module, data, found.name, i) for i in range(found.num_slices)]


def figure(path: Path, images: dict[str, np.ndarray], title: str) -> None:
    """Input, model and target; their errors; the model's change to its input (red: brighter)."""
    from utils.figures import plt

    zf, model, target = images["zero_filled"], images["recon"], images["target"]
    top, band = float(target.max()), 0.2 * float(target.max())
    fig, axes = plt.subplots(2, 3, figsize=(10, 7), constrained_layout=True)
    panels = [
        ("zero-filled input", zf, "gray", 0, top),
        ("model", model, "gray", 0, top),
        ("target (real scan)", target, "gray", 0, top),
        ("|input − target|", np.abs(zf - target), "magma", 0, band),
        ("|model − target|", np.abs(model - target), "magma", 0, band),
        ("model − input", model - zf, "bwr", -band, band),
    ]
    for ax, (label, image, cmap, low, high) in zip(axes.ravel(), panels):
        ax.imshow(image, cmap=cmap, vmin=low, vmax=high)
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=path_arg, required=True, help="run directory written by train.py")
    parser.add_argument("--site", required=True, help="the site whose model is diagnosed")
    parser.add_argument("--volume", action="append", required=True, help="a real volume by name (repeatable)")
    parser.add_argument(
        "--volumes", choices=("test", "tuning"), default="test", help="the real set they are in"
    )
    parser.add_argument(
        "--radius", type=float, default=0.08, help="the low band's radius, a fraction of the matrix"
    )
    parser.add_argument("--figure", type=path_arg, help="draw one slice of the first volume into this PNG")
    parser.add_argument("--slice", type=int, help="the slice drawn (default: the middle one)")
    args = parser.parse_args(argv)

    def job() -> None:
        import tempfile

        from realism_debian import available
        from realism_sites import write_real_sites
        from realism_volumes import VOLUME_SETS

        from assembly.config import validate_config
        from assembly.evaluation import build_sites, load_run
        from utils.errors import UserError

        if not 0 < args.radius < 0.5:
            raise UserError(f"--radius: {args.radius} is not between 0 and 0.5")
        known = VOLUME_SETS[args.volumes]
        for name in args.volume:
            if name not in known:
                raise UserError(f"--volume: {name!r} is not in the {args.volumes} set ({', '.join(known)})")
        trained = load_run(args.run)
        if args.site not in trained.models:
            raise UserError(
                f"--site: {args.site!r} is not a site of {args.run} ({', '.join(trained.models)})"
            )
        volumes = available({n: known[n] for n in args.volume})
        with tempfile.TemporaryDirectory() as folder:
            test = write_real_sites(trained.config, Path(folder), volumes)
            test["sites"] = [s for s in test["sites"] if s["name"] == args.site]
            if not test["sites"]:
                raise UserError(f"--site: {args.site!r} is not tested on real volumes (not a simulated site)")
            if not Path(test["sites"][0]["source"]["root"]).is_dir():
                raise UserError(
                    f"--site: {args.site!r} is tested on none of {', '.join(volumes)} (brain-only copies go "
                    "to skull-stripped sites only, whole heads to the others)"
                )
            sites = build_sites(validate_config(test))
            for name in volumes:
                if not any(v.name == f"{name}_real" for v in sites[args.site].datasets["test"].volumes):
                    print(f"{name}: not tested on site {args.site} (a brain-only copy, or a whole head on a "
                          "skull-stripped site)")  # fmt: skip
                    continue
                images = reconstructions(trained, sites[args.site], args.site, name)
                slices = [diagnose(i["zero_filled"], i["recon"], i["target"], args.radius) for i in images]
                for index, d in enumerate(slices):
                    print(line(f"{name} slice {index}", d))
                print(line(f"{name} (mean of {len(slices)} slices)", mean_diagnosis(slices)))
                if args.figure and name == next(iter(volumes)):
                    index = len(images) // 2 if args.slice is None else args.slice
                    if not 0 <= index < len(images):
                        raise UserError(f"--slice: {index} is not a slice of {name} (0-{len(images) - 1})")
                    figure(
                        Path(args.figure),
                        images[index],
                        f"{args.run}: site {args.site}, {name} slice {index}",
                    )
                    print(f"wrote {args.figure}")

    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
