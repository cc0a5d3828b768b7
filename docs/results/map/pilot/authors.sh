#!/usr/bin/env bash
# The regime map's pilot of the authors' optimiser regime (docs/results/map/README.md): the varied2
# federation of the study-optimiser pilot (2 training subjects per site with 16 slices each, realism:
# varied; configs/study_scarce_paper.yaml with its extra variety and 4 slices per subject undone)
# trained as Feng et al. (IEEE TMI 2022) trained FedMRI: RMSprop 1e-4, StepLR(40 rounds, 0.1), 10 local
# epochs per round, one fixed mask per site, 50 rounds. Seed 0, fp32, one torch thread.
# Does collaboration pay there (Centralized - SingleSet)? (FedMRI and FedAvg: the scarce authors' cell.)
# Resumable: run it again and it trains only what is missing.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
varied2=$(for i in 0 1 2 3; do echo "sites.$i.source.slices_per_subject=16 sites.$i.source.noise_range=null"; done)
varied2="$varied2 sites.0.source.stripped_fraction=0 sites.2.source.stripped_fraction=0 sites.3.source.stripped_fraction=0"
# shellcheck disable=SC2086
OMP_NUM_THREADS=1 exec python compare.py --config configs/study_scarce_paper.yaml \
    --algorithms singleset,centralized --seeds 0 \
    --name map-pilot-authors --results docs/results/map/pilot/authors --jobs 1 $varied2 "$@"
