#!/usr/bin/env bash
# Every combination of the additive runtime features must build (2^4 combinations).
set -euo pipefail
features=(tokio smol async-std blocking)
n=${#features[@]}
for ((mask = 0; mask < (1 << n); mask++)); do
  set_=()
  for ((i = 0; i < n; i++)); do
    if (( mask & (1 << i) )); then set_+=("${features[i]}"); fi
  done
  list=$(IFS=,; echo "${set_[*]:-}")
  echo "features: [${list}]"
  cargo check --quiet --no-default-features ${list:+--features "$list"}
done
echo "features: all $((1 << n)) combinations build"
# The transports on top: alone (no runtime), each with one runtime, both with all.
for list in tls websocket tokio,tls smol,websocket blocking,tls,websocket \
  tokio,smol,async-std,blocking,tls,websocket; do
  echo "features: [${list}]"
  cargo check --quiet --no-default-features --features "$list"
done
echo "features: the transport combinations build"
