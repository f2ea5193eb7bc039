#!/usr/bin/env bash
# The entrypoint of the postgres:16 stand-in. Of the official image's contract it honours what
# docker-compose.yml uses: started as the postgres user (never as root), it initialises an empty
# PGDATA with POSTGRES_PASSWORD for the superuser POSTGRES_USER [postgres], runs the
# /docker-entrypoint-initdb.d scripts (*.sh run or sourced, *.sql through psql) against a server
# that listens on its socket only, then starts the server on every address with password
# authentication. A PGDATA that holds a database is started as it is.
set -euo pipefail

[[ ${1:-} == postgres ]] || exec "$@"
shift
(($(id -u) != 0)) || { echo "this stand-in does not start as root; run it as postgres (999)" >&2; exit 1; }

export POSTGRES_USER=${POSTGRES_USER:-postgres}
export POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}

if [[ ! -s $PGDATA/PG_VERSION ]]; then
    [[ -n ${POSTGRES_PASSWORD:-} ]] || { echo "POSTGRES_PASSWORD is not set" >&2; exit 1; }
    chmod 0700 "$PGDATA"
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 -D "$PGDATA"
    printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"

    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start
    if [[ $POSTGRES_DB != postgres ]]; then
        psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
            -c "CREATE DATABASE \"$POSTGRES_DB\""
    fi
    for script in /docker-entrypoint-initdb.d/*; do
        case $script in
            *.sh)
                echo "running $script"
                # shellcheck disable=SC1090 # the scripts are mounted at run time
                if [[ -x $script ]]; then "$script"; else . "$script"; fi
                ;;
            *.sql)
                echo "running $script"
                psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -f "$script"
                ;;
            *) ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
    echo "PostgreSQL init process complete; ready for start up."
fi

exec postgres -c listen_addresses='*' "$@"
