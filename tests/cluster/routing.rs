//! Routing across nodes: a message published on one node reaches the subscribers of every
//! node once, at each QoS, through `+` and `#` (which also matches its parent level); a
//! shared subscription's group gets each message once cluster-wide; MQTT 5 properties
//! travel intact.

// Real processes run on real time.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::time::Duration;

use crate::nats::NatsServer;
use crate::node::{settle, Node};
use crate::peers::{line_buffered, mosquitto_pub, mosquitto_sub, next_msg, Peer};

/// How long a subscriber is watched for a message too many.
const QUIET: Duration = Duration::from_millis(700);

/// The next `n` messages of a mosquitto_sub peer as `topic qos payload`, then nothing more
/// within [`QUIET`] (no duplicate, no echo).
fn exactly(sub: &Peer, n: usize) -> Vec<String> {
    let mut got: Vec<String> = (0..n)
        .map(|_| {
            let (_, qos, topic, payload) = next_msg(sub);
            format!("{topic} {qos} {payload}")
        })
        .collect();
    let more = sub.lines_within(QUIET, |l| l.starts_with("MSG "));
    assert!(
        more.is_empty(),
        "more than {n} messages: {got:?} then {more:?}"
    );
    got.sort();
    got
}

fn publish(node: &Node, topic: &str, payload: &str, qos: u8) {
    let q = qos.to_string();
    mosquitto_pub(node.port, &["-t", topic, "-m", payload, "-q", &q]);
}

#[test]
fn a_message_published_on_one_node_reaches_every_nodes_subscribers_once_at_each_qos() {
    let nats = NatsServer::start();
    let t = "routing";
    let (a, b, c) = (
        Node::start(&nats, t, "a", ""),
        Node::start(&nats, t, "b", ""),
        Node::start(&nats, t, "c", ""),
    );
    let on_a = mosquitto_sub(a.port, &["-t", "sensors/#", "-q", "1"]);
    let on_b = mosquitto_sub(b.port, &["-t", "sensors/+/temp", "-q", "2"]);
    let on_c = mosquitto_sub(c.port, &["-t", "sensors/#", "-q", "2", "-V", "mqttv5"]);
    settle(&a, "sensors/probe/temp", &[&on_a, &on_b, &on_c]);
    settle(&c, "sensors/probe/temp", &[&on_a, &on_b, &on_c]);

    for qos in 0..=2 {
        publish(&a, "sensors/room1/temp", &format!("q{qos}"), qos);
    }
    publish(&a, "sensors", "parent", 1);
    publish(&a, "sensors/room1/hum", "hum", 2);
    publish(&c, "sensors/c/temp", "from-c", 1);
    publish(&a, "elsewhere/x", "nobody", 1);

    assert_eq!(
        exactly(&on_b, 4),
        [
            "sensors/c/temp 1 from-c",
            "sensors/room1/temp 0 q0",
            "sensors/room1/temp 1 q1",
            "sensors/room1/temp 2 q2",
        ]
    );
    assert_eq!(
        exactly(&on_c, 6),
        [
            "sensors 1 parent",
            "sensors/c/temp 1 from-c",
            "sensors/room1/hum 2 hum",
            "sensors/room1/temp 0 q0",
            "sensors/room1/temp 1 q1",
            "sensors/room1/temp 2 q2",
        ],
        "`#` matches its parent level across nodes too; c's own message once"
    );
    assert_eq!(
        exactly(&on_a, 6),
        [
            "sensors 1 parent",
            "sensors/c/temp 1 from-c",
            "sensors/room1/hum 1 hum",
            "sensors/room1/temp 0 q0",
            "sensors/room1/temp 1 q1",
            "sensors/room1/temp 1 q2",
        ],
        "the publisher's node delivers its own messages once (no echo from NATS)"
    );
}

#[test]
fn a_shared_subscription_gets_each_message_once_cluster_wide() {
    let nats = NatsServer::start();
    let t = "shared";
    let (a, b, c) = (
        Node::start(&nats, t, "a", ""),
        Node::start(&nats, t, "b", ""),
        Node::start(&nats, t, "c", ""),
    );
    let shared = ["-t", "$share/workers/jobs/#", "-q", "1", "-V", "mqttv5"];
    let members = [
        mosquitto_sub(a.port, &shared),
        mosquitto_sub(b.port, &shared),
        mosquitto_sub(c.port, &shared),
    ];
    // A plain subscriber beside the group gets every message.
    let plain = mosquitto_sub(c.port, &["-t", "jobs/#", "-q", "1"]);
    let mut all: Vec<&Peer> = members.iter().collect();
    all.push(&plain);
    settle(&b, "jobs/probe", &all);

    const N: usize = 30;
    for i in 0..N {
        publish(&b, &format!("jobs/{i}"), &format!("job{i}"), 1);
    }
    let mut plain_got = exactly(&plain, N);
    plain_got.dedup();
    assert_eq!(
        plain_got.len(),
        N,
        "the plain subscriber gets every message once"
    );
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_member = Vec::new();
    let mut total = 0;
    while total < N {
        let before = total;
        for m in &members {
            for line in m.lines_within(Duration::from_millis(300), |l| l.starts_with("MSG ")) {
                let payload = line.rsplit(' ').next().unwrap_or_default().to_owned();
                *count.entry(payload).or_default() += 1;
                total += 1;
            }
        }
        assert!(
            total > before,
            "the group got {total} of {N} messages: {count:?}"
        );
    }
    for m in &members {
        let more = m.lines_within(QUIET, |l| l.starts_with("MSG "));
        per_member.push(more.len());
        for line in more {
            let payload = line.rsplit(' ').next().unwrap_or_default().to_owned();
            *count.entry(payload).or_default() += 1;
        }
    }
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "delivered to more than one member: {twice:?}"
    );
    assert_eq!(
        count.len(),
        N,
        "every message reached one member: {count:?}"
    );
}

#[test]
fn mqtt5_properties_cross_nodes_intact_to_a_paho_subscriber() {
    let nats = NatsServer::start();
    let t = "props";
    let (a, c) = (
        Node::start(&nats, t, "a", ""),
        Node::start(&nats, t, "c", ""),
    );
    let port = c.port.to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cluster/paho_sub.py");
    let paho = line_buffered("python3", &[script, &port, "props/#", "1"]);
    paho.line_where(|l| l == "READY");
    settle(&a, "props/probe", &[&paho]);
    mosquitto_pub(
        a.port,
        &[
            "-V",
            "mqttv5",
            "-t",
            "props/x",
            "-m",
            "hello",
            "-q",
            "1",
            "-D",
            "publish",
            "content-type",
            "text/plain",
            "-D",
            "publish",
            "user-property",
            "origin",
            "sensor-7",
        ],
    );
    let line = paho.line_where(|l| l.starts_with("MSG "));
    assert_eq!(line, "MSG props/x 1 text/plain origin=sensor-7 hello");
}
