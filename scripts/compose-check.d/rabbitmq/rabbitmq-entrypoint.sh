#!/usr/bin/env bash
# The entrypoint of the rabbitmq:3.13-management stand-in. The official image's entrypoint,
# started as its rabbitmq user as docker-compose.yml starts it, only runs its command; so does
# this one, refusing root, whose branch (chown, then drop to rabbitmq) compose never takes.
set -euo pipefail
(($(id -u) != 0)) || { echo "this stand-in does not start as root; run it as rabbitmq (999)" >&2; exit 1; }
exec "$@"
