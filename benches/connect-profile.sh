#!/usr/bin/env bash
# Counts the instructions our broker spends per connection on the connect path (accept,
# CONNECT, CONNACK, and the close when the client goes), with callgrind: deterministic counts,
# unlike rates, which move with whatever else the machine runs.
#
# The example broker (release) runs under callgrind with instrumentation off while it starts;
# it is switched on just before the load tool's connections scenario opens $CONNS
# connections ($CONCURRENCY at a time), and the profile is dumped once the tool has gone and
# the broker has closed every connection. Instructions per connection = the dump's total / $CONNS.
#
#   make bench-connect-profile                      # 2,000 connections, log level info
#   LOG_LEVEL=warn CONNS=5000 benches/connect-profile.sh
#   benches/connect-profile.sh -- --config my.toml  # more flags for the broker after --
#   BROKER=mosquitto LOG_LEVEL=warn CONNS=5000 benches/connect-profile.sh   # the same count
#                                                   # for Mosquitto (warn: log_type error and
#                                                   # warning; info: notice and information too)
#
# The profile stays in $OUT (callgrind_annotate $OUT/callgrind.out for the functions).
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-2000}
CONCURRENCY=${CONCURRENCY:-64}
LOG_LEVEL=${LOG_LEVEL:-info}
PORT=${PORT:-22883}
OUT=${OUT:-target/connect-profile}
BROKER=${BROKER:-tinymqtt}
CARGO=${CARGO:-cargo}
BUILD=${BUILD:-1}
[[ ${1:-} == -- ]] && shift

log() { printf '%s\n' "connect-profile: $*" >&2; }

if ! command -v valgrind >/dev/null 2>&1; then
  log "installing valgrind"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi
if [[ $BUILD == 1 ]]; then
  log "building the load tool and the example broker (release)"
  $CARGO build --quiet --release --manifest-path benches/load/Cargo.toml
  if [[ $BROKER == tinymqtt ]]; then
    $CARGO build --quiet --release --all-features --example broker
  fi
fi
LOAD=benches/load/target/release/load
mkdir -p "$OUT"
rm -f "$OUT"/callgrind.out*
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# One core, as in bench-brokers: tokio starts one worker. Log lines go to a file (not a
# terminal), as a service's do.
case $BROKER in
  tinymqtt) cmd=(target/release/examples/broker --host 127.0.0.1 --port "$PORT"
    --log-level "$LOG_LEVEL" "$@") ;;
  mosquitto)
    # As this user (callgrind_control talks to the process through files of its owner).
    {
      printf 'listener %s 127.0.0.1\nallow_anonymous true\nuser %s\n' "$PORT" "$(id -un)"
      printf 'log_dest stderr\nlog_type error\nlog_type warning\n'
      if [[ $LOG_LEVEL == info ]]; then
        printf 'log_type notice\nlog_type information\n'
      fi
    } >"$OUT/mosquitto.conf"
    cmd=(mosquitto -c "$OUT/mosquitto.conf" "$@") ;;
  *) log "BROKER is tinymqtt or mosquitto, not $BROKER"; exit 1 ;;
esac
taskset -c 0 valgrind --tool=callgrind --instr-atstart=no \
  --callgrind-out-file="$OUT/callgrind.out" "${cmd[@]}" </dev/null >"$OUT/broker.log" 2>&1 &
pid=$!
trap 'kill -9 $pid 2>/dev/null || true' EXIT
for _ in $(seq 300); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    break
  fi
  sleep 0.1
done
# The probe above was one connection: let the broker close it before counting.
sleep 1
callgrind_control --instr=on "$pid" >/dev/null 2>&1
taskset -c 1 "$LOAD" connections --port "$PORT" --connections "$CONNS" \
  --concurrency "$CONCURRENCY" --duration 0.5 --quiet --json >"$OUT/load.json"
# The tool has exited: every connection is closed; give the broker (slowed by callgrind)
# time to see each one end.
sleep "$(( CONNS / 1000 + 2 ))"
callgrind_control --dump=connections "$pid" >/dev/null 2>&1
callgrind_control --instr=off "$pid" >/dev/null 2>&1
kill -INT "$pid"
wait "$pid" 2>/dev/null || true
trap - EXIT

dump=$(ls "$OUT"/callgrind.out.* | head -1)
mv "$dump" "$OUT/callgrind.out"
total=$(sed -n 's/^summary: \([0-9]*\).*/\1/p;s/^totals: \([0-9]*\).*/\1/p' "$OUT/callgrind.out" | head -1)
opened=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["opened"])' "$OUT/load.json")
printf '%s, log level %s: %s connections opened, %s instructions, %s per connection\n' \
  "$BROKER" "$LOG_LEVEL" "$opened" "$total" "$(( total / CONNS ))"
log "functions: callgrind_annotate $OUT/callgrind.out | head -60"
