"""Run several algorithms and FedMRI ablations on the same data and schedule, over one or more seeds,
then tabulate and plot them.

    python compare.py --config configs/default.yaml --algorithms fedmri,fedavg,fedprox,singleset
    python compare.py --config configs/default.yaml --algorithms fedmri --ablations beta,negatives fl.rounds=5
    python compare.py --config configs/study.yaml --algorithms all --ablations contrastive --seeds 0,1,2 \\
        --name mystudy --results runs/mystudy/results --jobs 2   # RESULTS.md's: docs/results/study/run.sh
    python compare.py --report docs/results/study        # tables and figures again, from raw files only
    python compare.py --map docs/results/map             # the regime map: the paper's claims per regime
    python compare.py --report docs/results/map          # every regime's tables and figures, then the map
    docs/results/study/run.sh --no-train                 # outputs of the runs finished so far, no training

Every variant is the config plus overrides, trained with train.py's code into
<output_dir>/<name>/runs/<variant>/ (``<variant>-s<seed>`` with ``--seeds``). ``--seeds`` changes the
initialisation, data order and masks of a run (the config's ``seed``); the simulated subjects stay the
same, as they are generated from each site's profile, not from the seed. A run whose results.json exists
and whose config.yaml equals the variant's resolved config is reused, and one that was interrupted
continues after its last completed round, so an interrupted comparison picks up where it stopped
(--force retrains from scratch).

As each run finishes, its per-volume test metrics, validation curve, traffic and time go to a small raw
file, ``<results>/runs/<run>.json`` (``--results``, default <output_dir>/<name>), beside
``<results>/manifest.json``; every table and figure is rebuilt from those files alone
(study/): comparison.md, comparison.csv, comparison.json and figures/ (psnr_per_site.png,
val_psnr.png, ablation_<kind>.png, and tsne.png: the paper's t-SNE panels of bottleneck features,
whose embeddings go to ``<results>/latent/``), and reconstructions.png and errors.png (the same test
slice of every site through every method), drawn from ``<results>/slices/``, where each finished
run of a compared method saves its reconstructions of those slices: the figures show the first seed
whose methods have all saved theirs.

Ablations (FedMRI variants): sharing (encoder / whole model / all but the 1x1 output conv, the authors'
``except_last`` / all but the last decoder stage, ours; each with the contrastive term), contrastive
(with and without it), beta (1, 10, 100), negatives (all / self), local_epochs (the config's E and 2E,
or --local-epochs), domain (FedMRI and FedAvg with the image U-Net and with the dual-domain cascade,
model.kind=dual_domain), clipped (FedMRI with this project's ``fl.fedmri.variant=clipped`` contrastive
term, not the paper's).
"""

from __future__ import annotations

import argparse
import sys

from assembly.keys import OptionsAction
from study.plan import StudyOptions
from study.runner import run_all
from study.variants import ABLATIONS
from utils.cli import ArgumentParser, path_arg, run_cli

DEFAULTS = StudyOptions()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments: the config, what to compare, where to write, overrides."""
    parser = ArgumentParser(description=__doc__)
    parser.add_argument(
        "--config", type=path_arg, default=DEFAULTS.config, help=f"YAML config (default: {DEFAULTS.config})"
    )
    parser.add_argument(
        "--algorithms",
        default="",
        help="comma-separated algorithms, or 'all' (every registered one: "
        "fedmri, fedavg, fedprox, ..., centralized, transfer)",
    )
    parser.add_argument(
        "--ablations",
        default="",
        help="comma-separated FedMRI ablations, or 'all' (" + ", ".join(ABLATIONS) + ")",
    )
    parser.add_argument("--local-epochs", default="", help="local epochs for that ablation, e.g. 1,2,5")
    parser.add_argument(
        "--betas", default="", help="betas of the beta ablation, e.g. 25,100 (default 1,10,100)"
    )
    parser.add_argument(
        "--name", default=DEFAULTS.name, help=f"output folder under output_dir (default: {DEFAULTS.name})"
    )
    parser.add_argument(
        "--seeds",
        default="",
        help="comma-separated seeds: every variant trains once per seed (default: the config's seed)",
    )
    parser.add_argument(
        "--results",
        type=path_arg,
        default=None,
        help="folder of the raw result files, tables and figures (default: <output_dir>/<name>)",
    )
    parser.add_argument(
        "--report",
        type=path_arg,
        default=None,
        metavar="FOLDER",
        help="rebuild the tables and figures of FOLDER from its raw result files, without training; a "
        "regime map's folder (with regimes.yaml): every regime's study folder, then the map",
    )
    parser.add_argument(
        "--map",
        type=path_arg,
        default=None,
        metavar="FOLDER",
        help="rebuild the regime map of FOLDER (its regimes.yaml names each regime's results folder): "
        "map.md, map.json and figures/map.png, from the raw files alone",
    )
    _add_training_options(parser)
    parser.add_argument("overrides", nargs="*", metavar="key.path=value", help="overrides for every run")
    parser.add_argument("--options", action=OptionsAction)
    args = parser.parse_args(argv)
    for folder in ("results", "report", "map"):  # given, never empty (path_arg); absent, ""
        setattr(args, folder, getattr(args, folder) or "")
    return args


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    """The options that choose which runs train, in what order and how many at once."""
    parser.add_argument(
        "--first",
        default="",
        help="comma-separated variants (run names without -s<seed>, e.g. fedmri,fedavg) trained first, "
        "every seed of each; the rest follow seed by seed",
    )
    parser.add_argument(
        "--seeds-of",
        action="append",
        default=[],
        metavar="VARIANTS=SEEDS",
        help="train those variants on only those of --seeds (repeatable), e.g. centralized,fedper=0,1,2",
    )
    parser.add_argument("--force", action="store_true", help="retrain runs that are already complete")
    parser.add_argument(
        "--no-train",
        action="store_true",
        help="train nothing: keep the raw files of the runs already finished, embed their latent "
        "features, draw the figures their run folders allow and write the tables (the runs still missing "
        "are listed as not finished)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=DEFAULTS.jobs,
        help="runs trained at once, each in its own process with CPUs // jobs torch threads "
        "(OMP_NUM_THREADS, when set, fixes that number); default 1",
    )


def study_options(argv: list[str] | None = None) -> StudyOptions:
    """The command line as the study's options (``--map`` aside)."""
    args = vars(parse_args(argv))
    args.pop("map")
    return StudyOptions(**args)


def main(argv: list[str] | None = None) -> int:
    """Entry point: train or reuse every variant, then write the comparison; or, with ``--map``, rebuild
    a regime map from its studies' raw files."""
    args = parse_args(argv)
    from study.regime_map import is_map_folder, write_map, write_map_report

    flag = "map" if args.map else "report" if args.report and is_map_folder(args.report) else None
    if flag:
        from utils.errors import UserError

        def rebuild() -> None:
            folder, defaults = getattr(args, flag), vars(parse_args([]))
            given = sorted(k for k, v in vars(args).items() if k != flag and v != defaults[k])
            if given:
                raise UserError(f"--{flag} rebuilds {folder} from raw files alone; drop {', '.join(given)}")
            (write_map if flag == "map" else write_map_report)(folder)

        return run_cli(rebuild)
    options = study_options(argv)
    return run_cli(lambda: run_all(options))


if __name__ == "__main__":
    sys.exit(main())
