use super::*;
use crate::ReasonCode;

#[test]
fn heads_are_parsed_and_anything_but_get_metrics_is_refused() {
    assert_eq!(
        parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
        Some(Asked::Metrics(true))
    );
    assert_eq!(
        parse(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
        Some(Asked::Metrics(false))
    );
    assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHost"), None, "incomplete");
    assert_eq!(
        parse(b"POST /metrics HTTP/1.1\r\n\r\n"),
        Some(Asked::Refused(405, "Method Not Allowed"))
    );
    assert_eq!(
        parse(b"GET / HTTP/1.1\r\n\r\n"),
        Some(Asked::Refused(404, "Not Found"))
    );
    assert_eq!(
        parse(b"\x16\x03\x01junk\r\n\r\n"),
        Some(Asked::Refused(400, "Bad Request"))
    );
}

#[test]
fn the_snapshot_is_encoded_with_prometheus_names_and_labels() {
    let mut stats = BrokerStats {
        connections: 3,
        ..BrokerStats::default()
    };
    stats.publish_received.0 = [5, 2, 1];
    stats.refused.count(ReasonCode::BadUserNameOrPassword);
    let addr: SocketAddr = "127.0.0.1:1883".parse().unwrap();
    let text = encode(&stats, &[(addr, 2)], &RuntimeMetrics::default());
    assert!(
        text.contains("# TYPE tinymqtt_connections gauge\ntinymqtt_connections 3\n"),
        "{text}"
    );
    assert!(
        text.contains("tinymqtt_messages_received_total{qos=\"1\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("tinymqtt_messages_dropped_total{reason=\"too_large\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("tinymqtt_listener_connections{listener=\"127.0.0.1:1883\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE tinymqtt_router_mail_batch_size histogram"),
        "{text}"
    );
    assert!(
        !text.contains("tinymqtt_store_"),
        "no store, no store metrics: {text}"
    );
    let refused = "tinymqtt_connections_refused_total{code=\"0x86\",reason=\"bad user name or password\"} 1\n";
    assert!(text.contains(refused), "{text}");
    assert!(text.contains("tinymqtt_auth_failures_total 1\n"), "{text}");
}

#[test]
fn batch_sizes_fall_in_power_of_two_buckets() {
    let mut b = BatchSizes::default();
    for n in [1, 2, 3, 4, 5, 256, 257, 10_000] {
        b.count(n);
    }
    assert_eq!(b.buckets, [1, 1, 2, 1, 0, 0, 0, 0, 1, 2]);
    assert_eq!(b.mails, 1 + 2 + 3 + 4 + 5 + 256 + 257 + 10_000);
    let f = batch_family(&b);
    let h = f.get_metric()[0].get_histogram();
    let cumulative: Vec<u64> = h
        .get_bucket()
        .iter()
        .map(|b| b.cumulative_count())
        .collect();
    assert_eq!(cumulative, [1, 2, 4, 5, 5, 5, 5, 5, 6]);
    assert_eq!(h.get_sample_count(), 8);
}
