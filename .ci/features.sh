#!/usr/bin/env bash
# The feature combinations that matter build: no feature (the core), each runtime alone (a
# client) and with `broker`, `persistence` on an async runtime and on the blocking one, and
# everything. The runtime features are additive and share one driver, so pairs of runtimes add
# nothing the `--all-features` builds of lint and test do not cover. The transports (tls,
# websocket) alone, on a client, on a broker and with everything.
set -euo pipefail
combos=("" "persistence")
for rt in tokio smol async-std blocking; do
  combos+=("$rt" "$rt,broker")
done
combos+=("tokio,persistence" "blocking,persistence" "tokio,smol,async-std,blocking,persistence")
combos+=("cluster" "cluster,persistence")
combos+=("tls" "websocket" "tokio,tls" "smol,websocket" "blocking,broker,tls,websocket"
  "tokio,smol,async-std,blocking,persistence,tls,websocket")
for list in "${combos[@]}"; do
  echo "features: [${list}]"
  # A combination's cfgs may leave something unused: its warnings fail the check too.
  out=$(cargo check --quiet --no-default-features ${list:+--features "$list"} 2>&1) || { echo "$out"; exit 1; }
  if grep -q '^warning' <<<"$out"; then
    echo "$out" >&2
    echo "features: [${list}] builds with warnings" >&2
    exit 1
  fi
done
echo "features: all ${#combos[@]} combinations build"
