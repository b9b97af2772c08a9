//! What the broker does with messages: QoS end to end under chunking and latency, flow
//! control, topic matching, overlapping and shared subscriptions, subscription options,
//! retained messages, message expiry and offline queues.

use std::num::NonZeroU32;
use std::time::Duration;

use bytes::Bytes;
use tinymqtt::broker::BrokerConfig;
use tinymqtt::client::Event;
use tinymqtt::codec::{
    Publish, RetainHandling, SubscribeProperties, Subscription, SubscriptionOptions,
};
use tinymqtt::{ProtocolVersion, QoS, ReasonCode};

use crate::sim::{config, filter, msg, sub, Cl, Sim};

const V3_1: ProtocolVersion = ProtocolVersion::V3_1;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

pub(crate) fn texts(msgs: &[Publish]) -> Vec<String> {
    msgs.iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

pub(crate) fn numbers(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

pub(crate) fn sorted_topics(msgs: &[Publish]) -> Vec<String> {
    let mut t: Vec<String> = msgs.iter().map(|p| p.topic.to_string()).collect();
    t.sort();
    t
}

fn qos_of(i: usize) -> QoS {
    match i % 3 {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn topic_of(q: QoS) -> &'static str {
    match q {
        QoS::AtMostOnce => "e2e/q0",
        QoS::AtLeastOnce => "e2e/q1",
        QoS::ExactlyOnce => "e2e/q2",
    }
}

/// 30 messages at QoS 0, 1 and 2 from a `vp` publisher to a `vs` subscriber at QoS 2.
fn end_to_end(
    seed: u64,
    vp: ProtocolVersion,
    vs: ProtocolVersion,
    chunk: usize,
    latency: Duration,
) {
    let mut sim = Sim::default_broker(seed);
    sim.max_chunk = chunk;
    sim.latency = latency;
    let s = sim.connected(config(vs, "sub"));
    assert_eq!(
        sim.subscribe(s, &[("e2e/#", QoS::ExactlyOnce)]),
        vec![ReasonCode::GrantedQoS2]
    );
    let p = sim.connected(config(vp, "pub"));
    let mut ids = Vec::new();
    for i in 0..30 {
        let q = qos_of(i);
        ids.extend(sim.publish(p, msg(topic_of(q), i.to_string(), q)));
    }
    sim.settle();
    for id in ids {
        assert_eq!(
            sim.published(p, id),
            ReasonCode::Success,
            "seed {seed} {vp:?}->{vs:?}"
        );
    }
    for q in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let got = sim.messages_on(s, topic_of(q));
        let want: Vec<String> = (0..30)
            .filter(|i| qos_of(*i) == q)
            .map(|i| i.to_string())
            .collect();
        assert_eq!(
            texts(&got),
            want,
            "seed {seed} {vp:?}->{vs:?} {q:?}: [MQTT-4.6.0-6] each once, in order"
        );
        assert!(
            got.iter().all(|m| m.qos == q && !m.retain && !m.dup),
            "{got:?}"
        );
    }
    sim.no_message(s);
}

#[test]
fn mqtt_4_3_qos_0_1_2_end_to_end_byte_by_byte() {
    for seed in 0..3 {
        for (vp, vs) in [(V311, V5), (V5, V311), (V5, V5), (V3_1, V311), (V311, V3_1)] {
            end_to_end(seed, vp, vs, 1, Duration::ZERO);
        }
    }
}

#[test]
fn mqtt_4_3_qos_0_1_2_end_to_end_with_random_chunks_and_latency() {
    for seed in 0..8 {
        let chunk = 1 + 3 * seed as usize;
        end_to_end(100 + seed, V5, V5, chunk, Duration::from_millis(seed));
        end_to_end(200 + seed, V311, V311, chunk, Duration::from_millis(seed));
    }
}

#[test]
fn mqtt_3_8_4_6_delivered_qos_is_the_minimum_of_published_and_granted() {
    for (i, v) in [V311, V5].into_iter().enumerate() {
        let mut sim = Sim::default_broker(300 + i as u64);
        let low = sim.connected(config(v, "low"));
        sim.subscribe(low, &[("d", QoS::AtLeastOnce)]);
        let high = sim.connected(config(v, "high"));
        sim.subscribe(high, &[("d", QoS::ExactlyOnce)]);
        let p = sim.connected(config(v, "pub"));
        sim.publish_settled(p, msg("d", "two", QoS::ExactlyOnce));
        sim.publish_settled(p, msg("d", "zero", QoS::AtMostOnce));
        let got: Vec<(String, QoS)> = sim
            .messages_on(low, "d")
            .into_iter()
            .map(|m| (String::from_utf8_lossy(&m.payload).into_owned(), m.qos))
            .collect();
        assert_eq!(
            got,
            vec![
                ("two".into(), QoS::AtLeastOnce),
                ("zero".into(), QoS::AtMostOnce)
            ],
            "{v:?}"
        );
        let got: Vec<QoS> = sim.messages_on(high, "d").iter().map(|m| m.qos).collect();
        assert_eq!(got, vec![QoS::ExactlyOnce, QoS::AtMostOnce], "{v:?}");
    }
}

/// A subscriber with manual acks gets 5 QoS 1 messages while at most `window` are
/// unacknowledged.
fn windowed(sim: &mut Sim, s: Cl, window: usize) {
    sim.subscribe(s, &[("w", QoS::AtLeastOnce)]);
    let p = sim.connected(config(V5, "pub"));
    for i in 0..5 {
        sim.publish_settled(p, msg("w", i.to_string(), QoS::AtLeastOnce));
    }
    let mut got = Vec::new();
    let mut pending = sim.messages_with_tokens(s);
    while !pending.is_empty() {
        assert!(
            pending.len() <= window,
            "{} unacknowledged messages outstanding, the window is {window}",
            pending.len()
        );
        for (m, token) in pending {
            got.push(String::from_utf8_lossy(&m.payload).into_owned());
            sim.ack(s, token.expect("manual ack token"));
        }
        sim.settle();
        pending = sim.messages_with_tokens(s);
    }
    assert_eq!(
        got,
        numbers(0..5),
        "all delivered, in order, as the window allowed"
    );
    sim.no_event(s, "disconnect", |e| matches!(e, Event::Disconnected { .. }));
}

#[test]
fn mqtt_3_3_4_9_v5_broker_respects_the_clients_receive_maximum() {
    let mut sim = Sim::default_broker(310);
    let mut c = config(V5, "small");
    c.manual_acks = true;
    c.properties.receive_maximum = std::num::NonZeroU16::new(2);
    let s = sim.connected(c);
    windowed(&mut sim, s, 2);
}

#[test]
fn max_inflight_v3_limits_unacknowledged_publishes_to_a_v311_client() {
    let bc = BrokerConfig::default().with_max_inflight_v3(2);
    let mut sim = Sim::new(bc, 311);
    let mut c = config(V311, "small");
    c.manual_acks = true;
    let s = sim.connected(c);
    windowed(&mut sim, s, 2);
}

// ---- topics ---------------------------------------------------------------------------------

#[test]
fn mqtt_4_7_1_wildcards_match_levels() {
    let mut sim = Sim::default_broker(320);
    let filters = [
        "sport/tennis/+",
        "sport/#",
        "+/+",
        "#",
        "sport/+/player1",
        "+",
    ];
    let subs: Vec<Cl> = filters
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let id: &'static str = ["s0", "s1", "s2", "s3", "s4", "s5"][i];
            let c = sim.connected(config(V5, id));
            sim.subscribe_with(
                c,
                vec![sub(f, QoS::AtMostOnce)],
                SubscribeProperties::default(),
            );
            c
        })
        .collect();
    let p = sim.connected(config(V311, "pub"));
    for t in [
        "sport",
        "sport/",
        "sport/tennis",
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
        "news/x",
        "/x",
    ] {
        sim.publish_settled(
            p,
            Publish::new(tinymqtt::TopicName::new(t).expect("topic"), "m"),
        );
    }
    let want: [&[&str]; 6] = [
        &["sport/tennis/player1"],
        &[
            "sport",
            "sport/",
            "sport/tennis",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
        ],
        &["/x", "news/x", "sport/", "sport/tennis"],
        &[
            "/x",
            "news/x",
            "sport",
            "sport/",
            "sport/tennis",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
        ],
        &["sport/tennis/player1"],
        &["sport"],
    ];
    for (i, c) in subs.into_iter().enumerate() {
        let got = sorted_topics(&sim.messages(c));
        assert_eq!(
            got, want[i],
            "filter {:?} ([MQTT-4.7.1-2], [MQTT-4.7.1-3])",
            filters[i]
        );
    }
}

#[test]
fn mqtt_4_7_2_1_dollar_topics_are_not_matched_by_leading_wildcards() {
    let mut sim = Sim::default_broker(321);
    let mut clients = Vec::new();
    for (id, f) in [
        ("all", "#"),
        ("plus", "+/x"),
        ("dollar", "$app/#"),
        ("dplus", "$app/+"),
    ] {
        let c = sim.connected(config(V5, id));
        sim.subscribe_with(
            c,
            vec![sub(f, QoS::AtMostOnce)],
            SubscribeProperties::default(),
        );
        clients.push(c);
    }
    let p = sim.connected(config(V5, "pub"));
    sim.publish_settled(p, msg("$app/x", "d", QoS::AtMostOnce));
    sim.publish_settled(p, msg("a/x", "a", QoS::AtMostOnce));
    let want: [&[&str]; 4] = [&["a/x"], &["a/x"], &["$app/x"], &["$app/x"]];
    for (i, c) in clients.into_iter().enumerate() {
        assert_eq!(sorted_topics(&sim.messages(c)), want[i], "subscriber {i}");
    }
}

#[test]
fn mqtt_3_3_5_1_overlapping_subscriptions_give_one_delivery_at_the_highest_qos() {
    for (i, v) in [V311, V5].into_iter().enumerate() {
        let mut sim = Sim::default_broker(330 + i as u64);
        let s = sim.connected(config(v, "overlap"));
        sim.subscribe(s, &[("o/+", QoS::AtLeastOnce)]);
        sim.subscribe(s, &[("o/#", QoS::ExactlyOnce)]);
        sim.subscribe(s, &[("o/x", QoS::AtMostOnce)]);
        let p = sim.connected(config(v, "pub"));
        sim.publish_settled(p, msg("o/x", "one", QoS::ExactlyOnce));
        let got = sim.messages(s);
        assert_eq!(got.len(), 1, "{v:?}: one delivery, got {got:?}");
        assert_eq!(
            got[0].qos,
            QoS::ExactlyOnce,
            "{v:?}: [MQTT-3.3.5-1] (v5 [MQTT-3.3.4-2]) the highest QoS of the matches"
        );
    }
}

fn sub_id(n: u32) -> SubscribeProperties {
    SubscribeProperties {
        subscription_identifier: NonZeroU32::new(n),
        ..SubscribeProperties::default()
    }
}

#[test]
fn mqtt_3_3_4_3_v5_overlapping_subscriptions_carry_every_subscription_identifier() {
    let mut sim = Sim::default_broker(332);
    let s = sim.connected(config(V5, "ids"));
    sim.subscribe_with(s, vec![sub("i/+", QoS::AtLeastOnce)], sub_id(1));
    sim.subscribe_with(s, vec![sub("i/#", QoS::AtMostOnce)], sub_id(2));
    sim.subscribe_with(
        s,
        vec![sub("i/x", QoS::AtMostOnce)],
        SubscribeProperties::default(),
    );
    let p = sim.connected(config(V5, "pub"));
    sim.publish_settled(p, msg("i/x", "m", QoS::AtLeastOnce));
    let (_, m) = sim.one_message(s, "i/x");
    let mut ids: Vec<u32> = m
        .properties
        .subscription_identifiers
        .iter()
        .map(|n| n.get())
        .collect();
    ids.sort();
    assert_eq!(ids, vec![1, 2], "v5 [MQTT-3.3.4-3]");
    assert_eq!(m.qos, QoS::AtLeastOnce);
    // A message matching only the identifier-less subscription carries none... and one
    // matching only `i/#` carries 2 alone ([MQTT-3.3.4-4]).
    sim.publish_settled(p, msg("i/x/y", "deep", QoS::AtMostOnce));
    let (_, m) = sim.one_message(s, "i/x/y");
    let ids: Vec<u32> = m
        .properties
        .subscription_identifiers
        .iter()
        .map(|n| n.get())
        .collect();
    assert_eq!(ids, vec![2]);
}

#[test]
fn mqtt_3_8_3_3_v5_no_local_does_not_echo_own_messages() {
    let mut sim = Sim::default_broker(333);
    let me = sim.connected(config(V5, "me"));
    let no_local = Subscription {
        filter: filter("chat/#"),
        options: SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            no_local: true,
            ..SubscriptionOptions::default()
        },
    };
    sim.subscribe_with(me, vec![no_local], SubscribeProperties::default());
    let echo = sim.connected(config(V5, "echo"));
    sim.subscribe(echo, &[("chat/#", QoS::AtLeastOnce)]);
    sim.publish_settled(me, msg("chat/1", "mine", QoS::AtLeastOnce));
    sim.publish_settled(echo, msg("chat/1", "theirs", QoS::AtLeastOnce));
    assert_eq!(
        sim.payloads_on(me, "chat/1"),
        vec![Bytes::from("theirs")],
        "v5 [MQTT-3.8.3-3]: not forwarded to the publishing client id"
    );
    assert_eq!(
        sim.payloads_on(echo, "chat/1"),
        vec![Bytes::from("mine"), Bytes::from("theirs")],
        "without no local, a client gets its own messages"
    );
}

fn options(f: &'static str, rap: bool, rh: RetainHandling) -> Subscription {
    Subscription {
        filter: filter(f),
        options: SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            retain_as_published: rap,
            retain_handling: rh,
            ..SubscriptionOptions::default()
        },
    }
}

pub(crate) fn retained(t: &'static str, payload: &'static str) -> Publish {
    let mut p = msg(t, payload, QoS::AtLeastOnce);
    p.retain = true;
    p
}

#[test]
fn mqtt_3_3_1_12_and_13_v5_retain_as_published() {
    let mut sim = Sim::default_broker(334);
    let rap0 = sim.connected(config(V5, "rap0"));
    sim.subscribe_with(
        rap0,
        vec![options("r/#", false, RetainHandling::SendAtSubscribe)],
        SubscribeProperties::default(),
    );
    let rap1 = sim.connected(config(V5, "rap1"));
    sim.subscribe_with(
        rap1,
        vec![options("r/#", true, RetainHandling::SendAtSubscribe)],
        SubscribeProperties::default(),
    );
    let p = sim.connected(config(V5, "pub"));
    sim.publish_settled(p, retained("r/1", "kept"));
    let (_, m) = sim.one_message(rap0, "r/1");
    assert!(
        !m.retain,
        "v5 [MQTT-3.3.1-12]: retain as published 0 clears RETAIN"
    );
    let (_, m) = sim.one_message(rap1, "r/1");
    assert!(
        m.retain,
        "v5 [MQTT-3.3.1-13]: retain as published 1 keeps RETAIN"
    );
}

#[test]
fn mqtt_3_3_1_9_v311_live_messages_are_forwarded_with_retain_0() {
    let mut sim = Sim::default_broker(335);
    let s = sim.connected(config(V311, "s"));
    sim.subscribe(s, &[("r/#", QoS::AtLeastOnce)]);
    let p = sim.connected(config(V311, "pub"));
    sim.publish_settled(p, retained("r/1", "kept"));
    let (_, m) = sim.one_message(s, "r/1");
    assert!(
        !m.retain,
        "[MQTT-3.3.1-9]: RETAIN 0 on an established subscription"
    );
}

#[test]
fn mqtt_3_3_1_9_to_11_v5_retain_handling() {
    let mut sim = Sim::default_broker(336);
    let p = sim.connected(config(V5, "pub"));
    sim.publish_settled(p, retained("rh/1", "stored"));
    for (rh, want_first, want_again, rule) in [
        (RetainHandling::SendAtSubscribe, 1, 1, "[MQTT-3.3.1-9]"),
        (RetainHandling::SendIfNew, 1, 0, "[MQTT-3.3.1-10]"),
        (RetainHandling::DoNotSend, 0, 0, "[MQTT-3.3.1-11]"),
    ] {
        let id = match rh {
            RetainHandling::SendAtSubscribe => "rh0",
            RetainHandling::SendIfNew => "rh1",
            RetainHandling::DoNotSend => "rh2",
        };
        let c = sim.connected(config(V5, id));
        sim.subscribe_with(
            c,
            vec![options("rh/#", false, rh)],
            SubscribeProperties::default(),
        );
        sim.settle();
        let first = sim.messages_on(c, "rh/1");
        assert_eq!(
            first.len(),
            want_first,
            "v5 {rule}: first subscribe, {first:?}"
        );
        assert!(
            first.iter().all(|m| m.retain),
            "retained messages are sent with RETAIN 1"
        );
        sim.subscribe_with(
            c,
            vec![options("rh/#", false, rh)],
            SubscribeProperties::default(),
        );
        sim.settle();
        let again = sim.messages_on(c, "rh/1");
        assert_eq!(
            again.len(),
            want_again,
            "v5 {rule}: repeated subscribe, {again:?}"
        );
    }
}

// ---- unsubscribe ----------------------------------------------------------------------------

#[test]
fn mqtt_3_10_4_1_unsubscribe_stops_delivery() {
    for (i, v) in [V311, V5].into_iter().enumerate() {
        let mut sim = Sim::default_broker(380 + i as u64);
        let s = sim.connected(config(v, "s"));
        sim.subscribe(s, &[("u/#", QoS::AtLeastOnce)]);
        let codes = sim.unsubscribe(s, &["u/#", "never/subscribed"]);
        if v.is_v5() {
            assert_eq!(
                codes,
                vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
                "v5 UNSUBACK reason codes"
            );
        }
        let p = sim.connected(config(v, "pub"));
        sim.publish_settled(p, msg("u/1", "gone", QoS::AtLeastOnce));
        sim.no_message(s);
    }
}

// ---- properties, replacement, windows, groups -----------------------------------------------

#[test]
fn mqtt_3_3_2_v5_publish_properties_are_forwarded_unaltered() {
    use tinymqtt::codec::PayloadFormat;
    let mut sim = Sim::default_broker(390);
    let mut sc = config(V5, "s");
    sc.properties.topic_alias_maximum = Some(5);
    let s5 = sim.connected(sc);
    sim.subscribe(s5, &[("props", QoS::AtLeastOnce)]);
    let s3 = sim.connected(config(V311, "s3"));
    sim.subscribe(s3, &[("props", QoS::AtLeastOnce)]);
    let p = sim.connected(config(V5, "pub"));
    let mut m = msg("props", "{\"a\":1}", QoS::AtLeastOnce);
    m.properties.payload_format_indicator = Some(PayloadFormat::Utf8);
    m.properties.content_type = Some(crate::sim::s("application/json"));
    m.properties.response_topic = Some(crate::sim::topic("reply/here"));
    m.properties.correlation_data = Some(Bytes::from_static(b"\x01\x02"));
    m.properties.user_properties = vec![
        (crate::sim::s("k"), crate::sim::s("1")),
        (crate::sim::s("a"), crate::sim::s("2")),
        (crate::sim::s("k"), crate::sim::s("3")),
    ]
    .into();
    sim.publish_settled(p, m.clone());
    let (_, got) = sim.one_message(s5, "props");
    let (want, have) = (&m.properties, &got.properties);
    assert_eq!(
        have.payload_format_indicator, want.payload_format_indicator,
        "v5 [MQTT-3.3.2-4]"
    );
    assert_eq!(
        have.response_topic, want.response_topic,
        "v5 [MQTT-3.3.2-15]"
    );
    assert_eq!(
        have.correlation_data, want.correlation_data,
        "v5 [MQTT-3.3.2-16]"
    );
    assert_eq!(
        have.user_properties, want.user_properties,
        "v5 [MQTT-3.3.2-17], [MQTT-3.3.2-18]: unaltered, in order"
    );
    assert_eq!(have.content_type, want.content_type, "v5 [MQTT-3.3.2-20]");
    assert_eq!(got.payload, m.payload);
    let (_, got) = sim.one_message(s3, "props");
    assert_eq!(
        got.payload, m.payload,
        "a 3.1.1 subscriber gets the payload alone"
    );
}

#[test]
fn mqtt_3_8_4_3_a_repeated_subscription_replaces_the_first_and_resends_retained() {
    for (i, v) in [V311, V5].into_iter().enumerate() {
        let mut sim = Sim::default_broker(391 + i as u64);
        let p = sim.connected(config(v, "pub"));
        sim.publish_settled(p, retained("rep/a", "kept"));
        let s = sim.connected(config(v, "s"));
        sim.subscribe(s, &[("rep/#", QoS::ExactlyOnce)]);
        sim.settle();
        assert_eq!(sim.messages(s).len(), 1, "{v:?}: the retained message");
        assert_eq!(
            sim.subscribe(s, &[("rep/#", QoS::AtMostOnce)]),
            vec![ReasonCode::Success]
        );
        sim.settle();
        let again = sim.messages(s);
        assert_eq!(
            texts(&again),
            ["kept"],
            "{v:?}: [MQTT-3.8.4-3] retained messages are re-sent"
        );
        sim.publish_settled(p, msg("rep/b", "live", QoS::ExactlyOnce));
        let got = sim.messages(s);
        assert_eq!(
            got.len(),
            1,
            "{v:?}: one subscription, one delivery: {got:?}"
        );
        assert_eq!(
            got[0].qos,
            QoS::AtMostOnce,
            "{v:?}: [MQTT-3.8.4-3] the new subscription's QoS replaces the old"
        );
    }
}

#[test]
fn mqtt_3_3_4_9_v5_retained_messages_on_subscribe_respect_the_receive_maximum() {
    let mut sim = Sim::default_broker(393);
    let p = sim.connected(config(V5, "pub"));
    for t in ["rw/a", "rw/b", "rw/c", "rw/d"] {
        sim.publish_settled(p, retained(t, "r"));
    }
    let mut c = config(V5, "small");
    c.manual_acks = true;
    c.properties.receive_maximum = std::num::NonZeroU16::new(1);
    let s = sim.connected(c);
    sim.subscribe(s, &[("rw/#", QoS::AtLeastOnce)]);
    sim.settle();
    let mut topics = Vec::new();
    loop {
        let pending = sim.messages_with_tokens(s);
        if pending.is_empty() {
            break;
        }
        assert_eq!(pending.len(), 1, "receive maximum 1: {pending:?}");
        for (m, token) in pending {
            assert!(m.retain);
            topics.push(m.topic.to_string());
            sim.ack(s, token.expect("token"));
        }
        sim.settle();
    }
    topics.sort();
    assert_eq!(topics, ["rw/a", "rw/b", "rw/c", "rw/d"]);
    sim.no_event(s, "disconnect", |e| matches!(e, Event::Disconnected { .. }));
}
