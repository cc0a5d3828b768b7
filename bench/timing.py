"""Helpers shared by the benchmarks: alternating timings, the machine and its load.

Every benchmark times what it compares side by side in one process, alternating the candidates
within each repetition and taking medians, so that a busy machine slows all of them alike; it prints
ratios, the machine and the load average with its results.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch


def interleaved(
    candidates: dict[str, Callable[[], object]], reps: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each candidate over ``reps`` rounds, the candidates alternating in each."""
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(reps):
        for name, fn in candidates.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def median(times: list[float]) -> float:
    """The median of a list of timings."""
    return statistics.median(times)


def sync() -> None:
    """Wait for queued GPU work, so that wall-clock timings include it."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def cpu_name() -> str:
    """The CPU's model name (Linux), else what the platform module knows."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """One line: CPU, cores, torch threads and version, and the GPU if there is one."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__} on "
        f"{torch.get_num_threads()} threads, {gpu}"
    )


def load() -> str:
    """The 1-, 5- and 15-minute load averages."""
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


class Stopwatch:
    """Accumulates the time spent inside wrapped functions."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def wrap(self, fn):
        """``fn`` with its time added to this stopwatch."""

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1

        return timed

    def take(self) -> float:
        """Seconds accumulated since the last call."""
        seconds, self.seconds, self.calls = self.seconds, 0.0, 0
        return seconds
