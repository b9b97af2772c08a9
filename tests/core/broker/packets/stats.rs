//! The broker's counters ([`BrokerStats`]) after scripted runs, and the Mosquitto `$SYS` tree
//! they feed, on the fake clock: every count is exact.

use std::num::NonZeroU32;
use std::time::Duration;

use bytes::Bytes;
use tinymqtt::broker::{BrokerStats, DropReason};
use tinymqtt::codec::{Connect, Packet, Publish};
use tinymqtt::{QoS, ReasonCode, TopicName};

use crate::broker::packets::{publish, publishes, raw_with, suback, subscribe, V311, V5};
use crate::sim::raw::{hex, Raw};
use crate::sim::{s, sub};

fn sized(t: &'static str, len: usize, qos: QoS, id: u16) -> Publish {
    let mut p = publish(t, "", qos, id);
    p.payload = Bytes::from(vec![b'x'; len]);
    p
}

fn stats(r: &Raw) -> BrokerStats {
    r.broker.stats()
}

#[test]
fn the_snapshot_counts_connections_messages_by_qos_and_drops_by_reason() {
    let mut r = raw_with(|_| {});
    // A refused CONNECT: 3.1.1, empty client id without clean session (return code 2).
    let bad = r.accept();
    r.send(bad, &hex("10 0C 00 04 'MQTT' 04 00 00 3C 00 00"));
    r.expect_closed(bad);
    // A subscriber taking packets of 64 bytes at most, plainly at QoS 1 and in a shared group.
    let mut c = Connect::new(V5, s("sub"));
    c.properties.maximum_packet_size = NonZeroU32::new(64);
    let (sc, _) = r.connect_with(c);
    let filters = vec![
        sub("t", QoS::AtLeastOnce),
        sub("$share/g/t", QoS::AtMostOnce),
    ];
    r.send_packet(sc, V5, subscribe(1, filters));
    suback(&mut r, sc, V5);
    let pc = r.connect(V5, "pub");
    // Each message reaches the session twice (its plain and its shared subscription).
    r.send_packet(pc, V5, sized("t", 1, QoS::AtMostOnce, 0));
    r.send_packet(pc, V5, sized("t", 1, QoS::AtMostOnce, 0));
    r.send_packet(pc, V5, sized("t", 2, QoS::AtLeastOnce, 1));
    // Too large for the subscriber: both deliveries dropped.
    r.send_packet(pc, V5, sized("t", 100, QoS::AtMostOnce, 0));
    // $SYS is the broker's: refused as not authorized.
    r.send_packet(pc, V5, sized("$SYS/x", 3, QoS::AtMostOnce, 0));
    r.advance(Duration::from_millis(1));
    let got = publishes(&mut r, sc, V5);
    assert_eq!(got.len(), 6, "{got:?}");
    let st = stats(&r);
    assert_eq!(st.connections, 2);
    assert_eq!(st.connections_total, 3);
    assert_eq!(st.connections_maximum, 2);
    assert_eq!(st.connects, 3);
    assert_eq!(st.refused.get(ReasonCode::ClientIdentifierNotValid), 1);
    assert_eq!(st.refused.total(), 1);
    assert_eq!(st.sessions_online, 2);
    assert_eq!(st.sessions_offline(), 0);
    assert_eq!(st.subscriptions, 2);
    assert_eq!(st.shared_groups, 1);
    assert_eq!(st.publish_received.0, [3, 1, 0]);
    assert_eq!(st.publish_received_bytes.0, [102, 2, 0]);
    assert_eq!(st.messages_received, 4);
    // Two at QoS 0 twice, the QoS 1 one at QoS 1 (plain) and QoS 0 (shared).
    assert_eq!(st.publish_sent.0, [5, 1, 0]);
    assert_eq!(st.publish_sent_bytes.0, [6, 2, 0]);
    assert_eq!(st.messages_sent, 6);
    assert_eq!(st.dropped_by.get(DropReason::TooLarge), 2);
    assert_eq!(st.dropped_by.get(DropReason::NotAuthorized), 1);
    assert_eq!(st.publishes_denied, 1);
    assert_eq!(st.dropped_by.total(), 3);
    assert_eq!(st.inflight, 1, "the QoS 1 delivery waits for its PUBACK");
    let id = got
        .iter()
        .find_map(|p| p.packet_id)
        .expect("a QoS 1 delivery");
    r.send_packet(sc, V5, Packet::PubAck(tinymqtt::codec::PubAck::new(id)));
    r.advance(Duration::from_millis(1));
    assert_eq!(stats(&r).inflight, 0);
    // The clients leave: the gauges fall, the counters stay.
    r.close(sc);
    r.close(pc);
    r.advance(Duration::from_millis(1));
    let st = stats(&r);
    assert_eq!((st.connections, st.sessions), (0, 0));
    assert_eq!(st.connections_maximum, 2);
    assert_eq!(st.publish_sent.0, [5, 1, 0]);
}

#[test]
fn offline_sessions_count_queued_dropped_and_expired_messages() {
    let mut r = raw_with(|c| c.max_queued_messages = 2);
    // A persistent 3.1.1 session subscribed at QoS 1, then offline.
    let mut c = Connect::new(V311, s("off"));
    c.clean_start = false;
    let (oc, _) = r.connect_with(c.clone());
    r.send_packet(oc, V311, subscribe(1, vec![sub("q", QoS::AtLeastOnce)]));
    suback(&mut r, oc, V311);
    r.close(oc);
    let pc = r.connect(V5, "pub");
    // The first expires after a second; four more find the queue full after one.
    let mut short = sized("q", 4, QoS::AtLeastOnce, 1);
    short.properties.message_expiry_interval = Some(1);
    r.send_packet(pc, V5, short);
    for id in 2..=5 {
        r.send_packet(pc, V5, sized("q", 4, QoS::AtLeastOnce, id));
    }
    r.advance(Duration::from_millis(1));
    let st = stats(&r);
    assert_eq!(st.sessions_offline(), 1);
    assert_eq!(st.queued, 2);
    assert!(st.queued_bytes > 8);
    assert_eq!(st.stored_messages(), 2);
    assert_eq!(st.dropped, 3);
    assert_eq!(st.dropped_by.get(DropReason::QueueFull), 3);
    // Back after the first expired: it is dropped, the other goes out.
    r.advance(Duration::from_secs(2));
    let (oc, _) = r.connect_with(c);
    r.advance(Duration::from_millis(1));
    assert_eq!(publishes(&mut r, oc, V311).len(), 1);
    let st = stats(&r);
    assert_eq!(st.dropped_by.get(DropReason::Expired), 1);
    assert_eq!(st.publish_sent.0, [0, 1, 0]);
    assert_eq!(st.queued, 0);
}

#[test]
fn sys_publishes_mosquittos_topics_with_load_averages_from_the_counters() {
    let mut r = raw_with(|c| c.sys_interval = Some(Duration::from_secs(10)));
    let sc = r.connect(V311, "watcher");
    let filters = vec![sub("$SYS/broker/#", QoS::AtMostOnce)];
    r.send_packet(sc, V311, subscribe(1, filters));
    suback(&mut r, sc, V311);
    let pc = r.connect(V311, "pub");
    for _ in 0..60 {
        r.send_packet(pc, V311, sized("nobody", 1, QoS::AtMostOnce, 0));
    }
    // The first round, ten seconds after the start.
    r.advance(Duration::from_secs(10));
    let got = publishes(&mut r, sc, V311);
    let get = |t: &str| {
        let t = TopicName::new(t).unwrap();
        let p = got.iter().find(|p| p.topic == t);
        p.map(|p| String::from_utf8(p.payload.to_vec()).unwrap())
    };
    // 60 in 10 s is 360 a minute: 360 * (1 - e^(-10/60)) and 360 * (1 - e^(-10/300)).
    let load = "$SYS/broker/load/publish/received";
    assert_eq!(get(&format!("{load}/1min")).as_deref(), Some("55.27"));
    assert_eq!(get(&format!("{load}/5min")).as_deref(), Some("11.80"));
    assert_eq!(get("$SYS/broker/clients/connected").as_deref(), Some("2"));
    assert_eq!(get("$SYS/broker/clients/maximum").as_deref(), Some("2"));
    assert_eq!(
        get("$SYS/broker/publish/messages/received").as_deref(),
        Some("60")
    );
    assert_eq!(get("$SYS/broker/subscriptions/count").as_deref(), Some("1"));
    assert_eq!(get("$SYS/broker/uptime").as_deref(), Some("10 seconds"));
    assert!(got.iter().all(|p| p.retain || p.topic.starts_with("$SYS/")));
    // A quiet interval: the one-minute average decays by e^(-10/60).
    r.advance(Duration::from_secs(10));
    let got = publishes(&mut r, sc, V311);
    let t = TopicName::new(&format!("{load}/1min")).unwrap();
    let p = got.iter().find(|p| p.topic == t).expect("the load again");
    assert_eq!(&p.payload[..], b"46.78");
}

#[test]
fn the_connected_event_says_who_connected_and_how() {
    let mut r = raw_with(|_| {});
    let conn = r.accept();
    let mut c = Connect::new(V5, s("dev"));
    c.clean_start = false;
    c.keep_alive = 30;
    c.username = Some(s("alice"));
    r.send_packet(conn, V5, c);
    r.expect_connack(conn, V5);
    let info = r
        .events()
        .iter()
        .find_map(|e| match e {
            tinymqtt::broker::BrokerEvent::Connected {
                conn: c,
                client_id,
                info,
                ..
            } if *c == conn && client_id.as_str() == "dev" => Some(info.clone()),
            _ => None,
        })
        .expect("a Connected event");
    assert_eq!(info.listener, None, "the runtimes name listeners");
    assert_eq!(info.username.as_deref(), Some("alice"));
    assert_eq!(info.protocol, V5);
    assert_eq!(info.keep_alive, 30);
    assert!(!info.clean_start);
    assert!(!info.session_present);
}
