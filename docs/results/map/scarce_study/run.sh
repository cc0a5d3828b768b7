#!/usr/bin/env bash
# The regime map's cell (scarce data, study optimiser): configs/study_scarce.yaml (the pilot's scarce
# federation; the study's optimiser, 60 rounds x 1 local epoch), fp32, one torch thread per run.
# FedMRI, FedMRI beta = 0, FedAvg, SingleSet and Centralized over seeds 0-4; FedPer (GD-GD) and FL-MRCM
# over seeds 0-2. Centralized and SingleSet go first, every seed of each: their difference is the
# pilot's criterion (collaboration pays, >= 1 dB over >= 3 seeds). JOBS=2 trains two runs at a time.
# Resumable: run it again and it trains only what is missing; raw files land in runs/ beside this file.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
OMP_NUM_THREADS=1 exec python compare.py --config configs/study_scarce.yaml \
    --algorithms fedmri,fedavg,singleset,centralized,fedper,flmrcm --ablations contrastive \
    --seeds 0,1,2,3,4 --seeds-of fedper,flmrcm=0,1,2 --first centralized,singleset \
    --name map-scarce-study --results docs/results/map/scarce_study --jobs "${JOBS:-1}" "$@"
