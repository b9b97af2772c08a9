//! QoS 2 exactly once across the cluster's durable deliveries: a message of another node
//! delivered again at the same position (`handle_remote_durable`) is routed once, before
//! and after a restart from the store's records, on a fake clock.

use crate::sim::raw::Raw;
use crate::sim::{msg, sub};
use crate::support::{pid, s};
use tinymqtt::broker::persist::{RemotePosition, StoreOp, StoreSnapshot};
use tinymqtt::broker::{BrokerConfig, ConnId};
use tinymqtt::codec::{Connect, Packet, PubRec, PubRel, Subscribe, SubscribeProperties};
use tinymqtt::{ProtocolVersion, QoS, ReasonCode};

const V5: ProtocolVersion = ProtocolVersion::V5;
const WALL: u64 = 1_800_000_000;

/// Sequence `sequence` of the cluster's log, stamped 1.
fn at(sequence: u64) -> RemotePosition {
    RemotePosition { sequence, stamp: 1 }
}

/// A node with a store (played by hand: acknowledgements do not wait for it).
fn node() -> Raw {
    Raw::new(
        BrokerConfig::default()
            .with_cluster(true)
            .with_durable_acks(false),
    )
}

/// Applies what `r` logged to `disk`, and returns it.
fn drain(r: &mut Raw, disk: &mut StoreSnapshot) -> Vec<StoreOp> {
    let ops: Vec<StoreOp> = std::iter::from_fn(|| r.broker.poll_store()).collect();
    for op in &ops {
        disk.apply(op.clone());
    }
    ops
}

/// A persistent MQTT 5 session subscribed to `q/#` at QoS 2.
fn subscriber(r: &mut Raw) -> ConnId {
    let mut c = Connect::new(V5, s("once"));
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(3600);
    let (conn, _) = r.connect_with(c);
    let sub = Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        filters: vec![sub("q/#", QoS::ExactlyOnce)],
    };
    r.send_packet(conn, V5, Packet::Subscribe(sub));
    assert!(matches!(r.expect_packet(conn, V5), Packet::SubAck(_)));
    conn
}

/// The payloads of the QoS 2 PUBLISHes `conn` received, each completed.
fn received(r: &mut Raw, conn: ConnId) -> Vec<String> {
    let mut got = Vec::new();
    for p in r.packets(conn, V5) {
        match p {
            Packet::Publish(p) => {
                assert_eq!(p.qos, QoS::ExactlyOnce);
                let id = p.packet_id.expect("a QoS 2 packet id");
                r.send_packet(conn, V5, Packet::PubRec(PubRec::new(id)));
                got.push(String::from_utf8_lossy(&p.payload).into_owned());
            }
            Packet::PubRel(rel) => {
                assert_eq!(rel.reason_code, ReasonCode::Success);
            }
            p => panic!("expected PUBLISH, got {p:?}"),
        }
    }
    // The PUBRELs the PUBRECs asked for.
    for p in r.packets(conn, V5) {
        if let Packet::PubRel(PubRel { packet_id, .. }) = p {
            r.send_packet(
                conn,
                V5,
                Packet::PubComp(tinymqtt::codec::PubComp::new(packet_id)),
            );
        }
    }
    got
}

fn remote(r: &mut Raw, payload: &'static str, position: u64) -> bool {
    let now = r.now();
    let routed =
        r.broker
            .handle_remote_durable(now, msg("q/x", payload, QoS::ExactlyOnce), at(position));
    r.pump();
    routed
}

#[test]
fn a_durable_delivery_again_at_the_same_position_is_routed_once() {
    let mut r = node();
    let conn = subscriber(&mut r);
    assert!(remote(&mut r, "m1", 7));
    assert!(!remote(&mut r, "m1", 7), "the same position routed twice");
    assert!(remote(&mut r, "m2", 8));
    // A log made anew reuses sequence 7 for another message (another stamp): routed.
    let now = r.now();
    let anew = RemotePosition {
        sequence: 7,
        stamp: 2,
    };
    assert!(r
        .broker
        .handle_remote_durable(now, msg("q/x", "m3", QoS::ExactlyOnce), anew));
    r.pump();
    assert_eq!(received(&mut r, conn), ["m1", "m2", "m3"]);
}

#[test]
fn a_position_routed_before_a_crash_is_not_routed_again_after_the_restart() {
    let mut r = node();
    let mut disk = StoreSnapshot::default();
    let now = r.now();
    r.broker.restore(now, WALL, StoreSnapshot::default());
    let conn = subscriber(&mut r);
    r.close(conn);
    drain(&mut r, &mut disk);
    // Routed to the offline session: the queued message and the position go in one batch.
    assert!(remote(&mut r, "m1", 41));
    let ops = drain(&mut r, &mut disk);
    assert!(ops.contains(&StoreOp::PutRemoteRouted(at(41))), "{ops:?}");
    assert!(
        ops.iter().any(|o| matches!(o, StoreOp::Enqueue(_))),
        "{ops:?}"
    );
    assert_eq!(
        (disk.queued.len(), disk.remote_routed.as_slice()),
        (1, &[at(41)][..])
    );

    // The node dies before the cluster heard of it: the log delivers position 41 again.
    let mut r = node();
    let now = r.now();
    r.broker.restore(now, WALL + 5, disk.clone());
    assert!(!remote(&mut r, "m1", 41), "routed again after the restart");
    assert!(remote(&mut r, "m2", 42));
    drain(&mut r, &mut disk);
    assert_eq!(disk.queued.len(), 2);
    let mut c = Connect::new(V5, s("once"));
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(3600);
    let (conn, ack) = r.connect_with(c);
    assert!(ack.session_present);
    assert_eq!(received(&mut r, conn), ["m1", "m2"]);
}

#[test]
fn routed_positions_are_capped_lowest_first_in_memory_and_in_the_store() {
    const CAP: u64 = 65_536;
    let mut r = node();
    let now = r.now();
    r.broker.restore(now, WALL, StoreSnapshot::default());
    let mut stored = std::collections::BTreeSet::new();
    for position in 0..=CAP {
        let now = r.now();
        let m = msg("nobody/x", "m", QoS::ExactlyOnce);
        assert!(r.broker.handle_remote_durable(now, m, at(position)));
        while let Some(op) = r.broker.poll_store() {
            match op {
                StoreOp::PutRemoteRouted(p) => assert!(stored.insert(p.sequence)),
                StoreOp::DeleteRemoteRouted(p) => assert!(stored.remove(&p.sequence)),
                _ => {}
            }
        }
    }
    assert_eq!(stored.len() as u64, CAP);
    assert_eq!(stored.first(), Some(&1), "the lowest goes first");
    // The kept ones are not routed again.
    let now = r.now();
    let m = msg("nobody/x", "m", QoS::ExactlyOnce);
    assert!(!r.broker.handle_remote_durable(now, m, at(CAP)));

    // A store holding more than the cap is cut to it, lowest first, on restore.
    let disk = StoreSnapshot {
        remote_routed: (0..CAP + 2).rev().map(at).collect(),
        ..StoreSnapshot::default()
    };
    let mut r = node();
    let now = r.now();
    r.broker.restore(now, WALL, disk);
    let ops: Vec<StoreOp> = std::iter::from_fn(|| r.broker.poll_store()).collect();
    assert_eq!(
        ops,
        [
            StoreOp::DeleteRemoteRouted(at(0)),
            StoreOp::DeleteRemoteRouted(at(1))
        ]
    );
    let now = r.now();
    let m = msg("nobody/x", "m", QoS::ExactlyOnce);
    assert!(!r.broker.handle_remote_durable(now, m.clone(), at(2)));
    assert!(r.broker.handle_remote_durable(now, m, at(1)));
}
