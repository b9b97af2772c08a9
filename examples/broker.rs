//! An MQTT broker: `broker --host 127.0.0.1 --port 1883 [--config FILE] [--runtime tokio]`.
//!
//! Reads `help`, `status` (with the connections of each listener), `clients`, `sessions`
//! (the offline ones), `subscriptions ID`, `kick ID` (DISCONNECT 0x98 to an MQTT 5 client),
//! `remove ID` (an offline session), `reload` and `stop` on stdin; stops cleanly on Ctrl+C or SIGTERM (DISCONNECT 0x8B to MQTT 5 clients, no wills);
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
//! ```

mod cli;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    options.on_event = Some(std::sync::Arc::new(log_event));
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
        BrokerEvent::Connected { conn, client_id } => {
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

/// What the console takes.
const COMMANDS: &str =
    "commands: help, status, clients, sessions, subscriptions ID, kick ID, remove ID, reload, stop";

/// Reads the [`COMMANDS`] from stdin; the end of stdin only ends the console.
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
            "help" => println!("{COMMANDS}"),
            "clients" => clients(handle),
            "sessions" => offline_sessions(handle),
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
            other => match other.split_once(' ') {
                Some(("subscriptions", id)) => subscriptions(handle, id.trim()),
                Some(("kick", id)) => kick(handle, id.trim()),
                Some(("remove", id)) => remove(handle, id.trim()),
                _ => println!("unknown command {other:?}; {COMMANDS}"),
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
