#!/usr/bin/env bash
# The regime map's cell (scarce data, the authors' optimiser): configs/study_scarce_paper.yaml (the
# pilot's scarce federation trained as Feng et al., IEEE TMI 2022, trained FedMRI: RMSprop 1e-4,
# StepLR(40, 0.1), 10 local epochs, batch 8, one fixed mask per site, 50 rounds), fp32, one torch
# thread per run. FedMRI, FedMRI beta = 0, FedMRI beta = 25 (the paper's per-weight pull at 16
# channels), FedAvg, SingleSet and Centralized over seeds 0-4; FedPer (GD-GD) and FL-MRCM over seeds
# 0-2. Runs go seed by seed (every row's seed 0 first). 20 local steps per site and round (the 16-slice
# pilot, 80 steps, took 55 min per run on one core).
# JOBS=2 trains two runs at a time. Resumable: run it again and it trains only what is missing (an
# interrupted run continues after its last completed round); raw files land in runs/ beside this file.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
OMP_NUM_THREADS=1 exec python compare.py --config configs/study_scarce_paper.yaml \
    --algorithms fedmri,fedavg,singleset,centralized,fedper,flmrcm --ablations contrastive,beta --betas 25 \
    --seeds 0,1,2,3,4 --seeds-of fedper,flmrcm=0,1,2 \
    --name map-scarce-paper --results docs/results/map/scarce_paper --jobs "${JOBS:-1}" "$@"
