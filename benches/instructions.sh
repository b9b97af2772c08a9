#!/usr/bin/env bash
# Instructions per message of the example broker (release, tokio, pinned to one core) under
# callgrind, which the machine's other work does not move: the broker serves the load tool's
# SCENARIO twice, with COUNT and 4 x COUNT messages, each run on a fresh broker, and the
# difference of the two totals over 3 x COUNT is one message (connecting, starting and
# stopping cancel out). For fan-out it is printed per delivery as well.
#
#   make bench-instructions                                  # fan-in 4 -> 1 QoS 1
#   make bench-instructions INSTR_SCENARIO="fan-in --qos 2" COUNT=10000
#   make bench-instructions INSTR_SCENARIO="fan-out --publishers 1 --subscribers 16 --qos 1" \
#     COUNT=2000
#
# User-space instructions only (callgrind does not see the kernel); the run under valgrind is
# ~50x slower, so the broker batches more per wake than at full speed.
set -euo pipefail
cd "$(dirname "$0")/.."

SCENARIO=${SCENARIO:-"fan-in --publishers 4 --subscribers 1 --qos 1"}
COUNT=${COUNT:-20000}
PORT=${PORT:-22883}
CPU=${CPU:-0}
CARGO=${CARGO:-cargo}
work=target/instructions
mkdir -p "$work"

command -v valgrind >/dev/null 2>&1 || {
  echo "instructions: valgrind is missing (apt-get install valgrind)" >&2
  exit 1
}
$CARGO build --quiet --release --manifest-path benches/load/Cargo.toml
$CARGO build --quiet --release --all-features --example broker
LOAD=benches/load/target/release/load

# Serves $1 messages under callgrind and prints the broker's instruction total.
total() {
  local n=$1 out=$work/callgrind.$1
  rm -f "$out".*
  taskset -c "$CPU" valgrind --tool=callgrind --callgrind-out-file="$out.%p" \
    target/release/examples/broker --host 127.0.0.1 --port "$PORT" --log-level warn \
    >"$work/valgrind.$n.log" 2>&1 &
  local pid=$!
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.2
  done
  # shellcheck disable=SC2086
  if ! $LOAD $SCENARIO --port "$PORT" --count "$n" --payload 64 --quiet >"$work/load.$n.log" 2>&1; then
    kill -INT "$pid"
    wait "$pid" || true
    echo "instructions: the load tool failed (see $work/load.$n.log)" >&2
    exit 1
  fi
  kill -INT "$pid"
  wait "$pid" || true
  # The process's total (the last "Collected" line is the main process's).
  grep -h "Collected" "$work/valgrind.$n.log" | tail -1 | awk '{gsub(",", "", $4); print $4}'
}

small=$(total "$COUNT")
large=$(total $((4 * COUNT)))
per=$(((large - small) / (3 * COUNT)))
echo "instructions: $SCENARIO, 64 B: $per per message ($small for $COUNT, $large for $((4 * COUNT)))"
if [[ $SCENARIO == fan-out* ]]; then
  subs=$(sed -n 's/.*--subscribers \([0-9]*\).*/\1/p' <<<"$SCENARIO")
  echo "instructions: $((per / ${subs:-16})) per delivery"
fi
