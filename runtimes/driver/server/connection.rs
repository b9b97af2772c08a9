//! A connection's task: it owns its `ServerConnection`, reads, writes and keeps its
//! deadlines, and reports its mail to the router task.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::broker::{ConnectionMail, RouterMail, ServerConnection};
use crate::runtimes::driver::broker::RouterCore;
use crate::runtimes::driver::checks::{Checks, Running};
use crate::runtimes::driver::connection::{
    drain_connection_with, listener_event, Drained, Report, Traffic,
};
use crate::runtimes::driver::mailbox::{taken, MailQueue, Mailbox, Queued};
use crate::runtimes::driver::options::{BrokerOptions, EventHook, TransportHook};
use crate::runtimes::driver::post::{Letters, Post};
use crate::runtimes::driver::server::Inbox;
use crate::runtimes::driver::transport::{Held, Link, TransportError};
use crate::runtimes::driver::READ_CHUNK;
use crate::runtimes::driver::{now, wait, Alarm, Reader, Runtime, Woke, Writer};

/// The router's end of a connection's post; dropping it closes the post (at shutdown too).
pub(super) struct Queue {
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

/// A transport connected: its connection is registered with the router and runs in a task
/// of its own.
pub(super) fn accept<R: Runtime>(
    core: &mut RouterCore<Queue>,
    now: Instant,
    (reader, writer, link, held): (R::Reader, R::Writer, Option<Box<Link>>, Held),
    options: &BrokerOptions,
    inbox: &async_channel::Sender<Inbox<R>>,
    done: &async_channel::Sender<()>,
) {
    let conn = core.accept(now);
    core.router.set_listener(conn.id(), held.listener());
    let post = Arc::new(Post::default());
    let queued = Arc::new(Queued::default());
    let queue = Queue { post: post.clone() };
    core.register(conn.id(), Mailbox::new(queue, queued.clone()));
    R::spawn(connection::<R>(Conn {
        reader,
        writer,
        link,
        held,
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
    held: Held,
    /// Told why a transport failed.
    transport_hook: Option<TransportHook>,
    conn: ServerConnection,
    /// Router mail, the kill when the connection is too slow, and the close at shutdown.
    mail: Arc<Post>,
    queued: Arc<Queued>,
    inbox: async_channel::Sender<Inbox<R>>,
    /// Told of the connection's events, with its listener in `Connected` (see [`drain`]).
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
        let mut traffic = Traffic::new(now());
        let sleep = pin!(None);
        let mut alarm = Alarm::new(sleep);
        // What is live across two awaits is kept in every state of this future, the idle one
        // too: values matched on are dropped before the awaits their arms lead to (`End`).
        loop {
            let Drained {
                transmit,
                mut mail,
                close,
            } = drain(&mut c);
            let deadline = write_deadline(c.conn.poll_timeout());
            if write_out(&mut c, &mut traffic, transmit, deadline)
                .await
                .is_err()
            {
                // A write error, or killed as too slow: the transport failed.
                return Box::pin(abort(c, traffic, mail)).await;
            }
            if close {
                mail.extend(take_back(&mut c));
            }
            let stopped = match traffic.report(now(), c.conn.id(), mail, close) {
                Some(r) => report(&c.inbox, r).await.is_err(),
                None => false,
            };
            if stopped {
                // The router has stopped: the server is shutting down.
                return Box::pin(shut_down(c)).await;
            }
            if close {
                if let Some(link) = &mut c.link {
                    link.close();
                    let _ = send(&mut c, &[], deadline).await;
                }
                c.writer.close().await;
                return;
            }
            // Boxed, the check and its wait: once per connection at most, and inline they
            // would stay in every idle connection's task.
            let check = c.conn.poll_credentials().map(Box::new);
            let end = if let Some(check) = check {
                let checking = check_credentials::<R>(&mut c.conn, &c.checks, &c.mail, *check);
                match Box::pin(checking).await {
                    None => None,
                    Some(Letters::Killed) => Some(End::Abort),
                    Some(Letters::Closed) => Some(End::ShutDown),
                    // No mail comes before the router has the CONNECT; were it to, the
                    // abandoned check leaves the connect timeout to end the connection.
                    Some(Letters::Mail(batches)) => {
                        hand_over(&mut c.conn, &c.queued, batches);
                        None
                    }
                }
            } else {
                alarm.arm(c.conn.poll_timeout(), R::sleep_until);
                match next(&mut c, &mut alarm, &mut traffic).await {
                    Wake::Input => None,
                    Wake::Ended => {
                        c.conn.handle_transport_closed(now());
                        None
                    }
                    Wake::Failed(e) => {
                        if let Some(h) = &c.transport_hook {
                            h(&e);
                        }
                        Some(End::Alert)
                    }
                    Wake::Closed => Some(End::ShutDown),
                    Wake::Killed => Some(End::Abort),
                    Wake::Deadline => {
                        c.conn.handle_timeout(now());
                        None
                    }
                }
            };
            match end {
                None => {}
                Some(End::Alert) => {
                    // The alert or HTTP answer that tells the peer why.
                    let _ = send(&mut c, &[], write_deadline(None)).await;
                    c.conn.handle_transport_closed(now());
                }
                Some(End::ShutDown) => return Box::pin(shut_down(c)).await,
                Some(End::Abort) => return Box::pin(abort(c, traffic, Vec::new())).await,
            }
        }
    }
}

/// What a wake leaves the connection task to do once the value that woke it is dropped.
#[derive(Clone, Copy)]
enum End {
    /// The transport refused the peer's bytes: the alert that says why goes out, and the
    /// connection ends as if the transport closed.
    Alert,
    /// The server is shutting down.
    ShutDown,
    /// Killed as too slow.
    Abort,
}

/// Drains the connection (see [`drain_connection_with`]), its events told to the hook with
/// the listener: no hook of its own per connection.
fn drain<R: Runtime>(c: &mut Conn<R>) -> Drained {
    let (hook, held) = (&c.hook, &c.held);
    drain_connection_with(&mut c.conn, |e| {
        if let Some(h) = hook {
            listener_event(h, || held.listener(), e);
        }
    })
}

/// Writes what one wake transmits, then what the link has left to send (counted in
/// `traffic`); `Err`: a write error, or killed as too slow. `transmit` is dropped here: not
/// held while the task waits.
#[allow(clippy::manual_async_fn)] // not an async fn: its arguments would be kept twice
fn write_out<'a, R: Runtime>(
    c: &'a mut Conn<R>,
    traffic: &'a mut Traffic,
    transmit: Vec<bytes::Bytes>,
    deadline: Instant,
) -> impl Future<Output = Result<(), ()>> + Send + 'a {
    async move {
        for b in &transmit {
            send(c, b, deadline).await?;
            traffic.sent += b.len() as u64;
        }
        if c.link.as_ref().is_some_and(|l| l.has_wire()) {
            send(c, &[], deadline).await?;
        }
        Ok(())
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
#[allow(clippy::manual_async_fn)] // not an async fn: its arguments would be kept twice
fn send<'a, R: Runtime>(
    c: &'a mut Conn<R>,
    buf: &'a [u8],
    deadline: Instant,
) -> impl Future<Output = Result<(), ()>> + Send + 'a {
    async move {
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
}

/// Writes `buf`, unless the connection is killed first, mail that closes it arrives (a
/// takeover), or `deadline` passes: it may be stuck writing to a peer that does not read,
/// and that must not keep its session, its takeover or the router waiting.
#[allow(clippy::manual_async_fn)] // not an async fn: its arguments would be kept twice
fn write<'a, R: Runtime>(
    writer: &'a mut R::Writer,
    post: &'a Post,
    buf: &'a [u8],
    deadline: Instant,
) -> impl Future<Output = Result<(), ()>> + Send + 'a {
    async move {
        let mut write = pin!(writer.write_all(buf));
        // Made (boxed) only for a write that waits: most complete at once, and inline its timer
        // would stay in every idle connection's task.
        let mut expired = None;
        poll_fn(|cx| match write.as_mut().poll(cx) {
            Poll::Ready(r) => Poll::Ready(r.map_err(drop)),
            Poll::Pending => {
                let expired = expired.get_or_insert_with(|| Box::pin(R::sleep_until(deadline)));
                if expired.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(()));
                }
                post.poll_killed(cx).map(Err)
            }
        })
        .await
    }
}

/// Sends a report to the router task, waiting while its inbox is full; `Err`: the router
/// has stopped. The wait is boxed: it is rare, and inline the report and the channel's
/// waiter would stay in every idle connection's task.
async fn report<R: Runtime>(inbox: &async_channel::Sender<Inbox<R>>, r: Report) -> Result<(), ()> {
    match inbox.try_send(Inbox::Report(r)) {
        Ok(()) => Ok(()),
        Err(async_channel::TrySendError::Closed(_)) => Err(()),
        Err(async_channel::TrySendError::Full(r)) => Box::pin(inbox.send(r)).await.map_err(drop),
    }
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
            conn.handle_mail(at, m);
        }
    }
}

/// The connection has closed: its post is closed (what the router sends from now on comes
/// back to it as undelivered), and what is still in it goes to the closed connection, which
/// hands its deliveries back; that mail follows the connection's `Closed`.
fn take_back<R: Runtime>(c: &mut Conn<R>) -> Vec<RouterMail> {
    c.mail.close();
    hand_over(&mut c.conn, &c.queued, c.mail.take_all());
    std::iter::from_fn(|| c.conn.poll_mail()).collect()
}

/// The transport failed (or the router closed the connection as too slow): the session ends
/// abnormally (its will goes out) and the socket is dropped unflushed.
async fn abort<R: Runtime>(mut c: Conn<R>, mut traffic: Traffic, mut mail: Vec<RouterMail>) {
    c.conn.handle_transport_closed(now());
    let d = drain(&mut c);
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
    let d = drain(&mut c);
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
