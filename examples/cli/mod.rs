//! What the example programs share: the runtime choice, logging, and a client or broker on any
//! runtime, driven from the main thread.

// Each program uses part of this module.
#![allow(dead_code)]

pub(crate) mod transport;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::thread::JoinHandle;

use tinymqtt::broker::Router;
use tinymqtt::client::ClientConfig;
use tinymqtt::codec::{Publish, Subscription};
use tinymqtt::runtimes::driver::transport::{Endpoint, ListenerConfig, ListenerStats, Reloader};
use tinymqtt::runtimes::{
    async_std, blocking, smol, tokio, BlockingEvents, BlockingPending, BrokerHandle, BrokerOptions,
    Error, SubAck,
};
use tinymqtt::ProtocolVersion;

/// Which runtime runs the client or broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Runtime {
    /// tokio (multi-threaded).
    Tokio,
    /// smol's global executor.
    Smol,
    /// async-std (discontinued upstream; shares smol's sockets).
    AsyncStd,
    /// std::net and threads.
    Blocking,
}

/// The MQTT protocol version, spelled as mosquitto's tools spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Protocol {
    /// MQTT 3.1.
    #[value(name = "3.1", alias = "mqttv31")]
    V31,
    /// MQTT 3.1.1.
    #[value(name = "3.1.1", alias = "mqttv311")]
    V311,
    /// MQTT 5.0.
    #[value(name = "5", alias = "mqttv5")]
    V5,
}

impl From<Protocol> for ProtocolVersion {
    fn from(p: Protocol) -> ProtocolVersion {
        match p {
            Protocol::V31 => ProtocolVersion::V3_1,
            Protocol::V311 => ProtocolVersion::V3_1_1,
            Protocol::V5 => ProtocolVersion::V5,
        }
    }
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

/// Changes the log filter of a running program (the broker's `log LEVEL`).
#[derive(Clone)]
pub(crate) struct LogLevel(
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>,
);

impl LogLevel {
    /// Uses `level` (a `tracing` filter such as `debug` or `tinymqtt=trace`) from now on.
    pub(crate) fn set(&self, level: &str) -> Result<(), String> {
        let filter = tracing_subscriber::EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        self.0.reload(filter).map_err(|e| e.to_string())
    }
}

/// A program's logging: the handle that changes its level, and the thread that writes its
/// lines, which writes what it still holds when this is dropped (keep it until the end).
#[must_use = "dropping it stops the thread that writes the log lines"]
pub(crate) struct Logs {
    pub(crate) level: LogLevel,
    _writer: tracing_appender::non_blocking::WorkerGuard,
}

/// Logs to stderr at `level` (a `tracing` filter such as `info` or `tinymqtt=debug`).
pub(crate) fn init_logs(level: &str) -> Logs {
    init_logs_as(level, LogFormat::Text)
}

/// [`init_logs`] in `format`; the returned handle changes the level later.
///
/// Lines are formatted where they happen and written by a thread of their own, in batches
/// through a buffer (one write for what came in meanwhile, not one per line): a broker that
/// logs every connect spends its time on connections, not on writes to stderr. None is
/// dropped: a writer that falls 128k lines behind makes the loggers wait. Colours only on a
/// terminal; elsewhere the fields are written without the styling machinery (the same text).
pub(crate) fn init_logs_as(level: &str, format: LogFormat) -> Logs {
    use tracing_subscriber::field::MakeExt;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let terminal = io::IsTerminal::is_terminal(&io::stderr());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("log-writer")
        .finish(io::BufWriter::new(io::stderr()));
    let text = tracing_subscriber::fmt::layer().with_writer(writer.clone());
    match format {
        LogFormat::Text if terminal => registry.with(text.with_ansi(true)).init(),
        LogFormat::Text => {
            // What the default field formatter writes without colours, minus its styles.
            let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
                if field.name() == "message" {
                    write!(w, "{value:?}")
                } else {
                    write!(w, "{field}={value:?}")
                }
            })
            .delimited(" ");
            registry
                .with(text.with_ansi(false).fmt_fields(fields))
                .init()
        }
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(writer),
            )
            .init(),
    }
    Logs {
        level: LogLevel(handle),
        _writer: guard,
    }
}

/// The first address `host:port` resolves to.
pub(crate) fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host} did not resolve")))
}

/// A client on the chosen runtime.
pub(crate) enum AnyClient {
    Tokio(tokio::Client, ::tokio::runtime::Runtime),
    Smol(smol::Client),
    AsyncStd(async_std::Client),
    Blocking(blocking::Client),
}

/// Runs a runtime-agnostic future (the client's command side only waits on channels).
fn wait<F: std::future::Future>(f: F) -> F::Output {
    futures_lite::future::block_on(f)
}

impl AnyClient {
    /// Connects on `runtime` and returns once the server accepted the connection.
    pub(crate) fn connect(
        runtime: Runtime,
        endpoint: Endpoint,
        config: ClientConfig,
    ) -> Result<(AnyClient, BlockingEvents), Error> {
        let e = endpoint;
        Ok(match runtime {
            Runtime::Tokio => {
                let rt = ::tokio::runtime::Runtime::new()?;
                let (c, ev) = rt.block_on(tokio::Client::connect_to(e, config))?;
                (AnyClient::Tokio(c, rt), ev.into_blocking())
            }
            Runtime::Smol => {
                let (c, ev) = ::smol::block_on(smol::Client::connect_to(e, config))?;
                (AnyClient::Smol(c), ev.into_blocking())
            }
            Runtime::AsyncStd => {
                let (c, ev) =
                    ::async_std::task::block_on(async_std::Client::connect_to(e, config))?;
                (AnyClient::AsyncStd(c), ev.into_blocking())
            }
            Runtime::Blocking => {
                let (c, e) = blocking::Client::connect_to(e, config)?;
                (AnyClient::Blocking(c), e)
            }
        })
    }

    /// Publishes; the [`BlockingPending`] completes with the acknowledgement.
    pub(crate) fn publish(&self, p: Publish) -> Result<BlockingPending, Error> {
        match self {
            AnyClient::Tokio(c, _) => wait(c.publish(p)).map(|p| p.into_blocking()),
            AnyClient::Smol(c) => wait(c.publish(p)).map(|p| p.into_blocking()),
            AnyClient::AsyncStd(c) => wait(c.publish(p)).map(|p| p.into_blocking()),
            AnyClient::Blocking(c) => c.publish(p),
        }
    }

    /// Subscribes and waits for the SUBACK.
    pub(crate) fn subscribe(&self, s: Vec<Subscription>) -> Result<SubAck, Error> {
        match self {
            AnyClient::Tokio(c, _) => wait(c.subscribe(s)),
            AnyClient::Smol(c) => wait(c.subscribe(s)),
            AnyClient::AsyncStd(c) => wait(c.subscribe(s)),
            AnyClient::Blocking(c) => c.subscribe(s),
        }
    }

    /// Disconnects cleanly.
    pub(crate) fn disconnect(&self) -> Result<(), Error> {
        match self {
            AnyClient::Tokio(c, _) => wait(c.disconnect()),
            AnyClient::Smol(c) => wait(c.disconnect()),
            AnyClient::AsyncStd(c) => wait(c.disconnect()),
            AnyClient::Blocking(c) => c.disconnect(),
        }
    }
}

/// A broker serving on the chosen runtime in a thread of its own.
pub(crate) struct RunningBroker {
    pub(crate) handle: BrokerHandle,
    pub(crate) addrs: Vec<SocketAddr>,
    /// Re-reads the TLS listeners' certificates.
    pub(crate) reloader: Reloader,
    /// The open connections of each listener.
    pub(crate) listeners: ListenerStats,
    pub(crate) thread: JoinHandle<()>,
}

/// Binds `addrs` and serves on `runtime` until the handle shuts the broker down.
pub(crate) fn start_broker(
    runtime: Runtime,
    router: Router,
    options: BrokerOptions,
    listeners: &[ListenerConfig],
) -> io::Result<RunningBroker> {
    let spawn = std::thread::Builder::new().name("broker".into());
    let (handle, bound, (reloader, stats), thread) = match runtime {
        Runtime::Tokio => {
            let rt = ::tokio::runtime::Runtime::new()?;
            let s = rt.block_on(tokio::Server::bind_listeners(router, options, listeners))?;
            let (h, a, r) = (
                s.handle(),
                s.local_addrs().to_vec(),
                (s.reloader(), s.listener_stats()),
            );
            (h, a, r, spawn.spawn(move || rt.block_on(s.run()))?)
        }
        Runtime::Smol => {
            let s = ::smol::block_on(smol::Server::bind_listeners(router, options, listeners))?;
            let (h, a, r) = (
                s.handle(),
                s.local_addrs().to_vec(),
                (s.reloader(), s.listener_stats()),
            );
            (h, a, r, spawn.spawn(move || ::smol::block_on(s.run()))?)
        }
        Runtime::AsyncStd => {
            let bind = async_std::Server::bind_listeners(router, options, listeners);
            let s = ::async_std::task::block_on(bind)?;
            let (h, a, r) = (
                s.handle(),
                s.local_addrs().to_vec(),
                (s.reloader(), s.listener_stats()),
            );
            (
                h,
                a,
                r,
                spawn.spawn(move || ::async_std::task::block_on(s.run()))?,
            )
        }
        Runtime::Blocking => {
            let s = blocking::Server::bind_listeners(router, options, listeners)?;
            let (h, a, r) = (
                s.handle(),
                s.local_addrs().to_vec(),
                (s.reloader(), s.listener_stats()),
            );
            (h, a, r, spawn.spawn(move || s.run())?)
        }
    };
    Ok(RunningBroker {
        handle,
        addrs: bound,
        reloader,
        listeners: stats,
        thread,
    })
}
