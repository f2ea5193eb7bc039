#!/usr/bin/env bash
# Scenario 10: 10,000 buys with a reply queue per request. Every buy declares, consumes and
# deletes a queue of its own, so anything left behind would show as the run goes on. The run
# has a RabbitMQ node of its own, so its counts are products' and orders' alone. After a
# warm-up, the broker's queue, channel and connection counts and products' resident memory are
# taken; after the 10,000 buys the counts must return to those figures, and products' memory,
# sampled every second throughout, must stay within 20% of its warm size.
#
# Usage: chaos/scenarios/per-request-10k.sh [--short]   (--short: 2,000 buys)
set -euo pipefail
# shellcheck source=chaos/scenarios/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

buys=10000 warmup=1000
chaos_options "$@"
if $chaos_short; then buys=2000 warmup=500; fi
rate=${CHAOS_RATE:-150} concurrency=16

chaos_env+=("products:RPC_REPLY_MODE=per-request")
chaos_setup --private-rabbitmq

CHAOS_HISTORY=$chaos_work/warmup.jsonl chaos_run --rate "$rate" --concurrency "$concurrency" \
    --max-requests "$warmup" --duration 600 >"$chaos_work/warmup-summary" ||
    die "the warm-up failed its check: $(cat "$chaos_work/warmup-summary")"
log "warm-up: $(cat "$chaos_work/warmup-summary")"
sleep 5
read -r queues channels connections < <(chaos_broker_counts)
warm_kib=$(chaos_rss_kib products)
log "warm: $queues queues, $channels channels, $connections connections; products ${warm_kib} KiB"

chaos_run --rate "$rate" --concurrency "$concurrency" --max-requests "$buys" --duration 1200 \
    >"$chaos_work/summary" &
driver=$!
peak_kib=$warm_kib
peak_queues=$queues
while kill -0 "$driver" 2>/dev/null; do
    rss=$(chaos_rss_kib products)
    ((rss > peak_kib)) && peak_kib=$rss
    now_queues=$(chaos_rabbitmqctl list_queues --no-table-headers name | wc -l)
    ((now_queues > peak_queues)) && peak_queues=$now_queues
    sleep 1
done
status=0
wait "$driver" || status=$?

# shellcheck disable=SC2329 # called through wait_for
settled() { [[ $(chaos_broker_counts) == "$queues $channels $connections" ]]; }
settled_ok=true
wait_for 30 "the broker's counts to return to $queues $channels $connections" settled || settled_ok=false
read -r queues_after channels_after connections_after < <(chaos_broker_counts)
final_kib=$(chaos_rss_kib products)
log "after: $queues_after queues (at most $peak_queues during the run), $channels_after channels, $connections_after connections; products ${final_kib} KiB now, at most ${peak_kib} KiB"
chaos_result per-request-10k 0 "$(cat "$chaos_work/summary") queues=$queues..$queues_after channels=$channels..$channels_after rss_kib=$warm_kib..$peak_kib"
$settled_ok || die "the broker kept queues or channels: $queues $channels $connections before, $queues_after $channels_after $connections_after after"
((peak_kib <= warm_kib * 12 / 10)) || die "products grew from ${warm_kib} KiB warm to ${peak_kib} KiB, more than 20%"
exit "$status"
