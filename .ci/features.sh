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
