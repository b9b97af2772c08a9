//! A runtime broker's settings beside the core's `BrokerConfig`, and its hooks.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::broker::{BrokerEvent, CredentialCheck};
use crate::runtimes::driver::transport::TransportError;
use crate::ReasonCode;

/// Called for every broker event (connects, closes), by the connection's own task; it must
/// not block.
pub type EventHook = Arc<dyn Fn(&BrokerEvent) + Send + Sync>;

/// Called when a connection's transport fails (a TLS handshake refused, a WebSocket upgrade
/// without the `mqtt` subprotocol, plain MQTT on a TLS port, ...), before it is closed; it
/// must not block.
pub type TransportHook = Arc<dyn Fn(&TransportError) + Send + Sync>;

/// Runtime settings of a broker, beside the core's [`BrokerConfig`](crate::broker::BrokerConfig).
///
/// Build it with `BrokerOptions::default()` and the `with_*` setters (or set its public
/// fields): it is `#[non_exhaustive]`, so a field added later breaks no one.
///
/// ```compile_fail
/// use tinymqtt::runtimes::BrokerOptions;
///
/// let options = BrokerOptions { max_outbound_batches: 8, ..BrokerOptions::default() };
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct BrokerOptions {
    /// Mail batches the router may queue for one connection before it is closed as too slow.
    pub max_outbound_batches: usize,
    /// Bytes of mail (messages with their topics and payloads) the router may queue for one
    /// connection before it is closed as too slow.
    pub max_outbound_bytes: usize,
    /// How long a graceful shutdown waits for connections to flush before it returns.
    pub shutdown_grace: Duration,
    /// Told of every broker event, for logs and metrics.
    pub on_event: Option<EventHook>,
    /// The directory of the broker's store (its file is `tinymqtt.redb`; needs the
    /// `persistence` feature, without which `bind` refuses a directory):
    /// retained messages and persistent sessions with their subscriptions survive a restart.
    /// `None` keeps everything in memory.
    pub persistence: Option<PathBuf>,
    /// When the store's writes reach the disk (with [`BrokerOptions::persistence`]), and so
    /// when acknowledgements go out: the broker's
    /// [`BrokerConfig::durable_acks`](crate::broker::BrokerConfig::durable_acks) is derived
    /// from it ([`Fsync::durable_acks`]) when the store opens.
    pub fsync: Fsync,
    /// Threads that run the credentials checks of an authenticator that
    /// [defers](crate::broker::Authenticator::defers) them (password hashing, blocking
    /// lookups), away from the threads that serve connections and route; started at the
    /// first check.
    pub check_threads: usize,
    /// Credentials checks waiting or running at once; a CONNECT beyond them is refused at
    /// once with 0x89 server busy (3.1.x: return code 3, server unavailable).
    pub max_pending_checks: usize,
    /// Runs each deferred credentials check as a future on the connection's own task
    /// instead of on the threads (an async database or HTTP client), under the same cap;
    /// the connect timeout bounds it (the blocking runtime polls it on a thread of its own, so
    /// it must not need another runtime's reactor there).
    pub check_credentials: Option<CheckCredentials>,
    /// Told why a connection's transport failed, for logs.
    pub on_transport_error: Option<TransportHook>,
    /// Where to serve Prometheus's `GET /metrics` (see
    /// [`metrics`](crate::runtimes::driver::metrics)); `None` (the default) serves nothing.
    /// Binding it fails `bind` like a listener would.
    pub metrics_listener: Option<std::net::SocketAddr>,
    /// This broker's place in a cluster over NATS (the `cluster` feature): the broker must be
    /// bound inside a tokio runtime, and its router built with
    /// [`BrokerConfig::cluster`](crate::broker::BrokerConfig::cluster) on (`bind` refuses
    /// it otherwise); `None` (the default): a broker on its own.
    #[cfg(feature = "cluster")]
    pub cluster: Option<crate::runtimes::cluster::ClusterConfig>,
}

impl std::fmt::Debug for BrokerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut f = f.debug_struct("BrokerOptions");
        f.field("max_outbound_batches", &self.max_outbound_batches)
            .field("max_outbound_bytes", &self.max_outbound_bytes)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("on_event", &self.on_event.is_some())
            .field("persistence", &self.persistence)
            .field("fsync", &self.fsync)
            .field("check_threads", &self.check_threads)
            .field("max_pending_checks", &self.max_pending_checks)
            .field("check_credentials", &self.check_credentials.is_some())
            .field("on_transport_error", &self.on_transport_error.is_some())
            .field("metrics_listener", &self.metrics_listener);
        #[cfg(feature = "cluster")]
        f.field("cluster", &self.cluster);
        f.finish()
    }
}

impl Default for BrokerOptions {
    /// 1024 batches, 8 MiB, 5 s, no hook, in memory (fsync always, once persistence is on),
    /// 2 check threads and 64 pending checks, no metrics endpoint.
    fn default() -> BrokerOptions {
        BrokerOptions {
            max_outbound_batches: 1024,
            max_outbound_bytes: 8 << 20,
            shutdown_grace: Duration::from_secs(5),
            on_event: None,
            persistence: None,
            fsync: Fsync::Always,
            check_threads: 2,
            max_pending_checks: 64,
            check_credentials: None,
            on_transport_error: None,
            metrics_listener: None,
            #[cfg(feature = "cluster")]
            cluster: None,
        }
    }
}

/// A check's verdict: `Ok` lets the client in, `Err` is the CONNACK reason code.
pub type Verdict = Result<(), ReasonCode>;

/// An async credentials check, run on the connection's task (see
/// [`BrokerOptions::check_credentials`]).
///
/// The authenticator says [`defers`](crate::broker::Authenticator::defers), and each check
/// becomes a future (here a stand-in for a database or HTTP lookup):
///
/// ```
/// use std::sync::Arc;
/// use tinymqtt::runtimes::{BrokerOptions, CheckCredentials};
/// use tinymqtt::ReasonCode;
///
/// let lookup: CheckCredentials = Arc::new(|check| {
///     Box::pin(async move {
///         // e.g. `db.fetch_hash(&user).await`, then compare.
///         match check.username.as_ref().map(|u| u.as_str()) {
///             Some("alice") if check.password.as_deref() == Some(b"s3cret") => Ok(()),
///             _ => Err(ReasonCode::BadUserNameOrPassword),
///         }
///     })
/// });
/// let options = BrokerOptions::default().with_check_credentials(Some(lookup));
/// # let _ = options;
/// ```
pub type CheckCredentials =
    Arc<dyn Fn(CredentialCheck) -> Pin<Box<dyn Future<Output = Verdict> + Send>> + Send + Sync>;

/// When the broker's store reaches the disk, and so when acknowledgements go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Fsync {
    /// Every commit is synced to disk before it is done, and each PUBACK, PUBREC, PUBREL and
    /// PUBCOMP waits for the commit of what it promises: nothing acknowledged is lost, even to
    /// a power failure (the broker's `durable_acks` is turned on).
    #[default]
    Always,
    /// Acknowledgements go out at once; commits are not synced, and what they wrote is synced
    /// at least this often (when anything was written since the last sync) and at a graceful
    /// shutdown. A crash of the broker's process or of the machine loses what was written
    /// since the last sync: up to this interval (plus one commit) of acknowledged messages and
    /// session changes (the broker's `durable_acks` is turned off).
    Interval(Duration),
}

impl Fsync {
    /// The interval `fsync = "interval"` syncs at when the config names none.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

    /// The [`BrokerConfig::durable_acks`](crate::broker::BrokerConfig::durable_acks) this
    /// policy gives the broker: `true` for [`Fsync::Always`].
    pub fn durable_acks(self) -> bool {
        matches!(self, Fsync::Always)
    }
}
