//! One client connection on the broker side: framing, CONNECT validation and authentication,
//! keep-alive at 1.5x, the QoS handshakes, topic aliases and encoding.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::auth::{Authenticator, Authorizer};
use super::config::BrokerConfig;
use super::mail::{ConnId, ConnectRequest, Delivery, Handover, OutFlow, ToConnection, ToRouter};
use crate::codec::{
    AckProperties, ConnAck, Connect, DecodeError, Decoder, Disconnect, Encoder, Packet, PubAck,
    Publish, SubAck, Subscribe, UnsubAck, Unsubscribe, MAX_PACKET_SIZE,
};
use crate::error::{CloseReason, ConnectionError, Initiator};
use crate::timer::{TimerKind, TimerTable};
use crate::types::{ByteStr, PacketId, ProtocolVersion, QoS, ReasonCode, TopicName};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for CONNECT.
    New,
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
}

/// The broker side of one client connection.
pub(crate) struct ServerConnection {
    id: ConnId,
    config: Arc<BrokerConfig>,
    authenticator: Arc<dyn Authenticator>,
    authorizer: Arc<dyn Authorizer>,
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
    incoming_qos2: HashSet<PacketId>,
    aliases_in: HashMap<u16, TopicName>,
    /// Outbound QoS 1/2 flows in start order.
    outbound: BTreeMap<u64, (PacketId, OutFlow)>,
    /// The client's receive maximum (MQTT 5) or the configured window (3.1.x).
    window: usize,
    /// Handed-over flows not resent yet because the window was full, in order.
    resend_backlog: VecDeque<PacketId>,
    outbound_ids: HashMap<PacketId, u64>,
    next_seq: u64,
    next_id: u16,
    /// Whether the will goes out when the connection ends.
    will_on_close: bool,
    session_expiry: u32,
    session_expiry_update: Option<u32>,
    assigned_id: bool,
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
    pub(crate) fn new(
        id: ConnId,
        now: Instant,
        config: Arc<BrokerConfig>,
        authenticator: Arc<dyn Authenticator>,
        authorizer: Arc<dyn Authorizer>,
    ) -> ServerConnection {
        let mut timers = TimerTable::default();
        timers.set(Timer::Connect, now + config.connect_timeout);
        ServerConnection {
            id,
            decoder: Decoder::new(ProtocolVersion::V5).with_max_packet_size(config.max_packet_size),
            encoder: Encoder::new(ProtocolVersion::V5),
            config,
            authenticator,
            authorizer,
            state: State::New,
            protocol: ProtocolVersion::V5,
            client_id: ByteStr::new(),
            username: None,
            inbuf: BytesMut::new(),
            out: BytesMut::new(),
            timers,
            keep_alive: Duration::ZERO,
            server_keep_alive: None,
            incoming_qos2: HashSet::new(),
            aliases_in: HashMap::new(),
            outbound: BTreeMap::new(),
            window: 1,
            resend_backlog: VecDeque::new(),
            outbound_ids: HashMap::new(),
            next_seq: 0,
            next_id: 0,
            will_on_close: true,
            session_expiry: 0,
            session_expiry_update: None,
            assigned_id: false,
            to_router: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            None
        } else {
            Some(self.out.split().freeze())
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    pub(crate) fn poll_router(&mut self) -> Option<ToRouter> {
        self.to_router.pop_front()
    }

    pub(crate) fn poll_event(&mut self) -> Option<ConnEvent> {
        self.events.pop_front()
    }

    /// Encodes a packet the broker built itself.
    ///
    /// One larger than the client's maximum packet size is not sent ([MQTT-3.1.2-24]: the
    /// client's limit forbids it). Any other refusal means the broker built a packet the
    /// version cannot carry: a bug, asserted in debug builds.
    fn send(&mut self, packet: &Packet) -> bool {
        match self.encoder.encode(packet, &mut self.out) {
            Ok(_) => true,
            Err(crate::codec::EncodeError::PacketTooLarge { .. }) => false,
            Err(e) => {
                debug_assert!(false, "broker built a packet its version cannot carry: {e}");
                false
            }
        }
    }

    // ---- inputs -------------------------------------------------------------------------

    pub(crate) fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if self.state == State::Closed {
            return;
        }
        self.inbuf.extend_from_slice(data);
        self.process_input(now);
    }

    /// Decodes what is buffered. Packets a client pipelines behind CONNECT (allowed: MQTT 5
    /// section 3.1.4) wait in the buffer until the router has accepted the session.
    fn process_input(&mut self, now: Instant) {
        while matches!(self.state, State::New | State::Connected) {
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

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        for t in self.timers.take_expired(now) {
            match (t, self.state) {
                (Timer::Connect, State::New) => {
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

    pub(crate) fn handle_transport_closed(&mut self) {
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

    /// Mail from the router.
    pub(crate) fn handle_router(&mut self, now: Instant, mail: ToConnection) {
        match mail {
            ToConnection::Accepted {
                session_present,
                handover,
            } => self.accepted(now, session_present, handover),
            ToConnection::Deliver(d) => self.deliver(now, d),
            ToConnection::SubAck { packet_id, codes } => {
                let ack = SubAck {
                    packet_id,
                    properties: AckProperties::default(),
                    reason_codes: codes,
                };
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
            ToConnection::Disconnect(code) => {
                // Takeover: [MQTT-3.1.4-3] the will is published (subject to its delay).
                let will = code == ReasonCode::SessionTakenOver;
                self.close(Initiator::Local, code, None, Some(code), will);
            }
        }
    }

    // ---- closing ------------------------------------------------------------------------

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
        let disconnect = (self.state == State::Connected).then_some(code);
        self.close(
            Initiator::Local,
            code,
            Some(ConnectionError::Decode(e)),
            disconnect,
            true,
        );
    }

    fn protocol_error(&mut self, what: &'static str) {
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
            self.send(&Packet::Disconnect(Disconnect::new(code.for_disconnect())));
        }
        let was_session = matches!(self.state, State::Connecting | State::Connected);
        self.state = State::Closed;
        self.timers.stop_all();
        if was_session {
            let mut incoming: Vec<PacketId> = self.incoming_qos2.drain().collect();
            incoming.sort();
            let handover = Handover {
                outbound: std::mem::take(&mut self.outbound).into_values().collect(),
                incoming_qos2: incoming,
            };
            self.to_router.push_back(ToRouter::Closed {
                will: will && self.will_on_close,
                session_expiry: self.session_expiry_update,
                handover,
            });
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
            (State::New, _) => {
                // [MQTT-3.1.0-1]: the first packet must be CONNECT; close without CONNACK.
                self.protocol_error("first packet is not connect");
            }
            (State::Connecting, _) => self.protocol_error("packet before connack"),
            (_, Packet::Connect(_)) => self.protocol_error("second connect"), // [MQTT-3.1.0-2]
            (_, Packet::Publish(p)) => self.on_publish(p),
            (_, Packet::PubAck(a)) => self.on_puback(a),
            (_, Packet::PubRec(a)) => self.on_pubrec(a),
            (_, Packet::PubRel(a)) => self.on_pubrel(a),
            (_, Packet::PubComp(a)) => self.on_pubcomp(a),
            (_, Packet::Subscribe(s)) => self.on_subscribe(s),
            (_, Packet::Unsubscribe(u)) => self.on_unsubscribe(u),
            (_, Packet::PingReq) => {
                self.send(&Packet::PingResp);
            }
            (_, Packet::Disconnect(d)) => self.on_disconnect(d),
            (_, Packet::Auth(_)) => self.protocol_error("auth without an authentication method"),
            (_, _) => self.protocol_error("client sent a packet only servers send"),
        }
        let _ = now;
    }

    fn refuse(&mut self, code: ReasonCode) {
        let mut ack = ConnAck::accepted(false);
        ack.reason_code = code;
        self.send(&ack.into());
        self.close(
            Initiator::Local,
            code,
            Some(ConnectionError::Refused(code)),
            None,
            false,
        );
    }

    fn on_connect(&mut self, c: Connect) {
        self.protocol = c.protocol;
        self.decoder.version = c.protocol;
        self.encoder = Encoder::new(c.protocol);
        let v5 = c.protocol.is_v5();
        if c.properties.authentication_method.is_some() {
            // Enhanced authentication is not offered ([MQTT-4.12.0-1]).
            return self.refuse(ReasonCode::BadAuthenticationMethod);
        }
        let mut client_id = c.client_id.clone();
        if client_id.len() > self.config.max_client_id_len {
            return self.refuse(ReasonCode::ClientIdentifierNotValid);
        }
        if client_id.is_empty() {
            // [MQTT-3.1.3-8]: 3.1.1 refuses an empty id with a persistent session; 3.1 always.
            if c.protocol == ProtocolVersion::V3_1 || (!v5 && !c.clean_start) {
                return self.refuse(ReasonCode::ClientIdentifierNotValid);
            }
            let assigned = format!("tinymqtt-{:016x}", self.id.0);
            client_id = ByteStr::try_from(assigned).unwrap_or_default();
            self.assigned_id = true;
        }
        if c.username.is_none() && !self.config.allow_anonymous {
            return self.refuse(ReasonCode::NotAuthorized);
        }
        if let Err(code) =
            self.authenticator
                .authenticate(&client_id, c.username.as_ref(), c.password.as_ref())
        {
            let code = if v5 { code } else { v3_refusal(code) };
            return self.refuse(code);
        }
        if let Some(w) = &c.will {
            if !self
                .authorizer
                .can_publish(&client_id, c.username.as_ref(), &w.topic)
            {
                return self.refuse(ReasonCode::NotAuthorized);
            }
            if w.qos > self.config.maximum_qos {
                return self.refuse(ReasonCode::QoSNotSupported);
            }
            if w.retain && !self.config.retain_available {
                return self.refuse(ReasonCode::RetainNotSupported);
            }
        }
        let mut keep_alive = c.keep_alive;
        if v5 {
            if let Some(k) = self.config.server_keep_alive {
                keep_alive = k;
            } else if keep_alive > self.config.max_keep_alive
                || keep_alive == 0 && self.config.max_keep_alive < u16::MAX
            {
                keep_alive = self.config.max_keep_alive;
            }
        }
        // [MQTT-3.1.2-24]: one and a half times the keep-alive.
        self.keep_alive = Duration::from_millis(u64::from(keep_alive) * 1500);
        self.server_keep_alive = (v5 && keep_alive != c.keep_alive).then_some(keep_alive);
        let session_expiry = if v5 {
            c.properties.session_expiry_interval.unwrap_or(0)
        } else if c.clean_start {
            0
        } else {
            self.config.persistent_session_expiry.unwrap_or(u32::MAX)
        };
        self.session_expiry = session_expiry;
        self.encoder.max_packet_size = c
            .properties
            .maximum_packet_size
            .map_or(MAX_PACKET_SIZE, NonZeroU32::get);
        let window = if v5 {
            c.properties
                .receive_maximum
                .map_or(u16::MAX, NonZeroU16::get)
        } else {
            self.config.max_inflight_v3
        };
        self.window = usize::from(window.max(1));
        self.client_id = client_id.clone();
        self.username = c.username.clone();
        self.state = State::Connecting;
        self.to_router.push_back(ToRouter::Connect(ConnectRequest {
            client_id,
            protocol: c.protocol,
            clean_start: c.clean_start,
            session_expiry,
            will: c.will,
            window,
        }));
    }

    fn accepted(&mut self, now: Instant, session_present: bool, handover: Handover) {
        if self.state != State::Connecting {
            return;
        }
        // MQTT 3.1's CONNACK has no session present flag.
        let flag = session_present && self.protocol != ProtocolVersion::V3_1;
        let mut ack = ConnAck::accepted(flag);
        if self.protocol.is_v5() {
            let p = &mut ack.properties;
            let cfg = &self.config;
            p.receive_maximum = NonZeroU16::new(cfg.receive_maximum);
            p.maximum_packet_size = NonZeroU32::new(cfg.max_packet_size);
            p.topic_alias_maximum = Some(cfg.topic_alias_maximum);
            if cfg.maximum_qos < QoS::ExactlyOnce {
                p.maximum_qos = Some(cfg.maximum_qos);
            }
            if !cfg.retain_available {
                p.retain_available = Some(false);
            }
            if self.assigned_id {
                p.assigned_client_identifier = Some(self.client_id.clone());
            }
            p.server_keep_alive = self.server_keep_alive;
        }
        self.send(&ack.into());
        self.state = State::Connected;
        self.timers.stop(Timer::Connect);
        self.arm_keep_alive(now);
        self.events
            .push_back(ConnEvent::Connected(self.client_id.clone()));
        // [MQTT-4.4.0-1]: resend unacknowledged PUBLISH (DUP) and PUBREL in their order, within
        // the client's receive maximum ([MQTT-3.3.4-9]); the rest as acknowledgements free it.
        self.incoming_qos2 = handover.incoming_qos2.into_iter().collect();
        // Every flow before this one holds a window slot.
        for (held, (id, flow)) in handover.outbound.into_iter().enumerate() {
            let publish = matches!(flow, OutFlow::Publish(_));
            self.track(id, flow);
            if self.resend_backlog.is_empty() && !(publish && held >= self.window) {
                self.resend(id);
            } else {
                self.resend_backlog.push_back(id);
            }
        }
        self.process_input(now);
    }

    /// Sends a tracked flow again: PUBLISH with DUP, or PUBREL.
    fn resend(&mut self, id: PacketId) {
        let packet = match self
            .outbound_ids
            .get(&id)
            .and_then(|s| self.outbound.get(s))
        {
            Some((_, OutFlow::Publish(d))) => {
                let mut p = d.publish.clone();
                p.packet_id = Some(id);
                p.dup = true;
                Packet::Publish(p)
            }
            Some((_, OutFlow::Released)) => Packet::PubRel(PubAck::new(id)),
            None => return,
        };
        self.send(&packet);
    }

    /// An outbound flow finished: its window slot goes to the next held-back resend, or back
    /// to the router.
    fn flow_done(&mut self) {
        while let Some(id) = self.resend_backlog.pop_front() {
            let publish = matches!(
                self.outbound_ids
                    .get(&id)
                    .and_then(|s| self.outbound.get(s)),
                Some((_, OutFlow::Publish(_)))
            );
            self.resend(id);
            if publish {
                return; // the freed slot is used again
            }
        }
        self.to_router.push_back(ToRouter::Credit);
    }

    fn track(&mut self, id: PacketId, flow: OutFlow) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.outbound.insert(seq, (id, flow));
        self.outbound_ids.insert(id, seq);
        self.next_id = id.get();
    }

    fn untrack(&mut self, id: PacketId) -> Option<OutFlow> {
        let seq = self.outbound_ids.remove(&id)?;
        self.outbound.remove(&seq).map(|(_, f)| f)
    }

    fn next_packet_id(&self) -> Option<PacketId> {
        let mut id = self.next_id;
        for _ in 0..u16::MAX {
            id = if id == u16::MAX { 1 } else { id + 1 };
            let pid = PacketId::new(id)?;
            if !self.outbound_ids.contains_key(&pid) {
                return Some(pid);
            }
        }
        None
    }

    fn deliver(&mut self, now: Instant, d: Delivery) {
        let qos0 = d.publish.qos == QoS::AtMostOnce;
        let credit = |c: &mut Self| {
            if !qos0 {
                c.to_router.push_back(ToRouter::Credit);
            }
        };
        if self.state != State::Connected {
            return credit(self);
        }
        let mut p = d.publish.clone();
        if let Some(at) = d.expires_at {
            // [MQTT-3.3.2-6]: forward the remaining lifetime; drop what has expired.
            let Some(left) = at.checked_duration_since(now).filter(|l| !l.is_zero()) else {
                return credit(self);
            };
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            p.properties.message_expiry_interval = Some(secs.min(u64::from(u32::MAX)) as u32);
        }
        if !self.protocol.is_v5() {
            p.properties = Default::default();
        }
        if !qos0 {
            let Some(id) = self.next_packet_id() else {
                return credit(self);
            };
            p.packet_id = Some(id);
            if self
                .encoder
                .encode(&Packet::Publish(p), &mut self.out)
                .is_err()
            {
                // Larger than the client's maximum packet size: discarded ([MQTT-3.1.2-25]).
                return credit(self);
            }
            self.track(id, OutFlow::Publish(d));
        } else if self
            .encoder
            .encode(&Packet::Publish(p), &mut self.out)
            .is_err()
        {
            // Discarded as above.
        }
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
                match self.aliases_in.get(&alias.get()) {
                    Some(t) => p.topic = t.clone(),
                    None => return self.protocol_error("unknown topic alias"),
                }
            } else {
                self.aliases_in.insert(alias.get(), p.topic.clone());
            }
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
        let allowed =
            self.authorizer
                .can_publish(&self.client_id, self.username.as_ref(), &p.topic);
        let code = if allowed {
            ReasonCode::Success
        } else {
            ReasonCode::NotAuthorized
        };
        let code = if self.protocol.is_v5() {
            code
        } else {
            ReasonCode::Success // 3.1.x has no code: the message is dropped silently
        };
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => {
                if allowed {
                    self.to_router.push_back(ToRouter::Publish(p));
                }
                let mut ack = PubAck::new(id);
                ack.reason_code = code;
                self.send(&Packet::PubAck(ack));
            }
            (QoS::ExactlyOnce, Some(id)) => {
                if self.incoming_qos2.contains(&id) {
                    // [MQTT-4.3.3-10]: a duplicate; answer again, don't forward twice.
                    self.send(&Packet::PubRec(PubAck::new(id)));
                    return;
                }
                if self.incoming_qos2.len() >= usize::from(self.config.receive_maximum) {
                    // [MQTT-3.3.4-9]
                    return self.close(
                        Initiator::Local,
                        ReasonCode::ReceiveMaximumExceeded,
                        Some(ConnectionError::LimitExceeded("receive maximum exceeded")),
                        Some(ReasonCode::ReceiveMaximumExceeded),
                        true,
                    );
                }
                if allowed {
                    self.incoming_qos2.insert(id);
                    self.to_router.push_back(ToRouter::Publish(p));
                }
                let mut rec = PubAck::new(id);
                rec.reason_code = code;
                self.send(&Packet::PubRec(rec));
            }
            _ => {
                if allowed {
                    self.to_router.push_back(ToRouter::Publish(p));
                }
            }
        }
    }

    fn on_puback(&mut self, a: PubAck) {
        match self
            .outbound_ids
            .get(&a.packet_id)
            .and_then(|s| self.outbound.get(s))
        {
            Some((_, OutFlow::Publish(d))) if d.publish.qos == QoS::AtLeastOnce => {
                self.untrack(a.packet_id);
                self.flow_done();
            }
            _ => self.protocol_error("puback for no qos 1 publish in flight"),
        }
    }

    fn on_pubrec(&mut self, a: PubAck) {
        let id = a.packet_id;
        match self
            .outbound_ids
            .get(&id)
            .and_then(|s| self.outbound.get(s))
        {
            Some((_, OutFlow::Publish(d))) if d.publish.qos == QoS::ExactlyOnce => {
                if a.reason_code.is_error() {
                    self.untrack(id);
                    self.flow_done();
                    return;
                }
                if let Some(seq) = self.outbound_ids.get(&id) {
                    if let Some(entry) = self.outbound.get_mut(seq) {
                        entry.1 = OutFlow::Released;
                    }
                }
                self.send(&Packet::PubRel(PubAck::new(id)));
            }
            Some((_, OutFlow::Released)) => {
                self.send(&Packet::PubRel(PubAck::new(id)));
            }
            _ => {
                let mut rel = PubAck::new(id);
                if self.protocol.is_v5() {
                    rel.reason_code = ReasonCode::PacketIdentifierNotFound;
                }
                self.send(&Packet::PubRel(rel));
            }
        }
    }

    fn on_pubrel(&mut self, a: PubAck) {
        let mut comp = PubAck::new(a.packet_id);
        if !self.incoming_qos2.remove(&a.packet_id) && self.protocol.is_v5() {
            comp.reason_code = ReasonCode::PacketIdentifierNotFound;
        }
        self.send(&Packet::PubComp(comp));
    }

    fn on_pubcomp(&mut self, a: PubAck) {
        match self
            .outbound_ids
            .get(&a.packet_id)
            .and_then(|s| self.outbound.get(s))
        {
            Some((_, OutFlow::Released)) => {
                self.untrack(a.packet_id);
                self.flow_done();
            }
            _ => self.protocol_error("pubcomp for no pubrel in flight"),
        }
    }

    fn on_subscribe(&mut self, s: Subscribe) {
        let v5 = self.protocol.is_v5();
        let refused = if v5 {
            ReasonCode::NotAuthorized
        } else {
            ReasonCode::UnspecifiedError
        };
        let filters = s
            .filters
            .into_iter()
            .map(|sub| {
                let ok = self.authorizer.can_subscribe(
                    &self.client_id,
                    self.username.as_ref(),
                    &sub.filter,
                );
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
            self.session_expiry_update = Some(e);
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

/// A refusal in MQTT 3.1.x terms: bad user name or password, or not authorized.
fn v3_refusal(code: ReasonCode) -> ReasonCode {
    match code {
        ReasonCode::BadUserNameOrPassword
        | ReasonCode::ClientIdentifierNotValid
        | ReasonCode::ServerUnavailable
        | ReasonCode::UnsupportedProtocolVersion => code,
        _ => ReasonCode::NotAuthorized,
    }
}
