//! The client driver: the session's waiters and drain order (`ClientCore`), and the async loop.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

use bytes::Bytes;

use super::{answer, Ack, Error, Reply, SubAck};
use crate::client::{Client as Session, ClientState, Event};
use crate::codec::{
    AckProperties, Disconnect, Publish, SubscribeProperties, Subscription, UnsubscribeProperties,
};
use crate::error::ClientError;
use crate::{PacketId, QoS, ReasonCode, TopicFilter};

/// What a client handle asks its driver to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// Publish, answering with the acknowledgement.
    Publish(Box<Publish>, Reply<Ack>),
    /// Subscribe, answering with the SUBACK.
    Subscribe(Vec<Subscription>, SubscribeProperties, Reply<SubAck>),
    /// Unsubscribe, answering with the UNSUBACK.
    Unsubscribe(Vec<TopicFilter>, UnsubscribeProperties, Reply<SubAck>),
    /// Disconnect cleanly and stop, answering once the transport is closed.
    Disconnect(Disconnect, Option<Reply<()>>),
}

/// What the loop must do after an input, in this order.
#[derive(Debug, Default)]
pub(crate) struct Output {
    /// Bytes to write.
    pub(crate) transmit: Vec<Bytes>,
    /// Events for the application.
    pub(crate) events: Vec<Event>,
    /// Close the transport (after writing `transmit`).
    pub(crate) close: bool,
    /// Open a new transport and call [`ClientCore::connect`].
    pub(crate) reconnect: bool,
}

/// Hashes a packet identifier with one multiplication: the session hands them out one after
/// another, so they spread well, and nobody else chooses them (SipHash cost more than the
/// rest of a waiter's bookkeeping).
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u16(&mut self, n: u16) {
        self.0 = (self.0.rotate_left(16) ^ u64::from(n)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Waiters by packet identifier.
type Waiters<T> = HashMap<PacketId, Reply<T>, BuildHasherDefault<IdHasher>>;

/// A client session with the waiters of its pending commands.
#[derive(Debug)]
pub(crate) struct ClientCore {
    session: Session,
    publishes: Waiters<Ack>,
    subscribes: Waiters<SubAck>,
    unsubscribes: Waiters<SubAck>,
    /// A command waiting for room in the window or for a connection; while it waits the
    /// loop takes no further commands.
    parked: Option<Command>,
    /// Answered when the first connection is accepted or fails.
    ready: Option<Reply<()>>,
    /// Set once the driver must end; answered when it has.
    stopping: Option<Option<Reply<()>>>,
    out: Output,
}

impl ClientCore {
    /// A core for `session`; `ready` hears how the first connection went.
    pub(crate) fn new(session: Session, ready: Reply<()>) -> ClientCore {
        ClientCore {
            session,
            publishes: Waiters::default(),
            subscribes: Waiters::default(),
            unsubscribes: Waiters::default(),
            parked: None,
            ready: Some(ready),
            stopping: None,
            out: Output::default(),
        }
    }

    /// The connect timeout of the session's configuration.
    pub(crate) fn connect_timeout(&self) -> std::time::Duration {
        self.session.config().connect_timeout
    }

    /// Whether a command waits, so no new one should be taken.
    pub(crate) fn is_parked(&self) -> bool {
        self.parked.is_some()
    }

    /// Whether the driver must end; `Some` carries the waiter of a `disconnect`.
    pub(crate) fn take_stop(&mut self) -> Option<Option<Reply<()>>> {
        self.take_transmit();
        if self.out.transmit.is_empty() && !self.out.close {
            self.stopping.take()
        } else {
            None
        }
    }

    /// The earliest deadline of the session.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }

    /// A new transport is open (`ok`) or could not be opened.
    pub(crate) fn connect(&mut self, now: Instant, ok: bool) {
        if self.session.connect(now).is_ok() && !ok {
            self.session.handle_transport_closed(now);
        }
        self.drain(now);
    }

    /// Bytes arrived.
    pub(crate) fn input(&mut self, now: Instant, data: &[u8]) {
        self.session.handle_input(now, data);
        self.drain(now);
    }

    /// The transport closed.
    pub(crate) fn transport_closed(&mut self, now: Instant) {
        self.session.handle_transport_closed(now);
        self.drain(now);
    }

    /// A deadline passed.
    pub(crate) fn timeout(&mut self, now: Instant) {
        self.session.handle_timeout(now);
        self.drain(now);
    }

    /// A command from a handle.
    pub(crate) fn command(&mut self, now: Instant, command: Command) {
        if let Some(c) = self.try_command(now, command) {
            self.parked = Some(c);
        }
        self.drain(now);
    }

    /// Every handle is gone: disconnect cleanly.
    pub(crate) fn handles_gone(&mut self, now: Instant) {
        self.command(now, Command::Disconnect(Disconnect::default(), None));
    }

    /// What the loop must do now.
    pub(crate) fn take_output(&mut self) -> Output {
        self.take_transmit();
        std::mem::take(&mut self.out)
    }

    fn take_transmit(&mut self) {
        while let Some(b) = self.session.poll_transmit() {
            self.out.transmit.push(b);
        }
    }

    /// Carries out `command`, or gives it back when it has to wait.
    fn try_command(&mut self, now: Instant, command: Command) -> Option<Command> {
        if self.stopping.is_some() {
            fail(command, Error::Stopped);
            return None;
        }
        let waiting = matches!(
            self.session.state(),
            ClientState::Connecting | ClientState::Reconnecting
        );
        if let Command::Publish(p, r) = command {
            // Checked before the session takes the message, so that a message that has to
            // wait is kept, not copied.
            if waiting || (p.qos != QoS::AtMostOnce && !self.session.window_open()) {
                return Some(Command::Publish(p, r));
            }
            match self.session.publish(now, *p) {
                Ok(Some(id)) => {
                    self.publishes.insert(id, r);
                }
                Ok(None) => {
                    let ack = Ack {
                        packet_id: None,
                        reason_code: ReasonCode::Success,
                        properties: AckProperties::default(),
                    };
                    answer(r, Ok(ack));
                }
                Err(ClientError::NotConnected) => answer(r, Err(Error::Stopped)),
                Err(e) => answer(r, Err(Error::Client(e))),
            }
            return None;
        }
        let result = match &command {
            Command::Publish(..) => return None,
            Command::Subscribe(f, props, _) => self
                .session
                .subscribe(now, f.clone(), props.clone())
                .map(Id::Subscribe),
            Command::Unsubscribe(f, props, _) => self
                .session
                .unsubscribe(now, f.clone(), props.clone())
                .map(Id::Unsubscribe),
            Command::Disconnect(d, _) => {
                // Refused only when idle or unencodable: stop all the same.
                let _ = self.session.disconnect(now, d.clone());
                if let Command::Disconnect(_, reply) = command {
                    self.stop(reply);
                }
                return None;
            }
        };
        match (result, command) {
            (Ok(Id::Subscribe(id)), Command::Subscribe(_, _, r)) => {
                self.subscribes.insert(id, r);
            }
            (Ok(Id::Unsubscribe(id)), Command::Unsubscribe(_, _, r)) => {
                self.unsubscribes.insert(id, r);
            }
            (Err(ClientError::NotConnected), c) if waiting => return Some(c),
            (Err(ClientError::NotConnected), c) => fail(c, Error::Stopped),
            (Err(e), c) => fail(c, Error::Client(e)),
            (Ok(_), c) => fail(c, Error::Stopped),
        }
        None
    }

    /// The driver ends once what is queued is written.
    fn stop(&mut self, reply: Option<Reply<()>>) {
        self.out.close = true;
        self.stopping = Some(reply);
        self.fail_all(|| Error::Stopped);
    }

    fn fail_all(&mut self, error: impl Fn() -> Error) {
        for (_, r) in self.publishes.drain() {
            answer(r, Err(error()));
        }
        for (_, r) in self.subscribes.drain().chain(self.unsubscribes.drain()) {
            answer(r, Err(error()));
        }
        if let Some(c) = self.parked.take() {
            fail(c, error());
        }
        if let Some(r) = self.ready.take() {
            answer(r, Err(error()));
        }
    }

    /// Drains the session's events, answering waiters, and lets a parked command through
    /// when it can go.
    ///
    /// The bytes to write stay in the session's buffer until [`ClientCore::take_output`], so
    /// the packets of every command and input since the last write leave in one buffer (the
    /// session keeps them in order; a new connection discards what the old one did not send).
    fn drain(&mut self, now: Instant) {
        loop {
            while let Some(e) = self.session.poll_event() {
                self.event(e);
            }
            // A freed slot or a new connection may let the parked command through.
            let Some(c) = self.parked.take() else { break };
            if let Some(c) = self.try_command(now, c) {
                self.parked = Some(c);
                break;
            }
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Published {
                packet_id,
                reason_code,
                properties,
            } => {
                if let Some(r) = self.publishes.remove(&packet_id) {
                    let ack = Ack {
                        packet_id: Some(packet_id),
                        reason_code,
                        properties,
                    };
                    answer(r, Ok(ack));
                }
            }
            Event::Subscribed {
                packet_id,
                reason_codes,
                properties,
            } => {
                if let Some(r) = self.subscribes.remove(&packet_id) {
                    let ack = SubAck {
                        packet_id,
                        reason_codes,
                        properties,
                    };
                    answer(r, Ok(ack));
                }
            }
            Event::Unsubscribed {
                packet_id,
                reason_codes,
                properties,
            } => {
                if let Some(r) = self.unsubscribes.remove(&packet_id) {
                    let ack = SubAck {
                        packet_id,
                        reason_codes,
                        properties,
                    };
                    answer(r, Ok(ack));
                }
            }
            Event::ReconnectDue => self.out.reconnect = true,
            Event::Connected { .. } => {
                if let Some(r) = self.ready.take() {
                    answer(r, Ok(()));
                }
                self.out.events.push(event);
            }
            Event::Reconnected { ref lost, .. } => {
                for id in lost.publishes.iter().filter_map(|p| p.packet_id) {
                    if let Some(r) = self.publishes.remove(&id) {
                        answer(r, Err(Error::Lost));
                    }
                }
                for id in &lost.released {
                    if let Some(r) = self.publishes.remove(id) {
                        answer(r, Err(Error::Lost));
                    }
                }
                for id in &lost.subscribes {
                    if let Some(r) = self.subscribes.remove(id) {
                        answer(r, Err(Error::Lost));
                    }
                }
                for id in &lost.unsubscribes {
                    if let Some(r) = self.unsubscribes.remove(id) {
                        answer(r, Err(Error::Lost));
                    }
                }
                self.out.events.push(event);
            }
            Event::Disconnected { ref reason, .. } => {
                self.out.close = true;
                if let Some(r) = self.ready.take() {
                    answer(r, Err(Error::ConnectFailed(reason.clone())));
                    self.stop(None);
                } else if self.session.state() == ClientState::Idle && self.stopping.is_none() {
                    self.stop(None);
                }
                self.out.events.push(event);
            }
            other => self.out.events.push(other),
        }
    }
}

/// Which identifier a command got.
enum Id {
    Subscribe(PacketId),
    Unsubscribe(PacketId),
}

/// Answers a command that cannot be carried out.
fn fail(command: Command, error: Error) {
    match command {
        Command::Publish(_, r) => answer(r, Err(error)),
        Command::Subscribe(_, _, r) | Command::Unsubscribe(_, _, r) => answer(r, Err(error)),
        Command::Disconnect(_, Some(r)) => answer(r, Ok(())),
        Command::Disconnect(_, None) => {}
    }
}

#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
pub use handle::Client;

#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
mod handle {
    use std::marker::PhantomData;
    use std::net::SocketAddr;

    use super::{ClientCore, Command};
    use crate::client::{Client as Session, ClientConfig, Event};
    use crate::codec::{
        Disconnect, Publish, SubscribeProperties, Subscription, UnsubscribeProperties,
    };
    use std::future::{poll_fn, Future};
    use std::pin::pin;
    use std::task::Poll;

    use crate::runtimes::driver::{
        now, reply_channel, wait, Error, Events, Pending, Reader, Runtime, SubAck, Woke, Writer,
        CLIENT_COMMANDS, CLIENT_EVENTS, READ_CHUNK,
    };
    use crate::TopicFilter;

    /// A handle to a running client (any async runtime); clones share the session.
    ///
    /// The session's driver runs in a task of its own: it reconnects with the configured
    /// backoff and ends on [`Client::disconnect`] or when every handle is dropped.
    pub struct Client<R> {
        commands: async_channel::Sender<Command>,
        runtime: PhantomData<fn() -> R>,
    }

    impl<R> Clone for Client<R> {
        fn clone(&self) -> Self {
            Client {
                commands: self.commands.clone(),
                runtime: PhantomData,
            }
        }
    }

    impl<R> std::fmt::Debug for Client<R> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Client").finish_non_exhaustive()
        }
    }

    impl<R: Runtime> Client<R> {
        /// Connects to `addr` and runs the session in a task; returns once the server accepted
        /// the first connection (a refusal or a failure before CONNACK is an error).
        pub async fn connect(
            addr: SocketAddr,
            config: ClientConfig,
        ) -> Result<(Self, Events), Error> {
            let (reader, writer) = R::connect(addr).await?;
            let (ready_tx, ready_rx) = reply_channel();
            let (cmd_tx, cmd_rx) = async_channel::bounded(CLIENT_COMMANDS);
            let (ev_tx, ev_rx) = async_channel::bounded(CLIENT_EVENTS);
            let core = ClientCore::new(Session::new(config), ready_tx);
            R::spawn(run::<R>(addr, core, cmd_rx, ev_tx, reader, writer));
            ready_rx.recv().await.unwrap_or(Err(Error::Stopped))?;
            let client = Client {
                commands: cmd_tx,
                runtime: PhantomData,
            };
            Ok((client, Events::from_receiver(ev_rx)))
        }

        /// Publishes; the returned [`Pending`] completes with the acknowledgement.
        ///
        /// Waits while the command queue is full, which it is while the in-flight window is.
        pub async fn publish(&self, publish: Publish) -> Result<Pending, Error> {
            let (tx, rx) = reply_channel();
            self.send(Command::Publish(Box::new(publish), tx)).await?;
            Ok(Pending::from_receiver(rx))
        }

        /// Subscribes and waits for the SUBACK.
        pub async fn subscribe(&self, filters: Vec<Subscription>) -> Result<SubAck, Error> {
            self.subscribe_with(filters, SubscribeProperties::default())
                .await
        }

        /// Subscribes with MQTT 5 properties and waits for the SUBACK.
        pub async fn subscribe_with(
            &self,
            filters: Vec<Subscription>,
            properties: SubscribeProperties,
        ) -> Result<SubAck, Error> {
            let (tx, rx) = reply_channel();
            self.send(Command::Subscribe(filters, properties, tx))
                .await?;
            rx.recv().await.unwrap_or(Err(Error::Stopped))
        }

        /// Unsubscribes and waits for the UNSUBACK.
        pub async fn unsubscribe(&self, filters: Vec<TopicFilter>) -> Result<SubAck, Error> {
            let (tx, rx) = reply_channel();
            let props = UnsubscribeProperties::default();
            self.send(Command::Unsubscribe(filters, props, tx)).await?;
            rx.recv().await.unwrap_or(Err(Error::Stopped))
        }

        /// Sends DISCONNECT (normal), closes the transport and stops the driver.
        pub async fn disconnect(&self) -> Result<(), Error> {
            self.disconnect_with(Disconnect::default()).await
        }

        /// Sends this DISCONNECT (MQTT 5 reason code and properties), closes and stops.
        pub async fn disconnect_with(&self, disconnect: Disconnect) -> Result<(), Error> {
            let (tx, rx) = reply_channel();
            self.send(Command::Disconnect(disconnect, Some(tx))).await?;
            rx.recv().await.unwrap_or(Ok(()))
        }

        async fn send(&self, command: Command) -> Result<(), Error> {
            self.commands
                .send(command)
                .await
                .map_err(|_| Error::Stopped)
        }
    }

    /// One connection's socket; the driver reads and writes it itself.
    struct Transport<R: Runtime> {
        reader: R::Reader,
        writer: R::Writer,
    }

    /// What woke the driver.
    enum Wake {
        /// The socket is readable (or failed).
        Readable(std::io::Result<()>),
        /// A command, or every handle is gone.
        Command(Result<Command, async_channel::RecvError>),
        /// The session's deadline passed.
        Deadline,
    }

    /// Commands carried out between two writes while a burst is taken from the queue: the
    /// server starts on the first packets while the next are encoded, instead of the two
    /// taking turns over a whole window.
    const CHUNK: usize = 32;

    /// The driver: the session's core, its connection and what it reads into.
    struct Driver<R: Runtime> {
        addr: SocketAddr,
        core: ClientCore,
        commands: async_channel::Receiver<Command>,
        events: async_channel::Sender<Event>,
        transport: Option<Transport<R>>,
        buf: Vec<u8>,
        /// Which source goes first in the next wait (see [`wait_fair`]).
        turn: bool,
    }

    impl<R: Runtime> Driver<R> {
        /// Carries out what the core asks (write, events, close, reconnect) until it asks
        /// nothing more.
        async fn flush(&mut self) {
            loop {
                let out = self.core.take_output();
                if out.transmit.is_empty() && !out.close && !out.reconnect && out.events.is_empty()
                {
                    return;
                }
                for bytes in &out.transmit {
                    let Some(t) = self.transport.as_mut() else {
                        break;
                    };
                    if t.writer.write_all(bytes).await.is_err() {
                        self.transport = None;
                        self.core.transport_closed(now());
                    }
                }
                for e in out.events {
                    // A dropped `Events` discards events.
                    let _ = self.events.send(e).await;
                }
                if out.close {
                    if let Some(mut t) = self.transport.take() {
                        t.writer.close().await;
                    }
                }
                if out.reconnect {
                    let deadline = now() + self.core.connect_timeout();
                    let opened = wait::<R, _, ()>(
                        R::connect(self.addr),
                        None::<std::future::Pending<()>>,
                        Some(deadline),
                    )
                    .await;
                    match opened {
                        Woke::First(Ok((reader, writer))) => {
                            self.transport = Some(Transport { reader, writer });
                            self.core.connect(now(), true);
                        }
                        _ => self.core.connect(now(), false),
                    }
                }
            }
        }

        /// Waits for the first of: a passed deadline, then readability and a command taking
        /// turns at going first. Every source is cancel-safe.
        async fn next(&mut self) -> Wake {
            let commands_first = self.turn;
            self.turn = !self.turn;
            let take = !self.core.is_parked();
            let mut read = pin!(self.transport.as_mut().map(|t| t.reader.readable()));
            let mut command = pin!(take.then(|| self.commands.recv()));
            let mut sleep = pin!(self.core.deadline().map(R::sleep_until));
            poll_fn(|cx| {
                if let Some(s) = sleep.as_mut().as_pin_mut() {
                    if s.poll(cx).is_ready() {
                        return Poll::Ready(Wake::Deadline);
                    }
                }
                for round in 0..2 {
                    if (round == 0) == commands_first {
                        if let Some(c) = command.as_mut().as_pin_mut() {
                            if let Poll::Ready(c) = c.poll(cx) {
                                return Poll::Ready(Wake::Command(c));
                            }
                        }
                    } else if let Some(r) = read.as_mut().as_pin_mut() {
                        if let Poll::Ready(r) = r.poll(cx) {
                            return Poll::Ready(Wake::Readable(r));
                        }
                    }
                }
                Poll::Pending
            })
            .await
        }

        /// Reads what the socket has now into the session.
        fn read(&mut self) {
            let Some(t) = self.transport.as_mut() else {
                return;
            };
            if self.buf.is_empty() {
                self.buf.resize(READ_CHUNK, 0);
            }
            match t.reader.try_read(&mut self.buf) {
                Ok(n) if n > 0 => self.core.input(now(), &self.buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                _ => {
                    self.transport = None;
                    self.core.transport_closed(now());
                }
            }
        }

        /// Takes the commands queued now, up to [`CLIENT_COMMANDS`], while none waits for
        /// room: the window refills from the queue as soon as acknowledgements free it, with
        /// no round trip through the caller. Writes after every [`CHUNK`] of them.
        async fn take_commands(&mut self) {
            let mut taken = 0;
            // One reading of the clock for the burst.
            let now = now();
            while taken < CLIENT_COMMANDS && !self.core.is_parked() {
                let Ok(c) = self.commands.try_recv() else {
                    return;
                };
                self.core.command(now, c);
                taken += 1;
                if taken % CHUNK == 0 {
                    self.flush().await;
                }
            }
        }
    }

    /// The driver loop: waits for bytes, a command or the deadline, feeds the core, takes
    /// what else is queued, and carries out the core's output (write, close, reconnect) until
    /// the core stops.
    async fn run<R: Runtime>(
        addr: SocketAddr,
        core: ClientCore,
        commands: async_channel::Receiver<Command>,
        events: async_channel::Sender<Event>,
        reader: R::Reader,
        writer: R::Writer,
    ) {
        let mut d = Driver::<R> {
            addr,
            core,
            commands,
            events,
            transport: Some(Transport { reader, writer }),
            buf: Vec::new(),
            turn: false,
        };
        d.core.connect(now(), true);
        loop {
            d.flush().await;
            if let Some(reply) = d.core.take_stop() {
                if let Some(r) = reply {
                    r.send(Ok(()));
                }
                return;
            }
            match d.next().await {
                Wake::Readable(Ok(())) => d.read(),
                Wake::Readable(Err(_)) => {
                    d.transport = None;
                    d.core.transport_closed(now());
                }
                Wake::Command(Ok(c)) => d.core.command(now(), c),
                Wake::Command(Err(_)) => d.core.handles_gone(now()),
                Wake::Deadline => d.core.timeout(now()),
            }
            d.take_commands().await;
        }
    }
}
