"""Run several algorithms and FedMRI ablations on the same data and schedule, over one or more seeds,
then tabulate and plot them.

    python compare.py --config configs/default.yaml --algorithms fedmri,fedavg,fedprox,singleset
    python compare.py --config configs/default.yaml --algorithms fedmri --ablations beta,negatives fl.rounds=5
    python compare.py --config configs/study.yaml --algorithms all --ablations contrastive --seeds 0,1,2 \\
        --name mystudy --results runs/mystudy/results --jobs 2   # RESULTS.md's: docs/results/study/run.sh
    python compare.py --report docs/results/study        # tables and figures again, from raw files only
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
(compare_report.py): comparison.md, comparison.csv, comparison.json and figures/ (psnr_per_site.png,
val_psnr.png, ablation_<kind>.png, and tsne.png: the paper's t-SNE panels of bottleneck features,
whose embeddings go to ``<results>/latent/``), and reconstructions.png and errors.png (the same test
slice of every site through every method), drawn from ``<results>/slices/``, where each finished
run of a compared method saves its reconstructions of those slices: the figures show the first seed
whose methods have all saved theirs.

Ablations (FedMRI variants): sharing (encoder / whole model / all but the 1x1 output conv, the authors'
``except_last`` / all but the last decoder stage, ours; each with the contrastive term), contrastive (with and without it), beta (1, 10, 100), negatives (all / self),
local_epochs (the config's E and 2E, or --local-epochs), domain (FedMRI and FedAvg with the image
U-Net and with the dual-domain cascade, model.kind=dual_domain), clipped (FedMRI with this project's
``fl.fedmri.variant=clipped`` contrastive term, not the paper's).
"""

from __future__ import annotations

import argparse
import heapq
import json
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.cli import run_cli

DEFAULT_CONFIG = "configs/default.yaml"
METRICS = ("nmse", "psnr", "ssim")


def labels() -> dict[str, str]:
    """Every algorithm ``fl.algorithm`` accepts (registered ones included), with its table label."""
    from fl.options import algorithm_label, algorithm_names

    return {name: algorithm_label(name) for name in algorithm_names()}


ABLATIONS = ("sharing", "contrastive", "beta", "negatives", "local_epochs", "domain", "clipped")
TITLES = {"domain": "image only vs dual domain (FedMRI and FedAvg)"}


@dataclass
class Variant:
    """One configuration to train: a label for the tables, a run name and its overrides."""

    label: str
    key: str
    overrides: list[str]
    families: list[str] = field(default_factory=list)  # "comparison" and/or ablation names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments: the config, what to compare, where to write, overrides."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML config (default: {DEFAULT_CONFIG})")
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
        "--name", default="comparison", help="output folder under output_dir (default: comparison)"
    )
    parser.add_argument(
        "--seeds",
        default="",
        help="comma-separated seeds: every variant trains once per seed (default: the config's seed)",
    )
    parser.add_argument(
        "--results",
        default="",
        help="folder of the raw result files, tables and figures (default: <output_dir>/<name>)",
    )
    parser.add_argument(
        "--report",
        default="",
        metavar="FOLDER",
        help="rebuild the tables and figures of FOLDER from its raw result files, without training",
    )
    parser.add_argument(
        "--first",
        default="",
        help="comma-separated variants (run names without -s<seed>, e.g. fedmri,fedavg) trained first, "
        "every seed of each; the rest follow seed by seed",
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
        default=1,
        help="runs trained at once, each in its own process with CPUs // jobs torch threads "
        "(OMP_NUM_THREADS, when set, fixes that number); default 1",
    )
    parser.add_argument("overrides", nargs="*", metavar="key.path=value", help="overrides for every run")
    return parser.parse_args(argv)


def _split(text: str, allowed: tuple[str, ...] | list[str], what: str) -> list[str]:
    from utils.errors import UserError

    items = [t.strip() for t in text.split(",") if t.strip()]
    if items == ["all"]:
        return list(allowed)
    unknown = [t for t in items if t not in allowed]
    if unknown:
        raise UserError(f"--{what}: unknown {', '.join(unknown)}; expected some of {', '.join(allowed)}")
    return items


def variants(
    algorithms: list[str], ablations: list[str], base: Any, local_epochs: list[int]
) -> list[Variant]:
    """The variants to train, in table order; FedMRI ablations override ``fl.fedmri.*``."""
    names = labels()
    out = [Variant(names[a], a, [f"fl.algorithm={a}"], ["comparison"]) for a in algorithms]
    fedmri = ["fl.algorithm=fedmri"]
    beta = base.fl.fedmri.beta
    for ablation in ablations:
        if ablation == "sharing":
            out += [
                Variant("share encoder (FedMRI)", "fedmri", fedmri + ["fl.fedmri.share=encoder"]),
                Variant("share whole model", "fedmri-share-whole", fedmri + ["fl.fedmri.share=whole"]),
                Variant(
                    "share all but the 1x1 head (except_last)",
                    "fedmri-share-all-but-conv",
                    fedmri + ["fl.fedmri.share=all_but_head", "fl.head=conv"],
                ),
                Variant(
                    "share all but the last decoder stage (ours)",
                    "fedmri-share-all-but-stage",
                    fedmri + ["fl.fedmri.share=all_but_head", "fl.head=stage"],
                ),
            ]
        elif ablation == "contrastive":
            with_con = beta if beta > 0 else 100.0
            out += [
                Variant(
                    f"with L_con (beta={with_con:g})",
                    f"fedmri-beta{with_con:g}",
                    fedmri + [f"fl.fedmri.beta={with_con}"],
                ),
                Variant("without L_con (beta=0)", "fedmri-beta0", fedmri + ["fl.fedmri.beta=0"]),
            ]
        elif ablation == "beta":
            out += [
                Variant(f"beta={b:g}", f"fedmri-beta{b:g}", fedmri + [f"fl.fedmri.beta={b}"])
                for b in (1, 10, 100)
            ]
        elif ablation == "negatives":
            out += [
                Variant(f"negatives: {n}", f"fedmri-negatives-{n}", fedmri + [f"fl.fedmri.negatives={n}"])
                for n in ("all", "self")
            ]
        elif ablation == "domain":
            out += [
                Variant(f"{names[a]} ({label})", f"{a}{suffix}", [f"fl.algorithm={a}", f"model.kind={kind}"])
                for a in ("fedmri", "fedavg")
                for kind, label, suffix in (("unet", "image", ""), ("dual_domain", "dual-domain", "-dual"))
            ]
        elif ablation == "clipped":
            out += [
                Variant(
                    "FedMRI, clipped L_con (ours)",
                    "fedmri-clipped",
                    fedmri + ["fl.fedmri.variant=clipped"],
                )
            ]
        elif ablation == "local_epochs":
            out += [
                Variant(f"E={e}", f"fedmri-e{e}", fedmri + [f"fl.local_epochs={e}"]) for e in local_epochs
            ]
        for v in out:
            if not v.families:
                v.families.append(ablation)
    return out


def _canonical(config_dict: dict[str, Any]) -> str:
    keep = {k: v for k, v in config_dict.items() if k not in ("name", "output_dir")}
    return json.dumps(keep, sort_keys=True)


def _saved_config(run_dir: Path) -> dict[str, Any] | None:
    """The config a run in ``run_dir`` was started with, read with today's schema (so keys added
    since the run, at their defaults, still compare equal); None if there is none or it is invalid."""
    import yaml

    from assembly.config import validate_config
    from utils.errors import UserError

    try:
        return validate_config(yaml.safe_load((run_dir / "config.yaml").read_text())).to_dict()
    except (OSError, ValueError, yaml.YAMLError, UserError):
        return None


def _is_complete(run_dir: Path, config_dict: dict[str, Any]) -> bool:
    """Whether ``run_dir`` holds finished results of exactly this config."""
    if _saved_config(run_dir) != config_dict:
        return False
    try:
        json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def _is_resumable(run_dir: Path, config_dict: dict[str, Any]) -> bool:
    """Whether ``run_dir`` holds an unfinished run of exactly this config with a completed round."""
    return (run_dir / "checkpoints" / "last.ckpt").is_file() and _saved_config(run_dir) == config_dict


def _finished(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a finished run's results (a clone of a study holds none)."""
    return (run_dir / "results.json").is_file()


def _raw_file_matches(path: Path, config: Any, overrides: list[str]) -> bool:
    """Whether ``path`` is a raw result file of a run with ``config``'s seed, algorithm, rounds and sites
    and the variant's ``overrides``."""
    try:
        raw = json.loads(path.read_text())
        return (
            raw["seed"] == config.seed
            and raw["algorithm"] == config.fl.algorithm
            and raw["overrides"] == list(overrides)
            and raw["rounds"] == config.fl.rounds
            and sorted(raw["sites"]) == sorted(s.name for s in config.sites)
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _rounds_done(run_dir: Path) -> int:
    """The last round with a validation row in ``run_dir/metrics.csv`` (0 when there is none)."""
    from utils.errors import UserError
    from utils.run_log import read_metrics

    try:
        rows = read_metrics(run_dir / "metrics.csv")
    except (OSError, UserError):
        return 0
    return max((int(row["round"]) for row in rows if row["split"] == "val" and row["round"]), default=0)


def _time_left(rounds_left: list[int], seconds_per_round: float, jobs: int) -> float:
    """Wall seconds until runs with ``rounds_left`` rounds each are done, trained in this order ``jobs``
    at a time (each run taking the first free slot), at ``seconds_per_round`` for one round of one run."""
    slots = [0.0] * max(jobs, 1)
    for rounds in rounds_left:
        heapq.heappush(slots, heapq.heappop(slots) + rounds * seconds_per_round)
    return max(slots)


def _minutes(seconds: float) -> str:
    seconds = int(round(seconds))
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def _seeds(text: str, default: int) -> tuple[list[int], bool]:
    """The seeds to train and whether they were asked for (run names then end in ``-s<seed>``)."""
    from utils.errors import UserError

    if not text.strip():
        return [default], False
    try:
        seeds = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UserError(f"--seeds: expected integers like 0,1,2 (got {text!r})") from None
    if not seeds or len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise UserError(f"--seeds: expected distinct non-negative integers (got {text!r})")
    return seeds, True


def run_all(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    """Train (or reuse) every variant and seed, keep each run's raw results, then write the tables and
    figures from them; returns the numbers of comparison.json."""
    import compare_report
    from assembly.config import load_config
    from utils.errors import UserError
    from utils.paths import check_path_text, check_writable_dir

    if args.report:
        defaults = vars(parse_args([]))
        given = [
            "overrides" if name == "overrides" else f"--{name.replace('_', '-')}"
            for name in REPORT_IGNORES
            if getattr(args, name) != defaults[name]
        ]
        if given:
            raise UserError(
                f"--report rebuilds {args.report} from its raw files alone; {', '.join(given)} "
                "would change nothing there (drop them, or train with them without --report)"
            )
        compare_report.write_report(args.report, log)
        return json.loads((Path(args.report) / "comparison.json").read_text())
    if args.name in ("", ".", "..") or "/" in args.name:
        raise UserError(f"--name: {args.name!r} must be one folder name under output_dir (no '/', not '..')")
    check_path_text(args.name, "--name")
    if args.results:
        check_writable_dir(args.results, "--results")
    if args.jobs < 1:
        raise UserError(f"--jobs: must be >= 1 (got {args.jobs})")
    base = load_config(args.config, args.overrides)
    algorithms = _split(args.algorithms, list(labels()), "algorithms")
    ablations = _split(args.ablations, ABLATIONS, "ablations")
    if not algorithms and not ablations:
        raise UserError("--algorithms/--ablations: nothing to compare; name at least one")
    try:
        local_epochs = [int(e) for e in args.local_epochs.split(",") if e.strip()] or [
            base.fl.local_epochs,
            2 * base.fl.local_epochs,
        ]
    except ValueError:
        raise UserError(f"--local-epochs: expected integers like 1,2 (got {args.local_epochs!r})") from None
    if any(e < 1 for e in local_epochs):
        raise UserError("--local-epochs: every value must be >= 1")
    seeds, seeded = _seeds(args.seeds, base.seed)
    root = Path(base.output_dir) / args.name
    check_writable_dir(root, "output_dir")
    runs_dir = root / "runs"
    results = Path(args.results) if args.results else root

    # Resolve every variant and seed; identical resolved configs train once under the first key.
    planned: dict[str, tuple[Any, Path]] = {}
    by_config: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    for variant in variants(algorithms, ablations, base, local_epochs):
        runs: dict[str, str] = {}
        for seed in seeds:
            overrides = [*args.overrides, *variant.overrides, *([f"seed={seed}"] if seeded else [])]
            canonical = _canonical(load_config(args.config, overrides).to_dict())
            if canonical not in by_config:
                key = f"{variant.key}-s{seed}" if seeded else variant.key
                while key in planned:
                    key += "_"
                config = load_config(args.config, [*overrides, f"name={key}", f"output_dir={runs_dir}"])
                by_config[canonical] = key
                planned[key] = (config, runs_dir / key)
            runs[str(seed)] = by_config[canonical]
        algorithm = planned[runs[str(seeds[0])]][0].fl.algorithm
        previous = next((r for r in rows if r["label"] == variant.label), None)
        if previous is None:
            rows.append(
                {"label": variant.label, "families": list(variant.families), "algorithm": algorithm,
                 "overrides": variant.overrides, "runs": runs}
            )  # fmt: skip
        else:
            previous["families"] += [f for f in variant.families if f not in previous["families"]]

    first = [k.strip() for k in args.first.split(",") if k.strip()]
    unknown = [k for k in first if not any(k == _variant_of(key) for key in planned)]
    if unknown:
        raise UserError(f"--first: no variant {', '.join(unknown)}; expected some of {', '.join(planned)}")

    manifest = {
        "command": _command(args),
        "config": str(args.config),
        "rounds": base.fl.rounds,
        "local_epochs": base.fl.local_epochs,
        "sites": [s.name for s in base.sites],
        "seeds": seeds,
        "ablations": ablations,
        "rows": rows,
    }
    from utils.io import atomic_write_text

    (results / "runs").mkdir(parents=True, exist_ok=True)
    atomic_write_text(results / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    if args.results and (rule := git_ignore_rule(results / "runs" / "run.json")):
        kept = results / "runs"
        log(f"warning: git ignores the raw results in {kept} ({rule}); they will not be committed")
    log(
        f"comparison {root}: {len(rows)} table rows x {len(seeds)} seed(s), {len(planned)} distinct runs of "
        f"{base.fl.rounds} rounds x {base.fl.local_epochs} local epochs on {len(base.sites)} sites; "
        f"raw results in {results}"
    )
    start, timed_seconds, timed_rounds = time.perf_counter(), 0.0, 0
    done: set[str] = set()
    # A run whose folder is gone (a fresh clone of a committed study) is not retrained when its raw
    # file in --results is still there and was made by this run's seed, algorithm, overrides and schedule.
    recorded: set[str] = set()
    todo: list[str] = []
    for k, (c, d) in planned.items():
        if args.force:
            todo.append(k)
        elif not _is_complete(d, config_dict := c.to_dict()):
            raw = results / "runs" / f"{k}.json"
            if not _is_resumable(d, config_dict) and _raw_file_matches(raw, c, _overrides_of(k, rows)):
                recorded.add(k)
            else:
                todo.append(k)
    # --first variants with all their seeds, then seed by seed: every other variant's first seed
    # finishes before any second one starts.
    def order(key: str) -> tuple[int, int]:
        variant = _variant_of(key)
        rank = first.index(variant) if variant in first else len(first)
        return rank, seeds.index(planned[key][0].seed) if planned[key][0].seed in seeds else 0

    todo.sort(key=order)
    number = {key: i for i, key in enumerate(planned, 1)}
    slices = FigureSlices(results, rows)

    def keep(key: str) -> dict[str, Any]:
        """The run's raw file and, for a method of the reconstruction figures, its slices; returns the
        raw record."""
        config, run_dir = planned[key]
        record = compare_report.run_record(
            run_dir, config.seed, config.fl.algorithm, _overrides_of(key, rows)
        )
        atomic_write_text(results / "runs" / f"{key}.json", json.dumps(record, indent=1) + "\n")
        slices.record(key, config, run_dir)
        return record

    def outputs(key: str) -> None:
        """Everything a finished run adds, written at once so that an interrupted study keeps it: the
        latent file of a t-SNE panel's run, and the tables and figures (the reconstruction figures once a
        seed's methods all have their slices)."""
        latent_files(results, planned, rows, log, only=key)
        compare_report.write_report(results, lambda line: log(line) if line.startswith("wrote ") else None)

    def finished(key: str, took: float) -> None:
        nonlocal timed_seconds, timed_rounds
        timing = keep(key).get("timing") or {}
        done.add(key)
        # Time left from the seconds per round measured so far (a resumed run counts only the rounds
        # it trained here) and the rounds each unfinished run still has, in flight or queued.
        if timing.get("rounds_timed"):
            timed_seconds += timing["seconds_per_round"] * timing["rounds_timed"]
            timed_rounds += timing["rounds_timed"]
        left = [k for k in todo if k not in done]
        rounds_left = [planned[k][0].fl.rounds - _rounds_done(planned[k][1]) for k in left]
        eta = ""
        if left and timed_rounds:
            seconds = _time_left(rounds_left, timed_seconds / timed_rounds, args.jobs)
            eta = f", about {_minutes(seconds)} left ({len(left)} run(s), {sum(rounds_left)} rounds)"
        so_far = _minutes(time.perf_counter() - start)
        log(f"[{number[key]}/{len(planned)}] {key}: done in {_minutes(took)}; {so_far} so far{eta}")
        outputs(key)

    for key, (_, run_dir) in planned.items():
        if key in recorded:
            raw = results / "runs" / f"{key}.json"
            log(f"[{number[key]}/{len(planned)}] {key}: kept from {raw} (no run folder)")
        elif key not in todo:
            keep(key)
            log(f"[{number[key]}/{len(planned)}] {key}: complete in {run_dir}, reused")
    if args.no_train and todo:
        log(f"--no-train: {len(todo)} run(s) left untrained: {', '.join(todo)}")
        todo = []
    if args.jobs > 1 and len(todo) > 1:
        _train_in_parallel(todo, planned, number, args, log, finished)
    else:
        for key in todo:
            config, run_dir = planned[key]
            log(f"[{number[key]}/{len(planned)}] {key}: training ({_what(config)}) -> {run_dir}")
            took = _train(
                config, run_dir, args.force, lambda line: log("    " + line.replace("\n", "\n    "))
            )
            finished(key, took)

    latent_files(results, planned, rows, log)
    compare_report.write_report(results, log)  # and printed
    return json.loads((results / "comparison.json").read_text())


REPORT_IGNORES = (
    "config", "algorithms", "ablations", "local_epochs", "name", "seeds", "results", "first", "force",
    "jobs", "overrides", "no_train",
)  # what --report cannot honour: it reads the folder's manifest.json and raw files only


def _variant_of(key: str) -> str:
    """The variant a run belongs to: its name less the ``-s<seed>`` suffix."""
    head, _, tail = key.rpartition("-s")
    return head if head and tail.isdigit() else key


def _overrides_of(key: str, rows: list[dict[str, Any]]) -> list[str]:
    """The overrides of the first row that trains ``key`` (the variant's, not the command line's)."""
    return next(r["overrides"] for r in rows if key in r["runs"].values())


def _command(args: argparse.Namespace) -> str:
    """The command line that made this comparison (without --force, --jobs and --report)."""
    return "python compare.py " + " ".join(
        shlex.quote(a)
        for a in [
            "--config",
            str(args.config),
            *(["--algorithms", args.algorithms] if args.algorithms else []),
            *(["--ablations", args.ablations] if args.ablations else []),
            *(["--local-epochs", args.local_epochs] if args.local_epochs else []),
            *(["--seeds", args.seeds] if args.seeds else []),
            *(["--name", args.name] if args.name != "comparison" else []),
            *(["--results", args.results] if args.results else []),
            *args.overrides,
        ]
    )


def git_ignore_rule(path: Path) -> str | None:
    """The .gitignore rule (``file:line: pattern``) that makes git ignore ``path``, or None when git keeps
    it, the path lies outside a repository or git is not installed. Raw results meant for the repository
    must not land under a rule meant for training outputs."""
    import subprocess

    path = path.resolve()
    folder = next((p for p in path.parents if p.is_dir()), None)
    try:
        found = subprocess.run(
            ["git", "check-ignore", "--verbose", "--no-index", str(path)],
            cwd=folder, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    if found.returncode != 0 or not found.stdout.strip():
        return None
    source, _, _ = found.stdout.strip().partition("\t")
    return source


def latent_files(
    results: Path, planned: dict[str, Any], rows: list[dict[str, Any]], log: Any, only: str | None = None
) -> None:
    """The t-SNE embedding and site separability of bottleneck features (latent.py) of every run of the
    paper's four t-SNE methods present (or of run ``only``), written once to
    ``<results>/latent/<run>.json``."""
    import compare_report
    from utils.io import atomic_write_text

    for title, algorithm, overrides in compare_report.TSNE_PANELS:
        row = next(
            (
                r
                for r in rows
                if compare_report.is_variant(r["algorithm"], r["overrides"], algorithm, overrides)
            ),
            None,
        )
        if row is None:
            continue
        unfinished = []
        for key in row["runs"].values():
            path = results / "latent" / f"{key}.json"
            if (only is not None and key != only) or path.is_file() or planned[key][0].model.kind != "unet":
                continue
            if not _finished(planned[key][1]):
                unfinished.append(key)
                continue
            from latent import latent_summary

            summary = latent_summary(planned[key][1], seed=0)
            atomic_write_text(path, json.dumps(summary) + "\n")
            log(f"{title}: bottleneck features of {key} embedded -> {path}")
        if unfinished:
            log(f"{title}: not embedded, no finished run folder: {', '.join(unfinished)}")


def _what(config: Any) -> str:
    return f"{config.fl.algorithm}, {config.fl.rounds} rounds"


def _train(config: Any, run_dir: Path, force: bool, log: Any) -> float:
    """Train one variant into ``run_dir``: continue it if it was cut short, else start it afresh."""
    from assembly.build import Builder

    run_start = time.perf_counter()
    run = Builder(config, log=log).run()
    if not force and _is_resumable(run_dir, config.to_dict()):
        run.resume()  # an interrupted comparison continues this run after its last completed round
    elif run_dir.exists():
        # Outputs of another config (or of a forced retrain) must not outlive this run's start:
        # an interruption would otherwise leave this config beside another run's results.json.
        log(f"replacing the earlier run in {run_dir}")
        shutil.rmtree(run_dir)
    run.run()
    return time.perf_counter() - run_start


def _train_worker(key: str, config_dict: dict[str, Any], run_dir: str, force: bool, threads: int) -> float:
    """One variant in a worker process; its log lines go to this process's stdout, prefixed."""
    import torch

    from assembly.config import validate_config

    _exit_with_parent()
    torch.set_num_threads(threads)

    def log(line: str) -> None:
        print("\n".join(f"    {key} | {part}" for part in line.split("\n")), flush=True)

    return _train(validate_config(config_dict), Path(run_dir), force, log)


def _exit_with_parent(poll_seconds: float = 2.0) -> None:
    """End this worker process when the comparison that started it is gone (killed, not interrupted
    from the terminal, which stops the whole process group): an orphan would go on training, and the
    next comparison would meet its run locks. Its run resumes after its last completed round."""
    import os
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(3)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _train_in_parallel(
    todo: list[str],
    planned: dict[str, tuple[Any, Path]],
    number: dict[str, int],
    args: argparse.Namespace,
    log: Any,
    finished: Any,
) -> None:
    """``--jobs`` worker processes (spawned: no state shared with this one) train the variants."""
    import multiprocessing
    import os
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    jobs = min(args.jobs, len(todo))
    threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or max(1, (os.cpu_count() or 1) // jobs)
    log(f"training {len(todo)} runs, {jobs} at a time, {threads} torch thread(s) each")
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    try:
        running = {}
        for key in todo:
            config, run_dir = planned[key]
            log(f"[{number[key]}/{len(planned)}] {key}: queued ({_what(config)}) -> {run_dir}")
            future = pool.submit(_train_worker, key, config.to_dict(), str(run_dir), args.force, threads)
            running[future] = key
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                finished(running.pop(future), future.result())  # a failed run raises here
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class FigureSlices:
    """Each finished run's reconstruction of the figure slices (the middle slice of every site's first
    test volume), saved to ``<results>/slices/`` as the run's raw file is kept; the sites are built once
    per data configuration and seed."""

    def __init__(self, results: Path, rows: list[dict[str, Any]]):
        import compare_report

        self.results = results
        self.keys = {key for row in compare_report.figure_rows(rows) for key in row["runs"].values()}
        self.sites: dict[str, Any] = {}

    def record(self, key: str, config: Any, run_dir: Path) -> None:
        """Save ``key``'s slices when it is one of the figures' runs."""
        if key not in self.keys or not _finished(run_dir):
            return
        import compare_report
        from assembly.build import quiet_lightning
        from assembly.evaluation import build_sites, figure_slice, load_run, new_module, reconstruct_slice

        quiet_lightning()
        setup = config.to_dict()
        data_key = json.dumps({k: setup[k] for k in ("seed", "data", "sites")}, sort_keys=True)
        if data_key not in self.sites:
            self.sites[data_key] = build_sites(config)
        sites = self.sites[data_key]
        trained = load_run(run_dir)
        columns, pictures = [], []
        for name, dm in sites.items():
            volume, index = figure_slice(dm)
            module = new_module(trained.config, trained.models[name])
            pictures.append(reconstruct_slice(module, dm, volume, index))
            columns.append(f"{name}: {volume}, slice {index}")
        recon, zero_filled, targets = ([p[k] for p in pictures] for k in ("recon", "zero_filled", "target"))
        compare_report.save_slices(self.results, key, config.seed, columns, recon, zero_filled, targets)


def main(argv: list[str] | None = None) -> int:
    """Entry point: train or reuse every variant, then write the comparison."""
    args = parse_args(argv)
    return run_cli(lambda: run_all(args))


if __name__ == "__main__":
    sys.exit(main())
