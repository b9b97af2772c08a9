//! The broker driver: the router core around the sans-IO [`Broker`], and the async loops.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{reply_channel, Error, Reply};
use crate::broker::{Broker, BrokerEvent, BrokerStats, ConnId};

/// Called by the router for every broker event (connects, closes); it must not block.
pub type EventHook = Arc<dyn Fn(&BrokerEvent) + Send + Sync>;

/// Runtime settings of a broker, beside the core's [`BrokerConfig`](crate::broker::BrokerConfig).
#[derive(Clone)]
pub struct BrokerOptions {
    /// Writes queued for one connection before it is closed as too slow.
    pub max_outbound_batches: usize,
    /// Bytes queued for one connection before it is closed as too slow.
    pub max_outbound_bytes: usize,
    /// How long a graceful shutdown waits for connections to flush before it returns.
    pub shutdown_grace: Duration,
    /// Told of every broker event, for logs and metrics.
    pub on_event: Option<EventHook>,
}

impl std::fmt::Debug for BrokerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerOptions")
            .field("max_outbound_batches", &self.max_outbound_batches)
            .field("max_outbound_bytes", &self.max_outbound_bytes)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("on_event", &self.on_event.is_some())
            .finish()
    }
}

impl Default for BrokerOptions {
    /// 1024 writes, 8 MiB, 5 s, no hook.
    fn default() -> BrokerOptions {
        BrokerOptions {
            max_outbound_batches: 1024,
            max_outbound_bytes: 8 << 20,
            shutdown_grace: Duration::from_secs(5),
            on_event: None,
        }
    }
}

/// Controls a running broker: its statistics and its graceful shutdown; clones control the
/// same broker.
#[derive(Debug, Clone)]
pub struct BrokerHandle {
    pub(crate) tx: async_channel::Sender<Control>,
}

/// What a [`BrokerHandle`] asks the router; closing the channel is the shutdown.
#[derive(Debug)]
pub(crate) enum Control {
    /// Answer with the counters.
    Stats(Reply<BrokerStats>),
}

impl BrokerHandle {
    /// A handle and the router's end of it.
    pub(crate) fn new() -> (BrokerHandle, async_channel::Receiver<Control>) {
        let (tx, rx) = async_channel::bounded(16);
        (BrokerHandle { tx }, rx)
    }

    /// Starts the graceful shutdown: DISCONNECT 0x8B to MQTT 5 clients, no wills, then the
    /// broker's `run` returns.
    pub fn shutdown(&self) {
        self.tx.close();
    }

    /// Whether the shutdown was triggered.
    pub fn is_shut_down(&self) -> bool {
        self.tx.is_closed()
    }

    /// The broker's counters (connections, sessions, subscriptions, retained, messages).
    pub async fn stats(&self) -> Result<BrokerStats, Error> {
        let (tx, rx) = reply_channel();
        self.tx
            .send(Control::Stats(tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.recv().await.unwrap_or(Err(Error::Stopped))
    }

    /// The broker's counters, blocking the thread.
    pub fn stats_blocking(&self) -> Result<BrokerStats, Error> {
        let (tx, rx) = reply_channel();
        self.tx
            .send_blocking(Control::Stats(tx))
            .map_err(|_| Error::Stopped)?;
        rx.recv_blocking().unwrap_or(Err(Error::Stopped))
    }
}

/// A bounded queue towards one connection's writer.
pub(crate) trait OutQueue {
    /// Queues `bytes`; `false` when the queue is full or its writer is gone.
    fn try_push(&self, bytes: Bytes) -> bool;
    /// Makes the writer close the socket now, without flushing (it may be stuck writing to a
    /// peer that does not read).
    fn abort(&self);
}

/// A connection's outbound queue with its byte count (the writer subtracts what it wrote).
pub(crate) struct Outbox<Q> {
    pub(crate) queue: Q,
    pub(crate) queued: Arc<AtomicUsize>,
}

impl<Q: OutQueue> Outbox<Q> {
    fn push(&self, bytes: Bytes, cap: usize) -> bool {
        let len = bytes.len();
        if self.queued.load(Ordering::Relaxed) + len > cap {
            return false;
        }
        self.queued.fetch_add(len, Ordering::Relaxed);
        self.queue.try_push(bytes)
    }
}

/// Marks `len` bytes as written (called by a writer).
pub(crate) fn written(queued: &AtomicUsize, len: usize) {
    queued.fetch_sub(len, Ordering::Relaxed);
}

/// The router: the sans-IO broker and the outbound queue of every connection.
///
/// Dropping a connection's queue makes its writer flush what is queued and close the socket.
pub(crate) struct RouterCore<Q> {
    pub(crate) broker: Broker,
    outboxes: HashMap<ConnId, Outbox<Q>>,
    max_bytes: usize,
    hook: Option<EventHook>,
}

impl<Q: OutQueue> RouterCore<Q> {
    /// A router around `broker`.
    pub(crate) fn new(broker: Broker, options: &BrokerOptions) -> RouterCore<Q> {
        RouterCore {
            broker,
            outboxes: HashMap::new(),
            max_bytes: options.max_outbound_bytes,
            hook: options.on_event.clone(),
        }
    }

    /// A transport connected; its writer reads `queue`.
    pub(crate) fn accept(&mut self, now: Instant, outbox: Outbox<Q>) -> ConnId {
        let id = self.broker.accept(now);
        self.outboxes.insert(id, outbox);
        id
    }

    /// Bytes arrived on `conn`.
    pub(crate) fn input(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        self.broker.handle_input(now, conn, data);
        self.drain(now);
    }

    /// `conn`'s transport closed (or its reader ended).
    pub(crate) fn closed(&mut self, now: Instant, conn: ConnId) {
        self.outboxes.remove(&conn);
        self.broker.handle_transport_closed(now, conn);
        self.drain(now);
    }

    /// A deadline passed.
    pub(crate) fn timeout(&mut self, now: Instant) {
        self.broker.handle_timeout(now);
        self.drain(now);
    }

    /// The graceful shutdown: DISCONNECT 0x8B to v5 clients, then every transport closes.
    pub(crate) fn shutdown(&mut self, now: Instant) {
        self.broker.shutdown(now);
        self.drain(now);
        self.outboxes.clear();
    }

    /// The earliest deadline.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.broker.poll_timeout()
    }

    /// Hands what the broker transmits to the writers and closes what it closes; a connection
    /// whose queue overflows is closed as if its transport had failed.
    fn drain(&mut self, now: Instant) {
        let mut overflowed = Vec::new();
        loop {
            while let Some((conn, bytes)) = self.broker.poll_transmit() {
                if let Some(o) = self.outboxes.get(&conn) {
                    if !o.push(bytes, self.max_bytes) {
                        o.queue.abort();
                        self.outboxes.remove(&conn);
                        overflowed.push(conn);
                    }
                }
            }
            while let Some(e) = self.broker.poll_event() {
                if let Some(hook) = &self.hook {
                    hook(&e);
                }
                match e {
                    BrokerEvent::CloseTransport(conn) | BrokerEvent::Closed { conn, .. } => {
                        self.outboxes.remove(&conn);
                    }
                    _ => {}
                }
            }
            if overflowed.is_empty() {
                return;
            }
            for conn in overflowed.drain(..) {
                self.broker.handle_transport_closed(now, conn);
            }
        }
    }
}

#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
pub use server::Server;

#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
mod server {
    use std::io;
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use bytes::Bytes;

    use super::{written, BrokerHandle, BrokerOptions, Control, OutQueue, Outbox, RouterCore};
    use crate::broker::{Broker, BrokerConfig, ConnId};
    use crate::runtimes::driver::{
        answer, now, wait, wait_fair, Listener, Reader, Runtime, Woke, Writer, READ_CHUNK,
        ROUTER_INBOX,
    };

    /// An MQTT broker on an async runtime: listeners bound, routing once [`Server::run`] runs.
    pub struct Server<R: Runtime> {
        broker: Broker,
        options: BrokerOptions,
        listeners: Vec<R::Listener>,
        addrs: Vec<SocketAddr>,
        handle: BrokerHandle,
        signal: async_channel::Receiver<Control>,
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
            Self::bind_with(Broker::new(config), BrokerOptions::default(), addrs).await
        }

        /// Binds `addrs` for `broker` (built with its authenticator and authorizer).
        pub async fn bind_with(
            broker: Broker,
            options: BrokerOptions,
            addrs: &[SocketAddr],
        ) -> io::Result<Self> {
            let mut listeners = Vec::new();
            let mut bound = Vec::new();
            for a in addrs {
                let (l, local) = R::bind(*a).await?;
                listeners.push(l);
                bound.push(local);
            }
            let (handle, signal) = BrokerHandle::new();
            Ok(Server {
                broker,
                options,
                listeners,
                addrs: bound,
                handle,
                signal,
            })
        }

        /// The bound addresses (with the ports the system chose for port 0).
        pub fn local_addrs(&self) -> &[SocketAddr] {
            &self.addrs
        }

        /// A handle that triggers the graceful shutdown.
        pub fn handle(&self) -> BrokerHandle {
            self.handle.clone()
        }

        /// Serves until the shutdown handle is triggered, then shuts down gracefully: DISCONNECT
        /// 0x8B to MQTT 5 clients, no wills, every connection flushed (within the grace period).
        pub async fn run(self) {
            run::<R>(
                self.broker,
                self.options,
                self.listeners,
                self.handle,
                self.signal,
            )
            .await;
        }
    }

    /// The router's end of a connection's writer queue.
    pub(crate) struct Queue {
        tx: async_channel::Sender<Bytes>,
        kill: async_channel::Sender<()>,
    }

    impl OutQueue for Queue {
        fn try_push(&self, bytes: Bytes) -> bool {
            self.tx.try_send(bytes).is_ok()
        }

        fn abort(&self) {
            self.kill.close();
        }
    }

    /// What reaches the router task.
    enum Inbox<R: Runtime> {
        Accept(R::Reader, R::Writer),
        Bytes(ConnId, Bytes),
        Closed(ConnId),
    }

    /// Runs the broker until `shutdown` closes: one task per listener accepts, one reader and
    /// one writer task per connection do the socket IO, and this task routes.
    async fn run<R: Runtime>(
        broker: Broker,
        options: BrokerOptions,
        listeners: Vec<R::Listener>,
        handle: BrokerHandle,
        shutdown: async_channel::Receiver<Control>,
    ) {
        // Held so that dropping every user handle does not read as a shutdown.
        let _handle = handle;
        let (inbox_tx, inbox_rx) = async_channel::bounded::<Inbox<R>>(ROUTER_INBOX);
        // Writers hold a clone; when all are gone every connection has flushed.
        let (done_tx, done_rx) = async_channel::bounded::<()>(1);
        // Dropped at shutdown, which ends the accept loops.
        let (stop_accepting, accepting) = async_channel::bounded::<()>(1);
        for l in listeners {
            R::spawn(accept_loop::<R>(l, inbox_tx.clone(), accepting.clone()));
        }
        let mut core = RouterCore::new(broker, &options);
        let mut turn = false;
        loop {
            let (inbox, control) = (inbox_rx.recv(), Some(shutdown.recv()));
            let woke = wait_fair::<R, _, _>(inbox, control, core.deadline(), &mut turn);
            match woke.await {
                Woke::First(Ok(Inbox::Accept(reader, writer))) => {
                    let (tx, rx) = async_channel::bounded(options.max_outbound_batches);
                    let (kill, killed) = async_channel::bounded(1);
                    let queued = Arc::new(AtomicUsize::new(0));
                    let outbox = Outbox {
                        queue: Queue {
                            tx,
                            kill: kill.clone(),
                        },
                        queued: queued.clone(),
                    };
                    let conn = core.accept(now(), outbox);
                    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
                    let ends = Ends {
                        _stop_reader: stop_tx,
                        _done: done_tx.clone(),
                        _kill: kill,
                    };
                    R::spawn(write_loop::<R>(writer, rx, queued, killed, ends));
                    R::spawn(read_loop::<R>(reader, conn, inbox_tx.clone(), stop_rx));
                }
                Woke::First(Ok(Inbox::Bytes(conn, b))) => core.input(now(), conn, &b),
                Woke::First(Ok(Inbox::Closed(conn))) => core.closed(now(), conn),
                Woke::Second(Ok(Control::Stats(reply))) => answer(reply, Ok(core.broker.stats())),
                Woke::First(Err(_)) | Woke::Second(Err(_)) => break,
                Woke::Deadline => core.timeout(now()),
            }
        }
        core.shutdown(now());
        drop(stop_accepting);
        drop(done_tx);
        let grace = now() + options.shutdown_grace;
        let _ = wait::<R, _, ()>(
            done_rx.recv(),
            None::<std::future::Pending<()>>,
            Some(grace),
        )
        .await;
    }

    async fn accept_loop<R: Runtime>(
        mut listener: R::Listener,
        inbox: async_channel::Sender<Inbox<R>>,
        stop: async_channel::Receiver<()>,
    ) {
        loop {
            match wait::<R, _, _>(listener.accept(), Some(stop.recv()), None).await {
                Woke::First(Ok((r, w))) => {
                    if inbox.send(Inbox::Accept(r, w)).await.is_err() {
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

    async fn read_loop<R: Runtime>(
        mut reader: R::Reader,
        conn: ConnId,
        inbox: async_channel::Sender<Inbox<R>>,
        stop: async_channel::Receiver<()>,
    ) {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            match wait::<R, _, _>(reader.read(&mut buf), Some(stop.recv()), None).await {
                Woke::First(Ok(n)) if n > 0 => {
                    let bytes = Bytes::copy_from_slice(&buf[..n]);
                    // A full inbox stops this reader: backpressure on the socket.
                    if inbox.send(Inbox::Bytes(conn, bytes)).await.is_err() {
                        return;
                    }
                }
                _ => break,
            }
        }
        let _ = inbox.send(Inbox::Closed(conn)).await;
    }

    /// What a writer holds until it ends: dropping them stops the reader, counts the writer
    /// as done, and (the clone of the kill switch) keeps an ordinary close from reading as kill.
    struct Ends {
        _stop_reader: async_channel::Sender<()>,
        _done: async_channel::Sender<()>,
        _kill: async_channel::Sender<()>,
    }

    async fn write_loop<R: Runtime>(
        mut writer: R::Writer,
        queue: async_channel::Receiver<Bytes>,
        queued: Arc<AtomicUsize>,
        killed: async_channel::Receiver<()>,
        _ends: Ends,
    ) {
        while let Ok(bytes) = queue.recv().await {
            let write = writer.write_all(&bytes);
            match wait::<R, _, _>(write, Some(killed.recv()), None).await {
                Woke::First(Ok(())) => written(&queued, bytes.len()),
                // A write error, or killed as too slow: drop the socket unflushed.
                _ => return,
            }
        }
        writer.close().await;
    }
}
