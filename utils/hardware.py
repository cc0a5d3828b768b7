"""What the machine computes natively: the precision that ``trainer.precision: auto`` resolves to.

bf16 autocast only pays where the hardware multiplies bf16 itself: a CUDA device with bf16 support
(compute capability 8.0 or newer), or a CPU with AVX-512 BF16 or AMX. Elsewhere PyTorch emulates
bf16 and autocast is slower than fp32, so ``auto`` keeps fp32 there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


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


def cuda_bf16() -> bool | None:
    """Whether CUDA device 0 computes bf16 natively (compute capability >= 8.0); None without CUDA."""
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_capability(0) >= (8, 0)


def on_cpu(accelerator: str) -> bool:
    """Whether ``trainer.accelerator`` puts the run on the CPU (``auto`` does without CUDA and MPS)."""
    if accelerator == "cpu":
        return True
    if accelerator != "auto":
        return False
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
