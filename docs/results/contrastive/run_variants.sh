#!/usr/bin/env bash
# FedMRI's contrastive variants on the default federation (6 rounds, seed 0), one run at a time.
# Resumable: a variant whose results.json is already here is skipped. Usage (from the repository root):
#   nohup bash docs/results/contrastive/run_variants.sh [VARIANT ...] > /tmp/variants.log 2>&1 &
set -euo pipefail
here=docs/results/contrastive
runs=${RUNS_DIR:-/tmp/fedmri_contrastive_runs}
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(clipped l2 decoupled moon paper beta0)
for v in "${variants[@]}"; do
  [ -f "$here/$v/results.json" ] && { echo "$v: done, skipped"; continue; }
  if [ "$v" = beta0 ]; then extra=(fl.fedmri.beta=0); else extra=(fl.fedmri.variant="$v"); fi
  echo "$v: start $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg)"
  # float32, as every run of RESULTS.md's tables (the default config's precision is auto)
  OMP_NUM_THREADS=1 python train.py --config configs/default.yaml --overwrite fl.rounds=6 \
    trainer.precision=32-true name="$v" output_dir="$runs" "${extra[@]}" > "$runs-$v.log" 2>&1
  mkdir -p "$here/$v"
  cp "$runs/$v/metrics.csv" "$runs/$v/results.md" "$here/$v/"
  grep -v "^generated" "$runs-$v.log" > "$here/$v/train.log" || true
  cp "$runs/$v/results.json" "$here/$v/"  # last: marks the variant done
  echo "$v: done $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg)"
done
