#!/usr/bin/env bash
# Scenario 4: the orders database stopped for 20 s in the middle of a buy run. orders' database
# is a PostgreSQL cluster of the run's own (auth and products keep the shared one, so buys keep
# being priced and keep reaching orders throughout). While it is down, orders holds each buy
# it has taken and retries it in process: nothing may be dead-lettered, and no request may be
# delivered more than twice (counted from orders' own log, one "delivery received" line per
# delivery). Once it is back, every undecided buy is retried and the history checked: all land.
#
# Usage: chaos/scenarios/postgres-stop.sh [--short]
set -euo pipefail
# shellcheck source=chaos/scenarios/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

duration=70 down=20
chaos_options "$@"
if $chaos_short; then duration=35 down=10; fi

chaos_env+=("orders:RUST_LOG=info,common::amqp::server=debug")
chaos_setup --private-postgres orders
chaos_run --rate "${CHAOS_RATE:-20}" --concurrency 8 --duration "$duration" >"$chaos_work/summary" &
driver=$!

sleep $((duration / 4))
fault_from=$(chaos_now_ms)
chaos_postgres_stop
log "orders' PostgreSQL stopped; starting it again in ${down}s"
sleep "$down"
chaos_postgres_start
fault_to=$(chaos_now_ms)
log "orders' PostgreSQL is back"
chaos_alive orders || die "orders exited while its database was down"
wait_for 30 "orders to be ready again" chaos_ready orders || die "orders did not become ready again"

status=0
wait "$driver" || status=$?
read -r w_buys w_ok w_slow w_p99 w_statuses < <(chaos_window "$fault_from" "$fault_to")
log "while the database was down: $w_buys buys, $w_ok answered 2xx, slowest ${w_slow} ms; statuses $w_statuses"
dead=$(chaos_queue_messages "$chaos_queue.dlq")
read -r deliveries requests max_deliveries < <(jq -s -r '
    map(select(.fields.message == "delivery received") | .span.correlation_id)
    | group_by(.) | map(length)
    | "\(add // 0) \(length) \(max // 0)"' "$chaos_work/orders.log")
log "orders received $deliveries deliveries of $requests requests, at most $max_deliveries of one; $dead dead-lettered"
chaos_result postgres-stop 1 "$(cat "$chaos_work/summary") fault_p99_ms=$w_p99 dead_lettered=$dead max_deliveries=$max_deliveries fault_statuses=$w_statuses"
((requests > 0)) || die "orders logged no delivery: is the delivery log line gone?"
((dead == 0)) || die "$dead buys were dead-lettered during the outage"
((max_deliveries <= 2)) || die "a request was delivered $max_deliveries times"
exit "$status"
