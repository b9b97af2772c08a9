//! The async broker: an accept task per listener, one task per connection that owns its
//! [`ServerConnection`] (socket reads and writes, decoding, encoding, keep-alive), and one
//! router task that owns the [`Router`](crate::broker::Router) and only routes.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use super::broker::{
    drain_connection, taken, BrokerHandle, BrokerOptions, Control, Drained, EventHook, MailQueue,
    Mailbox, Queued, Report, RouterCore, Traffic, TransportHook,
};
use super::checks::{Checks, Running};
use super::post::{Letters, Post};
use super::transport::{
    self, Gauge, Held, Link, ListenerConfig, ListenerStats, Reloader, SharedAcceptor,
    TransportError,
};
use super::writer::{self, StoreWriter};
use super::{answer, now, wait, wait_fair, Alarm, Listener, Reader, Runtime, Woke, Writer};
use super::{READ_CHUNK, ROUTER_INBOX};
use crate::broker::{Broker, BrokerConfig, ConnectionMail, RouterMail, ServerConnection};

/// An MQTT broker on an async runtime: listeners bound, routing once [`Server::run`] runs.
pub struct Server<R: Runtime> {
    broker: Broker,
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

    /// Binds `addrs` for `broker` (built with its authenticator and authorizer); its router
    /// runs in the router task, its connections each in their own task.
    ///
    /// With [`BrokerOptions::persistence`], the broker is first restored from its store and
    /// the store's writer thread starts; a store that cannot be opened or read fails here with
    /// an error naming its file, and so does a [`BrokerOptions::fsync`] that does not match
    /// the broker's `durable_acks`.
    pub async fn bind_with(
        broker: Broker,
        options: BrokerOptions,
        addrs: &[SocketAddr],
    ) -> io::Result<Self> {
        let listeners = addrs.iter().map(|a| ListenerConfig::plain(*a));
        Self::bind_listeners(broker, options, &listeners.collect::<Vec<_>>()).await
    }

    /// [`Server::bind_with`] for listeners that may speak TLS and WebSocket; a certificate or
    /// key that cannot be used fails here, naming its file and the reason.
    pub async fn bind_listeners(
        mut broker: Broker,
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
        let store = writer::start(&options, &mut broker, wake)?;
        let mut listeners = Vec::new();
        let mut bound = Vec::new();
        for (c, acceptor) in configs.iter().zip(acceptors) {
            let (l, local) = R::bind(c.bind).await?;
            listeners.push((l, acceptor));
            bound.push(local);
        }
        let (handle, signal) = BrokerHandle::new();
        Ok(Server {
            broker,
            options,
            listeners,
            reloader,
            stats: ListenerStats::new(&bound),
            addrs: bound,
            handle,
            signal,
            store,
            inbox,
        })
    }

    /// The bound addresses (with the ports the system chose for port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
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

/// The router's end of a connection's post; dropping it closes the post (at shutdown too).
struct Queue {
    post: Arc<Post>,
}

impl MailQueue for Queue {
    fn try_push(&self, batch: Vec<ConnectionMail>) -> Result<(), Vec<ConnectionMail>> {
        self.post.push(batch)
    }

    fn abort(&self) {
        self.post.kill();
    }

    /// Nothing more: the router drops the queue next, which closes the post, and the
    /// connection shuts down once it has taken what was in it.
    fn shutdown(&self) {}
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.post.close();
    }
}

/// What reaches the router task.
enum Inbox<R: Runtime> {
    Accept(R::Reader, R::Writer, Option<Box<Link>>, Held),
    Report(Report),
    /// The store writer handed tickets back (or stopped).
    Stored,
}

/// Runs the broker until the handle's channel closes.
async fn run<R: Runtime>(server: Server<R>) {
    let Server {
        broker,
        options,
        listeners,
        handle,
        signal,
        store,
        inbox: (inbox_tx, inbox_rx),
        stats,
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
    let mut core = RouterCore::new(
        broker.into_router(now()),
        &options,
        store,
        R::RUNS_LAST_WOKEN_FIRST,
    );
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
        let (inbox, control) = (inbox_rx.recv(), Some(signal.recv()));
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
            Woke::Second(Ok(Control::Stats(reply))) => answer(reply, Ok(core.router.stats())),
            Woke::First(Err(_)) | Woke::Second(Err(_)) => break,
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

/// A transport connected: its connection is registered with the router and runs in a task
/// of its own.
fn accept<R: Runtime>(
    core: &mut RouterCore<Queue>,
    now: Instant,
    (reader, writer, link, held): (R::Reader, R::Writer, Option<Box<Link>>, Held),
    options: &BrokerOptions,
    inbox: &async_channel::Sender<Inbox<R>>,
    done: &async_channel::Sender<()>,
) {
    let conn = core.accept(now);
    let post = Arc::new(Post::default());
    let queued = Arc::new(Queued::default());
    let queue = Queue { post: post.clone() };
    core.register(conn.id(), Mailbox::new(queue, queued.clone()));
    R::spawn(connection::<R>(Conn {
        reader,
        writer,
        link,
        _held: held,
        transport_hook: options.on_transport_error.clone(),
        conn,
        mail: post,
        queued,
        inbox: inbox.clone(),
        hook: options.on_event.clone(),
        checks: core.checks.clone(),
        _done: done.clone(),
    }));
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

/// Mail batches a connection task takes in one wake before it writes.
const MAIL_PER_WAKE: usize = 32;

/// A connection task's state.
struct Conn<R: Runtime> {
    reader: R::Reader,
    writer: R::Writer,
    /// TLS and/or WebSocket between the socket and the connection (boxed: a plain
    /// connection's task stays small).
    link: Option<Box<Link>>,
    /// Counted among its listener's open connections while the task runs.
    _held: Held,
    /// Told why a transport failed.
    transport_hook: Option<TransportHook>,
    conn: ServerConnection,
    /// Router mail, the kill when the connection is too slow, and the close at shutdown.
    mail: Arc<Post>,
    queued: Arc<Queued>,
    inbox: async_channel::Sender<Inbox<R>>,
    hook: Option<EventHook>,
    /// Where deferred credentials checks run.
    checks: Arc<Checks>,
    /// Dropped when the connection has flushed.
    _done: async_channel::Sender<()>,
}

/// What woke a connection task.
enum Wake {
    /// Bytes, mail or both went into the connection.
    Input,
    /// The socket's read side ended or failed.
    Ended,
    /// The transport refused the peer's bytes (TLS, WebSocket).
    Failed(TransportError),
    /// The post is closed and empty: the server is shutting down.
    Closed,
    /// The router closed the connection as too slow.
    Killed,
    Deadline,
}

/// The connection task: reads, router mail and its own deadlines go into the connection; what
/// it transmits is written here (once per wake, whatever woke it), and all the mail one wake
/// produced goes to the router as one report. A full router inbox makes this task wait, so
/// it stops reading its socket.
///
/// The ends (`abort`, `shut_down`) are boxed when they start: inline, each would hold a second
/// `Conn` in this future, which every idle connection's task carries.
#[allow(clippy::manual_async_fn)] // deliberately not an async fn: see the first comment
fn connection<R: Runtime>(mut c: Conn<R>) -> impl Future<Output = ()> + Send {
    // Not an `async fn`: that would keep `c` twice in the future, as the argument and as
    // the local it is moved into (rust-lang/rust#62958): 800 more bytes per connection.
    async move {
        let id = c.conn.id();
        let mut traffic = Traffic::new(now());
        let sleep = pin!(None);
        let mut alarm = Alarm::new(sleep);
        loop {
            let Drained {
                transmit,
                mut mail,
                close,
            } = drain_connection(&mut c.conn, c.hook.as_ref());
            let deadline = write_deadline(c.conn.poll_timeout());
            for b in &transmit {
                if send(&mut c, b, deadline).await.is_err() {
                    // A write error, or killed as too slow: the transport failed.
                    return Box::pin(abort(c, traffic, mail)).await;
                }
                traffic.sent += b.len() as u64;
            }
            if c.link.as_ref().is_some_and(|l| l.has_wire())
                && send(&mut c, &[], deadline).await.is_err()
            {
                return Box::pin(abort(c, traffic, mail)).await;
            }
            // Not held while the task waits.
            drop(transmit);
            if close {
                mail.extend(take_back(&mut c));
            }
            if let Some(r) = traffic.report(now(), id, mail, close) {
                if c.inbox.send(Inbox::Report(r)).await.is_err() {
                    // The router has stopped: the server is shutting down.
                    return Box::pin(shut_down(c)).await;
                }
            }
            if close {
                if let Some(link) = &mut c.link {
                    link.close();
                    let _ = send(&mut c, &[], deadline).await;
                }
                c.writer.close().await;
                return;
            }
            if let Some(check) = c.conn.poll_credentials() {
                match check_credentials::<R>(&mut c.conn, &c.checks, &c.mail, check).await {
                    None => {}
                    Some(Letters::Killed) => return Box::pin(abort(c, traffic, Vec::new())).await,
                    Some(Letters::Closed) => return Box::pin(shut_down(c)).await,
                    // No mail comes before the router has the CONNECT; were it to, the
                    // abandoned check leaves the connect timeout to end the connection.
                    Some(Letters::Mail(batches)) => hand_over(&mut c.conn, &c.queued, batches),
                }
                continue;
            }
            alarm.arm(c.conn.poll_timeout(), R::sleep_until);
            match next(&mut c, &mut alarm, &mut traffic).await {
                Wake::Input => {}
                Wake::Ended => c.conn.handle_transport_closed(now()),
                Wake::Failed(e) => {
                    if let Some(h) = &c.transport_hook {
                        h(&e);
                    }
                    // The alert or HTTP answer that tells the peer why.
                    let _ = send(&mut c, &[], write_deadline(None)).await;
                    c.conn.handle_transport_closed(now());
                }
                Wake::Closed => return Box::pin(shut_down(c)).await,
                Wake::Killed => return Box::pin(abort(c, traffic, Vec::new())).await,
                Wake::Deadline => c.conn.handle_timeout(now()),
            }
        }
    }
}

/// Runs a deferred credentials check away from this task (on the pool, or the async hook's
/// future here) and hands the verdict to the connection; its connect timeout bounds the wait.
/// The socket is not read meanwhile: nothing but the CONNECT is owed an answer yet. What
/// comes to the post first (the kill, the shutdown's close) ends the wait and is returned.
async fn check_credentials<R: Runtime>(
    conn: &mut ServerConnection,
    checks: &Checks,
    post: &Post,
    check: crate::broker::CredentialCheck,
) -> Option<Letters> {
    let deadline = conn.poll_timeout();
    let letters = poll_fn(|cx| post.poll_take(cx, MAIL_PER_WAKE));
    let woke = match checks.start(check) {
        Running::Busy => Woke::First(Err(crate::ReasonCode::ServerBusy)),
        Running::Pool(rx) => match wait::<R, _, _>(rx.recv(), Some(letters), deadline).await {
            Woke::First(v) => Woke::First(v.unwrap_or(Err(crate::ReasonCode::ServerUnavailable))),
            Woke::Second(l) => Woke::Second(l),
            Woke::Deadline => Woke::Deadline,
        },
        Running::Hook(fut, _slot) => wait::<R, _, _>(fut, Some(letters), deadline).await,
    };
    match woke {
        Woke::First(v) => conn.handle_credentials(now(), v),
        Woke::Second(l) => return Some(l),
        Woke::Deadline => conn.handle_timeout(now()),
    }
    None
}

/// The least time a blocked write to a peer is given before the connection is dropped.
const MIN_WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long the writes of one wake may wait for a peer that does not read: until the
/// connection's next deadline (its keep-alive), and at least [`MIN_WRITE_WAIT`].
fn write_deadline(next: Option<Instant>) -> Instant {
    let least = now() + MIN_WRITE_WAIT;
    next.map_or(least, |at| at.max(least))
}

/// Writes the connection's `buf` through its link (if any), with what the link has to send,
/// within `deadline` (see [`write`]).
async fn send<R: Runtime>(c: &mut Conn<R>, buf: &[u8], deadline: Instant) -> Result<(), ()> {
    let Some(link) = &mut c.link else {
        return write::<R>(&mut c.writer, &c.mail, buf, deadline).await;
    };
    if !buf.is_empty() {
        link.send(buf).map_err(drop)?;
    }
    let wire = link.take_wire();
    if wire.is_empty() {
        return Ok(());
    }
    write::<R>(&mut c.writer, &c.mail, &wire, deadline).await
}

/// Writes `buf`, unless the connection is killed first, mail that closes it arrives (a
/// takeover), or `deadline` passes: it may be stuck writing to a peer that does not read,
/// and that must not keep its session, its takeover or the router waiting.
async fn write<R: Runtime>(
    writer: &mut R::Writer,
    post: &Post,
    buf: &[u8],
    deadline: Instant,
) -> Result<(), ()> {
    let mut write = pin!(writer.write_all(buf));
    let mut expired = pin!(R::sleep_until(deadline));
    poll_fn(|cx| match write.as_mut().poll(cx) {
        Poll::Ready(r) => Poll::Ready(r.map_err(drop)),
        Poll::Pending => {
            if expired.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(()));
            }
            post.poll_killed(cx).map(Err)
        }
    })
    .await
}

thread_local! {
    /// The buffer connection tasks read into on this thread: lent to one poll of a socket,
    /// which hands the bytes to the connection before it returns (no task waits holding it),
    /// so an idle connection holds no read buffer.
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Polls the socket for what it has now (at most [`READ_CHUNK`] bytes), read into the
/// thread's buffer and handed to the connection; `Ok(0)` is the end of the stream.
fn poll_input(
    reader: &mut impl Reader,
    link: Option<&mut Link>,
    conn: &mut ServerConnection,
    cx: &mut Context<'_>,
    now_too: bool,
) -> Poll<Result<usize, Input>> {
    READ_BUF.with_borrow_mut(|buf| {
        if buf.is_empty() {
            buf.resize(READ_CHUNK, 0);
        }
        let read = if now_too {
            reader.poll_read_now(cx, buf)
        } else {
            reader.poll_read(cx, buf)
        }
        .map_err(Input::Io);
        let Poll::Ready(Ok(n @ 1..)) = read else {
            return read;
        };
        let Some(link) = link else {
            conn.handle_input(now(), &buf[..n]);
            return read;
        };
        let mut app = Vec::new();
        match link.input(&buf[..n], &mut app) {
            Ok(open) => {
                if let Some(name) = link.take_identity() {
                    conn.set_peer_identity(name);
                }
                if !app.is_empty() {
                    conn.handle_input(now(), &app);
                }
                if open {
                    read
                } else {
                    Poll::Ready(Ok(0))
                }
            }
            Err(e) => Poll::Ready(Err(Input::Transport(e))),
        }
    })
}

/// Why a read gave nothing to the connection.
enum Input {
    Io(io::Error),
    Transport(TransportError),
}

/// Waits until the connection has something to do and hands it what is there: a passed
/// deadline wins, then the kill; otherwise the mail in the post and the bytes the socket has
/// both go into the connection in the same wake, so that they are answered by one write.
async fn next<R: Runtime, F: Future<Output = ()>>(
    c: &mut Conn<R>,
    alarm: &mut Alarm<'_, F>,
    traffic: &mut Traffic,
) -> Wake {
    poll_fn(|cx| {
        if alarm.poll_fired(cx) {
            return Poll::Ready(Wake::Deadline);
        }
        let mut woke = false;
        let mail = match c.mail.poll_take(cx, MAIL_PER_WAKE) {
            Poll::Ready(Letters::Killed) => return Poll::Ready(Wake::Killed),
            Poll::Ready(Letters::Closed) => return Poll::Ready(Wake::Closed),
            Poll::Ready(Letters::Mail(batches)) => Some(batches),
            Poll::Pending => None,
        };
        // Input before mail: what the client sent before the router's mail was written is
        // applied first (a DISCONNECT before a takeover's close, say), so what one client sends
        // on consecutive connections reaches the router in that order. Mail that ends the
        // connection makes the read try the socket even without a readiness event yet.
        let now_too = mail
            .as_ref()
            .is_some_and(|b| b.iter().flatten().any(ConnectionMail::ends_connection));
        let (mut ended, mut failed) = (false, None);
        // Not before the session is accepted, past about one CONNECT's worth: the socket
        // waits (the post wakes this task when the router answers).
        let input = if c.conn.wants_input() {
            poll_input(
                &mut c.reader,
                c.link.as_deref_mut(),
                &mut c.conn,
                cx,
                now_too,
            )
        } else {
            Poll::Pending
        };
        match input {
            Poll::Ready(Ok(0)) => ended = true,
            Poll::Ready(Ok(n)) => {
                traffic.received += n as u64;
                woke = true;
            }
            // Nothing after all: poll again (a binding's read that says so instead of
            // pending has registered no wake).
            Poll::Ready(Err(Input::Io(e)))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                cx.waker().wake_by_ref();
            }
            Poll::Ready(Err(Input::Io(_))) => ended = true,
            Poll::Ready(Err(Input::Transport(e))) => failed = Some(e),
            Poll::Pending => {}
        }
        // Mail taken is always handed over (a delivery goes back to the session from there).
        if let Some(batches) = mail {
            hand_over(&mut c.conn, &c.queued, batches);
            woke = true;
        }
        if let Some(e) = failed {
            return Poll::Ready(Wake::Failed(e));
        }
        if ended {
            return Poll::Ready(Wake::Ended);
        }
        if woke {
            Poll::Ready(Wake::Input)
        } else {
            Poll::Pending
        }
    })
    .await
}

/// Gives the connection the batches taken from its post.
fn hand_over(
    conn: &mut ServerConnection,
    queued: &Queued,
    batches: impl IntoIterator<Item = Vec<ConnectionMail>>,
) {
    let at = now();
    for batch in batches {
        taken(queued, &batch);
        for m in batch {
            conn.handle_router(at, m);
        }
    }
}

/// The connection has closed: its post is closed (what the router sends from now on comes
/// back to it as undelivered), and what is still in it goes to the closed connection, which
/// hands its deliveries back; that mail follows the connection's `Closed`.
fn take_back<R: Runtime>(c: &mut Conn<R>) -> Vec<RouterMail> {
    c.mail.close();
    hand_over(&mut c.conn, &c.queued, c.mail.take_all());
    std::iter::from_fn(|| c.conn.poll_router()).collect()
}

/// The transport failed (or the router closed the connection as too slow): the session ends
/// abnormally (its will goes out) and the socket is dropped unflushed.
async fn abort<R: Runtime>(mut c: Conn<R>, mut traffic: Traffic, mut mail: Vec<RouterMail>) {
    c.conn.handle_transport_closed(now());
    let d = drain_connection(&mut c.conn, c.hook.as_ref());
    mail.extend(d.mail);
    mail.extend(take_back(&mut c));
    if let Some(r) = traffic.report(now(), c.conn.id(), mail, true) {
        let _ = c.inbox.send(Inbox::Report(r)).await;
    }
}

/// The graceful shutdown of one connection: DISCONNECT 0x8B to an MQTT 5 client, no will
/// (the router routes nothing more), then the socket is flushed and closed.
async fn shut_down<R: Runtime>(mut c: Conn<R>) {
    c.conn.shutdown(now());
    let d = drain_connection(&mut c.conn, c.hook.as_ref());
    let deadline = write_deadline(None);
    for b in &d.transmit {
        if send(&mut c, b, deadline).await.is_err() {
            return;
        }
    }
    if let Some(link) = &mut c.link {
        link.close();
        let _ = send(&mut c, &[], deadline).await;
    }
    c.writer.close().await;
}
