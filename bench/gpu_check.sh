#!/usr/bin/env bash
# The GPU check in one command (under 8 minutes on one GPU): writes gpu_check.json and gpu_check.md here.
#   bash bench/gpu_check.sh                 # measure (needs CUDA)
#   bash bench/gpu_check.sh --dry           # the same code on tiny sizes on the CPU: checks, measures nothing
# Further options (--out, --subjects, --reps, --no-compile, --peak-tflops, --precision): python bench/gpu_check.py -h
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec python "$here/bench/gpu_check.py" "$@"
