#!/usr/bin/env bash
# Builds what the chaos scenarios run: auth, products, orders and chaos, and beside them
# orders-failpoints, an orders binary with its crash points compiled in (the failpoints
# scenario runs it). Cargo writes both orders builds to the same path, so the failpoints one is
# built first and copied aside, then the plain one built again over it.
#
# Usage: chaos/scenarios/build.sh [--release]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
profile=debug flags=()
while (($#)); do
    case $1 in
        --release) profile=release flags=(--release) ;;
        *) printf 'build.sh: unknown option %s\n' "$1" >&2 && exit 1 ;;
    esac
    shift
done
target=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)/$profile
cargo build "${flags[@]}" -p orders --features failpoints
cp "$target/orders" "$target/orders-failpoints.tmp"
mv "$target/orders-failpoints.tmp" "$target/orders-failpoints"
cargo build "${flags[@]}" -p auth -p products -p orders -p chaos
