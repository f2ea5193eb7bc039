#!/usr/bin/env bash
# Scenario 5: poison messages (not JSON, missing fields, oversized, wrong content type)
# published straight to the order queue in the middle of a buy run. Each must land in the
# dead-letter queue after one delivery (orders' log counts them, and the quorum queue's
# x-delivery-count on the dead letter must be 0), saying why it was refused; and every valid
# buy must be stored.
#
# Usage: chaos/scenarios/poison.sh [--short]
#   --short  a 20 s run (the CI form); otherwise 60 s
set -euo pipefail
# shellcheck source=chaos/scenarios/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

duration=60
chaos_options "$@"
if $chaos_short; then duration=20; fi

chaos_env+=("orders:RUST_LOG=info,common::amqp::server=debug")
chaos_setup
chaos_run --rate "${CHAOS_RATE:-20}" --concurrency 8 --duration "$duration" >"$chaos_work/summary" &
driver=$!

sleep $((duration / 3))
poison_status=0
"$chaos_bin/chaos" poison --amqp "$CHAOS_AMQP_URL" --queue "$chaos_queue" >"$chaos_work/poison" ||
    poison_status=$?
log "$(cat "$chaos_work/poison" 2>/dev/null)"

status=0
wait "$driver" || status=$?
# One delivery each, by orders' own count too.
max_deliveries=$(jq -s -r 'map(select(.fields.message == "delivery received"
    and (.span.message_id // "" | startswith("chaos-poison-"))) | .span.correlation_id)
    | group_by(.) | map(length) | max // 0' "$chaos_work/orders.log")
chaos_result poison 4 "$(cat "$chaos_work/summary") $(cat "$chaos_work/poison") max_deliveries=$max_deliveries"
((poison_status == 0)) ||
    die "not every poison message reached $chaos_queue.dlq after one delivery, saying why"
((max_deliveries == 1)) || die "a poison message was delivered $max_deliveries times (orders' log)"
exit "$status"
