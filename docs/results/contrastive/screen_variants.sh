#!/usr/bin/env bash
# A quick screen of FedMRI's contrastive variants: the default federation at 48 px, 4 rounds, seed 0.
# Resumable (a variant with results.json under screen48/ is skipped). From the repository root:
#   nohup bash docs/results/contrastive/screen_variants.sh [VARIANT ...] > /tmp/screen.log 2>&1 &
set -euo pipefail
here=docs/results/contrastive/screen48
runs=${RUNS_DIR:-/tmp/fedmri_contrastive_screen}
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(paper beta0 l2 clipped decoupled moon)
mkdir -p "$here" "$runs"
for v in "${variants[@]}"; do
  [ -f "$here/$v/results.json" ] && { echo "$v: done, skipped"; continue; }
  if [ "$v" = beta0 ]; then extra=(fl.fedmri.beta=0); else extra=(fl.fedmri.variant="$v"); fi
  echo "$v: start $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg)"
  OMP_NUM_THREADS=1 python train.py --config configs/default.yaml --overwrite fl.rounds=4 \
    sites.0.source.size=48 sites.1.source.size=48 sites.2.source.size=48 sites.3.source.size=48 \
    name="$v" output_dir="$runs" "${extra[@]}" > "$runs-$v.log" 2>&1
  mkdir -p "$here/$v"
  cp "$runs/$v/metrics.csv" "$runs/$v/results.md" "$here/$v/"
  grep -v "^generated" "$runs-$v.log" > "$here/$v/train.log" || true
  cp "$runs/$v/results.json" "$here/$v/"  # last: marks the variant done
  echo "$v: done $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg)"
done
