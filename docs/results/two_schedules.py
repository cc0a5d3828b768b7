"""Each run's mean test PSNR over the four sites on the 30-round and on the 60-round schedule, for every
run that both studies have finished (same method, seed, data and masks; only the schedule differs).

    python docs/results/two_schedules.py        # reads docs/results/study_30rounds and docs/results/study
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import mean

RESULTS = Path(__file__).resolve().parent
SHORT, LONG = RESULTS / "study_30rounds" / "runs", RESULTS / "study" / "runs"


def mean_psnr(path: Path) -> float:
    """The mean over sites of each site's mean test PSNR over its volumes."""
    sites = json.loads(path.read_text())["sites"]
    return mean(mean(v["model"]["psnr"] for v in site["volumes"].values()) for site in sites.values())


def main() -> None:
    print(f"{'run':32s} {'30 rounds':>10s} {'60 rounds':>10s} {'gain':>7s}")
    for path in sorted(LONG.glob("*.json")):
        if (SHORT / path.name).is_file():
            short, long = mean_psnr(SHORT / path.name), mean_psnr(path)
            print(f"{path.stem:32s} {short:10.2f} {long:10.2f} {long - short:+7.2f}")


if __name__ == "__main__":
    main()
