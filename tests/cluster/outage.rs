//! A node that loses NATS keeps serving its local clients, and what its publishers had
//! acknowledged reaches the other nodes once NATS is back: the NATS server is killed and
//! restarted (same store) while a publisher on node A sends QoS 1 messages to a subscriber
//! on node B.

// Real processes run on real time.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::nats::NatsServer;
use crate::node::{settle, Node};
use crate::peers::{mosquitto_pub, mosquitto_sub, WAIT};

/// Messages published, and after how many NATS is restarted.
const N: usize = 30;
const RESTART_AT: usize = 10;

#[test]
fn nothing_acknowledged_is_lost_when_the_nats_server_restarts_under_qos1_load() {
    let mut nats = NatsServer::start();
    let t = "outage";
    let (a, b) = (
        Node::start(&nats, t, "a", ""),
        Node::start(&nats, t, "b", ""),
    );
    let remote = mosquitto_sub(b.port, &["-t", "load/#", "-q", "1"]);
    let local = mosquitto_sub(a.port, &["-t", "load/#", "-q", "1"]);
    settle(&a, "load/probe", &[&remote, &local]);

    for i in 0..N {
        if i == RESTART_AT {
            nats.restart();
        }
        // Each returns once A acknowledged (JetStream stored it; while NATS is down the
        // PUBACK waits, as for a full queue).
        mosquitto_pub(a.port, &["-t", "load/x", "-m", &format!("m{i}"), "-q", "1"]);
    }
    // A's own subscriber was served throughout.
    let mut got = BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < N && Instant::now() < deadline {
        for line in remote.lines_within(Duration::from_millis(300), |l| l.starts_with("MSG ")) {
            let payload = line.rsplit(' ').next().unwrap_or_default().to_owned();
            *got.entry(payload).or_insert(0) += 1;
        }
    }
    let lost: Vec<usize> = (0..N)
        .filter(|i| !got.contains_key(&format!("m{i}")))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged and lost across the restart: {lost:?}"
    );
    let local_got = local.lines_within(Duration::from_millis(300), |l| l.starts_with("MSG "));
    assert_eq!(local_got.len(), N, "A's own subscriber: {local_got:?}");
}
