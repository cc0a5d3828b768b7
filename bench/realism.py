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

The real volumes (``bench/realism_volumes.py``; their table, with provenance, licence, contrast,
matrix and field of view, is docs/results/realism/REAL_VOLUMES.md) are human brain scans shipped inside
packages: from PyPI, installed by ``requirements-dev.txt`` (dipy, fslpy, matplotlib, pydeface), and
from Debian 12, installed by ``apt-get install mricron-data insighttoolkit5-examples`` (or unpacked
with ``dpkg -x`` into the folder FEDMRI_DEBIAN_ROOT names); they are read from the installed files,
never downloaded. Without a Debian package, one line says so and the check goes on with the other
volumes. One of them (pydeface's) is a population average and labelled so. They are resampled to each
site's pixel size, centre-cropped or zero-padded to its matrix, scaled to [0, 1] and written as NIfTI
volumes, one test-only folder site per simulated site (``split: {test: 1}``,
``bench/realism_sites.py``); the skull-stripped site (``brats``) gets the skull-stripped volumes only,
and a whole-head site is not tested on a brain-only copy of a whole-head volume it already has.

Below the mean gains, the report gives the distribution over the real volumes: for each site's model,
on how many it beats zero-filled in PSNR and in SSIM, the worst volume of each, and every volume's
scores, with SSIM inside the head and in the background beside the whole-image SSIM (the reported
metric stays fastMRI's whole-image SSIM; the split is a diagnostic).

``--volumes tuning`` tests on a second, separate real set instead (nibabel's example EPI series, a 2 mm
T2*-weighted brain masked to the head's interior), so that the simulator can be tuned without looking
at the test volumes; the test volumes are for the final measurement.

Without --run, a finished run of the config (its results.json) is tested again without training; a run
directory that holds an unfinished run or a finished one of another config is refused, as train.py
refuses it (``train.py --resume`` finishes a run). Overrides apply to --config only: --run tests a run
with its own config.

Writes <out>/realism.md and realism.json (default <out>: <run>/realism, or
<run>/realism-tuning; the json holds every volume's scores) and each evaluation's outputs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

DEFAULT_CONFIG = "configs/default.yaml"

from realism_debian import available  # noqa: E402  (re-exported: the volumes at hand)
from realism_report import (  # noqa: E402  (re-exported: the report's tables)
    distribution,
    distribution_table,
    gains,
    table,
    verdict,
    volume_record,
    volumes_table,
)
from realism_sites import fit_to_site, write_real_sites  # noqa: E402  (re-exported)
from realism_volumes import (  # noqa: E402  (re-exported: the real volumes and their reading)
    AVERAGE,
    TEST_VOLUMES,
    TUNING_VOLUMES,
    VOLUME_SETS,
    RealVolume,
    package_folder,
    read_real,
)

__all__ = [
    "AVERAGE", "TEST_VOLUMES", "TUNING_VOLUMES", "VOLUME_SETS", "RealVolume", "available", "distribution",
    "distribution_table", "fit_to_site", "gains", "main", "own_model_records", "package_folder",
    "read_real", "table", "verdict", "volume_record", "volumes_table", "write_real_sites",
]  # fmt: skip


def own_model_records(trained: Any, real_config: Any) -> dict[str, list[dict[str, Any]]]:
    """Per site: each real volume under the site's own model, one record per volume
    (:func:`realism_report.volume_record`: whole-image PSNR and SSIM, SSIM in the head and in the
    background, of the model and of the zero-filled input). The volumes go through the same test step
    and volume metrics as evaluate.py's; this pass keeps the images, which evaluate.py does not."""
    from assembly.evaluation import build_sites, new_module, score_model

    records = {}
    for site, data in build_sites(real_config).items():
        module = new_module(trained.config, trained.models[site])
        per_volume = score_model(real_config, module, data)
        records[site] = [
            volume_record(_volume_name(name), scores, module.collector.volume(name))
            for name, scores in per_volume.items()
        ]
    return records


def _volume_name(name: str) -> str:
    """The real volume's name from its name in the folder source (``<volume>_real``)."""
    return name.removesuffix("_real")


def report(run_dir: Path, volumes: str, used: dict, simulated: dict, real: dict, records: dict) -> str:
    """realism.md: the mean gains, the distribution over the real volumes (``used``: those of the set
    at hand) and every volume's scores."""
    labels = {n: " (average)" for n, v in used.items() if v.kind == AVERAGE}
    left_out = [n for n in VOLUME_SETS[volumes] if n not in used]
    missing = f"; not installed: {', '.join(left_out)}" if left_out else ""
    return (
        f"# Transfer of {run_dir}: gain over zero-filled, simulated test split vs real volumes "
        f"({volumes} set: {', '.join(used)}{missing})\n\n"
        + table(simulated, real)
        + "\n## Over the real volumes, one at a time\n\n"
        "On how many real volumes each site's model beats the zero-filled input (strictly), and the "
        "volume where it gains least:\n\n"
        + distribution_table(records, labels)
        + "\nEvery volume: zero-filled → model. PSNR and whole-image SSIM are the reported metrics "
        "(fastMRI's); SSIM in the head and in the background are the same SSIM map averaged over the "
        "head's pixels and over the rest, a diagnostic; \"head\" is the head's share of the image.\n\n"
        + volumes_table(records, labels)
    )


def existing_or_new_run(config_path: str, overrides: list[str]) -> Any:
    """The config to test: a finished run of exactly this config is reused; train.py's rule refuses a
    directory that holds an unfinished run (or a finished one of another config) rather than replacing it."""
    from assembly.config import config_differences, load_config
    from assembly.run_folder import holds_run
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
        from assembly.setup import in_process
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
        volumes = available(VOLUME_SETS[args.volumes])  # one line for each Debian package not installed
        if config is not None and not (run_dir / "results.json").is_file():
            in_process(Builder(config)).run()
        trained = load_run(run_dir)
        real_config = validate_config(write_real_sites(trained.config, out / "real_volumes", volumes))
        simulated = gains(evaluate.evaluate(trained, trained.config, out / "simulated", log=lambda _: None))
        real = gains(evaluate.evaluate(trained, real_config, out / "real", log=lambda _: None))
        records = own_model_records(trained, real_config)
        text = report(run_dir, args.volumes, volumes, simulated, real, records)
        from utils.io import atomic_write_text

        atomic_write_text(out / "realism.md", text)
        summary = {"simulated": simulated, "real": real, "distribution": {
            site: distribution(r) for site, r in records.items()}, "volumes": records}  # fmt: skip
        atomic_write_text(out / "realism.json", json.dumps(summary, indent=2))
        print(text)
        print(f"wrote {out}/realism.md and realism.json [{time.perf_counter() - start:.0f} s]")

    from utils.cli import run_cli

    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
