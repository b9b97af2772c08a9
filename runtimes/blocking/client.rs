//! The blocking client: a handle, its session thread and a reader thread per connection.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use bytes::Bytes;

use crate::client::{AckToken, ClientConfig, SessionState};
use crate::codec::{
    Auth, Disconnect, Publish, SubscribeProperties, Subscription, UnsubscribeProperties,
};
use crate::runtimes::blocking::{next, Permits};
use crate::runtimes::driver::client::{fail, ClientCore, Command};
use crate::runtimes::driver::transport::{self, Connector, Endpoint, Link, TransportError};
use crate::runtimes::driver::{
    self, block_until, now, reply_channel, CLIENT_COMMANDS, CLIENT_EVENTS, EVENTS_STALL, NET_CHUNKS,
};
use crate::runtimes::driver::{
    BlockingEvents as Events, BlockingPending as Pending, ConnectOptions, Error, SubAck,
};
use crate::TopicFilter;

/// What the client's session thread waits for.
///
/// Kept unboxed on purpose: `Command` carries each PUBLISH, and boxing it would cost an
/// allocation per message to shrink the rare inputs.
#[allow(clippy::large_enum_variant)]
enum Input {
    Bytes(u64, Bytes),
    /// [`Client::ack`] left tokens in [`Side::acks`].
    Acks,
    Closed(u64),
    Command(Command),
    HandlesGone,
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
