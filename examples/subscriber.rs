//! Subscribes and prints each message as `TOPIC PAYLOAD` on one line of stdout, like
//! `mosquitto_sub -v`; logs go to stderr.
//!
//! `subscriber --topic 'a/#' --topic b --qos 1 --count 10`
//! `subscriber --url wss://broker.example.com/mqtt --cafile ca.pem -t 'a/#'` (WebSocket over TLS)

mod cli;

use std::io::Write;
use std::process::ExitCode;

use bytes::Bytes;
use clap::Parser;
use tinymqtt::client::{ClientConfig, Event};
use tinymqtt::codec::Subscription;
use tinymqtt::{ByteStr, QoS, TopicFilter};

/// Subscribe to MQTT topics and print what arrives.
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
    /// Where to connect, and TLS.
    #[command(flatten)]
    connection: cli::transport::Connection,
    /// A topic filter (repeatable; or the path of `-L`).
    #[arg(short = 't', long, required_unless_present = "url_topic")]
    topic: Vec<String>,
    /// The QoS to subscribe with: 0, 1 or 2.
    #[arg(short = 'q', long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Exit after this many messages.
    #[arg(short = 'C', long)]
    count: Option<u64>,
    /// The protocol version.
    #[arg(short = 'V', long, value_enum, default_value = "3.1.1")]
    protocol: cli::Protocol,
    /// The client identifier (default: tinymqtt-sub-PID).
    #[arg(short = 'i', long)]
    client_id: Option<String>,
    /// Keep the session (clean session / clean start off).
    #[arg(short = 'c', long)]
    no_clean: bool,
    /// MQTT 5 session expiry interval in seconds.
    #[arg(short = 'x', long)]
    session_expiry: Option<u32>,
    /// The user name.
    #[arg(short = 'u', long)]
    username: Option<String>,
    /// The password.
    #[arg(short = 'P', long)]
    password: Option<String>,
    /// The runtime.
    #[arg(long, value_enum, default_value = "tokio")]
    runtime: cli::Runtime,
    /// The log filter (stderr).
    #[arg(long, default_value = "warn")]
    log_level: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let _logs = cli::init_logs(&args.log_level);
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("subscriber: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let id = args
        .client_id
        .clone()
        .unwrap_or_else(|| format!("tinymqtt-sub-{}", std::process::id()));
    let mut config = ClientConfig::new(args.protocol.into(), ByteStr::try_from(id)?);
    config.clean_start = !args.no_clean;
    config.properties.session_expiry_interval = args.session_expiry;
    config.username = args.username.clone().map(ByteStr::try_from).transpose()?;
    config.password = args.password.clone().map(Bytes::from);
    let qos = match args.qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    };
    let (endpoint, from_url) = args.connection.endpoint()?;
    if config.username.is_none() {
        config.username = from_url.username.map(ByteStr::try_from).transpose()?;
    }
    if config.password.is_none() {
        config.password = from_url.password.map(Bytes::from);
    }
    let topics: Vec<String> = args.topic.iter().cloned().chain(from_url.topic).collect();
    let filters = topics
        .iter()
        .map(|t| Ok(Subscription::new(TopicFilter::new(t)?, qos)))
        .collect::<Result<Vec<_>, tinymqtt::InvalidTopic>>()?;
    let addr = endpoint.to_string();
    let (client, events) = cli::AnyClient::connect(args.runtime, endpoint, config)?;
    // A refused filter is an error (`Error::SubscribeRefused`).
    client.subscribe(filters)?;
    tracing::info!(%addr, topics = ?topics, "subscribed");
    if args.count == Some(0) {
        client.disconnect()?;
        return Ok(());
    }
    let mut seen = 0u64;
    let stdout = std::io::stdout();
    while let Some(event) = events.recv() {
        match event {
            Event::Message(m) => {
                let p = m.publish;
                let mut out = stdout.lock();
                writeln!(out, "{} {}", p.topic, String::from_utf8_lossy(&p.payload))?;
                out.flush()?;
                seen += 1;
                if args.count.is_some_and(|n| seen >= n) {
                    client.disconnect()?;
                    return Ok(());
                }
            }
            Event::Disconnected { reason, .. } => {
                tracing::warn!(code = ?reason.reason_code, error = ?reason.error, "disconnected");
            }
            Event::Reconnected {
                session_present, ..
            } => {
                tracing::info!(session_present, "reconnected");
            }
            // The automatic re-subscription after a reconnect.
            Event::Subscribed { reason_codes, .. } => {
                if reason_codes.iter().any(|c| c.is_error()) {
                    tracing::warn!(?reason_codes, "re-subscription refused");
                } else {
                    tracing::info!(?reason_codes, "re-subscribed");
                }
            }
            _ => {}
        }
    }
    Err("the connection ended".into())
}
