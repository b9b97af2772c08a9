//! The memory budget and the limits that keep one client from taking the broker's memory:
//! SUBSCRIBE amplification, retained messages, sessions, and what each refusal looks like on
//! the wire.

use std::time::Duration;

use tinymqtt::codec::{Connect, Packet, Publish};
use tinymqtt::error::ProtocolViolation;
use tinymqtt::{ProtocolVersion, QoS, ReasonCode};

use crate::broker::packets::{
    ack_of, publish, publishes, raw_with, refused, suback, subscribe, V311, V5,
};
use crate::sim::raw::Raw;
use crate::sim::{s, sub};

fn retained(t: &'static str, payload: &'static str) -> Publish {
    let mut p = publish(t, payload, QoS::AtMostOnce, 0);
    p.retain = true;
    p
}

/// Publishes `n` retained QoS 0 messages on `r/0` .. `r/{n-1}` from a fresh client.
fn retain_many(r: &mut Raw, n: usize) {
    let p = r.connect(V5, "retainer");
    for i in 0..n {
        let mut m = retained("r", "x");
        m.topic = tinymqtt::TopicName::new(&format!("r/{i}")).unwrap();
        r.send_packet(p, V5, m);
    }
}

#[test]
fn a_filter_repeated_in_one_subscribe_replays_each_retained_message_once() {
    let mut r = raw_with(|_| {});
    retain_many(&mut r, 20);
    let c = r.connect(V5, "sub");
    let filters = (0..200).map(|_| sub("#", QoS::AtMostOnce)).collect();
    r.send_packet(c, V5, subscribe(1, filters));
    // [MQTT-3.9.3-1]: one code per filter, in order.
    assert_eq!(suback(&mut r, c, V5).reason_codes.len(), 200);
    r.advance(Duration::from_millis(10));
    let got = publishes(&mut r, c, V5);
    assert_eq!(
        got.len(),
        20,
        "each retained message once, not once per filter"
    );
    assert!(got.iter().all(|p| p.retain));
    assert_eq!(r.broker.stats().subscriptions, 1);
}

#[test]
fn a_subscribe_with_more_filters_than_allowed_gets_disconnect_0x97() {
    for v in [V5, V311] {
        let mut r = raw_with(|c| c.max_subscribe_filters = 10);
        let c = r.connect(v, "sub");
        let filters = (0..11).map(|_| sub("a", QoS::AtMostOnce)).collect();
        r.send_packet(c, v, subscribe(1, filters));
        if v.is_v5() {
            r.expect_disconnect(c, ReasonCode::QuotaExceeded);
        } else {
            r.expect_closed(c);
        }
        r.expect_violation(c, ProtocolViolation::TooManyFilters);
        // At the limit it is served.
        let c2 = r.connect(v, "sub2");
        let filters = (0..10).map(|_| sub("a", QoS::AtMostOnce)).collect();
        r.send_packet(c2, v, subscribe(1, filters));
        assert_eq!(suback(&mut r, c2, v).reason_codes.len(), 10);
    }
}

#[test]
fn a_retained_replay_larger_than_the_queue_goes_in_pieces() {
    // A QoS 1 subscription with a window of 20 and room for 100 queued messages: 300 retained
    // messages go through the queue in pieces, as the subscriber acknowledges.
    let mut r = raw_with(|c| {
        c.max_queued_messages = 100;
        c.max_inflight_v3 = 20;
    });
    let p = r.connect(V5, "retainer");
    for i in 0..300u16 {
        let mut m = publish("r", "x", QoS::AtLeastOnce, i + 1);
        m.retain = true;
        m.topic = tinymqtt::TopicName::new(&format!("r/{i}")).unwrap();
        r.send_packet(p, V5, m);
    }
    let c = r.connect(V311, "sub");
    r.send_packet(c, V311, subscribe(1, vec![sub("r/#", QoS::AtLeastOnce)]));
    suback(&mut r, c, V311);
    let mut total = 0;
    for _ in 0..50 {
        r.advance(Duration::from_millis(1));
        let got = publishes(&mut r, c, V311);
        if got.is_empty() {
            break;
        }
        // Never more than the window and its prefetch at once.
        assert!(got.len() <= 40, "{} released at once", got.len());
        total += got.len();
        for m in got {
            let id = m.packet_id.expect("QoS 1");
            r.send(c, &[0x40, 0x02, (id.get() >> 8) as u8, id.get() as u8]);
        }
    }
    assert_eq!(total, 300, "every retained message, in pieces");
    assert_eq!(r.broker.dropped(&s("sub")), Some(0));
}

#[test]
fn a_retained_replay_beyond_max_retained_messages_drops_the_rest() {
    // A window of 1 and one queued message: of the first SUBSCRIBE's 4 retained messages, 2
    // go out and 2 wait in the replay; the second SUBSCRIBE's 4 find room for 2 more there
    // (max_retained_messages = 4 wait at most): 2 are dropped and counted.
    let mut r = raw_with(|c| {
        c.max_retained_messages = 4;
        c.max_queued_messages = 1;
        c.max_inflight_v3 = 1;
    });
    let p = r.connect(V5, "retainer");
    for i in 0..4u16 {
        let mut m = publish("r", "x", QoS::AtLeastOnce, i + 1);
        m.retain = true;
        m.topic = tinymqtt::TopicName::new(&format!("r/{i}")).unwrap();
        r.send_packet(p, V5, m);
    }
    let c = r.connect(V311, "sub");
    r.send_packet(c, V311, subscribe(1, vec![sub("r/#", QoS::AtLeastOnce)]));
    r.send_packet(c, V311, subscribe(2, vec![sub("r/+", QoS::AtLeastOnce)]));
    let mut total = 0;
    for _ in 0..20 {
        r.advance(Duration::from_millis(1));
        let got = r.packets(c, V311);
        if got.is_empty() {
            break;
        }
        for p in got {
            if let Packet::Publish(m) = p {
                total += 1;
                let id = m.packet_id.expect("QoS 1").get();
                r.send(c, &[0x40, 0x02, (id >> 8) as u8, id as u8]);
            }
        }
    }
    assert_eq!(total, 6);
    assert_eq!(r.broker.dropped(&s("sub")), Some(2));
}

#[test]
fn at_the_memory_limit_new_publishes_get_0x97_and_new_connections_connack_0x97() {
    let mut r = raw_with(|c| c.memory_limit = 64 << 10);
    let sub_conn = crate::broker::packets::subscriber(&mut r, V5, "sub", "t");
    let p = r.connect(V5, "pub");
    // Retained messages of 4 KiB fill the budget.
    let big: &'static str = Box::leak("x".repeat(4096).into_boxed_str());
    let mut refused_at = None;
    for i in 0..64u16 {
        let mut m = publish("t", big, QoS::AtLeastOnce, i + 1);
        m.retain = true;
        m.topic = tinymqtt::TopicName::new(&format!("t/{i}")).unwrap();
        r.send_packet(p, V5, m);
        let (kind, ack) = ack_of(r.expect_packet(p, V5));
        assert_eq!(kind, "PUBACK");
        if ack.reason_code == ReasonCode::QuotaExceeded {
            refused_at = Some(i);
            break;
        }
        // Accepted: nobody subscribes, so 0x10.
        assert_eq!(ack.reason_code, ReasonCode::NoMatchingSubscribers);
    }
    let refused_at = refused_at.expect("the budget refuses a PUBLISH before 256 KiB are held");
    assert!(refused_at > 4, "refused too early: {refused_at}");
    let stats = r.broker.stats();
    assert!(stats.memory_used <= 64 << 10, "{stats:?}");
    assert!(stats.memory_used > (64 << 10) - 2 * 4096, "{stats:?}");
    assert!(stats.refused_over_limits >= 1);
    // New connections: CONNACK 0x97, 3.1.x return code 3.
    assert_eq!(
        refused(&mut r, Connect::new(V5, s("late"))),
        ReasonCode::QuotaExceeded
    );
    let late = r.accept();
    r.send(
        late,
        &crate::sim::raw::hex("10 10 00 04 'MQTT' 04 02 00 3C 00 04 'late'"),
    );
    r.expect_bytes(late, &crate::sim::raw::hex("20 02 00 03"));
    r.expect_closed(late);
    // Existing sessions are served: a ping, and the subscriber still connected.
    r.send(p, &[0xC0, 0x00]);
    assert_eq!(r.expect_packet(p, V5), Packet::PingResp);
    r.expect_open(sub_conn);
    // Freeing memory (clearing retained messages) lets new messages in again.
    for i in 0..refused_at {
        let mut m = retained("t", "");
        m.topic = tinymqtt::TopicName::new(&format!("t/{i}")).unwrap();
        r.send_packet(p, V5, m);
    }
    r.send_packet(p, V5, publish("t", "ok", QoS::AtLeastOnce, 1000));
    let (_, ack) = ack_of(r.expect_packet(p, V5));
    assert_eq!(ack.reason_code, ReasonCode::Success);
}

#[test]
fn mqtt_3_3_1_5_retained_messages_beyond_their_count_are_refused_not_routed_unretained() {
    // [MQTT-3.3.1-5]: a retained PUBLISH is stored. One the store has no room for is not
    // taken at all: MQTT 5 QoS 1/2 get 0x97, and nobody receives it.
    let mut r = raw_with(|c| c.max_retained_messages = 3);
    let live = crate::broker::packets::subscriber(&mut r, V5, "live", "r/#");
    let p = r.connect(V5, "p");
    let send = |r: &mut Raw, conn, v, t: &'static str, qos, id| {
        let mut m = publish(t, "x", qos, id);
        m.retain = true;
        r.send_packet(conn, v, m);
    };
    for (i, t) in ["r/0", "r/1", "r/2"].into_iter().enumerate() {
        send(&mut r, p, V5, t, QoS::AtLeastOnce, i as u16 + 1);
        let (kind, ack) = ack_of(r.expect_packet(p, V5));
        assert_eq!((kind, ack.reason_code), ("PUBACK", ReasonCode::Success));
    }
    assert_eq!(publishes(&mut r, live, V5).len(), 3);
    send(&mut r, p, V5, "r/3", QoS::AtLeastOnce, 4);
    let (kind, ack) = ack_of(r.expect_packet(p, V5));
    assert_eq!(
        (kind, ack.reason_code),
        ("PUBACK", ReasonCode::QuotaExceeded)
    );
    assert!(ack.properties.reason_string.is_some());
    send(&mut r, p, V5, "r/4", QoS::ExactlyOnce, 5);
    let (kind, ack) = ack_of(r.expect_packet(p, V5));
    assert_eq!(
        (kind, ack.reason_code),
        ("PUBREC", ReasonCode::QuotaExceeded)
    );
    send(&mut r, p, V5, "r/5", QoS::AtMostOnce, 0);
    let old = r.connect(V311, "old");
    send(&mut r, old, V311, "r/6", QoS::AtLeastOnce, 7);
    let (kind, _) = ack_of(r.expect_packet(old, V311));
    assert_eq!(kind, "PUBACK"); // 3.1.x has no code: dropped, and counted
    assert!(publishes(&mut r, live, V5).is_empty(), "routed unretained");
    let stats = r.broker.stats();
    assert_eq!((stats.retained, stats.refused_over_limits), (3, 4));
    // The error PUBREC ended its flow: the identifier is free for a new message at once.
    r.send_packet(p, V5, publish("r/x", "y", QoS::ExactlyOnce, 5));
    let (kind, ack) = ack_of(r.expect_packet(p, V5));
    assert_eq!((kind, ack.reason_code), ("PUBREC", ReasonCode::Success));
    assert_eq!(publishes(&mut r, live, V5).len(), 1);
    // Replacing a retained topic is not one more; clearing one makes room.
    send(&mut r, p, V5, "r/0", QoS::AtLeastOnce, 8);
    r.send_packet(p, V5, retained("r/1", ""));
    send(&mut r, p, V5, "r/7", QoS::AtLeastOnce, 9);
    let codes: Vec<ReasonCode> = r
        .packets(p, V5)
        .into_iter()
        .map(|a| ack_of(a).1.reason_code)
        .collect();
    assert_eq!(codes, vec![ReasonCode::Success; 2]);
    assert_eq!(r.broker.stats().retained, 3);
    let c = r.connect(V5, "sub");
    r.send_packet(c, V5, subscribe(1, vec![sub("r/#", QoS::AtMostOnce)]));
    suback(&mut r, c, V5);
    r.advance(Duration::from_millis(1));
    let mut topics: Vec<String> = publishes(&mut r, c, V5)
        .iter()
        .map(|m| m.topic.as_str().to_owned())
        .collect();
    topics.sort();
    assert_eq!(topics, ["r/0", "r/2", "r/7"]);
}

#[test]
fn sessions_beyond_max_sessions_are_refused_with_0x97_and_return_code_3() {
    let mut r = raw_with(|c| c.max_sessions = 2);
    let persistent = |v: ProtocolVersion, id: &'static str| {
        let mut c = Connect::new(v, s(id));
        c.clean_start = false;
        if v.is_v5() {
            c.properties.session_expiry_interval = Some(600);
        }
        c
    };
    let (a, _) = r.connect_with(persistent(V5, "a"));
    let (b, _) = r.connect_with(persistent(V311, "b"));
    r.close(a);
    r.close(b);
    assert_eq!(r.broker.stats().sessions, 2);
    assert_eq!(
        refused(&mut r, persistent(V5, "c")),
        ReasonCode::QuotaExceeded
    );
    // Resuming an existing session is not one more.
    let (_a2, ack) = r.connect_with(persistent(V5, "a"));
    assert!(ack.session_present);
}

// ---- before CONNECT -------------------------------------------------------------------------

#[test]
fn mqtt_3_1_0_1_a_first_byte_other_than_connect_closes_before_more_is_read() {
    let mut r = raw_with(|_| {});
    let c = r.accept();
    // A PUBLISH header declaring 1 MiB: judged on its first byte alone.
    r.send(c, &[0x30]);
    r.expect_closed(c);
}

#[test]
fn a_connect_larger_than_max_connect_size_closes_once_its_header_is_read() {
    let mut r = raw_with(|c| c.max_connect_size = 1024);
    let c = r.accept();
    // CONNECT with a remaining length of 100,000 (a0 8d 06): refused before the body.
    r.send(c, &[0x10, 0xA0, 0x8D, 0x06]);
    r.expect_closed(c);
    // Once connected, the packet limit is max_packet_size again.
    let ok = r.connect(V5, "big");
    let payload: &'static str = Box::leak("y".repeat(4000).into_boxed_str());
    r.send_packet(ok, V5, publish("t", payload, QoS::AtLeastOnce, 1));
    let (_, ack) = ack_of(r.expect_packet(ok, V5));
    assert_eq!(ack.reason_code, ReasonCode::NoMatchingSubscribers); // accepted, unmatched
}

#[test]
fn connections_in_their_handshake_count_against_max_connections() {
    let mut r = raw_with(|c| c.max_connections = Some(2));
    // Two transports that never send CONNECT, and one more (the room for a takeover).
    let idle: Vec<_> = (0..3).map(|_| r.accept()).collect();
    for c in &idle {
        r.expect_open(*c);
    }
    // One more is closed before anything is read.
    let over = r.accept();
    r.expect_closed(over);
    r.expect_silence(over);
    // The connect timeout frees the slots.
    r.advance(Duration::from_secs(11));
    for c in idle {
        r.expect_closed(c);
    }
    r.connect(V5, "late");
}

#[test]
fn a_session_that_reconnects_leaves_no_timer_behind() {
    let mut r = raw_with(|c| c.sys_interval = None);
    let mut c = Connect::new(V5, s("back"));
    c.clean_start = false;
    c.keep_alive = 0;
    c.properties.session_expiry_interval = Some(86_400);
    for _ in 0..3 {
        let (conn, _) = r.connect_with(c.clone());
        assert_eq!(
            r.broker.poll_timeout(),
            None,
            "only the connection, without timers"
        );
        r.close(conn);
        assert!(r.broker.poll_timeout().is_some(), "the session's expiry");
    }
    let (_conn, ack) = r.connect_with(c);
    assert!(ack.session_present);
    // The expiry timers of the three disconnections are gone with them.
    assert_eq!(r.broker.poll_timeout(), None);
}

/// A 3.1.1 or MQTT 5 CONNECT for client `id` resuming its session (kept an hour).
fn persistent(v: ProtocolVersion, id: &'static str) -> Connect {
    let mut c = Connect::new(v, s(id));
    c.clean_start = false;
    if v.is_v5() {
        c.properties.session_expiry_interval = Some(3600);
    }
    c
}

/// Publishes `n` retained messages at `qos` on `r/0` .. `r/{n-1}`.
fn retain_at(r: &mut Raw, n: u16, qos: QoS) {
    let p = r.connect(V5, "retainer");
    for i in 0..n {
        let mut m = publish("r", "x", qos, i + 1);
        m.retain = true;
        m.topic = tinymqtt::TopicName::new(&format!("r/{i}")).unwrap();
        r.send_packet(p, V5, m);
    }
}

#[test]
fn a_retained_replay_cut_by_a_disconnect_goes_on_when_the_session_resumes() {
    // The replay moves a piece of 300 retained messages at a time: when the subscriber's
    // connection drops right after its SUBACK most still wait in the replay; its session lives
    // on and gets every one of them.
    let mut r = raw_with(|c| c.max_inflight_v3 = 20);
    retain_at(&mut r, 300, QoS::AtLeastOnce);
    let (c, _) = r.connect_with(persistent(V311, "sub"));
    r.send_packet(c, V311, subscribe(1, vec![sub("r/#", QoS::AtLeastOnce)]));
    suback(&mut r, c, V311);
    let first = publishes(&mut r, c, V311);
    assert!(!first.is_empty() && first.len() <= 40, "{}", first.len());
    r.close(c);
    r.advance(Duration::from_millis(1));
    let (c, ack) = r.connect_with(persistent(V311, "sub"));
    assert!(ack.session_present);
    let mut topics = std::collections::BTreeSet::new();
    for _ in 0..100 {
        r.advance(Duration::from_millis(1));
        let got = publishes(&mut r, c, V311);
        if got.is_empty() {
            break;
        }
        for m in got {
            topics.insert(m.topic.as_str().to_owned());
            let id = m.packet_id.expect("QoS 1").get();
            r.send(c, &[0x40, 0x02, (id >> 8) as u8, id as u8]);
        }
    }
    assert_eq!(topics.len(), 300, "every retained message, once resumed");
    assert_eq!(r.broker.dropped(&s("sub")), Some(0));
}

#[test]
fn a_retained_replay_cut_by_a_disconnect_is_queued_within_the_queue_limit() {
    // QoS 0 retained messages, 300 of them, and room for 100 queued: what the replay had not
    // sent when the connection dropped waits in the queue, up to its limit (even at QoS 0:
    // they were matched while the client was online); the rest is dropped and counted.
    let mut r = raw_with(|c| c.max_queued_messages = 100);
    retain_at(&mut r, 300, QoS::AtMostOnce);
    let (c, _) = r.connect_with(persistent(V5, "sub"));
    r.send_packet(c, V5, subscribe(1, vec![sub("r/#", QoS::AtMostOnce)]));
    suback(&mut r, c, V5);
    let before = publishes(&mut r, c, V5).len();
    assert!(before < 300, "the replay goes in pieces: {before} at once");
    r.close(c);
    r.advance(Duration::from_secs(1));
    let dropped = r.broker.dropped(&s("sub")).unwrap();
    let (c, _) = r.connect_with(persistent(V5, "sub"));
    r.advance(Duration::from_millis(1));
    let after = publishes(&mut r, c, V5);
    assert_eq!(after.len(), 100, "the queue's limit");
    assert!(
        after.iter().all(|m| m.retain),
        "sent as retained ([MQTT-3.3.1-8])"
    );
    assert_eq!(before as u64 + 100 + dropped, 300);
    // A session that ends with its connection keeps nothing.
    let (c, _) = r.connect_with(Connect::new(V5, s("gone")));
    r.send_packet(c, V5, subscribe(1, vec![sub("r/#", QoS::AtMostOnce)]));
    suback(&mut r, c, V5);
    r.close(c);
    r.advance(Duration::from_secs(1));
    assert_eq!(r.broker.dropped(&s("gone")), None);
}
