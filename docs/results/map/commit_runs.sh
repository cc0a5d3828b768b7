#!/usr/bin/env bash
# Runs a study command and commits each raw result file (and the tables rebuilt beside it) as soon as
# the run that made it finishes, so that a study cut off by the end of a session keeps every finished
# run in the repository. Usage: docs/results/map/commit_runs.sh FOLDER -- COMMAND...
# FOLDER is the results folder (or a parent of several) whose runs/*.json are committed. When FOLDER
# is the regime map's (it holds regimes.yaml), each commit also rebuilds the map (map.md, map.json,
# figures/map.png) and its blocks in RESULTS.md and the README from the raw files, and commits them;
# MAP=<map folder> does the same for a map whose regime FOLDER is (e.g. MAP=docs/results/map with
# FOLDER docs/results/study). When FOLDER is a study's (it holds manifest.json), each commit also
# rebuilds its tables from the raw files and its blocks in RESULTS.md (where RESULTS.md has them).
# It looks for new files every COMMIT_POLL seconds (default 30). Stop it with SIGTERM (or Ctrl-C in a
# terminal): the command gets the same signal, and what it finished is committed before the script exits.
set -uo pipefail
folder=$1; shift; [ "$1" = "--" ] && shift
cd "$(git rev-parse --show-toplevel)"
commit_new() {
    local new
    new=$(git status --porcelain --untracked-files=all -- "$folder" | grep -E '/runs/[^/]+\.json$' | awk '{print $2}')
    [ -z "$new" ] && return 0
    local names extra=()
    names=$(for f in $new; do echo "$(basename "$(dirname "$(dirname "$f")")")/$(basename "$f" .json)"; done | paste -sd, -)
    if [ -f "$folder/manifest.json" ]; then
        # A study's folder: its tables again from the raw files (the training process may not have
        # written them yet), and its blocks in RESULTS.md where RESULTS.md has its markers.
        python compare.py --report "$folder" > /dev/null 2>&1
        python docs/results/refresh_results.py "$folder" > /dev/null 2>&1 && extra+=(RESULTS.md README.md)
    fi
    local map=${MAP:-}
    [ -f "$folder/regimes.yaml" ] && map=$folder
    if [ -n "$map" ]; then
        python compare.py --map "$map" > /dev/null && \
            python docs/results/refresh_results.py "$map" > /dev/null && extra+=("$map" RESULTS.md README.md)
    fi
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        # Only the results folder (and the map's, RESULTS.md and README.md where rebuilt) is committed
        # (git commit --only), whatever else is staged.
        git add -- "$folder" "${extra[@]}" 2>/dev/null && \
            git commit -q --only -m "Regime map: raw results of $names" -- "$folder" "${extra[@]}" && return 0
        sleep 5
    done
    echo "commit_runs: could not commit $names" >&2
}
"$@" &
pid=$!
# Each signal is passed on as itself: started in the background by a script, the command ignores SIGINT
# (as this shell then does), and SIGTERM is what stops it there, keeping its last completed round.
# A command that is a chain (bash -c "a && b") does not pass a signal on to the program it runs, so its
# children get it too.
stop() { pkill -"$1" -P "$pid" 2>/dev/null; kill -"$1" "$pid" 2>/dev/null; wait "$pid"; commit_new; exit "$2"; }
trap 'stop INT 130' INT
trap 'stop TERM 143' TERM
while kill -0 $pid 2>/dev/null; do sleep "${COMMIT_POLL:-30}"; commit_new; done
wait $pid; rc=$?
commit_new
exit $rc
