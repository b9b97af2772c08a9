//! The Prometheus endpoint on every runtime: a scripted run, then `/metrics` scraped over
//! HTTP with exact counts, and the whole answer checked by `promtool check metrics`.

use std::collections::HashMap;
use std::process::{Command, Stdio};

use super::*;

/// A raw HTTP exchange: writes `request`, reads the whole answer until the server closes.
fn http(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// `GET /metrics`: the status line and the body.
fn scrape(addr: SocketAddr) -> (String, String) {
    let answer = http(addr, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole answer");
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

/// The samples of a scrape: `name{labels}` to value.
fn samples(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// Scrapes until `done` holds for the samples (the last counts travel with the connections'
/// next reports), or fails after `WAIT` showing the last body.
fn scrape_until(addr: SocketAddr, done: impl Fn(&HashMap<String, f64>) -> bool) -> String {
    let end = clock() + WAIT;
    loop {
        let (status, body) = scrape(addr);
        assert_eq!(status, "HTTP/1.1 200 OK");
        if done(&samples(&body)) {
            return body;
        }
        assert!(clock() < end, "counts not reached within {WAIT:?}:\n{body}");
        pause(Duration::from_millis(20));
    }
}

/// A broker serving `/metrics`, and where.
fn metrics_broker() -> (rt::Broker, SocketAddr) {
    let addr = SocketAddr::from(([127, 0, 0, 1], crate::peers::free_port()));
    let options = BrokerOptions::default().with_metrics_listener(Some(addr));
    let config = BrokerConfig::default().with_sys_interval(None);
    (rt::broker_with(config, options), addr)
}

#[test]
fn a_scrape_after_a_scripted_run_has_exact_counts_and_passes_promtool() {
    let (b, m) = metrics_broker();
    // A refused CONNECT: 3.1.1, empty client id without clean session (0x85).
    let mut raw = TcpStream::connect(b.addr).unwrap();
    raw.set_read_timeout(Some(WAIT)).unwrap();
    raw.write_all(&[0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 0, 0, 60, 0, 0])
        .unwrap();
    let mut connack = [0u8; 4];
    raw.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 2]);
    // A subscriber taking packets of 100 bytes at most.
    let mut sc = config(ProtocolVersion::V5, "sub");
    sc.properties.maximum_packet_size = std::num::NonZeroU32::new(100);
    let s = rt::connect(b.addr, sc).unwrap();
    s.subscribe(sub("m/#", QoS::ExactlyOnce)).unwrap();
    let p = rt::connect(b.addr, config(ProtocolVersion::V5, "pub")).unwrap();
    for (qos, n) in [
        (QoS::AtMostOnce, 3),
        (QoS::AtLeastOnce, 2),
        (QoS::ExactlyOnce, 1),
    ] {
        for _ in 0..n {
            p.publish(msg("m/x", "payload", qos, false)).unwrap();
        }
    }
    for _ in 0..6 {
        next_message(&s);
    }
    // Too large for the subscriber: dropped.
    let mut big = msg("m/big", "", QoS::AtMostOnce, false);
    big.payload = Bytes::from(vec![b'x'; 200]);
    p.publish(big).unwrap();
    let body = scrape_until(m, |s| {
        s.get("tinymqtt_messages_dropped_total{reason=\"too_large\"}") == Some(&1.0)
    });
    let s_ = samples(&body);
    let get = |k: &str| *s_.get(k).unwrap_or_else(|| panic!("no {k} in\n{body}"));
    assert_eq!(get("tinymqtt_messages_received_total{qos=\"0\"}"), 4.0);
    assert_eq!(get("tinymqtt_messages_received_total{qos=\"1\"}"), 2.0);
    assert_eq!(get("tinymqtt_messages_received_total{qos=\"2\"}"), 1.0);
    assert_eq!(get("tinymqtt_messages_sent_total{qos=\"0\"}"), 3.0);
    assert_eq!(get("tinymqtt_messages_sent_total{qos=\"1\"}"), 2.0);
    assert_eq!(get("tinymqtt_messages_sent_total{qos=\"2\"}"), 1.0);
    assert_eq!(
        get("tinymqtt_payload_received_bytes_total{qos=\"1\"}"),
        14.0
    );
    assert_eq!(get("tinymqtt_connections_accepted_total"), 3.0);
    assert_eq!(get("tinymqtt_connects_total"), 3.0);
    assert_eq!(
        get("tinymqtt_connections_refused_total{code=\"0x85\",reason=\"client identifier not valid\"}"),
        1.0
    );
    assert_eq!(get("tinymqtt_connections"), 2.0);
    assert_eq!(get("tinymqtt_sessions{state=\"online\"}"), 2.0);
    assert_eq!(get("tinymqtt_sessions{state=\"offline\"}"), 0.0);
    assert_eq!(get("tinymqtt_subscriptions"), 1.0);
    assert_eq!(
        get("tinymqtt_messages_dropped_total{reason=\"queue_full\"}"),
        0.0
    );
    assert_eq!(
        get(&format!(
            "tinymqtt_listener_connections{{listener=\"{}\"}}",
            b.addr
        )),
        2.0
    );
    // Prometheus's own linter reads it as valid.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (make tools installs Debian's prometheus package)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    p.disconnect();
    s.disconnect();
    b.shutdown();
}

#[test]
fn anything_but_get_metrics_is_refused_and_the_connection_closed() {
    let (b, m) = metrics_broker();
    let status = |request: &[u8]| {
        let answer = http(m, request);
        answer.lines().next().unwrap_or("").to_owned()
    };
    assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), "HTTP/1.1 404 Not Found");
    assert_eq!(
        status(b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
        "HTTP/1.1 405 Method Not Allowed"
    );
    assert_eq!(
        status(b"\x16\x03\x01\x00\x05hello\r\n\r\n"),
        "HTTP/1.1 400 Bad Request"
    );
    let head = http(m, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "no body for HEAD: {head}");
    b.shutdown();
}

#[test]
fn mosquitto_sub_reads_mosquittos_sys_topics() {
    let config = BrokerConfig::default().with_sys_interval(Some(Duration::from_secs(1)));
    let b = rt::broker(config);
    let p = rt::connect(b.addr, super::config(ProtocolVersion::V3_1_1, "pub")).unwrap();
    for _ in 0..5 {
        p.publish(msg("s/x", "m", QoS::AtLeastOnce, false)).unwrap();
    }
    // One round's worth of topics (each round publishes them all, retained).
    let out = crate::peers::run_ok(
        "mosquitto_sub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &b.addr.port().to_string(),
            "-t",
            "$SYS/#",
            "-v",
            "-C",
            "60",
            "-W",
            "4",
        ],
    );
    let value = |topic: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(topic)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {topic} in\n{out}"))
            .to_owned()
    };
    assert_eq!(value("$SYS/broker/publish/messages/received"), "5");
    assert_eq!(value("$SYS/broker/clients/total"), "2");
    assert!(value("$SYS/broker/version").starts_with("tinymqtt "));
    assert!(value("$SYS/broker/uptime").ends_with(" seconds"));
    for load in ["1min", "5min", "15min"] {
        let v = value(&format!("$SYS/broker/load/publish/received/{load}"));
        let rate: f64 = v.parse().unwrap();
        assert!(rate > 0.0, "{load}: {v}");
    }
    let listener = format!("$SYS/broker/listener/{}/clients/connected", b.addr);
    let n: usize = value(&listener).parse().unwrap();
    assert!((1..=2).contains(&n), "{listener}: {n}");
    p.disconnect();
    b.shutdown();
}

#[test]
fn a_broker_with_a_store_reports_its_commits_and_their_times() {
    let runtime = module_path!().split("::").next().unwrap_or("rt");
    let dir = std::env::temp_dir().join(format!(
        "tinymqtt-{runtime}-metrics-store-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let addr = SocketAddr::from(([127, 0, 0, 1], crate::peers::free_port()));
    let options = broker_options_in(&dir).with_metrics_listener(Some(addr));
    let b = rt::broker_with(BrokerConfig::default().with_sys_interval(None), options);
    let p = rt::connect(b.addr, config(ProtocolVersion::V5, "pub")).unwrap();
    // A retained QoS 1 message is acknowledged once its commit is synced.
    p.publish(msg("kept", "x", QoS::AtLeastOnce, true)).unwrap();
    let body = scrape_until(addr, |s| {
        s.get("tinymqtt_store_commits_total")
            .is_some_and(|n| *n >= 1.0)
    });
    let s = samples(&body);
    let commits = s["tinymqtt_store_commits_total"];
    assert_eq!(s["tinymqtt_store_commit_seconds_count"], commits, "{body}");
    assert!(s["tinymqtt_store_commit_seconds_sum"] > 0.0, "{body}");
    assert_eq!(s["tinymqtt_retained_messages"], 1.0);
    assert!(s["tinymqtt_router_mail_batch_size_count"] >= 1.0, "{body}");
    p.disconnect();
    b.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
