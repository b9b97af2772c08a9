//! Acknowledging only what is durable, in the core: with a store, a connection holds each
//! PUBACK, PUBREC, PUBREL and PUBCOMP until the router's ticket for it comes back through
//! `Broker::handle_durable`, and what those packets promise (the message owed to a stored
//! session, QoS 2 state in both directions, a will with a delay) is in the store by then. A
//! "crash" here is a new broker restored from what the first one's log wrote, with the fake
//! clock moved on.

use std::time::Duration;

use crate::sim::raw::Raw;
use crate::sim::{msg, secs, sub, topic};
use tinymqtt::broker::{Broker, BrokerConfig, ConnId};
use tinymqtt::codec::{
    Connect, Packet, PubAck, Publish, Subscribe, SubscribeProperties, Subscription, Will,
};
use tinymqtt::store::{PacketIdRecord, StoreOp, StoreSnapshot, Ticket};
use tinymqtt::{ByteStr, PacketId, ProtocolVersion, QoS, ReasonCode};

const V5: ProtocolVersion = ProtocolVersion::V5;
const WALL: u64 = 1_800_000_000;

use crate::support::pid;

/// A broker restored from `store` at wall-clock `wall`.
fn stored(config: BrokerConfig, wall: u64, store: StoreSnapshot) -> Raw {
    let mut r = Raw::with_broker(Broker::new(config));
    let now = r.now();
    r.broker.restore(now, wall, store);
    r
}

/// Writes what the broker logged into `store` (the ops are returned) and keeps its tickets
/// back: nothing held is released.
fn write(r: &mut Raw, store: &mut StoreSnapshot) -> (Vec<StoreOp>, Vec<Ticket>) {
    let mut ops = Vec::new();
    let mut tickets = Vec::new();
    while let Some(op) = r.broker.poll_store() {
        if let StoreOp::Durable(t) = &op {
            tickets.push(*t);
        }
        store.apply(op.clone());
        ops.push(op);
    }
    (ops, tickets)
}

/// Hands tickets back, as a runtime does once their batch is durable.
fn durable(r: &mut Raw, tickets: Vec<Ticket>) {
    let now = r.now();
    for t in tickets {
        r.broker.handle_durable(now, t);
    }
    r.pump();
}

/// Writes everything logged so far and hands its tickets back.
fn commit(r: &mut Raw, store: &mut StoreSnapshot) -> Vec<StoreOp> {
    let (ops, tickets) = write(r, store);
    durable(r, tickets);
    ops
}

fn persistent(id: &'static str, clean_start: bool) -> Connect {
    let mut c = Connect::new(V5, ByteStr::from_static(id));
    c.properties.session_expiry_interval = Some(3600);
    c.clean_start = clean_start;
    c
}

fn subscribe(r: &mut Raw, conn: ConnId, f: &'static str, qos: QoS, store: &mut StoreSnapshot) {
    let s = Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        filters: vec![Subscription::new(crate::sim::filter(f), qos)],
    };
    r.send_packet(conn, V5, Packet::Subscribe(s));
    assert!(matches!(r.expect_packet(conn, V5), Packet::SubAck(_)));
    commit(r, store);
}

/// A broker with `config` and a store, and a stored session "sub" subscribed to `q` at
/// `qos`.
fn with_subscriber(config: BrokerConfig, qos: QoS) -> (Raw, StoreSnapshot, ConnId) {
    let mut store = StoreSnapshot::default();
    let mut r = stored(config, WALL, StoreSnapshot::default());
    let (subr, _) = r.connect_with(persistent("sub", true));
    subscribe(&mut r, subr, "q", qos, &mut store);
    (r, store, subr)
}

fn publish(qos: QoS, id: u16, payload: &'static str) -> Packet {
    let mut p = msg("q", payload, qos);
    p.packet_id = Some(pid(id));
    Packet::Publish(p)
}

fn ack_of(p: Packet) -> (&'static str, PubAck) {
    match p {
        Packet::PubAck(a) => ("PUBACK", a),
        Packet::PubRec(a) => ("PUBREC", a),
        Packet::PubComp(a) => ("PUBCOMP", a),
        p => panic!("expected an acknowledgement, got {p:?}"),
    }
}

fn expect_publish(r: &mut Raw, conn: ConnId) -> Publish {
    match r.expect_packet(conn, V5) {
        Packet::Publish(p) => p,
        p => panic!("expected PUBLISH, got {p:?}"),
    }
}

#[test]
fn a_puback_waits_for_its_ticket_and_acks_go_out_in_order() {
    let (mut r, mut store, subr) = with_subscriber(BrokerConfig::default(), QoS::AtLeastOnce);
    let pubr = r.connect(V5, "pub");
    r.send_packet(pubr, V5, publish(QoS::AtLeastOnce, 1, "a"));
    r.send_packet(pubr, V5, publish(QoS::AtLeastOnce, 2, "b"));
    r.expect_silence(pubr);
    let (ops, tickets) = write(&mut r, &mut store);
    let enqueued: Vec<_> = ops
        .iter()
        .filter_map(|op| match op {
            StoreOp::Enqueue(q) => Some(q.publish.payload.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(enqueued, ["a", "b"], "owed to a stored session: {ops:?}");
    assert_eq!(tickets.len(), 2);
    assert!(
        matches!(ops.last(), Some(StoreOp::Durable(_))),
        "the ticket follows the ops it covers: {ops:?}"
    );
    // The subscriber gets the messages at once; the publisher's acks wait for the disk.
    assert_eq!(expect_publish(&mut r, subr).payload, "a");
    durable(&mut r, tickets[..1].to_vec());
    assert_eq!(r.packets(pubr, V5), [Packet::PubAck(PubAck::new(pid(1)))]);
    durable(&mut r, tickets[1..].to_vec());
    assert_eq!(r.packets(pubr, V5), [Packet::PubAck(PubAck::new(pid(2)))]);
}

#[test]
fn durable_acks_off_acknowledges_at_once_with_no_tickets() {
    let config = BrokerConfig::default().with_durable_acks(false);
    let (mut r, mut store, _subr) = with_subscriber(config, QoS::AtLeastOnce);
    let pubr = r.connect(V5, "pub");
    r.send_packet(pubr, V5, publish(QoS::AtLeastOnce, 1, "a"));
    assert_eq!(r.packets(pubr, V5), [Packet::PubAck(PubAck::new(pid(1)))]);
    let (ops, tickets) = write(&mut r, &mut store);
    assert!(tickets.is_empty(), "{ops:?}");
    assert!(ops.iter().any(|op| matches!(op, StoreOp::Enqueue(_))));
}

#[test]
fn durable_acks_off_a_released_qos2_flow_does_not_let_a_waiting_puback_go() {
    // A stored publisher whose QoS 1 PUBACK waits for a full subscriber's queue: its PUBREL
    // for an earlier QoS 2 message is answered at once, and lets nothing else go early.
    let config = BrokerConfig::default()
        .with_durable_acks(false)
        .with_max_queued_messages(1)
        .with_max_publisher_wait(Duration::from_secs(10));
    let mut r = stored(config, WALL, StoreSnapshot::default());
    let mut store = StoreSnapshot::default();
    let mut c = persistent("slow", true);
    c.properties.receive_maximum = std::num::NonZeroU16::new(1);
    let (slow, _) = r.connect_with(c);
    subscribe(&mut r, slow, "q", QoS::AtLeastOnce, &mut store);
    let (pubr, _) = r.connect_with(persistent("pub", true));
    let mut q2 = msg("nobody", "2", QoS::ExactlyOnce);
    q2.packet_id = Some(pid(10));
    r.send_packet(pubr, V5, Packet::Publish(q2));
    let (kind, rec) = ack_of(r.expect_packet(pubr, V5));
    assert_eq!((kind, rec.packet_id), ("PUBREC", pid(10)));
    // One in flight, one prefetched, one queued: the fourth fills the queue past its limit.
    for id in 1..=4 {
        r.send_packet(pubr, V5, publish(QoS::AtLeastOnce, id, "x"));
    }
    let acked: Vec<PacketId> = r
        .packets(pubr, V5)
        .into_iter()
        .map(|p| ack_of(p).1.packet_id)
        .collect();
    assert_eq!(acked, [pid(1), pid(2), pid(3)], "the fourth waits");
    r.send_packet(pubr, V5, Packet::PubRel(PubAck::new(pid(10))));
    let acks: Vec<(&str, PacketId)> = r
        .packets(pubr, V5)
        .into_iter()
        .map(|p| {
            let (kind, a) = ack_of(p);
            (kind, a.packet_id)
        })
        .collect();
    assert_eq!(acks, [("PUBCOMP", pid(10))], "only the PUBCOMP");
    // The wait ends: the PUBACK goes.
    r.advance(Duration::from_secs(10));
    let (kind, ack) = ack_of(r.expect_packet(pubr, V5));
    assert_eq!((kind, ack.packet_id), ("PUBACK", pid(4)));
}

/// [MQTT-3.3.4-9]: held PUBACKs count against the receive maximum the broker announced.
#[test]
fn mqtt_3_3_4_9_v5_held_pubacks_count_against_the_receive_maximum() {
    let config = BrokerConfig::default().with_receive_maximum(2);
    let mut r = stored(config, WALL, StoreSnapshot::default());
    let pubr = r.connect(V5, "pub");
    r.send_packet(pubr, V5, publish(QoS::AtLeastOnce, 1, "a"));
    r.send_packet(pubr, V5, publish(QoS::ExactlyOnce, 2, "b"));
    r.expect_open(pubr);
    r.send_packet(pubr, V5, publish(QoS::AtLeastOnce, 3, "c"));
    r.expect_disconnect(pubr, ReasonCode::ReceiveMaximumExceeded);
}

/// Exactly once across a crash, inbound: the packet id answered with PUBREC is stored with
/// the message, so the publisher's resend after the restart is answered and not routed
/// again, and its PUBREL completes the flow.
#[test]
fn inbound_qos2_state_survives_a_restart_so_a_resend_is_not_routed_twice() {
    let (mut a, mut store, _subr) = with_subscriber(BrokerConfig::default(), QoS::ExactlyOnce);
    let (pubr, _) = a.connect_with(persistent("pub", true));
    a.send_packet(pubr, V5, publish(QoS::ExactlyOnce, 7, "once"));
    a.expect_silence(pubr);
    let ops = commit(&mut a, &mut store);
    let flow = PacketIdRecord {
        client_id: ByteStr::from_static("pub"),
        packet_id: pid(7),
    };
    assert!(ops.contains(&StoreOp::PutIncoming(flow.clone())), "{ops:?}");
    assert_eq!(a.packets(pubr, V5), [Packet::PubRec(PubAck::new(pid(7)))]);

    // Crash. The publisher resends (DUP) on its resumed session; the subscriber resumes too.
    let mut b = stored(BrokerConfig::default(), WALL + 5, store.clone());
    let (pubr, ack) = b.connect_with(persistent("pub", false));
    assert!(ack.session_present);
    let mut dup = publish(QoS::ExactlyOnce, 7, "once");
    if let Packet::Publish(p) = &mut dup {
        p.dup = true;
    }
    b.send_packet(pubr, V5, dup);
    commit(&mut b, &mut store);
    assert_eq!(b.packets(pubr, V5), [Packet::PubRec(PubAck::new(pid(7)))]);
    b.send_packet(pubr, V5, Packet::PubRel(PubAck::new(pid(7))));
    b.expect_silence(pubr);
    let ops = commit(&mut b, &mut store);
    assert!(ops.contains(&StoreOp::DeleteIncoming(flow)), "{ops:?}");
    assert_eq!(
        b.packets(pubr, V5),
        [Packet::PubComp(PubAck::new(pid(7)))],
        "the flow was known: success, not 0x92"
    );
    let (subr, _) = b.connect_with(persistent("sub", false));
    commit(&mut b, &mut store); // a stored QoS 2 delivery waits for its record to be durable
    let got: Vec<_> = b
        .packets(subr, V5)
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.payload),
            _ => None,
        })
        .collect();
    assert_eq!(got, ["once"], "delivered once, from the store");
    assert!(store.incoming.is_empty());
}

/// Exactly once across a crash, outbound: once the subscriber's PUBREC is answered, the store
/// holds the released flow instead of the message, so after the restart the broker resends
/// PUBREL, not the PUBLISH. The PUBLISH waits for its record to be durable (so the receiver
/// never sees a packet id the store could forget), and the PUBREL for the released flow.
#[test]
fn outbound_qos2_after_pubrec_resends_pubrel_not_the_publish_after_a_restart() {
    let (mut a, mut store, subr) = with_subscriber(BrokerConfig::default(), QoS::ExactlyOnce);
    let pubr = a.connect(V5, "pub");
    a.send_packet(pubr, V5, publish(QoS::ExactlyOnce, 1, "m"));
    let (_, tickets) = write(&mut a, &mut store);
    a.expect_silence(subr); // not before its record is durable
    durable(&mut a, tickets);
    let p = expect_publish(&mut a, subr);
    let id = p.packet_id.expect("qos 2");
    let stored_id = store.queued.iter().map(|q| q.packet_id).collect::<Vec<_>>();
    assert_eq!(stored_id, [Some(id)], "stored with the id it went out with");
    a.send_packet(subr, V5, Packet::PubRec(PubAck::new(id)));
    a.expect_silence(subr);
    let ops = commit(&mut a, &mut store);
    let flow = PacketIdRecord {
        client_id: ByteStr::from_static("sub"),
        packet_id: id,
    };
    assert!(ops.contains(&StoreOp::PutReleased(flow.clone())), "{ops:?}");
    assert!(
        store.queued.is_empty(),
        "the message left the store: {ops:?}"
    );
    assert_eq!(a.packets(subr, V5), [Packet::PubRel(PubAck::new(id))]);

    // Crash before PUBCOMP.
    let mut b = stored(BrokerConfig::default(), WALL + 5, store.clone());
    let (subr, ack) = b.connect_with(persistent("sub", false));
    assert!(ack.session_present);
    assert_eq!(b.packets(subr, V5), [Packet::PubRel(PubAck::new(id))]);
    b.send_packet(subr, V5, Packet::PubComp(PubAck::new(id)));
    let ops = commit(&mut b, &mut store);
    assert!(ops.contains(&StoreOp::DeleteReleased(flow)), "{ops:?}");
    assert!(store.released.is_empty());
    b.expect_open(subr);
}

/// A QoS 1 message in flight at the crash comes back with the packet id it had.
#[test]
fn a_qos1_message_in_flight_at_the_crash_is_resent_after_the_restart() {
    let (mut a, mut store, subr) = with_subscriber(BrokerConfig::default(), QoS::AtLeastOnce);
    let pubr = a.connect(V5, "pub");
    a.send_packet(pubr, V5, publish(QoS::AtLeastOnce, 1, "m"));
    commit(&mut a, &mut store);
    assert_eq!(a.packets(pubr, V5), [Packet::PubAck(PubAck::new(pid(1)))]);
    let first = expect_publish(&mut a, subr);

    let mut b = stored(BrokerConfig::default(), WALL + 5, store.clone());
    let (subr, _) = b.connect_with(persistent("sub", false));
    let again = expect_publish(&mut b, subr);
    assert_eq!(
        (again.payload, again.packet_id),
        (first.payload, first.packet_id)
    );
    b.send_packet(
        subr,
        V5,
        Packet::PubAck(PubAck::new(first.packet_id.unwrap())),
    );
    commit(&mut b, &mut store);
    assert!(store.queued.is_empty(), "acknowledged: gone from the store");
}

fn with_will(id: &'static str, delay: u32) -> Connect {
    let mut c = persistent(id, true);
    let mut w = Will {
        topic: topic("will/x"),
        payload: bytes::Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    };
    w.properties.will_delay_interval = Some(delay);
    c.will = Some(w);
    c
}

fn watcher(r: &mut Raw, store: &mut StoreSnapshot) -> ConnId {
    let w = r.connect(V5, "watcher");
    let s = Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        filters: vec![sub("will/#", QoS::AtLeastOnce)],
    };
    r.send_packet(w, V5, Packet::Subscribe(s));
    assert!(matches!(r.expect_packet(w, V5), Packet::SubAck(_)));
    commit(r, store);
    w
}

/// [MQTT-3.1.3-9] across a restart: a will waiting for its delay is stored with its session
/// and goes out when the delay ends, counted from when the connection ended; a restart ends
/// the connections that were still open, so their delay counts from the restart.
#[test]
fn mqtt_3_1_3_9_a_delayed_will_survives_a_restart() {
    for online_at_crash in [false, true] {
        let mut store = StoreSnapshot::default();
        let mut a = stored(BrokerConfig::default(), WALL, StoreSnapshot::default());
        let (c, _) = a.connect_with(with_will("dying", 30));
        commit(&mut a, &mut store);
        if !online_at_crash {
            a.close(c); // abnormal: the will waits for its delay
            commit(&mut a, &mut store);
        }
        assert!(
            store.sessions.iter().any(|s| s.will.is_some()),
            "{:?}",
            store.sessions
        );

        let mut b = stored(BrokerConfig::default(), WALL + 10, store.clone());
        let w = watcher(&mut b, &mut store);
        let left = if online_at_crash { 30 } else { 20 };
        b.advance(secs(left) - Duration::from_millis(1));
        b.expect_silence(w);
        b.advance(Duration::from_millis(2));
        assert_eq!(
            expect_publish(&mut b, w).payload,
            "gone",
            "online: {online_at_crash}"
        );
        commit(&mut b, &mut store);
        assert!(
            store.sessions.iter().all(|s| s.will.is_none()),
            "published: the store forgets it"
        );
    }
}

/// A normal DISCONNECT discards the will ([MQTT-3.14.4-3]), in the store too.
#[test]
fn mqtt_3_14_4_3_a_discarded_will_leaves_the_store() {
    let mut store = StoreSnapshot::default();
    let mut a = stored(BrokerConfig::default(), WALL, StoreSnapshot::default());
    let (c, _) = a.connect_with(with_will("leaving", 30));
    commit(&mut a, &mut store);
    a.send_packet(
        c,
        V5,
        Packet::Disconnect(tinymqtt::codec::Disconnect::default()),
    );
    commit(&mut a, &mut store);
    let mut b = stored(BrokerConfig::default(), WALL + 1, store.clone());
    let w = watcher(&mut b, &mut store);
    b.advance(secs(40));
    b.expect_silence(w);
    assert!(store.sessions.iter().all(|s| s.will.is_none()));
}

/// A delivery behind a stored QoS 2 one that waits for its record waits too: the connection
/// gets them in the order they were routed.
#[test]
fn deliveries_behind_a_waiting_qos2_one_keep_their_order() {
    let (mut r, mut store, subr) = with_subscriber(BrokerConfig::default(), QoS::ExactlyOnce);
    let pubr = r.connect(V5, "pub");
    r.send_packet(pubr, V5, publish(QoS::ExactlyOnce, 1, "first"));
    r.send_packet(pubr, V5, publish(QoS::AtLeastOnce, 2, "second"));
    let mut zero = msg("q", "third", QoS::AtMostOnce);
    zero.packet_id = None;
    r.send_packet(pubr, V5, Packet::Publish(zero));
    r.expect_silence(subr);
    commit(&mut r, &mut store);
    let got: Vec<_> = r
        .packets(subr, V5)
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.payload),
            _ => None,
        })
        .collect();
    assert_eq!(got, ["first", "second", "third"]);
}

/// A QoS 0 delivery parked behind a stored QoS 2 one (until its record is durable) whose
/// connection closes first goes back to the session like any queued QoS 0 message: only with
/// `queue_qos0_offline`, and counted as one, so its later delivery leaves the counts whole.
#[test]
fn a_parked_qos0_delivery_returned_after_the_close_follows_queue_qos0_offline() {
    for queue_qos0 in [false, true] {
        let config = BrokerConfig::default().with_queue_qos0_offline(queue_qos0);
        let (mut r, mut store, subr) = with_subscriber(config, QoS::ExactlyOnce);
        let pubr = r.connect(V5, "pub");
        r.send_packet(pubr, V5, publish(QoS::ExactlyOnce, 1, "two"));
        r.send_packet(pubr, V5, Packet::Publish(msg("q", "zero", QoS::AtMostOnce)));
        // Both wait for the QoS 2 record's ticket; the subscriber leaves first.
        r.expect_silence(subr);
        r.close(subr);
        commit(&mut r, &mut store);
        let (subr, _) = r.connect_with(persistent("sub", false));
        commit(&mut r, &mut store);
        let mut got = Vec::new();
        while let Some(p) = r.try_packet(subr, V5) {
            if let Packet::Publish(p) = p {
                got.push((p.qos, p.payload));
            }
        }
        let mut expected = vec![(QoS::ExactlyOnce, bytes::Bytes::from_static(b"two"))];
        if queue_qos0 {
            expected.push((QoS::AtMostOnce, bytes::Bytes::from_static(b"zero")));
        }
        assert_eq!(got, expected, "queue_qos0_offline = {queue_qos0}");
    }
}

#[test]
fn a_retained_replay_cut_by_a_disconnect_is_stored_with_the_session() {
    // 300 retained QoS 1 messages replayed a piece at a time: the subscriber's connection
    // drops right after its SUBACK, the rest of the replay joins its stored queue, and after
    // a crash the resumed session gets every one.
    let mut store = StoreSnapshot::default();
    let mut a = stored(BrokerConfig::default(), WALL, StoreSnapshot::default());
    let p = a.connect(V5, "retainer");
    for i in 0..300u16 {
        let mut m = msg("r", "x", QoS::AtLeastOnce);
        m.topic = tinymqtt::TopicName::new(&format!("r/{i}")).unwrap();
        m.retain = true;
        m.packet_id = Some(pid(i + 1));
        a.send_packet(p, V5, Packet::Publish(m));
        if i % 50 == 49 {
            // Within the receive maximum: the PUBACKs come once the store has the messages.
            commit(&mut a, &mut store);
        }
    }
    assert_eq!(a.broker.stats().retained, 300);
    let (s, _) = a.connect_with(persistent("sub", true));
    subscribe(&mut a, s, "r/#", QoS::AtLeastOnce, &mut store);
    a.close(s);
    commit(&mut a, &mut store);
    let mut b = stored(BrokerConfig::default(), WALL + 1, store);
    let (s, ack) = b.connect_with(persistent("sub", false));
    assert!(ack.session_present);
    let mut topics = std::collections::BTreeSet::new();
    for _ in 0..100 {
        b.advance(Duration::from_millis(1));
        let got = b.packets(s, V5);
        if got.is_empty() {
            break;
        }
        for m in got {
            let Packet::Publish(m) = m else {
                panic!("expected PUBLISH, got {m:?}");
            };
            topics.insert(m.topic.as_str().to_owned());
            b.send_packet(s, V5, Packet::PubAck(PubAck::new(m.packet_id.unwrap())));
        }
    }
    assert_eq!(
        topics.len(),
        300,
        "every retained message, after the restart"
    );
}
