//! A connection's task: it owns its `ServerConnection`, reads, writes and keeps its
//! deadlines, and reports its mail to the router task.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;

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

    fn queued(&self) -> &Queued {
        &self.post.queued
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.post.close();
    }
}

/// What every connection task of a server shares: one allocation, and one pointer in each
/// task instead of five fields.
pub(super) struct Shared<R: Runtime> {
    inbox: async_channel::Sender<Inbox<R>>,
    /// Told of the connections' events, with their listener in `Connected` (see [`drain`]).
    hook: Option<EventHook>,
    /// Told why a transport failed.
    transport_hook: Option<TransportHook>,
    /// Where deferred credentials checks run.
    checks: Arc<Checks>,
    /// Dropped when the server and every connection have let go of this: each connection has
    /// flushed.
    _done: async_channel::Sender<()>,
}

impl<R: Runtime> Shared<R> {
    /// What the connections of a server with `options` share; `done` closes once the last
    /// of them and the server have dropped theirs.
    pub(super) fn new(
        options: &BrokerOptions,
        inbox: async_channel::Sender<Inbox<R>>,
        checks: Arc<Checks>,
        done: async_channel::Sender<()>,
    ) -> Arc<Self> {
        Arc::new(Shared {
            inbox,
            hook: options.on_event.clone(),
            transport_hook: options.on_transport_error.clone(),
            checks,
            _done: done,
        })
    }
}

/// A transport connected: its connection is registered with the router and runs in a task
/// of its own.
pub(super) fn accept<R: Runtime>(
    core: &mut RouterCore<Queue>,
    now: Instant,
    (reader, writer, link, held): (R::Reader, R::Writer, Option<Box<Link>>, Held),
    shared: &Arc<Shared<R>>,
) {
    let conn = core.accept(now);
    core.router.set_listener(conn.id(), held.listener());
    let post = Arc::new(Post::default());
    let queue = Queue { post: post.clone() };
    core.register(conn.id(), Mailbox::new(queue));
    R::spawn(connection::<R>(Conn {
        reader,
        writer,
        link,
        held,
        conn,
        mail: post,
        shared: shared.clone(),
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
    conn: ServerConnection,
    /// Router mail, the kill when the connection is too slow, and the close at shutdown.
    mail: Arc<Post>,
    /// The router's inbox, the hooks, the credentials checks; dropped when the connection
    /// has flushed.
    shared: Arc<Shared<R>>,
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
            // What goes out is made in the call: moved into the write, not kept beside it.
            let out = outgoing(&mut c.link, transmit, &mut traffic);
            // A link's traffic is counted as it takes the packets; a socket's as it takes them.
            let counted = c.link.is_none().then_some(&mut traffic);
            if write_out(out, &mut c, counted, Wait::Connection)
                .await
                .is_err()
            {
                // A write error, or killed as too slow: the transport failed.
                return Box::pin(abort(c, traffic, mail)).await;
            }
            if close {
                mail.extend(take_back(&mut c));
            }
            let report = traffic.report(now(), c.conn.id(), mail, close);
            let stopped = match report.map(|r| report_now(&c.shared.inbox, r)) {
                None | Some(Sent::Done) => false,
                Some(Sent::Stopped) => true,
                Some(Sent::Full(wait)) => wait.await.is_err(),
            };
            if stopped {
                // The router has stopped: the server is shutting down.
                return Box::pin(shut_down(c)).await;
            }
            if close {
                // Boxed: once per connection, and inline it would stay in every idle task.
                let _ = Box::pin(close_link(&mut c)).await;
                c.writer.close().await;
                return;
            }
            // Boxed, the check and its wait: once per connection at most, and inline they
            // would stay in every idle connection's task.
            let check = c.conn.poll_credentials().map(Box::new);
            let end = if let Some(check) = check {
                let checking =
                    check_credentials::<R>(&mut c.conn, &c.shared.checks, &c.mail, *check);
                match Box::pin(checking).await {
                    None => None,
                    Some(Letters::Killed) => Some(End::Abort),
                    Some(Letters::Closed) => Some(End::ShutDown),
                    // No mail comes before the router has the CONNECT; were it to, the
                    // abandoned check leaves the connect timeout to end the connection.
                    Some(Letters::Mail(batches)) => {
                        hand_over(&mut c.conn, &c.mail.queued, batches);
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
                        if let Some(h) = &c.shared.transport_hook {
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
                    let out = outgoing(&mut c.link, Vec::new(), &mut traffic);
                    let _ = write_out(out, &mut c, None, Wait::Closing).await;
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
    let (hook, held) = (&c.shared.hook, &c.held);
    drain_connection_with(&mut c.conn, |e| {
        if let Some(h) = hook {
            listener_event(h, || held.listener(), e);
        }
    })
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

/// What a wake writes: `transmit` as it is, or what the connection's link made of it with
/// what the link has to send besides (a handshake's bytes, an alert), counted in `traffic` as
/// the packets' bytes; `None`: the link failed.
fn outgoing(
    link: &mut Option<Box<Link>>,
    transmit: Vec<Bytes>,
    traffic: &mut Traffic,
) -> Option<Vec<Bytes>> {
    let Some(link) = link else {
        return Some(transmit);
    };
    for b in &transmit {
        link.send(b).ok()?;
        traffic.sent += b.len() as u64;
    }
    let wire = link.take_wire();
    Some(if wire.is_empty() {
        Vec::new()
    } else {
        vec![Bytes::from(wire)]
    })
}

/// Ends the connection's link cleanly, if it has one (TLS close_notify, WebSocket close
/// frame).
async fn close_link<R: Runtime>(c: &mut Conn<R>) -> Result<(), ()> {
    let Some(link) = &mut c.link else {
        return Ok(());
    };
    link.close();
    let out = Some(vec![Bytes::from(link.take_wire())]);
    write_out(out, c, None, Wait::Closing).await
}

/// How long a write may wait for a peer that does not read (see [`write_deadline`]).
#[derive(Clone, Copy)]
enum Wait {
    /// Until the connection's next deadline, and at least [`MIN_WRITE_WAIT`].
    Connection,
    /// [`MIN_WRITE_WAIT`]: the connection is ending.
    Closing,
}

/// Writes `out` (counted in `traffic`, if given, as each piece goes), unless the connection
/// is killed first, mail that closes it arrives (a takeover), or the time `wait` gives passes:
/// it may be stuck writing to a peer that does not read, and that must not keep its session,
/// its takeover or the router waiting. `Err`: a write error, killed, the time passed, or no
/// `out` (the link failed).
///
/// A position is all it keeps while the socket is full (no write future, and the deadline is
/// only worked out then): what lives across this wait is laid out in every state of the
/// connection's task, the idle one too.
fn write_out<'a, R: Runtime>(
    out: Option<Vec<Bytes>>,
    c: &'a mut Conn<R>,
    mut traffic: Option<&'a mut Traffic>,
    wait: Wait,
) -> impl Future<Output = Result<(), ()>> + Send + 'a {
    // The piece being written and the bytes of it written (a piece is one packet, or a
    // link's bytes for one wake: far below 4 GiB).
    let (mut at, mut done) = (0u32, 0u32);
    // Made (boxed) only for a write that waits: most complete at once.
    let mut expired: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = None;
    poll_fn(move |cx| loop {
        let Some(out) = &out else {
            return Poll::Ready(Err(()));
        };
        let Some(piece) = out.get(at as usize) else {
            return Poll::Ready(Ok(()));
        };
        let rest = &piece[done as usize..];
        if rest.is_empty() {
            if let Some(t) = &mut traffic {
                t.sent += piece.len() as u64;
            }
            (at, done) = (at + 1, 0);
            continue;
        }
        match c.writer.poll_write(cx, rest) {
            Poll::Ready(Ok(n @ 1..)) => done += u32::try_from(n).unwrap_or(u32::MAX),
            // Nothing taken (`WriteZero`), or an error: the transport failed.
            Poll::Ready(_) => return Poll::Ready(Err(())),
            Poll::Pending => {
                let expired = expired.get_or_insert_with(|| {
                    let next = match wait {
                        Wait::Connection => c.conn.poll_timeout(),
                        Wait::Closing => None,
                    };
                    Box::pin(R::sleep_until(write_deadline(next)))
                });
                if expired.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(()));
                }
                return c.mail.poll_killed(cx).map(Err);
            }
        }
    })
}

/// How a report went to the router task.
enum Sent<'a> {
    Done,
    /// The router has stopped.
    Stopped,
    /// Its inbox is full: the wait for room, `Err` if the router stops meanwhile. Boxed: it
    /// is rare, and inline the report and the channel's waiter would stay in every idle
    /// connection's task.
    Full(Pin<Box<dyn Future<Output = Result<(), ()>> + Send + 'a>>),
}

/// Sends a report to the router task, or gives the wait for room in its inbox.
fn report_now<R: Runtime>(inbox: &async_channel::Sender<Inbox<R>>, r: Report) -> Sent<'_> {
    match inbox.try_send(Inbox::Report(r)) {
        Ok(()) => Sent::Done,
        Err(async_channel::TrySendError::Closed(_)) => Sent::Stopped,
        Err(async_channel::TrySendError::Full(r)) => {
            Sent::Full(Box::pin(async move { inbox.send(r).await.map_err(drop) }))
        }
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
///
/// Not an `async fn`: its arguments would be kept beside the wait, in the idle state.
fn next<'a, 'b: 'a, R: Runtime, F: Future<Output = ()>>(
    c: &'a mut Conn<R>,
    alarm: &'a mut Alarm<'b, F>,
    traffic: &'a mut Traffic,
) -> impl Future<Output = Wake> + use<'a, 'b, R, F> {
    poll_fn(move |cx| {
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
            hand_over(&mut c.conn, &c.mail.queued, batches);
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
    hand_over(&mut c.conn, &c.mail.queued, c.mail.take_all());
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
        let _ = c.shared.inbox.send(Inbox::Report(r)).await;
    }
}

/// The graceful shutdown of one connection: DISCONNECT 0x8B to an MQTT 5 client, no will
/// (the router routes nothing more), then the socket is flushed and closed.
async fn shut_down<R: Runtime>(mut c: Conn<R>) {
    c.conn.shutdown(now());
    let d = drain(&mut c);
    let mut traffic = Traffic::new(now());
    let out = outgoing(&mut c.link, d.transmit, &mut traffic);
    if write_out(out, &mut c, None, Wait::Closing).await.is_err()
        || close_link(&mut c).await.is_err()
    {
        return;
    }
    c.writer.close().await;
}

#[cfg(all(test, feature = "tokio"))]
mod tests {
    /// The size of what `f` returns.
    fn output_size<A, F>(_: fn(A) -> F) -> usize {
        size_of::<F>()
    }

    #[test]
    fn an_idle_connection_task_stays_small() {
        // One per connection, idle or not: tokio lays its task out in multiples of 128 bytes
        // (header and trailer 80, scheduler and id 16, then this future), so past 920 bytes
        // every connection costs 128 more. What only a busy or ending connection needs is
        // boxed or kept out of the states that wait.
        let size = output_size(super::connection::<crate::runtimes::tokio::Tokio>);
        assert!(size <= 920, "the connection task's future is {size} bytes");
    }
}
