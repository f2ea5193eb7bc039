#!/usr/bin/env bash
# Every implemented chaos scenario in its full form, one after the other. Prints a markdown
# table, one row per scenario, to stdout (the scenarios' own output goes to stderr); fails if
# any scenario fails. RELIABILITY.md holds the table of the last run.
set -uo pipefail
here=$(dirname "${BASH_SOURCE[0]}")

scenarios=(kill-orders poison queue-deleted sigterm)

# The value of field $1 in a `key=value ...` result line $2.
field() { grep -o "\\b$1=[^ ]*" <<<"$2" | head -1 | cut -d= -f2; }

printf '| scenario | buys | faults injected | lost | duplicated | unexpected | p99 during faults (ms) | result |\n'
printf '|---|---|---|---|---|---|---|---|\n'
failed=0
for scenario in "${scenarios[@]}"; do
    [[ -x $here/$scenario.sh ]] || continue
    result=pass
    line=$("$here/$scenario.sh" | tee >(cat >&2) | grep '^scenario=' | tail -1) || result=FAIL
    [[ $result == pass ]] || failed=$((failed + 1))
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$scenario" \
        "$(field buys "$line")" "$(field faults "$line")" "$(field lost "$line")" \
        "$(field duplicated "$line")" "$(field unexpected "$line")" "$(field p99_ms "$line")" "$result"
done
((failed == 0)) || {
    printf 'all.sh: %s scenario(s) failed\n' "$failed" >&2
    exit 1
}
