//! The blocking broker: bound listeners, an accept thread each, and the router thread.

use std::io;
use std::net::TcpListener;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::broker::{BrokerConfig, Router};
use crate::runtimes::blocking::connection::{connection, Parts};
use crate::runtimes::blocking::{next, Inbox};
use crate::runtimes::driver::broker::RouterCore;
use crate::runtimes::driver::connection::{drain_connection, with_listener, Traffic};
use crate::runtimes::driver::handle::Control;
use crate::runtimes::driver::metrics::{self, MetricsServer, RuntimeMetrics};
use crate::runtimes::driver::transport::{self};
use crate::runtimes::driver::transport::{ListenerConfig, ListenerStats, Reloader, SharedAcceptor};
use crate::runtimes::driver::writer::{self, StoreWriter};
use crate::runtimes::driver::{self, now};
use crate::runtimes::driver::{BrokerHandle, BrokerOptions};

/// An MQTT broker on threads: bound listeners, run until its [`BrokerHandle`] is triggered.
#[derive(Debug)]
pub struct Server {
    router: Router,
    options: BrokerOptions,
    listeners: Vec<(TcpListener, Option<SharedAcceptor>)>,
    reloader: Reloader,
    stats: ListenerStats,
    addrs: Vec<SocketAddr>,
    handle: BrokerHandle,
    signal: async_channel::Receiver<Control>,
    store: Option<StoreWriter>,
    inbox: (SyncSender<Inbox>, Receiver<Inbox>),
    /// The Prometheus endpoint ([`BrokerOptions::metrics_listener`]), served until `run`
    /// returns, and what the runtime measures for it.
    metrics: (Option<MetricsServer>, RuntimeMetrics),
}

impl Server {
    /// Binds `addrs` for a broker with `config` that lets everyone in.
    pub fn bind(config: BrokerConfig, addrs: &[SocketAddr]) -> io::Result<Server> {
        Server::bind_with(Router::new(config), BrokerOptions::default(), addrs)
    }

    /// Binds `addrs` for `router` (built with its authenticator and authorizer:
    /// [`Router::with_auth`], no connections yet), which runs in the router thread, its
    /// connections each in their own thread.
    ///
    /// With [`BrokerOptions::persistence`], the broker is first restored from its store and
    /// the store's writer thread starts; a store that cannot be opened or read fails here with
    /// an error naming its file; the router's `durable_acks` follows [`BrokerOptions::fsync`].
    pub fn bind_with(
        router: Router,
        options: BrokerOptions,
        addrs: &[SocketAddr],
    ) -> io::Result<Server> {
        let listeners = addrs.iter().map(|a| ListenerConfig::plain(*a));
        Server::bind_listeners(router, options, &listeners.collect::<Vec<_>>())
    }

    /// [`Server::bind_with`] for listeners that may speak TLS and WebSocket; a certificate or
    /// key that cannot be used fails here, naming its file and the reason.
    pub fn bind_listeners(
        mut router: Router,
        options: BrokerOptions,
        configs: &[ListenerConfig],
    ) -> io::Result<Server> {
        #[cfg(feature = "cluster")]
        if options.cluster.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the cluster needs the tokio runtime",
            ));
        }
        let (acceptors, reloader) = transport::acceptors(configs)?;
        let inbox = sync_channel::<Inbox>(driver::ROUTER_INBOX);
        let wake = inbox.0.clone();
        let wake = Box::new(move || {
            // A full inbox wakes the router anyway; it collects on every turn.
            let _ = wake.try_send(Inbox::Stored);
        });
        let store = writer::start(&options, &mut router, wake)?;
        let listeners = configs
            .iter()
            .map(|c| TcpListener::bind(c.bind))
            .collect::<io::Result<Vec<_>>>()?;
        let addrs = listeners
            .iter()
            .map(TcpListener::local_addr)
            .collect::<io::Result<Vec<_>>>()?;
        let listeners = listeners.into_iter().zip(acceptors).collect();
        let (handle, signal) = BrokerHandle::new();
        let stats = ListenerStats::new(&addrs);
        let metrics = metrics::start(&options, &handle, &stats, store.as_ref())?;
        Ok(Server {
            router,
            options,
            listeners,
            reloader,
            stats,
            addrs,
            handle,
            signal,
            store,
            inbox,
            metrics,
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

    /// Serves on this thread until the shutdown handle is triggered, then shuts down
    /// gracefully: DISCONNECT 0x8B to MQTT 5 clients, no wills, every connection flushed.
    pub fn run(self) {
        let (tx, rx) = self.inbox;
        let stopping = Arc::new(AtomicBool::new(false));
        for (i, (l, acceptor)) in self.listeners.into_iter().enumerate() {
            let (tx, stopping) = (tx.clone(), stopping.clone());
            let gauge = self.stats.gauge(i);
            let hook = self.options.on_transport_error.clone();
            thread::spawn(move || {
                for s in l.incoming() {
                    if stopping.load(Ordering::Acquire) {
                        return;
                    }
                    let Ok(s) = s else {
                        // Out of descriptors and the like: breathe, then go on.
                        pause(Duration::from_millis(50));
                        continue;
                    };
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
                    if s.set_nodelay(true).is_err()
                        || tx.send(Inbox::Accept(s, link, held)).is_err()
                    {
                        return;
                    }
                }
            });
        }
        let (signal, t) = (self.signal, tx.clone());
        thread::spawn(move || {
            while let Ok(control) = signal.recv_blocking() {
                let input = match control {
                    Control::Stats(reply) => Inbox::Stats(reply),
                    Control::Admin(request, reply) => Inbox::Admin(request, reply),
                    Control::Link(conn, call, reply) => Inbox::Link(conn, call, reply),
                };
                if t.send(input).is_err() {
                    return;
                }
            }
            let _ = t.send(Inbox::Shutdown);
        });
        let (done_tx, done_rx) = sync_channel::<()>(1);
        let mut core = RouterCore::new(
            self.router,
            &self.options,
            self.store,
            // Threads: the OS decides who runs first; the mail order is the natural guess.
            false,
        );
        let (_metrics, runtime_metrics) = self.metrics;
        core.observe(&runtime_metrics, &self.stats);
        // An input taken while gathering reports, handled on the next turn.
        let mut carried = None;
        loop {
            // The store writer's hand-backs; with STORE_BATCHES batches in flight, the next
            // batch makes this thread wait for the writer (backpressure).
            core.collect(now());
            if core.failed() {
                break;
            }
            let input = match carried.take() {
                Some(i) => Ok(i),
                None => next(&rx, core.deadline()),
            };
            match input {
                Ok(Inbox::Accept(s, link, held)) => {
                    let conn = core.accept(now());
                    let id = conn.id();
                    core.router.set_listener(id, held.listener());
                    let started = match (s.try_clone(), s.try_clone()) {
                        (Ok(reader), Ok(abort)) => {
                            let parts = Parts {
                                conn,
                                router: tx.clone(),
                                hook: with_listener(self.options.on_event.clone(), held.listener()),
                                checks: core.checks.clone(),
                                done: done_tx.clone(),
                                link,
                                held,
                                transport_hook: self.options.on_transport_error.clone(),
                            };
                            connection([s, reader, abort], parts).map_err(|p| p.conn)
                        }
                        _ => Err(conn),
                    };
                    match started {
                        Ok(mailbox) => core.register(id, mailbox),
                        Err(mut conn) => {
                            // No thread can serve it: a closed transport ends it at once.
                            conn.handle_transport_closed(now());
                            let d = drain_connection(&mut conn, None);
                            if let Some(r) = Traffic::new(now()).report(now(), id, d.mail, true) {
                                core.take_report(now(), r);
                                core.flush(now());
                            }
                        }
                    }
                }
                Ok(Inbox::Report(r)) => {
                    // Every report already waiting is routed before the drain, so that each
                    // connection gets one batch (one write) for all of them.
                    let at = now();
                    core.take_report(at, r);
                    for _ in 1..driver::ROUTER_INBOX {
                        match rx.try_recv() {
                            Ok(Inbox::Report(r)) => core.take_report(at, r),
                            Ok(other) => {
                                carried = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    core.flush(now());
                }
                Ok(Inbox::Stats(reply)) => {
                    reply.send(Ok(core.stats()));
                }
                Ok(Inbox::Admin(request, reply)) => core.admin(now(), request, reply),
                Ok(Inbox::Link(conn, call, reply)) => core.link(now(), conn, call, reply),
                // Collected at the top of the loop.
                Ok(Inbox::Stored) => {}
                Ok(Inbox::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => core.timeout(now()),
            }
        }
        // No more routing (so no will goes out); every connection says DISCONNECT 0x8B.
        core.shutdown();
        // What was sent is written (and synced), and the store file closed, before run returns.
        core.close_store();
        // Connection threads waiting on a full inbox give up.
        drop(rx);
        stopping.store(true, Ordering::Release);
        for a in &self.addrs {
            // Wakes the accept threads, which see the flag and end.
            let _ = TcpStream::connect_timeout(a, Duration::from_millis(100));
        }
        drop(done_tx);
        let _ = done_rx.recv_timeout(self.options.shutdown_grace);
    }
}

/// Waits `d` (the accept loop's pause after an error such as running out of descriptors).
#[allow(clippy::disallowed_methods)]
fn pause(d: Duration) {
    thread::sleep(d);
}
