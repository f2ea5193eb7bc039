#!/usr/bin/env bash
# Scenario 8: products cut off from the broker for 20 s, then orders, each through a TCP fault
# proxy (chaos proxy) started here. A cut-off link forwards nothing and keeps its sockets open,
# as a network that drops packets does; when it heals, the connections held through it are
# dropped and each service must reconnect by itself. Every buy that starts during a cut must
# fail fast (within the RPC timeout plus one second) and buying must work again after it.
#
# Usage: chaos/scenarios/partition.sh [--short]
set -euo pipefail
# shellcheck source=chaos/scenarios/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

duration=90 cut=20
chaos_options "$@"
if $chaos_short; then duration=50 cut=10; fi
rpc_timeout_ms=5000 recover_limit_s=30

# The broker behind both proxies: the shared one, whose port AMQP_URL names.
read -r _ broker_port < <(AMQP_URL=$CHAOS_AMQP_URL amqp_endpoint)
# chaos_setup starts the services, so the proxies (which need the run's port base and
# binaries) are started in between, through chaos_before_start.
chaos_before_start() {
    local svc
    for svc in products orders; do
        chaos_proxy "$svc" "$broker_port"
        chaos_amqp_url[$svc]="amqp://guest:guest@127.0.0.1:${chaos_proxy_port[$svc]}/%2f"
    done
}
chaos_setup
chaos_run --rate "${CHAOS_RATE:-20}" --concurrency 8 --duration "$duration" >"$chaos_work/summary" &
driver=$!

# Both ready, and orders a consumer of the order queue again (the broker's count).
# shellcheck disable=SC2329 # called through wait_for
recovered() {
    chaos_ready products && chaos_ready orders && (($(chaos_queue_consumers "$chaos_queue") >= 1))
}

windows=() recoveries=() afters=()
sleep $((duration / 8))
for svc in products orders; do
    from=$(chaos_now_ms)
    chaos_partition "$svc"
    log "$svc cut off from the broker for ${cut}s"
    sleep "$cut"
    chaos_heal "$svc"
    to=$(chaos_now_ms)
    log "$svc reconnected to the broker's side; waiting for it to recover"
    wait_for "$recover_limit_s" "$svc to recover" recovered || die "$svc did not recover within ${recover_limit_s}s"
    recovered_at=$(chaos_now_ms)
    recoveries+=("$svc=$((recovered_at - to))ms")
    windows+=("$from:$to")
    afters+=("$recovered_at")
    chaos_alive "$svc" || die "$svc exited while cut off"
    sleep $((duration / 8))
done

status=0
wait "$driver" || status=$?
slow_total=0 failed_after=0 p99s=()
# A buy started just before a cut may be caught by it, so "after" ends a timeout earlier.
ends=($((${windows[1]%:*} - rpc_timeout_ms)) $(($(chaos_now_ms) - rpc_timeout_ms)))
for i in 0 1; do
    svc=$( ((i == 0)) && echo products || echo orders)
    read -r w_buys w_ok w_slow w_p99 w_statuses < <(chaos_window "${windows[$i]%:*}" "${windows[$i]#*:}")
    log "while $svc was cut off: $w_buys buys, $w_ok answered 2xx, slowest ${w_slow} ms; statuses $w_statuses"
    ((w_slow <= rpc_timeout_ms + 1000)) || slow_total=$((slow_total + 1))
    p99s+=("$w_p99")
    # From the moment it had recovered until the next cut (or the end of the load).
    read -r a_buys a_ok _ _ a_statuses < <(chaos_window "${afters[$i]}" "${ends[$i]}")
    log "after $svc recovered: $a_buys buys, $a_ok answered 2xx; statuses $a_statuses"
    ((a_buys > 0 && a_ok == a_buys)) || failed_after=$((failed_after + 1))
done
fault_p99=$(printf '%s\n' "${p99s[@]}" | sort -n | tail -1)
chaos_result partition 2 "$(cat "$chaos_work/summary") fault_p99_ms=$fault_p99 recovered=$(IFS=,; printf '%s' "${recoveries[*]}")"
((slow_total == 0)) || die "buys took longer than the RPC timeout plus a second while a service was cut off"
((failed_after == 0)) || die "buying did not work again after a service recovered"
exit "$status"
