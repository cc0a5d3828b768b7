"""A study's options resolved into runs: every variant and seed as a config and a run folder (identical
configs train once), the manifest that tabulates them, and what each run folder already holds."""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study.records import MAX_JSON_BYTES, Manifest, ManifestRow
from study.variants import ABLATIONS, DEFAULT_BETAS, choose, labels, variants
from utils.bounds import parse_int, shown
from utils.errors import UserError
from utils.io import read_text

MAX_JOBS = 256  # runs trained at once, each a process
MAX_SEED = 2**31 - 1  # the config's own bound on seeds and counts

DEFAULT_CONFIG = "configs/default.yaml"


@dataclass
class StudyOptions:
    """What ``compare.py`` is asked to do (its command-line options, with the same defaults)."""

    config: str = DEFAULT_CONFIG
    algorithms: str = ""  # comma-separated, or "all"
    ablations: str = ""  # comma-separated, or "all"
    local_epochs: str = ""  # comma-separated local epochs of that ablation
    betas: str = ""  # comma-separated betas of the beta ablation; empty: 1, 10, 100
    name: str = "comparison"  # the study's folder under output_dir
    seeds: str = ""  # comma-separated; empty: the config's seed
    results: str = ""  # folder of the raw files, tables and figures; empty: <output_dir>/<name>
    report: str = ""  # a results folder to rebuild from its raw files, training nothing
    first: str = ""  # variants trained first, every seed of each
    seeds_of: list[str] = field(default_factory=list)  # "VARIANTS=SEEDS": fewer seeds for those variants
    force: bool = False
    no_train: bool = False
    jobs: int = 1
    overrides: list[str] = field(default_factory=list)


# What --report cannot honour: it reads the folder's manifest.json and raw files only.
REPORT_IGNORES = (
    "config", "algorithms", "ablations", "local_epochs", "betas", "name", "seeds", "results", "first",
    "seeds_of", "force", "jobs", "overrides", "no_train",
)  # fmt: skip


def check_report_only(options: StudyOptions) -> None:
    """With ``--report``, refuse every option that would choose or train runs, rather than ignore it."""
    defaults = StudyOptions()
    given = [
        "overrides" if name == "overrides" else f"--{name.replace('_', '-')}"
        for name in REPORT_IGNORES
        if getattr(options, name) != getattr(defaults, name)
    ]
    if given:
        raise UserError(
            f"--report rebuilds {options.report} from its raw files alone; {', '.join(given)} "
            "would change nothing there (drop them, or train with them without --report)"
        )


def command_line(options: StudyOptions) -> str:
    """The command line that made this study (without --force, --jobs and --report)."""
    return "python compare.py " + " ".join(
        shlex.quote(a)
        for a in [
            "--config",
            str(options.config),
            *(["--algorithms", options.algorithms] if options.algorithms else []),
            *(["--ablations", options.ablations] if options.ablations else []),
            *(["--local-epochs", options.local_epochs] if options.local_epochs else []),
            *(["--betas", options.betas] if options.betas else []),
            *(["--seeds", options.seeds] if options.seeds else []),
            *[a for text in options.seeds_of for a in ("--seeds-of", text)],
            *(["--name", options.name] if options.name != "comparison" else []),
            *(["--results", options.results] if options.results else []),
            *options.overrides,
        ]
    )


def parse_seeds(text: str, default: int, what: str = "--seeds") -> tuple[list[int], bool]:
    """The seeds to train and whether they were asked for (run names then end in ``-s<seed>``)."""
    if not text.strip():
        return [default], False
    seeds = [parse_int(t, what, 0, MAX_SEED) for t in text.split(",") if t.strip()]
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"{what}: expected distinct non-negative integers (got {shown(text)})")
    return seeds, True


def parse_seeds_of(texts: list[str], seeds: list[int], seeded: bool) -> dict[str, list[int]]:
    """``--seeds-of VARIANTS=SEEDS`` (repeatable): those variants train only those seeds, a subset of
    ``--seeds`` (e.g. the rows a study needs fewer seeds of)."""
    chosen: dict[str, list[int]] = {}
    for text in texts:
        names, sep, values = text.partition("=")
        variants_named = [n.strip() for n in names.split(",") if n.strip()]
        if not sep or not variants_named:
            raise UserError(
                f"--seeds-of: expected VARIANTS=SEEDS like centralized,fedper=0,1,2 (got {shown(text)})"
            )
        if not seeded:
            raise UserError("--seeds-of: name the study's seeds with --seeds first")
        subset, _ = parse_seeds(values, 0, "--seeds-of")
        outside = [s for s in subset if s not in seeds]
        if not values.strip() or outside:
            raise UserError(
                f"--seeds-of: seeds of {', '.join(variants_named)} must be some of --seeds "
                f"{','.join(map(str, seeds))} (got {shown(values)})"
            )
        for name in variants_named:
            if name in chosen:
                raise UserError(f"--seeds-of: {name} is given seeds twice")
            chosen[name] = [s for s in seeds if s in subset]  # in --seeds' order
    return chosen


def parse_local_epochs(text: str, base: Any) -> list[int]:
    """The local epochs of that ablation: ``text``'s, or the config's E and 2E."""
    epochs = [parse_int(e, "--local-epochs", 1, MAX_SEED) for e in text.split(",") if e.strip()] or [
        base.fl.local_epochs,
        2 * base.fl.local_epochs,
    ]
    return epochs


def parse_betas(text: str) -> list[float]:
    """The betas of the beta ablation: ``text``'s, or 1, 10 and 100."""
    try:
        betas = [float(b) for b in text.split(",") if b.strip()] or list(DEFAULT_BETAS)
    except ValueError:
        raise UserError(f"--betas: expected numbers like 25,100 (got {shown(text)})") from None
    if any(not math.isfinite(b) or b < 0 or b > 1e6 for b in betas) or len(set(betas)) != len(betas):
        raise UserError(f"--betas: expected distinct numbers between 0 and 1e6 (got {shown(text)})")
    return betas


@dataclass
class Plan:
    """A study resolved: each run's config and folder, in table order, and the manifest."""

    planned: dict[str, tuple[Any, Path]]  # run name -> (config, run folder)
    manifest: Manifest
    results: Path  # where the raw files, tables and figures go
    root: Path  # <output_dir>/<name>: the run folders' parent's parent
    seeds: list[int]
    first: list[str]  # variants trained first


def make_plan(options: StudyOptions) -> Plan:
    """Check the options and resolve every variant and seed into a run; raises :class:`UserError`
    naming the option before anything is written."""
    from assembly.config import load_config
    from utils.paths import check_path_text, check_writable_dir

    if options.name in ("", ".", "..") or "/" in options.name:
        raise UserError(
            f"--name: {options.name!r} must be one folder name under output_dir (no '/', not '..')"
        )
    check_path_text(options.name, "--name")
    if options.results:
        check_writable_dir(options.results, "--results")
    if options.jobs < 1:
        raise UserError(f"--jobs: must be >= 1 (got {options.jobs})")
    if options.jobs > MAX_JOBS:
        raise UserError(f"--jobs: at most {MAX_JOBS} runs at once (got {options.jobs})")
    base = load_config(options.config, options.overrides)
    algorithms = choose(options.algorithms, list(labels()), "algorithms")
    ablations = choose(options.ablations, ABLATIONS, "ablations")
    if not algorithms and not ablations:
        raise UserError("--algorithms/--ablations: nothing to compare; name at least one")
    local_epochs = parse_local_epochs(options.local_epochs, base)
    seeds, seeded = parse_seeds(options.seeds, base.seed)
    seeds_of = parse_seeds_of(options.seeds_of, seeds, seeded)
    root = Path(base.output_dir) / options.name
    check_writable_dir(root, "output_dir")
    chosen = variants(algorithms, ablations, base, local_epochs, parse_betas(options.betas))
    unknown = [k for k in seeds_of if k not in {v.key for v in chosen}]
    if unknown:
        expected = ", ".join(v.key for v in chosen)
        raise UserError(f"--seeds-of: no variant {', '.join(unknown)}; expected some of {expected}")
    planned, rows = _resolve(options, chosen, seeds, seeds_of, seeded, root)
    first = [k.strip() for k in options.first.split(",") if k.strip()]
    unknown = [k for k in first if not any(k == variant_of(key) for key in planned)]
    if unknown:
        raise UserError(f"--first: no variant {', '.join(unknown)}; expected some of {', '.join(planned)}")
    manifest = Manifest(
        command=command_line(options), config=str(options.config), rounds=base.fl.rounds,
        local_epochs=base.fl.local_epochs, sites=[s.name for s in base.sites], seeds=seeds,
        ablations=ablations, rows=rows,
    )  # fmt: skip
    results = Path(options.results) if options.results else root
    return Plan(planned, manifest, results, root, seeds, first)


def _resolve(
    options: StudyOptions,
    chosen: list[Any],
    seeds: list[int],
    seeds_of: dict[str, list[int]],
    seeded: bool,
    root: Path,
) -> tuple[dict[str, tuple[Any, Path]], list[ManifestRow]]:
    """Every variant and seed (``seeds_of``'s where it names the variant) as a config; identical
    resolved configs train once, under the first variant's run name. Variants of one label share a table
    row (its families merged)."""
    from assembly.config import load_config

    runs_dir = root / "runs"
    planned: dict[str, tuple[Any, Path]] = {}
    by_config: dict[str, str] = {}
    rows: list[ManifestRow] = []
    for variant in chosen:
        runs: dict[str, str] = {}
        its_seeds = seeds_of.get(variant.key, seeds)
        for seed in its_seeds:
            overrides = [*options.overrides, *variant.overrides, *([f"seed={seed}"] if seeded else [])]
            canonical = _canonical(load_config(options.config, overrides).to_dict())
            if canonical not in by_config:
                key = f"{variant.key}-s{seed}" if seeded else variant.key
                while key in planned:
                    key += "_"
                config = load_config(options.config, [*overrides, f"name={key}", f"output_dir={runs_dir}"])
                by_config[canonical] = key
                planned[key] = (config, runs_dir / key)
            runs[str(seed)] = by_config[canonical]
        algorithm = planned[runs[str(its_seeds[0])]][0].fl.algorithm
        previous = next((r for r in rows if r.label == variant.label), None)
        if previous is None:
            rows.append(
                ManifestRow(label=variant.label, families=list(variant.families), algorithm=algorithm,
                            overrides=variant.overrides, runs=runs)
            )  # fmt: skip
        else:
            previous.families += [f for f in variant.families if f not in previous.families]
    return planned, rows


def variant_of(key: str) -> str:
    """The variant a run belongs to: its name less the ``-s<seed>`` suffix."""
    head, _, tail = key.rpartition("-s")
    return head if head and tail.isdigit() else key


def overrides_of(key: str, rows: list[ManifestRow]) -> list[str]:
    """The overrides of the first row that trains ``key`` (the variant's, not the command line's)."""
    return next(r.overrides for r in rows if key in r.runs.values())


# -- what a run folder holds -----------------------------------------------------------------------------
def _canonical(config_dict: dict[str, Any]) -> str:
    keep = {k: v for k, v in config_dict.items() if k not in ("name", "output_dir")}
    return json.dumps(keep, sort_keys=True)


def _saved_config(run_dir: Path) -> dict[str, Any] | None:
    """The config a run in ``run_dir`` was started with, read with today's schema (so keys added
    since the run, at their defaults, still compare equal); None if there is none or it is invalid."""
    import yaml

    from assembly.config import validate_config

    try:
        text = read_text(run_dir / "config.yaml", "config", MAX_JSON_BYTES)
        return validate_config(yaml.safe_load(text)).to_dict()
    except (OSError, ValueError, RecursionError, yaml.YAMLError, UserError):
        return None


def is_complete(run_dir: Path, config_dict: dict[str, Any]) -> bool:
    """Whether ``run_dir`` holds finished results of exactly this config."""
    if _saved_config(run_dir) != config_dict:
        return False
    try:
        json.loads(read_text(run_dir / "results.json", "results", MAX_JSON_BYTES))
    except (OSError, ValueError, RecursionError, UserError):
        return False
    return True


def is_resumable(run_dir: Path, config_dict: dict[str, Any]) -> bool:
    """Whether ``run_dir`` holds an unfinished run of exactly this config with a completed round."""
    return (run_dir / "checkpoints" / "last.ckpt").is_file() and _saved_config(run_dir) == config_dict


def raw_file_matches(path: Path, config: Any, overrides: list[str]) -> bool:
    """Whether ``path`` is a raw result file of a run with ``config``'s seed, algorithm, rounds and sites
    and the variant's ``overrides``."""
    try:
        raw = json.loads(read_text(path, "raw results", MAX_JSON_BYTES))
        return (
            raw["seed"] == config.seed
            and raw["algorithm"] == config.fl.algorithm
            and raw["overrides"] == list(overrides)
            and raw["rounds"] == config.fl.rounds
            and sorted(raw["sites"]) == sorted(s.name for s in config.sites)
        )
    except (OSError, ValueError, KeyError, TypeError, RecursionError, UserError):
        return False


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
