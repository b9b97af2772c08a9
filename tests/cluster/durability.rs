//! QoS 1 across a node's crash: what a publisher on node A had acknowledged reaches a
//! persistent subscriber of node B, though B was killed with SIGKILL and restarted on its
//! store while A went on publishing (JetStream kept the messages for B's durable consumer).

// Real processes run on real time.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::nats::NatsServer;
use crate::node::{assert_each_once, collect, settle, Node};
use crate::peers::{line_buffered, mosquitto_pub, mosquitto_sub, Peer, WAIT};

/// Messages A publishes, and how many before B is killed.
const N: usize = 40;
const KILL_AT: usize = 15;

/// The persistent subscriber of B (clean session 0, QoS 1).
fn subscriber(b: &Node) -> Peer {
    mosquitto_sub(
        b.port,
        &["-t", "dur/#", "-q", "1", "-c", "-i", "cluster-durable-sub"],
    )
}

#[test]
fn a_persistent_subscriber_gets_every_acknowledged_message_across_a_sigkill_of_its_node() {
    let nats = NatsServer::start();
    let t = "durable";
    let a = Node::start(&nats, t, "a", "");
    let b = Node::start(&nats, t, "b", "persistence = \"data\"");
    let sub = subscriber(&b);
    settle(&a, "dur/probe", &[&sub]);

    let mut got = BTreeMap::new();
    for i in 0..KILL_AT {
        mosquitto_pub(a.port, &["-t", "dur/x", "-m", &format!("m{i}"), "-q", "1"]);
    }
    collect(&sub, Duration::from_millis(200), &mut got);
    let (dir, port) = b.kill();
    drop(sub);
    // Acknowledged by A once JetStream stored them, B or no B.
    for i in KILL_AT..N {
        mosquitto_pub(a.port, &["-t", "dur/x", "-m", &format!("m{i}"), "-q", "1"]);
    }
    let b = Node::start_in(nats.url(), dir, "b", "persistence = \"data\"", port);
    // Its session is there: what was queued comes before the SUBACK, so nothing is waited
    // for (the helper would skip those lines).
    let port = b.port.to_string();
    let args = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "dur/#",
        "-q",
        "1",
        "-c",
    ];
    let sub = line_buffered(
        "mosquitto_sub",
        &[
            &args[..],
            &["-i", "cluster-durable-sub", "-F", "MSG %r %q %t %p"],
        ]
        .concat(),
    );
    // Messages JetStream had handed to the killed node's pull requests come again after
    // the consumer's ack wait (5 s).
    let deadline = Instant::now() + WAIT;
    while got.len() < N && Instant::now() < deadline {
        collect(&sub, Duration::from_millis(300), &mut got);
    }
    collect(&sub, Duration::from_millis(500), &mut got);
    assert_each_once(&got, N);
}
