"""The regime map: which of the FedMRI paper's claims hold in which training regime.

A map folder holds ``regimes.yaml``, naming each regime (a data setting and an optimiser) and the
results folder of the study that measured it (``compare.py`` raw files, relative to the map folder):

    regimes:
      - key: ample-study
        title: ample data, study optimiser
        folder: ../study
        setting: 8 training subjects per site; RMSprop 1e-3, 60 rounds x 1 local epoch

and, under ``controls``, comparisons across two columns trained on the same data
(:mod:`study.map_controls`). :func:`write_map` reads every regime's raw files and writes ``map.md``
(each claim x each regime: the verdict, the seed-level difference with its 95 % interval and the seeds
it rests on; then "In short" and "What the map says" in sentences, the regimes, the many verdicts at
once, the controls across columns, the contrastive term in each regime and each seed's mean test PSNR),
``map.json`` (the same numbers, with the controls and the term's diagnostics) and ``figures/map.png``
(every method's mean-PSNR difference to FedMRI, with its interval, per regime).
``python compare.py --map DIR`` calls it. Statistics are those of the studies
(:func:`utils.stats.seed_comparison`): the trained model is the unit, and a verdict needs two seeds.
"""

from __future__ import annotations

import io
import json
import math
import textwrap
from collections.abc import Callable
from pathlib import Path

import yaml
from pydantic import ValidationError

from assembly.plain_yaml import check_plain_data, first_line, parse_yaml
from study.formats import seeds_needed_note
from study.map_claims import (
    CLAIMS,
    METHODS,
    ZERO_FILLED,
    Regime,
    RegimeMap,
    cell,
    compare,
    numbers,
    paper_claim_tests,
    verdict,
)
from study.map_controls import check_controls, control_result, controls_markdown, controls_summary
from study.map_findings import findings_markdown, headline_markdown, seeds_markdown
from study.records import MAX_JSON_BYTES, load_study, mismatch
from study.report import write_report
from study.rows import LEVEL, Row, find_row, reference_row, rows_of
from study.term_summary import term_markdown, term_summary
from utils.errors import UserError
from utils.io import atomic_write_bytes, atomic_write_text, read_text
from utils.stats import SeedComparison
from utils.tables import markdown

FILE = "regimes.yaml"


def read_map(folder: Path) -> RegimeMap:
    """``folder/regimes.yaml``, validated; one-line errors name the file and the key."""
    path = folder / FILE
    if not path.exists():
        raise UserError(f"{path}: cannot read it (not found)")
    try:
        data = parse_yaml(read_text(path, "regime map", MAX_JSON_BYTES))
        check_plain_data(data, str(path))  # no alias bomb, no nesting beyond a config's
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to be a regime map") from None
    except (yaml.YAMLError, ValueError) as err:
        raise UserError(f"{path}: not YAML ({first_line(err)})") from None
    try:
        return RegimeMap.model_validate(data)
    except ValidationError as err:
        raise UserError(f"{path}: {mismatch(err)}") from None


def regime_rows(folder: Path, regime: Regime) -> dict[str, Row]:
    """The map's rows found in a regime's study folder, by name ("FedMRI" for the reference); none
    while its study has not started (the folder is there, its ``manifest.json`` not yet): its cells
    read "not run". A folder that is not there at all is an error (a wrong path)."""
    study = folder / regime.folder
    if study.is_dir() and not (study / "manifest.json").exists():
        return {}
    manifest, runs = load_study(study)
    rows = rows_of(manifest, runs)
    out: dict[str, Row] = {}
    fedmri = reference_row(rows)
    if fedmri is not None:
        out["FedMRI"] = fedmri
    for name, (algorithm, overrides) in METHODS.items():
        row = find_row(rows, algorithm, overrides)
        if row is not None and not (fedmri is not None and row.same_runs(fedmri)):
            out[name] = row
    return out


def map_markdown(
    spec: RegimeMap, by_regime: dict[str, dict[str, Row]], controls: list[SeedComparison | None] | None = None
) -> str:
    """``map.md``: the claims x regimes table, its summaries (with the ``controls``' results), then each
    regime's setting and rows."""
    header = ["claim (first − second, mean PSNR over the four sites)"] + [r.title for r in spec.regimes]
    body = []
    for claim in CLAIMS:
        results = [compare(by_regime[r.key], claim.first, claim.second) for r in spec.regimes]
        if all(x is None for x in results):
            continue
        body.append([claim.text, *[cell(x) for x in results]])
    lines = [
        "# When does FedMRI help? The paper's claims in each regime\n",
        "Each cell: the verdict of the claim in that regime, then the difference (first − second, mean "
        "PSNR over the four sites) as the mean over seeds of each seed's mean over its test volumes, "
        "± its 95 % Student-t interval, the p-value of the paired t-test over seeds and the number of "
        "seeds. " + seeds_needed_note() + " Rebuilt from the raw files of each regime's study by "
        "`python compare.py --map <folder>`.\n",
        markdown(header, body),
        "\n## In short\n",
        headline_markdown(spec, by_regime),
        findings_markdown(spec, by_regime, controls=controls).strip() + "\n",
        "## The regimes\n",
    ]
    for regime in spec.regimes:
        rows = by_regime[regime.key]
        seeds = ", ".join(f"{name} {len(row.seeds)}" for name, row in rows.items())
        seeds = seeds or "none yet"
        lines.append(f"- **{regime.title}** (`{regime.folder}`): {regime.setting} Seeds per row: {seeds}.")
    return "\n".join(lines) + "\n" + multiplicity_markdown(spec, by_regime)


def multiplicity_markdown(spec: RegimeMap, by_regime: dict[str, dict[str, Row]], level: float = LEVEL) -> str:
    """The section on testing many claims at once: which verdicts survive each correction."""
    tests = paper_claim_tests(spec, by_regime)
    decided = sorted((t for t in tests if t[2].verdict in ("better", "worse")), key=lambda t: t[2].p_value)
    intro = (
        f"\n## Many verdicts at once\n\nThe table tests {len(tests)} cells of the paper's claims (those with "
        f"two seeds or more; the premises are conditions, not claims, and are left out), each at {level:g}: "
        'where no claim made any difference, about one cell in twenty would still read "holds" or '
        '"does not hold". Two corrections over all of them: Holm\'s keeps the chance of even one false '
        f"verdict in the whole table at {level:g}; Benjamini-Hochberg's keeps the expected share of false "
        f"ones among the verdicts at {level:g}. Each verdict of the table, with the adjusted p-values and "
        "whether it stands after each (yes: adjusted p below "
        f"{level:g}).\n"
    )
    if not decided:
        return intro + "\nNo cell of the paper's claims reaches a verdict yet.\n"
    header = ["claim", "regime", "verdict", "p", "Holm", "stands (Holm)", "B-H", "stands (B-H)"]
    body = [
        [claim.text, regime.title, verdict(result), f"{result.p_value:.2g}", f"{h:.3g}",
         "yes" if h < level else "no", f"{q:.3g}", "yes" if q < level else "no"]
        for claim, regime, result, h, q in decided
    ]  # fmt: skip
    kept = sum(h < level for *_, h, _ in decided), sum(q < level for *_, q in decided)
    return (
        intro + "\n" + markdown(header, body) + f"\n{len(decided)} verdicts; {kept[0]} stand after Holm's "
        f"correction, {kept[1]} after Benjamini-Hochberg's.\n"
    )


def map_summary(spec: RegimeMap, by_regime: dict[str, dict[str, Row]]) -> dict:
    """``map.json``: every claim's and every method's seed-level comparison, by regime."""
    out: dict = {"regimes": [r.model_dump() for r in spec.regimes], "claims": {}, "versus_fedmri": {}}
    for claim in CLAIMS:
        out["claims"][claim.text] = {
            r.key: _numbers(compare(by_regime[r.key], claim.first, claim.second)) for r in spec.regimes
        }
    for claim, regime, _, h, q in paper_claim_tests(spec, by_regime):
        out["claims"][claim.text][regime.key].update(holm_p_value=h, bh_p_value=q)
    for regime in spec.regimes:
        rows = by_regime[regime.key]
        out["versus_fedmri"][regime.key] = {
            name: _numbers(compare(rows, name, None)) for name in rows if name != "FedMRI"
        }
    return json.loads(json.dumps(out, allow_nan=True))


def _numbers(result: SeedComparison | None) -> dict | None:
    return numbers(result, verdict(result))


def map_figure(path: Path, spec: RegimeMap, by_regime: dict[str, dict[str, Row]]) -> None:
    """One panel per regime: each method's mean-PSNR difference to FedMRI with its seed-level interval
    (filled: detectable; open: not), so a reader sees where FedMRI leads (left of zero) and where not;
    the last line is the zero-filled input's, right of zero where FedMRI does not beat its own input."""
    from utils.figures import plt

    names = [n for n in METHODS if any(n in rows for rows in by_regime.values())]
    names += [ZERO_FILLED] if any("FedMRI" in rows for rows in by_regime.values()) else []
    fig, axes = plt.subplots(
        1, len(spec.regimes), figsize=(3.4 * len(spec.regimes) + 1.6, 0.45 * len(names) + 1.6),
        sharey=True, squeeze=False, constrained_layout=True,
    )  # fmt: skip
    for ax, regime in zip(axes[0], spec.regimes):
        rows = by_regime[regime.key]
        if not rows:  # the regime's study has not started
            ax.text(0.5, 0.5, "not run yet", ha="center", va="center", transform=ax.transAxes, color="0.5")
        for y, name in enumerate(names if rows else []):
            result = compare(rows, name, None) if name in rows or name == ZERO_FILLED else None
            if result is None:
                ax.text(  # mid-panel, whatever the panel's range of differences
                    0.5, y, "not run", ha="center", va="center", fontsize=7, color="0.5",
                    transform=ax.get_yaxis_transform(),
                )  # fmt: skip
                continue
            half = result.difference.half_width
            detected = result.verdict in ("better", "worse")
            ax.errorbar(
                result.difference.mean, y, xerr=half if math.isfinite(half) else None, fmt="o",
                color="C3" if result.difference.mean > 0 else "C0", mfc=None if detected else "white",
                capsize=3,
            )  # fmt: skip
        ax.axvline(0, color="0.3", lw=0.8)
        ax.set_title(textwrap.fill(regime.title, 40), fontsize=9)  # a long title on two lines
        ax.set_xlabel("method − FedMRI, mean PSNR (dB)")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(names)), names)
    axes[0][0].invert_yaxis()
    fig.suptitle(
        "Each method against FedMRI, per regime: 95 % interval over seeds\n"
        "red: ahead of FedMRI, blue: behind; open marker: not detectable",
        fontsize=10,
    )
    buffer = io.BytesIO()  # whole, then in place at once: a reader (a commit) never sees half a figure
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())


def write_map(folder: str | Path, log: Callable[[str], None] = print) -> str:
    """Rebuild ``map.md``, ``map.json`` and ``figures/map.png`` of a map folder from the raw files of its
    regimes' studies; returns the markdown. Everything is read before anything is written."""
    folder = Path(folder)
    spec = read_map(folder)
    keys = [r.key for r in spec.regimes]
    if len(set(keys)) != len(keys):
        raise UserError(f"{folder / FILE}: regimes.key: every key must be unique (got {keys})")
    check_controls(spec, str(folder / FILE))
    by_regime = {r.key: regime_rows(folder, r) for r in spec.regimes}
    controls = [control_result(c, by_regime, str(folder / FILE)) for c in spec.controls]
    terms = {
        r.key: {n: term_summary(row) for n, row in by_regime[r.key].items() if row.algorithm == "fedmri"}
        for r in spec.regimes
    }
    text = map_markdown(spec, by_regime, controls) + controls_markdown(spec, controls)
    text += term_markdown({r.key: r.title for r in spec.regimes}, terms) + seeds_markdown(spec, by_regime)
    data = {**map_summary(spec, by_regime), "controls": controls_summary(spec, controls), "term": terms}
    atomic_write_text(folder / "map.md", text)
    atomic_write_text(folder / "map.json", json.dumps(data, indent=1, sort_keys=True) + "\n")
    map_figure(folder / "figures" / "map.png", spec, by_regime)
    log(text)
    log(f"wrote {folder}/map.md, map.json and figures/map.png from {len(spec.regimes)} regime(s)")
    return text


def write_map_report(folder: str | Path, log: Callable[[str], None] = print) -> str:
    """Every table and figure of a map folder from the raw files alone: each regime's study folder's
    (:func:`study.report.write_report`; a study with no finished run yet is left as it is), then the
    map's (:func:`write_map`); returns the map's markdown."""
    folder = Path(folder)
    for regime in read_map(folder).regimes:
        study = folder / regime.folder
        if (study / "manifest.json").is_file() and any((study / "runs").glob("*.json")):
            write_report(study, log)
        else:
            log(f"{study}: no finished run yet; its column reads 'not run'")
    return write_map(folder, log)


def is_map_folder(folder: str | Path) -> bool:
    """Whether ``folder`` is a regime map's (it holds ``regimes.yaml``)."""
    return (Path(folder) / FILE).is_file()
