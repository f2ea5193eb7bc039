# Shared by the chaos scenarios: starts auth, products and orders natively from built binaries
# on loopback ports of their own, with throwaway databases and a queue of their own, and removes
# all of it on exit. Source it, then call chaos_setup. The services are started, crashed and
# stopped by scripts/run-local, with the run's directory as its state directory, and seeded by
# it through scripts/seed (chaos/scenarios/catalog.json, one product with untracked stock, unless
# the scenario names another file in chaos_catalog).
# shellcheck shell=bash
#
# CHAOS_PROFILE   debug (default) or release: which target/<profile>/ binaries run
# CHAOS_BASE_PORT first of the ports a run uses (default 13101: auth, +1 products, +2 orders;
#                 +10 and +11 a private RabbitMQ, +12 a private PostgreSQL, +20.. fault proxies)
# AMQP_URL        the broker (default the local one); PGHOST/PGPORT/PGUSER the PostgreSQL server
#
# Scenarios that stop, restart or throttle the broker or the database ask chaos_setup for a
# private one (--private-rabbitmq, --private-postgres SERVICE): a RabbitMQ node or PostgreSQL
# cluster of the run's own, on ports of its own, under the run's directory, stopped and removed
# at exit. The machine's shared servers, which other tests use, are never stopped.

chaos_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/lib.sh
source "$chaos_root/scripts/lib.sh"

export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
CHAOS_AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
CHAOS_SHUTDOWN_SECS=${CHAOS_SHUTDOWN_SECS:-10}

declare -A chaos_port=() chaos_db_port=() chaos_amqp_url=()
# More environment for every start of one service, as INSTANCE:NAME=VALUE (run-local --env).
chaos_env=()
# The products seeded, a file in chaos/scenarios/.
chaos_catalog=catalog.json
# Set by chaos_setup: the binaries, this run's id, queue and working directory.
chaos_bin='' chaos_id='' chaos_queue='' chaos_work='' chaos_base=''
# Set when the run has a private RabbitMQ node / PostgreSQL cluster.
chaos_rmq_node='' chaos_rmq_port='' chaos_pg_bin='' chaos_pg_data=''
# Set by chaos_options: whether the scenario runs in its short (CI) form.
chaos_short=false
# Fault proxies started by chaos_proxy, by name.
declare -A chaos_proxy_pid=() chaos_proxy_port=()

# chaos_setup [--private-rabbitmq] [--private-postgres SERVICE]...: the run's id, directory,
# databases and queue, then auth, products and orders started and seeded.
# The options every scenario but kill-orders takes: --short, its short form.
chaos_options() {
    while (($#)); do
        # shellcheck disable=SC2034 # chaos_short is read by the scenario that sourced this
        case $1 in
            --short) chaos_short=true ;;
            *) die "unknown option '$1'" ;;
        esac
        shift
    done
}

# shellcheck disable=SC2120 # its options are optional
chaos_setup() {
    local profile=${CHAOS_PROFILE:-debug} private_rabbitmq=false private_pg=()
    while (($#)); do
        case $1 in
            --private-rabbitmq) private_rabbitmq=true ;;
            --private-postgres) private_pg+=("$2") && shift ;;
            *) die "chaos_setup: unknown option '$1'" ;;
        esac
        shift
    done
    chaos_base=${CHAOS_BASE_PORT:-13101}
    chaos_bin="${CARGO_TARGET_DIR:-$chaos_root/target}/$profile"
    local svc
    for svc in auth products orders chaos; do
        [[ -x $chaos_bin/$svc ]] ||
            die "$chaos_bin/$svc is missing: cargo build ${profile/debug/} -p auth -p products -p orders -p chaos"
    done
    # run-local's --base-port gives auth, products and orders these ports, in this order.
    chaos_port=([auth]=$chaos_base [products]=$((chaos_base + 1)) [orders]=$((chaos_base + 2)))
    chaos_db_port=([auth]=$PGPORT [products]=$PGPORT [orders]=$PGPORT)
    chaos_id=$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
    chaos_queue="CHAOS_$chaos_id"
    chaos_work="$chaos_root/target/chaos/$chaos_id"
    mkdir -p "$chaos_work"
    trap chaos_cleanup EXIT
    if $private_rabbitmq; then
        chaos_private_rabbitmq
    fi
    chaos_amqp_url=([products]=$CHAOS_AMQP_URL [orders]=$CHAOS_AMQP_URL)
    if ((${#private_pg[@]})); then
        chaos_private_postgres
        for svc in "${private_pg[@]}"; do
            chaos_db_port[$svc]=$((chaos_base + 12))
        done
    fi
    # A scenario that must put something between the services and their servers (a fault
    # proxy) defines chaos_before_start; the ports and binaries are known by now.
    if declare -F chaos_before_start >/dev/null; then
        chaos_before_start
    fi
    openssl genpkey -algorithm ed25519 -out "$chaos_work/jwt.pem" 2>/dev/null
    # The admin scripts/seed makes (through run-local) and the driver restocks as.
    export SEED_ADMIN_EMAIL="admin-$chaos_id@example.com"
    SEED_ADMIN_PASSWORD="chaos-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    export SEED_ADMIN_PASSWORD
    log "run $chaos_id: logs and history in $chaos_work, queue $chaos_queue"
    local start=(--bin-dir "$chaos_bin" --base-port "$chaos_base" --db-prefix "chaos_${chaos_id}_"
        --catalog "$chaos_root/chaos/scenarios/$chaos_catalog"
        --env "ORDER_QUEUE=$chaos_queue" --env "RESOLVE_QUEUE=${chaos_queue}_RESOLVE"
        --env "products:ORDER_EVENTS_QUEUE=$chaos_queue.events"
        --env "JWT_PRIVATE_KEY_FILE=$chaos_work/jwt.pem"
        --env "SHUTDOWN_TIMEOUT_SECS=$CHAOS_SHUTDOWN_SECS" --env "RUST_LOG=${RUST_LOG:-info}"
        # As in the images, which do not set it. With it on, every error a service builds
        # captures a backtrace, and logging the first one loads the debug build's symbols
        # (some 200 MB of RSS), which the memory checks would take for a leak.
        --env "RUST_BACKTRACE=${CHAOS_RUST_BACKTRACE:-0}"
        # The driver registers and logs in every user from 127.0.0.1: load made on purpose,
        # which the rate limits on register and login would refuse past their bursts.
        --env "auth:RATE_LIMIT_ENABLED=false")
    for svc in products orders; do
        start+=(--env "$svc:AMQP_URL=${chaos_amqp_url[$svc]:-$CHAOS_AMQP_URL}")
    done
    # A database on the run's private PostgreSQL is made here; run-local makes the others.
    for svc in "${private_pg[@]}"; do
        createdb -p "${chaos_db_port[$svc]}" "chaos_${chaos_id}_$svc"
        start+=(--env "$svc:DATABASE_URL=$(chaos_db_url "$svc")")
    done
    local pair
    for pair in "${chaos_env[@]}"; do
        start+=(--env "$pair")
    done
    # Its summary for a person goes to stderr: a scenario's stdout is its result line.
    chaos_launch start "${start[@]}" >&2
}

# scripts/run-local COMMAND on this run's services; its state directory is the run's.
chaos_launch() { "$chaos_root/scripts/run-local" "$1" --state-dir "$chaos_work" "${@:2}"; }

chaos_db_url() { printf 'postgres://%s@%s:%s/chaos_%s_%s\n' "$PGUSER" "$PGHOST" "${chaos_db_port[$1]}" "$chaos_id" "$1"; }

chaos_url() { printf 'http://127.0.0.1:%s\n' "${chaos_port[$1]}"; }

chaos_ready() { curl -fsS --max-time 2 -o /dev/null "$(chaos_url "$1")/readyz"; }

# Starts service $1 again (stopping it first if it runs) as chaos_setup did, and waits until it
# is ready. Further arguments go to `run-local restart` for this start only: --env NAME=VALUE,
# --bin PATH (another binary, such as orders-failpoints), --no-wait (a start meant to crash soon,
# which may never answer /readyz).
chaos_start() { chaos_launch restart "$@" >&2; }

# The pid of service $1 while it runs; fails when it does not.
chaos_pid() { chaos_launch pid "$1"; }

# True while the process of service $1 runs.
chaos_alive() { chaos_pid "$1" >/dev/null 2>&1; }

chaos_kill9() { chaos_launch kill "$1"; }

# SIGTERMs service $1 and prints how many milliseconds it took to exit; fails (and kills it)
# when that exceeds its shutdown timeout plus a second for the process itself to end.
chaos_sigterm() {
    local out ms
    out=$(chaos_launch stop --timeout $((CHAOS_SHUTDOWN_SECS + 1)) "$1") ||
        { log "$1 did not exit within $((CHAOS_SHUTDOWN_SECS + 1)) s of SIGTERM" && return 1; }
    # "orders exited 812 ms after SIGTERM"
    read -r _ _ ms _ <<<"$out"
    printf '%s\n' "$ms"
}

# Runs the driver against this run's services; extra arguments pass through. The history goes
# to CHAOS_HISTORY (default $chaos_work/history.jsonl). The driver reads both databases: orders'
# for the history check, products' too for the stock check (a catalog without stock has
# nothing for it to check).
chaos_run() {
    "$chaos_bin/chaos" run --auth "$(chaos_url auth)" --products "$(chaos_url products)" \
        --orders "$(chaos_url orders)" --orders-db "$(chaos_db_url orders)" \
        --products-db "$(chaos_db_url products)" \
        --admin-email "$SEED_ADMIN_EMAIL" --admin-password "$SEED_ADMIN_PASSWORD" \
        --out "${CHAOS_HISTORY:-$chaos_work/history.jsonl}" "$@"
}

# Milliseconds since the Unix epoch, the clock of the history's at_unix_ms.
chaos_now_ms() { date +%s%3N; }

# When service $1 first logged message $2 (its JSON log's timestamp), in Unix ms; empty if never.
chaos_logged_ms() {
    jq -r --arg m "$2" 'select(.fields.message == $m) | .timestamp
        | ((sub("\\.[0-9]+Z$"; "Z") | fromdateiso8601) * 1000 + (.[20:23] | tonumber))' \
        "$chaos_work/$1.log" | head -1
}

# Buys of the load phase that started in [$1, $2) (Unix ms) as "buys ok slowest_ms p99_ms
# statuses", statuses like 201:40,503:3,none:1 (none: no HTTP answer).
chaos_window() {
    jq -s -r --argjson from "$1" --argjson to "$2" '
        map(select(.phase == "load" and .at_unix_ms >= $from and .at_unix_ms < $to))
        | (map(.end_ms - .start_ms) | sort) as $lat
        | [length, (map(select(.outcome == "ok")) | length), ($lat | max // 0),
           (if ($lat | length) == 0 then 0
            else $lat[(((($lat | length) * 99 + 99) / 100 | floor) - 1)] end),
           (group_by(.status) | map("\(.[0].status // "none"):\(length)") | join(",")
            | if . == "" then "-" else . end)]
        | map(tostring) | join(" ")' "$chaos_work/history.jsonl"
}

# The line all.sh collects: scenario name, faults injected, then the driver's summary.
chaos_result() { printf 'scenario=%s faults=%s %s\n' "$1" "$2" "$3"; }

# rabbitmqctl against the run's broker: its private node when it has one.
chaos_rabbitmqctl() {
    if [[ -n $chaos_rmq_node ]]; then
        timeout 60 rabbitmqctl -q -n "$chaos_rmq_node" "$@"
    else
        timeout 60 rabbitmqctl -q "$@"
    fi
}

# How many queues, channels and connections the run's broker has, as "queues channels
# connections".
chaos_broker_counts() {
    printf '%s %s %s\n' "$(chaos_rabbitmqctl list_queues --no-table-headers name | wc -l)" \
        "$(chaos_rabbitmqctl list_channels --no-table-headers pid | wc -l)" \
        "$(chaos_rabbitmqctl list_connections --no-table-headers pid | wc -l)"
}

# Ready messages in queue $1 of the run's broker (empty when it does not exist).
chaos_queue_messages() { chaos_rabbitmqctl list_queues --no-table-headers name messages_ready | awk -v q="$1" '$1 == q { print $2 }'; }

# Consumers on queue $1 of the run's broker.
chaos_queue_consumers() { chaos_rabbitmqctl list_queues --no-table-headers name consumers | awk -v q="$1" '$1 == q { print $2 }'; }

# Resident memory of service $1 in KiB.
chaos_rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$(chaos_pid "$1")/status"; }

# Runs "$@" as the owner of a private server's files: PostgreSQL and RabbitMQ refuse to run as
# root, and their packages' users own what they write.
chaos_as() {
    local user=$1
    shift
    if ((EUID == 0)); then
        runuser -u "$user" -- "$@"
    else
        "$@"
    fi
}

# A RabbitMQ node of the run's own: node chaos-<id>@localhost, AMQP on base+10, distribution on
# base+11, nothing but its data and logs under $chaos_work/rabbitmq.
chaos_private_rabbitmq() {
    require_command rabbitmq-server rabbitmqctl
    local dir=$chaos_work/rabbitmq
    chaos_rmq_node="chaos-$chaos_id@localhost" chaos_rmq_port=$((chaos_base + 10))
    ! tcp_open 127.0.0.1 "$chaos_rmq_port" || die "port $chaos_rmq_port is taken"
    mkdir -p "$dir"
    printf 'listeners.tcp.local = 127.0.0.1:%s\n' "$chaos_rmq_port" >"$dir/rabbitmq.conf"
    printf '[].\n' >"$dir/enabled_plugins"
    ((EUID != 0)) || ! id rabbitmq >/dev/null 2>&1 || chown -R rabbitmq:rabbitmq "$dir"
    chaos_rabbitmq_start
    CHAOS_AMQP_URL="amqp://guest:guest@127.0.0.1:$chaos_rmq_port/%2f"
    log "private RabbitMQ $chaos_rmq_node on 127.0.0.1:$chaos_rmq_port"
}

# Starts the private node (again, after chaos_rabbitmq_stop) and waits until it accepts work.
chaos_rabbitmq_start() {
    local dir=$chaos_work/rabbitmq
    RABBITMQ_NODENAME=$chaos_rmq_node RABBITMQ_NODE_PORT=$chaos_rmq_port \
        RABBITMQ_DIST_PORT=$((chaos_base + 11)) RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf \
        RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins RABBITMQ_MNESIA_BASE=$dir/mnesia \
        RABBITMQ_LOG_BASE=$dir/log RABBITMQ_PID_FILE=$dir/pid \
        rabbitmq-server -detached
    # await_startup fails at once until the new VM has registered its name, so it is retried.
    wait_for 90 "the private RabbitMQ" timeout 60 rabbitmqctl -q -n "$chaos_rmq_node" await_startup ||
        die "the private RabbitMQ did not start; see $dir/log"
}

# Stops the private node (its Erlang VM exits); its durable queues stay on disk.
chaos_rabbitmq_stop() { timeout 60 rabbitmqctl -q -n "$chaos_rmq_node" stop >/dev/null; }

# A PostgreSQL cluster of the run's own on base+12, its data under $chaos_work/postgres.
chaos_private_postgres() {
    local bindir dir=$chaos_work/postgres
    bindir=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1)
    [[ -x $bindir/initdb ]] || bindir=$(dirname "$(command -v initdb || echo /nonexistent/initdb)")
    [[ -x $bindir/initdb ]] || die "initdb not found (Debian: apt-get install postgresql)"
    chaos_pg_bin=$bindir chaos_pg_data=$dir/data
    ! tcp_open 127.0.0.1 $((chaos_base + 12)) || die "port $((chaos_base + 12)) is taken"
    mkdir -p "$dir"
    ((EUID != 0)) || chown postgres:postgres "$dir"
    chaos_as postgres "$bindir/initdb" -D "$chaos_pg_data" -U "$PGUSER" -A trust --no-sync \
        >"$dir/initdb.log" 2>&1 || die "initdb failed; see $dir/initdb.log"
    chaos_postgres_start
    log "private PostgreSQL on 127.0.0.1:$((chaos_base + 12))"
}

chaos_postgres_start() {
    chaos_as postgres "$chaos_pg_bin/pg_ctl" -D "$chaos_pg_data" -l "$chaos_work/postgres/server.log" -w \
        -o "-p $((chaos_base + 12)) -c listen_addresses=127.0.0.1 -c unix_socket_directories=''" \
        start >/dev/null || die "the private PostgreSQL did not start; see $chaos_work/postgres/server.log"
}

# Stops the private cluster the way an operator would (fast: sessions are disconnected).
chaos_postgres_stop() { chaos_as postgres "$chaos_pg_bin/pg_ctl" -D "$chaos_pg_data" -m fast -w stop >/dev/null; }

# chaos_proxy NAME UPSTREAM_PORT: a fault proxy (chaos proxy) on the next free base+20.. port in
# front of 127.0.0.1:UPSTREAM_PORT; chaos_partition NAME and chaos_heal NAME switch it.
chaos_proxy() {
    local name=$1 upstream=$2 port=$((chaos_base + 20 + ${#chaos_proxy_port[@]}))
    "$chaos_bin/chaos" proxy --listen "127.0.0.1:$port" --upstream "127.0.0.1:$upstream" \
        >>"$chaos_work/proxy-$name.log" 2>&1 &
    chaos_proxy_pid[$name]=$! chaos_proxy_port[$name]=$port
    wait_for 10 "the $name proxy" tcp_open 127.0.0.1 "$port" || die "the $name proxy did not start"
}
chaos_partition() { kill -USR1 "${chaos_proxy_pid[$1]}"; }
chaos_heal() { kill -USR2 "${chaos_proxy_pid[$1]}"; }

chaos_cleanup() {
    local status=$? svc
    chaos_launch kill 2>/dev/null || true
    for name in "${!chaos_proxy_pid[@]}"; do
        kill "${chaos_proxy_pid[$name]}" 2>/dev/null || true
    done
    if [[ -n $chaos_rmq_node ]]; then
        chaos_rabbitmq_stop 2>/dev/null || true
        rm -rf "$chaos_work/rabbitmq/mnesia"
    else
        local queue
        for queue in "$chaos_queue" "${chaos_queue}_RESOLVE" "$chaos_queue.events"; do
            chaos_rabbitmqctl delete_queue "$queue" >/dev/null 2>&1 || true
            chaos_rabbitmqctl delete_queue "$queue.dlq" >/dev/null 2>&1 || true
        done
    fi
    if [[ -n $chaos_pg_data ]]; then
        chaos_postgres_stop 2>/dev/null || true
        rm -rf "$chaos_pg_data"
    fi
    for svc in auth products orders; do
        [[ ${chaos_db_port[$svc]:-$PGPORT} == "$PGPORT" ]] || continue
        dropdb --if-exists --force "chaos_${chaos_id}_$svc" 2>/dev/null || true
    done
    exit "$status"
}
