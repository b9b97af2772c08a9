//! Publishes messages, like `mosquitto_pub`; exits 0 only when every message was acknowledged
//! as its QoS requires.
//!
//! `publisher --topic a/b --message hello --qos 1 --count 10 --interval-ms 100`
//! `publisher -L mqtts://broker.example.com/a/b --cafile ca.pem -m hello` (TLS, by host name)

mod cli;

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use tinymqtt::client::ClientConfig;
use tinymqtt::codec::{Publish, Will};
use tinymqtt::{ByteStr, QoS, TopicName};

/// Publish MQTT messages.
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
    /// The topic to publish to (or the path of `-L`).
    #[arg(short = 't', long, required_unless_present = "url_topic")]
    topic: Option<String>,
    /// The payload.
    #[arg(short = 'm', long, required_unless_present = "null_message")]
    message: Option<String>,
    /// Send an empty payload (with `--retain`, clears the retained message), as mosquitto_pub -n.
    #[arg(short = 'n', long, conflicts_with = "message")]
    null_message: bool,
    /// The QoS: 0, 1 or 2.
    #[arg(short = 'q', long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Publish as retained.
    #[arg(short = 'r', long)]
    retain: bool,
    /// How many times to publish the message (mosquitto_pub's `--repeat` is an alias).
    #[arg(short = 'C', long, visible_alias = "repeat", default_value_t = 1)]
    count: u64,
    /// Pause between messages, in milliseconds.
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
    /// The protocol version.
    #[arg(short = 'V', long, value_enum, default_value = "3.1.1")]
    protocol: cli::Protocol,
    /// The client identifier (default: tinymqtt-pub-PID).
    #[arg(short = 'i', long)]
    client_id: Option<String>,
    /// The user name.
    #[arg(short = 'u', long)]
    username: Option<String>,
    /// The password.
    #[arg(short = 'P', long)]
    password: Option<String>,
    /// The will's topic.
    #[arg(long, requires = "will_message")]
    will_topic: Option<String>,
    /// The will's payload.
    #[arg(long, requires = "will_topic")]
    will_message: Option<String>,
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
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("publisher: {e}");
            ExitCode::FAILURE
        }
    }
}

fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Publishes every message; `Ok(false)` when one was refused.
fn run(args: &Args) -> Result<bool, Box<dyn std::error::Error>> {
    let id = args
        .client_id
        .clone()
        .unwrap_or_else(|| format!("tinymqtt-pub-{}", std::process::id()));
    let mut config = ClientConfig::new(args.protocol.into(), ByteStr::try_from(id)?);
    config.reconnect = None;
    config.username = args.username.clone().map(ByteStr::try_from).transpose()?;
    config.password = args.password.clone().map(Bytes::from);
    if let (Some(t), Some(m)) = (&args.will_topic, &args.will_message) {
        config.will = Some(Will {
            topic: TopicName::new(t)?,
            payload: Bytes::from(m.clone()),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        });
    }
    let (endpoint, from_url) = args.connection.endpoint()?;
    if config.username.is_none() {
        config.username = from_url.username.map(ByteStr::try_from).transpose()?;
    }
    if config.password.is_none() {
        config.password = from_url.password.map(Bytes::from);
    }
    let topic = args
        .topic
        .clone()
        .or(from_url.topic)
        .ok_or("no topic (-t, or the path of -L)")?;
    let topic = TopicName::new(&topic)?;
    let shown = endpoint.to_string();
    let (client, _events) = cli::AnyClient::connect(args.runtime, endpoint, config)?;
    tracing::info!(endpoint = %shown, "connected");
    let mut pending = Vec::new();
    for i in 0..args.count {
        if i > 0 && args.interval_ms > 0 {
            pause(Duration::from_millis(args.interval_ms));
        }
        let mut p = Publish::new(
            topic.clone(),
            Bytes::from(args.message.clone().unwrap_or_default()),
        );
        p.qos = qos(args.qos);
        p.retain = args.retain;
        pending.push(client.publish(p)?);
    }
    let mut ok = true;
    for (i, p) in pending.into_iter().enumerate() {
        match p.wait() {
            Ok(ack) => {
                tracing::debug!(n = i, code = ?ack.reason_code, "acknowledged");
            }
            Err(tinymqtt::runtimes::Error::PublishRefused(ack)) => {
                tracing::error!(n = i, code = ?ack.reason_code, "refused");
                ok = false;
            }
            Err(e) => {
                tracing::error!(n = i, "not acknowledged: {e}");
                ok = false;
            }
        }
    }
    client.disconnect()?;
    Ok(ok)
}

#[allow(clippy::disallowed_methods)]
fn pause(d: Duration) {
    std::thread::sleep(d);
}
