//! Broker scenarios in the deterministic simulator: real clients against one broker, with a
//! fake clock, seeded chunking down to one byte, latency and severed links.
//!
//! This file covers the connection's life (CONNECT, client identifiers, takeover, keep-alive,
//! wills and their delay, sessions and their expiry, shutdown, authentication);
//! `simulated/routing.rs` covers what happens to messages, `simulated/v5.rs` outbound topic
//! aliases, response information, redirection and the connection limit. Tests are named after the
//! normative statement they check (3.1.1 numbering unless it says v5).

mod routing;
mod sessions;
mod stored;
mod v5;
mod wills;

use std::sync::Arc;

use crate::sim::{config, msg, persistent, s, secs, topic, Cl, Sim};
use bytes::Bytes;
use tinymqtt::broker::{AllowAll, Authorizer, Broker, BrokerConfig};
use tinymqtt::client::{Event, Message};
use tinymqtt::codec::{Publish, Will, WillProperties};
use tinymqtt::error::{ConnectionError, Initiator};
use tinymqtt::{ByteStr, ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName};

const V3_1: ProtocolVersion = ProtocolVersion::V3_1;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// A QoS 1 will on `t`.
fn will(t: &'static str, payload: &'static str) -> Will {
    Will {
        topic: topic(t),
        payload: Bytes::from_static(payload.as_bytes()),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties::default(),
    }
}

/// A client that watches `will/#` at QoS 1.
fn watcher(sim: &mut Sim, v: ProtocolVersion) -> Cl {
    let w = sim.connected(config(v, "watcher"));
    sim.subscribe(w, &[("will/#", QoS::AtLeastOnce)]);
    w
}

/// Whether `e` is a message on `t`.
fn is_message_on(e: &Event, t: &str) -> bool {
    matches!(e, Event::Message(m) if m.publish.topic.as_str() == t)
}

fn payloads(msgs: &[Publish]) -> Vec<String> {
    msgs.iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

// ---- CONNECT --------------------------------------------------------------------------------

#[test]
fn mqtt_3_2_2_1_v311_and_v5_clients_connect_and_exchange_messages() {
    let mut sim = Sim::default_broker(1);
    let a = sim.add_client(config(V311, "a"));
    let (present, _) = sim.connect(a);
    assert!(
        !present,
        "[MQTT-3.2.2-1]: a clean session has session present 0"
    );
    let conn_a = sim.conn(a).expect("a is connected");
    assert_eq!(sim.broker_client_id(conn_a), s("a"));
    let b = sim.add_client(config(V5, "b"));
    let (present, _) = sim.connect(b);
    assert!(
        !present,
        "v5 [MQTT-3.2.2-2]: clean start has session present 0"
    );

    assert_eq!(
        sim.subscribe(a, &[("to-a/#", QoS::AtLeastOnce)]),
        vec![ReasonCode::GrantedQoS1]
    );
    assert_eq!(
        sim.subscribe(b, &[("to-b/#", QoS::ExactlyOnce)]),
        vec![ReasonCode::GrantedQoS2]
    );
    let id = sim.publish_settled(b, msg("to-a/1", "from b", QoS::AtLeastOnce));
    assert_eq!(sim.published(b, id.expect("qos 1 id")), ReasonCode::Success);
    let id = sim.publish_settled(a, msg("to-b/1", "from a", QoS::ExactlyOnce));
    assert_eq!(sim.published(a, id.expect("qos 2 id")), ReasonCode::Success);

    let (_, m) = sim.one_message(a, "to-a/1");
    assert_eq!(
        (m.payload.as_ref(), m.qos),
        (&b"from b"[..], QoS::AtLeastOnce)
    );
    let (_, m) = sim.one_message(b, "to-b/1");
    assert_eq!(
        (m.payload.as_ref(), m.qos),
        (&b"from a"[..], QoS::ExactlyOnce)
    );
}

#[test]
fn mqtt_3_1_mqisdp_client_connects_subscribes_and_receives() {
    let mut sim = Sim::default_broker(2);
    sim.max_chunk = 1;
    let old = sim.connected(config(V3_1, "old-client"));
    let conn = sim.conn(old).expect("connected");
    assert_eq!(sim.broker_client_id(conn), s("old-client"));
    assert_eq!(
        sim.subscribe(old, &[("legacy/+", QoS::ExactlyOnce)]),
        vec![ReasonCode::GrantedQoS2]
    );
    let new = sim.connected(config(V5, "new-client"));
    for (i, q) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        sim.publish_settled(new, msg("legacy/x", format!("m{i}"), q));
    }
    let got: Vec<(Bytes, QoS)> = sim
        .messages_on(old, "legacy/x")
        .into_iter()
        .map(|p| (p.payload, p.qos))
        .collect();
    assert_eq!(
        got,
        vec![
            (Bytes::from("m0"), QoS::AtMostOnce),
            (Bytes::from("m1"), QoS::AtLeastOnce),
            (Bytes::from("m2"), QoS::ExactlyOnce),
        ]
    );
}

#[test]
fn mqtt_3_1_3_6_v311_empty_client_id_is_assigned_a_unique_one() {
    let mut sim = Sim::default_broker(3);
    let a = sim.connected(config(V311, ""));
    let b = sim.connected(config(V311, ""));
    let id_a = sim.broker_client_id(sim.conn(a).expect("a"));
    let id_b = sim.broker_client_id(sim.conn(b).expect("b"));
    assert!(
        !id_a.is_empty() && !id_b.is_empty(),
        "[MQTT-3.1.3-6]: ids assigned"
    );
    assert_ne!(id_a, id_b, "[MQTT-3.1.3-6]: assigned ids are unique");
    // Both work independently.
    sim.subscribe(a, &[("anon", QoS::AtLeastOnce)]);
    sim.publish_settled(b, msg("anon", "hi", QoS::AtLeastOnce));
    assert_eq!(sim.payloads_on(a, "anon"), vec![Bytes::from("hi")]);
}

#[test]
fn mqtt_3_2_2_16_v5_empty_client_id_gets_an_assigned_client_identifier() {
    let mut sim = Sim::default_broker(4);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let cl = sim.add_client(config(V5, ""));
        let (_, props) = sim.connect(cl);
        let assigned = props
            .assigned_client_identifier
            .clone()
            .expect("v5 [MQTT-3.2.2-16]: CONNACK carries the assigned client identifier");
        assert!(!assigned.is_empty());
        assert_eq!(sim.client(cl).client_id(), &assigned);
        let conn = sim.conn(cl).expect("connected");
        assert_eq!(sim.broker_client_id(conn), assigned);
        ids.push(assigned);
    }
    assert_ne!(ids[0], ids[1], "assigned identifiers are unique");
}

// ---- takeover -------------------------------------------------------------------------------

/// The second connection with client id `dev` (resuming the session) takes over the first.
fn takeover(v: ProtocolVersion, seed: u64) -> (Sim, Cl, Cl, tinymqtt::broker::ConnId) {
    let mut sim = Sim::default_broker(seed);
    let mut c1 = persistent(v, "dev", 3600);
    c1.reconnect = None;
    let first = sim.connected(c1);
    sim.subscribe(first, &[("cmd/#", QoS::AtLeastOnce)]);
    let conn1 = sim.conn(first).expect("first is connected");
    let mut c2 = persistent(v, "dev", 3600);
    c2.reconnect = None;
    c2.clean_start = false;
    let second = sim.add_client(c2);
    let (present, _) = sim.connect(second);
    assert!(
        present,
        "[MQTT-3.2.2-2]: the session of the first connection is present"
    );
    (sim, first, second, conn1)
}

#[test]
fn mqtt_3_1_4_3_takeover_disconnects_the_first_with_0x8e() {
    let (mut sim, first, second, conn1) = takeover(V5, 5);
    let (_, reason) = sim.wait_disconnected(first, secs(5));
    assert_eq!(reason.initiator, Initiator::Remote, "{reason:?}");
    assert_eq!(
        reason.reason_code,
        ReasonCode::SessionTakenOver,
        "v5 [MQTT-3.1.4-3]: DISCONNECT 0x8E to the existing client"
    );
    sim.broker_closed(conn1);
    // The session, with its subscription, now serves the second connection.
    let p = sim.connected(config(V5, "pub"));
    sim.publish_settled(p, msg("cmd/1", "go", QoS::AtLeastOnce));
    assert_eq!(sim.payloads_on(second, "cmd/1"), vec![Bytes::from("go")]);
    sim.no_message(first);
    assert!(sim.is_connected(second));
}

#[test]
fn mqtt_3_1_4_2_v311_takeover_closes_the_first_connection() {
    let (mut sim, first, second, conn1) = takeover(V311, 6);
    let (_, reason) = sim.wait_disconnected(first, secs(5));
    assert_eq!(
        reason.initiator,
        Initiator::Transport,
        "[MQTT-3.1.4-2]: 3.1.1 has no DISCONNECT from the server; the network connection closes"
    );
    sim.broker_closed(conn1);
    let p = sim.connected(config(V311, "pub"));
    sim.publish_settled(p, msg("cmd/1", "go", QoS::AtLeastOnce));
    assert_eq!(sim.payloads_on(second, "cmd/1"), vec![Bytes::from("go")]);
}

#[test]
fn mqtt_3_1_2_8_will_published_on_takeover() {
    for (i, v) in [V311, V5].into_iter().enumerate() {
        let mut sim = Sim::default_broker(7 + i as u64);
        let w = watcher(&mut sim, V5);
        let mut c1 = config(v, "dev");
        c1.reconnect = None;
        c1.will = Some(will("will/dev", "taken over"));
        let first = sim.connected(c1);
        let second = sim.connected(config(v, "dev"));
        sim.wait_disconnected(first, secs(5));
        sim.settle();
        let (_, m) = sim.one_message(w, "will/dev");
        assert_eq!(m.payload, Bytes::from("taken over"), "{v:?}");
        assert!(sim.is_connected(second));
    }
}

// ---- keep-alive -----------------------------------------------------------------------------

/// A client with keep-alive `ka` that stops being heard right after it connects at t = 0.
fn silent_client(sim: &mut Sim, v: ProtocolVersion, ka: u16, w: Option<Will>) -> Cl {
    let mut c = config(v, "quiet");
    c.keep_alive = ka;
    c.reconnect = None;
    c.will = w;
    let cl = sim.connected(c);
    sim.mute(cl);
    cl
}

#[test]
fn mqtt_3_1_2_22_v5_keep_alive_timeout_sends_0x8d_after_one_and_a_half_intervals() {
    let mut sim = Sim::default_broker(10);
    let start = sim.elapsed();
    let cl = silent_client(&mut sim, V5, 10, None);
    let conn = sim.conn(cl).expect("connected");
    let (at, reason) = sim.wait_disconnected(cl, secs(60));
    assert_eq!(
        (reason.initiator, reason.reason_code),
        (Initiator::Remote, ReasonCode::KeepAliveTimeout),
        "DISCONNECT 0x8D from the server: {reason:?}"
    );
    let after = at - start;
    assert!(
        after >= secs(15) && after < secs(16),
        "v5 [MQTT-3.1.2-22]: closed {after:?} after the last packet, expected 1.5 x 10 s"
    );
    let (_, r) = sim.broker_closed(conn);
    assert_eq!(r.error, Some(ConnectionError::KeepAliveTimeout), "{r:?}");
}

#[test]
fn mqtt_3_1_2_24_v311_keep_alive_timeout_closes_the_connection() {
    let mut sim = Sim::default_broker(11);
    let cl = silent_client(&mut sim, V311, 10, None);
    let (at, reason) = sim.wait_disconnected(cl, secs(60));
    assert_eq!(reason.initiator, Initiator::Transport, "{reason:?}");
    assert!(
        at >= secs(15) && at < secs(16),
        "[MQTT-3.1.2-24]: closed at {at:?}, expected 1.5 x 10 s"
    );
}

#[test]
fn mqtt_3_1_2_8_will_published_on_keep_alive_timeout() {
    for (i, v) in [V311, V5].into_iter().enumerate() {
        let mut sim = Sim::default_broker(12 + i as u64);
        let w = watcher(&mut sim, V311);
        let start = sim.elapsed();
        silent_client(&mut sim, v, 4, Some(will("will/quiet", "timed out")));
        let (at, m) = sim.run_until_timed_event(w, "will", secs(60), |e| match e {
            Event::Message(Message { publish, .. }) if publish.topic.as_str() == "will/quiet" => {
                Some(publish.clone())
            }
            _ => None,
        });
        assert_eq!(m.payload, Bytes::from("timed out"));
        let after = at - start;
        assert!(
            after >= secs(6) && after < secs(7),
            "{v:?}: will at {after:?}, expected at the 1.5 x 4 s keep-alive timeout"
        );
    }
}

#[test]
fn keep_alive_pings_keep_connections_open_for_an_hour() {
    let mut sim = Sim::default_broker(14);
    let mut clients = Vec::new();
    for (v, id) in [(V3_1, "k31"), (V311, "k311"), (V5, "k5")] {
        let mut c = config(v, id);
        c.keep_alive = 5;
        clients.push(sim.connected(c));
    }
    sim.run_for(secs(3600));
    for cl in clients {
        assert!(sim.is_connected(cl), "{cl:?} lost its connection");
        sim.no_event(cl, "disconnect", |e| {
            matches!(e, Event::Disconnected { .. })
        });
    }
    assert!(
        !sim.broker_events()
            .iter()
            .any(|(_, e)| matches!(e, tinymqtt::broker::BrokerEvent::Closed { .. })),
        "the broker closed a connection: {:?}",
        sim.broker_events()
    );
}

#[test]
fn mqtt_3_2_2_21_server_keep_alive_is_announced_and_enforced() {
    let bc = BrokerConfig::default().with_server_keep_alive(Some(4));
    let mut sim = Sim::new(bc, 15);
    let mut c = config(V5, "ka");
    c.keep_alive = 60;
    c.reconnect = None;
    let cl = sim.add_client(c);
    let (_, props) = sim.connect(cl);
    assert_eq!(
        props.server_keep_alive,
        Some(4),
        "v5 [MQTT-3.2.2-21]: CONNACK carries the server keep alive"
    );
    // The client follows it, so a minute passes without a timeout.
    sim.run_for(secs(60));
    assert!(sim.is_connected(cl));
    let t = sim.elapsed();
    sim.mute(cl);
    let (at, reason) = sim.wait_disconnected(cl, secs(60));
    assert_eq!(reason.reason_code, ReasonCode::KeepAliveTimeout);
    assert!(
        at - t <= secs(6),
        "the server keep alive (4 s) is enforced at 1.5x: closed {:?} after muting",
        at - t
    );
}

#[test]
fn max_keep_alive_becomes_the_v5_server_keep_alive() {
    let bc = BrokerConfig::default().with_max_keep_alive(30);
    let mut sim = Sim::new(bc, 16);
    let mut c = config(V5, "long");
    c.keep_alive = 600;
    let cl = sim.add_client(c);
    let (_, props) = sim.connect(cl);
    assert_eq!(props.server_keep_alive, Some(30), "{props:?}");
}

// ---- shutdown -------------------------------------------------------------------------------

#[test]
fn shutdown_sends_0x8b_to_v5_clients_closes_the_others_and_publishes_no_wills() {
    let mut sim = Sim::default_broker(52);
    let mut wc = config(V5, "watcher");
    wc.reconnect = None;
    let w = sim.connected(wc);
    sim.subscribe(w, &[("will/#", QoS::AtLeastOnce)]);
    let mut c5 = config(V5, "five");
    c5.reconnect = None;
    c5.will = Some(will("will/five", "x"));
    let five = sim.connected(c5);
    let mut c3 = config(V311, "three");
    c3.reconnect = None;
    c3.will = Some(will("will/three", "x"));
    let three = sim.connected(c3);
    sim.shutdown();
    sim.settle();
    let (_, r) = sim.disconnected(five);
    assert_eq!(
        (r.initiator, r.reason_code),
        (Initiator::Remote, ReasonCode::ServerShuttingDown)
    );
    let (_, r) = sim.disconnected(three);
    assert_eq!(r.initiator, Initiator::Transport);
    let (_, r) = sim.disconnected(w);
    assert_eq!(r.reason_code, ReasonCode::ServerShuttingDown);
    sim.no_message(w);
}

// ---- authentication -------------------------------------------------------------------------

use crate::sim::Passwords;

/// Forbids `private/#` to everyone.
struct NoPrivate;

impl Authorizer for NoPrivate {
    fn can_publish(&self, _: &ByteStr, _: Option<&ByteStr>, t: &TopicName) -> bool {
        !t.as_str().starts_with("private/")
    }
    fn can_subscribe(&self, _: &ByteStr, _: Option<&ByteStr>, f: &TopicFilter) -> bool {
        !f.as_str().starts_with("private/")
    }
}

/// Lets everyone subscribe to anything but delivers nothing under `hidden/`, nor anything to
/// the client `blind`: the per-delivery check.
struct Hidden;

impl Authorizer for Hidden {
    fn can_publish(&self, _: &ByteStr, _: Option<&ByteStr>, _: &TopicName) -> bool {
        true
    }
    fn can_subscribe(&self, _: &ByteStr, _: Option<&ByteStr>, _: &TopicFilter) -> bool {
        true
    }
    fn can_receive(&self, c: &ByteStr, _: Option<&ByteStr>, t: &TopicName) -> bool {
        !t.as_str().starts_with("hidden/") && c.as_str() != "blind"
    }
}

#[test]
fn can_receive_filters_each_live_retained_and_queued_delivery_and_frees_the_window() {
    let mut sim = Sim::with_broker(
        Broker::with_auth(
            BrokerConfig::default().with_max_inflight_v3(1),
            Arc::new(AllowAll),
            Arc::new(Hidden),
        ),
        65,
    );
    let p = sim.connected(config(V5, "pub"));
    sim.publish_settled(p, {
        let mut m = msg("hidden/r", "retained", QoS::AtLeastOnce);
        m.retain = true;
        m
    });
    let s = sim.connected(config(V311, "sub"));
    assert_eq!(
        sim.subscribe(s, &[("#", QoS::AtLeastOnce)]),
        vec![ReasonCode::GrantedQoS1]
    );
    // Refused QoS 1 deliveries give their window slot back: with a window of one, the
    // allowed message after several refused ones still arrives.
    for topic in ["hidden/a", "hidden/b", "hidden/c", "open/x"] {
        sim.publish_settled(p, msg(topic, "m", QoS::AtLeastOnce));
    }
    let topics = |ps: Vec<Publish>| ps.iter().map(|p| p.topic.to_string()).collect::<Vec<_>>();
    assert_eq!(topics(sim.messages(s)), ["open/x"]);
    let blind = sim.connected(config(V5, "blind"));
    sim.subscribe(blind, &[("open/#", QoS::AtMostOnce)]);
    sim.publish_settled(p, msg("open/y", "m", QoS::AtMostOnce));
    assert_eq!(topics(sim.messages(s)), ["open/y"]);
    sim.no_message(blind);
}

fn auth_sim(seed: u64) -> Sim {
    let bc = BrokerConfig::default().with_allow_anonymous(false);
    Sim::with_broker(
        Broker::with_auth(bc, Arc::new(Passwords), Arc::new(AllowAll)),
        seed,
    )
}

#[test]
fn mqtt_3_2_2_bad_credentials_are_refused_with_0x86_and_return_code_4() {
    for (i, v) in [V311, V5].into_iter().enumerate() {
        let mut sim = auth_sim(60 + i as u64);
        let mut c = config(v, "mallory");
        c.reconnect = None;
        c.username = Some(s("alice"));
        c.password = Some(Bytes::from_static(b"guess"));
        let cl = sim.add_client(c);
        let reason = sim.try_connect(cl).expect_err("refused");
        assert_eq!(
            (reason.initiator, reason.reason_code),
            (Initiator::Remote, ReasonCode::BadUserNameOrPassword),
            "{v:?}"
        );
        let mut c = config(v, "alice");
        c.username = Some(s("alice"));
        c.password = Some(Bytes::from_static(b"secret"));
        sim.connected(c);
    }
}

#[test]
fn mqtt_3_2_2_anonymous_refused_with_0x87_and_return_code_5() {
    for (i, v) in [V311, V5].into_iter().enumerate() {
        let bc = BrokerConfig::default().with_allow_anonymous(false);
        let mut sim = Sim::with_broker(
            Broker::with_auth(bc, Arc::new(AllowAll), Arc::new(AllowAll)),
            62 + i as u64,
        );
        let mut c = config(v, "anon");
        c.reconnect = None;
        let cl = sim.add_client(c);
        let reason = sim.try_connect(cl).expect_err("refused");
        assert_eq!(reason.reason_code, ReasonCode::NotAuthorized, "{v:?}");
    }
}

#[test]
fn not_authorized_subscribe_and_publish_get_0x87() {
    let mut sim = Sim::with_broker(
        Broker::with_auth(
            BrokerConfig::default(),
            Arc::new(AllowAll),
            Arc::new(NoPrivate),
        ),
        64,
    );
    let cl = sim.connected(config(V5, "c5"));
    assert_eq!(
        sim.subscribe(
            cl,
            &[
                ("private/#", QoS::AtLeastOnce),
                ("public/#", QoS::AtLeastOnce)
            ]
        ),
        vec![ReasonCode::NotAuthorized, ReasonCode::GrantedQoS1]
    );
    let id = sim.publish_settled(cl, msg("private/x", "no", QoS::AtLeastOnce));
    assert_eq!(
        sim.published(cl, id.expect("id")),
        ReasonCode::NotAuthorized
    );
    let old = sim.connected(config(V311, "c3"));
    assert_eq!(
        sim.subscribe(old, &[("private/#", QoS::AtLeastOnce)]),
        vec![ReasonCode::UnspecifiedError],
        "3.1.1 SUBACK failure is 0x80"
    );
    // A refused publish reaches nobody.
    let spy = sim.connected(config(V311, "spy"));
    sim.subscribe(spy, &[("#", QoS::AtLeastOnce)]);
    sim.publish_settled(old, msg("private/y", "no", QoS::AtLeastOnce));
    sim.no_message(spy);
}
