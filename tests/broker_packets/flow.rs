//! Flow control and ordering at the edges of a connection: packets pipelined behind CONNECT,
//! resends within the client's receive maximum, and no DISCONNECT before CONNACK.

use std::num::NonZeroU16;

use tinymqtt::codec::{Connect, Packet, PubAck};
use tinymqtt::{ByteStr, QoS};

use crate::sim::raw::hex;
use crate::sim::sub;
use crate::{publish, raw, subscribe, V311, V5};

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

    let mut off = crate::raw_with(|c| c.sys_interval = None);
    let c = off.connect(V311, "c");
    off.send_packet(c, V311, subscribe(1, vec![sub("$SYS/#", QoS::AtMostOnce)]));
    assert!(matches!(off.expect_packet(c, V311), Packet::SubAck(_)));
    off.advance(crate::sim::secs(60));
    assert!(
        off.packets(c, V311).is_empty(),
        "no $SYS with sys_interval None"
    );
}
