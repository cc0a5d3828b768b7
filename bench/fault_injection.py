"""Kill a small federation at random moments with SIGKILL, resume it, and compare with an uninterrupted run.

    python bench/fault_injection.py                 # 5 trials, up to 3 kills each
    python bench/fault_injection.py --trials 10 --kills 4 --seed 1

Every trial starts ``train.py`` on a tiny 2-site, 3-round federation, kills it after a random delay,
resumes it with ``train.py --resume`` (possibly killing the resumed process too), until a process
finishes. The finished run must equal the uninterrupted reference exactly: metrics.csv and
results.json byte for byte, and every tensor of the final checkpoint (models, optimisers, global
tensors, the server's and every site's algorithm state, best models). Prints runs, kills, resumes and
mismatches (must be 0).
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import tiny_config_dict  # noqa: E402


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_to_end(args: list[str]) -> float:
    begin = time.perf_counter()
    proc = start(args)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"train.py {' '.join(args)} failed:\n{err}")
    return time.perf_counter() - begin


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)


def outputs(run_dir: Path) -> tuple[dict, str, str]:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    ckpt = {k: ckpt[k] for k in ("round", "global", "server", "sites", "best", "history")}
    return ckpt, (run_dir / "metrics.csv").read_text(), (run_dir / "results.json").read_text()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--kills", type=int, default=3, help="most kills per trial")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)

        def config(name: str) -> Path:
            data = tiny_config_dict(tmp_path, rounds=args.rounds)
            data["name"] = name
            path = tmp_path / f"{name}.yaml"
            path.write_text(yaml.safe_dump(data))
            return path

        reference_time = run_to_end(["--config", str(config("reference"))])
        reference = outputs(tmp_path / "runs" / "reference")
        print(f"uninterrupted reference: {reference_time:.1f} s ({args.rounds} rounds, 2 sites)")

        runs = kills = resumes = mismatches = 0
        for trial in range(args.trials):
            name = f"trial{trial}"
            run_dir = tmp_path / "runs" / name
            fresh = ["--config", str(config(name))]
            trial_kills = 0
            while True:
                runs += 1
                resuming = (run_dir / "config.yaml").exists()  # killed before that: start afresh
                command = ["--resume", str(run_dir)] if resuming else fresh
                resumes += resuming
                proc = start(command)
                if trial_kills < args.kills:
                    delay = rng.uniform(0.5, reference_time)
                    try:
                        proc.wait(timeout=delay)
                    except subprocess.TimeoutExpired:
                        proc.send_signal(signal.SIGKILL)
                        proc.wait()
                        kills += 1
                        trial_kills += 1
                        continue
                _, err = proc.communicate()
                if proc.returncode != 0:
                    raise SystemExit(f"trial {trial}: train.py {' '.join(command)} failed:\n{err}")
                break
            ckpt, metrics, results = outputs(run_dir)
            ok = (
                same(ckpt, reference[0])
                and metrics == reference[1]
                and results == reference[2].replace('"reference"', f'"{name}"')
            )
            mismatches += not ok
            print(f"trial {trial}: {trial_kills} kills, {'identical' if ok else 'MISMATCH'}")

        print(f"runs {runs}  kills {kills}  resumes {resumes}  mismatches {mismatches}")
        return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
