//! One client connection on the broker side: framing, CONNECT validation and authentication,
//! keep-alive at 1.5x, the QoS handshakes, topic aliases and encoding. This file holds the
//! state, the public surface and the dispatch of packets and mail; CONNECT, AUTH and CONNACK
//! live in `connect`, the inbound PUBLISH path and held acknowledgements in `inbound`,
//! SUBSCRIBE and UNSUBSCRIBE in `subscribe`, deliveries and outbound flows in `outbound` and
//! `flows`, the end of a connection in `close`, reason strings in `problem_info`.

mod awaiting_rel;
mod close;
mod connect;
mod flows;
mod inbound;
mod outbound;
mod problem_info;
mod subscribe;

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::auth::{Authenticator, Authorizer, CredentialCheck};
use super::budget::Budget;
use super::config::BrokerConfig;
use super::mail::{ConnId, ConnectionMail, RouterMail, ToConnection, ToRouter};
use super::replay;
use super::BrokerEvent;
use crate::codec::{AckProperties, Decoder, EncodeError, Encoder, Packet, SubAck, UnsubAck};
use crate::error::{CloseReason, ConnectionError, ProtocolViolation};
use crate::hash::IdMap;
use crate::timer::{TimerKind, TimerTable};
use crate::types::{ByteStr, PacketId, ProtocolVersion, ReasonCode, TopicName};
use awaiting_rel::AwaitingRel;
use close::Close;
use inbound::HeldAcks;
use problem_info::without_problem_info;

/// The mails the router queue of a connection makes room for at once (a read's worth of
/// PUBLISHes or acknowledgements).
const MAIL_ROOM: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for CONNECT.
    New,
    /// CONNECT named an authentication method; AUTH packets go back and forth.
    Authenticating,
    /// CONNECT waits for a deferred credentials check; what follows it waits in the buffer.
    Checking,
    /// CONNECT handed to the router; waiting for the session.
    Connecting,
    Connected,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Connect,
    KeepAlive,
    /// The earliest inbound QoS 2 identifier waiting for PUBREL is forgotten.
    AwaitRel,
}

impl TimerKind for Timer {
    const ALL: &'static [Timer] = &[Timer::Connect, Timer::KeepAlive, Timer::AwaitRel];
    fn index(self) -> usize {
        self as usize
    }
}

/// What the connection reports to the broker facade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConnEvent {
    /// Accepted; `bool`: the session was present.
    Connected(bool),
    Closed(CloseReason),
    CloseTransport,
    Denied(Box<super::Denied>),
}

/// The broker side of one client connection: all of its protocol work, as a sans-IO machine.
///
/// [`Router::accept`](super::Router::accept) makes one per transport. Feed it the transport's
/// bytes, timeouts and the router's [`ConnectionMail`]; after every input drain
/// [`poll_transmit`](Self::poll_transmit), [`poll_timeout`](Self::poll_timeout),
/// [`poll_event`](Self::poll_event), and hand what [`poll_mail`](Self::poll_mail) yields to
/// the router.
pub struct ServerConnection {
    id: ConnId,
    config: Arc<BrokerConfig>,
    authenticator: Arc<dyn Authenticator>,
    authorizer: Arc<dyn Authorizer>,
    /// The broker's memory budget, and the retained messages' bytes: a PUBLISH (a retained
    /// one) they have no room for is refused.
    budget: Arc<[Budget; 2]>,
    state: State,
    protocol: ProtocolVersion,
    client_id: ByteStr,
    username: Option<ByteStr>,
    decoder: Decoder,
    encoder: Encoder,
    inbuf: BytesMut,
    out: BytesMut,
    /// The buffers go with the next transmit (see [`ServerConnection::poll_transmit`]).
    let_go: bool,
    timers: TimerTable<Timer, 3>,
    /// A timer was armed or disarmed since [`ServerConnection::take_deadline_change`] last
    /// asked: set wherever `timers` changes.
    deadline_moved: bool,
    /// 1.5 times the keep-alive; zero turns the check off.
    keep_alive: Duration,
    /// The keep-alive imposed on an MQTT 5 client, announced in CONNACK.
    server_keep_alive: Option<u16>,
    /// Inbound QoS 2 identifiers answered with PUBREC, waiting for PUBREL until their
    /// deadline.
    incoming_qos2: AwaitingRel,
    /// The session's inbound QoS 2 identifiers of earlier connections, with their messages'
    /// digests: a PUBLISH repeating one with no flow open under it is a replay (see `replay`).
    replayable: Option<Box<replay::Completed>>,
    /// Topic aliases both ways, made when the first one is used (most clients use none).
    aliases: Option<Box<Aliases>>,
    /// Outbound QoS 1/2 flows in start order.
    outbound: flows::OutFlows,
    /// The client's receive maximum (MQTT 5) or the configured window (3.1.x).
    window: usize,
    /// Deliveries the router released ahead of the window (see [`super::mail::prefetch`]), in
    /// order: each goes out as soon as a flow ends, without waiting for the router. Handed
    /// back to the router when the connection closes.
    pending: VecDeque<super::mail::Delivery>,
    /// Handed-over flows not resent yet because the window was full, in order.
    resend_backlog: VecDeque<PacketId>,
    next_id: u16,
    /// Whether the will goes out when the connection ends.
    will_on_close: bool,
    session_expiry: u32,
    session_expiry_update: Option<u32>,
    assigned_id: bool,
    /// The CONNECT's clean start (clean session) flag.
    clean_start: bool,
    /// The CONNACK code that refused the CONNECT, for the router's count.
    refused: Option<ReasonCode>,
    /// The CONNECT waiting for a deferred credentials check, and the check until it is
    /// handed out (boxed: only while connecting).
    checking: Option<Box<connect::Checking>>,
    /// Enhanced authentication, when the CONNECT named a method (boxed: rare).
    auth: Option<Box<connect::AuthState>>,
    /// Whether reason strings may go on acknowledgements (Request Problem Information).
    problem_info: bool,
    /// Whether the client asked for Response Information.
    response_info: bool,
    /// Topic aliases the broker may assign towards the client (0: none).
    alias_out_max: u16,
    /// Durable acks: PUBREL and PUBCOMP wait in `held` too, for the router's word that what
    /// they promise is durable.
    hold_flows: bool,
    /// Acknowledgements waiting for the router's word, oldest first (each has one
    /// [`ToConnection::SendHeld`] coming): every PUBACK and PUBREC (the router answers once
    /// the message is routed, durable with a store, and its subscribers' queues have room),
    /// and with `hold_flows` every PUBREL and PUBCOMP. At most `u16::MAX` PUBACKs and as many
    /// QoS 2 flows as the receive maximum.
    held: HeldAcks,
    /// The store holds the session: its QoS 2 flows are reported to the router.
    stored_session: bool,
    to_router: VecDeque<ToRouter>,
    events: VecDeque<ConnEvent>,
}

impl std::fmt::Debug for ServerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConnection")
            .field("id", &self.id)
            .field("state", &self.state)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl ServerConnection {
    /// A connection accepted at `now`; it must send CONNECT within the connect timeout.
    pub(crate) fn new(
        id: ConnId,
        now: Instant,
        config: Arc<BrokerConfig>,
        authenticator: Arc<dyn Authenticator>,
        authorizer: Arc<dyn Authorizer>,
        budget: Arc<[Budget; 2]>,
    ) -> ServerConnection {
        let mut timers = TimerTable::default();
        timers.set(Timer::Connect, now + config.connect_timeout);
        ServerConnection {
            id,
            // Until the client is authenticated, at most a CONNECT's worth is read.
            decoder: Decoder::new(ProtocolVersion::V5)
                .with_max_packet_size(config.max_packet_size.min(config.max_connect_size)),
            encoder: Encoder::new(ProtocolVersion::V5),
            config,
            authenticator,
            authorizer,
            budget,
            state: State::New,
            protocol: ProtocolVersion::V5,
            client_id: ByteStr::new(),
            username: None,
            inbuf: BytesMut::new(),
            out: BytesMut::new(),
            let_go: false,
            timers,
            deadline_moved: true,
            keep_alive: Duration::ZERO,
            server_keep_alive: None,
            incoming_qos2: AwaitingRel::default(),
            replayable: None,
            aliases: None,
            outbound: flows::OutFlows::default(),
            window: 1,
            pending: VecDeque::new(),
            resend_backlog: VecDeque::new(),
            next_id: 0,
            will_on_close: true,
            session_expiry: 0,
            session_expiry_update: None,
            assigned_id: false,
            clean_start: false,
            refused: None,
            checking: None,
            auth: None,
            problem_info: true,
            response_info: false,
            alias_out_max: 0,
            hold_flows: false,
            held: HeldAcks::default(),
            stored_session: false,
            to_router: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The connection's identifier.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Tells who the transport says the peer is (a TLS client certificate's name, on a
    /// listener with `use_identity_as_username`), before its CONNECT arrives: it becomes the
    /// client's user name, and no password is asked (the transport authenticated the peer).
    pub fn set_peer_identity(&mut self, identity: ByteStr) {
        if self.state == State::New {
            // Until CONNECT, `username` holds it (see `on_connect`).
            self.username = Some(identity);
        }
    }

    /// Reports an access check's refusal of `action`.
    pub(crate) fn denied(&mut self, action: super::DeniedAction, reason: &'static str) {
        self.events
            .push_back(ConnEvent::Denied(Box::new(super::Denied {
                client_id: self.client_id.clone(),
                username: self.username.clone(),
                action,
                reason,
            })));
    }

    /// Makes the client identifier this connection assigns if the client sends none, from
    /// 128 random bits; until CONNECT, `client_id` holds it (see `on_connect`).
    pub(crate) fn set_id_nonce(&mut self, nonce: u128) {
        // Written by hand: this runs for every connection, and the formatting machinery cost
        // more than the rest of the accept.
        const PREFIX: &[u8] = b"tinymqtt-";
        let mut id = [0u8; PREFIX.len() + 32];
        id[..PREFIX.len()].copy_from_slice(PREFIX);
        for (i, b) in id[PREFIX.len()..].iter_mut().enumerate() {
            let nibble = (nonce >> (124 - 4 * i)) & 0xf;
            *b = b"0123456789abcdef"[nibble as usize];
        }
        self.client_id = ByteStr::from_checked(Bytes::copy_from_slice(&id));
    }

    /// Whether the connection has ended (every later input is a no-op).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the runtime should read more from the transport now: not while the CONNECT
    /// waits for the router (or its authentication or credentials check) with at least
    /// [`BrokerConfig::max_connect_size`] bytes already waiting behind it, so a connection not
    /// accepted yet holds at most about one CONNECT's worth. Router mail and deadlines still
    /// go in; reading resumes once the session is accepted.
    pub fn wants_input(&self) -> bool {
        match self.state {
            State::Authenticating | State::Checking | State::Connecting => {
                self.inbuf.len() < self.config.max_connect_size as usize
            }
            State::New | State::Connected => true,
            State::Closed => false,
        }
    }

    /// Bytes to write to the transport; yields after inputs and router mail.
    ///
    /// After a CONNACK or a PINGRESP, often followed by nothing for a long time, both buffers
    /// go (the frame takes the output buffer along, an empty input buffer is dropped): kept,
    /// they would hold ~150 bytes in every idle connection. A busy connection keeps its
    /// buffers, which it reuses from one packet to the next.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            None
        } else if std::mem::take(&mut self.let_go) {
            if self.inbuf.is_empty() {
                self.inbuf = BytesMut::new();
            }
            Some(std::mem::take(&mut self.out).freeze())
        } else {
            Some(self.out.split().freeze())
        }
    }

    /// Whether the connection's deadline may have moved since the last call (the broker's
    /// deadline index asks, to skip connections whose timers were not touched).
    pub(crate) fn take_deadline_change(&mut self) -> bool {
        std::mem::take(&mut self.deadline_moved)
    }

    /// The next deadline: the connect timeout, then the keep-alive (1.5 times the client's)
    /// and the earliest inbound QoS 2 identifier's wait for PUBREL.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    /// A credentials check to run away from this connection; yields once after a CONNECT
    /// when the authenticator [defers](super::Authenticator::defers). Answer it with
    /// [`ServerConnection::handle_credentials`]; until then the connection waits (for the
    /// connect timeout at most).
    pub fn poll_credentials(&mut self) -> Option<CredentialCheck> {
        self.checking.as_mut().and_then(|c| c.check.take())
    }

    /// The verdict of the check [`ServerConnection::poll_credentials`] handed out: `Ok` goes
    /// on with the CONNECT, `Err` refuses it with that code. A verdict that comes too late
    /// (the connection closed) does nothing.
    pub fn handle_credentials(&mut self, now: Instant, verdict: Result<(), ReasonCode>) {
        if self.state != State::Checking {
            return;
        }
        let Some(checking) = self.checking.take() else {
            return;
        };
        match verdict {
            Ok(()) => self.finish_connect(checking.connect),
            Err(code) => self.refuse(code),
        }
        self.process_input(now);
    }

    /// Queues mail for the router. The queue keeps no room once drained (see
    /// [`ServerConnection::poll_mail`]), so the first mail after that makes room for a read's
    /// worth at once instead of regrowing it slot by slot (each regrowth an allocation).
    fn mail(&mut self, mail: ToRouter) {
        if self.to_router.capacity() == 0 {
            self.to_router.reserve(MAIL_ROOM);
        }
        self.to_router.push_back(mail);
    }

    /// Mail for the router; yields after inputs (a CONNECT, a PUBLISH, a close, ...).
    pub fn poll_mail(&mut self) -> Option<RouterMail> {
        let Some(mail) = self.to_router.pop_front() else {
            // Drained: an idle connection keeps no room for mail (its CONNECT alone grew the
            // queue to four slots of ~270 bytes).
            self.to_router = VecDeque::new();
            return None;
        };
        Some(RouterMail {
            conn: self.id,
            mail,
        })
    }

    /// The next event (connected, closed, close the transport); yields after inputs.
    pub fn poll_event(&mut self) -> Option<BrokerEvent> {
        let conn = self.id;
        let Some(event) = self.events.pop_front() else {
            // Drained: an idle connection keeps no room for events (four slots of 40 bytes).
            self.events = VecDeque::new();
            return None;
        };
        Some(match event {
            ConnEvent::Connected(session_present) => self.connected_event(session_present),
            ConnEvent::Closed(reason) => BrokerEvent::Closed { conn, reason },
            ConnEvent::CloseTransport => BrokerEvent::CloseTransport(conn),
            ConnEvent::Denied(denied) => BrokerEvent::Denied { conn, denied },
        })
    }

    /// The event of an accepted CONNECT (out of line: once per connection).
    #[cold]
    fn connected_event(&self, session_present: bool) -> BrokerEvent {
        BrokerEvent::Connected {
            conn: self.id,
            client_id: self.client_id.clone(),
            info: Box::new(super::ConnectInfo {
                username: self.username.clone(),
                listener: None,
                protocol: self.protocol,
                keep_alive: (self.keep_alive.as_millis() / 1500) as u16,
                clean_start: self.clean_start,
                session_present,
            }),
        }
    }

    /// Encodes a packet the broker built itself.
    ///
    /// One larger than the client's maximum packet size is not sent ([MQTT-3.1.2-24]: the
    /// client's limit forbids it). Any other refusal means the broker built a packet the
    /// version cannot carry: a bug, asserted in debug builds.
    ///
    /// A reason string or user properties that would make the packet too large are left out
    /// instead ([MQTT-3.2.2-19], [MQTT-3.2.2-20], [MQTT-3.4.2-2], [MQTT-3.9.2-1],
    /// [MQTT-3.14.2-3]).
    fn send(&mut self, packet: &Packet) -> bool {
        match self.encoder.encode(packet, &mut self.out) {
            Ok(_) => true,
            Err(EncodeError::PacketTooLarge { .. }) => match without_problem_info(packet) {
                Some(p) => self.send(&p),
                None => false,
            },
            Err(e) => {
                debug_assert!(false, "broker built a packet its version cannot carry: {e}");
                false
            }
        }
    }

    // ---- inputs -------------------------------------------------------------------------

    /// Bytes read from the transport.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if self.state == State::Closed {
            return;
        }
        if self.state == State::New && self.inbuf.is_empty() {
            if let Some(&first) = data.first() {
                if first >> 4 != 1 {
                    // [MQTT-3.1.0-1]: judged on the first byte, before anything is buffered.
                    return self.violation(ProtocolViolation::FirstPacketNotConnect);
                }
            }
        }
        self.inbuf.extend_from_slice(data);
        self.process_input(now);
    }

    /// Decodes what is buffered. Packets a client pipelines behind CONNECT (allowed: MQTT 5
    /// section 3.1.4) wait in the buffer until the router has accepted the session.
    fn process_input(&mut self, now: Instant) {
        while matches!(
            self.state,
            State::New | State::Authenticating | State::Connected
        ) {
            match self.decoder.decode(&mut self.inbuf) {
                Ok(Some(p)) => {
                    self.arm_keep_alive(now);
                    self.handle_packet(now, p);
                }
                Ok(None) => break,
                Err(e) => self.decode_error(e),
            }
        }
    }

    /// Acts on the deadlines due at `now`; a spurious call does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.deadline_moved = true;
        for t in self.timers.take_expired(now) {
            match (t, self.state) {
                (Timer::Connect, State::New | State::Authenticating | State::Checking) => {
                    self.close(
                        Close::fault(
                            ReasonCode::MaximumConnectTime,
                            ConnectionError::ConnAckTimeout,
                        )
                        .without_disconnect()
                        .will(false),
                    );
                }
                (Timer::AwaitRel, State::Connected) => self.expire_awaiting_rel(now),
                (Timer::KeepAlive, State::Connected) => {
                    // [MQTT-3.1.2-24]: nothing for 1.5x the keep-alive; the will goes out.
                    self.close(Close::fault(
                        ReasonCode::KeepAliveTimeout,
                        ConnectionError::KeepAliveTimeout,
                    ));
                }
                _ => {}
            }
        }
    }

    /// The transport closed (or failed): the session ends abnormally, so its will goes out.
    pub fn handle_transport_closed(&mut self, _now: Instant) {
        if self.state != State::Closed {
            self.close(Close::transport());
        }
    }

    /// Closes for a server shutdown: DISCONNECT 0x8B to an MQTT 5 client, and no will.
    pub fn shutdown(&mut self, now: Instant) {
        self.handle_to_connection(
            now,
            ToConnection::Disconnect(ReasonCode::ServerShuttingDown),
        );
    }

    /// Mail from the router (mail for another connection is ignored).
    pub fn handle_mail(&mut self, now: Instant, mail: ConnectionMail) {
        debug_assert_eq!(mail.conn, self.id, "mail for another connection");
        if mail.conn == self.id {
            self.handle_to_connection(now, mail.mail);
        }
    }

    fn handle_to_connection(&mut self, now: Instant, mail: ToConnection) {
        match mail {
            ToConnection::Accepted {
                session_present,
                handover,
                hold_flows,
                stored,
            } => {
                self.hold_flows = hold_flows;
                self.stored_session = stored;
                self.accepted(now, session_present, handover)
            }
            ToConnection::SendHeld(n) => self.send_held(n),
            ToConnection::Deliver(d) => self.deliver(now, d),
            ToConnection::NoSubscribers(id) => self.held.no_subscribers(id),
            ToConnection::RetainRefused(id) => self.retain_refused(id),
            ToConnection::SubAck { packet_id, codes } => {
                let mut ack = SubAck {
                    packet_id,
                    properties: AckProperties::default(),
                    reason_codes: codes,
                };
                if let Some(code) = ack.reason_codes.iter().find(|c| c.is_error()) {
                    ack.properties.reason_string = self.reason(code.description());
                }
                self.send(&Packet::SubAck(ack));
            }
            ToConnection::UnsubAck { packet_id, codes } => {
                let codes = if self.protocol.is_v5() {
                    codes
                } else {
                    Vec::new()
                };
                let ack = UnsubAck {
                    packet_id,
                    properties: AckProperties::default(),
                    reason_codes: codes,
                };
                self.send(&Packet::UnsubAck(ack));
            }
            ToConnection::Refused(code) => self.router_refused(code),
            ToConnection::Disconnect(code) => {
                // Takeover: [MQTT-3.1.4-3] the will is published (subject to its delay); so
                // it is when the application disconnects the client ([MQTT-3.1.2-8]: the
                // client did not ask to end). Not at a server shutdown (as Mosquitto).
                let will = matches!(
                    code,
                    ReasonCode::SessionTakenOver | ReasonCode::AdministrativeAction
                );
                self.close(Close::local(code).will(will));
            }
        }
    }

    fn arm_keep_alive(&mut self, now: Instant) {
        if self.state == State::Connected && !self.keep_alive.is_zero() {
            self.timers.set(Timer::KeepAlive, now + self.keep_alive);
            self.deadline_moved = true;
        }
    }

    // ---- packets ------------------------------------------------------------------------

    fn handle_packet(&mut self, now: Instant, packet: Packet) {
        match (self.state, packet) {
            (State::New, Packet::Connect(c)) => self.on_connect(*c),
            (State::Authenticating, Packet::Auth(a)) => self.on_auth(a),
            (State::Authenticating, Packet::Disconnect(d)) => self.on_disconnect(d),
            (State::Authenticating, _) => {
                // [MQTT-3.1.2-30]: only AUTH or DISCONNECT until CONNACK.
                self.violation(ProtocolViolation::NotAuthDuringAuthentication)
            }
            (State::New, _) => {
                // [MQTT-3.1.0-1]: the first packet must be CONNECT; close without CONNACK.
                self.violation(ProtocolViolation::FirstPacketNotConnect);
            }
            (State::Connecting, _) => self.violation(ProtocolViolation::PacketBeforeConnAck),
            (_, Packet::Connect(_)) => self.violation(ProtocolViolation::SecondConnect), // [MQTT-3.1.0-2]
            (_, Packet::Publish(p)) => self.on_publish(now, p),
            (_, Packet::PubAck(a)) => self.on_puback(now, a),
            (_, Packet::PubRec(a)) => self.on_pubrec(now, a),
            (_, Packet::PubRel(a)) => self.on_pubrel(a),
            (_, Packet::PubComp(a)) => self.on_pubcomp(now, a),
            (_, Packet::Subscribe(s)) => self.on_subscribe(s),
            (_, Packet::Unsubscribe(u)) => self.on_unsubscribe(u),
            (_, Packet::PingReq) => {
                self.send(&Packet::PingResp);
                self.let_go = true;
            }
            (_, Packet::Disconnect(d)) => self.on_disconnect(d),
            (_, Packet::Auth(a)) => self.on_auth(a),
            (_, _) => self.violation(ProtocolViolation::ServerOnlyPacket),
        }
    }
}

/// Whether a topic is one of the broker's own (`$SYS` or below it), on its bytes.
fn is_sys(topic: &[u8]) -> bool {
    topic
        .strip_prefix(b"$SYS")
        .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
}

/// The topic aliases of a connection.
#[derive(Debug, Default)]
struct Aliases {
    /// The client's, by alias.
    inbound: IdMap<u16, TopicName>,
    /// Topics with an alias assigned on this connection ([MQTT-3.3.2-7]: never carried over).
    outbound: HashMap<TopicName, NonZeroU16>,
}

#[cfg(test)]
mod tests;
