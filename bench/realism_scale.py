"""How a run's models fare as the real heads grow or shrink in the field of view: a scale sweep.

    python bench/realism_scale.py --run runs/default --volumes tuning
    python bench/realism_scale.py --run runs/default --scales 0.8,1,1.2,1.5 --site sms

Each real volume of the set (bench/realism.py's) is fitted to each site as the transfer check fits it,
with its pixel size multiplied by each scale: at 1.5 the head is 1.5 times as large in the site's matrix
(as a scan framed 1.5 times tighter at the same matrix), its structures wider in pixels and smoother
per pixel; at 0.8 it is smaller, with more background. For each site's own model the table gives the
mean gain over the zero-filled input (PSNR dB / SSIM, the project's per-volume metrics) and on how many
volumes it wins in both, at each scale. A simulator whose subjects cover the heads' sizes keeps the
gain positive across the scales; a gain that falls as the scale grows says the model adds structure
that a smoother image does not have.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from utils.cli import ArgumentParser, path_arg, run_cli  # noqa: E402


def parse_scales(text: str) -> list[float]:
    """'0.8,1,1.5' -> [0.8, 1.0, 1.5]; each scale must be positive."""
    from utils.errors import UserError

    try:
        scales = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--scales: {text!r} is not a comma-separated list of numbers") from None
    if not scales or any(not 0.1 <= s <= 4.0 for s in scales):
        raise UserError(f"--scales: {text!r} must list numbers between 0.1 and 4")
    return scales


def scaled(volumes: dict[str, Any], scale: float) -> dict[str, Any]:
    """The volumes with their pixel size times ``scale``: each head ``scale`` times as large in a site."""
    return {name: dataclasses.replace(v, pixel_mm=v.pixel_mm * scale) for name, v in volumes.items()}


def site_gains(config: Any, trained: Any, data: Any, site: str) -> list[dict[str, float]]:
    """Per real volume of a site: its model's PSNR and SSIM minus the zero-filled input's, from the
    project's test step and volume metrics (:func:`assembly.evaluation.score_model`)."""
    from assembly.evaluation import new_module, score_model

    scores = score_model(config, new_module(trained.config, trained.models[site]), data)
    return [{k: v["model"][k] - v["zero_filled"][k] for k in ("psnr", "ssim")} for v in scores.values()]


def cell(gains: list[dict[str, float]]) -> str:
    """One table cell: mean PSNR / SSIM gain and the wins in both metrics."""
    wins = sum(g["psnr"] > 0 and g["ssim"] > 0 for g in gains)
    psnr, ssim = np.mean([g["psnr"] for g in gains]), np.mean([g["ssim"] for g in gains])
    return f"{psnr:+.2f} / {ssim:+.3f} ({wins}/{len(gains)})"


def table(scales: list[float], rows: dict[str, dict[float, list[dict[str, float]]]]) -> str:
    """Markdown: a row per site, a column per scale."""
    head = "| site | " + " | ".join(f"x{s:g}" for s in scales) + " |"
    rule = "|---|" + "---:|" * len(scales)
    lines = [head, rule]
    for site, by_scale in rows.items():
        lines.append(f"| {site} | " + " | ".join(cell(by_scale[s]) for s in scales) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=path_arg, required=True, help="run directory written by train.py")
    parser.add_argument(
        "--volumes", choices=("test", "tuning"), default="tuning", help="the real set (default: tuning)"
    )
    parser.add_argument("--scales", default="0.8,1,1.2,1.5", help="head scales, comma-separated")
    parser.add_argument("--site", action="append", help="only this site (repeatable; default: every one)")
    args = parser.parse_args(argv)

    def job() -> None:
        import tempfile

        from realism_debian import available
        from realism_sites import write_real_sites
        from realism_volumes import VOLUME_SETS

        from assembly.config import validate_config
        from assembly.evaluation import build_sites, load_run
        from utils.errors import UserError

        scales = parse_scales(args.scales)
        trained = load_run(args.run)
        for site in args.site or []:
            if site not in trained.models:
                raise UserError(f"--site: {site!r} is not a site of {args.run} ({', '.join(trained.models)})")
        volumes = available(VOLUME_SETS[args.volumes])
        rows: dict[str, dict[float, list[dict[str, float]]]] = {}
        for scale in scales:
            with tempfile.TemporaryDirectory() as folder:
                test = write_real_sites(trained.config, Path(folder), scaled(volumes, scale))
                test["sites"] = [s for s in test["sites"] if not args.site or s["name"] in args.site]
                config = validate_config(test)
                for site, data in build_sites(config).items():
                    rows.setdefault(site, {})[scale] = site_gains(config, trained, data, site)
            print(f"scale {scale:g}: done", flush=True)
        print(f"\n{args.run}, {args.volumes} set: gain over the zero-filled input, PSNR dB / SSIM "
              "(volumes won in both), each head scaled in the site's matrix\n")  # fmt: skip
        print(table(scales, rows))

    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
