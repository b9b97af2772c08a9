//! Stored messages: retained messages, shared subscription groups, message expiry and the
//! offline queues with their caps.

use tinymqtt::broker::BrokerConfig;
use tinymqtt::codec::{Disconnect, Publish, SubscribeProperties};
use tinymqtt::QoS;

use crate::broker::simulated::routing::{numbers, retained, sorted_topics, texts};
use crate::broker::simulated::{V311, V5};
use crate::sim::{config, msg, persistent, secs, sub, Cl, Sim};

// ---- retained messages ----------------------------------------------------------------------

#[test]
fn mqtt_3_3_1_5_retained_message_replaced_and_delivered_to_new_subscribers_with_retain_1() {
    for (i, v) in [V311, V5].into_iter().enumerate() {
        let mut sim = Sim::default_broker(340 + i as u64);
        let p = sim.connected(config(v, "pub"));
        sim.publish_settled(p, retained("ret/a", "first"));
        sim.publish_settled(p, retained("ret/a", "second"));
        let mut b = msg("ret/b", "b", QoS::AtMostOnce);
        b.retain = true;
        sim.publish_settled(p, b);
        sim.publish_settled(p, msg("ret/c", "not retained", QoS::AtLeastOnce));
        let s = sim.connected(config(v, "late"));
        sim.subscribe(s, &[("ret/+", QoS::AtLeastOnce)]);
        sim.settle();
        let mut got: Vec<(String, String, QoS, bool)> = sim
            .messages(s)
            .into_iter()
            .map(|m| {
                (
                    m.topic.to_string(),
                    String::from_utf8_lossy(&m.payload).into_owned(),
                    m.qos,
                    m.retain,
                )
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("ret/a".into(), "second".into(), QoS::AtLeastOnce, true),
                ("ret/b".into(), "b".into(), QoS::AtMostOnce, true),
            ],
            "{v:?}: [MQTT-3.3.1-5] stored and replaced, [MQTT-3.3.1-8] sent with RETAIN 1"
        );
    }
}

#[test]
fn mqtt_3_3_1_10_empty_retained_payload_clears_and_is_delivered_as_normal() {
    for (i, v) in [V311, V5].into_iter().enumerate() {
        let mut sim = Sim::default_broker(342 + i as u64);
        let existing = sim.connected(config(v, "existing"));
        sim.subscribe(existing, &[("clr/#", QoS::AtLeastOnce)]);
        let p = sim.connected(config(v, "pub"));
        sim.publish_settled(p, retained("clr/a", "value"));
        sim.publish_settled(p, retained("clr/a", ""));
        let got = sim.messages_on(existing, "clr/a");
        assert_eq!(
            texts(&got),
            ["value", ""],
            "{v:?}: [MQTT-3.3.1-10] the empty retained message is forwarded as normal"
        );
        let late = sim.connected(config(v, "late"));
        sim.subscribe(late, &[("clr/#", QoS::AtLeastOnce)]);
        sim.settle();
        sim.no_message(late);
    }
}

#[test]
fn retained_message_is_delivered_at_the_lower_of_its_qos_and_the_granted_qos() {
    let mut sim = Sim::default_broker(344);
    let p = sim.connected(config(V5, "pub"));
    let mut m = retained("rq/a", "two");
    m.qos = QoS::ExactlyOnce;
    sim.publish_settled(p, m);
    let s = sim.connected(config(V5, "s"));
    sim.subscribe(s, &[("rq/a", QoS::AtLeastOnce)]);
    sim.settle();
    let (_, got) = sim.one_message(s, "rq/a");
    assert_eq!((got.qos, got.retain), (QoS::AtLeastOnce, true));
}

// ---- shared subscriptions -------------------------------------------------------------------

fn shared_member(sim: &mut Sim, id: &'static str, expiry: u32) -> Cl {
    let mut c = persistent(V5, id, expiry);
    c.reconnect = None;
    let m = sim.connected(c);
    sim.subscribe(m, &[("$share/g/jobs/#", QoS::AtLeastOnce)]);
    m
}

#[test]
fn mqtt_4_8_2_shared_subscription_delivers_each_message_to_one_member_round_robin() {
    let mut sim = Sim::default_broker(350);
    let a = shared_member(&mut sim, "a", 0);
    let b = shared_member(&mut sim, "b", 0);
    let all = sim.connected(config(V5, "all"));
    sim.subscribe(all, &[("jobs/#", QoS::AtLeastOnce)]);
    let p = sim.connected(config(V5, "pub"));
    for i in 0..6 {
        sim.publish_settled(p, msg("jobs/x", i.to_string(), QoS::AtLeastOnce));
    }
    let got_a = texts(&sim.messages(a));
    let got_b = texts(&sim.messages(b));
    assert_eq!(
        texts(&sim.messages(all)),
        numbers(0..6),
        "a plain subscriber gets all"
    );
    assert_eq!(
        got_a.len(),
        3,
        "round robin: a got {got_a:?}, b got {got_b:?}"
    );
    assert_eq!(
        got_b.len(),
        3,
        "round robin: a got {got_a:?}, b got {got_b:?}"
    );
    let mut union: Vec<String> = got_a.iter().chain(&got_b).cloned().collect();
    union.sort();
    assert_eq!(union, numbers(0..6), "each message to exactly one member");
}

#[test]
fn mqtt_4_8_2_shared_subscription_skips_offline_members() {
    let mut sim = Sim::default_broker(351);
    let a = shared_member(&mut sim, "a", 0);
    let b = shared_member(&mut sim, "b", 3600);
    sim.sever(b);
    sim.settle();
    let p = sim.connected(config(V5, "pub"));
    for i in 0..4 {
        sim.publish_settled(p, msg("jobs/x", i.to_string(), QoS::AtLeastOnce));
    }
    assert_eq!(
        texts(&sim.messages(a)),
        numbers(0..4),
        "the online member gets every message while the other is offline"
    );
}

#[test]
fn mqtt_3_3_1_3_shared_subscription_gets_no_retained_messages() {
    let mut sim = Sim::default_broker(352);
    let p = sim.connected(config(V5, "pub"));
    sim.publish_settled(p, retained("jobs/r", "stored"));
    let a = shared_member(&mut sim, "a", 0);
    sim.settle();
    sim.no_message(a);
}

// ---- message expiry -------------------------------------------------------------------------

fn expiring(t: &'static str, secs: u32) -> Publish {
    let mut p = msg(t, "e", QoS::AtLeastOnce);
    p.properties.message_expiry_interval = Some(secs);
    p
}

#[test]
fn mqtt_3_3_2_5_and_6_v5_message_expiry_for_an_offline_subscriber() {
    let mut sim = Sim::default_broker(360);
    let mut c = persistent(V5, "away", 3600);
    c.reconnect = None;
    let s = sim.connected(c);
    sim.subscribe(s, &[("exp/#", QoS::AtLeastOnce)]);
    sim.disconnect(s, Disconnect::default());
    sim.settle();
    let p = sim.connected(config(V5, "pub"));
    sim.publish_settled(p, expiring("exp/short", 10));
    sim.publish_settled(p, expiring("exp/long", 100));
    sim.run_for(secs(20));
    let (present, _) = sim.connect(s);
    assert!(present);
    sim.settle();
    let got = sim.messages(s);
    assert_eq!(
        sorted_topics(&got),
        ["exp/long"],
        "v5 [MQTT-3.3.2-5]: the expired message is not delivered"
    );
    let left = got[0].properties.message_expiry_interval;
    assert!(
        matches!(left, Some(79..=80)),
        "v5 [MQTT-3.3.2-6]: expiry reduced by the 20 s wait, got {left:?}"
    );
}

#[test]
fn mqtt_3_3_2_5_v5_retained_message_expires() {
    let mut sim = Sim::default_broker(361);
    let p = sim.connected(config(V5, "pub"));
    let mut m = expiring("rexp/a", 10);
    m.retain = true;
    sim.publish_settled(p, m);
    sim.run_for(secs(4));
    let early = sim.connected(config(V5, "early"));
    sim.subscribe(early, &[("rexp/#", QoS::AtLeastOnce)]);
    sim.settle();
    let (_, got) = sim.one_message(early, "rexp/a");
    assert!(
        matches!(got.properties.message_expiry_interval, Some(5..=6)),
        "v5 [MQTT-3.3.2-6]: {:?}",
        got.properties.message_expiry_interval
    );
    sim.run_for(secs(7));
    let late = sim.connected(config(V5, "late"));
    sim.subscribe(late, &[("rexp/#", QoS::AtLeastOnce)]);
    sim.settle();
    sim.no_message(late);
}

// ---- offline queues -------------------------------------------------------------------------

/// A 3.1.1 persistent subscriber offline while `n` messages at `qos` are published.
fn offline_queue(bc: BrokerConfig, seed: u64, n: usize, qos: QoS) -> Vec<String> {
    let mut sim = Sim::new(bc, seed);
    let mut c = persistent(V311, "sub", 0);
    c.reconnect = None;
    let s = sim.connected(c);
    sim.subscribe(s, &[("oq", QoS::AtLeastOnce)]);
    sim.sever(s);
    let p = sim.connected(config(V311, "pub"));
    for i in 0..n {
        sim.publish_settled(p, msg("oq", i.to_string(), qos));
    }
    let (present, _) = sim.connect(s);
    assert!(present);
    sim.settle();
    texts(&sim.messages(s))
}

#[test]
fn mqtt_3_1_2_5_qos0_is_queued_offline_only_when_configured() {
    let bc = BrokerConfig::default().with_queue_qos0_offline(false);
    assert!(offline_queue(bc.clone(), 370, 3, QoS::AtMostOnce).is_empty());
    let bc = bc.with_queue_qos0_offline(true);
    assert_eq!(offline_queue(bc, 371, 3, QoS::AtMostOnce), numbers(0..3));
}

#[test]
fn offline_queue_is_capped_at_max_queued_messages() {
    let bc = BrokerConfig::default().with_max_queued_messages(5);
    let got = offline_queue(bc, 372, 8, QoS::AtLeastOnce);
    assert_eq!(
        got,
        numbers(0..5),
        "the oldest five are kept, the newest refused"
    );
}

#[test]
fn mqtt_4_8_2_each_shared_group_gets_each_message_once_including_v311_members() {
    let mut sim = Sim::default_broker(394);
    let mut members = Vec::new();
    for (id, v, f) in [
        ("g1a", V5, "$share/g1/sh/#"),
        ("g1b", V311, "$share/g1/sh/#"),
        ("g2a", V311, "$share/g2/sh/+"),
    ] {
        let c = sim.connected(config(v, id));
        sim.subscribe_with(
            c,
            vec![sub(f, QoS::AtLeastOnce)],
            SubscribeProperties::default(),
        );
        members.push(c);
    }
    let p = sim.connected(config(V5, "pub"));
    for i in 0..6 {
        sim.publish_settled(p, msg("sh/x", i.to_string(), QoS::AtLeastOnce));
    }
    let a = texts(&sim.messages(members[0]));
    let b = texts(&sim.messages(members[1]));
    let mut g1: Vec<String> = a.iter().chain(&b).cloned().collect();
    g1.sort();
    assert_eq!(
        g1,
        numbers(0..6),
        "group g1 gets each message once: {a:?} {b:?}"
    );
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both g1 members get work: {a:?} {b:?}"
    );
    assert_eq!(
        texts(&sim.messages(members[2])),
        numbers(0..6),
        "the sole member of g2 gets every message"
    );
}

#[test]
fn mqtt_3_3_2_5_v5_message_expiring_while_waiting_for_the_window_is_not_delivered() {
    let mut sim = Sim::default_broker(395);
    let mut c = config(V5, "slow");
    c.manual_acks = true;
    c.properties.receive_maximum = std::num::NonZeroU16::new(1);
    let s = sim.connected(c);
    sim.subscribe(s, &[("win", QoS::AtLeastOnce)]);
    let p = sim.connected(config(V5, "pub"));
    sim.publish_settled(p, msg("win", "first", QoS::AtLeastOnce));
    let mut short = msg("win", "short-lived", QoS::AtLeastOnce);
    short.properties.message_expiry_interval = Some(5);
    sim.publish_settled(p, short);
    sim.publish_settled(p, msg("win", "last", QoS::AtLeastOnce));
    let held = sim.messages_with_tokens(s);
    assert_eq!(held.len(), 1, "{held:?}");
    sim.run_for(secs(10));
    let mut got = vec![String::from_utf8_lossy(&held[0].0.payload).into_owned()];
    let mut token = held[0].1.clone();
    while let Some(t) = token.take() {
        sim.ack(s, t);
        sim.settle();
        for (m, t) in sim.messages_with_tokens(s) {
            got.push(String::from_utf8_lossy(&m.payload).into_owned());
            token = t;
        }
    }
    assert_eq!(
        got,
        ["first", "last"],
        "v5 [MQTT-3.3.2-5]: the message expired while queued behind the window"
    );
}

#[test]
fn offline_queue_is_capped_at_max_queued_bytes() {
    let bc = BrokerConfig::default().with_max_queued_bytes(13);
    let mut sim = Sim::new(bc, 396);
    let mut c = persistent(V311, "sub", 0);
    c.reconnect = None;
    let s = sim.connected(c);
    sim.subscribe(s, &[("oq", QoS::AtLeastOnce)]);
    sim.sever(s);
    let p = sim.connected(config(V311, "pub"));
    for i in 0..5 {
        sim.publish_settled(p, msg("oq", format!("{i:04}"), QoS::AtLeastOnce));
    }
    sim.connect(s);
    sim.settle();
    assert_eq!(
        texts(&sim.messages(s)),
        ["0000", "0001"],
        "13 bytes hold two messages of 6 (topic and payload); the rest is refused"
    );
    assert_eq!(sim.broker.dropped(&crate::sim::s("sub")), Some(3));
}

#[test]
fn offline_queue_overflow_drops_the_oldest_qos0_first() {
    let bc = BrokerConfig::default()
        .with_max_queued_messages(3)
        .with_queue_qos0_offline(true);
    let mut sim = Sim::new(bc, 397);
    let mut c = persistent(V311, "sub", 0);
    c.reconnect = None;
    let s = sim.connected(c);
    sim.subscribe(s, &[("oq", QoS::AtLeastOnce)]);
    sim.sever(s);
    let p = sim.connected(config(V311, "pub"));
    for (payload, q) in [
        ("q0a", QoS::AtMostOnce),
        ("m1", QoS::AtLeastOnce),
        ("q0b", QoS::AtMostOnce),
        ("m2", QoS::AtLeastOnce), // drops q0a
        ("m3", QoS::AtLeastOnce), // drops q0b
        ("m4", QoS::AtLeastOnce), // refused
    ] {
        sim.publish_settled(p, msg("oq", payload, q));
    }
    sim.connect(s);
    sim.settle();
    assert_eq!(texts(&sim.messages(s)), ["m1", "m2", "m3"]);
    assert_eq!(sim.broker.dropped(&crate::sim::s("sub")), Some(3));
}
