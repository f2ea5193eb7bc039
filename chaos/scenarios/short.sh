#!/usr/bin/env bash
# The short form of the chaos suite, for CI (about 5 minutes with debug binaries): the short
# form of every scenario that injects a fault of its own kind (a crash at random, a crash at an
# exact point, the broker restarted, the database stopped, poison, a memory alarm, partitions),
# and stock bought and cancelled through all of them.
# queue-deleted, sigterm and per-request-10k run in the full suite only (all.sh).
# Build first: chaos/scenarios/build.sh. Prints each scenario's result line; fails if any fails.
set -uo pipefail
here=$(dirname "${BASH_SOURCE[0]}")

failed=0
for scenario in kill-orders failpoints broker-restart postgres-stop poison memory-alarm partition stock; do
    "$here/$scenario.sh" --short || failed=$((failed + 1))
done
if ((failed > 0)); then
    printf 'short.sh: %s scenario(s) failed\n' "$failed" >&2
    exit 1
fi
