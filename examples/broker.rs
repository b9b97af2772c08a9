//! An MQTT broker: `broker --host 127.0.0.1 --port 1883 [--config FILE] [--runtime tokio]`.
//!
//! Reads `help`, `status` (with the connections of each listener), `reload` and `stop` on
//! stdin; stops cleanly on Ctrl+C or SIGTERM (DISCONNECT 0x8B to MQTT 5 clients, no wills);
//! `reload` and SIGHUP read the password and ACL files and the TLS certificates again
//! (connected clients keep their sessions and meet the new rules at their next publish or
//! subscription; new connections get the new certificates). `broker --check-config FILE` checks a config file (and
//! the password and ACL files it names) and exits; `broker passwd FILE USER [--password P]`
//! adds or changes a user in a Mosquitto password file (the password is read from stdin
//! without `--password`). The TOML config file uses mosquitto.conf's names (every key
//! optional; relative paths are relative to the config file):
//!
//! ```toml
//! listeners = ["127.0.0.1:1883", "127.0.0.1:1884"]   # replaces --host/--port
//! allow_anonymous = false        # the default with a password_file (true without)
//! use_username_as_clientid = false # the user name is the client id (no user name: refused)
//! allow_takeover_by_other_user = false # another user may take a session over (Mosquitto)
//! password_file = "passwd"         # mosquitto_passwd's format
//! acl_file = "acl"                 # Mosquitto's acl_file format
//! max_connections = -1             # -1: no limit
//! max_queued_messages = 1000       # per session; 0: no limit
//! max_queued_bytes = 67108864      # per session; 0: no limit
//! max_inflight_messages = 20       # towards 3.1.x clients; 0: no limit
//! message_size_limit = 1048576     # the largest packet; 0: MQTT's maximum
//! max_packet_size = 1048576        # the same; with both, the smaller wins
//! max_keepalive = 65535
//! max_topic_alias = 10
//! sys_interval = 10                # seconds; 0 turns $SYS off
//! persistence_location = "data"    # where state is kept across restarts
//!                                  # (or persistence = "data"; persistence = false: off)
//! fsync = "always"                 # "always": acknowledge only what is synced to disk;
//!                                  # "interval": acknowledge at once, sync periodically
//! autosave_interval = 1            # seconds between syncs with fsync = "interval"
//!
//! [[listener]]                     # one table per listener, beside `listeners`
//! bind = "0.0.0.0:8883"
//! protocol = "mqtt"                # or "websockets"
//! certfile = "server.pem"          # TLS when certfile + keyfile are given
//! keyfile = "server.key"
//! cafile = "ca.pem"                # client certificates are checked against it
//! require_certificate = false
//! use_identity_as_username = false # the certificate's CN becomes the user name
//!
//! [limits]                         # what mosquitto.conf has no name for
//! receive_maximum = 100
//! max_client_id_len = 65535
//! max_subscriptions_per_client = 10000
//! connect_timeout_secs = 10
//! max_outbound_bytes = 8388608     # a connection queued more is closed as too slow
//! ```

mod cli;
#[path = "broker_config/mod.rs"]
mod config;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use tinymqtt::broker::{BrokerEvent, DeniedAction};
use tinymqtt::runtimes::access::{set_password, write_private, AccessFiles, PasswordFile};
use tinymqtt::runtimes::driver::transport::{ListenerConfig, ListenerStats, Reloader};
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
    /// The log filter (stderr): error, warn, info, debug, trace.
    #[arg(long, default_value = "info")]
    log_level: String,
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
    cli::init_logs(&args.log_level);
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
        (None, None) => run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("broker: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut settings = match &args.config {
        Some(path) => config::Settings::load(path)?,
        None => config::Settings::defaults(),
    };
    for line in &settings.summary {
        tracing::info!("{line}");
    }
    for line in &settings.warnings {
        tracing::warn!("{line}");
    }
    if let Some(f) = args.fsync {
        settings.set_fsync(matches!(f, FsyncArg::Interval));
    }
    let broker = settings.broker();
    let mut options = std::mem::take(&mut settings.options);
    options.persistence = args
        .persistence
        .clone()
        .or_else(|| settings.persistence_location.take());
    if let Some(dir) = &options.persistence {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("persistence folder {}: {e}", dir.display()))?;
        tracing::info!(
            "persistence in {} (fsync {:?})",
            dir.display(),
            options.fsync
        );
    }
    options.on_event = Some(std::sync::Arc::new(log_event));
    options.on_transport_error = Some(std::sync::Arc::new(|e| {
        tracing::warn!("transport refused: {e}");
    }));
    let listeners = match settings.listeners.take() {
        Some(list) => list,
        None => vec![ListenerConfig::plain(cli::resolve(&args.host, args.port)?)],
    };
    let running = cli::start_broker(args.runtime, broker, options, &listeners)?;
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
        let files = settings.access.clone();
        let reloader = running.reloader.clone();
        on_signals(shutdown, move || reload(files.as_deref(), &reloader))?;
    }
    #[cfg(not(unix))]
    ctrlc::set_handler(shutdown)?;
    let (handle, reloader) = (running.handle.clone(), running.reloader.clone());
    let listeners = running.listeners.clone();
    let files = settings.access.clone();
    std::thread::spawn(move || console(&handle, files.as_deref(), &reloader, &listeners));
    running
        .thread
        .join()
        .map_err(|_| "the broker thread panicked")?;
    tracing::info!("stopped");
    Ok(())
}

/// `--check-config`: loads everything the file names, says what is wrong or what was loaded.
fn check_config(path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let settings = config::Settings::load(path)?;
    println!("{}: ok", path.display());
    for line in &settings.summary {
        println!("  {line}");
    }
    for line in &settings.warnings {
        println!("  warning: {line}");
    }
    Ok(())
}

/// `passwd FILE USER`: sets the user's password in the file, creating it if missing.
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
    if password.is_empty() {
        return Err("empty password".into());
    }
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", file.display()).into()),
    };
    // A file that does not parse is not rewritten: its other lines would be carried along.
    PasswordFile::parse(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let out = set_password(&text, user, &password)?;
    write_private(file, &out).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
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

/// Logs what the broker reports: connections, closes, and every refusal at `info` with the
/// client id, the user name and why (never a password).
fn log_event(event: &BrokerEvent) {
    match event {
        BrokerEvent::Denied { conn, denied } => {
            let user = denied.username.as_ref().map_or("", |u| u.as_str());
            let client_id = denied.client_id.as_str();
            let reason = denied.reason;
            match &denied.action {
                DeniedAction::Connect(code) => tracing::info!(
                    ?conn, client_id, user, code = %code, reason, "connection refused"
                ),
                DeniedAction::Publish(topic) => tracing::info!(
                    ?conn,
                    client_id,
                    user,
                    topic = topic.as_str(),
                    reason,
                    "publish denied"
                ),
                DeniedAction::Subscribe(filter) => tracing::info!(
                    ?conn,
                    client_id,
                    user,
                    filter = filter.as_str(),
                    reason,
                    "subscribe denied"
                ),
                other => tracing::info!(?conn, client_id, user, ?other, reason, "denied"),
            }
        }
        BrokerEvent::Connected {
            conn, client_id, ..
        } => {
            tracing::info!(?conn, client_id = %client_id, "client connected");
        }
        BrokerEvent::Closed { conn, reason } => {
            tracing::info!(?conn, code = ?reason.reason_code, initiator = ?reason.initiator, error = ?reason.error, "connection closed");
        }
        other => tracing::debug!(?other, "broker event"),
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

/// Reads `help`, `status`, `reload` and `stop` from stdin; the end of stdin only ends the
/// console.
fn console(
    handle: &BrokerHandle,
    files: Option<&AccessFiles>,
    reloader: &Reloader,
    listeners: &ListenerStats,
) {
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { return };
        match line.trim() {
            "" => {}
            "help" => println!("commands: help, status, reload, stop"),
            "reload" => reload(files, reloader),
            "status" => {
                match handle.stats_blocking() {
                    Ok(s) => println!(
                        "clients {} sessions {} subscriptions {} retained {} messages received {} sent {} dropped {} denied {} bytes received {} sent {}",
                        s.connections,
                        s.sessions,
                        s.subscriptions,
                        s.retained,
                        s.messages_received,
                        s.messages_sent,
                        s.dropped,
                        s.publishes_denied,
                        s.bytes_received,
                        s.bytes_sent
                    ),
                    Err(e) => println!("status unavailable: {e}"),
                }
                for (addr, n) in listeners.connections() {
                    println!("listener {addr}: {n} connections");
                }
            }
            "stop" => {
                tracing::info!("stop: shutting down");
                handle.shutdown();
                return;
            }
            other => {
                println!("unknown command {other:?}; commands: help, status, reload, stop")
            }
        }
    }
}
