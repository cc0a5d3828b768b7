"""``claims.md``: each claim of the FedMRI paper, what the study measured and a verdict.

Verdicts come from the paired comparisons with FedMRI at the 5 % level, with the trained model (the
seed) as the unit: "holds" when the difference the paper reports is detected, "does not hold" when the
opposite one is, "not detectable" otherwise. One function per claim; each gives its table line
(claim, measured, verdict), or None when the study lacks the rows it needs.
"""

from __future__ import annotations

import math
from pathlib import Path

from study.formats import p_value, per_seed, seeds_count, seeds_needed_note, signed
from study.panels import latent_scores
from study.records import METRICS
from study.rows import LEVEL, Row, find_row, reference_row, site_means
from utils.stats import TOO_FEW_SEEDS, SeedComparison, mean_interval
from utils.tables import markdown

NEARLY_FAILS = 0.5  # "nearly fails" at a site: FedAvg keeps less than this share of FedMRI's gain
Line = list[str]


def verdict_word(
    result: SeedComparison | None, good: str = "worse", words: tuple[str, str] = ("holds", "does not hold")
) -> str:
    """holds / does not hold / not detectable for a claim that ``result``'s method is ``good``, from the
    seed-level test only (``words``: what to say when it is, and when the test says the opposite)."""
    if result is None:
        return "not measured"
    if result.verdict == TOO_FEW_SEEDS:
        return "no verdict (one seed)"
    if result.verdict == "no detectable difference":
        return "not detectable"
    return words[0] if result.verdict == good else words[1]


def _diff(result: SeedComparison | None, digits: int) -> str:
    if result is None:
        return "–"
    return (
        f"{signed(result.difference, digits)} (per seed {per_seed(result, digits)}; "
        f"p={p_value(result)}, {seeds_count(result.difference.n)})"
    )


def best_everywhere(rows: list[Row], fedmri: Row, sites: list[str]) -> Line | None:
    """FedMRI is best on every site in every metric: every (method, site, metric) pair against it."""
    compared = [r for r in rows if "comparison" in r.families and not r.same_runs(fedmri)]
    if not compared:
        return None
    counts = {"better": 0, "worse": 0, "no detectable difference": 0, TOO_FEW_SEEDS: 0}
    ahead: dict[str, list[str]] = {}
    for row in compared:
        for site in sites:
            for metric in METRICS:
                result = row.versus(fedmri, site, metric)
                if result is None:
                    continue
                counts[result.verdict] += 1
                if result.verdict == "better":
                    ahead.setdefault(row.label, []).append(f"{site} {metric.upper()}")
    total = sum(counts.values())
    if counts["better"]:
        verdict = "does not hold"
    elif counts["worse"] == total:
        verdict = "holds"
    elif counts[TOO_FEW_SEEDS] == total:
        verdict = "no verdict (one seed)"
    else:
        verdict = "not detectable"
    detail = "; ".join(f"{label}: {', '.join(where)}" for label, where in ahead.items())
    unseeded = f", {counts[TOO_FEW_SEEDS]} with one seed (no verdict)" if counts[TOO_FEW_SEEDS] else ""
    return [
        "FedMRI is best on every site in PSNR, SSIM and NMSE",
        f"of {total} (method, site, metric) pairs against FedMRI, {counts['worse']} worse, "
        f"{counts['better']} better, {counts['no detectable difference']} not detectable"
        + unseeded
        + (f". Better than FedMRI: {detail}" if detail else ""),
        verdict,
    ]


def worse_than(claim: str, row: Row | None, against: Row | None, what: str) -> Line | None:
    """A claim that ``row`` is worse than ``against`` over all sites, in PSNR and in SSIM."""
    if row is None or against is None:
        return None
    psnr, ssim = row.versus(against, "mean", "psnr"), row.versus(against, "mean", "ssim")
    return [
        claim,
        f"{what}, all sites: PSNR {_diff(psnr, 2)} dB, SSIM {_diff(ssim, 4)}",
        f"PSNR {verdict_word(psnr)}, SSIM {verdict_word(ssim)}",
    ]


WHOLE = "Sharing the whole model is worse than sharing the encoder (with the contrastive term on both)"
WHOLE_WITHOUT_TERM = (
    "Sharing the whole model is worse than sharing the encoder (without the term on both: FedAvg against "
    "FedMRI with beta = 0)"
)
EXCEPT_LAST = (
    "Sharing all but the 1x1 output conv (the authors' except_last) is worse than sharing the encoder"
)
ALL_BUT_STAGE = "(ours) Sharing all but the last decoder stage is worse than sharing the encoder"
NO_TERM = "Removing the contrastive term is worse"
Pair = tuple[str, Row | None, Row | None, str]  # claim, the row claimed worse, the row it is against, what


def sharing_and_term_pairs(rows: list[Row], fedmri: Row) -> list[Pair]:
    """What to share (the whole model, with and without the term; all but the head, two ways) and the
    contrastive term, each against the encoder-sharing FedMRI it departs from: (claim, row, against,
    what the difference is) for :func:`worse_than`."""
    beta0 = find_row(rows, "fedmri", ("fl.fedmri.beta=0",))
    return [
        (WHOLE, find_row(rows, "fedmri", ("fl.fedmri.share=whole",)), fedmri, "whole model − FedMRI"),
        (WHOLE_WITHOUT_TERM, find_row(rows, "fedavg"), beta0, "FedAvg − FedMRI beta = 0"),
        (
            EXCEPT_LAST,
            find_row(rows, "fedmri", ("fl.fedmri.share=all_but_head", "fl.head=conv")),
            fedmri,
            "all but the 1x1 conv − FedMRI",
        ),
        (
            ALL_BUT_STAGE,
            find_row(rows, "fedmri", ("fl.fedmri.share=all_but_head", "fl.head=stage")),
            fedmri,
            "all but the last stage − FedMRI",
        ),
        (NO_TERM, beta0, fedmri, "beta = 0 − FedMRI"),
    ]


def sharing_and_term(rows: list[Row], fedmri: Row) -> list[Line | None]:
    """The lines of :func:`sharing_and_term_pairs`' claims."""
    return [worse_than(*pair) for pair in sharing_and_term_pairs(rows, fedmri)]


def fedavg_nearly_fails(rows: list[Row], fedmri: Row, sites: list[str]) -> Line | None:
    """FedAvg nearly fails on the most shifted sites: its gain over the zero-filled input against
    FedMRI's, site by site."""
    fedavg = find_row(rows, "fedavg")
    if fedavg is None or "comparison" not in fedavg.families:
        return None
    zero = site_means(fedmri.first, "zero_filled")
    gains = {
        s: (fedavg.score(s, "psnr")[0] - zero[s]["psnr"], fedmri.score(s, "psnr")[0] - zero[s]["psnr"])
        for s in sites
    }
    deficits = {s: fedavg.versus(fedmri, s, "psnr") for s in sites}
    worst = min(sites, key=lambda s: deficits[s].difference.mean if deficits[s] else math.inf)
    failing = [s for s, (a, b) in gains.items() if b > 0 and a < NEARLY_FAILS * b]
    return [
        "FedAvg nearly fails on the most shifted sites",
        "FedAvg − FedMRI PSNR per site: "
        + ", ".join(f"{s} {signed(deficits[s].difference, 2)}" for s in sites if deficits[s])
        + f" dB (largest deficit: {worst}); gain over zero-filled, FedAvg / FedMRI: "
        + ", ".join(f"{s} {a:.2f} / {b:.2f}" for s, (a, b) in gains.items())
        + f' dB. "Nearly fails" counted as keeping less than {NEARLY_FAILS:.0%} of FedMRI\'s gain',
        _one_seed_or(fedavg, fedmri, "holds at " + ", ".join(failing) if failing else "does not hold"),
    ]


def _one_seed_or(first: Row, second: Row, verdict: str) -> str:
    """``verdict``, or no verdict where the two rows share fewer than two seeds (one trained model each)."""
    return verdict if len(set(first.seeds) & set(second.seeds)) >= 2 else "no verdict (one seed)"


def common_space(folder: Path, rows: list[Row], sites: list[str]) -> Line | None:
    """FedMRI's shared encoder maps the sites into a common space: FedMRI's silhouette of the sites
    against SingleSet's, seed by seed, from the latent files."""
    scores = latent_scores(folder, rows)
    common = sorted(set(scores.get("SingleSet", {})) & set(scores.get("FedMRI", {})))
    if not common:
        return None
    sil = {k: mean_interval([v[s].silhouette for s in sorted(v)]) for k, v in scores.items()}
    acc = {k: mean_interval([v[s].accuracy for s in sorted(v)]) for k, v in scores.items()}
    gap = mean_interval([scores["FedMRI"][s].silhouette - scores["SingleSet"][s].silhouette for s in common])
    verdict = "not detectable" if len(common) >= 2 else "no verdict (one seed)"
    if math.isfinite(gap.half_width) and gap.high < 0:
        verdict = "holds"
    elif math.isfinite(gap.half_width) and gap.low > 0:
        verdict = "does not hold"
    return [
        "FedMRI's shared encoder maps the sites into a common space (t-SNE)",
        "bottleneck features of the test slices, silhouette of the sites (higher: more apart) / "
        "cross-validated accuracy of a linear site classifier (chance "
        f"{1 / len(sites):.2f}), mean ± 95 % interval over seeds: "
        + ", ".join(f"{k} {sil[k].format(3)} / {acc[k].format(3)}" for k in scores)
        + f"; FedMRI − SingleSet silhouette {signed(gap, 3)}"
        + f" over seeds {', '.join(map(str, common))}",
        verdict,
    ]


def clipped_term(rows: list[Row], fedmri: Row) -> Line | None:
    """(ours) The clipped contrastive term beats the paper's."""
    clipped = find_row(rows, "fedmri", ("fl.fedmri.variant=clipped",))
    if clipped is None:
        return None
    psnr, ssim = clipped.versus(fedmri, "mean", "psnr"), clipped.versus(fedmri, "mean", "ssim")
    return [
        "(ours, not the paper's) the clipped contrastive term beats the paper's",
        f"clipped − FedMRI, all sites: PSNR {_diff(psnr, 2)} dB, SSIM {_diff(ssim, 4)}",
        f"PSNR {verdict_word(psnr, 'better')}, SSIM {verdict_word(ssim, 'better')}",
    ]


def _head(rows: list[Row]) -> str:
    seeds = sorted({seed for r in rows for seed in r.seeds})
    return (
        "# The paper's claims on this comparison\n\n"
        f"Seeds {', '.join(map(str, seeds))} where finished. The unit of replication is the trained model: "
        "each seed's mean difference over the test volumes (every site's, pooled), then the mean of those "
        "per-seed differences ± its 95 % Student-t interval and a paired t-test over seeds at the "
        f"{LEVEL:.0%} level, which alone decides a verdict. " + seeds_needed_note() + " Rebuilt from the "
        "raw files by `python compare.py --report <folder>`.\n"
    )


def claim_lines(folder: Path, sites: list[str], rows: list[Row]) -> list[Line]:
    """A line per claim the study can measure; none without a FedMRI row (the reference of every
    claim)."""
    fedmri = reference_row(rows)
    if fedmri is None:
        return []
    found = [
        best_everywhere(rows, fedmri, sites),
        *sharing_and_term(rows, fedmri),
        fedavg_nearly_fails(rows, fedmri, sites),
        common_space(folder, rows, sites),
        clipped_term(rows, fedmri),
    ]
    return [line for line in found if line is not None]


def claims_markdown(rows: list[Row], lines: list[Line]) -> str:
    """claims.md's title, what a verdict rests on and the table of ``lines`` (:func:`claim_lines`); ""
    without any claim measured."""
    if not lines:
        return ""
    return _head(rows) + "\n" + markdown(["claim (FedMRI paper)", "measured", "verdict"], lines, "lll")
