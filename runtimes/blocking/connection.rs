//! A blocking broker connection: its reader thread and the thread that owns its
//! `ServerConnection`.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use bytes::Bytes;

use crate::broker::{ConnectionMail, ServerConnection};
use crate::runtimes::blocking::{next, Inbox, OpenOnDrop, Permits};
use crate::runtimes::driver::checks::Checks;
use crate::runtimes::driver::connection::{drain_connection, Traffic};
use crate::runtimes::driver::mailbox::{taken, MailQueue, Mailbox, Queued};
use crate::runtimes::driver::options::EventHook;
use crate::runtimes::driver::options::Verdict;
use crate::runtimes::driver::transport::Held;
use crate::runtimes::driver::transport::Link;
use crate::runtimes::driver::TransportHook;
use crate::runtimes::driver::{self, now, NET_CHUNKS};

/// What reaches a connection's thread.
enum ConnInput {
    Bytes(Bytes),
    ReadEnd,
    Mail(Vec<ConnectionMail>),
    /// The verdict of the connection's deferred credentials check.
    Verdict(Verdict),
    Shutdown,
}

/// The router's end of a connection's channel; abort shuts the socket down at once.
pub(super) struct Queue {
    tx: Sender<ConnInput>,
    stream: TcpStream,
    /// Set when mail that closes the connection (a takeover) is posted: a write blocked on
    /// a peer that does not read gives up.
    closing: Arc<AtomicBool>,
    /// Set by the connection's thread once it has closed: mail is refused from then on (it
    /// goes back to the router as undelivered). Held while pushing, so no batch lands in
    /// the channel after the thread's last look at it.
    closed: Arc<Mutex<bool>>,
    /// What waits in the channel, shared with the connection's thread.
    queued: Arc<Queued>,
}

impl MailQueue for Queue {
    fn try_push(&self, batch: Vec<ConnectionMail>) -> Result<(), Vec<ConnectionMail>> {
        let closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        if *closed {
            return Err(batch);
        }
        if batch.iter().any(ConnectionMail::closes) {
            self.closing.store(true, Ordering::Release);
        }
        self.tx.send(ConnInput::Mail(batch)).map_err(|e| match e.0 {
            ConnInput::Mail(b) => b,
            _ => Vec::new(),
        })
    }

    fn abort(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// The channel has no slots to run out of; if the thread has gone, the socket is shut
    /// down.
    fn shutdown(&self) {
        if self.tx.send(ConnInput::Shutdown).is_err() {
            self.abort();
        }
    }
    fn queued(&self) -> &Queued {
        &self.queued
    }
}

/// What a connection's thread is given besides its socket.
pub(super) struct Parts {
    pub(super) conn: ServerConnection,
    pub(super) router: SyncSender<Inbox>,
    pub(super) hook: Option<EventHook>,
    /// Where deferred credentials checks run.
    pub(super) checks: Arc<Checks>,
    pub(super) done: SyncSender<()>,
    /// TLS and/or WebSocket between the socket and the connection.
    pub(super) link: Option<Box<Link>>,
    /// Counted among its listener's open connections while its thread runs.
    pub(super) held: Held,
    pub(super) transport_hook: Option<TransportHook>,
}

/// A broker connection's socket with its transport machine.
struct Wire {
    stream: TcpStream,
    link: Option<Box<Link>>,
}

impl Wire {
    /// Writes the connection's `buf` through the link (if any), with what the link has to
    /// send, as [`write_watched`] does (`closing` ends a write that cannot progress).
    fn write(&mut self, buf: &[u8], closing: &AtomicBool) -> io::Result<()> {
        let Some(link) = &mut self.link else {
            return write_watched(&mut self.stream, buf, closing);
        };
        if !buf.is_empty() {
            link.send(buf).map_err(io::Error::other)?;
        }
        let wire = link.take_wire();
        write_watched(&mut self.stream, &wire, closing)
    }

    /// Ends the transport cleanly (close frame, close_notify) and shuts the socket.
    fn close(&mut self) {
        if let Some(link) = &mut self.link {
            link.close();
            let _ = write_watched(&mut self.stream, &link.take_wire(), &AtomicBool::new(false));
        }
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// The stack of a broker connection's reader thread, which only reads and sends: a small one
/// reserves less address space per connection (the default is 2 MiB).
const READER_STACK: usize = 64 * 1024;

/// The first read buffer of a broker connection's reader thread: small, so that an idle
/// connection holds little; full reads grow it up to [`READ_CHUNK`](driver::READ_CHUNK).
const FIRST_READ: usize = 512;

/// Connections served at once: each takes two threads. One more is closed at once, and so is
/// one whose threads the system refuses.
pub const MAX_CONNECTION_THREADS: usize = 8192;

/// Connections whose threads run.
static CONNECTION_THREADS: AtomicUsize = AtomicUsize::new(0);

/// How often a write blocked on its peer looks for mail that closes the connection.
const WRITE_POLL: Duration = Duration::from_millis(50);

/// How long a write to a peer may make no progress before the connection is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes `buf` whole, unless the peer takes nothing for [`WRITE_TIMEOUT`] or `closing` is
/// set (a takeover) while the write waits: a peer that does not read holds neither its
/// session nor its takeover. The socket has a write timeout of [`WRITE_POLL`].
fn write_watched(stream: &mut TcpStream, mut buf: &[u8], closing: &AtomicBool) -> io::Result<()> {
    let mut progress = now();
    while !buf.is_empty() {
        match stream.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                progress = now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if closing.load(Ordering::Acquire) || now() - progress >= WRITE_TIMEOUT {
                    return Err(io::ErrorKind::TimedOut.into());
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One connection's place under [`MAX_CONNECTION_THREADS`], given back on drop.
struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        CONNECTION_THREADS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_CONNECTION_THREADS).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        CONNECTION_THREADS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Starts a connection's reader thread and its connection thread (which owns the
/// `ServerConnection` and writes) on three handles of one socket; returns the router's
/// mailbox for it, or its parts back when there is no room for more connections or the
/// threads cannot start.
pub(super) fn connection(streams: [TcpStream; 3], p: Parts) -> Result<Mailbox<Queue>, Box<Parts>> {
    let Some(slot) = Slot::take() else {
        return Err(Box::new(p));
    };
    let [stream, mut reader, abort] = streams;
    if stream.set_write_timeout(Some(WRITE_POLL)).is_err() {
        return Err(Box::new(p));
    }
    // The reader's chunks, the router's batches, and the shutdown. Unbounded, so that it
    // preallocates nothing (a sync_channel's ring of NET_CHUNKS + batches slots is ~50 KB per
    // connection): the reader waits for one of NET_CHUNKS permits before it sends, and the
    // router counts batches in `Queued` before it pushes (`RouterCore::drain`).
    let (tx, rx) = channel::<ConnInput>();
    let permits = Arc::new(Permits {
        free: Mutex::new(NET_CHUNKS),
        freed: Condvar::new(),
    });
    let queued = Arc::new(Queued::default());
    let (inputs, free) = (tx.clone(), permits.clone());
    let read = move || {
        let mut buf = vec![0u8; FIRST_READ];
        loop {
            match reader.read(&mut buf) {
                // At most NET_CHUNKS reads wait: this thread blocks, backpressure on the socket.
                Ok(n) if n > 0 => {
                    free.acquire();
                    let b = Bytes::copy_from_slice(&buf[..n]);
                    if inputs.send(ConnInput::Bytes(b)).is_err() {
                        return;
                    }
                    // A full read: more is waiting, so the next one reads more (up to
                    // READ_CHUNK); a short one: the room goes back.
                    if n == buf.len() && n < driver::READ_CHUNK {
                        buf.resize((n * 4).min(driver::READ_CHUNK), 0);
                    } else if n <= FIRST_READ && buf.len() > FIRST_READ {
                        buf.truncate(FIRST_READ);
                        buf.shrink_to_fit();
                    }
                }
                _ => break,
            }
        }
        let _ = inputs.send(ConnInput::ReadEnd);
    };
    // The connection thread starts first and gets its parts once both threads run, so that
    // they come back here if either cannot start.
    let q = queued.clone();
    let closed = Arc::new(Mutex::new(false));
    let shut = closed.clone();
    let closing = Arc::new(AtomicBool::new(false));
    let taken_over = closing.clone();
    let verdicts = tx.clone();
    let (give, parts) = sync_channel::<Parts>(1);
    let started = thread::Builder::new().spawn(move || {
        let _slot = slot;
        if let Ok(p) = parts.recv() {
            run_connection(stream, p, (rx, verdicts), permits, q, shut, taken_over);
        }
    });
    if started.is_err() {
        return Err(Box::new(p));
    }
    if thread::Builder::new()
        .stack_size(READER_STACK)
        .spawn(read)
        .is_err()
    {
        // The connection thread ends without its parts.
        return Err(Box::new(p));
    }
    let _ = give.send(p);
    Ok(Mailbox::new(Queue {
        tx,
        stream: abort,
        closing,
        closed,
        queued,
    }))
}

/// A connection's thread: the same drain as the async connection task.
fn run_connection(
    stream: TcpStream,
    p: Parts,
    (rx, verdicts): (Receiver<ConnInput>, Sender<ConnInput>),
    permits: Arc<Permits>,
    queued: Arc<Queued>,
    closed: Arc<Mutex<bool>>,
    closing: Arc<AtomicBool>,
) {
    let Parts {
        mut conn,
        router,
        hook,
        checks,
        done,
        link,
        held: _held,
        transport_hook,
    } = p;
    let mut stream = Wire { stream, link };
    let mut app = Vec::new();
    let _done = done;
    let _open = OpenOnDrop(permits.clone());
    let id = conn.id();
    let mut traffic = Traffic::new(now());
    // Reads the connection does not want yet (see `ServerConnection::wants_input`): their
    // permits stay taken, so the reader thread stops after a few.
    let mut held: VecDeque<Bytes> = VecDeque::new();
    // Inputs taken out of order (see `ORDER_GRACE`), to be handled before the channel's.
    let mut front: VecDeque<ConnInput> = VecDeque::new();
    // The waits spent on the mail that ends the connection (at most `ORDER_GRACES`).
    let mut graces = 0;
    loop {
        let d = drain_connection(&mut conn, hook.as_ref());
        let mut failed = false;
        for b in &d.transmit {
            if stream.write(b, &closing).is_err() {
                // Failed, timed out (a peer that does not read), or shut down by the router.
                failed = true;
                break;
            }
            traffic.sent += b.len() as u64;
        }
        if stream.link.as_ref().is_some_and(|l| l.has_wire())
            && stream.write(&[], &closing).is_err()
        {
            failed = true;
        }
        let mut mail = d.mail;
        if failed {
            // A write error, or shut down by the router as too slow: the transport failed.
            conn.handle_transport_closed(now());
            mail.extend(drain_connection(&mut conn, hook.as_ref()).mail);
        }
        let last = d.close || failed;
        if last {
            // Mail still on its way goes back: the closed connection returns its deliveries.
            *closed.lock().unwrap_or_else(|e| e.into_inner()) = true;
            let at = now();
            let waiting = std::mem::take(&mut front).into_iter();
            for input in waiting.chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                if let ConnInput::Mail(batch) = input {
                    taken(&queued, &batch);
                    for m in batch {
                        conn.handle_mail(at, m);
                    }
                }
            }
            mail.extend(std::iter::from_fn(|| conn.poll_mail()));
        }
        if let Some(r) = traffic.report(now(), id, mail, last) {
            if router.send(Inbox::Report(r)).is_err() {
                return shut_down(stream, conn, hook.as_ref());
            }
        }
        if last {
            stream.close();
            return;
        }
        if let Some(check) = conn.poll_credentials() {
            // Run elsewhere (under the pool's cap); its verdict comes back as an input, so
            // this thread goes on taking a shutdown or the socket's end meanwhile.
            let to = verdicts.clone();
            let started = checks.start_detached(check, move |v| {
                let _ = to.send(ConnInput::Verdict(v));
            });
            if let Err(verdict) = started {
                conn.handle_credentials(now(), verdict);
                continue;
            }
        }
        let mut input = match front.pop_front() {
            Some(i) => Ok(i),
            None => next(&rx, conn.poll_timeout()),
        };
        // What else is queued goes into the same write (a bounded number of inputs), up to
        // an input that ends the connection.
        let mut took = 0;
        loop {
            let more = match input {
                Ok(ConnInput::Bytes(b)) => {
                    traffic.received += b.len() as u64;
                    match &mut stream.link {
                        None => {
                            held.push_back(b);
                            feed(&mut conn, &mut held, &permits);
                            true
                        }
                        Some(link) => {
                            // The transport takes the bytes at once (a TLS handshake answers
                            // them); what it yields for the connection waits with the read's
                            // permit until the connection wants it.
                            app.clear();
                            let r = link.input(&b, &mut app);
                            if let Some(name) = link.take_identity() {
                                conn.set_peer_identity(name);
                            }
                            if app.is_empty() {
                                permits.release();
                            } else {
                                held.push_back(Bytes::copy_from_slice(&app));
                            }
                            feed(&mut conn, &mut held, &permits);
                            match r {
                                Ok(open) => {
                                    if !open {
                                        conn.handle_transport_closed(now());
                                    }
                                    open
                                }
                                Err(e) => {
                                    if let Some(h) = &transport_hook {
                                        h(&e);
                                    }
                                    // The alert or HTTP answer that tells the peer why.
                                    let _ = stream.write(&[], &closing);
                                    conn.handle_transport_closed(now());
                                    false
                                }
                            }
                        }
                    }
                }
                Ok(ConnInput::ReadEnd) => {
                    conn.handle_transport_closed(now());
                    false
                }
                Ok(ConnInput::Verdict(v)) => {
                    conn.handle_credentials(now(), v);
                    true
                }
                Ok(ConnInput::Mail(batch)) => {
                    if graces < ORDER_GRACES && batch.iter().any(ConnectionMail::ends_connection) {
                        // What the client sent before this mail was written may still be on
                        // its way from the reader thread: it goes first (a DISCONNECT before
                        // a takeover's close), so that what one client sends on consecutive
                        // connections reaches the router in that order.
                        graces += 1;
                        match rx.recv_timeout(ORDER_GRACE) {
                            Ok(first @ (ConnInput::Bytes(_) | ConnInput::ReadEnd)) => {
                                front.push_back(ConnInput::Mail(batch));
                                input = Ok(first);
                                continue;
                            }
                            Ok(other) => front.push_back(other),
                            Err(_) => {}
                        }
                    }
                    graces = 0;
                    taken(&queued, &batch);
                    let at = now();
                    for m in batch {
                        conn.handle_mail(at, m);
                    }
                    // The session may be accepted now: what was held back goes in.
                    feed(&mut conn, &mut held, &permits);
                    true
                }
                Ok(ConnInput::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                    return shut_down(stream, conn, hook.as_ref())
                }
                Err(RecvTimeoutError::Timeout) => {
                    conn.handle_timeout(now());
                    false
                }
            };
            took += 1;
            if !more || took == INPUTS_PER_WRITE || conn.is_closed() {
                break;
            }
            match front.pop_front().map_or_else(|| rx.try_recv(), Ok) {
                Ok(i) => input = Ok(i),
                Err(_) => break,
            }
        }
    }
}

/// How long a connection whose mail ends it (a takeover) waits for bytes its client sent
/// before: the reader thread may not have handed them over yet.
const ORDER_GRACE: Duration = Duration::from_millis(20);

/// How many such waits one ending mail gets while bytes keep coming (a client that keeps
/// sending cannot hold its takeover off).
const ORDER_GRACES: u32 = 4;

/// Hands the connection the reads held back, in order, while it wants them.
fn feed(conn: &mut ServerConnection, held: &mut VecDeque<Bytes>, permits: &Permits) {
    while conn.wants_input() {
        let Some(b) = held.pop_front() else {
            return;
        };
        permits.release();
        conn.handle_input(now(), &b);
    }
}

/// Queued inputs (reads, mail batches) a broker connection's thread takes before it writes.
const INPUTS_PER_WRITE: usize = 32;

/// DISCONNECT 0x8B to an MQTT 5 client, no will, then the socket is closed.
fn shut_down(mut stream: Wire, mut conn: ServerConnection, hook: Option<&EventHook>) {
    conn.shutdown(now());
    for b in drain_connection(&mut conn, hook).transmit {
        if stream.write(&b, &AtomicBool::new(false)).is_err() {
            break;
        }
    }
    stream.close();
}
