"""Peak resident memory of the default run, and how it grows with the number of sites.

    python bench/memory.py                          # 1, 2, 4, 8 sites, 2 rounds each
    python bench/memory.py --sites 4 --rounds 10    # the whole default run

Each run is ``train.py`` on ``configs/default.yaml`` in a fresh process (outputs in a temporary
folder): with 4 sites it is the default run itself (``--rounds`` rounds; round 2 is the first with
the contrastive term), with fewer sites the first of its sites, with more the default's four sites
repeated under new names (their data is generated into the cache the first time). Prints the peak
resident set size of each process (``ru_maxrss``), the resident size at the end of every round (to
see whether it keeps growing), and the least-squares growth per site.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.timing import load, machine  # noqa: E402


def sites_config(base: dict, sites: int) -> dict:
    """The default config with ``sites`` sites: its first ones, or its four repeated under new names."""
    data = dict(base)
    default = base["sites"]
    data["sites"] = [
        {
            **default[k % len(default)],
            "name": default[k % len(default)]["name"] + ("" if k < len(default) else f"{k}"),
        }
        for k in range(sites)
    ]
    return data


def resident_mib(pid: int) -> float:
    """Current resident set size of a process, MiB (Linux)."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run(config: Path, threads: int | None) -> tuple[float, list[float]]:
    """Run train.py on ``config``; (peak RSS MiB, RSS after each round MiB)."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.Popen(
        [sys.executable, "train.py", "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    after_round = []
    for line in proc.stdout:
        if line.startswith("round "):
            after_round.append(resident_mib(proc.pid))
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"train.py --config {config} failed (status {status})")
    return usage.ru_maxrss / 1024, after_round  # KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--sites", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the runs")
    args = parser.parse_args()
    base = yaml.safe_load((ROOT / args.config).read_text())
    base["fl"] = {**base.get("fl", {}), "rounds": args.rounds}
    base["data"] = {
        **base.get("data", {}),
        "cache_dir": str(ROOT / base.get("data", {}).get("cache_dir", ".cache/fedmri")),
    }

    peaks = {}
    print(machine())
    threads = f", OMP_NUM_THREADS={args.threads}" if args.threads else ""
    print(f"train.py --config {args.config} fl.rounds={args.rounds}, one fresh process per run{threads}")
    print(f"  {'sites':>5} | {'peak RSS MiB':>12} | RSS after each round, MiB")
    with tempfile.TemporaryDirectory() as tmp:
        for sites in args.sites:
            data = sites_config(base, sites)
            data["output_dir"], data["name"] = tmp, f"memory{sites}"
            path = Path(tmp) / f"memory{sites}.yaml"
            path.write_text(yaml.safe_dump(data))
            peak, rounds = run(path, args.threads)
            peaks[sites] = peak
            print(f"  {sites:>5} | {peak:12.0f} | " + " -> ".join(f"{r:.0f}" for r in rounds))
    if len(peaks) > 1:
        x = np.array(list(peaks), dtype=float)
        slope, intercept = np.polyfit(x, np.array(list(peaks.values())), 1)
        print(f"  fit: {intercept:.0f} MiB + {slope:.0f} MiB per site")
    print(f"  {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
