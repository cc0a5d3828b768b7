#!/usr/bin/env bash
# The 30-round study of RESULTS.md: 19 table rows x 3 seeds on configs/study_30rounds.yaml, two single-thread runs at a
# time. Resumable: run it again and it trains only what is missing (an interrupted run continues after
# its last completed round). The variants named in --first train first with all three seeds.
set -euo pipefail
cd "$(dirname "$0")/../../.."
OMP_NUM_THREADS=1 exec python compare.py --config configs/study_30rounds.yaml \
    --algorithms fedmri,fedavg,singleset,fedprox,lgfedavg,fedper,fedrep,scaffold,moon,ditto,flmrcm,centralized,transfer \
    --ablations contrastive,sharing,clipped --seeds 0,1,2 --name study_30rounds --results docs/results/study_30rounds --jobs 2 \
    --first fedmri,fedavg,fedmri-beta0,fedmri-share-whole,singleset "$@"
