//! A cluster node for the tests: the example broker with a `[cluster]` config on a free
//! loopback port, killed on drop; and the probes that tell a test when the cluster's
//! subscriptions are in place.

// Real processes run on real time: this harness may read the clock and sleep.
#![allow(dead_code, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::nats::NatsServer;
use crate::peers::{example, free_port, mosquitto_pub, scratch, wait_for_port, write, Peer};

/// How long a test waits for the cluster's subscriptions to reach NATS (a bound, not a
/// pause, generous for a machine loaded by other suites).
pub(crate) const SETTLE: Duration = Duration::from_secs(20);

/// One tinymqtt node of a cluster.
pub(crate) struct Node {
    pub(crate) id: String,
    pub(crate) port: u16,
    pub(crate) peer: Peer,
    pub(crate) dir: PathBuf,
}

impl Node {
    /// Starts node `id` on `nats` with `extra` lines in its config file (top-level keys),
    /// and waits until it listens.
    pub(crate) fn start(nats: &NatsServer, test: &str, id: &str, extra: &str) -> Node {
        let dir = scratch("cluster", &format!("{test}-{id}"));
        Self::start_in(nats.url(), dir, id, extra, free_port())
    }

    /// Starts a node with its config (and store, if `extra` names one) in `dir`.
    pub(crate) fn start_in(url: String, dir: PathBuf, id: &str, extra: &str, port: u16) -> Node {
        let config = format!(
            "listeners = [\"127.0.0.1:{port}\"]\nsys_interval = 0\n{extra}\n\
             [cluster]\nnats = [\"{url}\"]\nnode_id = \"{id}\"\n"
        );
        let path = write(&dir, "broker.toml", &config);
        let peer = Peer::spawn(&example("broker"), &["-c", &path, "--log-level", "warn"]);
        wait_for_port(port);
        Node {
            id: id.to_owned(),
            port,
            peer,
            dir,
        }
    }

    /// Kills the node with SIGKILL (no goodbye, no will, nothing flushed).
    pub(crate) fn kill(self) -> (PathBuf, u16) {
        let Node {
            peer, dir, port, ..
        } = self;
        peer.kill();
        (dir, port)
    }
}

/// Publishes probes on `topic` through `node`, at QoS 0 (core NATS) and QoS 1 (the
/// JetStream stream), until each subscriber of `subs` printed one of each (so that their
/// nodes' NATS subscriptions and durable consumers are in place), within [`SETTLE`]; the
/// probes' lines are skipped.
pub(crate) fn settle(node: &Node, topic: &str, subs: &[&Peer]) {
    let deadline = Instant::now() + SETTLE;
    let mut seen = vec![[false; 2]; subs.len()];
    while seen.iter().flatten().any(|s| !s) {
        assert!(
            Instant::now() < deadline,
            "the cluster's subscriptions did not settle in {SETTLE:?} (seen: {seen:?})"
        );
        for qos in ["0", "1"] {
            mosquitto_pub(
                node.port,
                &["-t", topic, "-m", &format!("probe{qos}"), "-q", qos],
            );
        }
        for (i, sub) in subs.iter().enumerate() {
            for l in sub.lines_within(Duration::from_millis(150), |l| l.contains(" probe")) {
                seen[i][usize::from(l.ends_with(" probe1"))] = true;
            }
        }
    }
    // Probes still on their way are skipped by whoever reads next.
    for sub in subs {
        let _ = sub.lines_within(Duration::from_millis(300), |l| l.contains(" probe"));
    }
}

/// Adds the payloads of the `MSG` lines `sub` prints within `quiet` to `got` (those of
/// the messages the tests number, `m...`).
pub(crate) fn collect(sub: &Peer, quiet: Duration, got: &mut BTreeMap<String, usize>) {
    for line in sub.lines_within(quiet, |l| l.starts_with("MSG ")) {
        let payload = line.rsplit(' ').next().unwrap_or_default().to_owned();
        if payload.starts_with('m') {
            *got.entry(payload).or_default() += 1;
        }
    }
}

/// Asserts that each of the messages `m0` .. `m{count - 1}` arrived, and none twice.
pub(crate) fn assert_each_once(got: &BTreeMap<String, usize>, count: usize) {
    let lost: Vec<usize> = (0..count)
        .filter(|i| !got.contains_key(&format!("m{i}")))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged and lost: {lost:?} (got {got:?})"
    );
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
}
