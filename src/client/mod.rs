//! The client session: a complete MQTT client as a sans-IO state machine.
//!
//! A [`ClientSession`] never touches a socket or a clock. The runtime opens a transport, calls
//! [`ClientSession::connect`], feeds received bytes to [`ClientSession::handle_input`] and expired
//! deadlines to [`ClientSession::handle_timeout`], and after every input or command drains
//! [`ClientSession::poll_transmit`] (bytes to write), then [`ClientSession::poll_timeout`] (the
//! next deadline), then [`ClientSession::poll_event`] (what the application should know).
//!
//! ```
//! use std::time::Instant;
//! use tinymqtt::client::{ClientSession, ClientConfig, Event};
//! use tinymqtt::codec::{encode, ConnAck, Packet, Publish};
//! use tinymqtt::{ByteStr, ProtocolVersion, QoS, TopicName};
//!
//! # #[allow(clippy::disallowed_methods)]
//! let now = Instant::now();
//! let config = ClientConfig::new(ProtocolVersion::V5, ByteStr::from_static("sensor-1"));
//! let mut client = ClientSession::new(config);
//! client.connect(now)?;
//! let connect_bytes = client.poll_transmit().expect("CONNECT");
//! assert_eq!(connect_bytes[0], 0x10);
//!
//! // The server accepts.
//! let mut wire = bytes::BytesMut::new();
//! encode(&ConnAck::accepted(false).into(), ProtocolVersion::V5, &mut wire)?;
//! client.handle_input(now, &wire);
//! assert!(matches!(client.poll_event(), Some(Event::Connected { .. })));
//!
//! let mut msg = Publish::new(TopicName::new("sensors/1/temp")?, "21.5");
//! msg.qos = QoS::AtLeastOnce;
//! let id = client.publish(now, msg)?.expect("qos 1 has a packet id");
//! assert!(client.poll_transmit().is_some()); // the PUBLISH; `Published(id)` follows its PUBACK
//! # let _ = id;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod commands;
mod config;
mod config_with;
mod event;
mod inbound;
mod outgoing;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::num::{NonZeroU16, NonZeroU32};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

pub use config::{Backoff, ClientConfig};
pub use event::{AckToken, Event, Lost, Message, Outgoing, SessionState};

use crate::codec::{
    Connect, Decoder, Disconnect, DisconnectProperties, Encoder, Packet, PubAck, Subscription,
    SubscriptionOptions, MAX_PACKET_SIZE,
};
use crate::error::{
    ClientError, ClientIdRule, CloseReason, ConnectionError, Initiator, ProtocolViolation,
};
use crate::hash::IdSet;
use crate::timer::{TimerKind, TimerTable};
use crate::types::{ByteStr, PacketId, ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName};
use outgoing::{Flow, Flows};

/// Where the client is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Not connected, and no reconnect is planned.
    Idle,
    /// CONNECT sent, waiting for CONNACK (or in an AUTH exchange).
    Connecting,
    /// Accepted by the server.
    Connected,
    /// The connection ended; [`Event::ReconnectDue`] will say when to try again.
    Reconnecting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    ConnAck,
    PingResp,
    KeepAlive,
    Reconnect,
}

impl TimerKind for Timer {
    // A PINGRESP deadline that falls with a keep-alive tick fails before another ping goes out.
    const ALL: &'static [Timer] = &[
        Timer::ConnAck,
        Timer::PingResp,
        Timer::KeepAlive,
        Timer::Reconnect,
    ];
    fn index(self) -> usize {
        self as usize
    }
}

/// What the server's CONNACK allows; the protocol's defaults until then.
#[derive(Debug, Clone, Copy)]
struct ServerLimits {
    receive_maximum: u16,
    maximum_qos: QoS,
    retain_available: bool,
    topic_alias_maximum: u16,
    wildcards: bool,
    subscription_ids: bool,
    shared: bool,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            receive_maximum: u16::MAX,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            topic_alias_maximum: 0,
            wildcards: true,
            subscription_ids: true,
            shared: true,
        }
    }
}

/// A received QoS 1/2 message waiting for the application's [`ClientSession::ack`].
#[derive(Debug)]
struct PendingAck {
    seq: u64,
    packet_id: PacketId,
    qos: QoS,
    acked: bool,
    /// Shared with the message's tokens: tells when the last was dropped unacknowledged.
    watch: std::sync::Arc<event::AckWatch>,
}

/// An MQTT client session (3.1, 3.1.1 or 5.0) as a sans-IO state machine.
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    state: ClientState,
    client_id: ByteStr,
    decoder: Decoder,
    encoder: Encoder,
    inbuf: BytesMut,
    out: BytesMut,
    events: VecDeque<Event>,
    timers: TimerTable<Timer, 4>,
    flows: Flows,
    /// Received QoS 2 identifiers answered with PUBREC and waiting for PUBREL.
    incoming_qos2: HashSet<PacketId>,
    /// QoS 1/2 PUBLISH packets sent on this connection and not finished: the send quota used
    /// ([MQTT-4.9.0-2]); the quota starts afresh with every connection.
    on_wire: IdSet<PacketId>,
    /// Publishes of a resumed session still to resend, in order, as the quota allows.
    resend_backlog: VecDeque<PacketId>,
    /// Manual acks in receipt order; released in that order ([MQTT-4.6.0-2]).
    pending_acks: VecDeque<PendingAck>,
    /// Set by an [`AckToken`] dropped unacknowledged; [`ClientSession::poll_event`] reports it.
    acks_dropped: std::sync::Arc<std::sync::atomic::AtomicBool>,
    subscriptions: BTreeMap<TopicFilter, (SubscriptionOptions, Option<NonZeroU32>)>,
    server: ServerLimits,
    aliases_out: HashMap<TopicName, NonZeroU16>,
    aliases_in: HashMap<u16, TopicName>,
    /// Counts connections, so acknowledgement tokens of an earlier one are refused.
    connection: u64,
    ack_seq: u64,
    /// Reconnect attempts since the last accepted connection.
    attempt: u32,
    rng: u64,
    first_connect: bool,
    ever_connected: bool,
    sent_clean_start: bool,
    keep_alive: Duration,
    last_sent: Option<Instant>,
}

impl ClientSession {
    /// A client that has not connected yet.
    pub fn new(config: ClientConfig) -> ClientSession {
        let max_in = config
            .properties
            .maximum_packet_size
            .map_or(MAX_PACKET_SIZE, NonZeroU32::get);
        ClientSession {
            client_id: config.client_id.clone(),
            decoder: Decoder::new(config.protocol).with_max_packet_size(max_in),
            encoder: Encoder::new(config.protocol),
            rng: config.reconnect.map_or(0, |b| b.seed),
            keep_alive: Duration::from_secs(u64::from(config.keep_alive)),
            config,
            state: ClientState::Idle,
            inbuf: BytesMut::new(),
            out: BytesMut::new(),
            events: VecDeque::new(),
            timers: TimerTable::default(),
            flows: Flows::default(),
            incoming_qos2: HashSet::new(),
            on_wire: IdSet::default(),
            resend_backlog: VecDeque::new(),
            pending_acks: VecDeque::new(),
            acks_dropped: Default::default(),
            subscriptions: BTreeMap::new(),
            server: ServerLimits::default(),
            aliases_out: HashMap::new(),
            aliases_in: HashMap::new(),
            connection: 0,
            ack_seq: 0,
            attempt: 0,
            first_connect: true,
            ever_connected: false,
            sent_clean_start: false,
            last_sent: None,
        }
    }

    /// A client that resumes an exported session: its next connection asks to resume it.
    pub fn with_session(config: ClientConfig, session: SessionState) -> ClientSession {
        let mut c = ClientSession::new(config);
        if !session.client_id.is_empty() {
            c.client_id = session.client_id;
        }
        for o in session.outgoing {
            match o {
                Outgoing::Publish(p) => {
                    if let (Some(id), true) = (p.packet_id, p.qos != QoS::AtMostOnce) {
                        c.flows.insert(id, Flow::Publish(*p));
                    }
                }
                Outgoing::PubRel(id) => c.flows.insert(id, Flow::PubRel),
            }
        }
        c.incoming_qos2 = session.incoming_qos2.into_iter().collect();
        for (s, id) in session.subscriptions {
            c.subscriptions.insert(s.filter, (s.options, id));
        }
        c.first_connect = false;
        // A continuation of earlier connections: the first CONNACK reports `Reconnected`, with
        // what is lost if the server no longer has the session.
        c.ever_connected = true;
        c
    }

    /// The session state to store for [`ClientSession::with_session`].
    pub fn session(&self) -> SessionState {
        let mut incoming: Vec<PacketId> = self.incoming_qos2.iter().copied().collect();
        incoming.sort();
        SessionState {
            client_id: self.client_id.clone(),
            outgoing: self
                .flows
                .in_order()
                .filter_map(|(id, f)| match f {
                    Flow::Publish(p) => Some(Outgoing::Publish(Box::new(p.clone()))),
                    Flow::PubRel => Some(Outgoing::PubRel(id)),
                    _ => None,
                })
                .collect(),
            incoming_qos2: incoming,
            subscriptions: self
                .subscriptions
                .iter()
                .map(|(f, (options, id))| {
                    let sub = Subscription {
                        filter: f.clone(),
                        options: *options,
                    };
                    (sub, *id)
                })
                .collect(),
        }
    }

    /// Where the client is.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// The client identifier in use (the server's assigned one, once it has assigned one).
    pub fn client_id(&self) -> &ByteStr {
        &self.client_id
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// QoS 1/2 publishes sent on this connection and not finished, and the send quota that
    /// bounds them: the server's Receive Maximum, or [`ClientConfig::max_inflight`] if lower.
    pub fn window(&self) -> (usize, u16) {
        (self.on_wire.len(), self.server.receive_maximum)
    }

    /// Whether a QoS 1/2 [`ClientSession::publish`] would find room in the window now (it says
    /// [`ClientError::WindowFull`] otherwise): below the send quota, and no resumed session's
    /// resends waiting, since new messages queue behind those to keep the order.
    pub fn window_open(&self) -> bool {
        self.on_wire.len() < usize::from(self.server.receive_maximum)
            && self.resend_backlog.is_empty()
    }

    // ---- inputs -------------------------------------------------------------------------

    /// Starts a connection on a freshly opened transport: queues CONNECT.
    pub fn connect(&mut self, now: Instant) -> Result<(), ClientError> {
        if matches!(self.state, ClientState::Connecting | ClientState::Connected) {
            return Err(ClientError::AlreadyConnected);
        }
        let clean_start = if self.first_connect {
            self.config.clean_start
        } else {
            !self.wants_session()
        };
        let id_len = self.client_id.len();
        match self.config.protocol {
            // MQTT 3.1: "between 1 and 23 UTF-8 encoded bytes".
            ProtocolVersion::V3_1 if !(1..=23).contains(&id_len) => {
                return Err(ClientError::InvalidClientId(ClientIdRule::V31Length));
            }
            // [MQTT-3.1.3-7]: an empty identifier only with a clean session.
            ProtocolVersion::V3_1_1 if id_len == 0 && !clean_start => {
                return Err(ClientError::InvalidClientId(
                    ClientIdRule::EmptyNeedsCleanSession,
                ));
            }
            _ => {}
        }
        let c = &self.config;
        let connect = Connect {
            protocol: c.protocol,
            clean_start,
            keep_alive: c.keep_alive,
            client_id: self.client_id.clone(),
            will: c.will.clone(),
            username: c.username.clone(),
            password: c.password.clone(),
            properties: c.properties.clone(),
        };
        self.out.clear();
        self.inbuf.clear();
        self.encoder = Encoder::new(c.protocol);
        self.encoder.encode(&connect.into(), &mut self.out)?;
        self.first_connect = false;
        self.sent_clean_start = clean_start;
        self.on_wire.clear();
        self.resend_backlog.clear();
        self.server = ServerLimits::default();
        self.state = ClientState::Connecting;
        self.timers.stop_all();
        self.timers.set(Timer::ConnAck, now + c.connect_timeout);
        self.last_sent = Some(now);
        Ok(())
    }

    /// Whether a session can outlive a connection, so reconnects ask to resume it.
    fn wants_session(&self) -> bool {
        if self.config.protocol.is_v5() {
            self.config.properties.session_expiry_interval.unwrap_or(0) > 0
        } else {
            !self.config.clean_start
        }
    }

    /// Feeds bytes received from the server.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if !self.is_open() {
            return;
        }
        self.inbuf.extend_from_slice(data);
        while self.is_open() {
            match self.decoder.decode(&mut self.inbuf) {
                Ok(Some(packet)) => {
                    // Any packet shows the connection is alive.
                    self.timers.stop(Timer::PingResp);
                    self.handle_packet(now, packet);
                }
                Ok(None) => break,
                Err(e) => {
                    let code = e.reason_code();
                    self.fail(now, ConnectionError::Decode(e), code);
                }
            }
        }
    }

    /// Reports that the transport closed (read end, write error, reset).
    pub fn handle_transport_closed(&mut self, now: Instant) {
        if self.is_open() {
            let reason = CloseReason {
                initiator: Initiator::Transport,
                reason_code: ReasonCode::UnspecifiedError,
                error: Some(ConnectionError::TransportClosed),
            };
            self.closed(now, reason, DisconnectProperties::default(), true);
        }
    }

    /// Acts on every deadline due at `now`; a spurious call does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in self.timers.take_expired(now) {
            match (timer, self.state) {
                (Timer::ConnAck, ClientState::Connecting) => {
                    self.fail_silently(
                        now,
                        ConnectionError::ConnAckTimeout,
                        ReasonCode::UnspecifiedError,
                    );
                }
                (Timer::PingResp, ClientState::Connected) => {
                    self.fail_silently(
                        now,
                        ConnectionError::KeepAliveTimeout,
                        ReasonCode::KeepAliveTimeout,
                    );
                }
                (Timer::KeepAlive, ClientState::Connected) => {
                    self.send_control(now, &Packet::PingReq);
                    if self.timers.get(Timer::PingResp).is_none() {
                        let wait = self.config.ping_timeout.unwrap_or(self.keep_alive);
                        self.timers.set(Timer::PingResp, now + wait);
                    }
                }
                (Timer::Reconnect, ClientState::Reconnecting) => {
                    self.events.push_back(Event::ReconnectDue);
                }
                _ => {}
            }
        }
    }

    // ---- outputs ------------------------------------------------------------------------

    /// Bytes to write to the transport, all that are pending in one buffer; `None` when there
    /// are none. Yields after connect, commands, and inputs that need an answer.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            None
        } else {
            Some(self.out.split().freeze())
        }
    }

    /// The earliest deadline: CONNACK wait, next PINGREQ, PINGRESP wait or next reconnect.
    /// Call [`ClientSession::handle_timeout`] when it passes.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    /// The next event; yields after inputs, timeouts and disconnects, and once after an
    /// [`AckToken`] was dropped unacknowledged.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self
            .acks_dropped
            .swap(false, std::sync::atomic::Ordering::AcqRel)
        {
            for a in &self.pending_acks {
                if a.watch
                    .mark(event::AckWatch::DROPPED, event::AckWatch::REPORTED)
                {
                    let packet_id = a.packet_id;
                    self.events.push_back(Event::AckTokenDropped { packet_id });
                }
            }
        }
        self.events.pop_front()
    }

    // ---- internals ----------------------------------------------------------------------

    fn is_open(&self) -> bool {
        matches!(self.state, ClientState::Connecting | ClientState::Connected)
    }

    fn require_connected(&self) -> Result<(), ClientError> {
        if self.state == ClientState::Connected {
            Ok(())
        } else {
            Err(ClientError::NotConnected)
        }
    }

    /// Something went out at `now`: the next PINGREQ is a keep-alive later.
    fn sent(&mut self, now: Instant) {
        self.last_sent = Some(now);
        if self.state == ClientState::Connected && !self.keep_alive.is_zero() {
            self.timers.set(Timer::KeepAlive, now + self.keep_alive);
        }
    }

    /// Sends a packet the session generates itself (acks, PINGREQ, resends).
    ///
    /// These are a few bytes; if even they exceed the server's maximum packet size, the
    /// connection cannot work and is closed.
    fn send_control(&mut self, now: Instant, packet: &Packet) -> bool {
        match self.encoder.encode(packet, &mut self.out) {
            Ok(_) => {
                self.sent(now);
                true
            }
            Err(_) => {
                self.violation(now, ProtocolViolation::ServerMaximumPacketSizeTooSmall);
                false
            }
        }
    }

    fn send_ack(&mut self, now: Instant, id: PacketId, qos: QoS) {
        match qos {
            QoS::AtLeastOnce => {
                self.send_control(now, &Packet::PubAck(PubAck::new(id)));
            }
            QoS::ExactlyOnce => {
                self.incoming_qos2.insert(id);
                self.send_control(now, &Packet::PubRec(PubAck::new(id)));
            }
            QoS::AtMostOnce => {}
        }
    }

    /// Closes because of a fault this side detected: DISCONNECT with `code` (MQTT 5, once
    /// connected), then reconnect per the backoff.
    fn fail(&mut self, now: Instant, error: ConnectionError, code: ReasonCode) {
        if self.state == ClientState::Connected && self.config.protocol.is_v5() {
            // Best effort: the connection is over whatever happens to this DISCONNECT.
            let d = Disconnect::new(code.for_disconnect());
            let _ = self.encoder.encode(&Packet::Disconnect(d), &mut self.out);
        }
        let reason = CloseReason {
            initiator: Initiator::Local,
            reason_code: code,
            error: Some(error),
        };
        self.closed(now, reason, DisconnectProperties::default(), true);
    }

    /// Closes after a timeout: the peer is presumed gone, so no DISCONNECT is sent.
    fn fail_silently(&mut self, now: Instant, error: ConnectionError, code: ReasonCode) {
        let reason = CloseReason {
            initiator: Initiator::Local,
            reason_code: code,
            error: Some(error),
        };
        self.closed(now, reason, DisconnectProperties::default(), true);
    }

    /// The connection is over: report it once, forget per-connection state, plan a reconnect.
    fn closed(
        &mut self,
        now: Instant,
        reason: CloseReason,
        properties: DisconnectProperties,
        reconnect: bool,
    ) {
        let backoff = self.config.reconnect.filter(|_| reconnect);
        self.timers.stop_all();
        self.inbuf.clear();
        self.pending_acks.clear();
        self.aliases_in.clear();
        self.aliases_out.clear();
        self.connection += 1;
        self.state = match backoff {
            Some(b) => {
                let delay = b.delay(self.attempt, &mut self.rng);
                self.attempt = self.attempt.saturating_add(1);
                self.timers.set(Timer::Reconnect, now + delay);
                ClientState::Reconnecting
            }
            None => ClientState::Idle,
        };
        self.events.push_back(Event::Disconnected {
            reason,
            properties: Box::new(properties),
        });
    }
}
