//! Backpressure instead of loss: a client's QoS 1/2 PUBLISH is acknowledged only once the
//! router has routed it, and when it fills an online subscriber's queue its publisher waits
//! for the PUBACK / PUBREC until that queue has room again. Up to twice
//! `max_queued_messages` nothing is dropped; beyond that, and for offline sessions, the
//! queue's overflow policy drops (counted).

use std::num::NonZeroU16;

use crate::sim::raw::Raw;
use crate::sim::{msg, sub};
use tinymqtt::broker::{BrokerConfig, ConnId};
use tinymqtt::codec::{Connect, Packet, PubAck, Subscribe, SubscribeProperties};
use tinymqtt::{ByteStr, ProtocolVersion, QoS};

const V5: ProtocolVersion = ProtocolVersion::V5;

use crate::support::pid;

fn small_queues() -> Raw {
    Raw::new(BrokerConfig::default().with_max_queued_messages(2))
}

/// A subscriber on `q` at QoS 1 that takes one message at a time (receive maximum 1).
fn slow_subscriber(r: &mut Raw, expiry: u32) -> ConnId {
    let mut c = Connect::new(V5, ByteStr::from_static("slow"));
    c.properties.receive_maximum = NonZeroU16::new(1);
    c.properties.session_expiry_interval = Some(expiry);
    let (conn, _) = r.connect_with(c);
    let s = Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        filters: vec![sub("q", QoS::AtLeastOnce)],
    };
    r.send_packet(conn, V5, Packet::Subscribe(s));
    assert!(matches!(r.expect_packet(conn, V5), Packet::SubAck(_)));
    conn
}

fn publish(r: &mut Raw, conn: ConnId, id: u16) {
    let mut p = msg("q", format!("m{id}"), QoS::AtLeastOnce);
    p.packet_id = Some(pid(id));
    r.send_packet(conn, V5, Packet::Publish(p));
}

fn pubacks(r: &mut Raw, conn: ConnId) -> Vec<u16> {
    r.packets(conn, V5)
        .into_iter()
        .map(|p| match p {
            Packet::PubAck(a) => a.packet_id.get(),
            p => panic!("expected PUBACK, got {p:?}"),
        })
        .collect()
}

/// What `sub` was sent, acknowledging each message at once (as a QoS 1 receiver does).
fn take_and_ack(r: &mut Raw, sub: ConnId) -> Vec<String> {
    let mut got = Vec::new();
    for p in r.packets(sub, V5) {
        if let Packet::Publish(p) = p {
            got.push(String::from_utf8_lossy(&p.payload).into_owned());
            r.send_packet(sub, V5, Packet::PubAck(PubAck::new(p.packet_id.unwrap())));
        }
    }
    got
}

#[test]
fn a_full_online_queue_holds_the_publishers_ack_until_it_has_room_and_drops_nothing() {
    let mut r = small_queues();
    let slow = slow_subscriber(&mut r, 0);
    let publisher = r.connect(V5, "pub");
    for id in 1..=4 {
        publish(&mut r, publisher, id);
    }
    // m1 is in flight, m2 and m3 fill the queue: m4 goes over the limit and waits.
    assert_eq!(pubacks(&mut r, publisher), [1, 2, 3]);
    let mut got = Vec::new();
    for _ in 0..2 {
        let one = r.packets(slow, V5);
        assert_eq!(one.len(), 1, "one at a time: {one:?}");
        let Packet::Publish(p) = &one[0] else {
            panic!("{one:?}")
        };
        got.push(String::from_utf8_lossy(&p.payload).into_owned());
        r.send_packet(slow, V5, Packet::PubAck(PubAck::new(p.packet_id.unwrap())));
    }
    assert_eq!(
        pubacks(&mut r, publisher),
        [4],
        "the queue is below its limit again"
    );
    for _ in 0..2 {
        got.extend(take_and_ack(&mut r, slow));
    }
    assert_eq!(got, ["m1", "m2", "m3", "m4"]);
    assert_eq!(r.broker.dropped(&ByteStr::from_static("slow")), Some(0));
}

#[test]
fn beyond_twice_the_limit_an_online_queue_drops_and_counts() {
    let mut r = small_queues();
    let slow = slow_subscriber(&mut r, 0);
    let publisher = r.connect(V5, "pub");
    // m1 in flight; m2..m5 queued (up to 4, twice the limit); m6 and m7 dropped.
    for id in 1..=7 {
        publish(&mut r, publisher, id);
    }
    assert_eq!(r.broker.dropped(&ByteStr::from_static("slow")), Some(2));
    let mut got = Vec::new();
    for _ in 0..8 {
        got.extend(take_and_ack(&mut r, slow));
    }
    assert_eq!(got, ["m1", "m2", "m3", "m4", "m5"]);
    assert_eq!(
        pubacks(&mut r, publisher),
        (1..=7).collect::<Vec<u16>>(),
        "every publish is answered, in order, once the queue drained"
    );
}

#[test]
fn an_offline_session_drops_at_its_limit_and_holds_no_publisher_back() {
    let mut r = small_queues();
    let slow = slow_subscriber(&mut r, 600);
    r.close(slow);
    let publisher = r.connect(V5, "pub");
    for id in 1..=4 {
        publish(&mut r, publisher, id);
    }
    assert_eq!(pubacks(&mut r, publisher), [1, 2, 3, 4]);
    assert_eq!(r.broker.dropped(&ByteStr::from_static("slow")), Some(2));
}

#[test]
fn a_publisher_waiting_for_a_session_that_goes_offline_is_answered() {
    let mut r = small_queues();
    let slow = slow_subscriber(&mut r, 600);
    let publisher = r.connect(V5, "pub");
    for id in 1..=4 {
        publish(&mut r, publisher, id);
    }
    assert_eq!(pubacks(&mut r, publisher), [1, 2, 3]);
    r.close(slow);
    assert_eq!(pubacks(&mut r, publisher), [4]);
}

/// A subscriber that stops reading holds its publishers back for `max_publisher_wait` at
/// most: then the waiting acknowledgements go out.
#[test]
fn a_stuck_subscriber_holds_publishers_back_for_max_publisher_wait_at_most() {
    let mut r = small_queues();
    let _stuck = slow_subscriber(&mut r, 0);
    let publisher = r.connect(V5, "pub");
    for id in 1..=4 {
        publish(&mut r, publisher, id);
    }
    assert_eq!(pubacks(&mut r, publisher), [1, 2, 3]);
    r.advance(std::time::Duration::from_millis(999));
    assert!(pubacks(&mut r, publisher).is_empty());
    r.advance(std::time::Duration::from_millis(1));
    assert_eq!(
        pubacks(&mut r, publisher),
        [4],
        "after max_publisher_wait (1 s)"
    );
}
