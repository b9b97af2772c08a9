//! Everything from NATS is hostile: a message another NATS client publishes under the
//! cluster's subjects with a subject the mapping never makes, a body that is not an MQTT 5
//! PUBLISH, or a QoS that does not belong on its subject is dropped and counted, never
//! delivered, and the node goes on serving.

// Real processes run on real time.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::nats::NatsServer;
use crate::node::{settle, Node};
use crate::peers::{free_port, mosquitto_pub, mosquitto_sub, WAIT};

/// `GET /metrics` of the node's endpoint.
fn metrics(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.take(1 << 20).read_to_string(&mut out).unwrap();
    out
}

/// The value of a counter in a Prometheus text.
fn value(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in {text}"))
}

#[test]
fn malformed_messages_from_nats_are_dropped_and_counted() {
    let nats = NatsServer::start();
    let t = "hostile";
    let mport = free_port();
    let a = Node::start(&nats, t, "a", "");
    let b = Node::start(
        &nats,
        t,
        "b",
        &format!("metrics_listener = \"127.0.0.1:{mport}\""),
    );
    let sub = mosquitto_sub(b.port, &["-t", "evil/#", "-q", "1"]);
    settle(&a, "evil/probe", &[&sub]);
    let before = value(&metrics(mport), "tinymqtt_cluster_messages_malformed_total");

    // A raw NATS client, as anything on the NATS system could be.
    let mut raw = TcpStream::connect(("127.0.0.1", nats.port())).unwrap();
    raw.set_read_timeout(Some(WAIT)).unwrap();
    let mut publish_qos1 = vec![0x32, 0x0C, 0, 6];
    publish_qos1.extend_from_slice(b"evil/x");
    publish_qos1.extend_from_slice(&[0, 1, 0, b'p']);
    let mut wire = b"CONNECT {\"verbose\":false}\r\n".to_vec();
    for (subject, body) in [
        ("tinymqtt.t.evil.x", &b"not mqtt"[..]),
        ("tinymqtt.t.evil.%ZZ", &b"x"[..]),
        ("tinymqtt.t.evil.x", &publish_qos1[..]),
        (
            "tinymqtt.t.evil.y",
            &[0x30, 0x09, 0, 6, b'e', b'v', b'i', b'l', b'/', b'x', 0][..],
        ),
    ] {
        wire.extend_from_slice(format!("PUB {subject} {}\r\n", body.len()).as_bytes());
        wire.extend_from_slice(body);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"PING\r\n");
    raw.write_all(&wire).unwrap();
    let mut reader = BufReader::new(raw);
    let mut line = String::new();
    while !line.starts_with("PONG") {
        line.clear();
        reader.read_line(&mut line).expect("PONG from nats-server");
    }
    // B dropped them all; its subscriber saw none.
    let deadline = std::time::Instant::now() + WAIT;
    let mut after = before;
    while after < before + 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        after = value(&metrics(mport), "tinymqtt_cluster_messages_malformed_total");
    }
    assert_eq!(after - before, 4, "four malformed messages counted");
    let seen = sub.lines_within(Duration::from_millis(300), |l| l.starts_with("MSG "));
    assert!(seen.is_empty(), "delivered: {seen:?}");
    // And B goes on.
    mosquitto_pub(a.port, &["-t", "evil/ok", "-m", "fine", "-q", "1"]);
    let line = sub.line_where(|l| l.starts_with("MSG "));
    assert!(line.ends_with(" fine"), "{line}");
    let text = metrics(mport);
    assert!(
        value(&text, "tinymqtt_cluster_messages_received_total") >= 1,
        "{text}"
    );
}
