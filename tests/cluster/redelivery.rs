//! QoS 2 stays exactly once while JetStream delivers a message again to a node that lives:
//! node B is stopped (SIGSTOP) while a publisher on node A sends QoS 2 messages, longer
//! than the durable consumer's ack wait (5 s), so JetStream delivers each of them a second
//! time into B's pull request; once B runs again it reads both deliveries of every
//! message, and its QoS 2 subscriber must get each once.

// Real processes run on real time.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::nats::NatsServer;
use crate::node::{settle, Node};
use crate::peers::{mosquitto_pub, mosquitto_sub, WAIT};

/// Messages published while B is stopped.
const N: usize = 20;
/// Longer than the consumer's ack wait: JetStream has delivered every message again.
const STOPPED: Duration = Duration::from_secs(7);

/// Sends `signal` to process `pid`.
fn signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {signal} {pid}");
}

/// Lets a stopped process run again, even when the test fails.
struct Stopped(u32);

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

#[test]
fn a_qos2_subscriber_gets_each_message_once_though_jetstream_delivers_it_again() {
    let nats = NatsServer::start();
    let t = "redelivery";
    let (a, b) = (
        Node::start(&nats, t, "a", ""),
        Node::start(&nats, t, "b", ""),
    );
    let sub = mosquitto_sub(b.port, &["-t", "once/#", "-q", "2"]);
    settle(&a, "once/probe", &[&sub]);

    signal(b.peer.pid(), "-STOP");
    let stopped = Stopped(b.peer.pid());
    for i in 0..N {
        // Each returns once A completed the QoS 2 exchange (JetStream stored it).
        mosquitto_pub(a.port, &["-t", "once/x", "-m", &format!("m{i}"), "-q", "2"]);
    }
    std::thread::sleep(STOPPED);
    drop(stopped);

    let mut got = BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    let count = |got: &mut BTreeMap<String, usize>, quiet| {
        for line in sub.lines_within(quiet, |l| l.starts_with("MSG ")) {
            let payload = line.rsplit(' ').next().unwrap_or_default().to_owned();
            if payload.starts_with('m') {
                *got.entry(payload).or_insert(0) += 1;
            }
        }
    };
    loop {
        count(&mut got, Duration::from_millis(300));
        if got.len() >= N || Instant::now() >= deadline {
            break;
        }
    }
    // Room for a second delivery to show.
    count(&mut got, Duration::from_secs(1));
    let lost: Vec<usize> = (0..N)
        .filter(|i| !got.contains_key(&format!("m{i}")))
        .collect();
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
}
