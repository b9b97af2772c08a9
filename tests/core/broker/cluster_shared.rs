//! Shared subscriptions in a cluster, on a fake clock: a node routes none of its own
//! messages to its shared groups (the cluster picks one node per group, this one
//! included), and a message the cluster sent for one group goes to one member of that
//! group and nowhere else.

use crate::sim::raw::Raw;
use crate::sim::{msg, sub};
use crate::support::{filter, pid};
use tinymqtt::broker::cluster::RemoteOutput;
use tinymqtt::broker::{BrokerConfig, ConnId};
use tinymqtt::codec::{Packet, PubAck, Publish, Subscribe, SubscribeProperties};
use tinymqtt::{ProtocolVersion, QoS, TopicName};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn subscribe(r: &mut Raw, conn: ConnId, f: &'static str) {
    let s = Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        filters: vec![sub(f, QoS::AtLeastOnce)],
    };
    r.send_packet(conn, V5, Packet::Subscribe(s));
    assert!(matches!(r.expect_packet(conn, V5), Packet::SubAck(_)));
}

/// The payloads `conn` received, each acknowledged.
fn received(r: &mut Raw, conn: ConnId) -> Vec<String> {
    let mut got = Vec::new();
    for p in r.packets(conn, V5) {
        if let Packet::Publish(p) = p {
            if let Some(id) = p.packet_id {
                r.send_packet(conn, V5, Packet::PubAck(PubAck::new(id)));
            }
            got.push(String::from_utf8_lossy(&p.payload).into_owned());
        }
    }
    got
}

/// A node with two members of `$share/g/jobs/+`, one of `$share/h/jobs/+`, a plain
/// subscriber of `jobs/+`, and a publisher.
fn node() -> (Raw, [ConnId; 5]) {
    let mut r = Raw::new(BrokerConfig::default().with_cluster(true));
    let conns = ["g1", "g2", "h1", "plain", "pub"].map(|id| r.connect(V5, id));
    subscribe(&mut r, conns[0], "$share/g/jobs/+");
    subscribe(&mut r, conns[1], "$share/g/jobs/+");
    subscribe(&mut r, conns[2], "$share/h/jobs/+");
    subscribe(&mut r, conns[3], "jobs/+");
    while r.broker.poll_remote().is_some() {}
    (r, conns)
}

#[test]
fn a_nodes_own_message_goes_to_its_plain_subscribers_and_to_the_cluster_only() {
    let (mut r, [g1, g2, h1, plain, publisher]) = node();
    r.send_packet(
        publisher,
        V5,
        Packet::Publish(msg("jobs/1", "own", QoS::AtMostOnce)),
    );
    assert_eq!(received(&mut r, plain), ["own"]);
    for member in [g1, g2, h1] {
        assert!(
            received(&mut r, member).is_empty(),
            "the cluster picks the member"
        );
    }
    let out: Vec<_> = std::iter::from_fn(|| r.broker.poll_remote()).collect();
    assert!(matches!(&out[..], [RemoteOutput::Publish(p)] if p.payload == "own"));
}

#[test]
fn a_message_for_one_group_reaches_one_of_its_members_and_nobody_else() {
    let (mut r, [g1, g2, h1, plain, _]) = node();
    let g = filter("$share/g/jobs/+");
    for i in 0..4 {
        let now = r.now();
        let mut m = Publish::new(
            TopicName::new(&format!("jobs/{i}")).unwrap(),
            format!("j{i}"),
        );
        m.qos = QoS::AtLeastOnce;
        r.broker.handle_remote_shared(now, &g, m);
        r.pump();
    }
    let (a, b) = (received(&mut r, g1), received(&mut r, g2));
    assert_eq!(a.len() + b.len(), 4, "{a:?} {b:?}");
    assert!(
        !a.is_empty() && !b.is_empty(),
        "round robin over the group: {a:?} {b:?}"
    );
    assert!(received(&mut r, h1).is_empty(), "another group");
    assert!(
        received(&mut r, plain).is_empty(),
        "plain subscribers get theirs apart"
    );
    assert!(r.broker.poll_remote().is_none(), "never handed back");
    // A plain message from the cluster reaches the plain subscriber only.
    let now = r.now();
    r.broker
        .handle_remote(now, msg("jobs/9", "p", QoS::AtLeastOnce));
    r.pump();
    assert_eq!(received(&mut r, plain), ["p"]);
    for member in [g1, g2, h1] {
        assert!(received(&mut r, member).is_empty());
    }
    // A filter that is not shared, or a group with no member here, delivers nothing.
    for f in ["jobs/+", "$share/other/jobs/+"] {
        let now = r.now();
        r.broker
            .handle_remote_shared(now, &filter(f), msg("jobs/1", "x", QoS::AtLeastOnce));
        r.pump();
        for c in [g1, g2, h1, plain] {
            assert!(received(&mut r, c).is_empty(), "{f}");
        }
    }
}

#[test]
fn sys_messages_still_reach_a_nodes_shared_subscribers() {
    let mut r = Raw::new(BrokerConfig::default().with_cluster(true));
    let m = r.connect(V5, "m");
    subscribe(&mut r, m, "$share/g/$SYS/broker/uptime");
    r.advance(crate::support::secs(11));
    assert!(
        !received(&mut r, m).is_empty(),
        "each node's $SYS is its own"
    );
}
