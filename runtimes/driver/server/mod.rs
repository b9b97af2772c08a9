//! The async broker: an accept task per listener, one task per connection that owns its
//! [`ServerConnection`] (socket reads and writes, decoding, encoding, keep-alive), and one
//! router task that owns the [`Router`](crate::broker::Router) and only routes.
//!
//! `connection.rs` holds a connection's task; this file the server, its accept tasks and the
//! router task.

mod connection;

use std::io;
use std::net::SocketAddr;
use std::pin::pin;

use crate::broker::{BrokerConfig, Router};
use crate::runtimes::driver::broker::RouterCore;
use crate::runtimes::driver::connection::Report;
use crate::runtimes::driver::handle::{BrokerHandle, Control};
use crate::runtimes::driver::metrics::{self, MetricsServer, RuntimeMetrics};
use crate::runtimes::driver::options::{BrokerOptions, TransportHook};
use crate::runtimes::driver::server::connection::accept;
use crate::runtimes::driver::transport::{
    self, Gauge, Held, Link, ListenerConfig, ListenerStats, Reloader, SharedAcceptor,
};
use crate::runtimes::driver::writer::{self, StoreWriter};
use crate::runtimes::driver::ROUTER_INBOX;
use crate::runtimes::driver::{answer, now, wait, wait_fair, Alarm, Listener, Runtime, Woke};

/// An MQTT broker on an async runtime: listeners bound, routing once [`Server::run`] runs.
pub struct Server<R: Runtime> {
    router: Router,
    options: BrokerOptions,
    listeners: Vec<(R::Listener, Option<SharedAcceptor>)>,
    reloader: Reloader,
    stats: ListenerStats,
    addrs: Vec<SocketAddr>,
    handle: BrokerHandle,
    signal: async_channel::Receiver<Control>,
    store: Option<StoreWriter>,
    inbox: (
        async_channel::Sender<Inbox<R>>,
        async_channel::Receiver<Inbox<R>>,
    ),
    /// The Prometheus endpoint ([`BrokerOptions::metrics_listener`]), served until `run`
    /// returns, and what the runtime measures for it.
    metrics: (Option<MetricsServer>, RuntimeMetrics),
    /// The link to the other nodes of a cluster, started at bind.
    #[cfg(feature = "cluster")]
    cluster: Option<crate::runtimes::cluster::Port>,
}

impl<R: Runtime> std::fmt::Debug for Server<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Server<R> {
    /// Binds `addrs` for a broker with `config` that lets everyone in.
    pub async fn bind(config: BrokerConfig, addrs: &[SocketAddr]) -> io::Result<Self> {
        Self::bind_with(Router::new(config), BrokerOptions::default(), addrs).await
    }

    /// Binds `addrs` for `router` (built with its authenticator and authorizer:
    /// [`Router::with_auth`], no connections yet), which runs in the router task, its
    /// connections each in their own task.
    ///
    /// With [`BrokerOptions::persistence`], the broker is first restored from its store and
    /// the store's writer thread starts; a store that cannot be opened or read fails here with
    /// an error naming its file; the router's `durable_acks` follows [`BrokerOptions::fsync`].
    pub async fn bind_with(
        router: Router,
        options: BrokerOptions,
        addrs: &[SocketAddr],
    ) -> io::Result<Self> {
        let listeners = addrs.iter().map(|a| ListenerConfig::plain(*a));
        Self::bind_listeners(router, options, &listeners.collect::<Vec<_>>()).await
    }

    /// [`Server::bind_with`] for listeners that may speak TLS and WebSocket; a certificate or
    /// key that cannot be used fails here, naming its file and the reason.
    pub async fn bind_listeners(
        mut router: Router,
        options: BrokerOptions,
        configs: &[ListenerConfig],
    ) -> io::Result<Self> {
        let (acceptors, reloader) = transport::acceptors(configs)?;
        let inbox = async_channel::bounded::<Inbox<R>>(ROUTER_INBOX);
        let wake = inbox.0.clone();
        let wake = Box::new(move || {
            // A full inbox wakes the router anyway; it collects on every turn.
            let _ = wake.try_send(Inbox::Stored);
        });
        let store = writer::start(&options, &mut router, wake)?;
        let mut listeners = Vec::new();
        let mut bound = Vec::new();
        for (c, acceptor) in configs.iter().zip(acceptors) {
            let (l, local) = R::bind(c.bind).await?;
            listeners.push((l, acceptor));
            bound.push(local);
        }
        let (handle, signal) = BrokerHandle::new();
        let stats = ListenerStats::new(&bound);
        let metrics = metrics::start(&options, &handle, &stats, store.as_ref())?;
        #[cfg(feature = "cluster")]
        let cluster = crate::runtimes::cluster::start(&options, &router)?;
        #[cfg(feature = "cluster")]
        if let Some(port) = &cluster {
            let monitor = crate::runtimes::cluster::ClusterMonitor(port.counters.clone());
            let _ = metrics.1.cluster.set(monitor);
        }
        Ok(Server {
            router,
            options,
            listeners,
            reloader,
            stats,
            addrs: bound,
            handle,
            signal,
            store,
            inbox,
            metrics,
            #[cfg(feature = "cluster")]
            cluster,
        })
    }

    /// The bound addresses (with the ports the system chose for port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Where `/metrics` is served ([`BrokerOptions::metrics_listener`], with the port the
    /// system chose for port 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.0.as_ref().map(MetricsServer::local_addr)
    }

    /// Reads the cluster link's counters while the broker runs (with
    /// [`BrokerOptions::cluster`]).
    #[cfg(feature = "cluster")]
    pub fn cluster_monitor(&self) -> Option<crate::runtimes::cluster::ClusterMonitor> {
        let port = self.cluster.as_ref()?;
        Some(crate::runtimes::cluster::ClusterMonitor(
            port.counters.clone(),
        ))
    }

    /// Re-reads the TLS listeners' certificate files while the broker runs.
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// The open connections of each listener, while the broker runs.
    pub fn listener_stats(&self) -> ListenerStats {
        self.stats.clone()
    }

    /// A handle that triggers the graceful shutdown.
    pub fn handle(&self) -> BrokerHandle {
        self.handle.clone()
    }

    /// Serves until the shutdown handle is triggered, then shuts down gracefully: DISCONNECT
    /// 0x8B to MQTT 5 clients, no wills, every connection flushed (within the grace period).
    ///
    /// The router runs as a task of the runtime, beside the connections' tasks, whatever
    /// thread awaits this (a `block_on` thread is not one of the runtime's workers: a router
    /// there would cross threads for every batch of mail).
    pub async fn run(self) {
        let (done, finished) = async_channel::bounded::<()>(1);
        R::spawn(async move {
            run::<R>(self).await;
            drop(done);
        });
        let _ = finished.recv().await;
    }
}

/// What reaches the router task.
pub(super) enum Inbox<R: Runtime> {
    Accept(R::Reader, R::Writer, Option<Box<Link>>, Held),
    Report(Report),
    /// The store writer handed tickets back (or stopped).
    Stored,
}

/// Runs the broker until the handle's channel closes.
async fn run<R: Runtime>(server: Server<R>) {
    let Server {
        router,
        options,
        listeners,
        handle,
        signal,
        store,
        inbox: (inbox_tx, inbox_rx),
        stats,
        metrics: (_metrics, runtime_metrics),
        #[cfg(feature = "cluster")]
        cluster,
        ..
    } = server;
    // Held so that dropping every user handle does not read as a shutdown.
    let _handle = handle;
    // Connections hold a clone; when all are gone every connection has flushed.
    let (done_tx, done_rx) = async_channel::bounded::<()>(1);
    // Dropped at shutdown, which ends the accept loops (connections see their posts close).
    let (stop_tx, stop) = async_channel::bounded::<()>(1);
    for (i, (l, acceptor)) in listeners.into_iter().enumerate() {
        let hook = options.on_transport_error.clone();
        let gauge = stats.gauge(i);
        R::spawn(accept_loop::<R>(
            l,
            (acceptor, gauge),
            hook,
            inbox_tx.clone(),
            stop.clone(),
        ));
    }
    let mut core = RouterCore::new(router, &options, store, R::RUNS_LAST_WOKEN_FIRST);
    core.observe(&runtime_metrics, &stats);
    #[cfg(feature = "cluster")]
    let from_cluster = cluster.as_ref().map(|p| p.from_link.clone());
    #[cfg(not(feature = "cluster"))]
    let from_cluster: Option<async_channel::Receiver<Never>> = None;
    #[cfg(feature = "cluster")]
    {
        core.cluster = cluster;
    }
    let mut turn = false;
    let sleep = pin!(None);
    let mut alarm = Alarm::new(sleep);
    loop {
        core.collect(now());
        if core.failed() {
            break;
        }
        if let Some(done) = core.store_full() {
            // The writer is STORE_BATCHES batches behind: nothing else until it catches up
            // (connections wait on the full inbox, so they stop reading: backpressure).
            let d = done.recv().await;
            core.stored(now(), d);
            continue;
        }
        alarm.arm(core.deadline(), R::sleep_until);
        let (inbox, control) = (inbox_rx.recv(), Some(side(&signal, from_cluster.as_ref())));
        match wait_fair(inbox, control, &mut alarm, &mut turn).await {
            Woke::First(Ok(Inbox::Accept(reader, writer, link, held))) => accept::<R>(
                &mut core,
                now(),
                (reader, writer, link, held),
                &options,
                &inbox_tx,
                &done_tx,
            ),
            // One report per drain: routing every report waiting before one drain made the
            // batches bigger but not fewer (each connection's own reads make its reports),
            // and a subscriber's batch colder by the time its task writes it (fan-out QoS 0:
            // 14% more CPU per delivery).
            Woke::First(Ok(Inbox::Report(r))) => {
                let at = now();
                core.take_report(at, r);
                core.flush(at);
            }
            // Collected at the top of the loop.
            Woke::First(Ok(Inbox::Stored)) => {}
            Woke::Second(Side::Control(Ok(Control::Stats(reply)))) => {
                answer(reply, Ok(core.stats()))
            }
            Woke::Second(Side::Control(Ok(Control::Admin(request, reply)))) => {
                core.admin(now(), request, reply)
            }
            Woke::Second(Side::Control(Ok(Control::Link(conn, call, reply)))) => {
                core.link(now(), conn, call, reply)
            }
            #[cfg(feature = "cluster")]
            Woke::Second(Side::Cluster(m)) => core.cluster_input(now(), m),
            #[cfg(not(feature = "cluster"))]
            Woke::Second(Side::Cluster(never)) => match never {},
            Woke::First(Err(_)) | Woke::Second(Side::Control(Err(_))) => break,
            Woke::Deadline => core.timeout(now()),
        }
    }
    // No more routing (so no will goes out); every connection says DISCONNECT 0x8B.
    core.shutdown();
    // What was sent is written (and synced), and the store file closed, before run returns.
    core.close_store();
    drop(stop_tx);
    drop(inbox_rx);
    drop(done_tx);
    let grace = now() + options.shutdown_grace;
    let _ = wait::<R, _, ()>(
        done_rx.recv(),
        None::<std::future::Pending<()>>,
        Some(grace),
    )
    .await;
}

/// What a build without the cluster receives from it: nothing.
#[cfg(not(feature = "cluster"))]
enum Never {}

/// What the cluster link hands the router task.
#[cfg(feature = "cluster")]
type FromCluster = crate::runtimes::cluster::FromLink;
#[cfg(not(feature = "cluster"))]
type FromCluster = Never;

/// The router task's second source: the broker handle's requests, or the cluster link's
/// messages.
// A message (a PUBLISH) is the large variant: one lives on the loop's stack per turn, moved
// once; a box would allocate for every message from the cluster.
#[allow(clippy::large_enum_variant)]
enum Side {
    Control(Result<Control, async_channel::RecvError>),
    Cluster(FromCluster),
}

/// Waits for a request of the handle, or a message of the cluster link (when there is one);
/// cancel-safe, like the channel receives it is made of.
async fn side(
    signal: &async_channel::Receiver<Control>,
    cluster: Option<&async_channel::Receiver<FromCluster>>,
) -> Side {
    use std::future::Future;
    let mut control = pin!(signal.recv());
    let mut cluster = pin!(cluster.map(|c| c.recv()));
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(c) = control.as_mut().poll(cx) {
            return std::task::Poll::Ready(Side::Control(c));
        }
        let polled = cluster.as_mut().as_pin_mut().map(|recv| recv.poll(cx));
        match polled {
            Some(std::task::Poll::Ready(Ok(m))) => return std::task::Poll::Ready(Side::Cluster(m)),
            // A closed link (it never closes before the router task) is nothing to route.
            Some(std::task::Poll::Ready(Err(_))) => cluster.set(None),
            _ => {}
        }
        std::task::Poll::Pending
    })
    .await
}

async fn accept_loop<R: Runtime>(
    mut listener: R::Listener,
    (acceptor, gauge): (Option<SharedAcceptor>, Gauge),
    hook: Option<TransportHook>,
    inbox: async_channel::Sender<Inbox<R>>,
    stop: async_channel::Receiver<()>,
) {
    loop {
        match wait::<R, _, _>(listener.accept(), Some(stop.recv()), None).await {
            Woke::First(Ok((r, w))) => {
                let link = match transport::accepted(acceptor.as_ref()) {
                    Ok(link) => link,
                    Err(e) => {
                        if let Some(h) = &hook {
                            h(&e);
                        }
                        continue;
                    }
                };
                let link = link.map(Box::new);
                let held = gauge.hold();
                if inbox.send(Inbox::Accept(r, w, link, held)).await.is_err() {
                    return;
                }
            }
            // Out of descriptors and the like: breathe, then go on.
            Woke::First(Err(_)) => {
                let pause = now() + std::time::Duration::from_millis(50);
                R::sleep_until(pause).await;
            }
            _ => return,
        }
    }
}
