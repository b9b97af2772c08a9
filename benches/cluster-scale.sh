#!/usr/bin/env bash
# How fan-in behaves with 1, 2 and 3 cluster nodes on this machine: a NATS server with
# JetStream and N tinymqtt nodes (release example broker, a [cluster] table each), then N load
# tools at once, tool i with its 4 publishers on node i and its subscriber on node i+1 (mod N),
# so every message crosses NATS once N > 1. N = 1 is a plain broker, no cluster. Prints one
# line per N and QoS: the sum of the tools' delivery rates. Every process shares the machine's
# cores (nothing pinned): the figures show what the trip through NATS costs on one machine,
# not what nodes on machines of their own would reach.
#
#   make bench-cluster                       # QoS 0 and 1, 1 to 3 nodes, 5 s each
#   NODES="1 3" QOS="1" DURATION=3 benches/cluster-scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."

NODES=${NODES:-"1 2 3"}
QOS=${QOS:-"0 1"}
DURATION=${DURATION:-5}
PORT=${PORT:-22883}
NATS_PORT=${NATS_PORT:-24222}
CARGO=${CARGO:-cargo}
work=target/bench-cluster
mkdir -p "$work"

log() { printf '%s\n' "bench-cluster: $*" >&2; }

command -v nats-server >/dev/null 2>&1 || { log "nats-server missing: run make tools"; exit 1; }
log "building the load tool and the example broker (release)"
$CARGO build --quiet --release --manifest-path benches/load/Cargo.toml
$CARGO build --quiet --release --all-features --example broker
load=benches/load/target/release/load
broker=target/release/examples/broker

pids=()
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap stop_all EXIT

# Waits until something listens on 127.0.0.1:$1 (5 s at most).
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  log "nothing listens on port $1"
  return 1
}

for n in $NODES; do
  for q in $QOS; do
    rm -rf "$work/js" && mkdir -p "$work/js"
    if (( n > 1 )); then
      nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$work/js" >"$work/nats.log" 2>&1 &
      pids+=($!)
      wait_port "$NATS_PORT"
    fi
    for i in $(seq 0 $((n - 1))); do
      conf="$work/node$i.toml"
      printf 'listeners = ["127.0.0.1:%d"]\nsys_interval = 0\n' $((PORT + i)) >"$conf"
      if (( n > 1 )); then
        printf '[cluster]\nnats = ["nats://127.0.0.1:%d"]\nnode_id = "n%d"\n' \
          "$NATS_PORT" "$i" >>"$conf"
      fi
      "$broker" -c "$conf" --log-level warn >"$work/node$i.log" 2>&1 &
      pids+=($!)
      wait_port $((PORT + i))
    done
    tools=()
    for i in $(seq 0 $((n - 1))); do
      sub=$((PORT + (i + 1) % n))
      "$load" fan-in --port $((PORT + i)) --subscriber-port "$sub" --qos "$q" \
        --duration "$DURATION" --json >"$work/load-$n-$q-$i.json" 2>"$work/load-$n-$q-$i.log" &
      tools+=($!)
    done
    failed=0
    for t in "${tools[@]}"; do wait "$t" || failed=1; done
    stop_all
    if (( failed )); then
      log "$n node(s), QoS $q: a load tool failed (see $work/load-$n-$q-*.log)"
      exit 1
    fi
    python3 - "$n" "$q" "$work"/load-"$n"-"$q"-*.json <<'EOF'
import json, sys
n, q, files = sys.argv[1], sys.argv[2], sys.argv[3:]
rates = [json.loads(open(f).read().strip().splitlines()[-1])["rate"] for f in files]
print(f"{n} node(s), QoS {q}: {sum(rates):,.0f} msg/s in all "
      f"({', '.join(f'{r:,.0f}' for r in rates)})")
EOF
  done
done
