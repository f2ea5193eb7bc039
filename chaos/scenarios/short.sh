#!/usr/bin/env bash
# The short form of the chaos suite, for CI: kill-orders --short, then poison --short
# (about 2 minutes with debug binaries). Prints each scenario's result line; fails if any fails.
set -uo pipefail
here=$(dirname "${BASH_SOURCE[0]}")

failed=0
"$here/kill-orders.sh" --short || failed=$((failed + 1))
"$here/poison.sh" --short || failed=$((failed + 1))
if ((failed > 0)); then
    printf 'short.sh: %s scenario(s) failed\n' "$failed" >&2
    exit 1
fi
