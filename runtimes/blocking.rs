//! The `blocking` runtime: a [`Client`] and a [`Server`] on `std::net` and threads.
//!
//! The client's session runs in a thread of its own (plus one reader thread per connection);
//! its [`Events`] are an iterator. The broker runs a router thread (which owns the `Router` and
//! only routes), an accept thread per listener, and per connection a reader thread and a
//! connection thread that owns its `ServerConnection` (decoding, keep-alive, encoding, writes),
//! joined by bounded channels with the caps of the
//! [`driver`](super::driver#queue-caps-and-overflow-policies).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
#[cfg(feature = "broker")]
use std::net::TcpListener;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::pin::pin;
#[cfg(feature = "broker")]
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(feature = "broker")]
use std::sync::mpsc::{channel, Sender};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
#[cfg(feature = "broker")]
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;

#[cfg(feature = "broker")]
use super::driver::broker::{
    drain_connection, taken, Control, EventHook, MailQueue, Mailbox, Queued, Report, RouterCore,
    Traffic,
};
#[cfg(feature = "broker")]
use super::driver::checks::{Checks, Verdict};
use super::driver::client::{fail, ClientCore, Command};
use super::driver::transport::{self, Connector, Endpoint, Link, TransportError};
#[cfg(feature = "broker")]
use super::driver::transport::{Held, ListenerConfig, ListenerStats, Reloader, SharedAcceptor};
#[cfg(feature = "broker")]
use super::driver::writer::{self, StoreWriter};
use super::driver::{
    self, block_until, now, reply_channel, CLIENT_COMMANDS, CLIENT_EVENTS, EVENTS_STALL, NET_CHUNKS,
};
pub use super::driver::{
    Ack, BlockingEvents as Events, BlockingPending as Pending, ConnectOptions, Error, SubAck,
};
#[cfg(feature = "broker")]
pub use super::driver::{BrokerHandle, BrokerOptions};
#[cfg(feature = "broker")]
use super::driver::{Reply, TransportHook};
#[cfg(feature = "broker")]
use crate::broker::{Broker as Core, BrokerConfig, BrokerStats, ConnectionMail, ServerConnection};
use crate::client::{AckToken, ClientConfig, SessionState};
use crate::codec::{
    Auth, Disconnect, Publish, SubscribeProperties, Subscription, UnsubscribeProperties,
};
use crate::TopicFilter;

/// What the client's session thread waits for.
enum Input {
    Bytes(u64, Bytes),
    /// [`Client::ack`] left tokens in [`Side::acks`].
    Acks,
    Closed(u64),
    Command(Command),
    HandlesGone,
}

/// Counts the commands in flight towards the session thread, so they stay within the cap.
struct Permits {
    free: Mutex<usize>,
    freed: Condvar,
}

/// What a client's handles and its session thread share besides the input channel.
#[derive(Default)]
struct Side {
    /// Acknowledgements for the session thread, which takes them on every turn: they bypass
    /// the bounded input channel, so acknowledging from the thread that reads [`Events`] never
    /// waits for the session thread (which may itself wait for that reader).
    acks: Mutex<Vec<AckToken>>,
    /// The session thread has waited [`EVENTS_STALL`] for room in the full event queue:
    /// commands are refused with [`Error::EventsUnread`] until it has room again.
    stalled: AtomicBool,
}

impl Permits {
    #[cfg(feature = "broker")]
    fn acquire(&self) {
        self.acquire_unless(&AtomicBool::new(false));
    }

    /// [`Permits::acquire`], or false (no permit taken) once `stop` is set: whoever sets
    /// it does so under the lock, through [`Permits::stop`].
    fn acquire_unless(&self, stop: &AtomicBool) -> bool {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            if stop.load(Ordering::Acquire) {
                return false;
            }
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        true
    }

    /// Sets `stop` (to `value`) and wakes every waiter.
    fn stop(&self, stop: &AtomicBool, value: bool) {
        let _free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        stop.store(value, Ordering::Release);
        self.freed.notify_all();
    }

    fn release(&self) {
        *self.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.freed.notify_one();
    }

    /// Lets every waiter through from now on (the other end is gone).
    #[cfg(feature = "broker")]
    fn open_all(&self) {
        *self.free.lock().unwrap_or_else(|e| e.into_inner()) = usize::MAX / 2;
        self.freed.notify_all();
    }
}

#[cfg(feature = "broker")]
/// Opens the permits when dropped, so a reader waiting for one ends instead of hanging.
struct OpenOnDrop(Arc<Permits>);

#[cfg(feature = "broker")]
impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open_all();
    }
}

/// Tells the session thread when the last handle is dropped.
struct Handles {
    inputs: SyncSender<Input>,
    permits: Arc<Permits>,
    side: Arc<Side>,
}

impl Drop for Handles {
    fn drop(&mut self) {
        let _ = self.inputs.send(Input::HandlesGone);
    }
}

/// Why the session's last transport failed, kept for [`Client::take_transport_error`].
type LastError = Arc<Mutex<Option<TransportError>>>;

/// A handle to a client session running on threads; clones share the session.
#[derive(Clone)]
pub struct Client {
    handles: Arc<Handles>,
    transport_error: LastError,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to `addr` and returns once the server accepted the first connection.
    pub fn connect(addr: SocketAddr, config: ClientConfig) -> Result<(Client, Events), Error> {
        Client::connect_with(addr, config, ConnectOptions::new())
    }

    /// Connects to `endpoint` (a URL such as `mqtts://broker.example.com`, or a socket
    /// address) and returns once the server accepted the first connection. A host name is
    /// resolved on every connect and reconnect; a failure names its cause
    /// ([`Error::Transport`]).
    pub fn connect_to(
        endpoint: impl Into<Endpoint>,
        config: ClientConfig,
    ) -> Result<(Client, Events), Error> {
        Client::connect_with(endpoint, config, ConnectOptions::new())
    }

    /// [`Client::connect_to`], resuming an exported session and/or answering enhanced
    /// authentication's AUTH challenges as `options` say.
    pub fn connect_with(
        endpoint: impl Into<Endpoint>,
        config: ClientConfig,
        options: ConnectOptions,
    ) -> Result<(Client, Events), Error> {
        let connector = endpoint.into().connector()?;
        let (stream, link) = transport::open_blocking(&connector, config.connect_timeout)?;
        let (ready_tx, ready_rx) = reply_channel();
        let (in_tx, in_rx) = sync_channel(CLIENT_COMMANDS + NET_CHUNKS);
        let (ev_tx, ev_rx) = async_channel::bounded(CLIENT_EVENTS);
        let permits = Arc::new(Permits {
            free: Mutex::new(CLIENT_COMMANDS),
            freed: Condvar::new(),
        });
        let core = ClientCore::start(config, options, ready_tx);
        let side = Arc::new(Side::default());
        let last = LastError::default();
        let session = SessionThread {
            connector,
            inputs: in_tx.clone(),
            events: ev_tx,
            permits: permits.clone(),
            side: side.clone(),
            last: last.clone(),
        };
        thread::spawn(move || run_client(session, core, (stream, link), in_rx));
        let handles = Arc::new(Handles {
            inputs: in_tx,
            permits,
            side,
        });
        match ready_rx.recv_blocking().unwrap_or(Err(Error::Stopped)) {
            Ok(()) => {}
            // A TLS or WebSocket failure says why, not only that the transport closed.
            Err(e @ Error::ConnectFailed(_)) => {
                let cause = last.lock().unwrap_or_else(|e| e.into_inner()).take();
                return Err(cause.map_or(e, Error::Transport));
            }
            Err(e) => return Err(e),
        }
        let client = Client {
            handles,
            transport_error: last,
        };
        Ok((client, Events::from_receiver(ev_rx)))
    }

    /// Why the last transport failed or could not be opened (the host name did not resolve,
    /// the connection was refused, a certificate was rejected, ...): the cause behind the
    /// latest `Disconnected` event that says the transport closed. Taken.
    pub fn take_transport_error(&self) -> Option<TransportError> {
        self.transport_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Publishes; the returned [`Pending`] completes with the acknowledgement.
    ///
    /// Blocks while the command queue is full, which it is while the in-flight window is.
    pub fn publish(&self, publish: Publish) -> Result<Pending, Error> {
        let (tx, rx) = reply_channel();
        self.send(Command::Publish(publish, tx))?;
        Ok(Pending::from_receiver(rx))
    }

    /// Subscribes and waits for the SUBACK.
    pub fn subscribe(&self, filters: Vec<Subscription>) -> Result<SubAck, Error> {
        self.subscribe_with(filters, SubscribeProperties::default())
    }

    /// Subscribes with MQTT 5 properties and waits for the SUBACK.
    pub fn subscribe_with(
        &self,
        filters: Vec<Subscription>,
        properties: SubscribeProperties,
    ) -> Result<SubAck, Error> {
        let (tx, rx) = reply_channel();
        self.send(Command::Subscribe(filters, properties, tx))?;
        rx.recv_blocking().unwrap_or(Err(Error::Stopped))
    }

    /// Unsubscribes and waits for the UNSUBACK.
    pub fn unsubscribe(&self, filters: Vec<TopicFilter>) -> Result<SubAck, Error> {
        let (tx, rx) = reply_channel();
        let props = UnsubscribeProperties::default();
        self.send(Command::Unsubscribe(filters, props, tx))?;
        rx.recv_blocking().unwrap_or(Err(Error::Stopped))
    }

    /// Acknowledges a message received with [`ClientConfig::manual_acks`]: its token is in
    /// [`Message::ack`](crate::client::Message::ack).
    ///
    /// Never blocks (the session thread sends the acknowledgement on its next turn), so it
    /// may be called from the loop that reads [`Events`]. Acknowledgements go out in the order
    /// the messages arrived ([MQTT-4.6.0-2]); a token of a connection that has since ended is
    /// ignored (the server sends the message again). Until a message is acknowledged it holds
    /// a slot of the receive window; a token dropped unacknowledged is reported as
    /// [`Event::AckTokenDropped`](crate::client::Event::AckTokenDropped).
    pub fn ack(&self, token: AckToken) -> Result<(), Error> {
        self.handles
            .side
            .acks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(token);
        match self.handles.inputs.try_send(Input::Acks) {
            // Full: the session thread has inputs to wake for, and takes the acks then.
            Ok(()) | Err(TrySendError::Full(_)) => Ok(()),
            Err(TrySendError::Disconnected(_)) => Err(Error::Stopped),
        }
    }

    /// Sends AUTH (MQTT 5): the answer to an
    /// [`Event::Auth`](crate::client::Event::Auth) challenge of enhanced authentication, or a
    /// re-authentication (reason code Re-authenticate).
    pub fn auth(&self, auth: Auth) -> Result<(), Error> {
        let (tx, rx) = reply_channel();
        self.send(Command::Auth(auth, tx))?;
        rx.recv_blocking().unwrap_or(Err(Error::Stopped))
    }

    /// The session's state now (unfinished QoS 1/2 flows, subscriptions, the client id), to
    /// resume it in another process with [`ConnectOptions::with_session`]: a durable outbox.
    pub fn session_state(&self) -> Result<SessionState, Error> {
        let (tx, rx) = reply_channel();
        self.send(Command::Session(tx))?;
        rx.recv_blocking().unwrap_or(Err(Error::Stopped))
    }

    /// Sends DISCONNECT (normal), closes the transport and stops the session thread.
    pub fn disconnect(&self) -> Result<(), Error> {
        self.disconnect_with(Disconnect::default())
    }

    /// Sends this DISCONNECT (MQTT 5 reason code and properties), closes and stops.
    pub fn disconnect_with(&self, disconnect: Disconnect) -> Result<(), Error> {
        let (tx, rx) = reply_channel();
        self.send(Command::Disconnect(disconnect, Some(tx)))?;
        rx.recv_blocking().unwrap_or(Ok(()))
    }

    fn send(&self, command: Command) -> Result<(), Error> {
        let side = &self.handles.side;
        if side.stalled.load(Ordering::Acquire)
            || !self.handles.permits.acquire_unless(&side.stalled)
        {
            return Err(Error::EventsUnread);
        }
        self.handles
            .inputs
            .send(Input::Command(command))
            .map_err(|_| Error::Stopped)
    }
}

fn spawn_reader(stream: &TcpStream, generation: u64, inputs: SyncSender<Input>) -> io::Result<()> {
    let mut r = stream.try_clone()?;
    thread::spawn(move || {
        let mut buf = vec![0u8; driver::READ_CHUNK];
        loop {
            match r.read(&mut buf) {
                Ok(n) if n > 0 => {
                    let b = Bytes::copy_from_slice(&buf[..n]);
                    if inputs.send(Input::Bytes(generation, b)).is_err() {
                        return;
                    }
                }
                _ => {
                    let _ = inputs.send(Input::Closed(generation));
                    return;
                }
            }
        }
    });
    Ok(())
}

/// What the session thread is given besides its core and its input channel.
struct SessionThread {
    connector: Connector,
    inputs: SyncSender<Input>,
    events: async_channel::Sender<crate::client::Event>,
    permits: Arc<Permits>,
    side: Arc<Side>,
    last: LastError,
}

/// The session thread's connection: its socket and its transport machine.
struct Conn {
    stream: TcpStream,
    link: Option<Link>,
}

impl Conn {
    /// Writes the session's bytes (through the link, if any) and what the link has to send.
    fn write(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        match &mut self.link {
            None => Ok(self.stream.write_all(bytes)?),
            Some(link) => {
                if !bytes.is_empty() {
                    link.send(bytes)?;
                }
                let wire = link.take_wire();
                Ok(self.stream.write_all(&wire)?)
            }
        }
    }

    /// Ends the transport cleanly (close frame, close_notify) and shuts the socket.
    fn close(mut self) {
        if let Some(link) = &mut self.link {
            link.close();
            let _ = self.stream.write_all(&link.take_wire());
        }
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Opens a connection with its reader thread, its link's first bytes written.
fn open_conn(
    s: &SessionThread,
    opened: (TcpStream, Option<Link>),
    generation: u64,
) -> Result<Conn, TransportError> {
    let (stream, link) = opened;
    spawn_reader(&stream, generation, s.inputs.clone())?;
    let mut conn = Conn { stream, link };
    conn.write(&[])?;
    Ok(conn)
}

/// The session thread: the same drain as the async driver, waiting with `recv_timeout`.
fn run_client(
    s: SessionThread,
    mut core: ClientCore,
    first: (TcpStream, Option<Link>),
    rx: Receiver<Input>,
) {
    let mut generation = 0u64;
    let failed = |e: TransportError| {
        *s.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
    };
    let mut transport = open_conn(&s, first, generation).map_err(failed).ok();
    let mut stash: VecDeque<Command> = VecDeque::new();
    let mut app = Vec::new();
    // Inputs taken from the channel while the event queue stalled (bytes, closes).
    let mut backlog: VecDeque<Input> = VecDeque::new();
    core.connect(now(), transport.is_some());
    loop {
        let tokens = std::mem::take(&mut *s.side.acks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tokens {
            // A stale token (of an ended connection) is no error here: the server resends.
            let _ = core.ack(now(), t);
        }
        loop {
            let out = core.take_output();
            if out.transmit.is_empty() && !out.close && !out.reconnect && out.events.is_empty() {
                break;
            }
            for bytes in &out.transmit {
                let Some(t) = transport.as_mut() else { break };
                if let Err(e) = t.write(bytes) {
                    failed(e);
                    transport = None;
                    core.transport_closed(now());
                    break;
                }
            }
            for e in out.events {
                // A dropped `Events` discards events.
                let mut send = pin!(s.events.send(e));
                if block_until(send.as_mut(), Some(now() + EVENTS_STALL)).is_some() {
                    continue;
                }
                // Every call waiting on the session hears that the events went unread
                // (it may be the one that should read them), and so does every new one
                // until the event is taken.
                s.permits.stop(&s.side.stalled, true);
                core.events_unread();
                for c in stash.drain(..) {
                    s.permits.release();
                    fail(c, Error::EventsUnread);
                }
                while let Ok(input) = rx.try_recv() {
                    match input {
                        Input::Command(c) => {
                            s.permits.release();
                            fail(c, Error::EventsUnread);
                        }
                        other => backlog.push_back(other),
                    }
                }
                block_until(send.as_mut(), None);
                s.permits.stop(&s.side.stalled, false);
            }
            if out.close {
                if let Some(t) = transport.take() {
                    t.close();
                }
            }
            if out.reconnect {
                generation += 1;
                let opened = transport::open_blocking(&s.connector, core.connect_timeout())
                    .and_then(|o| open_conn(&s, o, generation));
                transport = opened.map_err(failed).ok();
                core.connect(now(), transport.is_some());
            }
        }
        if let Some(reply) = core.take_stop() {
            if let Some(r) = reply {
                r.send(Ok(()));
            }
            return;
        }
        if !core.is_parked() {
            if let Some(c) = stash.pop_front() {
                s.permits.release();
                core.command(now(), c);
                continue;
            }
        }
        let input = match backlog.pop_front() {
            Some(i) => Ok(i),
            None => next(&rx, core.deadline()),
        };
        match input {
            Ok(Input::Bytes(g, b)) if g == generation => {
                let Some(t) = transport.as_mut() else {
                    continue;
                };
                let Some(link) = t.link.as_mut() else {
                    core.input(now(), &b);
                    continue;
                };
                app.clear();
                let r = link.input(&b, &mut app);
                // The link's answers (handshake, alert, pong) go out first.
                match t.write(&[]).and(r) {
                    Ok(open) => {
                        if !app.is_empty() {
                            core.input(now(), &app);
                        }
                        if !open {
                            transport = None;
                            core.transport_closed(now());
                        }
                    }
                    Err(e) => {
                        failed(e);
                        transport = None;
                        core.transport_closed(now());
                    }
                }
            }
            Ok(Input::Closed(g)) if g == generation => {
                transport = None;
                core.transport_closed(now());
            }
            Ok(Input::Bytes(..) | Input::Closed(_) | Input::Acks) => {}
            Ok(Input::Command(c)) => stash.push_back(c),
            Ok(Input::HandlesGone) | Err(RecvTimeoutError::Disconnected) => {
                core.handles_gone(now())
            }
            Err(RecvTimeoutError::Timeout) => core.timeout(now()),
        }
    }
}

/// The next input, or `Timeout` once `deadline` has passed: a passed deadline goes first, so
/// a busy channel cannot starve the timers.
fn next<T>(rx: &Receiver<T>, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
    match deadline.map(|at| at.saturating_duration_since(now())) {
        Some(left) if left.is_zero() => Err(RecvTimeoutError::Timeout),
        Some(left) => rx.recv_timeout(left),
        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
    }
}

#[cfg(feature = "broker")]
/// What reaches the broker's router thread.
enum Inbox {
    Accept(TcpStream, Option<Box<Link>>, Held),
    Report(Report),
    Stats(Reply<BrokerStats>),
    /// The store writer handed tickets back (or stopped).
    Stored,
    Shutdown,
}

#[cfg(feature = "broker")]
/// What reaches a connection's thread.
enum ConnInput {
    Bytes(Bytes),
    ReadEnd,
    Mail(Vec<ConnectionMail>),
    /// The verdict of the connection's deferred credentials check.
    Verdict(Verdict),
    Shutdown,
}

#[cfg(feature = "broker")]
/// The router's end of a connection's channel; abort shuts the socket down at once.
struct Queue {
    tx: Sender<ConnInput>,
    stream: TcpStream,
    /// Set when mail that closes the connection (a takeover) is posted: a write blocked on
    /// a peer that does not read gives up.
    closing: Arc<AtomicBool>,
    /// Set by the connection's thread once it has closed: mail is refused from then on (it
    /// goes back to the router as undelivered). Held while pushing, so no batch lands in
    /// the channel after the thread's last look at it.
    closed: Arc<Mutex<bool>>,
}

#[cfg(feature = "broker")]
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
}

#[cfg(feature = "broker")]
/// An MQTT broker on threads: bound listeners, run until its [`BrokerHandle`] is triggered.
#[derive(Debug)]
pub struct Server {
    broker: Core,
    options: BrokerOptions,
    listeners: Vec<(TcpListener, Option<SharedAcceptor>)>,
    reloader: Reloader,
    stats: ListenerStats,
    addrs: Vec<SocketAddr>,
    handle: BrokerHandle,
    signal: async_channel::Receiver<Control>,
    store: Option<StoreWriter>,
    inbox: (SyncSender<Inbox>, Receiver<Inbox>),
}

#[cfg(feature = "broker")]
impl Server {
    /// Binds `addrs` for a broker with `config` that lets everyone in.
    pub fn bind(config: BrokerConfig, addrs: &[SocketAddr]) -> io::Result<Server> {
        Server::bind_with(Core::new(config), BrokerOptions::default(), addrs)
    }

    /// Binds `addrs` for `broker` (built with its authenticator and authorizer); its router
    /// runs in the router thread, its connections each in their own thread.
    ///
    /// With [`BrokerOptions::persistence`], the broker is first restored from its store and
    /// the store's writer thread starts; a store that cannot be opened or read fails here with
    /// an error naming its file, and so does a [`BrokerOptions::fsync`] that does not match
    /// the broker's `durable_acks`.
    pub fn bind_with(
        broker: Core,
        options: BrokerOptions,
        addrs: &[SocketAddr],
    ) -> io::Result<Server> {
        let listeners = addrs.iter().map(|a| ListenerConfig::plain(*a));
        Server::bind_listeners(broker, options, &listeners.collect::<Vec<_>>())
    }

    /// [`Server::bind_with`] for listeners that may speak TLS and WebSocket; a certificate or
    /// key that cannot be used fails here, naming its file and the reason.
    pub fn bind_listeners(
        mut broker: Core,
        options: BrokerOptions,
        configs: &[ListenerConfig],
    ) -> io::Result<Server> {
        let (acceptors, reloader) = transport::acceptors(configs)?;
        let inbox = sync_channel::<Inbox>(driver::ROUTER_INBOX);
        let wake = inbox.0.clone();
        let wake = Box::new(move || {
            // A full inbox wakes the router anyway; it collects on every turn.
            let _ = wake.try_send(Inbox::Stored);
        });
        let store = writer::start(&options, &mut broker, wake)?;
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
        Ok(Server {
            broker,
            options,
            listeners,
            reloader,
            stats: ListenerStats::new(&addrs),
            addrs,
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
            while let Ok(Control::Stats(reply)) = signal.recv_blocking() {
                if t.send(Inbox::Stats(reply)).is_err() {
                    return;
                }
            }
            let _ = t.send(Inbox::Shutdown);
        });
        let (done_tx, done_rx) = sync_channel::<()>(1);
        let mut core = RouterCore::new(
            self.broker.into_router(now()),
            &self.options,
            self.store,
            // Threads: the OS decides who runs first; the mail order is the natural guess.
            false,
        );
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
                    let started = match (s.try_clone(), s.try_clone()) {
                        (Ok(reader), Ok(abort)) => {
                            let parts = Parts {
                                conn,
                                router: tx.clone(),
                                hook: self.options.on_event.clone(),
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
                    reply.send(Ok(core.router.stats()));
                }
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

#[cfg(feature = "broker")]
/// What a connection's thread is given besides its socket.
struct Parts {
    conn: ServerConnection,
    router: SyncSender<Inbox>,
    hook: Option<EventHook>,
    /// Where deferred credentials checks run.
    checks: Arc<Checks>,
    done: SyncSender<()>,
    /// TLS and/or WebSocket between the socket and the connection.
    link: Option<Box<Link>>,
    /// Counted among its listener's open connections while its thread runs.
    held: Held,
    transport_hook: Option<TransportHook>,
}

/// A broker connection's socket with its transport machine.
#[cfg(feature = "broker")]
struct Wire {
    stream: TcpStream,
    link: Option<Box<Link>>,
}

#[cfg(feature = "broker")]
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

#[cfg(feature = "broker")]
/// The stack of a broker connection's reader thread, which only reads and sends: a small one
/// reserves less address space per connection (the default is 2 MiB).
const READER_STACK: usize = 64 * 1024;

#[cfg(feature = "broker")]
/// The first read buffer of a broker connection's reader thread: small, so that an idle
/// connection holds little; full reads grow it up to [`READ_CHUNK`](driver::READ_CHUNK).
const FIRST_READ: usize = 512;

#[cfg(feature = "broker")]
/// Connections served at once: each takes two threads. One more is closed at once, and so is
/// one whose threads the system refuses.
pub const MAX_CONNECTION_THREADS: usize = 8192;

#[cfg(feature = "broker")]
/// Connections whose threads run.
static CONNECTION_THREADS: AtomicUsize = AtomicUsize::new(0);

#[cfg(feature = "broker")]
/// How often a write blocked on its peer looks for mail that closes the connection.
const WRITE_POLL: Duration = Duration::from_millis(50);

#[cfg(feature = "broker")]
/// How long a write to a peer may make no progress before the connection is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(feature = "broker")]
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

#[cfg(feature = "broker")]
/// Waits `d` (the accept loop's pause after an error such as running out of descriptors).
#[allow(clippy::disallowed_methods)]
fn pause(d: Duration) {
    thread::sleep(d);
}

#[cfg(feature = "broker")]
/// One connection's place under [`MAX_CONNECTION_THREADS`], given back on drop.
struct Slot;

#[cfg(feature = "broker")]
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

#[cfg(feature = "broker")]
impl Drop for Slot {
    fn drop(&mut self) {
        CONNECTION_THREADS.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(feature = "broker")]
/// Starts a connection's reader thread and its connection thread (which owns the
/// `ServerConnection` and writes) on three handles of one socket; returns the router's
/// mailbox for it, or its parts back when there is no room for more connections or the
/// threads cannot start.
fn connection(streams: [TcpStream; 3], p: Parts) -> Result<Mailbox<Queue>, Box<Parts>> {
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
    Ok(Mailbox::new(
        Queue {
            tx,
            stream: abort,
            closing,
            closed,
        },
        queued,
    ))
}

#[cfg(feature = "broker")]
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
                        conn.handle_router(at, m);
                    }
                }
            }
            mail.extend(std::iter::from_fn(|| conn.poll_router()));
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
                        conn.handle_router(at, m);
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

#[cfg(feature = "broker")]
/// How long a connection whose mail ends it (a takeover) waits for bytes its client sent
/// before: the reader thread may not have handed them over yet.
const ORDER_GRACE: Duration = Duration::from_millis(20);

#[cfg(feature = "broker")]
/// How many such waits one ending mail gets while bytes keep coming (a client that keeps
/// sending cannot hold its takeover off).
const ORDER_GRACES: u32 = 4;

#[cfg(feature = "broker")]
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

#[cfg(feature = "broker")]
/// Queued inputs (reads, mail batches) a broker connection's thread takes before it writes.
const INPUTS_PER_WRITE: usize = 32;

#[cfg(feature = "broker")]
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
