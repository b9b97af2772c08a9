//! `ClientCore`: a client session with the waiters of its pending commands, and its drain.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use crate::client::{
    AckToken, ClientConfig, ClientSession as Session, ClientState, Event, SessionState,
};
use crate::codec::{AckProperties, Auth, Disconnect};
use crate::error::ClientError;
use crate::hash::IdMap;
use crate::runtimes::driver::client::options::{AuthHandler, ConnectOptions};
use crate::runtimes::driver::client::{fail, Command};
use crate::runtimes::driver::{answer, Ack, Error, Reply, SubAck};
use crate::{PacketId, QoS, ReasonCode};

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
