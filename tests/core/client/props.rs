//! State-machine property test of the client session against a randomized fake server.
//!
//! Each case picks a protocol version and the limits of both sides, then runs up to 200 random
//! steps: client commands (publish at any QoS, subscribe, unsubscribe, manual ack, disconnect,
//! connect after `ReconnectDue`, a process restart through the exported session), server
//! packets (CONNACK with or without a session, acks or none, publishes at QoS 0-2 with aliases
//! and duplicates, PUBREL, PINGRESP, DISCONNECT, acks for unknown ids, garbage), a closed
//! transport, and time jumps to `poll_timeout`. The server is the model: it decodes every byte
//! the client sends and checks, after every step, that
//! - nothing panics, and every packet the client sends is valid for the version;
//! - the window never exceeds the server's Receive Maximum, and matches the model's count;
//! - a new PUBLISH, SUBSCRIBE or UNSUBSCRIBE never uses an id that is still unacknowledged;
//! - `poll_timeout` after `handle_timeout(now)` is `None` or not before `now`;
//! - after `Disconnected`, nothing but a new CONNECT goes out, and a close is reported once;
//! - a QoS 2 message is never delivered twice, a new message is delivered exactly once;
//! - the client never closes on its own against this (compliant) server except on a timeout or
//!   a fault the server injected on purpose;
//! - resends after a resumed session are the unacknowledged PUBLISH (DUP) and PUBREL, in order,
//!   and `Reconnected` reports exactly what the model knows to be lost otherwise.

use std::collections::{HashMap, HashSet, VecDeque};
use std::num::{NonZeroU16, NonZeroU32};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;

use crate::support::{t0, wire};
use tinymqtt::client::{AckToken, Backoff, ClientConfig, ClientSession, ClientState, Event};
use tinymqtt::codec::{
    AckProperties, ConnAck, ConnAckProperties, Decoder, Disconnect, Packet, PubAck, Publish,
    SubAck, SubscribeProperties, Subscription, UnsubAck, UnsubscribeProperties,
};
use tinymqtt::error::{ClientError, ConnectionError, Initiator};
use tinymqtt::{ByteStr, PacketId, ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName};

const TOPICS: [&str; 4] = ["t/0", "t/1", "sensors/kitchen/temperature", "x"];
const FILTERS: [&str; 4] = ["t/+", "sensors/#", "x", "t/1"];

/// The fixed parameters of one run.
#[derive(Debug, Clone)]
struct Setup {
    version: ProtocolVersion,
    keep_alive: u16,
    ping_timeout_ms: Option<u64>,
    manual_acks: bool,
    resubscribe: bool,
    /// The client wants a session that outlives the connection.
    persistent: bool,
    first_clean: bool,
    server_rm: u16,
    server_max_qos: QoS,
    server_retain: bool,
    server_tam: u16,
    server_max_packet: Option<u32>,
    client_tam: u16,
    client_rm: u16,
    /// Input chunk size; 0 feeds each server packet whole.
    chunk: usize,
    seed: u64,
}

fn setup() -> impl Strategy<Value = Setup> {
    let version = prop_oneof![
        1 => Just(ProtocolVersion::V3_1),
        2 => Just(ProtocolVersion::V3_1_1),
        3 => Just(ProtocolVersion::V5),
    ];
    (
        (
            version,
            0..=20u16,
            proptest::option::of(100..5_000u64),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        ),
        (
            1..=6u16,
            0..=3u8,
            proptest::bool::weighted(0.8),
            0..=3u16,
            proptest::option::weighted(0.3, 40..=120u32),
            0..=3u16,
            1..=4u16,
            prop_oneof![Just(0usize), 1..=7usize],
            any::<u64>(),
        ),
    )
        .prop_map(|(a, b)| {
            let v5 = a.0.is_v5();
            Setup {
                version: a.0,
                keep_alive: a.1,
                ping_timeout_ms: a.2,
                manual_acks: a.3,
                resubscribe: a.4,
                persistent: a.5,
                first_clean: a.6,
                server_rm: if v5 { b.0 } else { u16::MAX },
                server_max_qos: if v5 {
                    QoS::from_u8(b.1).unwrap_or(QoS::ExactlyOnce) // 2 half the time
                } else {
                    QoS::ExactlyOnce
                },
                server_retain: !v5 || b.2,
                server_tam: if v5 { b.3 } else { 0 },
                server_max_packet: if v5 { b.4 } else { None },
                client_tam: if v5 { b.5 } else { 0 },
                client_rm: if v5 { b.6 } else { u16::MAX },
                chunk: b.7,
                seed: b.8,
            }
        })
}

/// One step of a run.
#[derive(Debug, Clone)]
enum Step {
    Publish {
        qos: u8,
        retain: bool,
        topic: usize,
        len: usize,
    },
    Subscribe {
        n: usize,
        qos: u8,
        with_id: bool,
    },
    Unsubscribe {
        n: usize,
    },
    Ack {
        pick: usize,
    },
    Disconnect,
    /// Connects when a reconnect is due (running the clock to it if needed); the server may
    /// answer at once.
    Connect {
        accept: Option<(bool, u8)>,
    },
    /// The process restarts from the exported session and connects.
    Restart {
        accept: Option<(bool, u8)>,
    },
    ConnAck {
        present: bool,
        refuse: Option<u8>,
        bad_present: bool,
        rm: u8,
    },
    ServerAck {
        pick: usize,
        variant: u8,
    },
    ServerPublish {
        qos: u8,
        topic: usize,
        len: usize,
        alias: bool,
        retain: bool,
    },
    ServerDup {
        pick: usize,
    },
    ServerPubRel {
        pick: usize,
    },
    PingResp,
    ServerDisconnect {
        code: usize,
    },
    WrongAck {
        kind: u8,
        id: u16,
    },
    TransportClosed,
    Garbage {
        prefix: usize,
        tail: Vec<u8>,
    },
    Timeout,
    Advance {
        ms: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    use proptest::bool::weighted as maybe;
    use proptest::option::weighted as sometimes;
    prop_oneof![
        12 => (0..=2u8, maybe(0.2), 0..4usize, 0..48usize)
            .prop_map(|(qos, retain, topic, len)| Step::Publish { qos, retain, topic, len }),
        2 => (1..=3usize, 0..=2u8, any::<bool>())
            .prop_map(|(n, qos, with_id)| Step::Subscribe { n, qos, with_id }),
        1 => (1..=2usize).prop_map(|n| Step::Unsubscribe { n }),
        2 => any::<usize>().prop_map(|pick| Step::Ack { pick }),
        1 => Just(Step::Disconnect),
        6 => sometimes(0.85, (any::<bool>(), any::<u8>()))
            .prop_map(|accept| Step::Connect { accept }),
        1 => sometimes(0.85, (any::<bool>(), any::<u8>()))
            .prop_map(|accept| Step::Restart { accept }),
        2 => (any::<bool>(), sometimes(0.1, any::<u8>()), maybe(0.05), any::<u8>())
            .prop_map(|(present, refuse, bad_present, rm)| {
                Step::ConnAck { present, refuse, bad_present, rm }
            }),
        7 => (any::<usize>(), any::<u8>())
            .prop_map(|(pick, variant)| Step::ServerAck { pick, variant }),
        5 => (0..=2u8, 0..4usize, 0..24usize, any::<bool>(), maybe(0.1))
            .prop_map(|(qos, topic, len, alias, retain)| {
                Step::ServerPublish { qos, topic, len, alias, retain }
            }),
        2 => any::<usize>().prop_map(|pick| Step::ServerDup { pick }),
        2 => any::<usize>().prop_map(|pick| Step::ServerPubRel { pick }),
        2 => Just(Step::PingResp),
        1 => any::<usize>().prop_map(|code| Step::ServerDisconnect { code }),
        1 => (0..5u8, any::<u16>()).prop_map(|(kind, id)| Step::WrongAck { kind, id }),
        1 => Just(Step::TransportClosed),
        1 => (0..4usize, vec(any::<u8>(), 0..12))
            .prop_map(|(prefix, tail)| Step::Garbage { prefix, tail }),
        3 => Just(Step::Timeout),
        2 => (1..20_000u64).prop_map(|ms| Step::Advance { ms }),
    ]
}

/// An unfinished client-to-server flow, as the server sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Flow {
    Pub1,
    Pub2,
    Rel,
    Sub(usize),
    Unsub(usize),
}

impl Flow {
    fn in_window(self) -> bool {
        matches!(self, Flow::Pub1 | Flow::Pub2 | Flow::Rel)
    }
}

/// An unfinished server-to-client flow.
#[derive(Debug, Clone, PartialEq)]
enum SrvFlow {
    /// QoS 1, waiting for PUBACK.
    Ack(Publish),
    /// QoS 2, waiting for PUBREC.
    Rec(Publish),
    /// QoS 2, PUBREC received: the client holds the id until PUBREL; waiting for PUBCOMP.
    Comp(Publish),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Conn {
    Down,
    AwaitConnAck { clean: bool },
    Up,
}

/// What the next `Connected`/`Reconnected` must say.
#[derive(Debug)]
struct Accepted {
    present: bool,
    reconnected: bool,
    lost_publishes: Vec<u16>,
    lost_released: Vec<u16>,
    lost_subscribes: Vec<u16>,
    lost_unsubscribes: Vec<u16>,
}

/// A message the server sent this step.
#[derive(Debug)]
struct Sent {
    topic: TopicName,
    payload: Bytes,
    qos: QoS,
    id: Option<PacketId>,
    /// Must be delivered exactly once (a new message).
    must: bool,
    /// Must not be delivered (a QoS 2 duplicate the client holds).
    forbidden: bool,
}

struct Sim {
    s: Setup,
    v: ProtocolVersion,
    config: ClientConfig,
    client: ClientSession,
    now: Instant,
    conn: Conn,
    /// The Receive Maximum of the server on this connection.
    rm: u16,
    /// `Disconnected` was reported (or nothing connected yet) and no CONNECT went out since.
    closed: bool,
    /// No `Connected`/`Reconnected` yet from this client (and not restored).
    fresh: bool,
    /// The client has not sent CONNECT yet (and was not restored).
    first_connect: bool,
    reconnect_due: bool,
    out: Vec<(u16, Flow)>,
    /// QoS 1/2 PUBLISHes sent on this connection and not finished: the send quota used.
    on_wire: HashSet<u16>,
    /// A resumed session's flows not resent yet, in order.
    backlog: VecDeque<u16>,
    /// PUBRELs the client owes as answers to this step's PUBRECs.
    rel_answers: Vec<u16>,
    srv_out: Vec<(u16, SrvFlow)>,
    srv_next: u16,
    srv_aliases: HashMap<u16, TopicName>,
    cli_aliases: HashMap<u16, TopicName>,
    tokens: Vec<AckToken>,
    last_client_packet: Instant,
    // Expectations of the current step.
    expect_published: Vec<u16>,
    expect_subscribed: Vec<u16>,
    expect_unsubscribed: Vec<u16>,
    expect_accepted: Option<Accepted>,
    expect_new_id: Option<u16>,
    expect_close: bool,
    sent: Vec<Sent>,
    fault_ok: bool,
    timeout_ok: bool,
}

fn client_config(s: &Setup) -> ClientConfig {
    let mut c = ClientConfig::new(s.version, ByteStr::from_static("prop"));
    c.keep_alive = s.keep_alive;
    c.ping_timeout = s.ping_timeout_ms.map(Duration::from_millis);
    c.connect_timeout = Duration::from_secs(5);
    c.manual_acks = s.manual_acks;
    c.resubscribe = s.resubscribe;
    c.reconnect = Some(Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(10),
        jitter_percent: 30,
        seed: s.seed,
    });
    if s.version.is_v5() {
        c.clean_start = s.first_clean;
        c.properties.session_expiry_interval = s.persistent.then_some(600);
        c.properties.topic_alias_maximum = (s.client_tam > 0).then_some(s.client_tam);
        c.properties.receive_maximum = NonZeroU16::new(s.client_rm);
    } else {
        c.clean_start = !s.persistent;
    }
    c
}

impl Sim {
    fn new(s: Setup) -> Sim {
        let config = client_config(&s);
        let now = t0();
        Sim {
            v: s.version,
            client: ClientSession::new(config.clone()),
            config,
            s,
            now,
            conn: Conn::Down,
            rm: u16::MAX,
            closed: true,
            fresh: true,
            first_connect: true,
            reconnect_due: false,
            out: Vec::new(),
            on_wire: HashSet::new(),
            backlog: VecDeque::new(),
            rel_answers: Vec::new(),
            srv_out: Vec::new(),
            srv_next: 0,
            srv_aliases: HashMap::new(),
            cli_aliases: HashMap::new(),
            tokens: Vec::new(),
            last_client_packet: now,
            expect_published: Vec::new(),
            expect_subscribed: Vec::new(),
            expect_unsubscribed: Vec::new(),
            expect_accepted: None,
            expect_new_id: None,
            expect_close: false,
            sent: Vec::new(),
            fault_ok: false,
            timeout_ok: false,
        }
    }

    fn is_open(&self) -> bool {
        matches!(
            self.client.state(),
            ClientState::Connecting | ClientState::Connected
        )
    }

    fn connected(&self) -> bool {
        self.conn == Conn::Up && self.client.state() == ClientState::Connected
    }

    /// Ends the client's flow at index `i` of `out`.
    fn finish(&mut self, i: usize) {
        let (id, _) = self.out.remove(i);
        self.on_wire.remove(&id);
        self.backlog.retain(|b| *b != id);
    }

    /// Feeds server bytes, in chunks if the setup says so; a closed client must stay silent.
    fn feed(&mut self, bytes: &[u8]) {
        let open = self.is_open();
        if self.s.chunk == 0 {
            self.client.handle_input(self.now, bytes);
        } else {
            for c in bytes.chunks(self.s.chunk) {
                self.client.handle_input(self.now, c);
            }
        }
        if !open {
            assert_eq!(
                self.client.poll_transmit(),
                None,
                "input after close is a no-op"
            );
            assert_eq!(
                self.client.poll_event(),
                None,
                "input after close is a no-op"
            );
        }
    }

    fn send(&mut self, packet: Packet) {
        let bytes = wire(&packet, self.v);
        self.feed(&bytes);
    }

    fn handle_timeout(&mut self) {
        self.client.handle_timeout(self.now);
        if let Some(next) = self.client.poll_timeout() {
            assert!(
                next >= self.now,
                "poll_timeout after handle_timeout(now) is in the past"
            );
        }
        self.timeout_ok = true;
    }

    fn run(&mut self, step: &Step) {
        match step {
            Step::Publish {
                qos,
                retain,
                topic,
                len,
            } => self.cmd_publish(*qos, *retain, *topic, *len),
            Step::Subscribe { n, qos, with_id } => {
                let filters: Vec<Subscription> = (0..*n)
                    .map(|i| {
                        let f = TopicFilter::new(FILTERS[(i + *n) % FILTERS.len()]).unwrap();
                        Subscription::new(f, QoS::from_u8(*qos).unwrap())
                    })
                    .collect();
                let mut props = SubscribeProperties::default();
                if *with_id && self.v.is_v5() {
                    props.subscription_identifier = NonZeroU32::new(*n as u32);
                }
                let state = self.client.state();
                match self.client.subscribe(self.now, filters, props) {
                    Ok(id) => {
                        assert_eq!(state, ClientState::Connected);
                        self.expect_new_id = Some(id.get());
                    }
                    Err(ClientError::NotConnected) => assert_ne!(state, ClientState::Connected),
                    Err(e) => panic!("subscribe refused: {e}"),
                }
            }
            Step::Unsubscribe { n } => {
                let filters = (0..*n)
                    .map(|i| TopicFilter::new(FILTERS[i]).unwrap())
                    .collect();
                let state = self.client.state();
                match self
                    .client
                    .unsubscribe(self.now, filters, UnsubscribeProperties::default())
                {
                    Ok(id) => {
                        assert_eq!(state, ClientState::Connected);
                        self.expect_new_id = Some(id.get());
                    }
                    Err(ClientError::NotConnected) => assert_ne!(state, ClientState::Connected),
                    Err(e) => panic!("unsubscribe refused: {e}"),
                }
            }
            Step::Ack { pick } => {
                if !self.tokens.is_empty() {
                    let token = self.tokens[pick % self.tokens.len()].clone();
                    match self.client.ack(self.now, token) {
                        Ok(()) | Err(ClientError::UnknownAckToken) => {}
                        Err(e) => panic!("ack: {e}"),
                    }
                }
            }
            Step::Disconnect => {
                let state = self.client.state();
                match self.client.disconnect(self.now, Disconnect::default()) {
                    Ok(()) => {
                        assert_ne!(state, ClientState::Idle);
                        if state == ClientState::Connected {
                            self.expect_close = true;
                        }
                    }
                    Err(ClientError::NotConnected) => assert_eq!(state, ClientState::Idle),
                    Err(e) => panic!("disconnect: {e}"),
                }
            }
            Step::Connect { accept } => {
                if self.client.state() == ClientState::Reconnecting && !self.reconnect_due {
                    if let Some(at) = self.client.poll_timeout() {
                        self.now = self.now.max(at);
                        self.handle_timeout();
                        self.drain();
                    }
                }
                let state = self.client.state();
                let due = state == ClientState::Idle
                    || (state == ClientState::Reconnecting && self.reconnect_due);
                if due {
                    self.client.connect(self.now).expect("connect");
                    self.reconnect_due = false;
                    self.accept(*accept);
                } else if self.is_open() {
                    assert_eq!(
                        self.client.connect(self.now),
                        Err(ClientError::AlreadyConnected)
                    );
                }
            }
            Step::Restart { accept } => {
                let session = self.client.session();
                self.client = ClientSession::with_session(self.config.clone(), session);
                self.conn = Conn::Down;
                self.closed = true;
                self.fresh = false;
                self.first_connect = false;
                self.reconnect_due = false;
                // Only publishes and PUBRELs are part of the exported session.
                self.out.retain(|(_, f)| f.in_window());
                self.on_wire.clear();
                self.backlog.clear();
                self.tokens.clear();
                self.client
                    .connect(self.now)
                    .expect("connect after restart");
                self.accept(*accept);
            }
            Step::ConnAck {
                present,
                refuse,
                bad_present,
                rm,
            } => self.server_connack(*present, *refuse, *bad_present, *rm),
            Step::ServerAck { pick, variant } => self.server_ack(*pick, *variant),
            Step::ServerPublish {
                qos,
                topic,
                len,
                alias,
                retain,
            } => self.server_publish(*qos, *topic, *len, *alias, *retain),
            Step::ServerDup { pick } => {
                if self.connected() && !self.srv_out.is_empty() {
                    let (id, f) = self.srv_out[pick % self.srv_out.len()].clone();
                    let (p, forbidden) = match f {
                        SrvFlow::Ack(p) | SrvFlow::Rec(p) => (p, false),
                        SrvFlow::Comp(p) => (p, true),
                    };
                    let mut p = p;
                    p.dup = true;
                    assert_eq!(p.packet_id.map(|i| i.get()), Some(id));
                    self.sent.push(Sent {
                        topic: p.topic.clone(),
                        payload: p.payload.clone(),
                        qos: p.qos,
                        id: p.packet_id,
                        must: false,
                        forbidden,
                    });
                    self.send(Packet::Publish(p));
                }
            }
            Step::ServerPubRel { pick } => {
                let held: Vec<u16> = self
                    .srv_out
                    .iter()
                    .filter(|(_, f)| matches!(f, SrvFlow::Comp(_)))
                    .map(|(id, _)| *id)
                    .collect();
                if self.connected() && !held.is_empty() {
                    let id = held[pick % held.len()];
                    self.send(Packet::PubRel(PubAck::new(PacketId::new(id).unwrap())));
                }
            }
            Step::PingResp => {
                if self.conn == Conn::Up || !self.is_open() {
                    self.feed(&[0xD0, 0x00]);
                }
            }
            Step::ServerDisconnect { code } => {
                const CODES: [u8; 6] = [0x00, 0x04, 0x80, 0x89, 0x8B, 0x8E];
                if self.v.is_v5() && self.connected() {
                    let rc = ReasonCode::from_u8(CODES[code % CODES.len()]).unwrap();
                    self.send(Packet::Disconnect(Disconnect::new(rc)));
                    self.conn = Conn::Down;
                    self.expect_close = true;
                }
            }
            Step::WrongAck { kind, id } => self.wrong_ack(*kind, *id),
            Step::TransportClosed => {
                if self.is_open() {
                    self.expect_close = true;
                }
                self.client.handle_transport_closed(self.now);
                self.conn = Conn::Down;
            }
            Step::Garbage { prefix, tail } => {
                // Prefixes that can never start a valid packet: reserved type 0, PUBACK with
                // flags, PUBLISH with QoS 3, PUBREL with flags 0000.
                const PREFIXES: [&[u8]; 4] = [
                    &[0x00, 0x00],
                    &[0x41, 0x02, 0x00, 0x01],
                    &[0x36, 0x03, 0x00, 0x00, 0x00],
                    &[0x60, 0x02, 0x00, 0x01],
                ];
                let mut bytes = PREFIXES[prefix % PREFIXES.len()].to_vec();
                bytes.extend_from_slice(tail);
                if self.is_open() {
                    self.expect_close = true;
                    self.fault_ok = true;
                }
                self.feed(&bytes);
            }
            Step::Timeout => {
                if let Some(at) = self.client.poll_timeout() {
                    self.now = self.now.max(at);
                    self.handle_timeout();
                }
            }
            Step::Advance { ms } => {
                self.now += Duration::from_millis(*ms);
                self.handle_timeout();
            }
        }
    }

    /// Lets the CONNECT out and, if `accept` says so, answers it with CONNACK.
    fn accept(&mut self, accept: Option<(bool, u8)>) {
        if let Some((present, rm)) = accept {
            self.drain();
            self.server_connack(present, None, false, rm);
        }
    }

    fn cmd_publish(&mut self, qos: u8, retain: bool, topic: usize, len: usize) {
        let qos = QoS::from_u8(qos).unwrap();
        let mut m = Publish::new(TopicName::new(TOPICS[topic]).unwrap(), vec![0xA5; len]);
        m.qos = qos;
        m.retain = retain;
        let state = self.client.state();
        let r = self.client.publish(self.now, m);
        let connected = state == ClientState::Connected;
        let predicted: Result<(), ClientError> = if !connected {
            Err(ClientError::NotConnected)
        } else if qos > self.s.server_max_qos {
            Err(ClientError::QoSNotSupported {
                max: self.s.server_max_qos,
            })
        } else if retain && !self.s.server_retain {
            Err(ClientError::RetainNotSupported)
        } else if qos != QoS::AtMostOnce
            && (self.on_wire.len() >= usize::from(self.rm) || !self.backlog.is_empty())
        {
            Err(ClientError::WindowFull(self.rm))
        } else {
            Ok(())
        };
        match (r, predicted) {
            (Ok(id), Ok(())) => {
                assert_eq!(id.is_some(), qos != QoS::AtMostOnce);
                self.expect_new_id = id.map(PacketId::get);
            }
            (Err(ClientError::PacketTooLarge { max, .. }), Ok(())) => {
                assert_eq!(Some(max as u32), self.s.server_max_packet);
            }
            (Err(got), Err(want)) => assert_eq!(got, want),
            (got, want) => panic!("publish gave {got:?}, the model predicted {want:?}"),
        }
    }

    /// CONNACK; `rm` picks this connection's Receive Maximum (the setup's, or 1-6).
    fn server_connack(&mut self, present: bool, refuse: Option<u8>, bad_present: bool, rm: u8) {
        let Conn::AwaitConnAck { clean } = self.conn else {
            return;
        };
        if self.client.state() != ClientState::Connecting {
            return;
        }
        if let Some(r) = refuse {
            let code = if self.v.is_v5() {
                const V5: [u8; 6] = [0x80, 0x85, 0x86, 0x87, 0x88, 0x9F];
                V5[usize::from(r) % V5.len()]
            } else {
                const V3: [u8; 5] = [0x84, 0x85, 0x88, 0x86, 0x87];
                V3[usize::from(r) % V3.len()]
            };
            let mut c = ConnAck::accepted(false);
            c.reason_code = ReasonCode::from_u8(code).unwrap();
            self.send(c.into());
            self.conn = Conn::Down;
            self.expect_close = true;
            return;
        }
        let v31 = self.v == ProtocolVersion::V3_1;
        let can_resume = !clean && !v31;
        let bad = bad_present && clean && !v31;
        let wire_present = (present && can_resume) || bad;
        // MQTT 3.1's CONNACK has no session present flag: a client that asked to keep its
        // session (clean session 0) takes it as kept, as a 3.1 server keeps it.
        let present = if v31 { !clean } else { wire_present };
        let mut c = ConnAck::accepted(wire_present);
        let rm = match (self.v.is_v5(), rm % 2) {
            (false, _) => u16::MAX,
            (true, 0) => self.s.server_rm,
            (true, _) => 1 + u16::from(rm % 6),
        };
        if self.v.is_v5() {
            let s = &self.s;
            c.properties = ConnAckProperties {
                receive_maximum: NonZeroU16::new(rm),
                maximum_qos: (s.server_max_qos < QoS::ExactlyOnce).then_some(s.server_max_qos),
                retain_available: (!s.server_retain).then_some(false),
                topic_alias_maximum: (s.server_tam > 0).then_some(s.server_tam),
                maximum_packet_size: s.server_max_packet.and_then(NonZeroU32::new),
                ..ConnAckProperties::default()
            };
        }
        if bad {
            // Session Present after a clean start: the client must close ([MQTT-3.2.2-4]).
            self.fault_ok = true;
            self.expect_close = true;
            self.send(c.into());
            self.conn = Conn::Down;
            return;
        }
        let ids = |out: &[(u16, Flow)], pred: fn(Flow) -> bool| -> Vec<u16> {
            out.iter()
                .filter(|(_, f)| pred(*f))
                .map(|(id, _)| *id)
                .collect()
        };
        let mut acc = Accepted {
            present,
            reconnected: !self.fresh,
            lost_publishes: Vec::new(),
            lost_released: Vec::new(),
            lost_subscribes: ids(&self.out, |f| matches!(f, Flow::Sub(_))),
            lost_unsubscribes: ids(&self.out, |f| matches!(f, Flow::Unsub(_))),
        };
        if present {
            self.out.retain(|(_, f)| f.in_window());
            self.backlog = self.out.iter().map(|(id, _)| *id).collect();
        } else {
            acc.lost_publishes = ids(&self.out, |f| matches!(f, Flow::Pub1 | Flow::Pub2));
            acc.lost_released = ids(&self.out, |f| f == Flow::Rel);
            self.out.clear();
            self.srv_out.clear();
        }
        self.expect_accepted = Some(acc);
        self.rm = rm;
        self.fresh = false;
        self.conn = Conn::Up;
        self.srv_aliases.clear();
        self.send(c.into());
    }

    fn server_ack(&mut self, pick: usize, variant: u8) {
        if !self.connected() {
            return;
        }
        if self.out.is_empty() {
            self.feed(&[0xD0, 0x00]);
            return;
        }
        let i = pick % self.out.len();
        let (id, flow) = self.out[i];
        let pid = PacketId::new(id).unwrap();
        let v5 = self.v.is_v5();
        let mut ack = PubAck::new(pid);
        const PUBACK_CODES: [u8; 5] = [0x00, 0x10, 0x80, 0x87, 0x97];
        let code = if v5 && variant % 3 == 0 {
            ReasonCode::from_u8(PUBACK_CODES[usize::from(variant / 3) % PUBACK_CODES.len()])
                .unwrap()
        } else {
            ReasonCode::Success
        };
        match flow {
            Flow::Pub1 => {
                ack.reason_code = code;
                self.finish(i);
                self.expect_published.push(id);
                self.send(Packet::PubAck(ack));
            }
            Flow::Pub2 => {
                ack.reason_code = code;
                if code.is_error() {
                    self.finish(i);
                    self.expect_published.push(id);
                } else {
                    self.out[i].1 = Flow::Rel;
                    self.rel_answers.push(id);
                }
                self.send(Packet::PubRec(ack));
            }
            Flow::Rel => {
                self.finish(i);
                self.expect_published.push(id);
                self.send(Packet::PubComp(ack));
            }
            Flow::Sub(n) => {
                const GRANTS: [u8; 4] = [0x00, 0x01, 0x02, 0x80];
                let codes = (0..n)
                    .map(|k| {
                        ReasonCode::from_u8(GRANTS[(usize::from(variant) + k) % GRANTS.len()])
                            .unwrap()
                    })
                    .collect();
                self.finish(i);
                self.expect_subscribed.push(id);
                self.send(Packet::SubAck(SubAck {
                    packet_id: pid,
                    properties: AckProperties::default(),
                    reason_codes: codes,
                }));
            }
            Flow::Unsub(n) => {
                let codes = if v5 {
                    vec![ReasonCode::Success; n]
                } else {
                    Vec::new()
                };
                self.finish(i);
                self.expect_unsubscribed.push(id);
                self.send(Packet::UnsubAck(UnsubAck {
                    packet_id: pid,
                    properties: AckProperties::default(),
                    reason_codes: codes,
                }));
            }
        }
    }

    fn server_publish(&mut self, qos: u8, topic: usize, len: usize, alias: bool, retain: bool) {
        if !self.connected() {
            return;
        }
        let mut qos = QoS::from_u8(qos).unwrap();
        // A compliant server stays within the client's Receive Maximum ([MQTT-3.3.4-9]).
        if qos != QoS::AtMostOnce && self.srv_out.len() >= usize::from(self.s.client_rm) {
            qos = QoS::AtMostOnce;
        }
        let name = TopicName::new(TOPICS[topic]).unwrap();
        let mut p = Publish::new(name.clone(), vec![0x5A; len]);
        p.qos = qos;
        p.retain = retain;
        if qos != QoS::AtMostOnce {
            let id = loop {
                self.srv_next = self.srv_next.wrapping_add(1).max(1);
                if !self.srv_out.iter().any(|(i, _)| *i == self.srv_next) {
                    break self.srv_next;
                }
            };
            p.packet_id = PacketId::new(id);
            let flow = if qos == QoS::AtLeastOnce {
                SrvFlow::Ack(p.clone())
            } else {
                SrvFlow::Rec(p.clone())
            };
            self.srv_out.push((id, flow));
        }
        self.sent.push(Sent {
            topic: name.clone(),
            payload: p.payload.clone(),
            qos,
            id: p.packet_id,
            must: true,
            forbidden: false,
        });
        let mut wire_p = p;
        if alias && self.s.client_tam > 0 {
            let a = (topic as u16 % self.s.client_tam) + 1;
            wire_p.properties.topic_alias = NonZeroU16::new(a);
            if self.srv_aliases.get(&a) == Some(&name) {
                wire_p.topic = TopicName::empty();
            } else {
                self.srv_aliases.insert(a, name);
            }
        }
        self.send(Packet::Publish(wire_p));
    }

    fn wrong_ack(&mut self, kind: u8, id: u16) {
        if !self.connected() {
            return;
        }
        let id = id.max(1);
        if self.out.iter().any(|(i, _)| *i == id) {
            return;
        }
        let pid = PacketId::new(id).unwrap();
        self.fault_ok = true;
        let packet = match kind {
            0 => Packet::PubAck(PubAck::new(pid)),
            1 => Packet::PubRec(PubAck::new(pid)),
            2 => Packet::PubComp(PubAck::new(pid)),
            3 => Packet::SubAck(SubAck {
                packet_id: pid,
                properties: AckProperties::default(),
                reason_codes: vec![ReasonCode::Success],
            }),
            _ => Packet::UnsubAck(UnsubAck {
                packet_id: pid,
                properties: AckProperties::default(),
                reason_codes: if self.v.is_v5() {
                    vec![ReasonCode::Success]
                } else {
                    Vec::new()
                },
            }),
        };
        self.send(packet);
    }

    /// Drains the client's outputs and checks them against the model.
    fn drain(&mut self) {
        let mut buf = BytesMut::new();
        while let Some(b) = self.client.poll_transmit() {
            assert!(!b.is_empty());
            buf.extend_from_slice(&b);
        }
        let _ = self.client.poll_timeout();
        let decoder = Decoder::new(self.v);
        let mut packets = Vec::new();
        while let Some(p) = decoder
            .decode(&mut buf)
            .unwrap_or_else(|e| panic!("the client sent an invalid packet: {e}"))
        {
            packets.push(p);
        }
        assert!(buf.is_empty(), "the client sent a partial packet");

        let n = packets.len();
        for (i, p) in packets.into_iter().enumerate() {
            self.on_client_packet(p, i + 1 == n);
        }
        assert_eq!(
            self.expect_new_id, None,
            "the command's packet never went out"
        );

        while let Some(e) = self.client.poll_event() {
            self.on_event(e);
        }
        assert!(
            self.expect_published.is_empty(),
            "missing Published {:?}",
            self.expect_published
        );
        assert!(self.expect_subscribed.is_empty(), "missing Subscribed");
        assert!(self.expect_unsubscribed.is_empty(), "missing Unsubscribed");
        assert!(
            self.expect_accepted.is_none(),
            "missing Connected/Reconnected"
        );
        assert!(!self.expect_close, "the connection should have closed");
        if self.is_open() {
            assert!(
                self.rel_answers.is_empty(),
                "PUBREL not sent for {:?}",
                self.rel_answers
            );
        }
        self.rel_answers.clear();
        if !self.backlog.is_empty() && self.connected() {
            assert!(
                self.on_wire.len() >= usize::from(self.rm),
                "resends stalled with the quota free: {:?}",
                self.backlog
            );
        }
        for s in self.sent.drain(..) {
            assert!(!s.must, "a new message was not delivered: {s:?}");
        }
        self.fault_ok = false;
        self.timeout_ok = false;

        let (used, max) = self.client.window();
        assert!(
            used <= usize::from(self.rm),
            "window {used} over {}",
            self.rm
        );
        if self.conn == Conn::Up {
            assert_eq!(max, self.rm);
        }
        assert_eq!(used, self.on_wire.len(), "window vs model {:?}", self.out);
    }

    fn on_client_packet(&mut self, p: Packet, last: bool) {
        assert!(
            !self.closed || matches!(p, Packet::Connect(_)),
            "{p:?} after Disconnected"
        );
        let up = self.conn == Conn::Up;
        if let Some(max) = self.s.server_max_packet.filter(|_| up) {
            let size = tinymqtt::codec::encoded_len(&p, self.v).unwrap();
            assert!(
                size <= max as usize,
                "packet of {size} over the server's {max}"
            );
        }
        match p {
            Packet::Connect(c) => {
                assert_eq!(c.protocol, self.v);
                let want_clean = if self.first_connect {
                    self.config.clean_start
                } else {
                    !self.s.persistent
                };
                assert_eq!(c.clean_start, want_clean, "clean start");
                self.closed = false;
                self.first_connect = false;
                self.conn = Conn::AwaitConnAck {
                    clean: c.clean_start,
                };
                self.cli_aliases.clear();
                self.on_wire.clear();
                self.backlog.clear();
            }
            Packet::Publish(p) => {
                assert!(up, "PUBLISH before CONNACK");
                assert!(p.qos <= self.s.server_max_qos, "[MQTT-3.2.2-11]");
                assert!(!p.retain || self.s.server_retain, "[MQTT-3.2.2-14]");
                assert!(
                    p.properties.subscription_identifiers.is_empty(),
                    "[MQTT-3.3.4-6]"
                );
                match p.properties.topic_alias {
                    Some(a) => {
                        assert!(a.get() <= self.s.server_tam, "[MQTT-3.3.2-9]");
                        if p.topic.is_empty() {
                            assert!(self.cli_aliases.contains_key(&a.get()), "unknown alias");
                        } else {
                            self.cli_aliases.insert(a.get(), p.topic.clone());
                        }
                    }
                    None => assert!(!p.topic.is_empty()),
                }
                match p.packet_id {
                    None => {
                        assert_eq!(p.qos, QoS::AtMostOnce);
                        assert!(!p.dup, "[MQTT-3.3.1-2]");
                    }
                    Some(id) => {
                        let id = id.get();
                        let flow = if p.qos == QoS::AtLeastOnce {
                            Flow::Pub1
                        } else {
                            Flow::Pub2
                        };
                        if p.dup {
                            // [MQTT-4.4.0-1], [MQTT-4.6.0-1]: only a resumed session's
                            // unacknowledged PUBLISH, in the original order.
                            assert_eq!(self.backlog.pop_front(), Some(id), "resend out of order");
                            assert!(self.out.contains(&(id, flow)), "resend of {id} as {flow:?}");
                        } else {
                            self.new_id(id, flow);
                        }
                        self.on_wire.insert(id);
                        assert!(
                            self.on_wire.len() <= usize::from(self.rm),
                            "[MQTT-3.3.4-7] more than Receive Maximum in flight"
                        );
                    }
                }
            }
            Packet::PubRel(r) => {
                assert!(up);
                let id = r.packet_id.get();
                if r.reason_code == ReasonCode::Success {
                    assert!(
                        self.out.contains(&(id, Flow::Rel)),
                        "PUBREL {id} for nothing"
                    );
                    if let Some(k) = self.rel_answers.iter().position(|x| *x == id) {
                        self.rel_answers.remove(k);
                    } else {
                        assert_eq!(self.backlog.pop_front(), Some(id), "PUBREL out of order");
                    }
                } else {
                    assert!(!self.out.iter().any(|(i, _)| *i == id));
                }
            }
            Packet::PubAck(a) => {
                let id = a.packet_id.get();
                let i = self
                    .srv_out
                    .iter()
                    .position(|(i, f)| *i == id && matches!(f, SrvFlow::Ack(_)))
                    .unwrap_or_else(|| panic!("PUBACK {id} for nothing"));
                self.srv_out.remove(i);
            }
            Packet::PubRec(a) => {
                let id = a.packet_id.get();
                let i = self
                    .srv_out
                    .iter()
                    .position(|(i, _)| *i == id)
                    .unwrap_or_else(|| panic!("PUBREC {id} for nothing"));
                match self.srv_out[i].1.clone() {
                    SrvFlow::Rec(p) => self.srv_out[i].1 = SrvFlow::Comp(p),
                    SrvFlow::Comp(_) => {}
                    SrvFlow::Ack(_) => panic!("PUBREC for a QoS 1 message"),
                }
            }
            Packet::PubComp(c) => {
                let id = c.packet_id.get();
                let i = self
                    .srv_out
                    .iter()
                    .position(|(i, f)| *i == id && matches!(f, SrvFlow::Comp(_)));
                match (i, c.reason_code) {
                    (Some(i), ReasonCode::Success) => {
                        self.srv_out.remove(i);
                    }
                    (None, ReasonCode::PacketIdentifierNotFound) => {}
                    (None, ReasonCode::Success) if !self.v.is_v5() => {}
                    other => panic!("PUBCOMP {id}: {other:?}"),
                }
            }
            Packet::Subscribe(s) => {
                assert!(up);
                assert!(!s.filters.is_empty());
                self.new_id(s.packet_id.get(), Flow::Sub(s.filters.len()));
            }
            Packet::Unsubscribe(u) => {
                assert!(up);
                assert!(!u.filters.is_empty());
                self.new_id(u.packet_id.get(), Flow::Unsub(u.filters.len()));
            }
            Packet::PingReq => {
                assert!(up);
                let silent = self.now - self.last_client_packet;
                assert!(
                    silent >= Duration::from_secs(u64::from(self.s.keep_alive)),
                    "PINGREQ after only {silent:?} of silence"
                );
            }
            Packet::Disconnect(_) => {
                assert!(last, "a packet after DISCONNECT ([MQTT-3.14.4-1])");
                self.conn = Conn::Down;
            }
            other => panic!("the client sent {other:?}"),
        }
        self.last_client_packet = self.now;
    }

    /// A new flow on `id`: never an id that is still unacknowledged.
    fn new_id(&mut self, id: u16, flow: Flow) {
        assert!(
            !self.out.iter().any(|(i, _)| *i == id),
            "packet id {id} reused while unacknowledged: {:?}",
            self.out
        );
        if self.expect_new_id == Some(id) {
            self.expect_new_id = None;
        }
        self.out.push((id, flow));
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Connected {
                session_present, ..
            } => {
                let acc = self.expect_accepted.take().expect("unexpected Connected");
                assert!(!acc.reconnected, "Connected where Reconnected was due");
                assert_eq!(session_present, acc.present);
                assert!(acc.lost_publishes.is_empty() && acc.lost_released.is_empty());
            }
            Event::Reconnected {
                session_present,
                lost,
                ..
            } => {
                let acc = self.expect_accepted.take().expect("unexpected Reconnected");
                assert!(acc.reconnected, "Reconnected on a first connection");
                assert_eq!(session_present, acc.present);
                let ids = |v: &[Publish]| -> Vec<u16> {
                    v.iter().map(|p| p.packet_id.unwrap().get()).collect()
                };
                let get = |v: &[PacketId]| -> Vec<u16> { v.iter().map(|i| i.get()).collect() };
                assert_eq!(ids(&lost.publishes), acc.lost_publishes, "lost publishes");
                assert_eq!(get(&lost.released), acc.lost_released, "lost releases");
                assert_eq!(
                    get(&lost.subscribes),
                    acc.lost_subscribes,
                    "lost subscribes"
                );
                assert_eq!(
                    get(&lost.unsubscribes),
                    acc.lost_unsubscribes,
                    "lost unsubscribes"
                );
            }
            Event::Message(m) => {
                let p = &m.publish;
                let i = self
                    .sent
                    .iter()
                    .position(|s| {
                        s.topic == p.topic
                            && s.payload == p.payload
                            && s.qos == p.qos
                            && s.id == p.packet_id
                    })
                    .unwrap_or_else(|| panic!("a message the server did not send: {p:?}"));
                let s = self.sent.remove(i);
                assert!(!s.forbidden, "QoS 2 message delivered twice: {p:?}");
                assert_eq!(
                    m.ack.is_some(),
                    self.s.manual_acks && p.qos != QoS::AtMostOnce
                );
                if let Some(t) = m.ack {
                    self.tokens.push(t);
                }
            }
            Event::Published { packet_id, .. } => {
                let id = packet_id.get();
                let i = self
                    .expect_published
                    .iter()
                    .position(|x| *x == id)
                    .unwrap_or_else(|| panic!("unexpected Published({id})"));
                self.expect_published.remove(i);
            }
            Event::Subscribed {
                packet_id,
                reason_codes,
                ..
            } => {
                let id = packet_id.get();
                let i = self
                    .expect_subscribed
                    .iter()
                    .position(|x| *x == id)
                    .unwrap_or_else(|| panic!("unexpected Subscribed({id})"));
                self.expect_subscribed.remove(i);
                assert!(!reason_codes.is_empty());
            }
            Event::Unsubscribed { packet_id, .. } => {
                let id = packet_id.get();
                let i = self
                    .expect_unsubscribed
                    .iter()
                    .position(|x| *x == id)
                    .unwrap_or_else(|| panic!("unexpected Unsubscribed({id})"));
                self.expect_unsubscribed.remove(i);
            }
            Event::Disconnected { reason, .. } => {
                assert!(!self.closed, "Disconnected reported twice: {reason:?}");
                self.closed = true;
                self.conn = Conn::Down;
                self.expect_close = false;
                if reason.initiator == Initiator::Local {
                    if let Some(err) = &reason.error {
                        let timeout = matches!(
                            err,
                            ConnectionError::KeepAliveTimeout | ConnectionError::ConnAckTimeout
                        );
                        assert!(
                            self.fault_ok || (timeout && self.timeout_ok),
                            "the client closed against a compliant server: {reason:?}"
                        );
                    }
                }
            }
            Event::ReconnectDue => {
                assert_eq!(self.client.state(), ClientState::Reconnecting);
                self.reconnect_due = true;
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        max_shrink_iters: 2_000,        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random interleavings of commands, server packets and timeouts keep every invariant.
    #[test]
    fn client_session_state_machine(setup in setup(), steps in vec(step(), 1..200)) {
        let mut sim = Sim::new(setup);
        for step in &steps {
            sim.run(step);
            sim.drain();
        }
    }
}
