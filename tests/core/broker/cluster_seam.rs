//! Two brokers wired through the cluster seam (`poll_remote` / `handle_remote`) on a fake
//! clock, with a model of the transport between them that, like NATS, delivers a node's
//! messages only to a node whose interest matches them.

use std::collections::BTreeSet;

use crate::sim::raw::Raw;
use crate::sim::{msg, sub};
use crate::support::{filter, pid, s, secs, topic};
use tinymqtt::broker::cluster::RemoteOutput;
use tinymqtt::broker::{BrokerConfig, ConnId};
use tinymqtt::codec::{
    Connect, Packet, PubAck, Publish, Subscribe, SubscribeProperties, Unsubscribe, Will,
};
use tinymqtt::topic::{matches, split_shared};
use tinymqtt::{ProtocolVersion, QoS, TopicFilter};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// A node and what the cluster knows of it.
struct Node {
    raw: Raw,
    /// The interest it announced, as the transport keeps it.
    interest: BTreeSet<TopicFilter>,
    /// Every message it handed to the cluster.
    published: Vec<Publish>,
}

impl Node {
    fn new() -> Node {
        Node {
            raw: Raw::new(BrokerConfig::default().with_cluster(true)),
            interest: BTreeSet::new(),
            published: Vec::new(),
        }
    }

    /// Drains what the node hands to the cluster: interest is kept (a filter announced twice,
    /// or withdrawn without being announced, fails the test), messages are returned.
    fn drain(&mut self) -> Vec<Publish> {
        let mut out = Vec::new();
        while let Some(o) = self.raw.broker.poll_remote() {
            match o {
                RemoteOutput::Subscribe(f) => {
                    assert!(self.interest.insert(f.clone()), "{f:?} announced twice");
                }
                RemoteOutput::Unsubscribe(f) => {
                    assert!(self.interest.remove(&f), "{f:?} withdrawn, never announced");
                }
                RemoteOutput::Publish(p) => {
                    self.published.push((*p).clone());
                    out.push((*p).clone());
                }
                // The model transport holds what it is given at once.
                RemoteOutput::Held { message, ticket } => {
                    self.published.push((*message).clone());
                    out.push((*message).clone());
                    let now = self.raw.now();
                    self.raw.broker.handle_remote_ack(now, ticket);
                    self.raw.pump();
                }
                o => panic!("unexpected {o:?}"),
            }
        }
        out
    }

    fn wants(&self, p: &Publish) -> bool {
        self.interest.iter().any(|f| {
            let inner = split_shared(f.as_str()).map_or(f.as_str(), |(_, inner)| inner);
            matches(inner, p.topic.as_str())
        })
    }
}

/// Carries messages between the two nodes until neither has anything left for the other.
fn settle(a: &mut Node, b: &mut Node) {
    for _ in 0..100 {
        let from_a = a.drain();
        let from_b = b.drain();
        if from_a.is_empty() && from_b.is_empty() {
            return;
        }
        for (from, to) in [(from_a, &mut *b), (from_b, &mut *a)] {
            for p in from {
                if to.wants(&p) {
                    let now = to.raw.now();
                    to.raw.broker.handle_remote(now, p);
                    to.raw.pump();
                }
            }
        }
    }
    panic!("the two nodes kept sending each other messages");
}

fn subscribe(r: &mut Raw, conn: ConnId, f: &'static str, qos: QoS) {
    let s = Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        filters: vec![sub(f, qos)],
    };
    r.send_packet(conn, V5, Packet::Subscribe(s));
    assert!(matches!(r.expect_packet(conn, V5), Packet::SubAck(_)));
}

fn unsubscribe(r: &mut Raw, conn: ConnId, f: &'static str) {
    let u = Unsubscribe {
        packet_id: pid(2),
        properties: Default::default(),
        filters: vec![filter(f)],
    };
    r.send_packet(conn, V5, Packet::Unsubscribe(u));
    assert!(matches!(r.expect_packet(conn, V5), Packet::UnsubAck(_)));
}

/// The payloads of the PUBLISHes `conn` received, each acknowledged.
fn received(r: &mut Raw, conn: ConnId) -> Vec<String> {
    let mut got = Vec::new();
    for p in r.packets(conn, V5) {
        match p {
            Packet::Publish(p) => {
                if let Some(id) = p.packet_id {
                    r.send_packet(conn, V5, Packet::PubAck(PubAck::new(id)));
                }
                got.push(String::from_utf8_lossy(&p.payload).into_owned());
            }
            p => panic!("expected PUBLISH, got {p:?}"),
        }
    }
    got
}

#[test]
fn a_message_published_on_one_node_reaches_a_subscriber_on_the_other_once() {
    let (mut a, mut b) = (Node::new(), Node::new());
    let far = b.raw.connect(V5, "far");
    subscribe(&mut b.raw, far, "sensors/#", QoS::AtLeastOnce);
    let near = a.raw.connect(V5, "near");
    subscribe(&mut a.raw, near, "sensors/+", QoS::AtLeastOnce);
    settle(&mut a, &mut b);

    let publisher = a.raw.connect(V5, "pub");
    let mut p = msg("sensors/t1", "21.5", QoS::AtLeastOnce);
    p.packet_id = Some(pid(7));
    a.raw.send_packet(publisher, V5, Packet::Publish(p));
    a.raw.expect_silence(publisher); // until the cluster holds it
    settle(&mut a, &mut b);
    assert!(matches!(
        a.raw.expect_packet(publisher, V5),
        Packet::PubAck(ack) if ack.packet_id == pid(7)
    ));

    assert_eq!(received(&mut b.raw, far), ["21.5"]);
    assert_eq!(
        received(&mut a.raw, near),
        ["21.5"],
        "A's own subscriber, once"
    );
    // Handed to the cluster once, by A only: B routed it and sent nothing back.
    assert_eq!(a.published.len(), 1);
    assert_eq!(a.published[0].topic.as_str(), "sensors/t1");
    assert_eq!(
        a.published[0].packet_id, None,
        "routed form, not the publisher's packet"
    );
    assert!(b.published.is_empty(), "B echoed {:?}", b.published);
    settle(&mut a, &mut b);
    b.raw.expect_silence(far);
    a.raw.expect_silence(near);
}

#[test]
fn a_remote_retained_message_is_kept_for_later_subscribers_and_not_sent_back() {
    let (mut a, mut b) = (Node::new(), Node::new());
    let watcher = b.raw.connect(V5, "watcher");
    subscribe(&mut b.raw, watcher, "cfg/#", QoS::AtMostOnce);
    settle(&mut a, &mut b);
    let publisher = a.raw.connect(V5, "pub");
    let mut p = msg("cfg/mode", "eco", QoS::AtMostOnce);
    p.retain = true;
    a.raw.send_packet(publisher, V5, Packet::Publish(p));
    settle(&mut a, &mut b);
    assert_eq!(received(&mut b.raw, watcher), ["eco"]);
    // A later subscriber on B gets it from B's own retained store.
    let late = b.raw.connect(V5, "late");
    subscribe(&mut b.raw, late, "cfg/mode", QoS::AtMostOnce);
    assert_eq!(received(&mut b.raw, late), ["eco"]);
    settle(&mut a, &mut b);
    assert!(b.published.is_empty(), "B echoed {:?}", b.published);
}

#[test]
fn interest_is_announced_on_the_first_subscription_and_withdrawn_on_the_last() {
    let mut b = Node::new();
    let one = b.raw.connect(V5, "one");
    let two = b.raw.connect(V5, "two");
    subscribe(&mut b.raw, one, "a/#", QoS::AtLeastOnce);
    subscribe(&mut b.raw, one, "$share/g/jobs/+", QoS::AtLeastOnce);
    b.drain();
    assert_eq!(
        b.interest,
        BTreeSet::from([filter("a/#"), filter("$share/g/jobs/+")])
    );
    // A second session on the same filters: nothing new to announce.
    subscribe(&mut b.raw, two, "a/#", QoS::AtMostOnce);
    subscribe(&mut b.raw, two, "$share/g/jobs/+", QoS::AtLeastOnce);
    // Subscribing again replaces the subscription: still nothing new.
    subscribe(&mut b.raw, two, "a/#", QoS::AtLeastOnce);
    assert!(b.raw.broker.poll_remote().is_none());
    // One leaves a filter, the other still holds it.
    unsubscribe(&mut b.raw, one, "a/#");
    assert!(b.raw.broker.poll_remote().is_none());
    // The last one leaves it: withdrawn.
    unsubscribe(&mut b.raw, two, "a/#");
    b.drain();
    assert_eq!(b.interest, BTreeSet::from([filter("$share/g/jobs/+")]));
    // Sessions ending (clean start, transport gone) take their filters with them.
    b.raw.close(one);
    assert!(
        b.raw.broker.poll_remote().is_none(),
        "two still holds the shared filter"
    );
    b.raw.close(two);
    b.drain();
    assert!(b.interest.is_empty(), "{:?}", b.interest);
    assert!(b.raw.broker.remote_interest().is_empty());
}

#[test]
fn a_will_goes_through_the_cluster_like_any_message() {
    let (mut a, mut b) = (Node::new(), Node::new());
    let watcher = b.raw.connect(V5, "watcher");
    subscribe(&mut b.raw, watcher, "status/+", QoS::AtLeastOnce);
    settle(&mut a, &mut b);
    let mut c = Connect::new(V5, s("device"));
    c.will = Some(Will::new(topic("status/device"), "gone"));
    let (device, _) = a.raw.connect_with(c);
    a.raw.close(device); // no DISCONNECT: the will goes out
    settle(&mut a, &mut b);
    assert_eq!(received(&mut b.raw, watcher), ["gone"]);
    assert_eq!(a.published.len(), 1, "{:?}", a.published);
    assert!(b.published.is_empty(), "B echoed {:?}", b.published);
}

#[test]
fn sys_messages_stay_on_their_node() {
    let mut a = Node::new();
    let watcher = a.raw.connect(V5, "watcher");
    subscribe(&mut a.raw, watcher, "$SYS/broker/uptime", QoS::AtMostOnce);
    a.raw.advance(secs(11));
    assert!(!received(&mut a.raw, watcher).is_empty(), "no $SYS round");
    a.drain();
    assert!(a.published.is_empty(), "{:?}", a.published);
}

#[test]
fn without_cluster_nothing_goes_out() {
    let mut r = Raw::new(BrokerConfig::default());
    let c = r.connect(V5, "c");
    subscribe(&mut r, c, "t", QoS::AtMostOnce);
    r.send_packet(c, V5, Packet::Publish(msg("t", "x", QoS::AtMostOnce)));
    assert_eq!(received(&mut r, c), ["x"]);
    assert!(r.broker.poll_remote().is_none());
}
