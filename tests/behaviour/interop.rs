//! Our client on this runtime against Debian's `mosquitto` broker on 127.0.0.1, in every
//! protocol version and at every QoS (`make test` installs mosquitto; a missing one fails).

use std::net::SocketAddr;

use super::{config, msg, next_message, sub};
use crate::peers::Mosquitto;
use crate::rt;
use tinymqtt::{ProtocolVersion, QoS, ReasonCode};

const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

fn addr(m: &Mosquitto) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], m.port))
}

#[test]
fn our_client_talks_to_mosquitto_at_qos_0_1_2_in_every_version() {
    let m = Mosquitto::start();
    for v in VERSIONS {
        let s = rt::connect(addr(&m), config(v, "ours-sub")).unwrap();
        let granted = s.subscribe(sub("ours/#", QoS::ExactlyOnce)).unwrap();
        assert_eq!(granted.reason_codes, vec![ReasonCode::GrantedQoS2], "{v:?}");
        let p = rt::connect(addr(&m), config(v, "ours-pub")).unwrap();
        for (qos, payload) in [
            (QoS::AtMostOnce, "zero"),
            (QoS::AtLeastOnce, "one"),
            (QoS::ExactlyOnce, "two"),
        ] {
            let ack = p.publish(msg("ours/x", payload, qos, false)).unwrap();
            assert_eq!(ack.packet_id.is_some(), qos != QoS::AtMostOnce, "{v:?}");
            assert_eq!(ack.reason_code, ReasonCode::Success, "{v:?}");
            let got = next_message(&s);
            assert_eq!(
                (got.topic.as_str(), &got.payload[..], got.qos),
                ("ours/x", payload.as_bytes(), qos),
                "{v:?}"
            );
        }
        p.disconnect();
        s.disconnect();
    }
}

#[test]
fn our_client_gets_retained_and_queued_messages_from_mosquitto() {
    let m = Mosquitto::start();
    for v in VERSIONS {
        // Ids per version: the sessions of the previous round are still stored.
        let p = rt::connect(addr(&m), config(v, &format!("rpub-{}", v as u8))).unwrap();
        let retained = format!("ours/retained/{}", v as u8);
        p.publish(msg(&retained, "kept", QoS::AtLeastOnce, true))
            .unwrap();

        let mut durable = config(v, &format!("durable-{}", v as u8));
        durable.clean_start = false;
        if v == ProtocolVersion::V5 {
            durable.properties.session_expiry_interval = Some(60);
        }
        let s = rt::connect(addr(&m), durable.clone()).unwrap();
        s.subscribe(sub(&format!("ours/+/{}", v as u8), QoS::AtLeastOnce))
            .unwrap();
        let got = next_message(&s);
        assert!(got.retain, "{v:?}: retained flag");
        assert_eq!(&got.payload[..], b"kept", "{v:?}");
        s.disconnect();

        let queued = format!("ours/queued/{}", v as u8);
        p.publish(msg(&queued, "while away", QoS::AtLeastOnce, false))
            .unwrap();
        let s = rt::connect(addr(&m), durable).unwrap();
        let got = next_message(&s);
        assert_eq!(
            (got.topic.as_str(), &got.payload[..]),
            (queued.as_str(), &b"while away"[..]),
            "{v:?}"
        );
        p.publish(msg(&retained, "", QoS::AtLeastOnce, true))
            .unwrap();
        s.disconnect();
        p.disconnect();
    }
}
