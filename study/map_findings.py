"""What the regime map says, in sentences built from its table: where FedMRI is ahead, behind or not
detectably different, which verdicts reverse between regimes, whether the conditions of the paper's
setting hold, and how many verdicts survive the corrections for testing many claims at once; a short
headline of the same for the README, and each seed's mean test PSNR per row.

Every number comes from the same seed-level comparisons as the table (:mod:`study.map_claims`), so the
sentences are rebuilt with it as each run lands and cannot drift from it.
"""

from __future__ import annotations

import numpy as np

from study.formats import seeds_count, signed
from study.map_claims import CLAIMS, Claim, Regime, RegimeMap, compare, paper_claim_tests, verdict
from study.map_controls import control_verdict
from study.rows import LEVEL, Row, site_means
from utils.stats import SeedComparison
from utils.tables import markdown

HOLDS, FAILS, NOT_DETECTABLE = "holds", "does not hold", "not detectable"

Cells = dict[tuple[str, str], SeedComparison | None]  # (claim text, regime key) -> its comparison


def _cells(spec: RegimeMap, by_regime: dict[str, dict[str, Row]]) -> Cells:
    return {
        (claim.text, regime.key): compare(by_regime[regime.key], claim.first, claim.second)
        for claim in CLAIMS
        for regime in spec.regimes
    }


def _amount(result: SeedComparison) -> str:
    return f"{signed(result.difference, 2)} dB ({seeds_count(result.difference.n)})"


def _in_regime(regime: Regime) -> str:
    return f"*{regime.title}*"


def _fedmri_claims() -> list[Claim]:
    """The paper's claims of the form "FedMRI beats a row"."""
    return [c for c in CLAIMS if c.first is None and not c.premise]


def _fedmri_against(spec: RegimeMap, cells: Cells, wanted: str) -> list[tuple[Regime, list[str]]]:
    """Per regime, the rows FedMRI is ``wanted`` against (holds: ahead of; does not hold: behind)."""
    out = []
    for regime in spec.regimes:
        found = [
            f"{claim.second} {_amount(result)}"
            for claim in _fedmri_claims()
            if (result := cells[claim.text, regime.key]) is not None and verdict(result) == wanted
        ]
        if found:
            out.append((regime, found))
    return out


def _by_verdict(spec: RegimeMap, cells: Cells, claim: Claim) -> str:
    """One claim across the regimes, grouped by verdict: ``holds in A +1.00 ± 0.20 dB (3 seeds); ...``."""
    parts = []
    for wanted in (HOLDS, FAILS, NOT_DETECTABLE, "no verdict (one seed)", "not run"):
        where = [
            f"{_in_regime(r)}" + (f" {_amount(x)}" if (x := cells[claim.text, r.key]) is not None else "")
            for r in spec.regimes
            if verdict(cells[claim.text, r.key]) == wanted
        ]
        if where:
            parts.append(f"{wanted} in {', '.join(where)}")
    return "; ".join(parts)


def _reversing(spec: RegimeMap, cells: Cells) -> list[Claim]:
    """The paper's claims that hold in one regime and do not hold in another."""
    return [
        claim
        for claim in CLAIMS
        if not claim.premise and {HOLDS, FAILS} <= {verdict(cells[claim.text, r.key]) for r in spec.regimes}
    ]


def _survivors(spec: RegimeMap, by_regime: dict[str, dict[str, Row]], level: float) -> tuple[int, list, list]:
    """(verdicts, those standing after Holm, after Benjamini-Hochberg) among the paper's claims."""
    decided = [t for t in paper_claim_tests(spec, by_regime) if verdict(t[2]) in (HOLDS, FAILS)]
    holm_kept = [t for t in decided if t[3] < level]
    bh_kept = [t for t in decided if t[4] < level]
    return len(decided), holm_kept, bh_kept


def _listed(tests: list) -> str:
    return "; ".join(
        f"{claim.short}: {verdict(result)} in {_in_regime(regime)}" for claim, regime, result, *_ in tests
    )


def findings_markdown(
    spec: RegimeMap,
    by_regime: dict[str, dict[str, Row]],
    level: float = LEVEL,
    controls: list[SeedComparison | None] | None = None,
) -> str:
    """``map.md``'s section "What the map says": the table's verdicts in sentences, and the controls
    across columns (``controls``: their results, in ``spec.controls``' order)."""
    cells = _cells(spec, by_regime)
    pct = f"{100 * level:g} %"
    lines = [
        "\n## What the map says\n",
        "Built from the table above and rebuilt with it (a verdict is the paired t-test over seeds at "
        f"{pct}, before the correction for testing many claims at once, given in the last point).\n",
    ]
    ahead = _fedmri_against(spec, cells, HOLDS)
    if ahead:
        where = "; ".join(f"in {_in_regime(r)}, of {', '.join(found)}" for r, found in ahead)
        lines.append(f"- **FedMRI is ahead** {where}.")
    else:
        lines.append(f"- **FedMRI is ahead of no row in any regime tried** ({len(spec.regimes)} regimes).")
    behind = _fedmri_against(spec, cells, FAILS)
    if behind:
        where = "; ".join(f"in {_in_regime(r)}, of {', '.join(found)}" for r, found in behind)
        lines.append(f"- **FedMRI is behind** {where}.")
    level_with = _fedmri_against(spec, cells, NOT_DETECTABLE)
    if level_with:
        where = "; ".join(f"in {_in_regime(r)}: {', '.join(found)}" for r, found in level_with)
        lines.append(f"- **Not detectably different from FedMRI** {where}.")
    for claim in CLAIMS:
        if claim.first is not None and not claim.premise:
            lines.append(f"- **{claim.short}**: {_by_verdict(spec, cells, claim)}.")
    reversing = _reversing(spec, cells)
    if reversing:
        lines.append(
            "- **Verdicts that reverse between regimes** (the claim holds in one regime and does not hold in "
            f"another): {len(reversing)}: " + "; ".join(c.short for c in reversing) + "."
        )
    else:
        lines.append("- **No verdict reverses between regimes** (no claim holds in one, fails in another).")
    for claim in CLAIMS:
        if claim.premise:
            lines.append(f"- **Condition: {claim.short}**: {_by_verdict(spec, cells, claim)}.")
    if spec.controls:
        done = [
            (c, x) for c, x in zip(spec.controls, controls or [None] * len(spec.controls)) if x is not None
        ]
        listed = "; ".join(f"{c.text}: {control_verdict(x)}, {_amount(x)}" for c, x in done)
        lines.append(
            f"- **Controls across columns** (ours; first − second): {listed}."
            if done
            else "- **Controls across columns** (ours): none has run yet."
        )
    count, holm_kept, bh_kept = _survivors(spec, by_regime, level)
    lines.append(
        f"- **Testing many claims at once**: of the {count} verdicts on the paper's claims, {len(holm_kept)} "
        "stand after Holm's correction (the chance of even one false verdict in the table kept at "
        f"{pct})" + (f": {_listed(holm_kept)}" if holm_kept else "") + f"; {len(bh_kept)} after "
        f"Benjamini-Hochberg's (the expected share of false verdicts kept at {pct})."
    )
    return "\n".join(lines) + "\n"


def headline_markdown(spec: RegimeMap, by_regime: dict[str, dict[str, Row]], level: float = LEVEL) -> str:
    """A short paragraph of the same for the README."""
    cells = _cells(spec, by_regime)
    counts = {
        wanted: sum(len(found) for _, found in _fedmri_against(spec, cells, wanted))
        for wanted in (HOLDS, FAILS, NOT_DETECTABLE)
    }
    ahead = _fedmri_against(spec, cells, HOLDS)
    where = (
        ": " + "; ".join(f"in {_in_regime(r)}, of {', '.join(found)}" for r, found in ahead) if ahead else ""
    )
    measured = sum(bool(by_regime[r.key]) for r in spec.regimes)
    regimes = f"{measured} regimes" + (
        f" with runs so far (of {len(spec.regimes)})" if measured < len(spec.regimes) else ""
    )
    text = (
        f"Over the map's {regimes}, FedMRI is ahead of another row in {counts[HOLDS]} "
        f"comparisons{where}; it is behind in {counts[FAILS]} and not detectably different in "
        f"{counts[NOT_DETECTABLE]} (paired t-test over seeds at {100 * level:g} %)."
    )
    learns = CLAIMS[0]
    failing = [r for r in spec.regimes if verdict(cells[learns.text, r.key]) == FAILS]
    if failing:
        text += " Its models do not beat their zero-filled input in " + ", ".join(
            f"{_in_regime(r)}: {_amount(cells[learns.text, r.key])}" for r in failing  # type: ignore[arg-type]
        ) + "."  # fmt: skip
    count, holm_kept, bh_kept = _survivors(spec, by_regime, level)
    text += (
        f" Of the {count} verdicts on the paper's claims, {len(holm_kept)} survive Holm's correction "
        f"(which bounds the chance of any false one) and {len(bh_kept)} Benjamini-Hochberg's (which "
        "bounds their expected share)."
    )
    return text + "\n"


def seeds_markdown(spec: RegimeMap, by_regime: dict[str, dict[str, Row]]) -> str:
    """Each regime's rows, seed by seed: the mean test PSNR over the sites, and FedMRI's zero-filled
    input's (the same volumes and masks as every row's of that seed)."""
    lines = [
        "\n## Each seed's mean test PSNR\n",
        "Per regime, each row's mean test PSNR over the four sites (dB; each site's mean over its test "
        "volumes) in every seed that has finished; the last row is FedMRI's zero-filled input.\n",
    ]
    for regime in spec.regimes:
        rows = by_regime[regime.key]
        if not rows:
            continue
        seeds = sorted({s for row in rows.values() for s in row.seeds})
        body = [
            [name, *[f"{np.mean([row.means[s][x]['psnr'] for x in row.sites]):.2f}" if s in row.means else "–"
                     for s in seeds]]
            for name, row in rows.items()
        ]  # fmt: skip
        if "FedMRI" in rows:
            fedmri = rows["FedMRI"]
            zero = {s: site_means(r, "zero_filled") for s, r in fedmri.records.items()}
            body.append(
                ["zero-filled input", *[f"{np.mean([zero[s][x]['psnr'] for x in fedmri.sites]):.2f}"
                                        if s in zero else "–" for s in seeds]]
            )  # fmt: skip
        lines += [f"\n### {regime.title}\n", markdown(["row", *[f"seed {s}" for s in seeds]], body)]
    return "\n".join(lines) + "\n"
