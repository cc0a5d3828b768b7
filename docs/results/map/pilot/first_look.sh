#!/usr/bin/env bash
# The regime map's look at the one setting where FedMRI was seen ahead (issue's first look, one seed,
# bf16): configs/study.yaml's template anatomy with 2 training subjects per site (16 slices each, as
# the study), trained as Feng et al. (IEEE TMI 2022) trained FedMRI: RMSprop 1e-4, StepLR(40 rounds,
# 0.1), 10 local epochs per round (80 local steps per site and round), one fixed mask per site; 30
# rounds as that first look (the learning rate is never cut). FedMRI, FedMRI beta = 0 and FedAvg; fp32,
# one torch thread. SEEDS picks the seeds (default 1: the first look was seed 0 in bf16).
# Resumable: run it again and it trains only what is missing.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
overrides=$(for i in 0 1 2 3; do echo "sites.$i.source.subjects.train=2 sites.$i.mask.fixed=true"; done)
# shellcheck disable=SC2086
OMP_NUM_THREADS=1 exec python compare.py --config configs/study.yaml \
    --algorithms fedmri,fedavg --ablations contrastive --seeds "${SEEDS:-1}" \
    --name map-pilot-first-look --results docs/results/map/pilot/first_look --jobs 1 \
    optim.lr=1.0e-4 optim.lr_step_rounds=40 fl.local_epochs=10 fl.rounds=30 trainer.precision=32-true \
    $overrides "$@"
