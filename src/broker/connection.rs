//! One client connection on the broker side: framing, CONNECT validation and authentication,
//! keep-alive at 1.5x, the QoS handshakes, topic aliases and encoding. CONNECT, AUTH and
//! CONNACK live in `connect`, deliveries and outbound flows in `outbound`.

mod connect;
mod flows;
mod outbound;

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::auth::{Authenticator, Authorizer, CredentialCheck};
use super::config::BrokerConfig;
use super::mail::{ConnId, ConnectionMail, Handover, RouterMail, ToConnection, ToRouter};
use super::replay;
use super::router::budget::{content_weight, message_weight, Budget};
use super::BrokerEvent;
use crate::codec::{
    valid_connack, AckProperties, ConnAck, DecodeError, Decoder, Disconnect, EncodeError, Encoder,
    Packet, PubAck, Publish, SubAck, Subscribe, UnsubAck, Unsubscribe,
};
use crate::error::{CloseReason, ConnectionError, Initiator};
use crate::hash::{IdMap, IdSet};
use crate::timer::{TimerKind, TimerTable};
use crate::types::{ByteStr, PacketId, ProtocolVersion, QoS, ReasonCode, TopicName};

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
}

impl TimerKind for Timer {
    const ALL: &'static [Timer] = &[Timer::Connect, Timer::KeepAlive];
    fn index(self) -> usize {
        self as usize
    }
}

/// What the connection reports to the broker facade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConnEvent {
    Connected(ByteStr),
    Closed(CloseReason),
    CloseTransport,
    Denied(Box<super::Denied>),
}

/// The broker side of one client connection: all of its protocol work, as a sans-IO machine.
///
/// [`Router::accept`](super::Router::accept) makes one per transport. Feed it the transport's
/// bytes, timeouts and the router's [`ConnectionMail`]; after every input drain
/// [`poll_transmit`](Self::poll_transmit), [`poll_timeout`](Self::poll_timeout),
/// [`poll_event`](Self::poll_event), and hand what [`poll_router`](Self::poll_router) yields to
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
    timers: TimerTable<Timer, 2>,
    /// 1.5 times the keep-alive; zero turns the check off.
    keep_alive: Duration,
    /// The keep-alive imposed on an MQTT 5 client, announced in CONNACK.
    server_keep_alive: Option<u16>,
    incoming_qos2: IdSet<PacketId>,
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
    held: VecDeque<HeldAck>,
    /// Held PUBACKs: inbound QoS 1 messages not acknowledged yet (they count against the
    /// receive maximum, with the QoS 2 ones).
    held_pubacks: usize,
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
            timers,
            keep_alive: Duration::ZERO,
            server_keep_alive: None,
            incoming_qos2: IdSet::default(),
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
            checking: None,
            auth: None,
            problem_info: true,
            response_info: false,
            alias_out_max: 0,
            hold_flows: false,
            held: VecDeque::new(),
            held_pubacks: 0,
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
        let id = format!("tinymqtt-{nonce:032x}");
        self.client_id = ByteStr::try_from(id).unwrap_or_default();
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
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            None
        } else {
            Some(self.out.split().freeze())
        }
    }

    /// The next deadline: the connect timeout, then the keep-alive (1.5 times the client's).
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

    /// Mail for the router; yields after inputs (a CONNECT, a PUBLISH, a close, ...).
    pub fn poll_router(&mut self) -> Option<RouterMail> {
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
            ConnEvent::Connected(client_id) => BrokerEvent::Connected { conn, client_id },
            ConnEvent::Closed(reason) => BrokerEvent::Closed { conn, reason },
            ConnEvent::CloseTransport => BrokerEvent::CloseTransport(conn),
            ConnEvent::Denied(denied) => BrokerEvent::Denied { conn, denied },
        })
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
                    return self.protocol_error("first packet is not connect");
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
        for t in self.timers.take_expired(now) {
            match (t, self.state) {
                (Timer::Connect, State::New | State::Authenticating | State::Checking) => {
                    self.close(
                        Initiator::Local,
                        ReasonCode::MaximumConnectTime,
                        Some(ConnectionError::ConnAckTimeout),
                        None,
                        false,
                    );
                }
                (Timer::KeepAlive, State::Connected) => {
                    // [MQTT-3.1.2-24]: nothing for 1.5x the keep-alive; the will goes out.
                    self.close(
                        Initiator::Local,
                        ReasonCode::KeepAliveTimeout,
                        Some(ConnectionError::KeepAliveTimeout),
                        Some(ReasonCode::KeepAliveTimeout),
                        true,
                    );
                }
                _ => {}
            }
        }
    }

    /// The transport closed (or failed): the session ends abnormally, so its will goes out.
    pub fn handle_transport_closed(&mut self, _now: Instant) {
        if self.state != State::Closed {
            self.close(
                Initiator::Transport,
                ReasonCode::UnspecifiedError,
                Some(ConnectionError::TransportClosed),
                None,
                true,
            );
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
    pub fn handle_router(&mut self, now: Instant, mail: ConnectionMail) {
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
            ToConnection::SendHeld(n) => {
                for _ in 0..n {
                    let Some(held) = self.held.pop_front() else {
                        break;
                    };
                    if held.kind == AckKind::Ack {
                        self.held_pubacks -= 1;
                    }
                    if self.state == State::Connected {
                        self.send(&held.into_packet());
                    }
                }
            }
            ToConnection::Deliver(d) => self.deliver(now, d),
            ToConnection::NoSubscribers(id) => {
                let held = self.held.iter_mut().find(|h| {
                    matches!(h.kind, AckKind::Ack | AckKind::Rec) && h.ack.packet_id == id
                });
                if let Some(h) = held.filter(|h| h.ack.reason_code == ReasonCode::Success) {
                    h.ack.reason_code = ReasonCode::NoMatchingSubscribers;
                }
            }
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
                // Takeover: [MQTT-3.1.4-3] the will is published (subject to its delay).
                let will = code == ReasonCode::SessionTakenOver;
                self.close(Initiator::Local, code, None, Some(code), will);
            }
        }
    }

    // ---- closing ------------------------------------------------------------------------

    /// Closes a transport the broker has no room for, before anything is read from it.
    pub(crate) fn refuse_transport(&mut self) {
        self.close(
            Initiator::Local,
            ReasonCode::QuotaExceeded,
            Some(ConnectionError::LimitExceeded("too many connections")),
            None,
            false,
        );
    }

    fn decode_error(&mut self, e: DecodeError) {
        let code = e.reason_code();
        let connack = self.state == State::New;
        if connack
            && matches!(
                e,
                DecodeError::UnsupportedProtocolLevel(_) | DecodeError::InvalidProtocolName
            )
        {
            // [MQTT-3.1.2-2]: CONNACK 0x01 / 0x84, then close. The client's version is unknown,
            // so answer in 3.1.1's format, which every version can read.
            self.encoder = Encoder::new(ProtocolVersion::V3_1_1);
            let mut ack = ConnAck::accepted(false);
            ack.reason_code = ReasonCode::UnsupportedProtocolVersion;
            self.send(&ack.into());
        }
        self.connack_if_authenticating(code);
        let disconnect = (self.state == State::Connected).then_some(code);
        self.close(
            Initiator::Local,
            code,
            Some(ConnectionError::Decode(e)),
            disconnect,
            true,
        );
    }

    /// A fault found during enhanced authentication: the CONNECT is known to be MQTT 5, so a
    /// CONNACK can say why (MQTT 5 section 4.13.1).
    fn connack_if_authenticating(&mut self, code: ReasonCode) {
        if self.state == State::Authenticating {
            let mut ack = ConnAck::accepted(false);
            ack.reason_code = if valid_connack(code) {
                code
            } else {
                ReasonCode::ProtocolError
            };
            self.send(&ack.into());
        }
    }

    /// A reason string for an acknowledgement, unless the client asked for no problem
    /// information ([MQTT-3.1.2-29]) or speaks 3.1.x.
    fn reason(&self, text: &str) -> Option<ByteStr> {
        (self.problem_info && self.protocol.is_v5() && self.config.reason_strings)
            .then(|| ByteStr::try_from(text).ok())
            .flatten()
    }

    fn protocol_error(&mut self, what: &'static str) {
        self.connack_if_authenticating(ReasonCode::ProtocolError);
        let disconnect = (self.state == State::Connected).then_some(ReasonCode::ProtocolError);
        self.close(
            Initiator::Local,
            ReasonCode::ProtocolError,
            Some(ConnectionError::Protocol(what)),
            disconnect,
            true,
        );
    }

    /// Ends the connection once: DISCONNECT (MQTT 5) when `disconnect` says so, the session
    /// handed back to the router, the transport to be closed.
    fn close(
        &mut self,
        initiator: Initiator,
        reason_code: ReasonCode,
        error: Option<ConnectionError>,
        disconnect: Option<ReasonCode>,
        will: bool,
    ) {
        if self.state == State::Closed {
            return;
        }
        // [MQTT-3.14.0-1]: never a DISCONNECT before an accepting CONNACK.
        let connected = self.state == State::Connected;
        if let (Some(code), true, true) = (disconnect, self.protocol.is_v5(), connected) {
            let mut d = Disconnect::new(code.for_disconnect());
            // Always allowed on DISCONNECT ([MQTT-3.1.2-29]); left out if it does not fit.
            let text = error
                .as_ref()
                .map_or(code.description().into(), |e| e.to_string());
            if self.config.reason_strings {
                d.properties.reason_string = ByteStr::try_from(text).ok();
            }
            self.send(&Packet::Disconnect(d));
        }
        let was_session = matches!(self.state, State::Connecting | State::Connected);
        self.state = State::Closed;
        // Held acknowledgements are never sent: the client resends those messages.
        self.held.clear();
        self.held_pubacks = 0;
        self.timers.stop_all();
        if !was_session {
            self.to_router.push_back(ToRouter::Gone);
        } else {
            let mut incoming: Vec<PacketId> = self.incoming_qos2.drain().collect();
            incoming.sort();
            let handover = Handover {
                outbound: self.outbound.take_all(),
                incoming_qos2: incoming.into_boxed_slice(),
                completed: None,
            };
            self.to_router.push_back(ToRouter::Closed {
                will: will && self.will_on_close,
                session_expiry: self.session_expiry_update,
                handover,
            });
            // Released ahead and never sent: back to the session, right behind `Closed`.
            for d in std::mem::take(&mut self.pending) {
                if !d.is_qos0() {
                    self.to_router.push_back(ToRouter::Returned(d));
                }
            }
        }
        self.events.push_back(ConnEvent::Closed(CloseReason {
            initiator,
            reason_code,
            error,
        }));
        self.events.push_back(ConnEvent::CloseTransport);
    }

    fn arm_keep_alive(&mut self, now: Instant) {
        if self.state == State::Connected && !self.keep_alive.is_zero() {
            self.timers.set(Timer::KeepAlive, now + self.keep_alive);
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
                self.protocol_error("packet other than auth during authentication")
            }
            (State::New, _) => {
                // [MQTT-3.1.0-1]: the first packet must be CONNECT; close without CONNACK.
                self.protocol_error("first packet is not connect");
            }
            (State::Connecting, _) => self.protocol_error("packet before connack"),
            (_, Packet::Connect(_)) => self.protocol_error("second connect"), // [MQTT-3.1.0-2]
            (_, Packet::Publish(p)) => self.on_publish(p),
            (_, Packet::PubAck(a)) => self.on_puback(now, a),
            (_, Packet::PubRec(a)) => self.on_pubrec(now, a),
            (_, Packet::PubRel(a)) => self.on_pubrel(a),
            (_, Packet::PubComp(a)) => self.on_pubcomp(now, a),
            (_, Packet::Subscribe(s)) => self.on_subscribe(s),
            (_, Packet::Unsubscribe(u)) => self.on_unsubscribe(u),
            (_, Packet::PingReq) => {
                self.send(&Packet::PingResp);
            }
            (_, Packet::Disconnect(d)) => self.on_disconnect(d),
            (_, Packet::Auth(a)) => self.on_auth(a),
            (_, _) => self.protocol_error("client sent a packet only servers send"),
        }
        let _ = now;
    }

    fn on_publish(&mut self, mut p: Publish) {
        if !p.properties.subscription_identifiers.is_empty() {
            // [MQTT-3.3.4-6]: only servers send subscription identifiers.
            return self.protocol_error("publish from a client with a subscription identifier");
        }
        if let Some(alias) = p.properties.topic_alias.take() {
            if alias.get() > self.config.topic_alias_maximum {
                // [MQTT-3.2.2-17]: above the maximum the broker announced.
                return self.close(
                    Initiator::Local,
                    ReasonCode::TopicAliasInvalid,
                    Some(ConnectionError::LimitExceeded(
                        "topic alias above the maximum",
                    )),
                    Some(ReasonCode::TopicAliasInvalid),
                    true,
                );
            }
            if p.topic.is_empty() {
                let known = self
                    .aliases
                    .as_ref()
                    .and_then(|a| a.inbound.get(&alias.get()));
                match known {
                    Some(t) => p.topic = t.clone(),
                    None => return self.protocol_error("unknown topic alias"),
                }
            } else {
                let a = self.aliases.get_or_insert_with(Default::default);
                a.inbound.insert(alias.get(), p.topic.clone());
            }
        }
        if !self.topic_within_limits(p.topic.as_str()) {
            return self.topic_over_limits(p);
        }
        if p.qos > self.config.maximum_qos {
            // [MQTT-3.2.2-11]
            return self.close(
                Initiator::Local,
                ReasonCode::QoSNotSupported,
                Some(ConnectionError::LimitExceeded("qos above the maximum")),
                Some(ReasonCode::QoSNotSupported),
                true,
            );
        }
        if p.retain && !self.config.retain_available {
            // [MQTT-3.2.2-14]
            return self.close(
                Initiator::Local,
                ReasonCode::RetainNotSupported,
                Some(ConnectionError::LimitExceeded("retain not supported")),
                Some(ReasonCode::RetainNotSupported),
                true,
            );
        }
        // `$SYS` belongs to the broker, whatever the authorizer says (as in Mosquitto).
        let sys = p.topic.as_str() == "$SYS" || p.topic.as_str().starts_with("$SYS/");
        let allowed = !sys
            && self
                .authorizer
                .can_publish(&self.client_id, self.username.as_ref(), &p.topic);
        if !allowed {
            let reason = if sys {
                "$SYS topics are the broker's"
            } else {
                "not authorized"
            };
            self.denied(super::DeniedAction::Publish(p.topic.clone()), reason);
        }
        // A message the memory budget has no room for is refused (0x97), like a forbidden one.
        let [budget, retained] = &*self.budget;
        let keeps = p.retain && !p.payload.is_empty();
        let over_budget = allowed
            && (!budget.has_room(message_weight(&p))
                || (keeps && !retained.has_room(content_weight(&p))));
        if over_budget {
            budget.count_refused();
        }
        let code = if over_budget {
            ReasonCode::QuotaExceeded
        } else if allowed {
            ReasonCode::Success
        } else {
            ReasonCode::NotAuthorized
        };
        let allowed = allowed && !over_budget;
        let code = if self.protocol.is_v5() {
            code
        } else {
            ReasonCode::Success // 3.1.x has no code: the message is dropped silently
        };
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => {
                if self.inbound_unacked() >= self.receive_limit() {
                    return self.receive_maximum_exceeded();
                }
                let ack = Packet::PubAck(self.ack(id, code));
                let mail = if allowed {
                    ToRouter::Publish(Arc::new(p), None)
                } else {
                    ToRouter::Denied { held: true }
                };
                self.reply(ack, Some(mail));
            }
            (QoS::ExactlyOnce, Some(id)) => {
                if self.incoming_qos2.contains(&id) {
                    // [MQTT-4.3.3-10]: a duplicate; answer again, don't forward twice.
                    return self.reply(Packet::PubRec(PubAck::new(id)), Some(ToRouter::Hold));
                }
                let digest = replay::digest(&p);
                if self.replayable.as_mut().and_then(|r| r.take(id)) == Some(digest) {
                    // The released message again, after PUBREL: answered, not routed.
                    self.incoming_qos2.insert(id);
                    return self.reply(Packet::PubRec(PubAck::new(id)), Some(ToRouter::Hold));
                }
                if self.incoming_qos2.len() >= usize::from(self.config.receive_maximum)
                    || self.inbound_unacked() >= self.receive_limit()
                {
                    return self.receive_maximum_exceeded(); // [MQTT-3.3.4-9]
                }
                let rec = Packet::PubRec(self.ack(id, code));
                let mail = if allowed {
                    self.incoming_qos2.insert(id);
                    ToRouter::Publish(Arc::new(p), Some(digest))
                } else {
                    ToRouter::Denied { held: true }
                };
                self.reply(rec, Some(mail));
            }
            _ => {
                let mail = if allowed {
                    ToRouter::Publish(Arc::new(p), None)
                } else {
                    ToRouter::Denied { held: false }
                };
                self.to_router.push_back(mail);
            }
        }
    }

    /// Inbound QoS 1/2 messages the client has not had acknowledged yet: QoS 2 ones until
    /// PUBREL, and QoS 1 ones whose PUBACK is held.
    fn inbound_unacked(&self) -> usize {
        self.incoming_qos2.len() + self.held_pubacks
    }

    /// The receive maximum this broker announced; a 3.1.x client, which was told none, is
    /// held to the number of packet identifiers.
    fn receive_limit(&self) -> usize {
        if self.protocol.is_v5() {
            usize::from(self.config.receive_maximum)
        } else {
            usize::from(u16::MAX)
        }
    }

    fn receive_maximum_exceeded(&mut self) {
        self.close(
            Initiator::Local,
            ReasonCode::ReceiveMaximumExceeded,
            Some(ConnectionError::LimitExceeded("receive maximum exceeded")),
            Some(ReasonCode::ReceiveMaximumExceeded),
            true,
        );
    }

    /// Sends an acknowledgement and hands `mail` to the router. A PUBACK or PUBREC (and, with
    /// durable acks, a PUBREL or PUBCOMP) waits in line for the router's
    /// [`ToConnection::SendHeld`], which the mail asks for (a missing mail becomes
    /// [`ToRouter::Hold`]).
    fn reply(&mut self, packet: Packet, mail: Option<ToRouter>) {
        let held = match packet {
            Packet::PubAck(a) => HeldAck::new(AckKind::Ack, a),
            Packet::PubRec(a) => HeldAck::new(AckKind::Rec, a),
            Packet::PubRel(a) if self.hold_flows => HeldAck::new(AckKind::Rel, a),
            Packet::PubComp(a) if self.hold_flows => HeldAck::new(AckKind::Comp, a),
            packet => {
                self.to_router.extend(mail);
                self.send(&packet);
                return;
            }
        };
        if held.kind == AckKind::Ack {
            self.held_pubacks += 1;
        }
        self.held.push_back(held);
        self.to_router.push_back(mail.unwrap_or(ToRouter::Hold));
    }

    /// A PUBACK or PUBREC with `code`, and a reason string when it is an error.
    fn ack(&self, id: PacketId, code: ReasonCode) -> PubAck {
        let mut ack = PubAck::new(id);
        ack.reason_code = code;
        if code.is_error() {
            ack.properties.reason_string = self.reason(code.description());
        }
        ack
    }

    /// A PUBLISH whose topic is longer or deeper than the broker accepts: MQTT 5 QoS 1/2 get
    /// PUBACK / PUBREC 0x90 and the connection goes on; QoS 0 is dropped; a 3.1.x client,
    /// which cannot be told, is disconnected.
    fn topic_over_limits(&mut self, p: Publish) {
        if !self.protocol.is_v5() {
            return self.close(
                Initiator::Local,
                ReasonCode::TopicNameInvalid,
                Some(ConnectionError::LimitExceeded(
                    "topic above the broker's limits",
                )),
                None,
                true,
            );
        }
        let ack = p
            .packet_id
            .map(|id| self.ack(id, ReasonCode::TopicNameInvalid));
        match (p.qos, ack) {
            (QoS::AtLeastOnce, Some(ack)) => self.reply(Packet::PubAck(ack), None),
            (QoS::ExactlyOnce, Some(ack)) => self.reply(Packet::PubRec(ack), None),
            _ => {}
        }
    }

    fn on_subscribe(&mut self, s: Subscribe) {
        if s.filters.len() > self.config.max_subscribe_filters {
            // More filters than one SUBSCRIBE may carry: quota exceeded.
            return self.close(
                Initiator::Local,
                ReasonCode::QuotaExceeded,
                Some(ConnectionError::LimitExceeded(
                    "too many topic filters in one subscribe",
                )),
                Some(ReasonCode::QuotaExceeded),
                true,
            );
        }
        let v5 = self.protocol.is_v5();
        let (refused, too_long) = if v5 {
            (ReasonCode::NotAuthorized, ReasonCode::TopicFilterInvalid)
        } else {
            (ReasonCode::UnspecifiedError, ReasonCode::UnspecifiedError)
        };
        let filters = s
            .filters
            .into_iter()
            .map(|sub| {
                let filter = sub.filter.shared().map_or(sub.filter.as_str(), |(_, f)| f);
                if !self.topic_within_limits(filter) {
                    return (sub, Some(too_long));
                }
                let ok = self.authorizer.can_subscribe(
                    &self.client_id,
                    self.username.as_ref(),
                    &sub.filter,
                );
                if !ok {
                    let action = super::DeniedAction::Subscribe(sub.filter.clone());
                    self.denied(action, "not authorized");
                }
                (sub, (!ok).then_some(refused))
            })
            .collect();
        self.to_router.push_back(ToRouter::Subscribe {
            packet_id: s.packet_id,
            subscription_id: s.properties.subscription_identifier,
            filters,
        });
    }

    fn on_unsubscribe(&mut self, u: Unsubscribe) {
        self.to_router.push_back(ToRouter::Unsubscribe {
            packet_id: u.packet_id,
            filters: u.filters,
        });
    }

    fn on_disconnect(&mut self, d: Disconnect) {
        if let Some(e) = d.properties.session_expiry_interval {
            if self.session_expiry == 0 && e != 0 {
                // [MQTT-3.14.2-2]
                return self.protocol_error("session expiry set on disconnect after zero");
            }
            let cap = self.config.persistent_session_expiry;
            self.session_expiry_update = Some(match e {
                u32::MAX => cap.unwrap_or(e),
                e => e,
            });
        }
        // [MQTT-3.14.4-3]: a normal DISCONNECT discards the will; 0x04 keeps it.
        let will = d.reason_code == ReasonCode::DisconnectWithWillMessage;
        let error = d
            .reason_code
            .is_error()
            .then_some(ConnectionError::Disconnected(d.reason_code));
        self.close(Initiator::Remote, d.reason_code, error, None, will);
    }
}

/// The topic aliases of a connection.
#[derive(Debug, Default)]
struct Aliases {
    /// The client's, by alias.
    inbound: IdMap<u16, TopicName>,
    /// Topics with an alias assigned on this connection ([MQTT-3.3.2-7]: never carried over).
    outbound: HashMap<TopicName, NonZeroU16>,
}

/// Which acknowledgement a [`HeldAck`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckKind {
    /// PUBACK.
    Ack,
    /// PUBREC.
    Rec,
    /// PUBREL.
    Rel,
    /// PUBCOMP.
    Comp,
}

/// An acknowledgement waiting for the router's word: its kind and the acknowledgement
/// itself, a quarter of a [`Packet`] (one waits per QoS 1/2 message in flight).
#[derive(Debug)]
struct HeldAck {
    kind: AckKind,
    ack: PubAck,
}

impl HeldAck {
    fn new(kind: AckKind, ack: PubAck) -> HeldAck {
        HeldAck { kind, ack }
    }

    fn into_packet(self) -> Packet {
        match self.kind {
            AckKind::Ack => Packet::PubAck(self.ack),
            AckKind::Rec => Packet::PubRec(self.ack),
            AckKind::Rel => Packet::PubRel(self.ack),
            AckKind::Comp => Packet::PubComp(self.ack),
        }
    }
}

/// `packet` without its reason string and user properties, if it had any to leave out.
fn without_problem_info(packet: &Packet) -> Option<Packet> {
    let mut p = packet.clone();
    let (reason, users) = match &mut p {
        Packet::ConnAck(a) => (
            &mut a.properties.reason_string,
            &mut a.properties.user_properties,
        ),
        Packet::Disconnect(d) => (
            &mut d.properties.reason_string,
            &mut d.properties.user_properties,
        ),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => (
            &mut a.properties.reason_string,
            &mut a.properties.user_properties,
        ),
        Packet::SubAck(a) => (
            &mut a.properties.reason_string,
            &mut a.properties.user_properties,
        ),
        Packet::UnsubAck(a) => (
            &mut a.properties.reason_string,
            &mut a.properties.user_properties,
        ),
        _ => return None,
    };
    if reason.is_none() && users.is_empty() {
        return None;
    }
    *reason = None;
    users.clear();
    Some(p)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_connection_stays_small() {
        // One per client, idle or not, inside its runtime task: rare parts (enhanced
        // authentication, topic aliases) are boxed.
        let size = size_of::<super::ServerConnection>();
        assert!(size <= 592, "ServerConnection is {size} bytes");
    }
}
