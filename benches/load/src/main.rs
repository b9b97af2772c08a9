//! `load`: drives an MQTT broker on loopback with hand-encoded packets and reports throughput,
//! latency or connection footprint, with exact loss/duplicate/order checks at QoS 1 and 2.
//!
//! Progress goes to stderr each second; a human summary and one JSON line end the run. The exit
//! code is 1 when a check failed (acknowledged message lost, QoS 2 duplicate, reordering, a
//! connection error), 2 when the run could not start.
#![forbid(unsafe_code)]
// A load generator is all clocks and sleeps: the core's ban on them does not apply here.
#![allow(clippy::disallowed_methods)]

mod check;
mod conn;
mod conns;
mod flow;
mod latency;
mod packet;
mod relay;
mod report;
mod sink;

use std::net::ToSocketAddrs;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::packet::Protocol;
use crate::report::{si, Json, Value};

/// What to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// P publishers on one topic, N subscribers on it (default 4 -> 1).
    FanIn,
    /// The same with one publisher and many subscribers (default 1 -> 16).
    FanOut,
    /// P publishers on their own topics, N wildcard subscribers (default 8 -> 2).
    Many,
    /// One publisher at --rate msg/s, one subscriber: end-to-end latency percentiles.
    Latency,
    /// --connections idle connections: connect rate and broker RSS per connection.
    Connections,
    /// Serve as a broker that acknowledges and discards everything (the tool's ceiling).
    Sink,
}

/// Drive an MQTT broker with load: throughput, latency, connections; or act as a sink.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The scenario (also accepted as --scenario).
    #[arg(value_enum)]
    scenario_arg: Option<Scenario>,
    /// The scenario.
    #[arg(long, value_enum)]
    scenario: Option<Scenario>,
    /// The broker's address (the sink's listen address).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The broker's port (the sink's listen port).
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// Publishers (default per scenario).
    #[arg(long, short = 'P')]
    publishers: Option<usize>,
    /// Subscribers (default per scenario; 0 publishes only).
    #[arg(long, short = 'N')]
    subscribers: Option<usize>,
    /// QoS of publishes and subscriptions.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Payload bytes (at least 20: publisher id, sequence number, send time).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Unacknowledged publishes per publisher at QoS 1/2.
    #[arg(long, default_value_t = 20)]
    window: usize,
    /// At QoS 0, publishes per publisher not yet received by every subscriber: a closed loop
    /// end to end, so no broker buffer overflows (0: no limit, a firehose).
    #[arg(long, default_value_t = 1000)]
    qos0_window: usize,
    /// Seconds to run (the connections scenario: seconds to hold them open).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Publish this many messages in total instead of running for --duration.
    #[arg(long)]
    count: Option<u64>,
    /// Messages per second in the latency scenario.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Idle connections to open in the connections scenario.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Handshakes in progress at once in the connections scenario.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// The broker's pid, to read its VmRSS before and after the connections.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// MQTT protocol level: 4 (3.1.1) or 5.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(4..=5))]
    protocol: u8,
    /// Keep alive in seconds sent in CONNECT (0: off, which rumqttd refuses); the tool sends no
    /// PINGREQ, so a run must end within 1.5 times it.
    #[arg(long, default_value_t = 300)]
    keep_alive: u16,
    /// Seconds to wait for the last acknowledgements and deliveries after publishing stops.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Runtime threads (1: a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print only the JSON line on stdout (the summary goes to stderr).
    #[arg(long)]
    json: bool,
    /// No progress lines.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// A label copied into the JSON line (e.g. the broker's name).
    #[arg(long, default_value = "")]
    label: String,
    /// Connect over TLS (fan-in, fan-out, many, connections), trusting --cafile and checking
    /// the certificate against --host.
    #[arg(long, requires = "cafile")]
    tls: bool,
    /// The CA certificates (PEM) that --tls trusts.
    #[arg(long, value_name = "FILE")]
    cafile: Option<std::path::PathBuf>,
    /// Connect over WebSocket (ws://HOST:PORT/mqtt, subprotocol mqtt; fan-in, fan-out, many,
    /// connections).
    #[arg(long, conflicts_with = "tls")]
    ws: bool,
    /// Hold each subscriber's traffic this many milliseconds in each direction (a forwarding
    /// relay in the tool: a far link with a round trip of twice this, bandwidth unlimited);
    /// publishers stay on loopback. Fan-in, fan-out, many and latency.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Subscribers connect to this port of --host, publishers to --port: another node of a
    /// cluster (publishers on one node, subscribers on another). Fan-in, fan-out, many and
    /// latency.
    #[arg(long)]
    subscriber_port: Option<u16>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(scenario) = args.scenario.or(args.scenario_arg) else {
        eprintln!("load: name a scenario: fan-in, fan-out, many, latency, connections or sink");
        return ExitCode::from(2);
    };
    let addr = match (args.host.as_str(), args.port).to_socket_addrs() {
        Ok(mut addrs) => match addrs.next() {
            Some(a) => a,
            None => return fail(format!("{} resolves to nothing", args.host)),
        },
        Err(e) => return fail(format!("{}: {e}", args.host)),
    };
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => return fail(format!("runtime: {e}")),
    };
    let _ = conn::nanos();
    let transport = match (&args.cafile, args.tls, args.ws) {
        (Some(ca), true, _) => match conn::Tls::new(ca, &args.host) {
            Ok(t) => conn::Transport::Tls(t),
            Err(e) => return fail(format!("--tls: {e}")),
        },
        (_, _, true) => conn::Transport::Ws,
        _ => conn::Transport::Plain,
    };
    if (args.tls || args.ws) && matches!(scenario, Scenario::Latency | Scenario::Sink) {
        return fail("--tls, --ws: the latency and sink scenarios are plain TCP only");
    }
    if args.delay_ms > 0 && matches!(scenario, Scenario::Connections | Scenario::Sink) {
        return fail("--delay-ms: fan-in, fan-out, many and latency only");
    }
    let subscriber_target = match args.subscriber_port {
        None => addr,
        Some(port) => match (args.host.as_str(), port).to_socket_addrs() {
            Ok(mut addrs) => match addrs.next() {
                Some(a) => a,
                None => return fail(format!("{}:{port} resolves to nothing", args.host)),
            },
            Err(e) => return fail(format!("{}:{port}: {e}", args.host)),
        },
    };
    let subscriber_addr = if args.delay_ms > 0 {
        match relay::start(subscriber_target, Duration::from_millis(args.delay_ms)) {
            Ok(a) => a,
            Err(e) => return fail(format!("--delay-ms: the relay: {e}")),
        }
    } else {
        subscriber_target
    };
    match scenario {
        Scenario::Sink => {
            // The sink serves until it is killed.
            raise_nofile(100_000);
            match runtime.block_on(sink::run(addr, None, !args.quiet)) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(format!("sink: {e}")),
            }
        }
        Scenario::FanIn | Scenario::FanOut | Scenario::Many => {
            let (shape, p, n) = match scenario {
                Scenario::FanIn => (flow::Shape::FanIn, 4, 1),
                Scenario::FanOut => (flow::Shape::FanOut, 1, 16),
                _ => (flow::Shape::Many, 8, 2),
            };
            let cfg = flow::FlowConfig {
                addr,
                subscriber_addr,
                protocol: protocol(&args),
                qos: args.qos,
                payload: args.payload,
                window: args.window,
                qos0_window: args.qos0_window,
                publishers: args.publishers.unwrap_or(p).max(1),
                subscribers: args.subscribers.unwrap_or(n),
                shape,
                duration: Duration::from_secs_f64(args.duration),
                count: args.count,
                drain: Duration::from_secs_f64(args.drain),
                keep_alive: args.keep_alive,
                progress: !args.quiet,
                broker_pid: args.broker_pid,
                transport: transport.clone(),
            };
            if let Err(e) =
                packet::PublishTemplate::new("t", args.qos, args.payload, cfg.protocol, 0)
            {
                return fail(e);
            }
            raise_nofile((cfg.publishers + cfg.subscribers) as u64 + 64);
            match runtime.block_on(flow::run(cfg.clone())) {
                Ok(r) => flow_report(&args, scenario, &cfg, &r),
                Err(e) => fail(e),
            }
        }
        Scenario::Latency => {
            let cfg = latency::LatencyConfig {
                addr,
                subscriber_addr,
                protocol: protocol(&args),
                qos: args.qos,
                payload: args.payload,
                rate: args.rate.max(1),
                duration: Duration::from_secs_f64(args.duration),
                count: args.count,
                drain: Duration::from_secs_f64(args.drain),
                keep_alive: args.keep_alive,
                progress: !args.quiet,
            };
            drop(runtime);
            let cpu = (report::cpu_secs(None), report::cpu_secs(args.broker_pid));
            match latency::run(cfg.clone()) {
                Ok(mut r) => {
                    let used = |from: Option<f64>, to: Option<f64>| Some((to? - from?) / r.secs);
                    r.tool_cpu = used(cpu.0, report::cpu_secs(None));
                    r.broker_cpu = used(cpu.1, report::cpu_secs(args.broker_pid));
                    latency_report(&args, &cfg, &r)
                }
                Err(e) => fail(e),
            }
        }
        Scenario::Connections => {
            let cfg = conns::ConnsConfig {
                addr,
                protocol: protocol(&args),
                connections: args.connections,
                concurrency: args.concurrency,
                hold: Duration::from_secs_f64(args.duration),
                broker_pid: args.broker_pid,
                progress: !args.quiet,
                keep_alive: args.keep_alive,
                transport,
            };
            raise_nofile(args.connections as u64 + 256);
            let r = runtime.block_on(conns::run(cfg.clone()));
            conns_report(&args, &cfg, &r)
        }
    }
}

fn protocol(args: &Args) -> Protocol {
    if args.protocol == 5 {
        Protocol::V5
    } else {
        Protocol::V4
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("load: {msg}");
    ExitCode::from(2)
}

/// Raises the open-file limit to at least `want` (the hard limit too when allowed).
fn raise_nofile(want: u64) {
    use rlimit::Resource;
    let Ok((soft, hard)) = Resource::NOFILE.get() else {
        return;
    };
    if soft >= want {
        return;
    }
    if hard < want && Resource::NOFILE.set(want, want).is_ok() {
        return;
    }
    let _ = Resource::NOFILE.set(want.min(hard), hard);
    if want > hard {
        eprintln!("load: warning: the open-file limit is {hard}, below the {want} this run needs");
    }
}

/// Prints the summary (stdout, or stderr with --json) and the JSON line (stdout).
fn emit(args: &Args, summary: &str, json: &Json) {
    use std::io::Write;
    // A closed pipe (e.g. `| head`) is no reason to panic: the output is just not read.
    if args.json {
        let _ = std::io::stderr().write_all(summary.as_bytes());
    } else {
        let _ = std::io::stdout().write_all(summary.as_bytes());
    }
    let _ = writeln!(std::io::stdout(), "{}", json.finish());
}

fn common(json: &mut Json, args: &Args, scenario: &str) {
    json.field("tool", Value::Str("tinymqtt-load".into()))
        .field("scenario", Value::Str(scenario.into()))
        .field("label", Value::Str(args.label.clone()))
        .field("protocol", Value::U(u64::from(args.protocol)))
        .field("qos", Value::U(u64::from(args.qos)))
        .field("payload", Value::U(args.payload as u64))
        .field("tls", Value::B(args.tls))
        .field("ws", Value::B(args.ws))
        .field("delay_ms", Value::U(args.delay_ms));
}

fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

fn flow_report(
    args: &Args,
    scenario: Scenario,
    cfg: &flow::FlowConfig,
    r: &flow::FlowResult,
) -> ExitCode {
    let name = scenario
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    let v = r.verdict;
    // At QoS 0 loss is allowed; at QoS 1/2 every acknowledged message must arrive, in order,
    // and at QoS 2 exactly once.
    let violated = cfg.subscribers > 0
        && cfg.qos > 0
        && (v.lost > 0 || v.reordered > 0 || (cfg.qos == 2 && v.duplicates > 0))
        || v.unknown > 0;
    let ok = !violated && r.errors.is_empty();
    let rate = if cfg.subscribers > 0 {
        per_sec(r.delivered, r.secs)
    } else if cfg.qos > 0 {
        per_sec(r.acked, r.secs)
    } else {
        per_sec(r.sent, r.secs)
    };
    let mut s = format!(
        "{name} {}->{} qos {} payload {} B {} (MQTT {}): {:.2} s\n",
        cfg.publishers,
        cfg.subscribers,
        cfg.qos,
        cfg.payload,
        match (cfg.qos, cfg.qos0_window) {
            (0, 0) => "no window".to_string(),
            (0, w) => format!("{w} ahead of the slowest subscriber"),
            _ => format!("window {}", cfg.window),
        },
        if args.protocol == 5 { "5.0" } else { "3.1.1" },
        r.secs
    );
    if args.delay_ms > 0 {
        s += &format!("  subscribers {} ms away each way\n", args.delay_ms);
    }
    s += &format!(
        "  published {}/s  acknowledged {}/s  delivered {}/s\n",
        si(per_sec(r.sent, r.secs) as u64),
        si(per_sec(r.acked, r.secs) as u64),
        si(per_sec(r.delivered, r.secs) as u64)
    );
    s += &format!(
        "  totals: sent {} acked {} received {}  lost {} duplicates {} reordered {} rejected {}\n",
        r.sent_total, r.acked_total, v.received, v.lost, v.duplicates, v.reordered, r.rejected
    );
    s += &format!(
        "  cpu: load tool {}  broker {}\n",
        cores(r.tool_cpu),
        cores(r.broker_cpu)
    );
    if let Some(b) = r.broker_peak_rss {
        s += &format!("  broker peak RSS {:.1} MiB\n", b as f64 / 1048576.0);
    }
    for e in &r.errors {
        s += &format!("  error: {e}\n");
    }
    s += &format!("  result: {}\n", if ok { "ok" } else { "FAILED" });
    let mut json = Json::default();
    common(&mut json, args, &name);
    json.field("window", Value::U(cfg.window as u64))
        .field("qos0_window", Value::U(cfg.qos0_window as u64))
        .field("publishers", Value::U(cfg.publishers as u64))
        .field("subscribers", Value::U(cfg.subscribers as u64))
        .field("secs", Value::F(r.secs))
        .field("rate", Value::F(rate))
        .field("sent_per_sec", Value::F(per_sec(r.sent, r.secs)))
        .field("acked_per_sec", Value::F(per_sec(r.acked, r.secs)))
        .field("delivered_per_sec", Value::F(per_sec(r.delivered, r.secs)))
        .field("sent", Value::U(r.sent_total))
        .field("acked", Value::U(r.acked_total))
        .field("received", Value::U(v.received))
        .field("lost", Value::U(v.lost))
        .field("duplicates", Value::U(v.duplicates))
        .field("reordered", Value::U(v.reordered))
        .field("unknown", Value::U(v.unknown))
        .field("rejected", Value::U(r.rejected))
        .field("tool_cpu", r.tool_cpu.map_or(Value::F(f64::NAN), Value::F))
        .field(
            "broker_cpu",
            r.broker_cpu.map_or(Value::F(f64::NAN), Value::F),
        )
        .field(
            "broker_peak_rss",
            r.broker_peak_rss.map_or(Value::F(f64::NAN), Value::U),
        )
        .field("errors", Value::U(r.errors.len() as u64))
        .field(
            "error",
            Value::Str(r.errors.first().cloned().unwrap_or_default()),
        )
        .field("ok", Value::B(ok));
    emit(args, &s, &json);
    exit(ok)
}

fn cores(c: Option<f64>) -> String {
    c.map_or_else(|| "-".to_string(), |c| format!("{c:.2} cores"))
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn latency_report(
    args: &Args,
    cfg: &latency::LatencyConfig,
    r: &latency::LatencyResult,
) -> ExitCode {
    let v = r.verdict;
    let violated = cfg.qos > 0
        && (v.lost > 0 || v.reordered > 0 || (cfg.qos == 2 && v.duplicates > 0))
        || v.unknown > 0;
    let ok = !violated && r.errors.is_empty() && !r.hist.is_empty();
    let us = |q: f64| r.hist.value_at_quantile(q) as f64 / 1000.0;
    let mut s = format!(
        "latency qos {} payload {} B at {} msg/s (MQTT {}): {:.1} s, {} samples (first {} ms left out)\n",
        cfg.qos,
        cfg.payload,
        cfg.rate,
        if args.protocol == 5 { "5.0" } else { "3.1.1" },
        r.secs,
        r.hist.len(),
        latency::WARMUP.as_millis()
    );
    s += &format!(
        "  p50 {:.1} us  p99 {:.1} us  p99.9 {:.1} us  max {:.1} us  mean {:.1} us\n",
        us(0.5),
        us(0.99),
        us(0.999),
        r.hist.max() as f64 / 1000.0,
        r.hist.mean() / 1000.0
    );
    s += &format!(
        "  totals: sent {} acked {} received {}  lost {} duplicates {} reordered {}\n",
        r.sent, r.acked, v.received, v.lost, v.duplicates, v.reordered
    );
    for e in &r.errors {
        s += &format!("  error: {e}\n");
    }
    s += &format!("  result: {}\n", if ok { "ok" } else { "FAILED" });
    let mut json = Json::default();
    common(&mut json, args, "latency");
    json.field("target_rate", Value::U(cfg.rate))
        .field("secs", Value::F(r.secs))
        .field("rate", Value::F(per_sec(v.received, r.secs)))
        .field("samples", Value::U(r.hist.len()))
        .field("p50_us", Value::F(us(0.5)))
        .field("p99_us", Value::F(us(0.99)))
        .field("p999_us", Value::F(us(0.999)))
        .field("max_us", Value::F(r.hist.max() as f64 / 1000.0))
        .field("mean_us", Value::F(r.hist.mean() / 1000.0))
        .field("tool_cpu", r.tool_cpu.map_or(Value::F(f64::NAN), Value::F))
        .field(
            "broker_cpu",
            r.broker_cpu.map_or(Value::F(f64::NAN), Value::F),
        )
        .field("sent", Value::U(r.sent))
        .field("acked", Value::U(r.acked))
        .field("received", Value::U(v.received))
        .field("lost", Value::U(v.lost))
        .field("duplicates", Value::U(v.duplicates))
        .field("reordered", Value::U(v.reordered))
        .field("unknown", Value::U(v.unknown))
        .field("errors", Value::U(r.errors.len() as u64))
        .field(
            "error",
            Value::Str(r.errors.first().cloned().unwrap_or_default()),
        )
        .field("ok", Value::B(ok));
    emit(args, &s, &json);
    exit(ok)
}

fn conns_report(args: &Args, cfg: &conns::ConnsConfig, r: &conns::ConnsResult) -> ExitCode {
    let ok = r.failed == 0 && r.dropped == 0 && r.opened == cfg.connections as u64;
    let rate = per_sec(r.opened, r.secs);
    let per_conn = match (r.rss_before, r.rss_after) {
        (Some(b), Some(a)) if r.opened > 0 => Some(a.saturating_sub(b) as f64 / r.opened as f64),
        _ => None,
    };
    let mut s = format!(
        "connections {} (MQTT {}): opened {} failed {} in {:.2} s ({} conn/s), {} closed by the broker while held {:.1} s\n",
        cfg.connections,
        if args.protocol == 5 { "5.0" } else { "3.1.1" },
        r.opened,
        r.failed,
        r.secs,
        si(rate as u64),
        r.dropped,
        cfg.hold.as_secs_f64()
    );
    match (r.rss_before, r.rss_after, per_conn) {
        (Some(b), Some(a), Some(p)) => {
            s += &format!(
                "  broker RSS {:.1} MiB -> {:.1} MiB: {:.0} B per connection\n",
                b as f64 / 1048576.0,
                a as f64 / 1048576.0,
                p
            )
        }
        _ => s += "  broker RSS: unknown (pass --broker-pid)\n",
    }
    for e in &r.errors {
        s += &format!("  error: {e}\n");
    }
    s += &format!("  result: {}\n", if ok { "ok" } else { "FAILED" });
    let mut json = Json::default();
    common(&mut json, args, "connections");
    json.field("connections", Value::U(cfg.connections as u64))
        .field("opened", Value::U(r.opened))
        .field("failed", Value::U(r.failed))
        .field("dropped", Value::U(r.dropped))
        .field("secs", Value::F(r.secs))
        .field("rate", Value::F(rate))
        .field("rss_before", Value::U(r.rss_before.unwrap_or(0)))
        .field("rss_after", Value::U(r.rss_after.unwrap_or(0)))
        .field(
            "bytes_per_conn",
            per_conn.map_or(Value::F(f64::NAN), Value::F),
        )
        .field("errors", Value::U(r.errors.len() as u64))
        .field(
            "error",
            Value::Str(r.errors.first().cloned().unwrap_or_default()),
        )
        .field("ok", Value::B(ok));
    emit(args, &s, &json);
    exit(ok)
}
