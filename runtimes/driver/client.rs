//! The client driver: the session's waiters and drain order (`ClientCore`), and the async loop.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;

use super::{answer, Ack, Error, Reply, SubAck};
use crate::client::{Client as Session, ClientState, Event};
use crate::codec::{
    AckProperties, Disconnect, Publish, SubscribeProperties, Subscription, UnsubscribeProperties,
};
use crate::error::ClientError;
use crate::{PacketId, ReasonCode, TopicFilter};

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

/// A client session with the waiters of its pending commands.
#[derive(Debug)]
pub(crate) struct ClientCore {
    session: Session,
    publishes: HashMap<PacketId, Reply<Ack>>,
    subscribes: HashMap<PacketId, Reply<SubAck>>,
    unsubscribes: HashMap<PacketId, Reply<SubAck>>,
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
            publishes: HashMap::new(),
            subscribes: HashMap::new(),
            unsubscribes: HashMap::new(),
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
        std::mem::take(&mut self.out)
    }

    /// Carries out `command`, or gives it back when it has to wait.
    fn try_command(&mut self, now: Instant, command: Command) -> Option<Command> {
        if self.stopping.is_some() {
            fail(command, Error::Stopped);
            return None;
        }
        let result = match &command {
            Command::Publish(p, _) => self.session.publish(now, (**p).clone()).map(Id::Publish),
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
        let waiting = matches!(
            self.session.state(),
            ClientState::Connecting | ClientState::Reconnecting
        );
        match (result, command) {
            (Ok(Id::Publish(Some(id))), Command::Publish(_, r)) => {
                self.publishes.insert(id, r);
            }
            (Ok(Id::Publish(None)), Command::Publish(_, r)) => {
                let ack = Ack {
                    packet_id: None,
                    reason_code: ReasonCode::Success,
                    properties: AckProperties::default(),
                };
                answer(r, Ok(ack));
            }
            (Ok(Id::Subscribe(id)), Command::Subscribe(_, _, r)) => {
                self.subscribes.insert(id, r);
            }
            (Ok(Id::Unsubscribe(id)), Command::Unsubscribe(_, _, r)) => {
                self.unsubscribes.insert(id, r);
            }
            (Err(ClientError::WindowFull(_)), c) => return Some(c),
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

    /// Drains the session in the order of the grammar, answering waiters.
    fn drain(&mut self, now: Instant) {
        loop {
            while let Some(b) = self.session.poll_transmit() {
                self.out.transmit.push(b);
            }
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
    Publish(Option<PacketId>),
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
    use std::pin::pin;

    use bytes::Bytes;

    use super::{ClientCore, Command};
    use crate::client::{Client as Session, ClientConfig, Event};
    use crate::codec::{
        Disconnect, Publish, SubscribeProperties, Subscription, UnsubscribeProperties,
    };
    use crate::runtimes::driver::{
        now, reply_channel, wait, wait_fair, Alarm, Error, Events, Pending, Reader, Runtime,
        SubAck, Woke, Writer, CLIENT_COMMANDS, CLIENT_EVENTS, NET_CHUNKS, READ_CHUNK,
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

    /// What a reader task reports, tagged with its connection's generation.
    enum Net {
        Bytes(Bytes),
        Closed,
    }

    /// One connection's transport in the driver.
    struct Transport<R: Runtime> {
        writer: R::Writer,
        /// Dropped to stop the reader.
        _stop: async_channel::Sender<()>,
    }

    fn start<R: Runtime>(
        reader: R::Reader,
        writer: R::Writer,
        generation: u64,
        net: async_channel::Sender<(u64, Net)>,
    ) -> Transport<R> {
        let (stop_tx, stop_rx) = async_channel::bounded(1);
        R::spawn(read_loop::<R>(reader, generation, net, stop_rx));
        Transport {
            writer,
            _stop: stop_tx,
        }
    }

    async fn read_loop<R: Runtime>(
        mut reader: R::Reader,
        generation: u64,
        net: async_channel::Sender<(u64, Net)>,
        stop: async_channel::Receiver<()>,
    ) {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let read = wait::<R, _, _>(reader.read(&mut buf), Some(stop.recv()), None).await;
            let msg = match read {
                Woke::First(Ok(n)) if n > 0 => Net::Bytes(Bytes::copy_from_slice(&buf[..n])),
                Woke::First(_) => Net::Closed,
                _ => return,
            };
            let closed = matches!(msg, Net::Closed);
            if net.send((generation, msg)).await.is_err() || closed {
                return;
            }
        }
    }

    /// Packets up to this size are copied into one buffer and written together.
    const COALESCE: usize = 4 * 1024;

    /// Writes `packets` in order, the small ones gathered in `batch` so that a run of them
    /// takes one write instead of one each.
    async fn write_batch<W: Writer>(
        writer: &mut W,
        packets: &[Bytes],
        batch: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        batch.clear();
        for p in packets {
            if p.len() > COALESCE {
                if !batch.is_empty() {
                    writer.write_all(batch).await?;
                    batch.clear();
                }
                writer.write_all(p).await?;
            } else {
                batch.extend_from_slice(p);
                if batch.len() >= READ_CHUNK {
                    writer.write_all(batch).await?;
                    batch.clear();
                }
            }
        }
        if !batch.is_empty() {
            writer.write_all(batch).await?;
        }
        batch.clear();
        Ok(())
    }

    /// The driver loop: waits for bytes, a command or the deadline, feeds the core, and carries
    /// out its output (write, close, reconnect) until the core stops.
    async fn run<R: Runtime>(
        addr: SocketAddr,
        mut core: ClientCore,
        commands: async_channel::Receiver<Command>,
        events: async_channel::Sender<Event>,
        reader: R::Reader,
        writer: R::Writer,
    ) {
        let (net_tx, net_rx) = async_channel::bounded(NET_CHUNKS);
        let mut generation = 0u64;
        let mut transport = Some(start::<R>(reader, writer, generation, net_tx.clone()));
        core.connect(now(), true);
        let mut turn = false;
        let mut batch = Vec::new();
        let sleep = pin!(None);
        let mut alarm = Alarm::new(sleep);
        loop {
            loop {
                let out = core.take_output();
                if out.transmit.is_empty() && !out.close && !out.reconnect && out.events.is_empty()
                {
                    break;
                }
                if let Some(t) = transport.as_mut() {
                    if write_batch(&mut t.writer, &out.transmit, &mut batch)
                        .await
                        .is_err()
                    {
                        transport = None;
                        core.transport_closed(now());
                    }
                }
                for e in out.events {
                    // A dropped `Events` discards events.
                    let _ = events.send(e).await;
                }
                if out.close {
                    if let Some(mut t) = transport.take() {
                        t.writer.close().await;
                    }
                }
                if out.reconnect {
                    generation += 1;
                    let deadline = now() + core.connect_timeout();
                    let opened = wait::<R, _, ()>(
                        R::connect(addr),
                        None::<std::future::Pending<()>>,
                        Some(deadline),
                    )
                    .await;
                    match opened {
                        Woke::First(Ok((r, w))) => {
                            transport = Some(start::<R>(r, w, generation, net_tx.clone()));
                            core.connect(now(), true);
                        }
                        _ => core.connect(now(), false),
                    }
                }
            }
            if let Some(reply) = core.take_stop() {
                if let Some(r) = reply {
                    r.send(Ok(()));
                }
                return;
            }
            let cmd = (!core.is_parked()).then(|| commands.recv());
            alarm.arm(core.deadline(), R::sleep_until);
            match wait_fair(net_rx.recv(), cmd, &mut alarm, &mut turn).await {
                Woke::First(Ok((g, Net::Bytes(b)))) if g == generation => core.input(now(), &b),
                Woke::First(Ok((g, Net::Closed))) if g == generation => {
                    transport = None;
                    core.transport_closed(now());
                }
                Woke::First(_) => {}
                Woke::Second(Ok(c)) => {
                    // Take what else is queued, so its packets go out in one write.
                    core.command(now(), c);
                    for _ in 1..CLIENT_COMMANDS {
                        if core.is_parked() {
                            break;
                        }
                        let Ok(c) = commands.try_recv() else { break };
                        core.command(now(), c);
                    }
                }
                Woke::Second(Err(_)) => core.handles_gone(now()),
                Woke::Deadline => core.timeout(now()),
            }
        }
    }
}
