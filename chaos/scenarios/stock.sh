#!/usr/bin/env bash
# Scenario: stock through every fault. Products with tracked stock (catalog-stock.json: three
# tracked, one not) are bought until they run short, a fifth of the orders answered are
# cancelled at once, and every tracked product is restocked halfway; meanwhile, in turn, orders
# and products are killed with -9 and started again, the broker is restarted and the
# PostgreSQL holding products' and orders' databases is stopped and started. Then every
# undecided buy and cancel is retried, and once no reservation is pending and every order
# event is sent, the driver checks for every tracked product:
#   initial stock + restocks = stock + units in orders that are not cancelled
# besides the history check (lost, duplicated, unexpected, unresolved) and that every cancel
# answered is a cancelled order. A 409 out-of-stock is a definite refusal: a key answered so
# must own no order.
#
# Usage: chaos/scenarios/stock.sh [--short]
#   --short    one round of the four faults over an 85 s run (the CI form); otherwise three
#              rounds over ~180 s
set -euo pipefail
# shellcheck source=chaos/scenarios/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rounds=3
chaos_options "$@"
if $chaos_short; then rounds=1; fi
# Each round: four faults, each at a random moment of a 15 s slice, plus the time each takes;
# 10 quiet seconds before the first.
duration=$((rounds * 75 + 10))

chaos_catalog=catalog-stock.json
# Reservations whose buy had no answer are asked about soon after the RPC timeout (5 s), so
# the run settles in seconds.
chaos_env+=("products:RESERVATION_RESOLVE_AFTER_MS=6000" "products:RESERVATION_CHECK_INTERVAL_MS=1000")
chaos_setup --private-rabbitmq --private-postgres products --private-postgres orders
chaos_run --rate "${CHAOS_RATE:-20}" --concurrency 8 --duration "$duration" \
    --cancel-percent 20 --restock 150 >"$chaos_work/summary" &
driver=$!

# A random moment in the next slice of $1 seconds: waits the first half plus a random part of
# the second.
pause_within() {
    local slice_ms=$(($1 * 1000)) wait_ms
    wait_ms=$((slice_ms / 2 + RANDOM % (slice_ms / 2)))
    sleep "$((wait_ms / 1000)).$(printf '%03d' $((wait_ms % 1000)))"
}

# shellcheck disable=SC2329 # called through wait_for
all_ready() { chaos_ready products && chaos_ready orders; }

faults=0
sleep 10
for ((round = 1; round <= rounds; round++)); do
    for svc in orders products; do
        pause_within 15
        chaos_kill9 "$svc"
        down=$((1 + RANDOM % 3))
        log "round $round: $svc killed, starting it again in ${down}s"
        sleep "$down"
        chaos_start "$svc"
        faults=$((faults + 1))
    done
    pause_within 15
    chaos_rabbitmq_stop
    log "round $round: RabbitMQ stopped, starting it again in 3s"
    sleep 3
    chaos_rabbitmq_start
    wait_for 60 "products and orders to recover from the broker restart" all_ready ||
        die "the services did not recover from the broker restart within 60s"
    faults=$((faults + 1))
    pause_within 15
    chaos_postgres_stop
    log "round $round: PostgreSQL stopped, starting it again in 5s"
    sleep 5
    chaos_postgres_start
    wait_for 60 "products and orders to recover from the database stop" all_ready ||
        die "the services did not recover from the database stop within 60s"
    faults=$((faults + 1))
done

status=0
wait "$driver" || status=$?
chaos_result stock "$faults" "$(cat "$chaos_work/summary")"
exit "$status"
