#!/usr/bin/env bash
# Scenario 1: kill -9 orders at random moments during a buy run, restart it after 1-3 s, then
# retry every undecided buy and check the history against the orders database.
#
# Usage: chaos/scenarios/kill-orders.sh [--short] [--kills N]
#   --short    3 kills over a ~40 s run (the CI form); otherwise 10 kills over ~120 s
set -euo pipefail
# shellcheck source=chaos/scenarios/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kills=10 duration=120
while (($#)); do
    case $1 in
        --short) kills=3 duration=40 ;;
        --kills) kills=$2 && shift ;;
        *) die "unknown option '$1'" ;;
    esac
    shift
done

chaos_setup
chaos_run --rate "${CHAOS_RATE:-20}" --concurrency 8 --duration "$duration" >"$chaos_work/summary" &
driver=$!

# Spread the kills over the run, each at a random point of its own slice.
slice_ms=$((duration * 1000 / (kills + 1)))
for ((i = 1; i <= kills; i++)); do
    wait_ms=$((slice_ms / 2 + RANDOM % (slice_ms / 2)))
    sleep "$((wait_ms / 1000)).$(printf '%03d' $((wait_ms % 1000)))"
    chaos_kill9 orders
    down=$((1 + RANDOM % 3))
    log "kill $i/$kills: orders killed, restarting in ${down}s"
    sleep "$down"
    chaos_start orders
done

status=0
wait "$driver" || status=$?
chaos_result kill-orders "$kills" "$(cat "$chaos_work/summary")"
exit "$status"
