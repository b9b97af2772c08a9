#!/usr/bin/env bash
# Benchmarks tinymqtt's example broker side by side with Mosquitto, rumqttd and rmqtt on
# loopback. Each broker runs pinned to core $BROKER_CPU, the load tool to core $LOAD_CPU, so the
# figures are per-core efficiency. For each scenario the brokers and settings alternate
# (A B C D with equal settings, A B C D with their defaults, again) for $ROUNDS rounds of
# $DURATION seconds, each run on a freshly started broker; the JSON lines go to $RESULTS and a
# table of medians, min-max and ratios to rumqttd is printed at the end.
#
#   make bench-brokers                          # installs what is missing, builds, runs
#   make bench-brokers ROUNDS=3 DURATION=3      # shorter
#   SCENARIOS="fanin-q1 latency-q0" BROKERS="tinymqtt mosquitto" benches/bench-brokers.sh
#   make bench-runtimes                         # our broker on each runtime, fan-in QoS 0
#   make bench-window                           # our broker's in-flight window, 20 to 200
#
# Brokers: tinymqtt (the example broker on tokio), tinymqtt-smol, tinymqtt-async-std,
# tinymqtt-blocking (the same binary with --runtime), mosquitto, rumqttd, rmqtt (rmqttd).
#
# Settings ($SETTINGS, one table column each):
#   equal      every broker with $INFLIGHT QoS 1/2 messages in flight towards a subscriber, no
#              persistence, queues that do not drop what a lagging subscriber is owed, Nagle off
#              (where it can be set: rumqttd leaves it on)
#   defaults   every broker as it comes: its built-in settings (rumqttd: the configuration file
#              it ships, which it needs to start), changed only where the run needs it:
#              loopback listeners on the ports below, anonymous clients let in (rmqtt refuses
#              them out of the box), the admin HTTP endpoints of rumqttd and rmqtt off
#   window-N   equal settings with N in flight instead of $INFLIGHT
#
# Scenarios: fanin-q0 fanin-q1 fanin-q2 (4 -> 1, 64 B, publishers' window 20), fanout-q0
# fanout-q1 (1 -> 16), latency-q0 latency-q1 (10k msg/s), conns-10k (10,000 idle connections),
# conns-2k (2,000), conns-5k (5,000, 64 handshakes at a time: the connect rate); with the
# subscriber on a far link (the load tool's relay holds its traffic $DELAY_MS ms each way): fanin-q1-far fanin-q2-far, latency-q1-far (1,000 msg/s); over TLS
# (tinymqtt and mosquitto only, certificates made here by openssl): fanin-q0-tls fanin-q1-tls,
# conns-tls (2,000 connections: TLS handshakes per second); over WebSocket (tinymqtt only:
# Debian's mosquitto cannot open a WebSocket listener): fanin-q1-ws.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
BROKERS=${BROKERS:-"tinymqtt mosquitto rumqttd rmqtt"}
SETTINGS=${SETTINGS:-"equal defaults"}
SCENARIOS=${SCENARIOS:-"fanin-q0 fanin-q1 fanin-q2 fanout-q0 fanout-q1 latency-q0 latency-q1 conns-10k"}
RESULTS=${RESULTS:-target/bench-brokers/results.jsonl}
BROKER_CPU=${BROKER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT=${PORT:-21883}
CARGO=${CARGO:-cargo}
# PRIO=-10 runs brokers and the load tool at a higher priority than other work on the machine
# (e.g. compilers), which otherwise shares their cores; empty: normal priority.
PRIO=${PRIO:-}
# Extra arguments for our broker, e.g. TINYMQTT_ARGS="--runtime smol".
TINYMQTT_ARGS=${TINYMQTT_ARGS:-}
# Logging, the same in every broker and both settings columns, so that no broker pays for
# lines another does not write (a line per connect is most of a connect's cost otherwise):
#   warn   errors and warnings only: Mosquitto `log_type error` and `warning`, ours
#          `--log-level warn`, rmqtt `log.level = "$LOGS"`, rumqttd `-q`; no line per connection
#   info   a line per connect and per close too: Mosquitto adds `notice` and `information`
#          (its connect and disconnect lines), ours `--log-level info` (its default), rmqtt
#          `info`; rumqttd stays `-q`
# Each broker writes to a file (not a terminal), as a service does.
LOGS=${LOGS:-warn}
# QoS 1/2 messages each broker keeps in flight towards one (3.1.1) subscriber with equal
# settings. rumqttd's is fixed at 100 (MAX_INFLIGHT in its router); Mosquitto, rmqtt and
# tinymqtt are set to the same, so all run the same window (Mosquitto's default is 20, rmqtt's
# 16, ours 100).
INFLIGHT=${INFLIGHT:-100}
# The one-way delay of the far link in the *-far scenarios, in milliseconds.
DELAY_MS=${DELAY_MS:-25}
INSTALL=${INSTALL:-1}
# Where rumqttd and rmqttd are installed (cargo install --root) when they are not on PATH.
TOOLS=${TOOLS:-target/bench-tools}

NICE=
if [[ -n $PRIO ]]; then
  NICE="nice -n $PRIO"
fi
work=$(dirname "$RESULTS")
mkdir -p "$work"
: > "$RESULTS"

log() { printf '%s\n' "bench-brokers: $*" >&2; }

# --- what is needed -------------------------------------------------------------------------
case $LOGS in
  warn | info) ;;
  *) log "LOGS is warn or info, not $LOGS"; exit 1 ;;
esac
if [[ $INSTALL == 1 ]]; then
  if ! command -v mosquitto >/dev/null 2>&1 || ! command -v taskset >/dev/null 2>&1 \
      || ! command -v python3 >/dev/null 2>&1; then
    log "installing mosquitto, util-linux (taskset), python3"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto util-linux python3 >/dev/null
    systemctl disable --now mosquitto >/dev/null 2>&1 || true
  fi
  export PATH="$PWD/$TOOLS/bin:$HOME/.cargo/bin:$PATH"
  if [[ " $BROKERS " == *" rumqttd "* ]] && ! command -v rumqttd >/dev/null 2>&1; then
    # --locked fails: rumqttd 0.20's lock file pins a metrics release that no longer compiles.
    log "installing rumqttd (cargo install rumqttd; several minutes)"
    $CARGO install --root "$TOOLS" rumqttd --version 0.20.0
  fi
  if [[ " $BROKERS " == *" rmqtt "* ]] && ! command -v rmqttd >/dev/null 2>&1; then
    # rmqttd builds its plug-ins' C dependencies (librdkafka, protobuf) with cmake and autotools,
    # and its gRPC code with protoc.
    if ! command -v cmake >/dev/null 2>&1 || ! command -v autoreconf >/dev/null 2>&1 \
        || ! command -v libtoolize >/dev/null 2>&1 || ! command -v protoc >/dev/null 2>&1; then
      log "installing cmake, autotools, protoc, libssl-dev, pkg-config (to build rmqttd)"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake autoconf automake libtool \
        protobuf-compiler libssl-dev pkg-config g++ >/dev/null
    fi
    # Its lock file builds as published (0.24 needs Rust 1.94).
    log "installing rmqttd (cargo install rmqttd; many minutes: ~700 crates and two C libraries)"
    $CARGO install --root "$TOOLS" --locked rmqttd --version 0.24.0
  fi
fi
export PATH="$PWD/$TOOLS/bin:$HOME/.cargo/bin:$PATH"

log "building the load tool and the example broker (release)"
$CARGO build --quiet --release --manifest-path benches/load/Cargo.toml
if [[ " $BROKERS " == *" tinymqtt"* ]]; then
  $CARGO build --quiet --release --all-features --example broker
fi
LOAD=benches/load/target/release/load
TINYMQTT=target/release/examples/broker

# Room for 10k+ connections in every process started from here.
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# --- certificates for the TLS scenarios (a CA and a server certificate for 127.0.0.1) -------
PKI=$work/pki
if [[ ! -f $PKI/server.pem ]]; then
  mkdir -p "$PKI"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj /CN=bench-ca -keyout "$PKI/ca.key" -out "$PKI/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$PKI/server.key" -out "$PKI/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$PKI/ext"
  openssl x509 -req -in "$PKI/server.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" \
    -CAcreateserial -days 30 -extfile "$PKI/ext" -out "$PKI/server.pem" 2>/dev/null
fi
# Mosquitto started as root reads its files as the user "mosquitto": a throwaway bench key.
chmod -R a+rX "$PKI"

# --- broker configs, one set per settings column in $work/settings-NAME/ ---------------------
# The listeners are the same in every set: plain, TLS and WebSocket where the broker has them.
mosquitto_listeners() {
  cat <<EOF
listener $((PORT + 1)) 127.0.0.1
allow_anonymous true
# The TLS scenarios' listener.
listener $((PORT + 5)) 127.0.0.1
certfile $PKI/server.pem
keyfile $PKI/server.key
log_dest stderr
log_type error
log_type warning
EOF
  if [[ $LOGS == info ]]; then
    printf 'log_type notice\nlog_type information\n'
  fi
}

tinymqtt_listeners() {
  cat <<EOF
listeners = ["127.0.0.1:$PORT"]

# The TLS scenarios' listener.
[[listener]]
bind = "127.0.0.1:$((PORT + 4))"
certfile = "$PWD/$PKI/server.pem"
keyfile = "$PWD/$PKI/server.key"

# The WebSocket scenarios' listener.
[[listener]]
bind = "127.0.0.1:$((PORT + 6))"
protocol = "websockets"
EOF
}

# rmqtt: a loopback listener that lets anonymous clients in, its cluster gRPC endpoint on
# loopback, logging at $LOGS, the admin HTTP API (a default plug-in, on 0.0.0.0) off.
rmqtt_base() {
  local dir=$1
  [[ $dir == /* ]] || dir=$PWD/$dir
  cat <<EOF
rpc.server_addr = "127.0.0.1:$((PORT + 8))"
log.to = "console"
log.level = "$LOGS"
plugins.dir = "$dir/rmqtt-plugins"
plugins.disabled_default_startups = ["rmqtt-http-api"]
listener.tcp.external.addr = "127.0.0.1:$((PORT + 7))"
listener.tcp.external.allow_anonymous = true
EOF
}

# rumqttd: the listeners of the configuration file it ships (0.20), on loopback ports.
rumqttd_listeners() {
  local delay=$1 payload=$2 inflight=$3
  cat <<EOF
[v4.1]
name = "v4-1"
listen = "127.0.0.1:$((PORT + 2))"
next_connection_delay_ms = $delay
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = $payload
    max_inflight_count = $inflight
    dynamic_filters = true

[v5.1]
name = "v5-1"
listen = "127.0.0.1:$((PORT + 3))"
next_connection_delay_ms = $delay
    [v5.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = $payload
    max_inflight_count = $inflight
EOF
}

# Writes the four brokers' files for settings $1 into $work/settings-$1/.
write_configs() {
  local settings=$1 dir=$work/settings-$1 window
  mkdir -p "$dir/rmqtt-plugins"
  case $settings in
    defaults)
      {
        echo "# Generated by benches/bench-brokers.sh: Mosquitto's defaults, on loopback."
        mosquitto_listeners
      } >"$dir/mosquitto.conf"
      {
        echo "# Generated by benches/bench-brokers.sh: tinymqtt's defaults, on loopback."
        tinymqtt_listeners
      } >"$dir/tinymqtt.toml"
      {
        echo "# Generated by benches/bench-brokers.sh: the file rumqttd 0.20 ships, on loopback,"
        echo "# without its console and Prometheus endpoints."
        echo "id = 0"
        echo
        echo "[router]"
        echo "id = 0"
        echo "max_connections = 10010"
        echo "max_outgoing_packet_count = 200"
        echo "max_segment_size = 104857600"
        echo "max_segment_count = 10"
        echo
        rumqttd_listeners 1 20480 100
      } >"$dir/rumqttd.toml"
      {
        echo "# Generated by benches/bench-brokers.sh: rmqtt's built-in defaults, on loopback."
        rmqtt_base "$dir"
      } >"$dir/rmqtt.toml"
      return 0
      ;;
    equal) window=$INFLIGHT ;;
    window-*) window=${settings#window-} ;;
    *) log "unknown settings $settings (equal, defaults, window-N)"; return 1 ;;
  esac
  cat >"$dir/mosquitto.conf" <<EOF
# Generated by benches/bench-brokers.sh: loopback only, no persistence.
persistence false
# No cap on queued QoS 1/2 messages (the default 1000 drops them when a subscriber lags),
# $window in flight per client, no byte cap.
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages $window
max_connections -1
set_tcp_nodelay true
$(mosquitto_listeners)
EOF
  cat >"$dir/tinymqtt.toml" <<EOF
# Generated by benches/bench-brokers.sh: the same in-flight window as the others.
max_inflight_messages = $window
$(tinymqtt_listeners)
EOF
  cat >"$dir/rumqttd.toml" <<EOF
# Generated by benches/bench-brokers.sh: loopback only, generous limits, no connect delay.
# Its window towards a subscriber is 100 whatever max_inflight_count says.
id = 0

[router]
id = 0
max_connections = 200000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

$(rumqttd_listeners 0 1048576 "$window")
EOF
  cat >"$dir/rmqtt.toml" <<EOF
# Generated by benches/bench-brokers.sh: loopback only, no persistence (its default), $window in
# flight, a queue that does not drop (its default holds 1000), no connection cap, Nagle off.
$(rmqtt_base "$dir")
listener.tcp.external.max_inflight = $window
listener.tcp.external.max_mqueue_len = 10000000
listener.tcp.external.max_connections = 1024000
listener.tcp.external.max_handshaking_limit = 100000
listener.tcp.external.nodelay = true
EOF
}
for settings in $SETTINGS; do
  write_configs "$settings"
done

# The port of broker $1 for scenario $2 (the TLS listener for *-tls scenarios); nothing when
# the broker has no TLS listener here.
broker_port() {
  if [[ ${2:-} == *-ws ]]; then
    case $1 in
      tinymqtt | tinymqtt-*) echo $((PORT + 6)) ;;
    esac
    return 0
  fi
  if [[ ${2:-} == *-tls ]]; then
    case $1 in
      tinymqtt | tinymqtt-*) echo $((PORT + 4)) ;;
      mosquitto) echo $((PORT + 5)) ;;
    esac
    return 0
  fi
  case $1 in
    tinymqtt | tinymqtt-*) echo "$PORT" ;;
    mosquitto) echo $((PORT + 1)) ;;
    rumqttd) echo $((PORT + 2)) ;;
    rmqtt) echo $((PORT + 7)) ;;
  esac
}

BROKER_PID=
# Starts broker $1 with the files of settings $2.
start_broker() {
  local name=$1 dir=$work/settings-$2 port
  port=$(broker_port "$name")
  case $name in
    tinymqtt | tinymqtt-*)
      local runtime=tokio
      [[ $name == tinymqtt-* ]] && runtime=${name#tinymqtt-}
      # shellcheck disable=SC2086
      $NICE taskset -c "$BROKER_CPU" "$TINYMQTT" --host 127.0.0.1 --port "$port" --log-level "$LOGS" \
        --runtime "$runtime" --config "$dir/tinymqtt.toml" $TINYMQTT_ARGS </dev/null >>"$work/$name.log" 2>&1 &
      ;;
    mosquitto)
      $NICE taskset -c "$BROKER_CPU" mosquitto -c "$dir/mosquitto.conf" </dev/null >>"$work/mosquitto.log" 2>&1 &
      ;;
    rumqttd)
      $NICE taskset -c "$BROKER_CPU" rumqttd -c "$dir/rumqttd.toml" -q \
        </dev/null >>"$work/rumqttd.log" 2>&1 &
      ;;
    rmqtt)
      # Run from its settings directory: rmqttd also reads ./rmqtt.toml, and nothing else
      # of ours is there.
      local log
      log=$(cd "$work" && pwd)/rmqtt.log
      (cd "$dir" && exec $NICE taskset -c "$BROKER_CPU" rmqttd -f "$PWD/rmqtt.toml" \
        </dev/null >>"$log" 2>&1) &
      ;;
  esac
  BROKER_PID=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      sleep 0.2
      return 0
    fi
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
      log "$name exited at start (see $work/$name.log)"
      return 1
    fi
    sleep 0.1
  done
  log "$name did not listen on $port"
  return 1
}

stop_broker() {
  [[ -n $BROKER_PID ]] || return 0
  kill "$BROKER_PID" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$BROKER_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$BROKER_PID" 2>/dev/null || true
  wait "$BROKER_PID" 2>/dev/null || true
  BROKER_PID=
}
trap stop_broker EXIT

scenario_args() {
  case $1 in
    fanin-q0) echo "fan-in --publishers 4 --subscribers 1 --qos 0" ;;
    fanin-q1) echo "fan-in --publishers 4 --subscribers 1 --qos 1" ;;
    fanin-q2) echo "fan-in --publishers 4 --subscribers 1 --qos 2" ;;
    fanout-q0) echo "fan-out --publishers 1 --subscribers 16 --qos 0" ;;
    fanout-q1) echo "fan-out --publishers 1 --subscribers 16 --qos 1" ;;
    latency-q0) echo "latency --qos 0 --rate 10000" ;;
    latency-q1) echo "latency --qos 1 --rate 10000" ;;
    conns-10k) echo "connections --connections 10000" ;;
    conns-2k) echo "connections --connections 2000" ;;
    conns-5k) echo "connections --connections 5000 --concurrency 64" ;;
    fanin-q1-far) echo "fan-in --publishers 4 --subscribers 1 --qos 1 --delay-ms $DELAY_MS" ;;
    fanin-q2-far) echo "fan-in --publishers 4 --subscribers 1 --qos 2 --delay-ms $DELAY_MS" ;;
    latency-q1-far) echo "latency --qos 1 --rate 1000 --delay-ms $DELAY_MS" ;;
    fanin-q0-tls) echo "fan-in --publishers 4 --subscribers 1 --qos 0 --tls --cafile $PKI/ca.pem" ;;
    fanin-q1-tls) echo "fan-in --publishers 4 --subscribers 1 --qos 1 --tls --cafile $PKI/ca.pem" ;;
    conns-tls) echo "connections --connections 2000 --tls --cafile $PKI/ca.pem" ;;
    fanin-q1-ws) echo "fan-in --publishers 4 --subscribers 1 --qos 1 --ws" ;;
    *) log "unknown scenario $1"; return 1 ;;
  esac
}

# --- the runs -------------------------------------------------------------------------------
# One run of scenario $1 (load tool arguments $2), round $3, settings $4, broker $5: a fresh
# broker, the load, one JSON line to $RESULTS and a line of progress.
run_one() {
  local scenario=$1 args=$2 round=$3 settings=$4 broker=$5 port line
  port=$(broker_port "$broker" "$scenario")
  if [[ -z $port ]]; then
    return 0
  fi
  if ! start_broker "$broker" "$settings"; then
    stop_broker
    return 0
  fi
  local extra=(--duration "$DURATION" --broker-pid "$BROKER_PID")
  if [[ $scenario == conns-* ]]; then
    extra=(--duration 1 --broker-pid "$BROKER_PID")
  fi
  # shellcheck disable=SC2086
  line=$($NICE taskset -c "$LOAD_CPU" "$LOAD" $args --port "$port" \
    --payload 64 --window 20 --json --quiet --label "$broker" "${extra[@]}" 2>>"$work/load.log") \
    || true
  stop_broker
  if [[ -z $line ]]; then
    line="{\"label\":\"$broker\",\"ok\":false,\"error\":\"the load tool printed no result\"}"
  fi
  line="{\"bench\":\"$scenario\",\"settings\":\"$settings\",\"round\":$round,${line#\{}"
  printf '%s\n' "$line" >>"$RESULTS"
  python3 - "$line" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
if "p50_us" in r:
    v = f"p50 {r['p50_us']:.1f} us p99 {r['p99_us']:.1f} us"
elif "bytes_per_conn" in r:
    b = r.get("bytes_per_conn")
    v = f"{r.get('rate', 0):,.0f} conn/s, {b if b is None else round(b)} B/conn"
else:
    v = f"{r.get('rate', 0):,.0f} msg/s"
bad = "" if r.get("ok") else f"  FAILED {r.get('error', '')}"
loss = f" lost {r.get('lost', 0)} dup {r.get('duplicates', 0)}" if "lost" in r else ""
print(f"  {r['bench']:<13} round {r['round']} {r['settings']:<10} {r['label']:<10} {v}{loss}{bad}",
      file=sys.stderr)
EOF
}

for scenario in $SCENARIOS; do
  args=$(scenario_args "$scenario")
  for round in $(seq "$ROUNDS"); do
    for settings in $SETTINGS; do
      for broker in $BROKERS; do
        run_one "$scenario" "$args" "$round" "$settings" "$broker"
      done
    done
  done
done

python3 benches/bench-table.py "$RESULTS"
log "results: $RESULTS"
