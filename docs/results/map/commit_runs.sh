#!/usr/bin/env bash
# Runs a study command and commits each raw result file (and the tables rebuilt beside it) as soon as
# the run that made it finishes, so that a study cut off by the end of a session keeps every finished
# run in the repository. Usage: docs/results/map/commit_runs.sh FOLDER -- COMMAND...
# FOLDER is the results folder (or a parent of several) whose runs/*.json are committed.
set -uo pipefail
folder=$1; shift; [ "$1" = "--" ] && shift
cd "$(git rev-parse --show-toplevel)"
commit_new() {
    local new
    new=$(git status --porcelain --untracked-files=all -- "$folder" | grep -E '/runs/[^/]+\.json$' | awk '{print $2}')
    [ -z "$new" ] && return 0
    local names
    names=$(for f in $new; do echo "$(basename "$(dirname "$(dirname "$f")")")/$(basename "$f" .json)"; done | paste -sd, -)
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        # Only the results folder is committed (git commit --only), whatever else is staged.
        git add -- "$folder" 2>/dev/null && \
            git commit -q --only -m "Regime map: raw results of $names" -- "$folder" && return 0
        sleep 5
    done
    echo "commit_runs: could not commit $names" >&2
}
"$@" &
pid=$!
trap 'kill -INT $pid 2>/dev/null; wait $pid; commit_new; exit 130' INT TERM
while kill -0 $pid 2>/dev/null; do sleep 30; commit_new; done
wait $pid; rc=$?
commit_new
exit $rc
