"""bench/run_all.py runs every benchmark (here on tiny sizes); every line has a ratio against a target."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_every_benchmark_runs_and_every_line_has_a_ratio(tmp_path):
    from bench.run_all import BENCHES

    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), "--tiny", "--log-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows
    seen = set()
    for row in rows:
        bench, measure, value, target, ratio, met = [c.strip() for c in row.strip("|").split("|")]
        seen.add(bench)
        assert measure and target.startswith((">=", "<=")), row
        assert math.isfinite(float(value)) and math.isfinite(float(ratio)), row
        assert met in ("yes", "NO"), row
    assert seen == {b.name for b in BENCHES}
    assert {p.stem for p in tmp_path.glob("*.log")} == seen


def test_the_profile_charges_every_second_to_exactly_one_part():
    import time

    from bench.profile_run import PARTS, ExclusiveClock

    start = time.perf_counter()
    clock = ExclusiveClock(start, first="other")
    inner = clock.wrap("data", lambda: time.sleep(0.02))

    def outer():
        time.sleep(0.02)
        inner()

    clock.wrap("training steps", outer)()
    clock.switch("other")
    total = clock.mark - start  # the instant of the last switch
    assert set(clock.seconds) == set(PARTS)
    assert abs(sum(clock.seconds.values()) - total) < 1e-9
    assert clock.seconds["data"] >= 0.02 and clock.seconds["training steps"] >= 0.02
    assert clock.seconds["training steps"] < total - 0.02 + 1e-3  # the nested part is not counted twice
