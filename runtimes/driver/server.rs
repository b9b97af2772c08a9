//! The async broker: an accept task per listener, one task per connection that owns its
//! [`ServerConnection`] (socket reads and writes, decoding, encoding, keep-alive), and one
//! router task that owns the [`Router`](crate::broker::Router) and only routes.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Instant;

use super::broker::{
    drain_connection, taken, BrokerHandle, BrokerOptions, Control, Drained, EventHook, MailQueue,
    Mailbox, Queued, Report, RouterCore, Traffic,
};
use super::writer::{self, StoreWriter};
use super::{answer, now, wait, wait_fair, Listener, Reader, Runtime, Woke, Writer};
use super::{READ_CHUNK, ROUTER_INBOX};
use crate::broker::{Broker, BrokerConfig, ConnectionMail, RouterMail, ServerConnection};

/// An MQTT broker on an async runtime: listeners bound, routing once [`Server::run`] runs.
pub struct Server<R: Runtime> {
    broker: Broker,
    options: BrokerOptions,
    listeners: Vec<R::Listener>,
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
        mut broker: Broker,
        options: BrokerOptions,
        addrs: &[SocketAddr],
    ) -> io::Result<Self> {
        let inbox = async_channel::bounded::<Inbox<R>>(ROUTER_INBOX);
        let wake = inbox.0.clone();
        let wake = Box::new(move || {
            // A full inbox wakes the router anyway; it collects on every turn.
            let _ = wake.try_send(Inbox::Stored);
        });
        let store = writer::start(&options, &mut broker, wake)?;
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
            store,
            inbox,
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

/// The router's end of a connection's post; dropping it closes the post.
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

    /// Nothing to do: every connection watches the shared stop signal.
    fn shutdown(&self) {}
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.post.close();
    }
}

/// What the router sends one connection: its mail batches and the kill (too slow), in one
/// small shared box. Two async channels cost every connection ~1.5 KB, and an unbounded one
/// keeps a block of ~1 KB once used; an idle connection's post holds no allocation. The
/// router caps the batches itself (`RouterCore::drain` checks `Queued` before every push).
#[derive(Default)]
struct Post {
    letters: Mutex<Letters>,
    killed: AtomicBool,
    /// Rung on every batch, on the close and on the kill.
    bell: event_listener::Event,
}

/// The batches waiting in a [`Post`], and whether it is closed.
#[derive(Default)]
struct Letters {
    batches: VecDeque<Vec<ConnectionMail>>,
    closed: bool,
}

impl Post {
    fn letters(&self) -> std::sync::MutexGuard<'_, Letters> {
        self.letters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Posts a batch; a closed post gives it back.
    fn push(&self, batch: Vec<ConnectionMail>) -> Result<(), Vec<ConnectionMail>> {
        let mut l = self.letters();
        if l.closed {
            return Err(batch);
        }
        l.batches.push_back(batch);
        drop(l);
        self.bell.notify(usize::MAX);
        Ok(())
    }

    /// Closes the post: batches still in it can be taken, no more come.
    fn close(&self) {
        self.letters().closed = true;
        self.bell.notify(usize::MAX);
    }

    /// Kills the connection.
    fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.bell.notify(usize::MAX);
    }

    /// The oldest batch, if one waits; the queue's memory goes once it is empty.
    fn try_take(&self) -> Option<Vec<ConnectionMail>> {
        let mut l = self.letters();
        let batch = l.batches.pop_front();
        if l.batches.is_empty() {
            l.batches = VecDeque::new();
        }
        batch
    }

    /// The next batch; `None` once the post is closed and empty. Cancel-safe.
    async fn recv(&self) -> Option<Vec<ConnectionMail>> {
        loop {
            let heard = match self.try_take() {
                Some(b) => return Some(b),
                None if self.letters().closed => return None,
                None => self.bell.listen(),
            };
            // What came between the look and the listen is seen here.
            match self.try_take() {
                Some(b) => return Some(b),
                None if self.letters().closed => return None,
                None => heard.await,
            }
        }
    }

    /// Completes once the connection is killed; cancel-safe.
    async fn killed(&self) {
        while !self.killed.load(Ordering::Acquire) {
            let heard = self.bell.listen();
            if self.killed.load(Ordering::Acquire) {
                return;
            }
            heard.await;
        }
    }
}

/// What reaches the router task.
enum Inbox<R: Runtime> {
    Accept(R::Reader, R::Writer),
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
        ..
    } = server;
    // Held so that dropping every user handle does not read as a shutdown.
    let _handle = handle;
    // Connections hold a clone; when all are gone every connection has flushed.
    let (done_tx, done_rx) = async_channel::bounded::<()>(1);
    // Dropped at shutdown, which ends the accept loops and tells every connection.
    let (stop_tx, stop) = async_channel::bounded::<()>(1);
    for l in listeners {
        R::spawn(accept_loop::<R>(l, inbox_tx.clone(), stop.clone()));
    }
    let mut core = RouterCore::new(broker.into_router(now()), &options, store);
    let mut turn = false;
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
        let (inbox, control) = (inbox_rx.recv(), Some(signal.recv()));
        let woke = wait_fair::<R, _, _>(inbox, control, core.deadline(), &mut turn);
        match woke.await {
            Woke::First(Ok(Inbox::Accept(reader, writer))) => {
                let conn = core.accept(now());
                let post = Arc::new(Post::default());
                let queued = Arc::new(Queued::default());
                let queue = Queue { post: post.clone() };
                core.register(
                    conn.id(),
                    Mailbox {
                        queue,
                        queued: queued.clone(),
                    },
                );
                R::spawn(connection::<R>(Conn {
                    reader,
                    writer,
                    conn,
                    mail: post,
                    queued,
                    stop: stop.clone(),
                    inbox: inbox_tx.clone(),
                    hook: options.on_event.clone(),
                    _done: done_tx.clone(),
                }));
            }
            Woke::First(Ok(Inbox::Report(r))) => core.report(now(), r),
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

/// Mail batches a connection task takes in one wake before it writes.
const MAIL_PER_WAKE: usize = 32;

/// A connection task's state.
struct Conn<R: Runtime> {
    reader: R::Reader,
    writer: R::Writer,
    conn: ServerConnection,
    /// Router mail, and the kill when the connection is too slow.
    mail: Arc<Post>,
    queued: Arc<Queued>,
    /// Closed at shutdown.
    stop: async_channel::Receiver<()>,
    inbox: async_channel::Sender<Inbox<R>>,
    hook: Option<EventHook>,
    /// Dropped when the connection has flushed.
    _done: async_channel::Sender<()>,
}

/// What woke a connection task.
enum Wake {
    /// The socket is readable (or failed).
    Readable(io::Result<()>),
    /// A batch, or `None`: the post is closed.
    Mail(Option<Vec<ConnectionMail>>),
    Killed,
    Stop,
    Deadline,
}

/// The connection task: reads, router mail and its own deadlines go into the connection; what
/// it transmits is written here, and all the mail one input produced goes to the router as one
/// report. A full router inbox makes this task wait, so it stops reading its socket.
///
/// The ends (`abort`, `shut_down`) are boxed when they start: inline, each would hold a second
/// `Conn` in this future, which every idle connection's task carries.
async fn connection<R: Runtime>(mut c: Conn<R>) {
    let id = c.conn.id();
    let mut traffic = Traffic::new(now());
    let mut turn = false;
    loop {
        let Drained {
            transmit,
            mut mail,
            close,
        } = drain_connection(&mut c.conn, c.hook.as_ref());
        for b in &transmit {
            match wait::<R, _, _>(c.writer.write_all(b), Some(c.mail.killed()), None).await {
                Woke::First(Ok(())) => traffic.sent += b.len() as u64,
                // A write error, or killed as too slow: the transport failed.
                _ => return Box::pin(abort(c, traffic, mail)).await,
            }
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
            c.writer.close().await;
            return;
        }
        let deadline = c.conn.poll_timeout();
        let woke = next::<R>(&mut c, deadline, &mut turn).await;
        match woke {
            Wake::Readable(Ok(())) => match read_now(&mut c.reader, &mut c.conn) {
                Ok(0) => c.conn.handle_transport_closed(now()),
                Ok(n) => traffic.received += n as u64,
                // A spurious wake.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => c.conn.handle_transport_closed(now()),
            },
            Wake::Readable(Err(_)) => c.conn.handle_transport_closed(now()),
            Wake::Mail(Some(batch)) => {
                // What else is queued goes into the same write (a bounded number of batches,
                // so reads still get their turn).
                let at = now();
                let (mut next, mut took) = (Some(batch), 0);
                while let Some(batch) = next.take() {
                    taken(&c.queued, &batch);
                    for m in batch {
                        c.conn.handle_router(at, m);
                    }
                    took += 1;
                    if took < MAIL_PER_WAKE {
                        next = c.mail.try_take();
                    }
                }
            }
            Wake::Mail(None) | Wake::Stop => return Box::pin(shut_down(c)).await,
            Wake::Killed => return Box::pin(abort(c, traffic, Vec::new())).await,
            Wake::Deadline => c.conn.handle_timeout(now()),
        }
    }
}

thread_local! {
    /// The buffer connection tasks read into on this thread: lent only from a readiness wake
    /// to the `handle_input` that takes the bytes (no task waits holding it), so an idle
    /// connection holds no read buffer.
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads what the socket has now (at most [`READ_CHUNK`] bytes) into the thread's buffer and
/// hands it to the connection; `Ok(0)` is the end of the stream.
fn read_now(reader: &mut impl Reader, conn: &mut ServerConnection) -> io::Result<usize> {
    READ_BUF.with_borrow_mut(|buf| {
        if buf.is_empty() {
            buf.resize(READ_CHUNK, 0);
        }
        let n = reader.try_read(buf)?;
        if n > 0 {
            conn.handle_input(now(), &buf[..n]);
        }
        Ok(n)
    })
}

/// Waits for the first of: a passed deadline, the kill, the stop, then readability and mail
/// taking turns at going first (so neither starves the other). Every source is cancel-safe.
async fn next<R: Runtime>(c: &mut Conn<R>, deadline: Option<Instant>, turn: &mut bool) -> Wake {
    let mail_first = *turn;
    *turn = !*turn;
    let mut read = pin!(c.reader.readable());
    let mut mail = pin!(c.mail.recv());
    let mut killed = pin!(c.mail.killed());
    let mut stop = pin!(c.stop.recv());
    let mut sleep = pin!(deadline.map(R::sleep_until));
    poll_fn(|cx| {
        if let Some(s) = sleep.as_mut().as_pin_mut() {
            if s.poll(cx).is_ready() {
                return Poll::Ready(Wake::Deadline);
            }
        }
        if killed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Wake::Killed);
        }
        if stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Wake::Stop);
        }
        for round in 0..2 {
            if (round == 0) == mail_first {
                if let Poll::Ready(m) = mail.as_mut().poll(cx) {
                    return Poll::Ready(Wake::Mail(m));
                }
            } else if let Poll::Ready(r) = read.as_mut().poll(cx) {
                return Poll::Ready(Wake::Readable(r));
            }
        }
        Poll::Pending
    })
    .await
}

/// The connection has closed: its mail channel is closed (what the router sends from now on
/// comes back to it as undelivered), and what is still in it goes to the closed connection,
/// which hands its deliveries back; that mail follows the connection's `Closed`.
fn take_back<R: Runtime>(c: &mut Conn<R>) -> Vec<RouterMail> {
    c.mail.close();
    let at = now();
    while let Some(batch) = c.mail.try_take() {
        taken(&c.queued, &batch);
        for m in batch {
            c.conn.handle_router(at, m);
        }
    }
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
    for b in &d.transmit {
        match wait::<R, _, _>(c.writer.write_all(b), Some(c.mail.killed()), None).await {
            Woke::First(Ok(())) => {}
            _ => return,
        }
    }
    c.writer.close().await;
}
