//! The client driver: the session's waiters and drain order (`ClientCore`), and the async loop.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::{answer, Ack, Error, Reply, SubAck};
use crate::client::{
    AckToken, ClientConfig, ClientSession as Session, ClientState, Event, SessionState,
};
use crate::codec::{
    AckProperties, Auth, Disconnect, Publish, SubscribeProperties, Subscription,
    UnsubscribeProperties,
};
use crate::error::ClientError;
use crate::hash::IdMap;
use crate::{PacketId, QoS, ReasonCode, TopicFilter};

/// What a client handle asks its driver to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// Publish, answering with the acknowledgement.
    Publish(Publish, Reply<Ack>),
    /// Subscribe, answering with the SUBACK.
    Subscribe(Vec<Subscription>, SubscribeProperties, Reply<SubAck>),
    /// Unsubscribe, answering with the UNSUBACK.
    Unsubscribe(Vec<TopicFilter>, UnsubscribeProperties, Reply<SubAck>),
    /// Disconnect cleanly and stop, answering once the transport is closed.
    Disconnect(Disconnect, Option<Reply<()>>),
    /// Send AUTH (enhanced authentication), answering at once (the blocking runtime's way).
    #[cfg_attr(not(feature = "blocking"), allow(dead_code))]
    Auth(Auth, Reply<()>),
    /// Export the session state, answering at once (the blocking runtime's way).
    #[cfg_attr(not(feature = "blocking"), allow(dead_code))]
    Session(Reply<SessionState>),
}

/// Answers the server's AUTH challenges (MQTT 5 enhanced authentication): given the server's
/// AUTH, the client's next AUTH, or `None` to leave it to the application (it then arrives as
/// [`Event::Auth`], to answer with the client's `auth`).
pub type AuthHandler = Box<dyn FnMut(&Auth) -> Option<Auth> + Send>;

/// How a runtime client starts, beyond its [`ClientConfig`]: build it with
/// [`ConnectOptions::new`] and the `with_*` methods, and pass it to `connect_with`.
///
/// ```
/// use tinymqtt::client::SessionState;
/// use tinymqtt::codec::Auth;
/// use tinymqtt::runtimes::ConnectOptions;
///
/// let saved = SessionState::default(); // e.g. read back from disk
/// let options = ConnectOptions::new()
///     .with_session(saved)
///     .with_auth(|challenge: &Auth| Some(Auth::default()));
/// ```
#[non_exhaustive]
#[derive(Default)]
pub struct ConnectOptions {
    /// A session exported earlier (the client's `session_state`) to resume: its unfinished
    /// QoS 1/2 flows are resent once the server resumes the session.
    pub session: Option<SessionState>,
    /// Answers AUTH challenges, from the CONNECT's enhanced authentication on (the first
    /// connection completes inside `connect_with`, before the application could answer).
    pub auth: Option<AuthHandler>,
}

impl ConnectOptions {
    /// No session to resume, AUTH left to the application.
    pub fn new() -> ConnectOptions {
        ConnectOptions::default()
    }

    /// Resumes `session`.
    pub fn with_session(mut self, session: SessionState) -> ConnectOptions {
        self.session = Some(session);
        self
    }

    /// Answers AUTH challenges with `handler`.
    pub fn with_auth(
        mut self,
        handler: impl FnMut(&Auth) -> Option<Auth> + Send + 'static,
    ) -> ConnectOptions {
        self.auth = Some(Box::new(handler));
        self
    }

    /// The sans-IO session these options start from.
    pub(crate) fn session_for(&mut self, config: ClientConfig) -> Session {
        match self.session.take() {
            Some(s) => Session::with_session(config, s),
            None => Session::new(config),
        }
    }
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("session", &self.session)
            .field("auth", &self.auth.as_ref().map(|_| "handler"))
            .finish()
    }
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

/// Waiters by packet identifier.
type Waiters<T> = IdMap<PacketId, Reply<T>>;

/// A client session with the waiters of its pending commands.
#[derive(Debug)]
pub(crate) struct ClientCore {
    session: Session,
    publishes: Waiters<Ack>,
    subscribes: Waiters<SubAck>,
    unsubscribes: Waiters<SubAck>,
    /// Commands waiting, in order: the first for room in the window or for a connection, the
    /// others behind it. The async client lets its handles queue up to [`CLIENT_COMMANDS`]
    /// here; the blocking runtime hands over the next only when this is empty.
    ///
    /// [`CLIENT_COMMANDS`]: super::CLIENT_COMMANDS
    queue: VecDeque<Command>,
    /// Answered when the first connection is accepted or fails.
    ready: Option<Reply<()>>,
    /// Set once the driver must end; answered when it has.
    stopping: Option<Option<Reply<()>>>,
    /// Answers the server's AUTH challenges, if the application gave one.
    auth: Option<Handler>,
    out: Output,
}

impl ClientCore {
    /// A core for the session `options` start with `config`; `ready` hears how the first
    /// connection went.
    pub(crate) fn start(
        config: ClientConfig,
        mut options: ConnectOptions,
        ready: Reply<()>,
    ) -> ClientCore {
        let mut core = ClientCore::new(options.session_for(config), ready);
        core.auth = options.auth.map(Handler);
        core
    }

    /// A core for `session`; `ready` hears how the first connection went.
    pub(crate) fn new(session: Session, ready: Reply<()>) -> ClientCore {
        ClientCore {
            session,
            publishes: Waiters::default(),
            subscribes: Waiters::default(),
            unsubscribes: Waiters::default(),
            queue: VecDeque::new(),
            ready: Some(ready),
            stopping: None,
            auth: None,
            out: Output::default(),
        }
    }

    /// The connect timeout of the session's configuration.
    pub(crate) fn connect_timeout(&self) -> std::time::Duration {
        self.session.config().connect_timeout
    }

    /// Whether a command waits, so a new one would only queue behind it.
    #[cfg(feature = "blocking")]
    pub(crate) fn is_parked(&self) -> bool {
        !self.queue.is_empty()
    }

    /// How many commands wait.
    #[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
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

    /// Sends AUTH: the next step of enhanced authentication, or a re-authentication.
    pub(crate) fn auth(&mut self, now: Instant, auth: Auth) -> Result<(), Error> {
        if self.stopping.is_some() {
            return Err(Error::Stopped);
        }
        self.session.auth(now, auth).map_err(Error::Client)?;
        self.drain(now);
        Ok(())
    }

    /// The session's state, to restore with [`ConnectOptions::with_session`].
    pub(crate) fn session_state(&self) -> SessionState {
        self.session.session()
    }

    /// A command from a handle: carried out now, or queued behind those that wait.
    pub(crate) fn command(&mut self, now: Instant, command: Command) {
        let command = match command {
            // Neither waits for the window: answered at once.
            Command::Auth(a, r) => return answer(r, self.auth(now, a)),
            Command::Session(r) => return answer(r, Ok(self.session_state())),
            c => c,
        };
        if !self.queue.is_empty() {
            self.queue.push_back(command);
            return;
        }
        if let Some(c) = self.try_command(now, command) {
            self.queue.push_back(c);
        }
        self.drain(now);
    }

    /// Acknowledges a message received with manual acks (never waits: the acknowledgement
    /// goes out with the next write, in the order the messages arrived).
    pub(crate) fn ack(&mut self, now: Instant, token: AckToken) -> Result<(), Error> {
        if self.stopping.is_some() {
            return Err(Error::Stopped);
        }
        self.session.ack(now, token).map_err(Error::Client)?;
        self.drain(now);
        Ok(())
    }

    /// The driver is gone without stopping (its task was dropped): every waiter hears
    /// [`Error::Stopped`], and so does every later command.
    #[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
    pub(crate) fn abandon(&mut self) {
        if self.stopping.is_none() {
            self.stopping = Some(None);
        }
        self.fail_all(|| Error::Stopped);
    }

    /// The application left the event queue full for too long: every waiter hears
    /// [`Error::EventsUnread`] (queued commands are dropped unsent).
    pub(crate) fn events_unread(&mut self) {
        self.fail_all(|| Error::EventsUnread);
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
            match self.session.publish(now, p) {
                Ok(Some(id)) => {
                    r.set_tag(id.get());
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
            Command::Auth(..) | Command::Session(_) => {
                self.command(now, command);
                return None;
            }
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
        for c in self.queue.drain(..) {
            fail(c, error());
        }
        if let Some(r) = self.ready.take() {
            answer(r, Err(error()));
        }
    }

    /// Drains the session's events, answering waiters, and lets waiting commands through as
    /// far as they can go.
    ///
    /// The bytes to write stay in the session's buffer until [`ClientCore::take_output`], so
    /// the packets of every command and input since the last write leave in one buffer (the
    /// session keeps them in order; a new connection discards what the old one did not send).
    fn drain(&mut self, now: Instant) {
        loop {
            while let Some(e) = self.session.poll_event() {
                self.event(now, e);
            }
            // Freed slots or a new connection may let waiting commands through.
            let Some(c) = self.queue.pop_front() else {
                break;
            };
            if let Some(c) = self.try_command(now, c) {
                self.queue.push_front(c);
                break;
            }
        }
    }

    fn event(&mut self, now: Instant, event: Event) {
        match event {
            Event::Auth(a) => match self.auth.as_mut().and_then(|h| (h.0)(&a)) {
                Some(reply) => {
                    // A session that can no longer answer (closed meanwhile) reports why.
                    let _ = self.session.auth(now, reply);
                }
                // During `connect` no one could answer (the application has no handle yet):
                // fail at once rather than at the connect timeout.
                None if self.ready.is_some() => {
                    if let Some(r) = self.ready.take() {
                        answer(r, Err(Error::AuthUnanswered(Box::new(a))));
                    }
                    let _ = self.session.disconnect(now, Disconnect::default());
                    self.stop(None);
                }
                None => self.out.events.push(Event::Auth(a)),
            },
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
                    let refused = ack.reason_code.is_error();
                    answer(
                        r,
                        ok_unless(refused, ack, |a| Error::PublishRefused(a.into())),
                    );
                }
            }
            Event::Subscribed {
                packet_id,
                reason_codes,
                properties,
            } => match self.subscribes.remove(&packet_id) {
                Some(r) => {
                    let ack = SubAck {
                        packet_id,
                        reason_codes,
                        properties,
                    };
                    let refused = ack.reason_codes.iter().any(|c| c.is_error());
                    answer(
                        r,
                        ok_unless(refused, ack, |a| Error::SubscribeRefused(a.into())),
                    );
                }
                // The session's own re-subscription after a reconnect: no one waits for it,
                // so the application sees its SUBACK (and any refused filter) as an event.
                None => self.out.events.push(Event::Subscribed {
                    packet_id,
                    reason_codes,
                    properties,
                }),
            },
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
                    let refused = ack.reason_codes.iter().any(|c| c.is_error());
                    answer(
                        r,
                        ok_unless(refused, ack, |a| Error::UnsubscribeRefused(a.into())),
                    );
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
                // A restored session's first connection is a reconnection to it.
                if let Some(r) = self.ready.take() {
                    answer(r, Ok(()));
                }
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

/// `Ok(answer)`, or the error `refusal` makes of it when the server refused.
fn ok_unless<T>(refused: bool, answer: T, refusal: impl FnOnce(T) -> Error) -> Result<T, Error> {
    if refused {
        Err(refusal(answer))
    } else {
        Ok(answer)
    }
}

/// The application's [`AuthHandler`].
struct Handler(AuthHandler);

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthHandler")
    }
}

/// Which identifier a command got.
enum Id {
    Subscribe(PacketId),
    Unsubscribe(PacketId),
}

/// Answers a command that cannot be carried out.
pub(crate) fn fail(command: Command, error: Error) {
    match command {
        Command::Publish(_, r) => answer(r, Err(error)),
        Command::Subscribe(_, _, r) | Command::Unsubscribe(_, _, r) => answer(r, Err(error)),
        Command::Disconnect(_, Some(r)) => answer(r, Ok(())),
        Command::Disconnect(_, None) => {}
        Command::Auth(_, r) => answer(r, Err(error)),
        Command::Session(r) => answer(r, Err(error)),
    }
}

#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
pub use handle::Client;

#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
mod handle {
    use std::future::{poll_fn, Future};
    use std::marker::PhantomData;
    use std::net::SocketAddr;
    use std::pin::pin;
    use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
    use std::task::{Poll, Waker};

    use super::{ClientCore, Command, ConnectOptions};
    use crate::client::{AckToken, ClientConfig, Event, SessionState};
    use crate::codec::{
        Auth, Disconnect, Publish, SubscribeProperties, Subscription, UnsubscribeProperties,
    };
    use crate::runtimes::driver::{
        now, reply_channel, wait, Error, Events, Pending, Reader, Runtime, SubAck, Woke, Writer,
        CLIENT_COMMANDS, CLIENT_EVENTS, EVENTS_STALL, READ_CHUNK,
    };
    use crate::TopicFilter;

    /// What the handles and the driver task share: the session's core itself, so that a
    /// command is carried out by the caller that gives it (encoded into the session's output
    /// at once, or queued behind the window) and the driver only reads, writes and keeps
    /// time. No channel between them, no allocation per command beyond its answer.
    struct Shared {
        state: Mutex<State>,
        /// Signalled when the command queue has room again (or the driver ended).
        room: event_listener::Event,
    }

    struct State {
        core: ClientCore,
        /// The driver's waker while it waits; taken by whoever wakes it.
        driver: Option<Waker>,
        /// A handle gave the core something to send or to report; the driver flushes it.
        work: bool,
        /// Commands carried out by handles whose bytes the driver has not taken for writing
        /// yet: with the queued ones at most [`CLIENT_COMMANDS`], so a caller cannot pile up
        /// QoS 0 messages (which need no window) while the socket or the event reader is slow.
        unsent: usize,
        /// Live handles; when the last goes, the driver disconnects.
        handles: usize,
        /// The driver has ended: commands are refused.
        ended: bool,
        /// The driver has waited [`EVENTS_STALL`] for room in the full event queue: a
        /// command that would wait is refused with [`Error::EventsUnread`].
        stalled: bool,
    }

    impl Shared {
        fn lock(&self) -> MutexGuard<'_, State> {
            // The core is never left half-updated by a panic that matters here: the
            // session's methods do not panic on any input.
            self.state.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    impl State {
        /// Whether a command must wait for room.
        fn full(&self) -> bool {
            self.core.queued() + self.unsent >= CLIENT_COMMANDS
        }

        /// Marks work for the driver; returns its waker to wake once the lock is released.
        fn work(&mut self) -> Option<Waker> {
            self.work = true;
            self.driver.take()
        }
    }

    /// A handle to a running client (any async runtime); clones share the session.
    ///
    /// The session's driver runs in a task of its own: it reconnects with the configured
    /// backoff and ends on [`Client::disconnect`] or when every handle is dropped.
    pub struct Client<R> {
        shared: Arc<Shared>,
        runtime: PhantomData<fn() -> R>,
    }

    impl<R> Clone for Client<R> {
        fn clone(&self) -> Self {
            self.shared.lock().handles += 1;
            Client {
                shared: self.shared.clone(),
                runtime: PhantomData,
            }
        }
    }

    impl<R> Drop for Client<R> {
        fn drop(&mut self) {
            let waker = {
                let mut st = self.shared.lock();
                st.handles -= 1;
                if st.handles == 0 {
                    st.work()
                } else {
                    None
                }
            };
            if let Some(w) = waker {
                w.wake();
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
            Self::connect_with(addr, config, ConnectOptions::new()).await
        }

        /// [`Client::connect`], resuming an exported session and/or answering enhanced
        /// authentication's AUTH challenges as `options` say.
        pub async fn connect_with(
            addr: SocketAddr,
            config: ClientConfig,
            options: ConnectOptions,
        ) -> Result<(Self, Events), Error> {
            let (reader, writer) = R::connect(addr).await?;
            let (ready_tx, ready_rx) = reply_channel();
            let (ev_tx, ev_rx) = async_channel::bounded(CLIENT_EVENTS);
            let shared = Arc::new(Shared {
                state: Mutex::new(State {
                    core: ClientCore::start(config, options, ready_tx),
                    driver: None,
                    work: false,
                    unsent: 0,
                    handles: 1,
                    ended: false,
                    stalled: false,
                }),
                room: event_listener::Event::new(),
            });
            // The handle exists before the driver starts, so a failed connect that drops it
            // stops the driver like any last handle.
            let client = Client {
                shared: shared.clone(),
                runtime: PhantomData,
            };
            R::spawn(run::<R>(addr, shared, ev_tx, reader, writer));
            ready_rx.recv().await.unwrap_or(Err(Error::Stopped))?;
            Ok((client, Events::from_receiver(ev_rx)))
        }

        /// Publishes; the returned [`Pending`] completes with the acknowledgement.
        ///
        /// The message is encoded for the socket at once when the in-flight window has room,
        /// or else queued behind it (the driver sends it as acknowledgements free the window);
        /// waits while [`CLIENT_COMMANDS`] commands are queued.
        pub async fn publish(&self, publish: Publish) -> Result<Pending, Error> {
            let (tx, rx) = reply_channel();
            self.send(Command::Publish(publish, tx)).await?;
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

        /// Acknowledges a message received with [`ClientConfig::manual_acks`]: its token is
        /// in [`Message::ack`](crate::client::Message::ack).
        ///
        /// Never waits (the acknowledgement leaves with the driver's next write), so it may be
        /// called from the loop that reads [`Events`]. Acknowledgements go out in the order the
        /// messages arrived ([MQTT-4.6.0-2]). A token of a connection that has since ended is
        /// refused with [`ClientError::UnknownAckToken`](crate::error::ClientError): the
        /// server sends the message again. Until a message is acknowledged it holds a slot of
        /// the receive window; a token dropped unacknowledged is reported as
        /// [`Event::AckTokenDropped`].
        pub fn ack(&self, token: AckToken) -> Result<(), Error> {
            let waker = {
                let mut st = self.shared.lock();
                if st.ended {
                    return Err(Error::Stopped);
                }
                st.core.ack(now(), token)?;
                st.work()
            };
            if let Some(w) = waker {
                w.wake();
            }
            Ok(())
        }

        /// Sends AUTH (MQTT 5): the answer to an [`Event::Auth`] challenge of enhanced
        /// authentication, or a re-authentication (reason code Re-authenticate). Never waits.
        pub fn auth(&self, auth: Auth) -> Result<(), Error> {
            let waker = {
                let mut st = self.shared.lock();
                if st.ended {
                    return Err(Error::Stopped);
                }
                st.core.auth(now(), auth)?;
                st.work()
            };
            if let Some(w) = waker {
                w.wake();
            }
            Ok(())
        }

        /// The session's state now (unfinished QoS 1/2 flows, subscriptions, the client id),
        /// to resume it in another process with [`ConnectOptions::with_session`]: a durable
        /// outbox. Never waits.
        pub fn session_state(&self) -> SessionState {
            self.shared.lock().core.session_state()
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

        /// Gives `command` to the core (carried out or queued), waiting while the queue is
        /// full; wakes the driver when there is something to send or report.
        async fn send(&self, command: Command) -> Result<(), Error> {
            let mut command = Some(command);
            loop {
                let listener = {
                    let mut st = self.shared.lock();
                    if st.ended {
                        return Err(Error::Stopped);
                    }
                    if st.full() && st.stalled {
                        return Err(Error::EventsUnread);
                    }
                    if !st.full() {
                        let queued = st.core.queued();
                        if let Some(c) = command.take() {
                            st.core.command(now(), c);
                        }
                        // One that only joined the queue waits for the driver's next turn.
                        let waker = if st.core.queued() > queued {
                            None
                        } else {
                            st.unsent += 1;
                            st.work()
                        };
                        drop(st);
                        if let Some(w) = waker {
                            w.wake();
                        }
                        return Ok(());
                    }
                    // Listening before the lock is released: the driver's notice cannot fall
                    // between the check and the wait.
                    self.shared.room.listen()
                };
                listener.await;
            }
        }
    }

    /// One connection's socket; the driver reads and writes it itself.
    struct Transport<R: Runtime> {
        reader: R::Reader,
        writer: R::Writer,
    }

    /// What woke the driver.
    enum Wake {
        /// A read into the driver's buffer: this many bytes (0: the end of the stream), or
        /// the socket failed.
        Read(std::io::Result<usize>),
        /// A handle gave the core something to send or report, or the last handle went.
        Work,
        /// The session's deadline passed.
        Deadline,
    }

    /// The driver: the connection, what it reads into, and the core it shares with the
    /// handles.
    struct Driver<R: Runtime> {
        addr: SocketAddr,
        shared: Arc<Shared>,
        events: async_channel::Sender<Event>,
        transport: Option<Transport<R>>,
        buf: Vec<u8>,
        /// Whether the last handle's departure was handed to the core.
        gone: bool,
    }

    impl<R: Runtime> Drop for Driver<R> {
        /// Ended or dropped with its runtime: later commands are refused, and every waiter
        /// hears [`Error::Stopped`] (or has its answer already).
        fn drop(&mut self) {
            let mut st = self.shared.lock();
            st.ended = true;
            st.core.abandon();
            drop(st);
            self.shared.room.notify(usize::MAX);
        }
    }

    impl<R: Runtime> Driver<R> {
        /// Runs `f` on the core under the lock, and tells callers waiting for room when the
        /// command queue had been full and no longer is.
        fn with_core<T>(&self, f: impl FnOnce(&mut ClientCore) -> T) -> T {
            self.with_state(|st| f(&mut st.core))
        }

        /// [`Driver::with_core`] with the rest of the shared state.
        fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
            let mut st = self.shared.lock();
            let full = st.full();
            let v = f(&mut st);
            let room = full && !st.full();
            drop(st);
            if room {
                self.shared.room.notify(usize::MAX);
            }
            v
        }

        /// Carries out what the core asks (write, events, close, reconnect) until it asks
        /// nothing more; everything encoded since the last write leaves in one write.
        async fn flush(&mut self) {
            loop {
                let out = self.with_state(|st| {
                    st.unsent = 0;
                    st.core.take_output()
                });
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
                        self.with_core(|c| c.transport_closed(now()));
                    }
                }
                for e in out.events {
                    self.deliver(e).await;
                }
                if out.close {
                    if let Some(mut t) = self.transport.take() {
                        t.writer.close().await;
                    }
                }
                if out.reconnect {
                    let deadline = now() + self.with_core(|c| c.connect_timeout());
                    let opened = wait::<R, _, ()>(
                        R::connect(self.addr),
                        None::<std::future::Pending<()>>,
                        Some(deadline),
                    )
                    .await;
                    match opened {
                        Woke::First(Ok((reader, writer))) => {
                            self.transport = Some(Transport { reader, writer });
                            self.with_core(|c| c.connect(now(), true));
                        }
                        _ => self.with_core(|c| c.connect(now(), false)),
                    }
                }
            }
        }

        /// Puts `event` in the event queue, waiting while it is full; after [`EVENTS_STALL`]
        /// of waiting, the calls waiting on the client hear [`Error::EventsUnread`] (they
        /// could wait forever if they are what should read the events), and so does every
        /// call that would wait until the event is taken.
        async fn deliver(&mut self, event: Event) {
            // A dropped `Events` discards events.
            let event = match self.events.try_send(event) {
                Err(async_channel::TrySendError::Full(e)) => e,
                _ => return,
            };
            let mut send = pin!(self.events.send(event));
            let deadline = Some(now() + EVENTS_STALL);
            let timed = wait::<R, _, ()>(send.as_mut(), None::<std::future::Pending<()>>, deadline);
            if let Woke::First(_) = timed.await {
                return;
            }
            self.with_state(|st| {
                st.stalled = true;
                st.core.events_unread();
            });
            self.shared.room.notify(usize::MAX);
            let _ = send.await;
            self.with_state(|st| st.stalled = false);
        }

        /// Waits for the first of: a passed deadline, bytes from the socket (read into the
        /// driver's buffer), work from a handle (which the flush after any wake takes care of,
        /// so reading first starves nothing). Every source is cancel-safe.
        async fn next(&mut self) -> Wake {
            let deadline = self.shared.lock().core.deadline();
            let mut sleep = pin!(deadline.map(R::sleep_until));
            if self.buf.is_empty() {
                self.buf.resize(READ_CHUNK, 0);
            }
            let buf = &mut self.buf;
            let mut reader = self.transport.as_mut().map(|t| &mut t.reader);
            let shared = &self.shared;
            poll_fn(|cx| {
                if let Some(s) = sleep.as_mut().as_pin_mut() {
                    if s.poll(cx).is_ready() {
                        return Poll::Ready(Wake::Deadline);
                    }
                }
                if let Some(r) = reader.as_mut() {
                    if let Poll::Ready(read) = r.poll_read(cx, buf) {
                        return Poll::Ready(Wake::Read(read));
                    }
                }
                let mut st = shared.lock();
                if std::mem::take(&mut st.work) {
                    return Poll::Ready(Wake::Work);
                }
                match &mut st.driver {
                    Some(w) => w.clone_from(cx.waker()),
                    None => st.driver = Some(cx.waker().clone()),
                }
                Poll::Pending
            })
            .await
        }

        /// `n` bytes were read into the buffer (0: the stream ended).
        fn read(&mut self, n: usize) {
            if n == 0 {
                self.transport = None;
                self.with_core(|c| c.transport_closed(now()));
                return;
            }
            let data = &self.buf[..n];
            // Acknowledgements free the window and queued commands go out at once, in the same
            // write as any other answer.
            self.with_core(|c| c.input(now(), data));
        }
    }

    /// The driver loop: waits for bytes, work from a handle or the deadline, feeds the core,
    /// and carries out the core's output (write, close, reconnect) until the core stops.
    async fn run<R: Runtime>(
        addr: SocketAddr,
        shared: Arc<Shared>,
        events: async_channel::Sender<Event>,
        reader: R::Reader,
        writer: R::Writer,
    ) {
        let mut d = Driver::<R> {
            addr,
            shared,
            events,
            transport: Some(Transport { reader, writer }),
            buf: Vec::new(),
            gone: false,
        };
        d.with_core(|c| c.connect(now(), true));
        loop {
            d.flush().await;
            if let Some(reply) = d.with_core(ClientCore::take_stop) {
                if let Some(r) = reply {
                    r.send(Ok(()));
                }
                return;
            }
            match d.next().await {
                Wake::Read(Ok(n)) => d.read(n),
                Wake::Read(Err(_)) => {
                    d.transport = None;
                    d.with_core(|c| c.transport_closed(now()));
                }
                Wake::Work => {}
                Wake::Deadline => d.with_core(|c| c.timeout(now())),
            }
            if !d.gone && d.shared.lock().handles == 0 {
                d.gone = true;
                d.with_core(|c| c.handles_gone(now()));
            }
        }
    }
}
