"""One training step of the U-Net under each fast path: precision, memory order, torch.compile.

    python bench/step.py                           # CPU: default size (chans 16, 128 x 128, batch 8)
    python bench/step.py --compile                 # also torch.compile (minutes of compiling on a CPU)
    python bench/step.py --size 320 --chans 32     # on a GPU this is the default: the paper's size

A step is ``ReconModule.training_step`` (the project's own forward path) + backward + RMSprop, for
every variant built from the same weights: fp32 (``trainer.precision: 32-true``), bf16-mixed
(autocast, as Lightning's ``bf16-mixed`` does), ``model.channels_last``, both, and with
``--compile`` ``model.compile``. The variants alternate within every repetition; the table gives
slices/s and the speed-up over fp32. On a GPU it also gives the peak memory of each variant and the
achieved TFLOP/s (FLOPs of one step counted by ``torch.utils.flop_counter``), against the card's
dense bf16 peak when it is known or given with ``--peak-tflops``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.timing import interleaved, load, machine, median, sync  # noqa: E402
from models.recon_module import ReconModule  # noqa: E402

# Dense bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s (checked in order).
PEAK_BF16 = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}


def variant(options: dict, bf16: bool, device: torch.device, args, state: dict):
    """A step function for one fast-path combination, from the shared initial weights."""
    module = ReconModule(
        model={"chans": args.chans, "num_pool_layers": 4, **options}, optim={"name": "rmsprop", "lr": 1e-4}
    )
    module.model.load_state_dict(state)
    module.to(device)
    optimizer = module.optimizer
    generator = torch.Generator().manual_seed(0)
    shape = (args.batch, 1, args.size, args.size)
    batch = {
        "input": torch.randn(shape, generator=generator).to(device),
        "target": torch.randn(shape, generator=generator).to(device),
    }

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        context = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with context:
            loss = module.training_step(batch, 0)
        loss.backward()
        optimizer.step()

    return step


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    gpu = torch.cuda.is_available()
    parser.add_argument("--size", type=int, default=320 if gpu else 128)
    parser.add_argument("--chans", type=int, default=32 if gpu else 16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--reps", type=int, default=10 if gpu else 5)
    parser.add_argument("--compile", action="store_true", help="include model.compile")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the card's dense bf16 peak")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if gpu else "cpu")
    state = ReconModule(model={"chans": args.chans, "num_pool_layers": 4}, optim={}).model.state_dict()

    combos = {
        "fp32": ({}, False),
        "bf16-mixed": ({}, True),
        "channels_last": ({"channels_last": True}, False),
        "bf16-mixed + channels_last": ({"channels_last": True}, True),
    }
    if args.compile:
        combos["compile"] = ({"compile": True}, False)
        combos["bf16-mixed + compile"] = ({"compile": True}, True)
    steps = {name: variant(options, bf16, device, args, state) for name, (options, bf16) in combos.items()}
    warm = {}
    for name, step in steps.items():  # the first call compiles, where compiling is asked for
        start = time.perf_counter()
        step()
        sync()
        warm[name] = time.perf_counter() - start
    times = interleaved(steps, args.reps, warmup=1)

    flops = peak_memory = None
    if gpu:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            steps["fp32"]()
        flops = counter.get_total_flops()
        peak_memory = {}
        for name, step in steps.items():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            step()
            sync()
            peak_memory[name] = torch.cuda.max_memory_allocated() / 2**30
    name = torch.cuda.get_device_name(0) if gpu else ""
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16.items() if k in name), None)

    print(machine())
    print(
        f"U-Net chans {args.chans}, {args.size} x {args.size}, batch {args.batch} on {device.type}; "
        f"median of {args.reps} steps per variant, variants alternating"
    )
    base = median(times["fp32"])
    print("  (first step: with model.compile it includes compiling; inductor's disk cache shortens reruns)")
    for label, t in times.items():
        line = (
            f"  {label:<28} {median(t) * 1e3:9.1f} ms  {args.batch / median(t):8.1f} slices/s  "
            f"x{base / median(t):5.2f}   (first step {warm[label]:.1f} s)"
        )
        if gpu:
            tflops = flops / median(t) / 1e12
            line += f"   peak memory {peak_memory[label]:.2f} GiB, {tflops:.1f} TFLOP/s"
            if peak:
                line += f" = {100 * tflops / peak:.1f} % of {peak:.0f}"
        print(line)
    print(f"  {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
