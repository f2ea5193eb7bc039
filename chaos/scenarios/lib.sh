# Shared by the chaos scenarios: starts auth, products and orders natively from built binaries
# on loopback ports of their own, with throwaway databases and a queue of their own, and removes
# all of it on exit. Source it, then call chaos_setup.
# shellcheck shell=bash
#
# CHAOS_PROFILE   debug (default) or release: which target/<profile>/ binaries run
# CHAOS_BASE_PORT first of three ports (default 13101: auth, +1 products, +2 orders)
# AMQP_URL        the broker (default the local one); PGHOST/PGPORT/PGUSER the PostgreSQL server

chaos_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/lib.sh
source "$chaos_root/scripts/lib.sh"

export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
CHAOS_AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
CHAOS_SHUTDOWN_SECS=${CHAOS_SHUTDOWN_SECS:-10}

declare -A chaos_port chaos_pid
# Set by chaos_setup: the binaries, this run's id, queue and working directory.
chaos_bin='' chaos_id='' chaos_queue='' chaos_work=''

chaos_setup() {
    local profile=${CHAOS_PROFILE:-debug} base=${CHAOS_BASE_PORT:-13101}
    chaos_bin="${CARGO_TARGET_DIR:-$chaos_root/target}/$profile"
    local svc
    for svc in auth products orders chaos; do
        [[ -x $chaos_bin/$svc ]] ||
            die "$chaos_bin/$svc is missing: cargo build ${profile/debug/} -p auth -p products -p orders -p chaos"
    done
    chaos_port=([auth]=$base [products]=$((base + 1)) [orders]=$((base + 2)))
    for svc in auth products orders; do
        ! tcp_open 127.0.0.1 "${chaos_port[$svc]}" || die "port ${chaos_port[$svc]} is taken"
    done
    chaos_id=$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
    chaos_queue="CHAOS_$chaos_id"
    chaos_work="$chaos_root/target/chaos/$chaos_id"
    mkdir -p "$chaos_work"
    trap chaos_cleanup EXIT
    for svc in auth products orders; do
        createdb "chaos_${chaos_id}_$svc"
    done
    openssl genpkey -algorithm ed25519 -out "$chaos_work/jwt.pem" 2>/dev/null
    log "run $chaos_id: logs and history in $chaos_work, queue $chaos_queue"
    for svc in auth products orders; do
        chaos_start "$svc"
    done
    chaos_seed
}

chaos_db_url() { printf 'postgres://%s@%s:%s/chaos_%s_%s\n' "$PGUSER" "$PGHOST" "$PGPORT" "$chaos_id" "$1"; }

chaos_url() { printf 'http://127.0.0.1:%s\n' "${chaos_port[$1]}"; }

chaos_ready() { curl -fsS --max-time 2 -o /dev/null "$(chaos_url "$1")/readyz"; }

# Starts service $1 in the background and waits until it is ready.
chaos_start() {
    local svc=$1
    (
        cd "$chaos_work" || exit 1
        export PORT=${chaos_port[$svc]} DATABASE_URL
        DATABASE_URL=$(chaos_db_url "$svc")
        export AMQP_URL=$CHAOS_AMQP_URL ORDER_QUEUE=$chaos_queue
        AUTH_JWKS_URL="$(chaos_url auth)/auth/.well-known/jwks.json"
        export AUTH_JWKS_URL
        export JWT_PRIVATE_KEY_FILE="$chaos_work/jwt.pem" SHUTDOWN_TIMEOUT_SECS=$CHAOS_SHUTDOWN_SECS
        export RUST_LOG=${RUST_LOG:-info}
        exec "$chaos_bin/$svc" serve >>"$chaos_work/$svc.log" 2>&1
    ) &
    chaos_pid[$svc]=$!
    wait_for 60 "$svc to be ready" chaos_ready "$svc" || die "$svc did not become ready; see $chaos_work/$svc.log"
}

# True while the process of service $1 runs.
chaos_alive() { kill -0 "${chaos_pid[$1]}" 2>/dev/null; }

chaos_kill9() {
    kill -KILL "${chaos_pid[$1]}" 2>/dev/null || true
    wait "${chaos_pid[$1]}" 2>/dev/null || true
}

# SIGTERMs service $1 and prints how many milliseconds it took to exit; fails (and kills it)
# when that exceeds its shutdown timeout plus a second for the process itself to end.
chaos_sigterm() {
    local svc=$1 start limit_ms=$(((CHAOS_SHUTDOWN_SECS + 1) * 1000))
    start=$(date +%s%3N)
    kill -TERM "${chaos_pid[$svc]}"
    while chaos_alive "$svc"; do
        if (($(date +%s%3N) - start > limit_ms)); then
            chaos_kill9 "$svc"
            log "$svc did not exit within ${limit_ms} ms of SIGTERM"
            return 1
        fi
        sleep 0.05
    done
    wait "${chaos_pid[$svc]}" 2>/dev/null || true
    printf '%s\n' $(($(date +%s%3N) - start))
}

# Registers an admin, grants the role with the auth binary, and creates one product.
chaos_seed() {
    local auth products email password=chaos-admin-password token
    auth=$(chaos_url auth) products=$(chaos_url products)
    email="admin-$chaos_id@example.com"
    curl -fsS -o /dev/null -X POST "$auth/auth/register" -H 'Content-Type: application/json' \
        -d "{\"email\": \"$email\", \"password\": \"$password\"}"
    DATABASE_URL=$(chaos_db_url auth) RUST_LOG=warn "$chaos_bin/auth" admin grant "$email" >/dev/null
    token=$(curl -fsS -X POST "$auth/auth/login" -H 'Content-Type: application/json' \
        -d "{\"email\": \"$email\", \"password\": \"$password\"}" | jq -r .access_token)
    curl -fsS -o /dev/null -X POST "$products/products" -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' \
        -d '{"name": "Chaos mug", "description": "Survives crashes.", "price_cents": 1250}'
}

# Runs the driver against this run's services; extra arguments pass through.
chaos_run() {
    "$chaos_bin/chaos" run --auth "$(chaos_url auth)" --products "$(chaos_url products)" \
        --orders-db "$(chaos_db_url orders)" --out "$chaos_work/history.jsonl" "$@"
}

# The line all.sh collects: scenario name, faults injected, then the driver's summary.
chaos_result() { printf 'scenario=%s faults=%s %s\n' "$1" "$2" "$3"; }

chaos_rabbitmqctl() { timeout 60 rabbitmqctl -q "$@"; }

chaos_cleanup() {
    local status=$? svc
    for svc in orders products auth; do
        [[ -n ${chaos_pid[$svc]:-} ]] && chaos_alive "$svc" && chaos_kill9 "$svc"
    done
    for svc in auth products orders; do
        dropdb --if-exists --force "chaos_${chaos_id}_$svc" 2>/dev/null || true
    done
    chaos_rabbitmqctl delete_queue "$chaos_queue" >/dev/null 2>&1 || true
    chaos_rabbitmqctl delete_queue "$chaos_queue.dlq" >/dev/null 2>&1 || true
    exit "$status"
}
