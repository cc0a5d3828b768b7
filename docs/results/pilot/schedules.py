"""How far each schedule of the pilot flattens validation PSNR, from the study's raw files alone.

    python docs/results/pilot/schedules.py                       # the pilot's FedAvg and SCAFFOLD, seed 0
    python docs/results/pilot/schedules.py docs/results/study/runs/fedprox-s1.json
    python docs/results/pilot/schedules.py docs/results/pilot/fedavg_80rounds/runs/fedavg-s1.json

The 60-round schedule cuts the learning rate tenfold after rounds 20 and 40, so the first 40 of its
rounds are exactly the 40-round schedule that cuts once, after round 20, and the first 60 rounds of a
longer run are the 60-round schedule (the rate of a round depends on the round alone; data order and
masks do not depend on the total). For each schedule and site: the validation PSNR gained in the last
fifth of the rounds over the best before it (the study's criterion: less than 0.1 dB) and the round of
the best validation PSNR.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from study.rows import last_fifth_gain  # noqa: E402

PILOT = [ROOT / "docs/results/study/runs" / f"{run}-s0.json" for run in ("fedavg", "scaffold")]
# The schedules whose rounds are a prefix of a longer run's (the cuts after rounds 20 and 40 do not
# depend on the total): 40 rounds with one cut, the study's 60 with two.
SCHEDULES = (40, 60)


def report(path: Path) -> str:
    raw = json.loads(path.read_text())
    curves = raw["val_psnr"]
    lines = [f"{path.name} ({raw['rounds']} rounds, precision {raw.get('precision', 'not recorded')})"]
    for rounds in sorted({r for r in SCHEDULES if r < raw["rounds"]} | {raw["rounds"]}):
        cells = []
        for site, curve in curves.items():
            head = curve[:rounds]
            best = head.index(max(head)) + 1
            cells.append(f"{site} {last_fifth_gain(head):+.2f} dB (best round {best})")
        lines.append(f"  first {rounds} rounds: " + ", ".join(cells))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    for path in [Path(a) for a in argv] or PILOT:
        if not path.is_file():
            print(f"error: {path}: no such raw file", file=sys.stderr)
            return 2
        print(report(path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
