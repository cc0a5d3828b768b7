#!/usr/bin/env bash
# The study of RESULTS.md: 17 methods and ablations x 3 seeds on configs/study.yaml (60 rounds), two
# single-thread runs at a time. Resumable: run it again and it trains only what is missing (an
# interrupted run continues after its last completed round; a run whose raw file is here is kept).
# Runs go seed by seed, so every row's seed 0 is done before any seed 1.
set -euo pipefail
cd "$(dirname "$0")/../../.."
OMP_NUM_THREADS=1 exec python compare.py --config configs/study.yaml \
    --algorithms fedmri,fedavg,singleset,fedprox,lgfedavg,fedper,fedrep,scaffold,moon,ditto,flmrcm,centralized,transfer \
    --ablations contrastive,sharing,clipped --seeds 0,1,2 --name study --results docs/results/study --jobs 2 "$@"
