#!/usr/bin/env bash
# Scenario 2: orders crashed at exact points of a buy during a buy run: after the order is
# committed and before it is answered, before the commit, and between the reply and the ack.
# orders-failpoints (chaos/scenarios/build.sh makes it) is started in place of orders, armed
# with ORDERS_FAILPOINT at a random n-th buy; it aborts there, as kill -9 would, and the plain
# orders is started again. The request it was handling must be delivered again and answered
# with the one order it makes (replayed after the commit, created anew before it), and the
# history check must pass: every key one order, every 2xx answer that order.
#
# Usage: chaos/scenarios/failpoints.sh [--short]
set -euo pipefail
# shellcheck source=chaos/scenarios/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

duration=60
chaos_options "$@"
if $chaos_short; then duration=40; fi
points=(after-commit before-commit after-reply)

chaos_env+=("orders:RUST_LOG=info,common::amqp::server=debug")
chaos_setup
[[ -x $chaos_bin/orders-failpoints ]] ||
    die "$chaos_bin/orders-failpoints is missing: chaos/scenarios/build.sh${CHAOS_PROFILE:+ --$CHAOS_PROFILE}"
chaos_run --rate "${CHAOS_RATE:-20}" --concurrency 8 --duration "$duration" >"$chaos_work/summary" &
driver=$!

slice=$((duration / (${#points[@]} + 1)))
crashes=0
for point in "${points[@]}"; do
    sleep $((slice / 2))
    chaos_sigterm orders >/dev/null
    nth=$((10 + RANDOM % 30))
    chaos_start orders --bin "$chaos_bin/orders-failpoints" --no-wait \
        --env ORDERS_FAILPOINT="$point" --env ORDERS_FAILPOINT_AFTER="$nth"
    log "orders-failpoints armed at $point, buy $nth"
    rc=0
    chaos_launch wait --timeout 60 orders || rc=$?
    ((rc == 134)) || die "orders-failpoints did not abort at $point within 60s (exit $rc)"
    crashes=$((crashes + 1))
    log "orders aborted at $point; starting it again"
    sleep 1
    chaos_start orders
done

status=0
wait "$driver" || status=$?

# Each crash, followed through orders' log by its correlation id: the request must come back
# and be answered with an order, the same one the buyer was told about.
bad=0 followed=()
for point in "${points[@]}"; do
    correlation=$(jq -r --arg p "$point" 'select(.fields.message == "failpoint reached; aborting"
        and .fields.failpoint == $p) | .span.correlation_id' "$chaos_work/orders.log" | head -1)
    [[ -n $correlation && $correlation != null ]] || die "no crash at $point in orders' log"
    read -r how order < <(jq -r --arg c "$correlation" 'select(.span.correlation_id == $c
        and (.fields.message == "order created" or .fields.message == "order request replayed"))
        | "\(.fields.message | split(" ") | last) \(.fields.order_id)"' "$chaos_work/orders.log" | tail -1) ||
        true
    expected=replayed
    [[ $point == before-commit ]] && expected=created
    answered=$(jq -s -r --arg o "${order:-none}" 'map(select(.outcome == "ok" and .order_id == $o)) | length' \
        "$chaos_work/history.jsonl")
    log "crash at $point: request $correlation came back, $how as order ${order:-none}, answered to the buyer $answered time(s)"
    followed+=("$point=${how:-lost}")
    [[ ${how:-} == "$expected" && $answered -ge 1 ]] || bad=$((bad + 1))
done
chaos_result failpoints "$crashes" "$(cat "$chaos_work/summary") crashes=$(IFS=,; printf '%s' "${followed[*]}")"
((bad == 0)) || die "$bad crashed request(s) were not answered with their one order"
exit "$status"
