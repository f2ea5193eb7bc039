#!/usr/bin/env bash
# Every chaos scenario in its full form, one after the other, in the order of the issue that
# asked for them. Prints a markdown table, one row per scenario, to stdout (the scenarios' own
# output goes to stderr); fails if any scenario fails. RELIABILITY.md holds the table of the
# last run. Build first: chaos/scenarios/build.sh. Arguments pass to every scenario (--short).
set -uo pipefail
here=$(dirname "${BASH_SOURCE[0]}")

scenarios=(kill-orders failpoints broker-restart postgres-stop poison queue-deleted memory-alarm
    partition sigterm per-request-10k stock)

# The value of field $1 in a `key=value ...` result line $2.
field() { grep -o "\\b$1=[^ ]*" <<<"$2" | head -1 | cut -d= -f2; }

# The p99 of the buys that started during the faults when the scenario measured it, else of the
# whole load phase.
p99() {
    local during
    during=$(field fault_p99_ms "$1")
    if [[ -n $during ]]; then printf '%s' "$during"; else field p99_ms "$1"; fi
}

printf '| scenario | buys | faults injected | lost | duplicated | unexpected | stock off | p99 during faults (ms) | result |\n'
printf '|---|---|---|---|---|---|---|---|---|\n'
failed=0
for scenario in "${scenarios[@]}"; do
    result=pass
    line=$("$here/$scenario.sh" "$@" | tee >(cat >&2) | grep '^scenario=' | tail -1) || result=FAIL
    [[ $result == pass ]] || failed=$((failed + 1))
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$scenario" \
        "$(field buys "$line")" "$(field faults "$line")" "$(field lost "$line")" \
        "$(field duplicated "$line")" "$(field unexpected "$line")" \
        "$(field stock_mismatches "$line")" "$(p99 "$line")" "$result"
done
((failed == 0)) || {
    printf 'all.sh: %s scenario(s) failed\n' "$failed" >&2
    exit 1
}
