//! An MQTT broker: `broker --host 127.0.0.1 --port 1883 [--config FILE] [--runtime tokio]`.
//!
//! Reads `help`, `status` and `stop` on stdin; stops cleanly on Ctrl+C or SIGTERM (DISCONNECT
//! 0x8B to MQTT 5 clients, no wills). The TOML config file looks like this (every key optional):
//!
//! ```toml
//! listeners = ["127.0.0.1:1883", "127.0.0.1:1884"]   # replaces --host/--port
//! allow_anonymous = true
//!
//! [limits]
//! max_packet_size = 1048576
//! receive_maximum = 100
//! max_inflight_v3 = 20
//! max_keep_alive = 65535
//! max_client_id_len = 65535
//! max_subscriptions_per_client = 10000
//! max_queued_messages = 1000
//! max_queued_bytes = 67108864
//! topic_alias_maximum = 10
//! connect_timeout_secs = 10
//! sys_interval_secs = 10        # 0 turns $SYS off
//! max_outbound_bytes = 8388608  # a connection queued more is closed as too slow
//! ```

mod cli;

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use tinymqtt::broker::{Broker, BrokerConfig, BrokerEvent};
use tinymqtt::runtimes::{BrokerHandle, BrokerOptions};

/// Run an MQTT 3.1 / 3.1.1 / 5.0 broker.
#[derive(Debug, Parser)]
#[command(version)]
#[command(disable_help_flag = true, disable_version_flag = true)]
struct Args {
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Print the version.
    #[arg(long, action = clap::ArgAction::Version)]
    version: Option<bool>,
    /// The address to listen on.
    #[arg(short = 'h', long, default_value = "127.0.0.1")]
    host: String,
    /// The port to listen on (0 picks a free one).
    #[arg(short = 'p', long, default_value_t = 1883)]
    port: u16,
    /// A TOML config file.
    #[arg(short = 'c', long)]
    config: Option<std::path::PathBuf>,
    /// The log filter (stderr): error, warn, info, debug, trace.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// The runtime.
    #[arg(long, value_enum, default_value = "tokio")]
    runtime: cli::Runtime,
}

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listeners: Option<Vec<String>>,
    allow_anonymous: Option<bool>,
    #[serde(default)]
    limits: Limits,
}

/// The `[limits]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Limits {
    max_packet_size: Option<u32>,
    receive_maximum: Option<u16>,
    max_inflight_v3: Option<u16>,
    max_keep_alive: Option<u16>,
    max_client_id_len: Option<usize>,
    max_subscriptions_per_client: Option<usize>,
    max_queued_messages: Option<usize>,
    max_queued_bytes: Option<usize>,
    topic_alias_maximum: Option<u16>,
    connect_timeout_secs: Option<u64>,
    sys_interval_secs: Option<u64>,
    max_outbound_bytes: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logs(&args.log_level);
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("broker: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let (config, mut options) = settings(&file);
    options.on_event = Some(std::sync::Arc::new(log_event));
    let addrs: Vec<SocketAddr> = match &file.listeners {
        Some(list) => list
            .iter()
            .map(|l| l.parse().map_err(|e| format!("listener {l:?}: {e}")))
            .collect::<Result<_, _>>()?,
        None => vec![cli::resolve(&args.host, args.port)?],
    };
    let running = cli::start_broker(args.runtime, Broker::new(config), options, &addrs)?;
    for a in &running.addrs {
        tracing::info!(runtime = ?args.runtime, "listening on {a}");
    }
    let handle = running.handle.clone();
    ctrlc::set_handler(move || {
        tracing::info!("signal: shutting down");
        handle.shutdown();
    })?;
    let handle = running.handle.clone();
    std::thread::spawn(move || console(&handle));
    running
        .thread
        .join()
        .map_err(|_| "the broker thread panicked")?;
    tracing::info!("stopped");
    Ok(())
}

/// Logs what the broker reports.
fn log_event(event: &BrokerEvent) {
    match event {
        BrokerEvent::Connected { conn, client_id } => {
            tracing::info!(?conn, client_id = %client_id, "client connected");
        }
        BrokerEvent::Closed { conn, reason } => {
            tracing::info!(?conn, code = ?reason.reason_code, initiator = ?reason.initiator, error = ?reason.error, "connection closed");
        }
        other => tracing::debug!(?other, "broker event"),
    }
}

/// The broker's settings from the file's keys over the defaults.
fn settings(file: &FileConfig) -> (BrokerConfig, BrokerOptions) {
    let mut c = BrokerConfig::default();
    let mut o = BrokerOptions::default();
    let l = &file.limits;
    if let Some(v) = file.allow_anonymous {
        c.allow_anonymous = v;
    }
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = l.$field { c.$field = v; } )* };
    }
    set!(
        max_packet_size,
        receive_maximum,
        max_inflight_v3,
        max_keep_alive,
        max_client_id_len,
        max_subscriptions_per_client,
        max_queued_messages,
        max_queued_bytes,
        topic_alias_maximum
    );
    if let Some(s) = l.connect_timeout_secs {
        c.connect_timeout = Duration::from_secs(s);
    }
    if let Some(s) = l.sys_interval_secs {
        c.sys_interval = (s > 0).then(|| Duration::from_secs(s));
    }
    if let Some(b) = l.max_outbound_bytes {
        o.max_outbound_bytes = b;
    }
    (c, o)
}

/// Reads `help`, `status` and `stop` from stdin; the end of stdin only ends the console.
fn console(handle: &BrokerHandle) {
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { return };
        match line.trim() {
            "" => {}
            "help" => println!("commands: help, status, stop"),
            "status" => match handle.stats_blocking() {
                Ok(s) => println!(
                    "clients {} sessions {} subscriptions {} retained {} messages received {} sent {} dropped {} bytes received {} sent {}",
                    s.connections,
                    s.sessions,
                    s.subscriptions,
                    s.retained,
                    s.messages_received,
                    s.messages_sent,
                    s.dropped,
                    s.bytes_received,
                    s.bytes_sent
                ),
                Err(e) => println!("status unavailable: {e}"),
            },
            "stop" => {
                tracing::info!("stop: shutting down");
                handle.shutdown();
                return;
            }
            other => println!("unknown command {other:?}; commands: help, status, stop"),
        }
    }
}
