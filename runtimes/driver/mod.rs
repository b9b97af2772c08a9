//! The poll loop, written once for every runtime.
//!
//! The sans-IO machines are wrapped by synchronous cores that know the drain order and the
//! waiters of pending commands: `ClientCore`, `RouterCore` (the broker's
//! [`Router`](crate::broker::Router) and a mailbox per connection) and the connection drain. The
//! async runtimes run them in the loops of this module, generic over a small `Runtime` trait
//! (connect, bind, read, write, sleep until, spawn); the blocking runtime runs the same cores on
//! threads. A runtime file only binds sockets and timers.
//!
//! The broker runs one task per connection, which owns its
//! [`ServerConnection`](crate::broker::ServerConnection): it reads the socket, feeds the
//! connection, writes what it transmits and keeps its deadlines, and sends the router task all
//! the mail one wake produced as one batch. On a wake it takes what is there (the mail in its
//! post and the bytes the socket has) before it writes once: fewer writes, and no read that
//! finds nothing. The router task owns the `Router` and only routes: it sends each connection
//! its mail as one batch per report (the blocking runtime's router thread routes every report
//! waiting before one drain: there each batch costs a channel send and a thread wake), never
//! waiting on a connection. Byte counts travel with the batches (or alone, at most once a
//! second), so `BrokerStats::bytes_*` can lag a connection until its next input, mail or close.
//!
//! With persistence, a store writer thread owns the store: the router task sends it each
//! drain's changes as one batch and goes on routing; the writer commits every batch waiting
//! in one transaction (group commit, synced as [`Fsync`] says) and hands the tickets back
//! through a channel, waking the router task through its inbox; the router then lets the
//! connections send the acknowledgements they held.
//!
//! # Queue caps and overflow policies
//!
//! Every queue between tasks is bounded:
//!
//! | queue | cap | when full |
//! | --- | --- | --- |
//! | client commands (publish, subscribe, ...): those waiting behind one that waits for room in the in-flight window or for a connection, and those carried out whose bytes the driver has not taken for writing yet (a command that can go at once is carried out by the caller, under the lock of the session it shares with the driver; the blocking runtime's commands wait in its session thread's input channel instead) | [`CLIENT_COMMANDS`] | the caller waits; the driver sends queued commands in order as acknowledgements free the window |
//! | client events ([`Events`]) | [`CLIENT_EVENTS`] | the driver waits, so it stops reading its socket (TCP backpressure to the server); a dropped [`Events`] discards events |
//! | bytes read from a socket, per connection in the blocking runtime (client and broker; the async client's driver and broker connection tasks read their sockets themselves, only when ready for more) | [`NET_CHUNKS`] reads of up to [`READ_CHUNK`] bytes | the reader stops reading the socket |
//! | broker router inbox (one for every connection: the mail batch of each wake, accepts) | [`ROUTER_INBOX`] batches | connection tasks wait, so they stop reading their sockets (backpressure); the router never waits on a connection |
//! | broker control ([`BrokerHandle`] stats requests) | 16 | the caller waits |
//! | broker store writes (router to the store writer thread, with [`BrokerOptions::persistence`]): each router drain's changes as one batch | [`STORE_BATCHES`] batches in flight (sent, not yet handed back) | the router waits for the writer to commit (backpressure to every connection through the router inbox); the writer takes every waiting batch into one commit, so a slow disk makes commits bigger, not more |
//! | store hand-backs (writer to router: the tickets of each commit) | [`STORE_BATCHES`] | never full: each covers at least one batch in flight |
//! | broker mail, per connection (router to connection) | [`BrokerOptions::max_outbound_batches`] batches and [`BrokerOptions::max_outbound_bytes`] bytes (each mail's size with its topic and payload) | the connection is closed at once, unflushed (as if its transport failed, so its will is published); the batch that did not fit goes back to the router, which puts its QoS 1/2 messages back at the front of the session's queue and drops its QoS 0 ones (counted in `dropped`): a slow subscriber cannot grow the broker's memory nor stall the router |
//!
//! The broker core bounds each session's own queue as well (see the
//! [broker queue policy](crate::broker#queues)).

#[cfg(feature = "broker")]
pub(crate) mod broker;
#[cfg(feature = "broker")]
pub(crate) mod checks;
pub(crate) mod client;
#[cfg(feature = "broker")]
pub(crate) mod connection;
#[cfg(feature = "broker")]
pub(crate) mod handle;
#[cfg(feature = "broker")]
pub(crate) mod mailbox;
mod oneshot;
#[cfg(feature = "broker")]
pub(crate) mod options;
#[cfg(feature = "broker")]
mod options_with;
#[cfg(all(
    feature = "broker",
    any(feature = "tokio", feature = "smol", feature = "async-std")
))]
mod post;
#[cfg(all(
    feature = "broker",
    any(feature = "tokio", feature = "smol", feature = "async-std")
))]
mod server;
#[cfg(feature = "persistence")]
pub(crate) mod store;
pub mod transport;
#[cfg(feature = "broker")]
pub(crate) mod writer;

use std::io;
use std::time::Instant;

use crate::client::Event;
use crate::codec::AckProperties;
use crate::error::{ClientError, CloseReason};
use crate::{PacketId, ReasonCode};

#[cfg(feature = "broker")]
pub use checks::{CheckCredentials, Verdict};
#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
pub use client::Client;
pub use client::{AuthHandler, ConnectOptions};
#[cfg(feature = "broker")]
pub use handle::BrokerHandle;
#[cfg(feature = "broker")]
pub use options::{BrokerOptions, EventHook, TransportHook};
#[cfg(all(
    feature = "broker",
    any(feature = "tokio", feature = "smol", feature = "async-std")
))]
pub use server::Server;
#[cfg(feature = "persistence")]
pub use store::STORE_FILE;
#[cfg(feature = "broker")]
pub use writer::Fsync;

/// Commands a client may hold queued (behind a full in-flight window, or while it connects)
/// before callers wait.
pub const CLIENT_COMMANDS: usize = 64;
/// Events a client driver may queue before it stops reading its socket.
pub const CLIENT_EVENTS: usize = 256;
/// Reads a client connection may queue before its reader stops reading.
pub const NET_CHUNKS: usize = 16;
/// The largest single read from a socket, in bytes.
pub const READ_CHUNK: usize = 16 * 1024;
/// How long a client's event queue may stay full, untouched, while callers wait on the
/// client before they hear [`Error::EventsUnread`] instead of waiting on.
pub const EVENTS_STALL: std::time::Duration = std::time::Duration::from_secs(5);
/// Mail batches (from every connection) the broker router may queue before connection tasks
/// wait.
pub const ROUTER_INBOX: usize = 1024;

/// Batches of store changes the broker router may have in flight to its store writer (sent,
/// their tickets not handed back yet) before it waits for the disk.
pub const STORE_BATCHES: usize = 64;

/// Why a runtime command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The session refused the command (invalid topic, packet too large, ...).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A socket operation failed.
    #[error("io error: {0}")]
    Io(#[from] io::Error),
    /// The first connection was refused or failed before CONNACK.
    #[error("connection failed: {0:?}")]
    ConnectFailed(CloseReason),
    /// The session ended without the acknowledgement (the server did not resume it).
    #[error("the session ended before the acknowledgement")]
    Lost,
    /// The client is stopped (disconnected and not reconnecting, or its driver ended).
    #[error("the client is stopped")]
    Stopped,
    /// The transport could not be opened or failed: the host name did not resolve, the
    /// connection was refused, a certificate was rejected (and why), the WebSocket upgrade
    /// was refused.
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    /// The server asked for a step of enhanced authentication while `connect` waited for its
    /// CONNACK, and no [`ConnectOptions::with_auth`] handler answered it: the AUTH it sent.
    #[error("the server's AUTH challenge during connect went unanswered (see ConnectOptions::with_auth)")]
    AuthUnanswered(Box<crate::codec::Auth>),
    /// The server refused the publish: its PUBACK or PUBREC carried an error reason code
    /// (MQTT 5; a 3.1.x server cannot refuse a publish, it may only drop it).
    #[error("the server refused the publish: {:?}", .0.reason_code)]
    PublishRefused(Box<Ack>),
    /// The server refused one or more filters of a SUBSCRIBE: its whole SUBACK, a reason code
    /// per filter (the granted ones are subscribed).
    #[error("the server refused a subscription: {:?}", .0.reason_codes)]
    SubscribeRefused(Box<SubAck>),
    /// The server refused one or more filters of an UNSUBSCRIBE (MQTT 5): its whole UNSUBACK.
    #[error("the server refused an unsubscription: {:?}", .0.reason_codes)]
    UnsubscribeRefused(Box<SubAck>),
    /// The client's [`Events`] stayed full and unread for [`EVENTS_STALL`] while this call
    /// waited: the client stops reading its socket while its event queue is full, so no
    /// acknowledgement (and no room for queued commands) can arrive until someone reads the
    /// events. Every call waiting then hears this error rather than waiting forever (queued
    /// commands are abandoned; a publish already sent may still be delivered).
    ///
    /// It comes from a task that publishes more than the queues hold ([`CLIENT_COMMANDS`],
    /// [`CLIENT_EVENTS`]) and only reads its events afterwards, typically to a topic it is
    /// subscribed to: read the events in another task or thread (or drop them).
    #[error("the client's events went unread for too long while a call waited; read them in another task")]
    EventsUnread,
}

/// How a publish ended: its acknowledgement (QoS 1 and 2), or its hand-over to the socket (QoS 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The packet identifier (`None` for QoS 0).
    pub packet_id: Option<PacketId>,
    /// The server's reason code (Success in 3.1.x and for QoS 0).
    pub reason_code: ReasonCode,
    /// The acknowledgement's properties.
    pub properties: AckProperties,
}

/// The answer to a SUBSCRIBE or UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// The packet identifier.
    pub packet_id: PacketId,
    /// One per filter: the granted QoS or a failure (empty for a 3.1.x UNSUBACK).
    pub reason_codes: Vec<ReasonCode>,
    /// The acknowledgement's properties.
    pub properties: AckProperties,
}

/// A one-shot answer from the driver.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// Where a [`Reply`] arrives.
pub(crate) type Answer<T> = oneshot::Receiver<Result<T, Error>>;

pub(crate) fn reply_channel<T>() -> (Reply<T>, Answer<T>) {
    oneshot::channel()
}

/// Answers a waiter; a waiter that went away does not matter.
pub(crate) fn answer<T>(reply: Reply<T>, value: Result<T, Error>) {
    reply.send(value);
}

/// A publish on its way (async runtimes); [`Pending::ack`] tells how it ended.
///
/// It has no blocking wait, so it cannot block an executor's thread: to wait from a thread
/// that is not running async code, turn it into a [`BlockingPending`] with
/// [`Pending::into_blocking`].
///
/// ```compile_fail
/// fn inside_async_code(pending: tinymqtt::runtimes::Pending) {
///     let _ = pending.wait(); // would block the executor's thread: no such method
/// }
/// ```
#[derive(Debug)]
#[must_use = "a publish's acknowledgement (or its refusal) is only known through its Pending"]
pub struct Pending {
    rx: Answer<Ack>,
}

impl Pending {
    /// Wraps the receiving end of a reply.
    #[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
    pub(crate) fn from_receiver(rx: Answer<Ack>) -> Pending {
        Pending { rx }
    }

    /// The packet identifier of a QoS 1/2 message once the session has taken it (at once
    /// when the in-flight window has room, else when it leaves the client's queue); `None`
    /// before, and always for QoS 0.
    pub fn packet_id(&self) -> Option<PacketId> {
        PacketId::new(self.rx.tag())
    }

    /// Waits for the acknowledgement the message's QoS requires.
    pub async fn ack(self) -> Result<Ack, Error> {
        self.rx.recv().await.unwrap_or(Err(Error::Stopped))
    }

    /// The same publish, awaited by blocking a thread (one that runs no async code).
    pub fn into_blocking(self) -> BlockingPending {
        BlockingPending { rx: self.rx }
    }
}

/// A publish on its way (blocking runtime); [`BlockingPending::wait`] tells how it ended.
#[derive(Debug)]
#[must_use = "a publish's acknowledgement (or its refusal) is only known through its Pending"]
pub struct BlockingPending {
    rx: Answer<Ack>,
}

impl BlockingPending {
    /// Wraps the receiving end of a reply.
    #[cfg(feature = "blocking")]
    pub(crate) fn from_receiver(rx: Answer<Ack>) -> BlockingPending {
        BlockingPending { rx }
    }

    /// The packet identifier of a QoS 1/2 message once the session has taken it; see
    /// [`Pending::packet_id`].
    pub fn packet_id(&self) -> Option<PacketId> {
        PacketId::new(self.rx.tag())
    }

    /// Blocks the thread until the acknowledgement the message's QoS requires.
    pub fn wait(self) -> Result<Ack, Error> {
        self.rx.recv_blocking().unwrap_or(Err(Error::Stopped))
    }
}

/// The stream of what a client's session reports (async runtimes): messages, connects,
/// reconnects, disconnects; read it with [`Events::recv`]`.await`.
///
/// Acknowledgements are not in it: they complete [`Pending`] and the subscribe calls. The one
/// exception is the SUBACK of the session's own re-subscription after a reconnect (no call
/// waits for it): it arrives as [`Event::Subscribed`]. Read it
/// or drop it: while [`CLIENT_EVENTS`] events wait unread, the client stops reading and
/// writing its socket (and so, once [`CLIENT_COMMANDS`] commands wait, stops taking commands).
///
/// It is not an [`Iterator`]: a blocking `for event in events` inside async code would block
/// the executor's thread (and, on a current-thread runtime, the client's own driver). To read
/// events on a thread of their own, turn it into [`BlockingEvents`] with
/// [`Events::into_blocking`].
///
/// ```compile_fail
/// async fn inside_async_code(events: tinymqtt::runtimes::Events) {
///     for event in events {} // would block the executor: Events is no Iterator
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Events {
    rx: async_channel::Receiver<Event>,
}

impl Events {
    /// Wraps the receiving end of the event channel.
    #[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
    pub(crate) fn from_receiver(rx: async_channel::Receiver<Event>) -> Events {
        Events { rx }
    }

    /// The next event; `None` once the client has stopped and every event was read.
    pub async fn recv(&self) -> Option<Event> {
        self.rx.recv().await.ok()
    }

    /// The next event if one is queued now.
    pub fn try_recv(&self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// The same events, read by blocking a thread (one that runs no async code).
    pub fn into_blocking(self) -> BlockingEvents {
        BlockingEvents { rx: self.rx }
    }
}

/// The events of a client read by blocking a thread: an [`Iterator`] (the blocking runtime's
/// `Events`, or [`Events::into_blocking`]). The same caps as [`Events`] apply.
#[derive(Debug, Clone)]
pub struct BlockingEvents {
    rx: async_channel::Receiver<Event>,
}

impl BlockingEvents {
    /// Wraps the receiving end of the event channel.
    #[cfg(feature = "blocking")]
    pub(crate) fn from_receiver(rx: async_channel::Receiver<Event>) -> BlockingEvents {
        BlockingEvents { rx }
    }

    /// Blocks the thread until the next event; `None` once the client has stopped.
    pub fn recv(&self) -> Option<Event> {
        self.rx.recv_blocking().ok()
    }

    /// [`BlockingEvents::recv`], giving up after `timeout` (then `None` too).
    pub fn recv_timeout(&self, timeout: std::time::Duration) -> Option<Event> {
        let recv = std::pin::pin!(self.rx.recv());
        block_until(recv, Some(now() + timeout))?.ok()
    }

    /// The next event if one is queued now.
    pub fn try_recv(&self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

impl Iterator for BlockingEvents {
    type Item = Event;

    /// Blocks the thread until the next event.
    fn next(&mut self) -> Option<Event> {
        self.recv()
    }
}

pub(crate) use park::block_until;

/// Waiting on futures by blocking a thread.
mod park {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};
    use std::thread;
    use std::time::Instant;

    use super::now;

    /// Wakes the thread that polls a future in [`block_until`].
    struct Unpark(thread::Thread);

    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }

    /// Polls `f` on this thread until it completes, or `None` once `deadline` has passed (the
    /// future is kept: poll it again later).
    pub(crate) fn block_until<F: Future>(
        mut f: Pin<&mut F>,
        deadline: Option<Instant>,
    ) -> Option<F::Output> {
        let waker = Waker::from(Arc::new(Unpark(thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return Some(v);
            }
            match deadline {
                None => thread::park(),
                Some(d) => {
                    let left = d.saturating_duration_since(now());
                    if left.is_zero() {
                        return None;
                    }
                    thread::park_timeout(left);
                }
            }
        }
    }
}

/// The time, for the runtimes (the core never reads the clock).
#[allow(clippy::disallowed_methods)]
pub(crate) fn now() -> Instant {
    Instant::now()
}

#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
pub(crate) use asyncrt::{wait, Woke};
#[cfg(all(
    feature = "broker",
    any(feature = "tokio", feature = "smol", feature = "async-std")
))]
pub(crate) use asyncrt::{wait_fair, Alarm};
#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
pub use asyncrt::{Listener, Reader, Runtime, Writer};

/// What an async runtime binds: sockets, a timer and spawn.
#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
mod asyncrt {
    use std::future::{poll_fn, Future};
    use std::io;
    use std::net::SocketAddr;
    use std::pin::{pin, Pin};
    use std::task::{Context, Poll};
    use std::time::Instant;

    /// The read half of a TCP connection.
    pub trait Reader: Send + 'static {
        /// Reads some bytes into `buf` if there are any (`Ok(0)` is the end of the stream), or
        /// arranges for the task to wake when there are: `AsyncRead::poll_read`.
        ///
        /// The broker lends `buf` only for this call (no task waits holding a buffer), so an
        /// idle connection holds none. A read shorter than `buf` should tell the binding the
        /// socket is drained (tokio's `poll_read` does), so that the next poll waits for the
        /// readiness event instead of trying a read that finds nothing.
        fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;

        /// Like [`Reader::poll_read`], but tries the socket even if the last read drained it
        /// and no readiness event came since (it may be on its way): the broker reads what a
        /// client sent before it applies mail that ends the connection.
        fn poll_read_now(
            &mut self,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_read(cx, buf)
        }

        /// Reads some bytes; `Ok(0)` is the end of the stream.
        fn read<'a>(
            &'a mut self,
            buf: &'a mut [u8],
        ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
            poll_fn(move |cx| self.poll_read(cx, buf))
        }
    }

    /// The write half of a TCP connection.
    pub trait Writer: Send + 'static {
        /// Writes all of `buf`.
        fn write_all<'a>(
            &'a mut self,
            buf: &'a [u8],
        ) -> impl Future<Output = io::Result<()>> + Send + 'a;
        /// Flushes and shuts the write side down (the peer reads the end of the stream).
        fn close(&mut self) -> impl Future<Output = ()> + Send + '_;
    }

    /// A bound TCP listener.
    pub trait Listener: Send + 'static {
        /// The read half of an accepted connection.
        type Reader: Reader;
        /// The write half of an accepted connection.
        type Writer: Writer;
        /// Accepts the next connection.
        fn accept(
            &mut self,
        ) -> impl Future<Output = io::Result<(Self::Reader, Self::Writer)>> + Send + '_;
    }

    /// What a runtime binds for the driver: sockets, a timer and spawn.
    ///
    /// Each runtime module implements it on a marker type; the driver's [`Client`](super::Client)
    /// and [`Server`](super::Server) are generic over it.
    pub trait Runtime: Send + Sync + 'static {
        /// The read half of a connection.
        type Reader: Reader;
        /// The write half of a connection.
        type Writer: Writer;
        /// A listener whose connections have the same halves.
        type Listener: Listener<Reader = Self::Reader, Writer = Self::Writer>;
        /// The addresses of a host name, resolved now (on every connect and reconnect).
        fn resolve(
            host: String,
            port: u16,
        ) -> impl Future<Output = io::Result<Vec<SocketAddr>>> + Send;
        /// Opens a TCP connection (with `TCP_NODELAY`).
        fn connect(
            addr: SocketAddr,
        ) -> impl Future<Output = io::Result<(Self::Reader, Self::Writer)>> + Send;
        /// Binds a listener; returns it and its local address.
        fn bind(
            addr: SocketAddr,
        ) -> impl Future<Output = io::Result<(Self::Listener, SocketAddr)>> + Send;
        /// Completes at `deadline`.
        fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send;
        /// Runs `future` in the background.
        fn spawn(future: impl Future<Output = ()> + Send + 'static);
        /// Whether the executor runs the task woken last before those woken earlier (tokio's
        /// LIFO slot). The broker's router then wakes connections in the reverse order of
        /// their mail, so that a delivery is written before the acknowledgement it released
        /// (about 10 µs less median latency at QoS 1 on tokio, measured with `load latency`).
        const RUNS_LAST_WOKEN_FIRST: bool = false;
    }

    /// Which of the futures given to [`wait`] completed first.
    pub(crate) enum Woke<A, B> {
        /// The first.
        First(A),
        /// The second.
        Second(B),
        /// The deadline passed.
        Deadline,
    }

    /// Waits for the first of `a`, `b` (when given) and `deadline` (when given).
    ///
    /// The other futures are dropped, so both must be cancel-safe (channel receives and socket
    /// reads are).
    pub(crate) async fn wait<R: Runtime, A, B>(
        a: impl Future<Output = A>,
        b: Option<impl Future<Output = B>>,
        deadline: Option<Instant>,
    ) -> Woke<A, B> {
        let sleep = pin!(None);
        let mut alarm = Alarm::new(sleep);
        alarm.arm(deadline, R::sleep_until);
        wait_fair(a, b, &mut alarm, &mut false).await
    }

    /// [`wait`] for a loop with two busy sources, on the loop's [`Alarm`]: a fired alarm wins,
    /// then `a` and `b` take turns at being polled first (`turn` flips on every call), so
    /// neither can starve the other nor the timers.
    pub(crate) async fn wait_fair<A, B, F: Future<Output = ()>>(
        a: impl Future<Output = A>,
        b: Option<impl Future<Output = B>>,
        alarm: &mut Alarm<'_, F>,
        turn: &mut bool,
    ) -> Woke<A, B> {
        let b_first = *turn;
        *turn = !*turn;
        let mut a = pin!(a);
        let mut b = pin!(b);
        poll_fn(|cx| {
            if alarm.poll_fired(cx) {
                return Poll::Ready(Woke::Deadline);
            }
            for round in 0..2 {
                if (round == 0) == b_first {
                    if let Some(b) = b.as_mut().as_pin_mut() {
                        if let Poll::Ready(v) = b.poll(cx) {
                            return Poll::Ready(Woke::Second(v));
                        }
                    }
                } else if let Poll::Ready(v) = a.as_mut().poll(cx) {
                    return Poll::Ready(Woke::First(v));
                }
            }
            Poll::Pending
        })
        .await
    }

    /// A loop's timer, kept across its turns.
    ///
    /// [`Alarm::arm`] makes a new timer only when the deadline is earlier than the running
    /// one's (or none runs): a deadline that moves later (the keep-alive, on every packet)
    /// keeps the timer, which then fires early, and a spurious timeout is a no-op for the
    /// sans-IO machines. A new timer on every turn costs a timer-wheel update (and a lock) to
    /// arm and another to drop.
    pub(crate) struct Alarm<'a, F> {
        /// The timer (the loop pins it: `Alarm::new(pin!(None))`).
        sleep: Pin<&'a mut Option<F>>,
        /// When it fires.
        at: Option<Instant>,
    }

    impl<'a, F: Future<Output = ()>> Alarm<'a, F> {
        /// No timer yet.
        pub(crate) fn new(sleep: Pin<&'a mut Option<F>>) -> Self {
            Alarm { sleep, at: None }
        }

        /// Makes sure the alarm fires at `deadline` or earlier; `timer` makes a timer (the
        /// runtime's `sleep_until`). Without a deadline a running timer is kept (it will only
        /// wake the loop once for nothing).
        pub(crate) fn arm(&mut self, deadline: Option<Instant>, timer: impl FnOnce(Instant) -> F) {
            let Some(d) = deadline else { return };
            if self.at.is_none_or(|at| d < at) {
                self.sleep.set(Some(timer(d)));
                self.at = Some(d);
            }
        }

        /// Whether the timer fired (it is then gone: the next [`Alarm::arm`] makes one).
        pub(crate) fn poll_fired(&mut self, cx: &mut Context<'_>) -> bool {
            let Some(s) = self.sleep.as_mut().as_pin_mut() else {
                return false;
            };
            if s.poll(cx).is_pending() {
                return false;
            }
            self.sleep.set(None);
            self.at = None;
            true
        }
    }
}
