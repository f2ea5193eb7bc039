#!/usr/bin/env bash
# Scenario 6: the order queue deleted in the middle of a buy run, twice over.
#  1. While orders runs: its consumer is cancelled, it subscribes again and declares the queue
#     again by itself (within a fraction of a second here). The buys caught in between answer
#     503 at once; nothing is restarted.
#  2. While orders is stopped, so nothing declares it again: the queue stays gone for a while.
#     No buy may answer 2xx then, and each must answer 503 within the RPC timeout plus a
#     second. Starting orders declares it again (products never declares it: it only looks it up).
# Then every undecided buy is retried and the history checked.
#
# Usage: chaos/scenarios/queue-deleted.sh [--short]
set -euo pipefail
# shellcheck source=chaos/scenarios/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

duration=60 gone=20
chaos_options "$@"
if $chaos_short; then duration=30 gone=10; fi
rpc_timeout_ms=5000

chaos_setup
chaos_run --rate "${CHAOS_RATE:-20}" --concurrency 8 --duration "$duration" >"$chaos_work/summary" &
driver=$!

# shellcheck disable=SC2329 # called through wait_for
queue_exists() { chaos_rabbitmqctl list_queues name | grep -qx "$chaos_queue"; }

sleep $((duration / 5))
chaos_rabbitmqctl delete_queue "$chaos_queue" >/dev/null
log "deleted $chaos_queue under a running orders"
wait_for 30 "orders to declare $chaos_queue again" queue_exists ||
    die "orders did not declare $chaos_queue again within 30s"
log "orders declared $chaos_queue again by itself"
chaos_alive orders || die "orders exited after its queue was deleted"

sleep $((duration / 5))
chaos_sigterm orders >/dev/null
chaos_rabbitmqctl delete_queue "$chaos_queue" >/dev/null
deleted_ms=$(date +%s%3N)
log "stopped orders and deleted $chaos_queue; leaving it gone for ${gone}s"
sleep "$gone"
restored_ms=$(date +%s%3N)
chaos_start orders
log "started orders, which declared $chaos_queue again"

status=0
wait "$driver" || status=$?

# Buys that started once the queue was gone and ended before it came back.
while_gone=$(jq -c --argjson from "$deleted_ms" --argjson to "$restored_ms" '
    select(.phase == "load" and .at_unix_ms >= $from
           and .at_unix_ms + (.end_ms - .start_ms) <= $to)' "$chaos_work/history.jsonl")
gone_buys=$(jq -s 'length' <<<"$while_gone")
gone_ok=$(jq -s 'map(select(.outcome == "ok")) | length' <<<"$while_gone")
gone_503=$(jq -s 'map(select(.status == 503)) | length' <<<"$while_gone")
gone_slow=$(jq -s --argjson limit $((rpc_timeout_ms + 1000)) \
    'map(select(.end_ms - .start_ms > $limit)) | length' <<<"$while_gone")
gone_statuses=$(jq -s -c 'group_by(.status) | map({status: .[0].status, n: length})' <<<"$while_gone")
read -r _ _ _ gone_p99 _ < <(chaos_window "$deleted_ms" "$restored_ms")
log "while the queue was gone: $gone_buys buys, $gone_ok answered 2xx, $gone_503 answered 503, $gone_slow slower than $((rpc_timeout_ms + 1000)) ms; statuses $gone_statuses"
chaos_result queue-deleted 2 "$(cat "$chaos_work/summary") fault_p99_ms=$gone_p99 gone_buys=$gone_buys gone_2xx=$gone_ok gone_503=$gone_503 gone_slow=$gone_slow"
((gone_ok == 0)) || die "$gone_ok buys answered 2xx while the queue was gone"
((gone_slow == 0)) || die "$gone_slow buys took longer than the RPC timeout plus a second"
exit "$status"
