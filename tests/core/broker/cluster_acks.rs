//! A publisher's acknowledgement waits for the cluster (`RemoteOutput::Held`,
//! `handle_remote_ack`) as it waits for a full queue or the store: on a fake clock, with
//! the cluster's answer given by hand.

use crate::sim::msg;
use crate::sim::raw::Raw;
use crate::support::pid;
use tinymqtt::broker::cluster::{RemoteOutput, RemoteTicket};
use tinymqtt::broker::{BrokerConfig, ConnId};
use tinymqtt::codec::{Packet, PubRel, Publish};
use tinymqtt::{ProtocolVersion, QoS, ReasonCode};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn node() -> Raw {
    Raw::new(BrokerConfig::default().with_cluster(true))
}

/// A QoS `qos` PUBLISH of `conn` with packet id `id`.
fn publish(r: &mut Raw, conn: ConnId, id: u16, qos: QoS) {
    let mut p: Publish = msg("t/x", format!("m{id}"), qos);
    p.packet_id = (qos != QoS::AtMostOnce).then(|| pid(id));
    r.send_packet(conn, V5, Packet::Publish(p));
}

/// The tickets of the held messages the node handed out, and the payloads of the others.
fn drain(r: &mut Raw) -> (Vec<RemoteTicket>, Vec<String>) {
    let (mut held, mut plain) = (Vec::new(), Vec::new());
    while let Some(o) = r.broker.poll_remote() {
        match o {
            RemoteOutput::Held { message, ticket } => {
                assert_ne!(message.qos, QoS::AtMostOnce);
                assert!(message.packet_id.is_none(), "as routed");
                held.push(ticket);
            }
            RemoteOutput::Publish(p) => plain.push(String::from_utf8_lossy(&p.payload).into()),
            _ => {}
        }
    }
    (held, plain)
}

/// The acknowledgements `conn` was sent, as (kind, packet id).
fn acks(r: &mut Raw, conn: ConnId) -> Vec<(&'static str, u16)> {
    r.packets(conn, V5)
        .into_iter()
        .map(|p| match p {
            Packet::PubAck(a) => ("PUBACK", a.packet_id.get()),
            Packet::PubRec(a) => ("PUBREC", a.packet_id.get()),
            Packet::PubComp(a) => ("PUBCOMP", a.packet_id.get()),
            p => panic!("unexpected {p:?}"),
        })
        .collect()
}

fn ack(r: &mut Raw, ticket: RemoteTicket) {
    let now = r.now();
    r.broker.handle_remote_ack(now, ticket);
    r.pump();
}

#[test]
fn a_qos1_puback_waits_until_the_cluster_holds_the_message() {
    let mut r = node();
    let p = r.connect(V5, "publisher");
    publish(&mut r, p, 1, QoS::AtLeastOnce);
    let (held, plain) = drain(&mut r);
    assert_eq!((held.len(), plain.len()), (1, 0));
    assert!(
        acks(&mut r, p).is_empty(),
        "the PUBACK went before the cluster's word"
    );
    ack(&mut r, held[0]);
    assert_eq!(acks(&mut r, p), [("PUBACK", 1)]);
    ack(&mut r, held[0]);
    assert!(
        acks(&mut r, p).is_empty(),
        "a ticket handed back twice lets nothing go"
    );
}

#[test]
fn a_qos2_pubrec_waits_and_the_flow_then_completes() {
    let mut r = node();
    let p = r.connect(V5, "publisher");
    publish(&mut r, p, 7, QoS::ExactlyOnce);
    let (held, _) = drain(&mut r);
    assert_eq!(held.len(), 1);
    assert!(acks(&mut r, p).is_empty());
    ack(&mut r, held[0]);
    assert_eq!(acks(&mut r, p), [("PUBREC", 7)]);
    r.send_packet(p, V5, Packet::PubRel(PubRel::new(pid(7))));
    assert_eq!(acks(&mut r, p), [("PUBCOMP", 7)]);
    // The retried PUBLISH of a finished flow is a new message, held again.
    publish(&mut r, p, 7, QoS::ExactlyOnce);
    assert_eq!(drain(&mut r).0.len(), 1);
}

#[test]
fn acknowledgements_go_in_order_as_the_cluster_answers() {
    let mut r = node();
    let p = r.connect(V5, "publisher");
    for id in 1..=3 {
        publish(&mut r, p, id, QoS::AtLeastOnce);
    }
    let (held, _) = drain(&mut r);
    assert_eq!(held.len(), 3);
    assert!(
        held.windows(2).all(|w| w[0] < w[1]),
        "tickets count up: {held:?}"
    );
    ack(&mut r, held[0]);
    assert_eq!(acks(&mut r, p), [("PUBACK", 1)]);
    ack(&mut r, held[1]);
    ack(&mut r, held[2]);
    assert_eq!(acks(&mut r, p), [("PUBACK", 2), ("PUBACK", 3)]);
}

#[test]
fn qos0_wills_and_other_nodes_messages_hold_nothing() {
    let mut r = node();
    let p = r.connect(V5, "publisher");
    publish(&mut r, p, 0, QoS::AtMostOnce);
    let (held, plain) = drain(&mut r);
    assert_eq!((held.len(), plain), (0, vec!["m0".to_owned()]));
    // Another node's QoS 1 message is routed here and handed to no one.
    let now = r.now();
    r.broker
        .handle_remote(now, msg("t/x", "remote", QoS::AtLeastOnce));
    r.pump();
    assert_eq!(drain(&mut r), (vec![], vec![]));
}

#[test]
fn without_a_cluster_the_puback_goes_at_once() {
    let mut r = Raw::new(BrokerConfig::default());
    let p = r.connect(V5, "publisher");
    publish(&mut r, p, 1, QoS::AtLeastOnce);
    let got = r.expect_packet(p, V5);
    assert!(
        matches!(&got, Packet::PubAck(a) if a.reason_code == ReasonCode::NoMatchingSubscribers),
        "{got:?}"
    );
}

#[test]
fn a_node_of_a_cluster_never_says_no_matching_subscribers() {
    // Another node may have them.
    let mut r = node();
    let p = r.connect(V5, "publisher");
    publish(&mut r, p, 1, QoS::AtLeastOnce);
    let (held, _) = drain(&mut r);
    ack(&mut r, held[0]);
    let got = r.expect_packet(p, V5);
    assert!(
        matches!(&got, Packet::PubAck(a) if a.reason_code == ReasonCode::Success),
        "{got:?}"
    );
}
