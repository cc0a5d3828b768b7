"""What the machine computes natively: the precision that ``trainer.precision: auto`` resolves to; the
CPUs this process may use, which ``trainer.num_workers: auto`` resolves to; and which CPU it is, for run
records and per-CPU bitwise references.

bf16 autocast only pays where the hardware multiplies bf16 itself: a CUDA device with bf16 support
(compute capability 8.0 or newer), or a CPU with AVX-512 BF16 or AMX. Elsewhere PyTorch emulates
bf16 and autocast is slower than fp32, so ``auto`` keeps fp32 there.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # "<quota> <period>" or "max <period>" (cgroup v2)
MAX_AUTO_WORKERS = 4  # loader workers of ``num_workers: auto``: enough to keep a GPU fed (configs/paper.yaml)


@dataclass(frozen=True)
class PrecisionChoice:
    """The resolved Lightning precision and why it was chosen."""

    precision: str
    reason: str


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (the first ``flags`` line of ``/proc/cpuinfo``; empty where there is none)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def usable_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The CPUs this process may run on (its affinity mask), fewer where a cgroup quota allows less."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return cpus


def loader_workers(setting: int | str) -> int:
    """``trainer.num_workers``: a number as given; ``auto`` = :func:`usable_cpus`, at most
    :data:`MAX_AUTO_WORKERS` (more than the usable CPUs only queue, and PyTorch warns about them)."""
    if setting == "auto":
        return min(usable_cpus(), MAX_AUTO_WORKERS)
    return int(setting)


def cuda_bf16() -> bool | None:
    """Whether CUDA device 0 computes bf16 natively (compute capability >= 8.0); None without CUDA."""
    import torch  # here, so that reading the CPU (e.g. for a report) does not load torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_capability(0) >= (8, 0)


def on_cpu(accelerator: str) -> bool:
    """Whether ``trainer.accelerator`` puts the run on the CPU (``auto`` does without CUDA and MPS)."""
    if accelerator == "cpu":
        return True
    if accelerator != "auto":
        return False
    import torch

    mps = getattr(torch.backends, "mps", None)
    return not torch.cuda.is_available() and not (mps is not None and mps.is_available())


def resolve_precision(
    accelerator: str,
    *,
    flags: Iterable[str] | None = None,
    cuda: bool | None | str = "detect",
) -> PrecisionChoice:
    """The precision ``auto`` means on this machine: bf16-mixed where bf16 is native, else 32-true.

    Args:
        accelerator: ``trainer.accelerator`` (``auto`` uses CUDA when there is one, as Lightning does).
        flags: the CPU's feature flags (default: read from ``/proc/cpuinfo``).
        cuda: whether the CUDA device computes bf16 natively, None for no CUDA (default: detected).
    """
    cuda = cuda_bf16() if cuda == "detect" else cuda
    on_cuda = accelerator in ("cuda", "gpu") or (accelerator == "auto" and cuda is not None)
    if on_cuda:
        if cuda:
            return PrecisionChoice("bf16-mixed", "the CUDA device computes bf16 natively")
        return PrecisionChoice("32-true", "the CUDA device has no native bf16 (compute capability < 8.0)")
    if accelerator == "mps":
        return PrecisionChoice("32-true", "bf16 autocast is not used on MPS")
    native = BF16_CPU_FLAGS & frozenset(cpu_flags() if flags is None else flags)
    if native:
        return PrecisionChoice("bf16-mixed", f"the CPU has {', '.join(sorted(native))}")
    return PrecisionChoice("32-true", "the CPU has neither AVX-512 BF16 nor AMX, so bf16 would be emulated")


# The instruction-set extensions that decide which kernels oneDNN and ATen pick for float32 and bf16.
ISA_FLAGS = (
    "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "avx_vnni", "amx_tile", "amx_bf16", "amx_int8",
)  # fmt: skip


def cpu_identity(cpuinfo: str | None = None, caches: str | None = None) -> str:
    """Vendor, model name, family/model/stepping, cache sizes and kernel-relevant flags of the first CPU
    in ``/proc/cpuinfo`` (``caches``: the sizes of CPU 0's caches, default read from sysfs).

    Two CPUs with the same vector capability can still sum in different orders (oneDNN blocks its
    kernels by the cache sizes and picks AMX or AVX-512 BF16 paths where present), so bitwise
    references are kept per CPU identity; a run's ``timing.json`` records it beside its seconds per
    round. Elsewhere than Linux, the platform's processor string."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    kind = "/".join(fields.get(k, "?") for k in ("cpu family", "model", "stepping"))
    caches = cache_sizes() if caches is None else caches
    return "; ".join([
        fields.get("vendor_id", "?"), fields.get("model name", "?"), f"family/model/stepping {kind}",
        f"caches {caches or fields.get('cache size', '?')}",
        " ".join(f for f in ISA_FLAGS if f in flags) or "no vector flags",
    ])  # fmt: skip


def cache_sizes(folder: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> str:
    """CPU 0's data and unified caches, e.g. ``L1 32K, L2 512K, L3 8192K`` ("" where sysfs has none)."""
    sizes = []
    for index in sorted(folder.glob("index*")):
        try:
            kind = (index / "type").read_text().strip()
            if kind in ("Data", "Unified"):
                level, size = ((index / name).read_text().strip() for name in ("level", "size"))
                sizes.append(f"L{level} {size}")
        except OSError:
            continue
    return ", ".join(sizes)


# The widest vector tier a CPU identity names, widest first: what decides a step's speed most.
_TIERS = (("amx_bf16", "AMX"), ("avx512_bf16", "AVX-512 BF16"), ("avx512f", "AVX-512"), ("avx2", "AVX2"))


def cpu_summary(identity: str) -> str:
    """A short name for a :func:`cpu_identity`: its model name and widest vector tier, e.g. ``AMD EPYC,
    AVX2``; the identity itself where it is not in that form (another platform's processor string)."""
    parts = identity.split("; ")
    if len(parts) != 5:
        return identity
    flags = set(parts[4].split())
    tier = next((name for flag, name in _TIERS if flag in flags), "no AVX2")
    return f"{parts[1]}, {tier}"
