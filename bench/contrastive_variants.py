"""The table of FedMRI's contrastive variants from the raw outputs of their runs.

    python bench/contrastive_variants.py docs/results/contrastive/screen48   # the 48 px screen
    python bench/contrastive_variants.py docs/results/contrastive            # the default federation

Reads ``<folder>/<variant>/metrics.csv`` and ``results.json`` (written by
``docs/results/contrastive/run_variants.sh`` or ``screen_variants.sh``) and prints, per variant, the
mean test PSNR and SSIM over the sites (each site's best round by validation PSNR), the mean
validation PSNR after every round, and the mean penalty and outside fraction per round.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

ORDER = ("beta0", "paper", "l2", "moon", "decoupled", "clipped")


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def per_round(rows: list[dict[str, str]], split: str, key: str) -> list[float]:
    """The mean over the sites of ``key`` in every round (nan where no site logged it)."""
    rounds = sorted({int(r["round"]) for r in rows if r["split"] == split})
    out = []
    for rnd in rounds:
        values = [
            float(r[key]) for r in rows if r["split"] == split and int(r["round"]) == rnd and r.get(key)
        ]
        out.append(mean(values))
    return out


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else "docs/results/contrastive")
    found = [v for v in ORDER if (folder / v / "results.json").exists()]
    print(
        "| variant | test PSNR | test SSIM | val PSNR by round | beta x L_con by round | outside by round |"
    )
    print("|---|---:|---:|---|---|---|")
    for variant in found:
        results = json.loads((folder / variant / "results.json").read_text())
        rows = list(csv.DictReader(open(folder / variant / "metrics.csv", encoding="utf-8")))
        psnr = ", ".join(f"{v:.2f}" for v in per_round(rows, "val", "psnr"))
        penalty = ", ".join("-" if v != v else f"{v:.2f}" for v in per_round(rows, "train", "penalty"))
        outside = ", ".join("-" if v != v else f"{v:.0%}" for v in per_round(rows, "train", "con_outside"))
        model = results["mean"]["model"]
        print(f"| {variant} | {model['psnr']:.2f} | {model['ssim']:.4f} | {psnr} | {penalty} | {outside} |")
    missing = [v for v in ORDER if v not in found]
    if missing:
        print(f"\nnot measured yet: {', '.join(missing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
