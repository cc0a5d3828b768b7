"""Every benchmark in one command, with one summary table of each measured ratio against its target.

    python bench/run_all.py                # full repetitions: careful measurement (tens of minutes)
    python bench/run_all.py --quick        # reduced repetitions and sizes: minutes
    python bench/run_all.py --tiny         # tiny models and data: checks that every benchmark runs

Each benchmark runs in its own process, one after the other, with one torch thread (``--threads 1``
where the script takes it, ``OMP_NUM_THREADS=1`` always); its own output is kept in ``--log-dir`` when
given. The summary has one line per ratio: the benchmark, what is compared, the value, the target and
value / target (a ratio >= 1 meets a ">=" target, <= 1 a "<=" target). Targets the benchmarks print
themselves are used as printed; where a benchmark prints none, this script sets one, marked "(ours)":
a fast path no slower than fp32, the per-site fit within 15 % of a straight line, the resident memory
after the last round at most 1.5 times that after the first, the loader faster than reloading per slice.
Quick and tiny numbers are for spotting regressions, not for the README: full mode measures.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Ratio:
    """One measured ratio against its target."""

    bench: str
    measure: str
    value: float
    op: str  # ">=" or "<="
    target: float
    ours: bool = False  # the target is set here, not printed by the benchmark

    @property
    def ratio(self) -> float:
        """value / target."""
        return self.value / self.target if self.target else float("nan")

    @property
    def met(self) -> bool:
        """Whether the value meets its target."""
        return self.value >= self.target if self.op == ">=" else self.value <= self.target


NUMBER = r"([-+0-9.eE]+|inf|nan)"


def parse_step(out: str) -> list[Ratio]:
    """bench/step.py: each variant's speed-up over fp32 (target: no slower, ours)."""
    rows = []
    for match in re.finditer(rf"^  (\S.*?)\s+{NUMBER} ms\s+{NUMBER} slices/s\s+x\s*{NUMBER}", out, re.M):
        label, speedup = match.group(1).strip(), float(match.group(4))
        if label != "fp32":
            rows.append(Ratio("step", f"{label} step vs fp32 (speed-up)", speedup, ">=", 1.0, ours=True))
    return rows


def parse_regulariser(out: str) -> list[Ratio]:
    """bench/regulariser.py: speed-up over the authors' formulation, accuracy, share of a step."""
    rows = []
    if m := re.search(rf"speed-up\s+{NUMBER} x\s+\(target >= {NUMBER}\)", out):
        rows.append(Ratio("regulariser", "term vs the authors' (speed-up)", float(m[1]), ">=", float(m[2])))
    if m := re.search(
        rf"ours\s+vs float64: value rel. diff {NUMBER}, max gradient rel. diff {NUMBER}"
        rf"\s+\(target <= {NUMBER}\)",
        out,
    ):
        target = float(m[3])
        rows.append(Ratio("regulariser", "term value vs float64 (rel. diff)", float(m[1]), "<=", target))
        rows.append(Ratio("regulariser", "term gradient vs float64 (rel. diff)", float(m[2]), "<=", target))
    for m in re.finditer(rf"(\w+)\s+size .*?= {NUMBER} % of a step\s+\(target <= {NUMBER} %\)", out):
        rows.append(
            Ratio("regulariser", f"term share of a step, {m[1]} size (%)", float(m[2]), "<=", float(m[3]))
        )
    return rows


def parse_federation_overhead(out: str) -> list[Ratio]:
    """bench/federation_overhead.py: throughput of the Federation against a bare loop."""
    m = re.search(rf"throughput ratio\s+{NUMBER}\s+\(federation / bare, target >= {NUMBER}\)", out)
    return (
        [Ratio("federation_overhead", "Federation vs bare loop (throughput)", float(m[1]), ">=", float(m[2]))]
        if m
        else []
    )


def parse_data_rate(out: str) -> list[Ratio]:
    """bench/data_rate.py: slices/s of each loader over the slices/s the model trains on (target 5)."""
    rows = []
    for m in re.finditer(
        rf"^\s+\| (\S[^|]*?)\s+\|\s+\S+\s+\|\s+{NUMBER} \|\s+{NUMBER} \|\s+{NUMBER}x \|", out, re.M
    ):
        rows.append(
            Ratio("data_rate", f"{m[1]} loader vs model (slices/s)", float(m[2]) / float(m[3]), ">=", 5.0)
        )
    return rows


def parse_scaling(out: str) -> list[Ratio]:
    """bench/scaling.py: the largest deviation of a round's time from the per-site line (ours: <= 15 %)."""
    m = re.search(rf"largest deviation from the line {NUMBER} %", out)
    return (
        [
            Ratio(
                "scaling",
                "time per round vs a straight line (largest deviation, %)",
                float(m[1]),
                "<=",
                15.0,
                True,
            )
        ]
        if m
        else []
    )


def parse_memory(out: str) -> list[Ratio]:
    """bench/memory.py: resident memory after the last round over after the first (ours: <= 1.5)."""
    rows = []
    for m in re.finditer(r"^\s+(\d+) \|\s+[0-9.]+ \| ([0-9. >-]+)$", out, re.M):
        rss = [float(x) for x in m[2].split("->")]
        if len(rss) > 1:
            rows.append(
                Ratio(
                    "memory",
                    f"{m[1]} site(s): RSS last round / first round",
                    rss[-1] / rss[0],
                    "<=",
                    1.5,
                    True,
                )
            )
    return rows


def parse_fault_injection(out: str) -> list[Ratio]:
    """bench/fault_injection.py: runs killed and resumed that end identical to the uninterrupted one."""
    m = re.search(r"runs (\d+)\s+kills (\d+)\s+resumes (\d+)\s+mismatches (\d+)", out)
    if not m:
        return []
    trials = len(re.findall(r"^trial \d+:", out, re.M))
    identical = (trials - int(m[4])) / trials if trials else float("nan")
    return [Ratio("fault_injection", f"trials identical after {m[2]} kills (fraction)", identical, ">=", 1.0)]


def parse_data_loading(out: str) -> list[Ratio]:
    """bench/data_loading.py: this loader against reloading the volume per slice (ours: faster)."""
    rows = []
    for m in re.finditer(rf"^\| (\S[^|]*?)\s+\|\s+{NUMBER} sl/s \|\s+{NUMBER} sl/s \|", out, re.M):
        if m[1].strip() != "measure":
            value = float(m[3]) / float(m[2])
            rows.append(
                Ratio("data_loading", f"{m[1].strip()}: loader vs reload per slice", value, ">=", 1.0, True)
            )
    return rows


@dataclass(frozen=True)
class Bench:
    """One benchmark: its script, its arguments per mode, and how its ratios are read from its output."""

    name: str
    args: dict[str, list[str]]  # mode -> arguments ("{tiny}": the tiny config's path)
    parse: Callable[[str], list[Ratio]]
    threads: bool = True  # the script takes --threads


BENCHES = (
    Bench(
        "step",
        {"full": [], "quick": ["--reps", "2"], "tiny": ["--size", "32", "--chans", "4", "--reps", "1"]},
        parse_step,
    ),
    Bench(
        "regulariser",
        {
            "full": [],
            "quick": ["--reps", "3", "--step-reps", "1"],
            "tiny": ["--chans", "4", "--reps", "1", "--step-reps", "1", "--sizes", "default"],
        },
        parse_regulariser,
    ),
    Bench(
        "federation_overhead",
        {
            "full": [],
            # 3 of the 8 training subjects of every site: 3/8 of the steps of the full run's rounds
            "quick": ["--reps", "1", *[f"sites.{i}.source.subjects.train=3" for i in range(4)]],
            "tiny": ["--reps", "1", "--config", "{tiny}"],
        },
        parse_federation_overhead,
    ),
    Bench(
        "data_rate",
        {
            "full": [],
            "quick": ["--reps", "1", "--persistent-workers", "0"],
            "tiny": ["--reps", "1", "--persistent-workers", "0", "--config", "{tiny}"],
        },
        parse_data_rate,
    ),
    Bench(
        "scaling",
        {
            "full": [],
            "quick": ["--sites", "2", "4", "8", "--reps", "1"],
            "tiny": ["--sites", "2", "3", "4", "--reps", "1"],
        },
        parse_scaling,
    ),
    Bench(
        "memory",
        {
            "full": [],
            "quick": ["--sites", "1", "2", "--rounds", "2"],
            "tiny": ["--sites", "1", "--rounds", "2", "--config", "{tiny}"],
        },
        parse_memory,
    ),
    Bench(
        "fault_injection",
        {
            "full": [],
            "quick": ["--trials", "1", "--kills", "2", "--rounds", "2"],
            "tiny": ["--trials", "1", "--kills", "1", "--rounds", "2"],
        },
        parse_fault_injection,
        threads=False,
    ),
    Bench(
        "data_loading",
        {
            "full": [],
            "quick": ["--subjects", "1", "--baseline-slices", "8"],
            "tiny": ["--subjects", "1", "--baseline-slices", "2"],
        },
        parse_data_loading,
        threads=False,
    ),
)


def tiny_config(folder: Path) -> Path:
    """A two-site federation of 32 x 32 slices and a 4-channel U-Net, written as YAML into ``folder``."""
    sites = [
        {
            "name": name,
            "source": {
                "kind": "synthetic",
                "profile": name,
                "size": 32,
                "subjects": {"train": 2, "val": 1, "test": 1},
                "slices_per_subject": 3,
                "contrasts": ["t1"],
            },
            "mask": {"kind": "random_1d", "acceleration": 4, "center_fraction": 0.08},
            "batch_size": 2,
        }
        for name in ("fastmri", "brats")
    ]
    config = {
        "name": "tiny",
        "output_dir": str(folder / "runs"),
        "data": {"cache_dir": str(folder / "cache")},
        "model": {"chans": 4, "num_pool_layers": 2},
        "sites": sites,
        "fl": {"algorithm": "fedmri", "rounds": 2},
        "trainer": {"accelerator": "cpu"},
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def summary(rows: list[Ratio]) -> str:
    """The markdown table of every ratio."""
    lines = ["| benchmark | measure | value | target | value / target | met |", "|---|---|---:|---|---:|---|"]
    for r in rows:
        target = f"{r.op} {r.target:g}" + (" (ours)" if r.ours else "")
        met = "yes" if r.met else "NO"
        lines.append(f"| {r.bench} | {r.measure} | {r.value:.3g} | {target} | {r.ratio:.2f} | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks of the chosen mode and print the summary; exit 1 if one failed to run."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="reduced repetitions and sizes")
    mode.add_argument("--tiny", action="store_true", help="tiny models and data (a smoke test)")
    parser.add_argument("--only", nargs="+", choices=[b.name for b in BENCHES], help="run only these")
    parser.add_argument("--log-dir", type=Path, help="keep each benchmark's output here")
    args = parser.parse_args(argv)
    chosen = "tiny" if args.tiny else "quick" if args.quick else "full"

    from bench.timing import load

    rows: list[Ratio] = []
    failed: list[str] = []
    took: dict[str, float] = {}
    start = time.perf_counter()
    load_before = load()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="run_all_") as tmp:
        tiny = tiny_config(Path(tmp)) if chosen == "tiny" else None
        for bench in BENCHES:
            if args.only and bench.name not in args.only:
                continue
            command = [sys.executable, str(ROOT / "bench" / f"{bench.name}.py")]
            command += [a.replace("{tiny}", str(tiny)) for a in bench.args[chosen]]
            command += ["--threads", "1"] if bench.threads else []
            began = time.perf_counter()
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
            took[bench.name] = time.perf_counter() - began
            output = done.stdout + done.stderr
            if args.log_dir:
                args.log_dir.mkdir(parents=True, exist_ok=True)
                (args.log_dir / f"{bench.name}.log").write_text(output)
            found = bench.parse(done.stdout) if done.returncode in (0, 1) else []
            if not found:
                failed.append(bench.name)
                tail = "\n".join(output.strip().splitlines()[-5:])
                print(
                    f"{bench.name}: exit {done.returncode}, no ratio read; last lines:\n{tail}",
                    file=sys.stderr,
                )
            rows += found
            print(
                f"{bench.name}: {len(found)} ratio(s) in {took[bench.name]:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    total = time.perf_counter() - start
    each = ", ".join(f"{k} {v:.0f} s" for k, v in took.items())
    print(f"bench/run_all.py, {chosen} mode: {total:.0f} s ({each})")
    print(f"{load_before} at the start, {load()} at the end; OMP_NUM_THREADS=1")
    print(summary(rows))
    if failed:
        print(f"no ratio from: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
