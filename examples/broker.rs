//! An MQTT broker: `broker --host 127.0.0.1 --port 1883 [--config FILE] [--runtime tokio]`.
//!
//! Reads `help`, `status` (a table of the counters, with the connections of each listener),
//! `log LEVEL` (the log filter, changed while it runs), `clients`, `sessions` (the offline
//! ones), `subscriptions ID`, `kick ID` (DISCONNECT 0x98 to an MQTT 5 client), `remove ID` (an
//! offline session), `reload` and `stop` on stdin; stops cleanly on Ctrl+C or SIGTERM
//! (DISCONNECT 0x8B to MQTT 5 clients, no wills);
//! `reload` and SIGHUP read the password and ACL files and the TLS certificates again
//! (connected clients keep their sessions and meet the new rules at their next publish or
//! subscription; new connections get the new certificates). `broker --check-config FILE` checks a config file (and
//! the password and ACL files it names) and exits; `broker passwd FILE USER [--password P]`
//! adds or changes a user in a Mosquitto password file (the password is read from stdin
//! without `--password`). The TOML config file uses mosquitto.conf's names (every key
//! optional; relative paths are relative to the config file); the keys and their checks are
//! the library's `tinymqtt::runtimes::settings::Settings`:
//!
//! ```toml
//! listeners = ["127.0.0.1:1883"]   # replaces --host/--port
//! password_file = "passwd"         # mosquitto_passwd's format
//! acl_file = "acl"                 # Mosquitto's acl_file format
//! persistence_location = "data"    # overridden by --persistence
//! fsync = "always"                 # overridden by --fsync
//!
//! [cluster]                        # a node of a cluster over NATS (built with `cluster`)
//! nats = ["nats://127.0.0.1:4222"] # overridden by --cluster-nats
//! node_id = "a"                    # overridden by --cluster-node
//! ```

mod cli;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use tinymqtt::broker::{BrokerEvent, DeniedAction};
use tinymqtt::runtimes::access::{set_password_in_file, AccessFiles};
use tinymqtt::runtimes::driver::transport::{ListenerConfig, ListenerStats, Reloader};
use tinymqtt::runtimes::settings::Settings;
use tinymqtt::runtimes::BrokerHandle;

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
    config: Option<PathBuf>,
    /// The log filter (stderr): error, warn, info, debug, trace; `log LEVEL` on stdin
    /// changes it while the broker runs.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// How log lines look: text, or one JSON object per line (for log shippers).
    #[arg(long, value_enum, default_value = "text")]
    log_format: cli::LogFormat,
    /// Serve Prometheus metrics on `http://ADDR/metrics` (overrides the config file's
    /// `metrics_listener`).
    #[arg(long, value_name = "ADDR")]
    metrics_listener: Option<std::net::SocketAddr>,
    /// The runtime.
    #[arg(long, value_enum, default_value = "tokio")]
    runtime: cli::Runtime,
    /// Keep retained messages and persistent sessions in this folder across restarts
    /// (overrides the config file's `persistence_location`).
    #[arg(long, value_name = "DIR")]
    persistence: Option<PathBuf>,
    /// When the store reaches the disk: `always` acknowledges only what is synced; `interval`
    /// acknowledges at once and syncs every `autosave_interval` (overrides the config file's
    /// `fsync`).
    #[arg(long, value_enum, value_name = "POLICY")]
    fsync: Option<FsyncArg>,
    /// Make this broker a node of a cluster over the NATS server at this URL (repeat for
    /// more; overrides the config file's `[cluster] nats`; needs `--cluster-node`, or a
    /// `[cluster]` table, and the tokio runtime).
    #[cfg(feature = "cluster")]
    #[arg(long, value_name = "URL")]
    cluster_nats: Vec<String>,
    /// This node's id in the cluster (overrides the config file's `[cluster] node_id`).
    #[cfg(feature = "cluster")]
    #[arg(long, value_name = "ID")]
    cluster_node: Option<String>,
    /// Check this config file (and the password and ACL files it names), then exit.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    /// A tool instead of the broker.
    #[command(subcommand)]
    command: Option<Command>,
}

/// `--fsync`'s values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FsyncArg {
    /// Acknowledge only what is synced to disk.
    Always,
    /// Acknowledge at once; sync every `autosave_interval` (1 s by default).
    Interval,
}

/// The tools beside the broker.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Add or change a user in a Mosquitto password file (created if missing).
    Passwd {
        /// The password file.
        file: PathBuf,
        /// The user name.
        user: String,
        /// The password (without it, the first line of stdin).
        #[arg(long)]
        password: Option<String>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let log = cli::init_logs_as(&args.log_level, args.log_format);
    let result = match (&args.command, &args.check_config) {
        (
            Some(Command::Passwd {
                file,
                user,
                password,
            }),
            _,
        ) => passwd(file, user, password.as_deref()),
        (None, Some(path)) => check_config(path),
        (None, None) => run(&args, log),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("broker: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args, log: cli::LogLevel) -> Result<(), Box<dyn std::error::Error>> {
    let mut settings = match &args.config {
        Some(path) => Settings::load(path)?,
        None => Settings::default(),
    };
    for line in settings.summary() {
        tracing::info!("{line}");
    }
    for line in settings.warnings() {
        tracing::warn!("{line}");
    }
    if let Some(f) = args.fsync {
        settings.set_fsync(matches!(f, FsyncArg::Interval));
    }
    if let Some(dir) = &args.persistence {
        settings.options.persistence = Some(dir.clone());
    }
    #[cfg(feature = "cluster")]
    cluster_flags(args, &mut settings)?;
    let router = settings.router();
    let mut options = settings.options.clone();
    if let Some(dir) = &options.persistence {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("persistence folder {}: {e}", dir.display()))?;
        tracing::info!(
            "persistence in {} (fsync {:?})",
            dir.display(),
            options.fsync
        );
    }
    if args.metrics_listener.is_some() {
        options.metrics_listener = args.metrics_listener;
    }
    if let Some(addr) = options.metrics_listener {
        tracing::info!("metrics on http://{addr}/metrics");
    }
    let connected = std::sync::Mutex::new(std::collections::HashMap::new());
    options.on_event = Some(std::sync::Arc::new(move |e: &BrokerEvent| {
        log_event(e, &connected)
    }));
    options.on_transport_error = Some(std::sync::Arc::new(|e| {
        tracing::warn!("transport refused: {e}");
    }));
    let listeners = match settings.listeners.take() {
        Some(list) => list,
        None => vec![ListenerConfig::plain(cli::resolve(&args.host, args.port)?)],
    };
    let running = cli::start_broker(args.runtime, router, options, &listeners)?;
    for a in &running.addrs {
        tracing::info!(runtime = ?args.runtime, "listening on {a}");
    }
    let handle = running.handle.clone();
    let shutdown = move || {
        tracing::info!("signal: shutting down");
        handle.shutdown();
    };
    // On Unix one thread takes SIGINT, SIGTERM and SIGHUP (ctrlc would take SIGHUP as a stop).
    #[cfg(unix)]
    {
        let files = settings.access().cloned();
        let reloader = running.reloader.clone();
        on_signals(shutdown, move || reload(files.as_deref(), &reloader))?;
    }
    #[cfg(not(unix))]
    ctrlc::set_handler(shutdown)?;
    let (handle, reloader) = (running.handle.clone(), running.reloader.clone());
    let listeners = running.listeners.clone();
    let files = settings.access().cloned();
    std::thread::spawn(move || console(&handle, files.as_deref(), &reloader, &listeners, &log));
    running
        .thread
        .join()
        .map_err(|_| "the broker thread panicked")?;
    tracing::info!("stopped");
    Ok(())
}

/// `--cluster-nats` and `--cluster-node`, over the config file's `[cluster]`.
#[cfg(feature = "cluster")]
fn cluster_flags(args: &Args, settings: &mut Settings) -> Result<(), Box<dyn std::error::Error>> {
    use tinymqtt::runtimes::cluster::ClusterConfig;
    if args.cluster_nats.is_empty() && args.cluster_node.is_none() {
        return Ok(());
    }
    let mut c = match settings.options.cluster.take() {
        Some(c) => c,
        None => {
            let node = args
                .cluster_node
                .clone()
                .ok_or("--cluster-nats needs --cluster-node (or a [cluster] node_id)")?;
            ClusterConfig::new(Vec::new(), node)
        }
    };
    if !args.cluster_nats.is_empty() {
        c.nats = args.cluster_nats.clone();
    }
    if let Some(node) = &args.cluster_node {
        c.node_id = node.clone();
    }
    c.check()?;
    tracing::info!("cluster node {:?} on NATS {}", c.node_id, c.nats.join(", "));
    settings.config.cluster = true;
    settings.options.cluster = Some(c);
    Ok(())
}

/// `--check-config`: loads everything the file names, says what is wrong or what was loaded.
fn check_config(path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let settings = Settings::load(path)?;
    println!("{}: ok", path.display());
    for line in settings.summary() {
        println!("  {line}");
    }
    for line in settings.warnings() {
        println!("  warning: {line}");
    }
    Ok(())
}

/// `passwd FILE USER`: sets the user's password in the file, creating it if missing (the
/// password from `--password` or the first line of stdin).
fn passwd(
    file: &Path,
    user: &str,
    password: Option<&str>,
) -> Result<(), Box<dyn std::error::Error>> {
    let password = match password {
        Some(p) => p.to_owned(),
        None => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    set_password_in_file(file, user, &password)?;
    Ok(())
}

/// Reads the password and ACL files and the TLS certificates again (the `reload` command,
/// SIGHUP); a file that does not parse leaves what is in use as it was.
fn reload(files: Option<&AccessFiles>, reloader: &Reloader) {
    match files.map(AccessFiles::reload) {
        Some(Ok(())) => tracing::info!(
            users = files.map_or(0, AccessFiles::users),
            "reload: password and ACL files read"
        ),
        Some(Err(e)) => tracing::warn!("reload: {e}; the rules in use are unchanged"),
        None => tracing::info!("reload: no password_file or acl_file"),
    }
    reload_certificates(reloader);
}

/// Calls `stop` on SIGINT or SIGTERM and `hup` on every SIGHUP, from a thread of its own.
#[cfg(unix)]
fn on_signals(
    stop: impl Fn() + Send + 'static,
    hup: impl Fn() + Send + 'static,
) -> std::io::Result<()> {
    use async_signal::{Signal, Signals};
    use smol::stream::StreamExt;
    let mut signals = Signals::new([Signal::Int, Signal::Term, Signal::Hup])?;
    std::thread::spawn(move || {
        smol::block_on(async {
            while let Some(Ok(signal)) = signals.next().await {
                match signal {
                    Signal::Hup => hup(),
                    _ => stop(),
                }
            }
        })
    });
    Ok(())
}

/// When each connection connected, for the duration on its close line.
type Connected = std::sync::Mutex<std::collections::HashMap<tinymqtt::broker::ConnId, Instant>>;

/// Logs what the broker reports: one line per connect (client id, user, listener, protocol,
/// keep-alive, clean start), per close (reason code, initiator, error, duration) and per
/// refusal (reason code, client id, user; never a password).
fn log_event(event: &BrokerEvent, connected: &Connected) {
    match event {
        BrokerEvent::Denied { conn, denied } => {
            let user = denied.username.as_ref().map_or("", |u| u.as_str());
            let client_id = denied.client_id.as_str();
            let reason = denied.reason;
            match &denied.action {
                DeniedAction::Connect(code) => tracing::info!(
                    conn = conn.0,
                    client_id,
                    user,
                    code = format_args!("0x{:02x}", code.as_u8()),
                    reason,
                    "connection refused"
                ),
                DeniedAction::Publish(topic) => tracing::info!(
                    conn = conn.0,
                    client_id,
                    user,
                    topic = topic.as_str(),
                    reason,
                    "publish denied"
                ),
                DeniedAction::Subscribe(filter) => tracing::info!(
                    conn = conn.0,
                    client_id,
                    user,
                    filter = filter.as_str(),
                    reason,
                    "subscribe denied"
                ),
                other => tracing::info!(conn = conn.0, client_id, user, ?other, reason, "denied"),
            }
        }
        BrokerEvent::Connected {
            conn,
            client_id,
            info,
            ..
        } => {
            lock(connected).insert(*conn, clock());
            tracing::info!(
                conn = conn.0,
                client_id = client_id.as_str(),
                user = info.username.as_ref().map_or("", |u| u.as_str()),
                listener = info.listener.as_ref().map_or("", |l| l.as_str()),
                protocol = protocol_name(info.protocol),
                keep_alive = info.keep_alive,
                clean_start = info.clean_start,
                session_present = info.session_present,
                "client connected"
            );
        }
        BrokerEvent::Closed { conn, reason } => {
            let since = lock(connected).remove(conn);
            let duration =
                since.map_or(0.0, |t| clock().saturating_duration_since(t).as_secs_f64());
            let error = reason
                .error
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default();
            tracing::info!(
                conn = conn.0,
                code = format_args!("0x{:02x}", reason.reason_code.as_u8()),
                reason = reason.reason_code.description(),
                initiator = ?reason.initiator,
                error,
                duration_secs = duration,
                connected = since.is_some(),
                "connection closed"
            );
        }
        other => tracing::debug!(?other, "broker event"),
    }
}

/// The map of connect times, whatever a panicking holder left.
fn lock(
    c: &Connected,
) -> std::sync::MutexGuard<'_, std::collections::HashMap<tinymqtt::broker::ConnId, Instant>> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

/// Now, for connection durations in the logs.
#[allow(clippy::disallowed_methods)]
fn clock() -> Instant {
    Instant::now()
}

/// The protocol version as Mosquitto's tools name it.
fn protocol_name(v: tinymqtt::ProtocolVersion) -> &'static str {
    match v {
        tinymqtt::ProtocolVersion::V3_1 => "3.1",
        tinymqtt::ProtocolVersion::V3_1_1 => "3.1.1",
        _ => "5",
    }
}

/// `reload`: the TLS listeners' certificates are read again (new connections get them); a
/// file that cannot be used keeps every listener as it was.
fn reload_certificates(reloader: &Reloader) {
    match reloader.reload_certificates() {
        Ok(n) => tracing::info!("reload: certificates of {n} TLS listener(s) read again"),
        Err(e) => tracing::error!("reload: certificates kept as they were: {e}"),
    }
}

/// The console's commands.
const COMMANDS: &str =
    "help, status, log LEVEL, clients, sessions, subscriptions ID, kick ID, remove ID, reload, stop";

/// Reads the [`COMMANDS`] from stdin; the end of stdin only ends the console.
fn console(
    handle: &BrokerHandle,
    files: Option<&AccessFiles>,
    reloader: &Reloader,
    listeners: &ListenerStats,
    log: &cli::LogLevel,
) {
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { return };
        match line.trim() {
            "" => {}
            "help" => println!("commands: {COMMANDS}"),
            "clients" => clients(handle),
            "sessions" => offline_sessions(handle),
            "reload" => reload(files, reloader),
            "status" => match handle.stats_blocking() {
                Ok(s) => print!("{}", status_table(&s, &listeners.connections())),
                Err(e) => println!("status unavailable: {e}"),
            },
            "stop" => {
                tracing::info!("stop: shutting down");
                handle.shutdown();
                return;
            }
            other => match other.split_once(' ') {
                Some(("log", level)) => {
                    let level = level.trim();
                    match log.set(level) {
                        Ok(()) => println!("log level: {level}"),
                        Err(e) => println!("log level {level:?} refused: {e}"),
                    }
                }
                Some(("subscriptions", id)) => subscriptions(handle, id.trim()),
                Some(("kick", id)) => kick(handle, id.trim()),
                Some(("remove", id)) => remove(handle, id.trim()),
                _ => println!("unknown command {other:?}; commands: {COMMANDS}"),
            },
        }
    }
}

/// A client identifier typed on the console.
fn client_id(id: &str) -> Option<tinymqtt::ByteStr> {
    match tinymqtt::ByteStr::try_from(id) {
        Ok(id) if !id.is_empty() => Some(id),
        _ => {
            println!("not a client identifier: {id:?}");
            None
        }
    }
}

/// `clients`: one line per connected client.
fn clients(handle: &BrokerHandle) {
    match handle.clients_blocking() {
        Ok(list) => {
            for c in &list {
                println!(
                    "client {} user {} listener {} protocol {:?} connected {}s ago",
                    c.client_id,
                    c.username.as_ref().map_or("-", |u| u.as_str()),
                    c.listener.as_deref().unwrap_or("-"),
                    c.protocol,
                    c.since.elapsed().as_secs()
                );
            }
            println!("{} client(s)", list.len());
        }
        Err(e) => println!("clients unavailable: {e}"),
    }
}

/// `sessions`: one line per offline session.
fn offline_sessions(handle: &BrokerHandle) {
    match handle.offline_sessions_blocking() {
        Ok(list) => {
            for s in &list {
                println!(
                    "session {} user {} expiry {}s queued {} subscriptions {}",
                    s.client_id,
                    s.username.as_ref().map_or("-", |u| u.as_str()),
                    s.expiry,
                    s.queued,
                    s.subscriptions
                );
            }
            println!("{} offline session(s)", list.len());
        }
        Err(e) => println!("sessions unavailable: {e}"),
    }
}

/// `subscriptions ID`: one line per subscription of that session.
fn subscriptions(handle: &BrokerHandle, id: &str) {
    let Some(id) = client_id(id) else { return };
    match handle.subscriptions_blocking(id.clone()) {
        Ok(list) => {
            for s in &list {
                println!("subscription {} qos {}", s.filter, s.options.qos as u8);
            }
            println!("{} subscription(s) for {id}", list.len());
        }
        Err(e) => println!("subscriptions of {id}: {e}"),
    }
}

/// `kick ID`: DISCONNECT 0x98 (MQTT 5), the session stays.
fn kick(handle: &BrokerHandle, id: &str) {
    let Some(id) = client_id(id) else { return };
    match handle.disconnect_client_blocking(id.clone()) {
        Ok(()) => println!("kicked {id}"),
        Err(e) => println!("kick {id}: {e}"),
    }
}

/// `remove ID`: an offline session goes, with its subscriptions and queue.
fn remove(handle: &BrokerHandle, id: &str) {
    let Some(id) = client_id(id) else { return };
    match handle.remove_session_blocking(id.clone()) {
        Ok(()) => println!("removed session {id}"),
        Err(e) => println!("remove {id}: {e}"),
    }
}

/// The snapshot as a table: one row per figure, by QoS where it has them, then each
/// listener's connections.
fn status_table(
    s: &tinymqtt::broker::BrokerStats,
    listeners: &[(std::net::SocketAddr, usize)],
) -> String {
    use std::fmt::Write;
    use tinymqtt::broker::DropReason;
    use tinymqtt::QoS;
    let q = |c: tinymqtt::broker::ByQoS| {
        let by = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce].map(|q| c.get(q));
        format!(
            "{:>10} {:>10} {:>10} {:>10}",
            c.total(),
            by[0],
            by[1],
            by[2]
        )
    };
    let mut t = String::new();
    let mut row = |name: &str, value: String| {
        let _ = writeln!(t, "  {name:<24} {value}");
    };
    row(
        "",
        format!(
            "{:>10} {:>10} {:>10} {:>10}",
            "total", "qos 0", "qos 1", "qos 2"
        ),
    );
    row("messages received", q(s.publish_received));
    row("messages sent", q(s.publish_sent));
    row("payload bytes received", q(s.publish_received_bytes));
    row("payload bytes sent", q(s.publish_sent_bytes));
    row(
        "connections",
        format!(
            "{:>10} (maximum {}, accepted {})",
            s.connections, s.connections_maximum, s.connections_total
        ),
    );
    row(
        "connects refused",
        format!(
            "{:>10} (auth failures {})",
            s.refused.total(),
            s.refused.auth_failures()
        ),
    );
    for (code, n) in s.refused.iter() {
        row(
            &format!("  0x{:02x} {}", code.as_u8(), code.description()),
            format!("{n:>10}"),
        );
    }
    row(
        "sessions",
        format!(
            "{:>10} (online {}, offline {}, expired {})",
            s.sessions,
            s.sessions_online,
            s.sessions_offline(),
            s.sessions_expired
        ),
    );
    row(
        "subscriptions",
        format!(
            "{:>10} (shared groups {})",
            s.subscriptions, s.shared_groups
        ),
    );
    row(
        "retained",
        format!("{:>10} ({} bytes)", s.retained, s.retained_bytes),
    );
    row("in flight", format!("{:>10}", s.inflight));
    row(
        "queued",
        format!("{:>10} ({} bytes)", s.queued, s.queued_bytes),
    );
    row("dropped", format!("{:>10}", s.dropped_by.total()));
    for r in DropReason::ALL {
        row(
            &format!("  {}", r.as_str()),
            format!("{:>10}", s.dropped_by.get(r)),
        );
    }
    row("bytes received", format!("{:>10}", s.bytes_received));
    row("bytes sent", format!("{:>10}", s.bytes_sent));
    row("memory used", format!("{:>10}", s.memory_used));
    for (addr, n) in listeners {
        let _ = writeln!(t, "listener {addr}: {n} connections");
    }
    t
}
