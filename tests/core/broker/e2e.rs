//! End-to-end smoke tests: real `ClientSession`s talking to a `Broker` on the simulated network.

use bytes::Bytes;
use tinymqtt::client::ClientConfig;
use tinymqtt::error::Initiator;
use tinymqtt::{ProtocolVersion, QoS, ReasonCode};

use crate::sim::{config, msg, Sim};

/// A client that does not reconnect.
fn once(v: ProtocolVersion, id: &'static str) -> ClientConfig {
    let mut c = config(v, id);
    c.reconnect = None;
    c
}

/// `(topic, payload, qos, retain)` of every message `cl` received.
fn messages(sim: &mut Sim, cl: crate::sim::Cl) -> Vec<(String, Bytes, QoS, bool)> {
    sim.messages(cl)
        .into_iter()
        .map(|p| (p.topic.to_string(), p.payload, p.qos, p.retain))
        .collect()
}

#[test]
fn qos_0_1_2_end_to_end_in_every_version() {
    for v in [
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ] {
        let mut sim = Sim::default_broker(7);
        let s = sim.connected(once(v, "sub"));
        let p = sim.connected(once(v, "pub"));
        sim.subscribe(s, &[("a/+", QoS::ExactlyOnce)]);
        let sent = [
            ("zero", QoS::AtMostOnce),
            ("one", QoS::AtLeastOnce),
            ("two", QoS::ExactlyOnce),
        ];
        let mut ids = Vec::new();
        for (payload, qos) in sent {
            ids.extend(sim.publish_settled(p, msg("a/b", payload, qos)));
        }
        let want: Vec<(String, Bytes, QoS, bool)> = sent
            .into_iter()
            .map(|(pl, q)| ("a/b".to_string(), Bytes::from(pl), q, false))
            .collect();
        assert_eq!(messages(&mut sim, s), want, "{v}");
        assert_eq!(ids.len(), 2, "{v}: QoS 1 and 2 have packet identifiers");
        for id in ids {
            assert_eq!(
                sim.published(p, id),
                ReasonCode::Success,
                "{v}: flow completed"
            );
        }
    }
}

#[test]
fn retained_message_reaches_a_later_subscriber_with_the_retain_flag() {
    let mut sim = Sim::default_broker(7);
    let p = sim.connected(once(ProtocolVersion::V3_1_1, "pub"));
    let mut kept = msg("r/1", "kept", QoS::AtLeastOnce);
    kept.retain = true;
    sim.publish_settled(p, kept);
    let s = sim.connected(once(ProtocolVersion::V5, "sub"));
    sim.subscribe(s, &[("r/#", QoS::AtLeastOnce)]);
    sim.settle();
    assert_eq!(
        messages(&mut sim, s),
        vec![(
            "r/1".to_string(),
            Bytes::from_static(b"kept"),
            QoS::AtLeastOnce,
            true
        )]
    );
    assert_eq!(sim.broker.stats().retained, 1);
}

#[test]
fn takeover_closes_the_first_connection_with_0x8e() {
    let mut sim = Sim::default_broker(7);
    let first = sim.connected(once(ProtocolVersion::V5, "same"));
    let _second = sim.connected(once(ProtocolVersion::V5, "same"));
    sim.settle();
    let (_, reason) = sim.disconnected(first);
    assert_eq!(reason.initiator, Initiator::Remote);
    assert_eq!(reason.reason_code, ReasonCode::SessionTakenOver);
    assert_eq!(sim.broker.stats().connections, 1);
}
