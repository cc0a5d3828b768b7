#!/usr/bin/env bash
# The regime map's pilot (RESULTS.md, "When does FedMRI help?"): which scarce-data setting of the
# simulated federation makes collaboration pay (Centralized - SingleSet >= 1 dB of mean test PSNR)?
# configs/study.yaml with fewer training subjects per site, seed 0, the study's optimiser (60 rounds,
# RMSprop 1e-3 cut tenfold after rounds 20 and 40, one local epoch), fp32, one torch thread per run.
# Settings: train2 (2 training subjects per site), train1 (1), varied2 (2, realism: varied), varied1 (1,
# realism: varied); varied2x (varied2 with the default run's extra subject variety: noise 0.1-2x the
# profile's, 30 % of the whole-head sites' subjects skull-stripped); varied2x4 (varied2x with 4 slices
# per subject instead of 16: the chosen setting).
# Resumable: run it again and it trains only what is missing. JOBS=2 trains two runs at a time.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
subjects() { for i in 0 1 2 3; do echo "sites.$i.source.subjects.train=$1"; done; }
realism() { for i in 0 1 2 3; do echo "sites.$i.source.realism=$1"; done; }
variety() {  # the default run's (configs/default.yaml): noise 0.1-2x, 30 % stripped where the head is whole
    for i in 0 1 2 3; do echo "sites.$i.source.noise_range=[0.1,2.0]"; done
    for i in 0 2 3; do echo "sites.$i.source.stripped_fraction=0.3"; done
}
slices() { for i in 0 1 2 3; do echo "sites.$i.source.slices_per_subject=$1"; done; }
run() {  # run <setting> <overrides...>; SEEDS (default 0) picks the seeds
    local setting=$1; shift
    OMP_NUM_THREADS=1 python compare.py --config configs/study.yaml --algorithms centralized,singleset,fedavg \
        --first centralized,singleset --seeds "${SEEDS:-0}" --name "map-pilot-$setting" --results "docs/results/map/pilot/$setting" --jobs "${JOBS:-1}" \
        trainer.precision=32-true "$@"
}
run train2 $(subjects 2)
run train1 $(subjects 1)
run varied2 $(subjects 2) $(realism varied)
run varied1 $(subjects 1) $(realism varied)
run varied2x $(subjects 2) $(realism varied) $(variety)
run varied2x4 $(subjects 2) $(realism varied) $(variety) $(slices 4)
