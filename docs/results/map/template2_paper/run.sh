#!/usr/bin/env bash
# The regime map's cell "ample data's anatomy at reduced size, authors' optimiser"
# (docs/results/map/README.md): configs/study.yaml's template anatomy with 2 training subjects per site
# (16 slices each, as the study) instead of 8, trained as Feng et al. (IEEE TMI 2022) trained FedMRI:
# RMSprop 1e-4, StepLR(40 rounds, 0.1), 10 local epochs per round (80 local steps per site and round),
# batch 8, one fixed mask per site; 30 rounds (the learning rate is never cut). FedMRI, FedMRI
# beta = 0, FedAvg and SingleSet, seed by seed (SEEDS, default 1,0,2,3,4); fp32, one torch thread. The setting of
# the one-seed look (bf16) in which FedMRI led every row. Resumable: run it again and it trains only
# what is missing.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
overrides=$(for i in 0 1 2 3; do echo "sites.$i.source.subjects.train=2 sites.$i.mask.fixed=true"; done)
# shellcheck disable=SC2086
OMP_NUM_THREADS=1 exec python compare.py --config configs/study.yaml \
    --algorithms fedmri,fedavg,singleset --ablations contrastive --seeds "${SEEDS:-1,0,2,3,4}" \
    --name map-pilot-first-look --results docs/results/map/template2_paper --jobs "${JOBS:-1}" \
    optim.lr=1.0e-4 optim.lr_step_rounds=40 fl.local_epochs=10 fl.rounds=30 trainer.precision=32-true \
    $overrides "$@"
