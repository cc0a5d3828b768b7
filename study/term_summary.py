"""What FedMRI's contrastive term did in a regime's runs, from the diagnostics the raw files keep.

Each FedMRI raw file written since the term's diagnostics were kept holds, per site and round, the term
at the end of the local fit (``study.records.run_record``'s ``term``). The summary pools every (seed,
site, round) in which the term was on: how often L_con sat on its ceiling 1/K (K = the number of
negatives, one previous encoder per site with ``negatives: all``), where pos / neg = 1/K exactly and
the term's gradient vanishes (RESULTS.md, "The contrastive term, step by step"); the median fraction
of encoder weights outside the negatives' range; the median penalty beta x L_con against the
median reconstruction loss (each the round's mean per step); and, apart for the pairs on the ceiling
and off it, the median distance per weight of the site's encoder to the server's at the end of the
local fit and the median spread of the previous encoders (the negatives) around their mean: the
ceiling is where the negatives have collapsed onto one point (spread near 0), so the term cannot
tell the encoder's distance to them from its distance to the server's.
"""

from __future__ import annotations

import numpy as np

from study.rows import Row

PLATEAU = 0.99  # L_con at or above this fraction of 1/K counts as on the ceiling


def term_summary(row: Row) -> dict | None:
    """The pooled diagnostics of ``row``'s runs that kept them; None if none did."""
    on, outside, penalty, rec, runs = 0, [], [], [], 0
    pairs = 0
    split: dict[str, list[float]] = {f"{n}_{side}": [] for n in ("dist", "spread") for side in ("on", "off")}
    for record in row.records.values():
        term = record.term
        if not term:
            continue
        runs += 1
        ceiling = 1.0 / len(term)  # one negative per site
        for columns in term.values():
            for i, l_con in enumerate(columns.get("con_l_con", [])):
                if l_con is None:
                    continue
                pairs += 1
                side = "on" if l_con >= PLATEAU * ceiling else "off"
                on += side == "on"
                for name, into in (
                    ("con_outside", outside), ("penalty", penalty), ("loss_rec", rec),
                    ("con_dist", split[f"dist_{side}"]), ("con_spread", split[f"spread_{side}"]),
                ):  # fmt: skip
                    values = columns.get(name, [])
                    if i < len(values) and values[i] is not None:
                        into.append(values[i])
    if not runs or not pairs:
        return None
    return {
        "runs": runs,
        "pairs": pairs,
        "on_ceiling": on / pairs,
        "outside_median": float(np.median(outside)) if outside else None,
        "penalty_median": float(np.median(penalty)) if penalty else None,
        "loss_rec_median": float(np.median(rec)) if rec else None,
        **{f"{key}_median": float(np.median(values)) if values else None for key, values in split.items()},
    }


def term_markdown(titles: dict[str, str], summaries: dict[str, dict[str, dict | None]]) -> str:
    """``map.md``'s section on the term: one line per regime and FedMRI row with kept diagnostics."""
    lines = []
    for key, rows in summaries.items():
        for name, s in rows.items():
            if s is None:
                continue
            lines.append(
                f"| {titles[key]} | {name} | {s['runs']} | {s['pairs']} | {s['on_ceiling']:.0%} | "
                f"{_fmt(s['outside_median'], '.1%')} | {_fmt(s['penalty_median'], '.3g')} | "
                f"{_fmt(s['loss_rec_median'], '.3g')} | {_fmt(s['dist_on_median'], '.2g')} / "
                f"{_fmt(s['dist_off_median'], '.2g')} | {_fmt(s['spread_on_median'], '.2g')} / "
                f"{_fmt(s['spread_off_median'], '.2g')} |"
            )
    head = (
        "\n## The contrastive term in each regime\n\n"
        "Pooled over every seed, site and round in which the term was on, from the diagnostics the raw files "
        "keep (runs written before they were kept are not counted). On the ceiling: L_con >= "
        f"{PLATEAU:g} x 1/K (K = sites), where pos / neg = 1/K and the term's gradient vanishes; outside: "
        "the fraction of encoder weights outside the previous encoders' range (median); the penalty beta x "
        "L_con and the reconstruction loss, per step at the end of the local fit (medians); distance: the "
        "site's encoder to the server's at the end of the local fit, per weight (median), in the pairs on "
        "the ceiling / off it; spread: the previous encoders' mean absolute deviation around their mean, "
        "per weight (median), on / off the ceiling.\n"
    )
    if not lines:
        return head + "\nNo run of the map has kept the term's diagnostics yet.\n"
    header = (
        "| regime | row | runs | (site, round) pairs | on the ceiling | weights outside | penalty "
        "| rec. loss | distance, on / off | spread, on / off |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    return head + "\n" + header + "\n" + "\n".join(lines) + "\n"


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)
