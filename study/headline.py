"""``claims.md``'s section "In short": the study in one paragraph for the README and RESULTS.md (their
``<!-- study:headline -->`` blocks): which methods are ahead of FedMRI, behind it or not detectably
different, what the contrastive term costs or gives, what sharing only the encoder does against sharing
the whole model, and how many of the paper's claims hold.

Every number is a seed-level comparison the tables and the claims already make (:meth:`Row.versus` on
the mean over the sites, as :func:`study.tables.paired_section` and :func:`study.claims.worse_than`
take it; the claims' verdicts as :func:`study.claims.claim_lines` gives them), so the paragraph is
rebuilt with them as each run lands and cannot drift from them.
"""

from __future__ import annotations

from study.claims import (
    EXCEPT_LAST,
    NO_TERM,
    WHOLE,
    WHOLE_WITHOUT_TERM,
    Line,
    Pair,
    sharing_and_term_pairs,
)
from study.formats import p_value, seeds_count, signed
from study.rows import LEVEL, Row, reference_row
from utils.stats import TOO_FEW_SEEDS, Interval, SeedComparison

NOT_DETECTABLE = "no detectable difference"
SHARING = (WHOLE, WHOLE_WITHOUT_TERM, EXCEPT_LAST)  # the paper's claims on what to share


def seed_list(seeds: list[int]) -> str:
    """``seeds 0-2``, ``seeds 0, 1 and 4``, ``seed 3``: three or more consecutive seeds as a range."""
    runs: list[list[int]] = []
    for seed in sorted(seeds):
        if runs and seed == runs[-1][-1] + 1:
            runs[-1].append(seed)
        else:
            runs.append([seed])
    parts = [p for r in runs for p in ([f"{r[0]}-{r[-1]}"] if len(r) > 2 else map(str, r))]
    return ("seed " if len(seeds) == 1 else "seeds ") + listed(parts)


def listed(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _are(items: list, one: str = "is", many: str = "are") -> str:
    return one if len(items) == 1 else many


def _size(interval: Interval) -> str:
    """A difference without its sign: ``1.29 ± 0.51``."""
    return Interval(abs(interval.mean), interval.half_width, interval.n).format(2)


class Headline:
    """The comparisons the paragraph states, and how it counts seeds: by a seed list when every
    comparison is over the same seeds, else a count after each number."""

    def __init__(self, rows: list[Row], fedmri: Row):
        self.fedmri_seeds = fedmri.seeds
        self.methods = [
            (row.label, result)
            for row in rows
            if "comparison" in row.families and not row.same_runs(fedmri)
            if (result := row.versus(fedmri, "mean", "psnr")) is not None
        ]
        self.pairs: dict[str, tuple[Pair, SeedComparison]] = {
            pair[0]: (pair, result)
            for pair in sharing_and_term_pairs(rows, fedmri)
            if pair[0] in (WHOLE, WHOLE_WITHOUT_TERM, NO_TERM) and pair[1] is not None and pair[2] is not None
            if (result := pair[1].versus(pair[2], "mean", "psnr")) is not None
        }
        every = [r for _, r in self.methods] + [r for _, r in self.pairs.values()]
        self.seed_sets = {tuple(sorted(r.per_seed)) for r in every}
        self.counts = len({len(s) for s in self.seed_sets}) > 1

    def over(self) -> tuple[str, str]:
        """(``Over seeds 0-2``, ""), or (``Over 3 to 5 seeds``, what a count is) where the comparisons are
        over different seeds."""
        if len(self.seed_sets) <= 1:  # none: nothing compared yet, FedMRI's seeds
            return "Over " + seed_list(list(next(iter(self.seed_sets), self.fedmri_seeds))), ""
        counts = sorted({len(s) for s in self.seed_sets})
        many = f"{counts[0]} to {counts[-1]} seeds" if self.counts else seeds_count(counts[0])
        return f"Over {many}", "each comparison over the seeds both of its rows have; "

    def seeds(self, result: SeedComparison) -> list[str]:
        return [seeds_count(result.difference.n)] if self.counts else []

    def amount(self, result: SeedComparison, flat: bool = False) -> str:
        """``+0.44 ± 0.46 dB (p = 0.053)``: with p where the difference is not detectable and the seeds
        where they differ between comparisons; ``flat``: ``+0.44 ± 0.46 dB, p = 0.053`` (in parentheses)."""
        extra = [f"p = {p_value(result)}"] if result.verdict == NOT_DETECTABLE else []
        extra += self.seeds(result)
        number = f"{signed(result.difference, 2)} dB"
        if flat:
            return ", ".join([number, *extra])
        return number + (f" ({', '.join(extra)})" if extra else "")

    def size(self, result: SeedComparison) -> str:
        """``1.29 ± 0.51 dB``, without its sign, with the seeds where they differ between comparisons."""
        seeds = self.seeds(result)
        return f"{_size(result.difference)} dB" + (f" ({seeds[0]})" if seeds else "")


def _methods(head: Headline, level: float) -> str:
    """The methods against FedMRI, grouped by verdict, largest difference first."""
    grouped: dict[str, list[str]] = {}
    for label, result in sorted(head.methods, key=lambda m: -m[1].difference.mean):
        grouped.setdefault(result.verdict, []).append(f"{label} {head.amount(result)}")
    worse = list(reversed(grouped.get("worse", [])))  # the largest deficit first
    better, level_with = grouped.get("better", []), grouped.get(NOT_DETECTABLE, [])
    one_seed = grouped.get(TOO_FEW_SEEDS, [])
    parts = []
    if len(one_seed) < len(head.methods):  # some verdict to give
        parts.append(
            f"{listed(worse)} {_are(worse)} worse than FedMRI" if worse else "no method is worse than FedMRI"
        )
        parts.append(f"{listed(better)} {_are(better)} better" if better else "no method is better")
    if level_with:
        parts.append(f"{listed(level_with)} {_are(level_with)} not detectably different")
    if one_seed:
        have = _are(one_seed, "has", "have")
        parts.append(f"{listed(one_seed)} {have} one seed in common with FedMRI (no verdict yet)")
    over, note = head.over()
    about = (
        f"{over} ({note}mean test PSNR over every site's test volumes, method − FedMRI: mean ± 95 % interval "
        f"over seeds, paired t-test over seeds at {100 * level:g} %)"
    )
    if not head.methods:
        return f"{about}, no method has a run to compare with FedMRI yet."
    return f"{about}, " + "; ".join(parts) + "."


def _term(head: Headline) -> str:
    """What the contrastive term costs or gives FedMRI (FedMRI with beta = 0 − FedMRI); "" unmeasured."""
    if NO_TERM not in head.pairs:
        return ""
    (*_, what), result = head.pairs[NO_TERM]
    if result.verdict == "better":
        return f"the contrastive term costs FedMRI {head.size(result)}"
    if result.verdict == "worse":
        return f"the contrastive term gives FedMRI {head.size(result)}"
    if result.verdict == NOT_DETECTABLE:
        return f"the contrastive term makes no detectable difference ({what} {head.amount(result, True)})"
    return f"the contrastive term has no verdict yet ({what} {signed(result.difference, 2)} dB, one seed)"


def _sharing(head: Headline, term_said: bool) -> str:
    """Sharing only the encoder against sharing the whole model, with the term on both and without it,
    as the claims state them; "" unmeasured."""
    contexts = {
        WHOLE: f"with the {'' if term_said else 'contrastive '}term on both",
        WHOLE_WITHOUT_TERM: f"without {'it' if WHOLE in head.pairs else 'the contrastive term on both'} "
        "(FedAvg against FedMRI with beta = 0)",
    }
    parts, last = [], None
    for claim, context in contexts.items():
        if claim not in head.pairs:
            continue
        (*_, what), result = head.pairs[claim]
        verb, amount = {
            "worse": ("beats", f"by {head.size(result)}"),
            "better": ("trails", f"by {head.size(result)}"),
            NOT_DETECTABLE: ("is not detectably different from", f"({what} {head.amount(result, True)})"),
        }.get(
            result.verdict,
            ("has no verdict yet against", f"({what} {signed(result.difference, 2)} dB, one seed)"),
        )
        if last is None:
            parts.append(f"sharing only the encoder {verb} sharing the whole model {amount} {context}")
        else:
            parts.append(f"{amount} {context}" if verb == last else f"{verb} it {amount} {context}")
        last = verb
    return " and ".join(parts)


def _psnr_verdict(verdict: str) -> str:
    """A claim's verdict in PSNR: ``PSNR holds, SSIM not detectable`` -> ``holds``; ``holds at sms``
    -> ``holds``."""
    word = verdict.removeprefix("PSNR ").split(", SSIM ")[0]
    for known in ("holds", "does not hold", "not detectable", "no verdict"):
        if word.startswith(known):
            return known
    return "not measured"


def _papers_claims(lines: list[Line]) -> str:
    """How many of the paper's claims (``claims.md``'s lines but ours) hold, do not, or are not
    detectable; "" without any."""
    papers = [(claim, _psnr_verdict(verdict)) for claim, _, verdict in lines if not claim.startswith("(ours")]
    if not papers:
        return ""
    holding = [claim for claim, verdict in papers if verdict == "holds"]
    sharing = [claim for claim in holding if claim in SHARING]
    others = [f'"{claim}"' for claim in holding if claim not in SHARING]
    if not holding:
        holds = "none holds"
    elif not others:
        every = {1: "", 2: "both "}.get(len(holding), "all ")
        holds = f"{len(holding)} {_are(holding, 'holds', 'hold')}, {every}on what to share"
    else:
        which = ([f"{len(sharing)} on what to share"] if sharing else []) + others
        holds = f"{len(holding)} {_are(holding, 'holds', 'hold')}: {listed(which)}"
    rest = []
    for word, one, many in (
        ("does not hold", "does not hold", "do not hold"),
        ("not detectable", "is not detectable", "are not detectable"),
        ("no verdict", "has no verdict yet (one seed)", "have no verdict yet (one seed)"),
        ("not measured", "is not measured", "are not measured"),
    ):
        found = [claim for claim, verdict in papers if verdict == word]
        if found:
            rest.append(f"{len(found)} {_are(found, one, many)}")
    return (
        f"Of the paper's {len(papers)} claims measured here (in PSNR where a claim is measured in PSNR and "
        f"SSIM), {holds}" + (f"; {listed(rest)}" if rest else "") + "."
    )


def headline_markdown(rows: list[Row], lines: list[Line], level: float = LEVEL) -> str:
    """The paragraph, from the study's rows and ``claims.md``'s lines (:func:`study.claims.claim_lines`)."""
    fedmri = reference_row(rows)
    if fedmri is None:
        return "No run of FedMRI has finished yet: nothing is compared with it.\n"
    head = Headline(rows, fedmri)
    term = _term(head)
    clauses = [c for c in (term, _sharing(head, bool(term))) if c]
    text = _methods(head, level)
    if clauses:
        joined = "; ".join(clauses)
        text += " " + joined[0].upper() + joined[1:] + "."
    papers = _papers_claims(lines)
    return text + (" " + papers if papers else "") + "\n"
