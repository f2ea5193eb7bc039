#!/usr/bin/env bash
# Scenario 9: SIGTERM to every service in turn (orders, products, auth) during a buy run. Each
# must exit within its shutdown timeout (SHUTDOWN_TIMEOUT_SECS, 10 s here) after finishing its
# in-flight work; each is started again at once. Then every undecided buy is retried and the
# history checked: nothing lost.
#
# Usage: chaos/scenarios/sigterm.sh [--short]
set -euo pipefail
# shellcheck source=chaos/scenarios/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

duration=60
chaos_options "$@"
if $chaos_short; then duration=30; fi

chaos_setup
chaos_run --rate "${CHAOS_RATE:-20}" --concurrency 8 --duration "$duration" >"$chaos_work/summary" &
driver=$!

exits=()
slow=0
for svc in orders products auth; do
    sleep $((duration / 5))
    if ms=$(chaos_sigterm "$svc"); then
        log "$svc exited ${ms} ms after SIGTERM"
        exits+=("$svc=${ms}ms")
    else
        slow=$((slow + 1))
        exits+=("$svc=killed")
    fi
    chaos_start "$svc"
done

status=0
wait "$driver" || status=$?
chaos_result sigterm 3 "$(cat "$chaos_work/summary") exits=$(IFS=,; printf '%s' "${exits[*]}")"
((slow == 0)) || die "$slow service(s) did not exit within their shutdown timeout"
exit "$status"
