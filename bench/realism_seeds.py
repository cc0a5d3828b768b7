"""The transfer check over seeds: how often each site's model beats the zero-filled input on the real
volumes, setting by setting, when each setting was trained with several seeds.

    python bench/realism_seeds.py \\
        default=runs/default-s0/realism/realism.json,runs/default-s1/realism/realism.json \\
        exports=runs/export-s0/realism/realism.json,runs/export-s1/realism/realism.json

Each argument is ``<setting>=<realism.json>[,<realism.json>...]``, one file per seed, written by
bench/realism.py. For each setting and site the table gives, per seed, on how many real volumes the
model beats the zero-filled input (strictly) in PSNR and in SSIM and its mean gain over them; pooled
over the seeds, the share of (seed, volume) pairs it wins, against the 90 % asked of the transfer; and
each volume lost in some seed with the seeds that lost it (#1, #2, ...: the files in the order given)
and the gain there. One trained model is one draw, and a setting's win counts can move between seeds
as much as between settings: compare settings over the same seeds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import ArgumentParser, run_cli  # noqa: E402

METRICS = ("psnr", "ssim")
MAX_REPORT_BYTES = 16 * 2**20  # a report is some 20 KB
TARGET = 0.9  # the share of real volumes each site's model should beat the zero-filled input on


def read_report(path: str) -> dict[str, list[dict[str, Any]]]:
    """Per site, the volume records of one bench/realism.py report (its ``volumes``)."""
    from utils.errors import UserError
    from utils.io import read_text

    try:
        data = json.loads(read_text(Path(path), "transfer report", MAX_REPORT_BYTES))
        volumes = data["volumes"]
        for records in volumes.values():
            for record in records:
                for which in ("model", "zero_filled"):
                    for metric in METRICS:
                        float(record[which][metric])
                str(record["volume"])
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise UserError(f"{path}: not a report of bench/realism.py ({type(err).__name__}: {err})") from None
    if not isinstance(volumes, dict) or not volumes:
        raise UserError(f"{path}: not a report of bench/realism.py (no sites)")
    return volumes


def parse_setting(text: str) -> tuple[str, list[str]]:
    """``name=a.json,b.json`` -> (name, [a.json, b.json])."""
    from utils.errors import UserError

    name, sep, files = text.partition("=")
    paths = [f for f in files.split(",") if f]
    if not sep or not name or not paths:
        raise UserError(f"{text!r}: expected <setting>=<realism.json>[,<realism.json>...]")
    return name, paths


def summarise(reports: list[dict[str, list[dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    """Per site of a setting's reports (one per seed): per seed and metric the wins and the volumes, the
    pooled share of wins, and each volume lost with the seeds (their positions) that lost it."""
    sites = [s for s in reports[0] if all(s in r for r in reports)]
    out: dict[str, dict[str, Any]] = {}
    for site in sites:
        entry: dict[str, Any] = {}
        for metric in METRICS:
            wins, counts, means, lost = [], [], [], {}
            for seed, report in enumerate(reports):
                gains = {r["volume"]: r["model"][metric] - r["zero_filled"][metric] for r in report[site]}
                wins.append(sum(g > 0 for g in gains.values()))
                counts.append(len(gains))
                means.append(sum(gains.values()) / max(len(gains), 1))
                for volume, gain in gains.items():
                    if gain <= 0:
                        lost.setdefault(volume, []).append((seed, gain))
            entry[metric] = {"wins": wins, "volumes": counts, "share": sum(wins) / max(sum(counts), 1),
                             "mean_gain": means, "lost": lost}  # fmt: skip
        out[site] = entry
    return out


def table(settings: dict[str, list[dict[str, list[dict[str, Any]]]]]) -> str:
    """Markdown: one row per setting and site."""
    from utils.tables import markdown

    rows = []
    for name, reports in settings.items():
        for site, entry in summarise(reports).items():
            cells = [name, site]
            for metric, unit, digits in (("psnr", " dB", 2), ("ssim", "", 3)):
                m = entry[metric]
                per_seed = ", ".join(f"{w}/{n}" for w, n in zip(m["wins"], m["volumes"]))
                mark = "" if m["share"] >= TARGET else " (below 90 %)"
                gains = ", ".join(f"{g:+.{digits}f}" for g in m["mean_gain"])
                cells.append(f"{per_seed}; {m['share']:.0%}{mark}; mean gain {gains}{unit}")
                lost = "; ".join(
                    f"{volume} ({', '.join(f'#{seed + 1} {gain:+.{digits}f}{unit}' for seed, gain in seeds)})"
                    for volume, seeds in sorted(m["lost"].items())
                )
                cells.append(lost or "none")
            rows.append(cells)
    header = ["setting", "site", "PSNR wins per seed; pooled", "lost in PSNR", "SSIM wins per seed; pooled",
              "lost in SSIM"]  # fmt: skip
    return markdown(header, rows)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("settings", nargs="+", metavar="setting=realism.json[,...]", help="one per setting")
    args = parser.parse_args(argv)

    def job() -> None:
        from utils.errors import UserError

        settings: dict[str, list] = {}
        for text in args.settings:
            name, paths = parse_setting(text)
            if name in settings:
                raise UserError(f"{text!r}: setting {name!r} given twice")
            settings[name] = [read_report(p) for p in paths]
        seeds = {name: len(reports) for name, reports in settings.items()}
        counts = ", ".join(f"{k}: {v}" for k, v in seeds.items())
        print(
            f"Real volumes won per seed and pooled over seeds (seeds per setting: {counts}; "
            "#1, #2, ...: the files in the order given):\n"
        )
        print(table(settings))

    return run_cli(job)


if __name__ == "__main__":
    sys.exit(main())
