#!/usr/bin/env bash
# The regime map's cell "... authors' optimiser, state reset every round (ours)": template2_paper's
# runs (configs/study.yaml's template anatomy, 2 training subjects x 16 slices per site, one fixed mask
# per site, RMSprop 1e-4, 10 local epochs, batch 8, 30 rounds) with one change, the sites' optimiser
# state cleared at the start of every round's local fit (optim.reset_state=true, this project's option;
# the authors' training keeps it). FedMRI, FedMRI beta = 0 and FedAvg, seed by seed (SEEDS, default
# 1,0,2); fp32, one torch thread. It asks, with seed-level intervals, whether the contrastive term's
# gain in template2_paper is one of the optimiser's state (docs/results/map/mechanism/, seed 1).
# Resumable: run it again and it trains only what is missing.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
overrides=$(for i in 0 1 2 3; do echo "sites.$i.source.subjects.train=2 sites.$i.mask.fixed=true"; done)
# shellcheck disable=SC2086
OMP_NUM_THREADS=1 exec python compare.py --config configs/study.yaml \
    --algorithms fedmri,fedavg --ablations contrastive --seeds "${SEEDS:-1,0,2}" \
    --name map-template2-reset --results docs/results/map/template2_reset --jobs "${JOBS:-1}" \
    optim.lr=1.0e-4 optim.lr_step_rounds=40 fl.local_epochs=10 fl.rounds=30 trainer.precision=32-true \
    optim.reset_state=true $overrides "$@"
