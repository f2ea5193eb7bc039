#!/usr/bin/env bash
# Scenario 3: RabbitMQ restarted in the middle of a buy run. The run has a RabbitMQ node of its
# own, which is stopped (its Erlang VM exits) and started again after a few seconds. products
# and orders must recover by themselves, without a restart, within 30 s of the broker being back:
# both /readyz answer 200 and orders is a consumer of the order queue again (the broker's own
# consumer count). Then every undecided buy is retried and the history checked.
#
# Usage: chaos/scenarios/broker-restart.sh [--short]
set -euo pipefail
# shellcheck source=chaos/scenarios/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

duration=60 down=5
chaos_options "$@"
if $chaos_short; then duration=30 down=3; fi
recover_limit_ms=30000

chaos_setup --private-rabbitmq
pids_before="$(chaos_pid products) $(chaos_pid orders)"
chaos_run --rate "${CHAOS_RATE:-20}" --concurrency 8 --duration "$duration" >"$chaos_work/summary" &
driver=$!

# shellcheck disable=SC2329 # called through wait_for
recovered() {
    chaos_ready products && chaos_ready orders && (($(chaos_queue_consumers "$chaos_queue") >= 1))
}

sleep $((duration / 3))
fault_from=$(chaos_now_ms)
chaos_rabbitmq_stop
log "RabbitMQ stopped; starting it again in ${down}s"
sleep "$down"
chaos_rabbitmq_start
back_ms=$(chaos_now_ms)
log "RabbitMQ is back"
wait_for 60 "products and orders to recover" recovered || die "the services did not recover within 60s"
recovered_ms=$(($(chaos_now_ms) - back_ms))
fault_to=$(chaos_now_ms)
log "recovered ${recovered_ms} ms after RabbitMQ was back: both ready, $(chaos_queue_consumers "$chaos_queue") consumer(s) on $chaos_queue"
for svc in products orders; do
    chaos_alive "$svc" || die "$svc exited when the broker restarted"
done
pids_after="$(chaos_pid products) $(chaos_pid orders)"
[[ $pids_before == "$pids_after" ]] || die "a service was restarted ($pids_before -> $pids_after)"

status=0
wait "$driver" || status=$?
read -r w_buys w_ok w_slow w_p99 w_statuses < <(chaos_window "$fault_from" "$fault_to")
log "during the outage and recovery: $w_buys buys, $w_ok answered 2xx, slowest ${w_slow} ms; statuses $w_statuses"
chaos_result broker-restart 1 "$(cat "$chaos_work/summary") fault_p99_ms=$w_p99 recovered_ms=$recovered_ms fault_statuses=$w_statuses"
((recovered_ms <= recover_limit_ms)) || die "recovery took ${recovered_ms} ms, more than ${recover_limit_ms} ms"
exit "$status"
