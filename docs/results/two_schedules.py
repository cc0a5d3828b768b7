"""Each run's mean test PSNR over the four sites on the 30-round and on the 60-round schedule, for every
run that both studies have finished (same method, seed, data and masks; only the schedule differs),
then each method's gain averaged over those seeds.

    python docs/results/two_schedules.py        # reads docs/results/study_30rounds and docs/results/study
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from statistics import mean

RESULTS = Path(__file__).resolve().parent
SHORT, LONG = RESULTS / "study_30rounds" / "runs", RESULTS / "study" / "runs"


def mean_psnr(path: Path) -> float:
    """The mean over sites of each site's mean test PSNR over its volumes."""
    sites = json.loads(path.read_text())["sites"]
    return mean(mean(v["model"]["psnr"] for v in site["volumes"].values()) for site in sites.values())


def gains(short: Path = SHORT, long: Path = LONG) -> dict[str, tuple[float, float]]:
    """Run name -> (30-round, 60-round) mean test PSNR, for the runs both folders hold."""
    return {
        path.stem: (mean_psnr(short / path.name), mean_psnr(path))
        for path in sorted(long.glob("*.json"))
        if (short / path.name).is_file()
    }


def by_method(runs: dict[str, tuple[float, float]]) -> dict[str, list[float]]:
    """Method (the run name without its ``-s<seed>``) -> the 60 - 30 round gains of its seeds."""
    out: dict[str, list[float]] = {}
    for name, (short, long) in runs.items():
        out.setdefault(re.sub(r"-s\d+$", "", name), []).append(long - short)
    return out


def main() -> None:
    runs = gains()
    print(f"{'run':32s} {'30 rounds':>10s} {'60 rounds':>10s} {'gain':>7s}")
    for name, (short, long) in runs.items():
        print(f"{name:32s} {short:10.2f} {long:10.2f} {long - short:+7.2f}")
    print(f"\n{'method':32s} {'seeds':>10s} {'mean gain':>10s}")
    for method, values in sorted(by_method(runs).items(), key=lambda item: -mean(item[1])):
        print(f"{method:32s} {len(values):10d} {mean(values):+10.2f}")


if __name__ == "__main__":
    main()
