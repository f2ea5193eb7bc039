#!/bin/sh
# Run by the postgres image once, when it initialises an empty data volume (later starts skip
# it; `docker compose down -v` starts over). Each service gets its own database and its own
# unprivileged login role that owns it and can reach nothing else, so the superuser stays with
# the operator and one service's credentials do not open another's data.
set -eu

psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v auth_pw="${AUTH_DB_PASSWORD:?}" \
    -v products_pw="${PRODUCTS_DB_PASSWORD:?}" \
    -v orders_pw="${ORDERS_DB_PASSWORD:?}" <<'SQL'
CREATE ROLE auth LOGIN PASSWORD :'auth_pw';
CREATE ROLE products LOGIN PASSWORD :'products_pw';
CREATE ROLE orders LOGIN PASSWORD :'orders_pw';

CREATE DATABASE auth OWNER auth;
CREATE DATABASE products OWNER products;
CREATE DATABASE orders OWNER orders;

-- By default every role may connect to every database.
REVOKE CONNECT ON DATABASE auth, products, orders FROM PUBLIC;
SQL
