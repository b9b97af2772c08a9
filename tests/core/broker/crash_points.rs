//! Exactly once at every crash point, in the core: a publisher sends QoS 1 and QoS 2 messages
//! through a broker with a store to a subscriber of a stored session, and the broker "crashes"
//! at every write boundary of the flow: before each batch of store changes is written (the
//! batch is lost) and after it is written but before its acknowledgements go out. A crash
//! drops the broker and everything not durable; a new broker is restored from what was
//! written, both clients reconnect on their sessions and resend what they must (PUBLISH with
//! DUP, PUBREL), and the flow runs to its end. Every message must then arrive exactly once
//! (QoS 2; at least once for QoS 1), on both legs: publisher to broker (a resent PUBLISH
//! must not be routed twice) and broker to subscriber (a PUBREL must never precede the
//! durable end of the PUBLISH it releases, nor a message come back under a new identifier).
//!
//! The subscriber counts deliveries both ways the spec allows a QoS 2 receiver to: at PUBREL
//! (what paho-mqtt does), and at the first PUBLISH of an identifier it holds no state for,
//! forgetting the identifier at PUBREL (method A of [MQTT-4.3.3]). The publisher can also
//! replay a released PUBLISH instead of its PUBREL after a reconnect, as paho-mqtt for Python
//! does when a reconnect attempt fails first.
//!
//! Deterministic (fake clock, no IO): every crash point of every scenario runs in
//! milliseconds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tinymqtt::broker::{Broker, BrokerConfig, BrokerEvent, ConnId};
use tinymqtt::codec::{
    encode, Connect, Decoder, Packet, PubAck, Publish, Subscribe, SubscribeProperties, Subscription,
};
use tinymqtt::store::{StoreOp, StoreSnapshot};
use tinymqtt::{ByteStr, PacketId, ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName};

const WALL: u64 = 1_800_000_000;

use crate::support::pid;

/// How a client's outbound QoS 1/2 flow stands.
#[derive(Debug, Clone, PartialEq)]
enum Out {
    /// PUBLISH sent, waiting for PUBACK / PUBREC.
    Publish(Publish),
    /// PUBREL sent, waiting for PUBCOMP (the message is kept for a replay).
    Released(Publish),
}

/// A scripted MQTT client that keeps its session across connections.
#[derive(Debug)]
struct Peer {
    id: &'static str,
    v: ProtocolVersion,
    conn: Option<ConnId>,
    rx: BytesMut,
    /// Bytes to hand the broker.
    tx: Vec<Bytes>,
    // Publisher side.
    out: BTreeMap<u16, Out>,
    /// Payloads the broker took over (PUBACK, or PUBREC with success).
    acked: BTreeSet<Bytes>,
    /// After a reconnect, resend the PUBLISH of a released flow instead of its PUBREL.
    replays: bool,
    // Subscriber side.
    /// QoS 2 messages received, waiting for PUBREL (delivered then: paho's way).
    awaiting_rel: BTreeMap<u16, Bytes>,
    /// Deliveries at PUBREL (QoS 2) or PUBLISH (QoS 1).
    delivered: Vec<Bytes>,
    /// Identifiers with a QoS 2 message delivered at PUBLISH, until PUBREL (method A).
    held_ids: BTreeSet<u16>,
    /// Deliveries at the first PUBLISH of an identifier not held (method A).
    delivered_a: Vec<Bytes>,
    /// Every CONNACK's session present flag.
    resumed: Vec<bool>,
}

impl Peer {
    fn new(id: &'static str, v: ProtocolVersion) -> Peer {
        Peer {
            id,
            v,
            conn: None,
            rx: BytesMut::new(),
            tx: Vec::new(),
            out: BTreeMap::new(),
            acked: BTreeSet::new(),
            replays: false,
            awaiting_rel: BTreeMap::new(),
            delivered: Vec::new(),
            held_ids: BTreeSet::new(),
            delivered_a: Vec::new(),
            resumed: Vec::new(),
        }
    }

    fn send(&mut self, p: Packet) {
        let mut buf = BytesMut::new();
        encode(&p, self.v, &mut buf).expect("the test's packet encodes");
        self.tx.push(buf.freeze());
    }

    fn connect_packet(&self, clean_start: bool) -> Packet {
        let mut c = Connect::new(self.v, ByteStr::from_static(self.id));
        // A 3.1.x session outlives its connection only with clean session 0 (and the store
        // is new at the first connection, so there is nothing to resume then).
        c.clean_start = clean_start && self.v.is_v5();
        if self.v.is_v5() {
            c.properties.session_expiry_interval = Some(3600);
        }
        Packet::Connect(Box::new(c))
    }

    /// Reacts to one packet from the broker.
    fn handle(&mut self, p: Packet) {
        match p {
            Packet::ConnAck(a) => {
                assert_eq!(a.reason_code, ReasonCode::Success, "{}: {a:?}", self.id);
                self.resumed.push(a.session_present);
                // [MQTT-4.4.0-1]: resend what is unacknowledged, in order.
                let flows: Vec<(u16, Out)> =
                    self.out.iter().map(|(k, v)| (*k, v.clone())).collect();
                for (id, flow) in flows {
                    match flow {
                        Out::Publish(mut p) => {
                            p.dup = true;
                            self.send(Packet::Publish(p));
                        }
                        Out::Released(p) if self.replays => self.send(Packet::Publish(p)),
                        Out::Released(_) => self.send(Packet::PubRel(PubAck::new(pid(id)))),
                    }
                }
            }
            Packet::Publish(p) => {
                let id = p.packet_id.map(PacketId::get);
                match (p.qos, id) {
                    (QoS::AtLeastOnce, Some(id)) => {
                        self.delivered.push(p.payload.clone());
                        self.send(Packet::PubAck(PubAck::new(pid(id))));
                    }
                    (QoS::ExactlyOnce, Some(id)) => {
                        if self.held_ids.insert(id) {
                            self.delivered_a.push(p.payload.clone());
                        }
                        self.awaiting_rel.insert(id, p.payload.clone());
                        self.send(Packet::PubRec(PubAck::new(pid(id))));
                    }
                    _ => self.delivered.push(p.payload.clone()),
                }
            }
            Packet::PubRel(a) => {
                let id = a.packet_id.get();
                if let Some(m) = self.awaiting_rel.remove(&id) {
                    self.delivered.push(m);
                }
                self.held_ids.remove(&id);
                self.send(Packet::PubComp(PubAck::new(a.packet_id)));
            }
            Packet::PubAck(a) => {
                if let Some(Out::Publish(p)) = self.out.remove(&a.packet_id.get()) {
                    if !a.reason_code.is_error() {
                        self.acked.insert(p.payload);
                    }
                }
            }
            Packet::PubRec(a) => {
                let id = a.packet_id.get();
                let Some(flow) = self.out.get_mut(&id) else {
                    return;
                };
                if let Out::Publish(p) = flow.clone() {
                    assert!(!a.reason_code.is_error(), "{}: {a:?}", self.id);
                    self.acked.insert(p.payload.clone());
                    *flow = Out::Released(p);
                }
                self.send(Packet::PubRel(PubAck::new(a.packet_id)));
            }
            Packet::PubComp(a) => {
                if let Some(Out::Released(_)) = self.out.get(&a.packet_id.get()) {
                    self.out.remove(&a.packet_id.get());
                }
            }
            Packet::SubAck(_) | Packet::PingResp | Packet::Disconnect(_) => {}
            p => panic!("{}: unexpected {p:?}", self.id),
        }
    }
}

/// A broker with a store whose writes the test makes durable one batch at a time, and the
/// two clients.
struct World {
    config: BrokerConfig,
    broker: Broker,
    now: Instant,
    wall: u64,
    /// What is durable.
    durable: StoreSnapshot,
    publisher: Peer,
    subscriber: Peer,
    /// Write boundaries passed since the crash points started counting.
    points: usize,
    /// The points to crash at, and how many crashes happened.
    crash_at: BTreeSet<usize>,
    crashed: usize,
}

impl World {
    fn new(v: ProtocolVersion) -> World {
        let config = BrokerConfig::default();
        let now = crate::sim::t0();
        let mut broker = Broker::new(config.clone());
        broker.restore(now, WALL, StoreSnapshot::default());
        World {
            config,
            broker,
            now,
            wall: WALL,
            durable: StoreSnapshot::default(),
            publisher: Peer::new("pub", v),
            subscriber: Peer::new("sub", v),
            points: 0,
            crash_at: BTreeSet::new(),
            crashed: 0,
        }
    }

    fn peers(&mut self) -> [&mut Peer; 2] {
        [&mut self.publisher, &mut self.subscriber]
    }

    /// Connects both clients (clean start the first time, resuming afterwards).
    fn connect(&mut self, clean_start: bool) {
        let now = self.now;
        for i in 0..2 {
            let conn = self.broker.accept(now);
            let peer = &mut self.peers()[i];
            peer.conn = Some(conn);
            peer.rx.clear();
            let c = peer.connect_packet(clean_start);
            peer.send(c);
        }
    }

    /// Moves bytes between the broker and the clients until neither has anything to say;
    /// whether anything moved.
    fn exchange(&mut self) -> bool {
        let mut moved = false;
        loop {
            let mut any = false;
            let now = self.now;
            while let Some((conn, bytes)) = self.broker.poll_transmit() {
                for peer in self.peers() {
                    if peer.conn == Some(conn) {
                        peer.rx.extend_from_slice(&bytes);
                    }
                }
            }
            while let Some(e) = self.broker.poll_event() {
                if let BrokerEvent::CloseTransport(conn) = e {
                    for peer in self.peers() {
                        assert_ne!(peer.conn, Some(conn), "{}: closed by the broker", peer.id);
                    }
                }
            }
            for i in 0..2 {
                let peer = &mut self.peers()[i];
                let v = peer.v;
                while let Some(p) = Decoder::new(v).decode(&mut peer.rx).expect("valid packet") {
                    peer.handle(p);
                }
                let (Some(conn), tx) = (peer.conn, std::mem::take(&mut peer.tx)) else {
                    continue;
                };
                for bytes in tx {
                    any = true;
                    self.broker.handle_input(now, conn, &bytes);
                }
            }
            if !any {
                return moved;
            }
            moved = true;
        }
    }

    /// One round: the clients and the broker talk until quiet, then what the broker logged
    /// is written as one batch and its tickets handed back. Two crash points: before the
    /// write, and after it before the tickets. Whether anything happened.
    fn round(&mut self) -> bool {
        let moved = self.exchange();
        let mut batch = Vec::new();
        while let Some(op) = self.broker.poll_store() {
            batch.push(op);
        }
        if batch.is_empty() {
            return moved;
        }
        if self.crash_point() {
            return true; // the batch was never written
        }
        for op in &batch {
            self.durable.apply(op.clone());
        }
        if self.crash_point() {
            return true; // written, its acknowledgements never sent
        }
        for op in batch {
            if let StoreOp::Durable(t) = op {
                self.broker.handle_durable(self.now, t);
            }
        }
        true
    }

    /// Passes a write boundary; crashes the broker there if asked to.
    fn crash_point(&mut self) -> bool {
        let here = self.points;
        self.points += 1;
        if !self.crash_at.contains(&here) {
            return false;
        }
        self.crashed += 1;
        self.now += Duration::from_secs(1);
        self.wall += 1;
        self.broker = Broker::new(self.config.clone());
        self.broker
            .restore(self.now, self.wall, self.durable.clone());
        for peer in self.peers() {
            peer.conn = None;
            peer.rx.clear();
            peer.tx.clear();
        }
        self.connect(false);
        true
    }

    /// Runs rounds until nothing moves (bounded).
    fn settle(&mut self) {
        for _ in 0..200 {
            if !self.round() {
                return;
            }
        }
        panic!("the flow did not settle in 200 rounds");
    }

    /// The publisher sends `payload` at `qos` with packet identifier `id`.
    fn publish(&mut self, id: u16, payload: &'static str, qos: QoS) {
        let mut p = Publish::new(TopicName::from_static("t"), payload);
        p.qos = qos;
        p.packet_id = Some(pid(id));
        self.publisher.out.insert(id, Out::Publish(p.clone()));
        self.publisher.send(Packet::Publish(p));
    }
}

/// The messages of a scenario: (packet id, payload, QoS).
type Messages = &'static [(u16, &'static str, QoS)];

/// Runs the scenario once, crashing at each of `crash_at` (write boundaries counted from the
/// first publish), and returns the world at the end.
fn run(v: ProtocolVersion, messages: Messages, replays: bool, crash_at: &[usize]) -> World {
    let mut w = World::new(v);
    w.publisher.replays = replays;
    w.connect(true);
    let sub = Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        filters: vec![Subscription::new(
            TopicFilter::new("t").expect("filter"),
            QoS::ExactlyOnce,
        )],
    };
    w.subscriber.send(Packet::Subscribe(sub));
    w.settle();
    // Crash points count from here.
    w.points = 0;
    w.crash_at = crash_at.iter().copied().collect();
    for &(id, payload, qos) in messages {
        w.publish(id, payload, qos);
    }
    w.settle();
    w
}

/// Checks the end of a run: every flow finished, every message arrived exactly once (QoS 2;
/// at least once for QoS 1), counted both ways.
fn check(w: &World, messages: Messages, label: &str) {
    assert!(
        w.publisher.out.is_empty(),
        "{label}: unfinished {:?}",
        w.publisher.out
    );
    assert!(
        w.subscriber.awaiting_rel.is_empty(),
        "{label}: the subscriber waits for PUBREL of {:?}",
        w.subscriber.awaiting_rel
    );
    assert!(
        // The first CONNACK is a clean start's.
        w.subscriber.resumed.iter().skip(1).all(|r| *r)
            && w.publisher.resumed.iter().skip(1).all(|r| *r),
        "{label}: a session was forgotten"
    );
    for &(_, payload, qos) in messages {
        let count = |d: &[Bytes]| d.iter().filter(|p| p[..] == *payload.as_bytes()).count();
        let at_rel = count(&w.subscriber.delivered);
        assert!(
            w.publisher.acked.contains(payload.as_bytes()),
            "{label}: {payload} never acknowledged"
        );
        if qos == QoS::ExactlyOnce {
            assert_eq!(
                at_rel, 1,
                "{label}: {payload} delivered {at_rel} times at PUBREL"
            );
            let at_publish = count(&w.subscriber.delivered_a);
            assert_eq!(
                at_publish, 1,
                "{label}: {payload} delivered {at_publish} times at PUBLISH (method A)"
            );
        } else {
            assert!(at_rel >= 1, "{label}: {payload} lost");
        }
    }
}

/// Every crash point of the scenario: the number of points comes from a run without crash.
fn every_crash_point(v: ProtocolVersion, messages: Messages, replays: bool) -> usize {
    let clean = run(v, messages, replays, &[]);
    check(&clean, messages, "no crash");
    let points = clean.points;
    assert!(points >= 2, "only {points} write boundaries");
    for at in 0..points {
        let w = run(v, messages, replays, &[at]);
        assert_eq!(w.crashed, 1, "crash point {at} not reached");
        check(
            &w,
            messages,
            &format!("{v:?}, crash at write boundary {at} of {points}"),
        );
    }
    points
}

/// Every pair of crash points: the second crash hits the recovery from the first (a run
/// after a crash has more boundaries: the restore's writes and the resends).
fn every_two_crash_points(v: ProtocolVersion, messages: Messages, replays: bool) {
    let points = every_crash_point(v, messages, replays);
    for first in 0..points {
        let after = run(v, messages, replays, &[first]).points;
        for second in first + 1..after {
            let w = run(v, messages, replays, &[first, second]);
            assert_eq!(
                w.crashed, 2,
                "crash points {first} and {second} not reached"
            );
            let label = format!("{v:?}, crashes at write boundaries {first} and {second}");
            check(&w, messages, &label);
        }
    }
}

const QOS2: Messages = &[(1, "a", QoS::ExactlyOnce)];
const QOS1: Messages = &[(1, "a", QoS::AtLeastOnce)];
const MIXED: Messages = &[
    (1, "a", QoS::ExactlyOnce),
    (2, "b", QoS::AtLeastOnce),
    (3, "c", QoS::ExactlyOnce),
];

#[test]
fn qos2_is_delivered_exactly_once_whatever_write_boundary_the_broker_crashes_at() {
    for v in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        every_crash_point(v, QOS2, false);
        every_crash_point(v, MIXED, false);
    }
}

#[test]
fn qos1_is_never_lost_whatever_write_boundary_the_broker_crashes_at() {
    for v in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        every_crash_point(v, QOS1, false);
    }
}

#[test]
fn a_publisher_replaying_a_released_publish_after_a_crash_is_not_routed_twice() {
    // paho-mqtt's reconnect after a failed attempt: PUBLISH again (no DUP) instead of PUBREL.
    for v in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        every_crash_point(v, QOS2, true);
        every_crash_point(v, MIXED, true);
    }
}

#[test]
fn two_crashes_in_a_row_deliver_exactly_once_too() {
    for v in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        for replays in [false, true] {
            every_two_crash_points(v, QOS2, replays);
            every_two_crash_points(v, MIXED, replays);
        }
    }
}

#[test]
fn a_replayed_publish_with_other_content_is_a_new_message() {
    // The identifier of a released message reused for another message on the next
    // connection: routed (a compliant client may reuse it once PUBCOMP arrived).
    let mut w = run(ProtocolVersion::V5, QOS2, false, &[]);
    w.now += Duration::from_secs(1);
    // Both connections end (no crash) and the clients come back on their sessions.
    let now = w.now;
    for i in 0..2 {
        if let Some(conn) = w.peers()[i].conn.take() {
            w.broker.handle_transport_closed(now, conn);
        }
    }
    w.connect(false);
    w.settle();
    w.publish(1, "other", QoS::ExactlyOnce);
    w.publish(2, "a", QoS::ExactlyOnce);
    w.settle();
    let count = |p: &str| {
        w.subscriber
            .delivered
            .iter()
            .filter(|d| d[..] == *p.as_bytes())
            .count()
    };
    assert_eq!(count("other"), 1);
    // Same content under another identifier: a new message too.
    assert_eq!(count("a"), 2);
}
