#!/usr/bin/env bash
# The study of RESULTS.md: 17 methods and ablations on configs/study.yaml (60 rounds), three seeds of
# every row and five of the regime map's main rows (FedMRI, FedMRI beta = 0, FedAvg, SingleSet), two
# single-thread runs at a time (JOBS=1: one). Resumable: run it again and it trains only what is missing (an
# interrupted run continues after its last completed round; a run whose raw file is here is kept).
# Runs go seed by seed, so every row's seed 0 is done before any seed 1.
set -euo pipefail
cd "$(dirname "$0")/../../.."
OMP_NUM_THREADS=1 exec python compare.py --config configs/study.yaml \
    --algorithms fedmri,fedavg,singleset,fedprox,lgfedavg,fedper,fedrep,scaffold,moon,ditto,flmrcm,centralized,transfer \
    --ablations contrastive,sharing,clipped --seeds 0,1,2,3,4 \
    --seeds-of fedprox,lgfedavg,fedper,fedrep,scaffold,moon,ditto,flmrcm,centralized,transfer,fedmri-clipped,fedmri-share-whole,fedmri-share-all-but-conv,fedmri-share-all-but-stage=0,1,2 \
    --name study --results docs/results/study --jobs "${JOBS:-2}" "$@"
