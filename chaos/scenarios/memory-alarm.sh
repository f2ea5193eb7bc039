#!/usr/bin/env bash
# Scenario 7: the broker blocks publishers under a memory alarm in the middle of a buy run. The
# run has a RabbitMQ node of its own, whose high watermark is set so low that the alarm goes off
# at once, held there, then set back. While it lasts no buy may answer 2xx, each must answer
# 503 within the RPC timeout plus a second, and products must not pile up publishes waiting on
# the broker: no more buys may wait out the whole timeout (504) than were in flight when it
# began, and products' memory must not grow. Once it clears, buying must work again.
#
# Usage: chaos/scenarios/memory-alarm.sh [--short]
set -euo pipefail
# shellcheck source=chaos/scenarios/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

duration=60 alarm=20
chaos_options "$@"
if $chaos_short; then duration=30 alarm=10; fi
rpc_timeout_ms=5000 concurrency=8

chaos_setup --private-rabbitmq
chaos_run --rate "${CHAOS_RATE:-20}" --concurrency "$concurrency" --duration "$duration" >"$chaos_work/summary" &
driver=$!

sleep $((duration / 4))
rss_before=$(chaos_rss_kib products)
chaos_rabbitmqctl set_vm_memory_high_watermark 0.000001 >/dev/null
# Taken once the command has returned: the CLI itself takes a moment to start.
from=$(chaos_now_ms)
log "memory alarm raised for ${alarm}s"
rss_peak=$rss_before
for ((i = 0; i < alarm * 4; i++)); do
    sleep 0.25
    rss=$(chaos_rss_kib products)
    ((rss > rss_peak)) && rss_peak=$rss
done
chaos_rabbitmqctl set_vm_memory_high_watermark 0.4 >/dev/null
to=$(chaos_now_ms)
log "memory alarm cleared"
# shellcheck disable=SC2329 # called through wait_for
cleared() { ! chaos_rabbitmqctl status | grep -q 'Memory alarm'; }
wait_for 30 "the alarm to clear" cleared || die "the memory alarm did not clear"
recovered_at=$(chaos_now_ms)

status=0
wait "$driver" || status=$?
# From the moment RabbitMQ told products it was blocked until it told it the block was lifted
# (its log says when): a buy that had published just before may still complete.
blocked=$(chaos_logged_ms products "RabbitMQ blocked publishing on this connection")
unblocked=$(chaos_logged_ms products "RabbitMQ unblocked this connection")
[[ -n $blocked && -n $unblocked ]] || die "products was not told that RabbitMQ blocked it, or not that it stopped"
log "products was told it was blocked $((blocked - from)) ms after the alarm was set"
# Buys that waited out the whole RPC timeout: any in flight around the alarm counts.
waited_all=$(jq -s --argjson from $((from - rpc_timeout_ms)) --argjson to "$to" \
    'map(select(.phase == "load" and .at_unix_ms >= $from and .at_unix_ms < $to and .status == 504)) | length' \
    "$chaos_work/history.jsonl")
from=$blocked to=$unblocked
read -r w_buys w_ok w_slow w_p99 w_statuses < <(chaos_window "$from" "$to")
log "during the alarm: $w_buys buys, $w_ok answered 2xx, slowest ${w_slow} ms; statuses $w_statuses"
not_503=$(jq -s --argjson from "$from" --argjson to "$to" \
    'map(select(.phase == "load" and .at_unix_ms >= $from and .at_unix_ms < $to and .status != 503)) | length' \
    "$chaos_work/history.jsonl")
read -r a_buys a_ok _ _ a_statuses < <(chaos_window "$recovered_at" "$(chaos_now_ms)")
log "after it cleared: $a_buys buys, $a_ok answered 2xx; statuses $a_statuses"
log "products RSS ${rss_before} KiB before, at most ${rss_peak} KiB during the alarm"
chaos_result memory-alarm 1 "$(cat "$chaos_work/summary") fault_p99_ms=$w_p99 alarm_statuses=$w_statuses waited_504=$waited_all rss_kib=$rss_before..$rss_peak"
((w_ok == 0)) || die "$w_ok buys answered 2xx while the broker blocked publishers"
((w_slow <= rpc_timeout_ms + 1000)) || die "a buy took ${w_slow} ms during the alarm"
((waited_all <= concurrency)) || die "$waited_all buys waited out the RPC timeout: publishes piled up"
((not_503 == 0)) || die "$not_503 buys started during the alarm did not answer 503"
((rss_peak <= rss_before * 12 / 10)) || die "products grew from ${rss_before} to ${rss_peak} KiB during the alarm"
((a_buys > 0 && a_ok == a_buys)) || die "buying did not work again once the alarm cleared"
exit "$status"
