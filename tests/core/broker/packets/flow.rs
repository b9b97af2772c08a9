//! Flow control and ordering at the edges of a connection: packets pipelined behind CONNECT
//! (and nothing processed behind a refused one), resends within the client's receive maximum,
//! a full window that holds back only PUBLISH, refused shared deliveries, and no DISCONNECT
//! before CONNACK.

use std::num::NonZeroU16;

use tinymqtt::codec::{Connect, Packet, PubAck};
use tinymqtt::{ByteStr, QoS};

use crate::broker::packets::{publish, raw, subscribe, V311, V5};
use crate::sim::raw::hex;
use crate::sim::sub;

/// MQTT 5 section 3.1.4: "Clients are allowed to send further MQTT Control Packets immediately
/// after sending a CONNECT packet". A SUBSCRIBE in the same read as CONNECT is answered after
/// the CONNACK, not treated as a protocol error.
#[test]
fn packets_pipelined_behind_connect_wait_for_the_connack() {
    let mut r = raw();
    let c = r.accept();
    let mut bytes = hex("10 0D 00 04 'MQTT' 04 02 00 3C 00 01 'p'");
    bytes.extend(hex("82 06 00 07 00 01 'x' 01"));
    r.send(c, &bytes);
    r.expect_bytes(c, &hex("20 02 00 00 90 03 00 07 01"));
    r.expect_open(c);
}

/// [MQTT-3.3.4-9] on resume: a client's receive maximum bounds the handed-over resends too.
/// Three QoS 1 messages are in flight unacknowledged when the link breaks; the client comes
/// back announcing a receive maximum of 1 and gets them one at a time, in order.
#[test]
fn mqtt_3_3_4_9_resends_on_resume_stay_within_the_new_receive_maximum() {
    let mut r = raw();
    let mut connect = Connect::new(V5, ByteStr::from_static("slow"));
    connect.properties.session_expiry_interval = Some(600);
    let (s, _) = r.connect_with(connect.clone());
    r.send_packet(s, V5, subscribe(1, vec![sub("q", QoS::AtLeastOnce)]));
    assert!(matches!(r.expect_packet(s, V5), Packet::SubAck(_)));
    let p = r.connect(V5, "pub");
    for (i, payload) in ["1", "2", "3"].into_iter().enumerate() {
        r.send_packet(
            p,
            V5,
            publish("q", payload, QoS::AtLeastOnce, 10 + i as u16),
        );
    }
    let first: Vec<_> = r.packets(s, V5);
    assert_eq!(
        first.len(),
        3,
        "all three delivered within the default window"
    );
    r.close(s);

    connect.clean_start = false;
    connect.properties.receive_maximum = NonZeroU16::new(1);
    let (s, ack) = r.connect_with(connect);
    assert!(ack.session_present);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let packets = r.packets(s, V5);
        assert_eq!(packets.len(), 1, "one resend at a time: {packets:?}");
        let Packet::Publish(p) = &packets[0] else {
            panic!("expected a resent PUBLISH, got {packets:?}");
        };
        assert!(p.dup, "[MQTT-3.3.1-1]: a resend has DUP set");
        seen.push(p.payload.clone());
        r.send_packet(s, V5, Packet::PubAck(PubAck::new(p.packet_id.unwrap())));
    }
    assert_eq!(
        seen,
        vec!["1", "2", "3"],
        "[MQTT-4.6.0-1]: in the original order"
    );
    r.expect_silence(s);
}

/// [MQTT-3.14.0-1]: the server does not send DISCONNECT before an accepting CONNACK; a shutdown
/// that finds a transport still waiting for CONNECT just closes it.
#[test]
fn mqtt_3_14_0_1_no_disconnect_before_connack_on_shutdown() {
    let mut r = raw();
    let early = r.accept();
    let v311 = r.connect(V311, "old");
    r.shutdown();
    r.expect_silence(early);
    r.expect_closed(early);
    r.expect_silence(v311);
    r.expect_closed(v311);
}

/// A fault whose reason code only CONNACK may carry (here 0x84, a second CONNECT with an unknown
/// protocol level) closes a connected MQTT 5 client with DISCONNECT 0x82, a code DISCONNECT
/// allows ([MQTT-3.1.0-2]: a second CONNECT is a protocol violation). Found by the fuzzer.
#[test]
fn mqtt_3_1_0_2_second_connect_with_unknown_level_is_a_protocol_error() {
    let mut r = raw();
    let c = r.connect(V5, "c");
    r.send(c, &hex("10 0D 00 04 'MQTT' 06 02 00 3C 00 01 'x'"));
    r.expect_disconnect(c, tinymqtt::ReasonCode::ProtocolError);
}

/// `$SYS/broker/...` statistics, as in Mosquitto: published every `sys_interval` as retained
/// QoS 0 messages; a `#` subscriber does not see them ([MQTT-4.7.2-1]); a late subscriber gets
/// them retained; `sys_interval: None` turns them off.
#[test]
fn sys_statistics_are_published_at_the_interval() {
    let mut r = raw();
    let sys = r.connect(V311, "sys");
    r.send_packet(
        sys,
        V311,
        subscribe(1, vec![sub("$SYS/broker/#", QoS::AtMostOnce)]),
    );
    assert!(matches!(r.expect_packet(sys, V311), Packet::SubAck(_)));
    let all = r.connect(V311, "all");
    r.send_packet(all, V311, subscribe(1, vec![sub("#", QoS::AtMostOnce)]));
    assert!(matches!(r.expect_packet(all, V311), Packet::SubAck(_)));
    r.send(sys, &hex("C0 00"));
    r.send(all, &hex("C0 00"));
    let _ = (r.packets(sys, V311), r.packets(all, V311));

    r.advance(crate::sim::secs(10));
    let got: Vec<(String, String)> = r
        .packets(sys, V311)
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((
                p.topic.to_string(),
                String::from_utf8(p.payload.to_vec()).unwrap(),
            )),
            _ => None,
        })
        .collect();
    let value = |t: &str| {
        got.iter()
            .find(|(topic, _)| topic == t)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(value("$SYS/broker/clients/connected"), Some("2"), "{got:?}");
    assert_eq!(value("$SYS/broker/subscriptions/count"), Some("2"));
    assert_eq!(value("$SYS/broker/uptime"), Some("10 seconds"));
    assert!(value("$SYS/broker/bytes/received").is_some());
    assert!(
        r.packets(all, V311).is_empty(),
        "[MQTT-4.7.2-1]: '#' does not match $SYS"
    );

    let late = r.connect(V5, "late");
    r.send_packet(
        late,
        V5,
        subscribe(2, vec![sub("$SYS/broker/uptime", QoS::AtMostOnce)]),
    );
    let packets = r.packets(late, V5);
    let retained = packets
        .iter()
        .any(|p| matches!(p, Packet::Publish(p) if p.retain && p.topic == "$SYS/broker/uptime"));
    assert!(
        retained,
        "a late subscriber gets the retained value: {packets:?}"
    );

    let mut off = crate::broker::packets::raw_with(|c| c.sys_interval = None);
    let c = off.connect(V311, "c");
    off.send_packet(c, V311, subscribe(1, vec![sub("$SYS/#", QoS::AtMostOnce)]));
    assert!(matches!(off.expect_packet(c, V311), Packet::SubAck(_)));
    off.advance(crate::sim::secs(60));
    assert!(
        off.packets(c, V311).is_empty(),
        "no $SYS with sys_interval None"
    );
}

/// [MQTT-3.1.4-6] (v5): after refusing a CONNECT the broker processes nothing that came after
/// it: a PUBLISH in the same read reaches no subscriber and gets no PUBACK.
#[test]
fn mqtt_3_1_4_6_v5_nothing_after_a_refused_connect_is_processed() {
    let mut r = crate::broker::packets::raw_with(|c| c.max_client_id_len = 4);
    let spy = crate::broker::packets::subscriber(&mut r, V5, "spy", "#");
    let c = r.accept();
    // CONNECT with client id "toolong", then PUBLISH QoS 1 "t" id 1, in one read.
    let mut bytes = hex("10 14 00 04 'MQTT' 05 02 00 3C 00 00 07 'toolong'");
    bytes.extend(hex("32 07 00 01 't' 00 01 00 'x'"));
    r.send(c, &bytes);
    assert_eq!(
        r.expect_connack(c, V5).reason_code,
        tinymqtt::ReasonCode::ClientIdentifierNotValid
    );
    r.expect_closed(c);
    r.expect_silence(c);
    assert!(crate::broker::packets::publishes(&mut r, spy, V5).is_empty());
}

/// [MQTT-3.3.4-10] (v5): a full in-flight window holds back only PUBLISH: PINGRESP, SUBACK
/// and UNSUBACK still go out at once.
#[test]
fn mqtt_3_3_4_10_v5_full_window_does_not_delay_other_packets() {
    let mut r = raw();
    let mut connect = Connect::new(V5, ByteStr::from_static("slow"));
    connect.properties.receive_maximum = NonZeroU16::new(1);
    let (s, _) = r.connect_with(connect);
    r.send_packet(s, V5, subscribe(1, vec![sub("q", QoS::AtLeastOnce)]));
    assert!(matches!(r.expect_packet(s, V5), Packet::SubAck(_)));
    let p = r.connect(V5, "pub");
    for id in 1..=3 {
        r.send_packet(p, V5, publish("q", "m", QoS::AtLeastOnce, id));
    }
    let first = r.packets(s, V5);
    assert_eq!(first.len(), 1, "the window holds one: {first:?}");
    r.send(s, &hex("C0 00"));
    r.expect_bytes(s, &hex("D0 00"));
    r.send_packet(s, V5, subscribe(2, vec![sub("other", QoS::AtMostOnce)]));
    assert!(matches!(r.expect_packet(s, V5), Packet::SubAck(a) if a.packet_id.get() == 2));
    r.expect_silence(s);
    let Packet::Publish(m) = &first[0] else {
        panic!("expected PUBLISH, got {first:?}");
    };
    r.send_packet(s, V5, Packet::PubAck(PubAck::new(m.packet_id.unwrap())));
    assert_eq!(
        r.packets(s, V5).len(),
        1,
        "the next one once the first is acknowledged"
    );
}

/// [MQTT-4.8.2-6] (v5): a shared subscriber that answers PUBACK 0x80 gets the message
/// discarded; it is not offered to another member of the group.
#[test]
fn mqtt_4_8_2_6_v5_refused_shared_delivery_is_not_sent_to_another_member() {
    let mut r = raw();
    let members = [
        crate::broker::packets::subscriber(&mut r, V5, "m1", "$share/g/job"),
        crate::broker::packets::subscriber(&mut r, V5, "m2", "$share/g/job"),
    ];
    let p = r.connect(V5, "pub");
    r.send_packet(p, V5, publish("job", "once", QoS::AtLeastOnce, 1));
    let got: Vec<_> = members
        .iter()
        .map(|m| crate::broker::packets::publishes(&mut r, *m, V5))
        .collect();
    let (taker, other) = if got[0].len() == 1 { (0, 1) } else { (1, 0) };
    assert_eq!((got[taker].len(), got[other].len()), (1, 0), "{got:?}");
    let mut refusal = PubAck::new(got[taker][0].packet_id.unwrap());
    refusal.reason_code = tinymqtt::ReasonCode::UnspecifiedError;
    r.send_packet(members[taker], V5, Packet::PubAck(refusal));
    r.expect_silence(members[other]);
    r.expect_silence(members[taker]);
    r.expect_open(members[taker]);
}

/// A shared-group member with a persistent session (600 s unless `expiry`), receive maximum 1.
fn shared_member(r: &mut crate::sim::raw::Raw, id: &'static str, expiry: u32) -> Connect {
    let mut connect = Connect::new(V5, ByteStr::from_static(id));
    connect.properties.session_expiry_interval = Some(expiry);
    connect.properties.receive_maximum = NonZeroU16::new(1);
    let (c, _) = r.connect_with(connect.clone());
    r.send_packet(
        c,
        V5,
        subscribe(1, vec![sub("$share/g/job", QoS::AtLeastOnce)]),
    );
    assert!(matches!(r.expect_packet(c, V5), Packet::SubAck(_)));
    connect.clean_start = false;
    connect
}

/// [MQTT-4.8.2-4] and [MQTT-4.8.2-5] (v5): messages a shared member took (in flight or queued
/// behind its window) stay with its session: it gets them when it reconnects, and when its
/// session ends first they are not handed to another member.
#[test]
fn mqtt_4_8_2_4_and_5_v5_a_shared_members_messages_stay_with_its_session() {
    for reconnect in [true, false] {
        let mut r = raw();
        let m1 = shared_member(&mut r, "m1", 10);
        let m2 = shared_member(&mut r, "m2", 600);
        // m2 goes offline: both messages go to m1, one in flight, one queued.
        let c2 = r.connect_with(m2.clone()).0;
        r.close(c2);
        let c1 = r.connect_with(m1.clone()).0;
        let p = r.connect(V5, "pub");
        r.send_packet(p, V5, publish("job", "1", QoS::AtLeastOnce, 1));
        r.send_packet(p, V5, publish("job", "2", QoS::AtLeastOnce, 2));
        assert_eq!(
            crate::broker::packets::publishes(&mut r, c1, V5).len(),
            1,
            "window of one"
        );
        r.close(c1);
        let c2 = r.connect_with(m2.clone()).0;
        if reconnect {
            let c1 = r.connect_with(m1.clone()).0;
            let first = crate::broker::packets::publishes(&mut r, c1, V5);
            assert_eq!(first.len(), 1);
            assert!(first[0].dup, "the in-flight one is resent");
            r.send_packet(
                c1,
                V5,
                Packet::PubAck(PubAck::new(first[0].packet_id.unwrap())),
            );
            let second = crate::broker::packets::publishes(&mut r, c1, V5);
            assert_eq!(second.len(), 1);
            assert_eq!(&second[0].payload[..], b"2");
        } else {
            r.advance(std::time::Duration::from_secs(11));
            r.expect_open(c2);
        }
        let to_m2 = crate::broker::packets::publishes(&mut r, c2, V5);
        assert!(to_m2.is_empty(), "m2 got {to_m2:?}");
    }
}

/// The default in-flight window towards a 3.1.1 client, which announces none
/// (`BrokerConfig::max_inflight_v3`): 100 QoS 1 messages go out unacknowledged and no more;
/// each PUBACK lets the next one go.
#[test]
fn the_default_window_towards_a_v311_client_is_100() {
    let mut r = raw();
    let s = r.connect(V311, "sub");
    r.send_packet(s, V311, subscribe(1, vec![sub("w", QoS::AtLeastOnce)]));
    assert!(matches!(r.expect_packet(s, V311), Packet::SubAck(_)));
    let p = r.connect(V5, "pub");
    // Three batches of 50, each acknowledged before the next (the publisher's own window).
    let mut sent = Vec::new();
    for batch in 0..3u16 {
        for id in 1..=50 {
            r.send_packet(p, V5, publish("w", "m", QoS::AtLeastOnce, id));
        }
        r.advance(std::time::Duration::from_millis(1));
        let acks = r.packets(p, V5);
        assert_eq!(acks.len(), 50, "batch {batch} acknowledged: {acks:?}");
        sent.extend(r.packets(s, V311));
    }
    sent.extend(r.packets(s, V311));
    assert_eq!(sent.len(), 100, "the window holds 100 unacknowledged");
    let Packet::Publish(m) = &sent[0] else {
        panic!("expected PUBLISH, got {:?}", sent[0]);
    };
    r.send_packet(s, V311, Packet::PubAck(PubAck::new(m.packet_id.unwrap())));
    r.advance(std::time::Duration::from_millis(1));
    let next = r.packets(s, V311);
    assert_eq!(next.len(), 1, "one more once one is acknowledged: {next:?}");
    assert!(matches!(&next[0], Packet::Publish(_)));
}
