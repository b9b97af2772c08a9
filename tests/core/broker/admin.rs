//! The application's requests to the broker core (`Broker::handle_admin` / `poll_admin`), in
//! the deterministic simulator: publishing into the broker like a client, listing clients,
//! subscriptions and offline sessions, disconnecting a client (MQTT 5: DISCONNECT 0x98) and
//! removing an offline session. No sockets: the same mail a runtime's handle sends.

use tinymqtt::ByteStr;

use crate::sim::{config, msg, persistent, s, secs, topic, Sim};
use bytes::Bytes;
use tinymqtt::broker::{AdminError, AdminReply, AdminRequest, AdminTag, BrokerConfig, SessionInfo};
use tinymqtt::client::Event;
use tinymqtt::codec::Will;
use tinymqtt::error::{ConnectionError, Initiator};
use tinymqtt::store::{StoreOp, StoreSnapshot};
use tinymqtt::{ProtocolVersion, QoS, ReasonCode};

const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// Asks `request` under `tag` and lets everything settle; returns the answers drained.
fn ask(
    sim: &mut Sim,
    tag: u64,
    request: AdminRequest,
) -> Vec<(AdminTag, Result<AdminReply, AdminError>)> {
    let now = sim.now();
    sim.broker.handle_admin(now, AdminTag(tag), request);
    sim.settle();
    drain(sim)
}

fn drain(sim: &mut Sim) -> Vec<(AdminTag, Result<AdminReply, AdminError>)> {
    std::iter::from_fn(|| sim.broker.poll_admin()).collect()
}

/// Asks `request` and returns its one answer.
fn answer(sim: &mut Sim, request: AdminRequest) -> Result<AdminReply, AdminError> {
    let mut got = ask(sim, 7, request);
    assert_eq!(got.len(), 1, "one answer per request: {got:?}");
    let (tag, reply) = got.pop().expect("one answer");
    assert_eq!(tag, AdminTag(7), "the answer carries the request's tag");
    reply
}

fn texts(msgs: &[tinymqtt::codec::Publish]) -> Vec<String> {
    msgs.iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

#[test]
fn host_publish_is_routed_like_a_clients_message() {
    let mut sim = Sim::default_broker(901);
    let sub = sim.connected(config(V5, "sub"));
    sim.subscribe(sub, &[("app/#", QoS::AtLeastOnce)]);
    let low = sim.connected(config(V311, "low"));
    sim.subscribe(low, &[("app/#", QoS::AtMostOnce)]);

    let mut p = msg("app/state", "on", QoS::ExactlyOnce);
    p.retain = true;
    assert_eq!(
        answer(&mut sim, AdminRequest::Publish(p)),
        Ok(AdminReply::Published)
    );
    let got = sim.messages_on(sub, "app/state");
    assert_eq!(texts(&got), ["on"]);
    assert_eq!(
        got[0].qos,
        QoS::AtLeastOnce,
        "the subscription's QoS caps it"
    );
    let got = sim.messages_on(low, "app/state");
    assert_eq!(
        (texts(&got), got[0].qos),
        (vec!["on".to_string()], QoS::AtMostOnce)
    );

    // Retained: a later subscriber gets it with RETAIN 1.
    let late = sim.connected(config(V5, "late"));
    sim.subscribe(late, &[("app/+", QoS::AtLeastOnce)]);
    sim.settle();
    let got = sim.messages_on(late, "app/state");
    assert_eq!(texts(&got), ["on"]);
    assert!(got[0].retain, "replayed as a retained message");
}

#[test]
fn host_publish_refuses_sys_topics_and_what_a_client_could_not_send() {
    let mut config_ = BrokerConfig::default();
    config_.maximum_qos = QoS::AtLeastOnce;
    config_.retain_available = false;
    let mut sim = Sim::new(config_, 902);
    let watcher = sim.connected(config(V5, "w"));
    sim.subscribe(
        watcher,
        &[("#", QoS::AtMostOnce), ("$SYS/#", QoS::AtMostOnce)],
    );
    let denied = sim.broker.stats().publishes_denied;
    assert_eq!(
        answer(
            &mut sim,
            AdminRequest::Publish(msg("$SYS/broker/x", "no", QoS::AtMostOnce))
        ),
        Err(AdminError::SysTopic)
    );
    assert_eq!(
        sim.broker.stats().publishes_denied,
        denied + 1,
        "counted as denied"
    );
    assert_eq!(
        answer(
            &mut sim,
            AdminRequest::Publish(msg("a", "no", QoS::ExactlyOnce))
        ),
        Err(AdminError::QoSNotSupported)
    );
    let mut r = msg("a", "no", QoS::AtMostOnce);
    r.retain = true;
    assert_eq!(
        answer(&mut sim, AdminRequest::Publish(r)),
        Err(AdminError::RetainNotAvailable)
    );
    let empty = tinymqtt::codec::Publish::new(tinymqtt::TopicName::empty(), "x");
    assert_eq!(
        answer(&mut sim, AdminRequest::Publish(empty)),
        Err(AdminError::EmptyTopic)
    );
    sim.no_message(watcher);
}

#[test]
fn host_publish_is_refused_at_the_memory_limit() {
    let mut config_ = BrokerConfig::default();
    config_.memory_limit = 64 * 1024;
    let mut sim = Sim::new(config_, 903);
    let big = msg("big", Bytes::from(vec![0u8; 100 * 1024]), QoS::AtMostOnce);
    assert_eq!(
        answer(&mut sim, AdminRequest::Publish(big)),
        Err(AdminError::QuotaExceeded)
    );
    assert!(sim.broker.stats().refused_over_limits >= 1);
}

#[test]
fn host_publish_answers_once_durable_with_a_store() {
    let mut sim = Sim::default_broker(904);
    let now = sim.now();
    sim.broker
        .restore(now, 1_800_000_000, StoreSnapshot::default());
    let mut p = msg("keep/me", "v", QoS::AtLeastOnce);
    p.retain = true;
    let got = ask(&mut sim, 1, AdminRequest::Publish(p));
    assert!(
        got.is_empty(),
        "not answered before the store says durable: {got:?}"
    );
    let mut ops = Vec::new();
    while let Some(op) = sim.broker.poll_store() {
        ops.push(op);
    }
    let put = ops
        .iter()
        .position(|op| matches!(op, StoreOp::PutRetained(_)))
        .expect("the retained message is logged");
    let tickets: Vec<_> = ops
        .iter()
        .filter_map(|op| match op {
            StoreOp::Durable(t) => Some(*t),
            _ => None,
        })
        .collect();
    let ticket_at = ops
        .iter()
        .position(|op| matches!(op, StoreOp::Durable(_)))
        .expect("a ticket");
    assert!(
        put < ticket_at,
        "the message is logged before its ticket: {ops:?}"
    );
    assert_eq!(tickets.len(), 1, "{ops:?}");
    let now = sim.now();
    sim.broker.handle_durable(now, tickets[0]);
    assert_eq!(
        drain(&mut sim),
        vec![(AdminTag(1), Ok(AdminReply::Published))]
    );
}

#[test]
fn host_publish_waits_for_a_full_queue_like_a_publisher() {
    let mut config_ = BrokerConfig::default();
    config_.max_queued_messages = 1;
    config_.max_publisher_wait = secs(5);
    let mut sim = Sim::new(config_, 905);
    let mut c = config(V5, "slow");
    c.properties.receive_maximum = std::num::NonZeroU16::new(1);
    let slow = sim.connected(c);
    sim.subscribe(slow, &[("q", QoS::AtLeastOnce)]);
    sim.deafen(slow);
    let mut answers = Vec::new();
    for i in 0..4 {
        answers.extend(ask(
            &mut sim,
            i,
            AdminRequest::Publish(msg("q", format!("{i}"), QoS::AtLeastOnce)),
        ));
    }
    assert!(
        answers.len() < 4,
        "a full queue of an online subscriber holds answers back: {answers:?}"
    );
    sim.run_for(secs(6));
    answers.extend(drain(&mut sim));
    let tags: Vec<u64> = answers.iter().map(|(t, _)| t.0).collect();
    assert_eq!(
        tags,
        [0, 1, 2, 3],
        "every publish answered, in order, by max_publisher_wait"
    );
    assert!(answers.iter().all(|(_, r)| r == &Ok(AdminReply::Published)));
}

#[test]
fn clients_lists_who_is_connected_with_user_listener_protocol_and_since() {
    let mut sim = Sim::default_broker(906);
    let mut c = config(V5, "alice-1");
    c.username = Some(s("alice"));
    let a = sim.add_client(c);
    let conn = sim.open(a);
    sim.broker
        .set_listener(conn, ByteStr::from_static("mqtts://0.0.0.0:8883"));
    let at = sim.now();
    sim.wait_connack(a).expect("alice is connected");
    sim.run_for(secs(3));
    let _b = sim.connected(config(V311, "bob-1"));
    let gone = sim.connected(persistent(V5, "gone", 600));
    sim.disconnect(gone, tinymqtt::codec::Disconnect::default());
    sim.settle();

    let Ok(AdminReply::Clients(list)) = answer(&mut sim, AdminRequest::Clients) else {
        panic!("a list of clients")
    };
    let ids: Vec<&str> = list.iter().map(|c| c.client_id.as_str()).collect();
    assert_eq!(ids, ["alice-1", "bob-1"], "connected ones only, by id");
    let alice = &list[0];
    assert_eq!(alice.username, Some(s("alice")));
    assert_eq!(alice.listener.as_deref(), Some("mqtts://0.0.0.0:8883"));
    assert_eq!(alice.protocol, V5);
    assert!(
        alice.since >= at && alice.since < at + secs(1),
        "since its CONNECT"
    );
    assert_eq!((list[1].protocol, list[1].username.clone()), (V311, None));
    assert!(list[1].since >= at + secs(3));
}

#[test]
fn subscriptions_and_offline_sessions_are_listed() {
    let mut sim = Sim::default_broker(907);
    let a = sim.connected(persistent(V5, "a", 3600));
    sim.subscribe(a, &[("x/#", QoS::AtLeastOnce), ("y", QoS::AtMostOnce)]);
    let Ok(AdminReply::Subscriptions(subs)) = answer(&mut sim, AdminRequest::Subscriptions(s("a")))
    else {
        panic!("subscriptions")
    };
    let got: Vec<(&str, QoS)> = subs
        .iter()
        .map(|x| (x.filter.as_str(), x.options.qos))
        .collect();
    assert_eq!(got, [("x/#", QoS::AtLeastOnce), ("y", QoS::AtMostOnce)]);
    assert_eq!(
        answer(&mut sim, AdminRequest::Subscriptions(s("nobody"))),
        Err(AdminError::NoSuchSession(s("nobody")))
    );

    assert_eq!(
        answer(&mut sim, AdminRequest::OfflineSessions),
        Ok(AdminReply::OfflineSessions(vec![]))
    );
    sim.disconnect(a, tinymqtt::codec::Disconnect::default());
    sim.settle();
    answer(
        &mut sim,
        AdminRequest::Publish(msg("x/1", "queued", QoS::AtLeastOnce)),
    )
    .unwrap();
    let Ok(AdminReply::OfflineSessions(list)) = answer(&mut sim, AdminRequest::OfflineSessions)
    else {
        panic!("offline sessions")
    };
    let one: &SessionInfo = &list[0];
    assert_eq!(list.len(), 1);
    assert_eq!(
        (
            one.client_id.as_str(),
            one.expiry,
            one.queued,
            one.subscriptions
        ),
        ("a", 3600, 1, 2)
    );
    // Still listed when offline.
    assert!(matches!(
        answer(&mut sim, AdminRequest::Subscriptions(s("a"))),
        Ok(AdminReply::Subscriptions(v)) if v.len() == 2
    ));
}

#[test]
fn remove_session_drops_an_offline_session_not_an_online_one() {
    let mut sim = Sim::default_broker(908);
    let mut c = persistent(V5, "a", 3600);
    c.clean_start = false;
    let a = sim.connected(c);
    sim.subscribe(a, &[("t", QoS::AtLeastOnce)]);
    assert_eq!(
        answer(&mut sim, AdminRequest::RemoveSession(s("a"))),
        Err(AdminError::Connected(s("a")))
    );
    sim.disconnect(a, tinymqtt::codec::Disconnect::default());
    sim.settle();
    answer(
        &mut sim,
        AdminRequest::Publish(msg("t", "queued", QoS::AtLeastOnce)),
    )
    .unwrap();
    let sessions = sim.broker.stats().sessions;
    assert_eq!(
        answer(&mut sim, AdminRequest::RemoveSession(s("a"))),
        Ok(AdminReply::Removed)
    );
    assert_eq!(sim.broker.stats().sessions, sessions - 1);
    assert_eq!(
        answer(&mut sim, AdminRequest::RemoveSession(s("a"))),
        Err(AdminError::NoSuchSession(s("a")))
    );
    // The client comes back to no session: its queued message went with it.
    let (present, _) = sim.connect(a);
    assert!(!present, "the removed session is not resumed");
    sim.settle();
    sim.no_message(a);
}

/// A QoS 1 will on `t`.
fn will(t: &'static str) -> Will {
    let mut w = Will::new(topic(t), Bytes::from_static(b"bye"));
    w.qos = QoS::AtLeastOnce;
    w
}

#[test]
fn mqtt_3_1_2_8_kicked_v5_client_gets_disconnect_0x98_and_its_will_goes_out() {
    let mut sim = Sim::default_broker(909);
    let watcher = sim.connected(config(V5, "w"));
    sim.subscribe(watcher, &[("will/#", QoS::AtLeastOnce)]);
    let mut c = persistent(V5, "victim", 600);
    c.will = Some(will("will/victim"));
    c.reconnect = None;
    let victim = sim.connected(c);
    assert_eq!(
        answer(&mut sim, AdminRequest::Disconnect(s("victim"))),
        Ok(AdminReply::Disconnected)
    );
    let (_, reason) = sim.disconnected(victim);
    assert_eq!(reason.initiator, Initiator::Remote, "{reason:?}");
    assert!(
        matches!(
            reason.error,
            Some(ConnectionError::Disconnected(
                ReasonCode::AdministrativeAction
            ))
        ),
        "DISCONNECT 0x98 Administrative action: {reason:?}"
    );
    // [MQTT-3.1.2-8]: the client did not end it with DISCONNECT 0x00, so its will goes out.
    assert_eq!(texts(&sim.messages_on(watcher, "will/victim")), ["bye"]);
    // Its session stays, offline, as its expiry says.
    assert!(matches!(
        answer(&mut sim, AdminRequest::OfflineSessions),
        Ok(AdminReply::OfflineSessions(v)) if v.iter().any(|x| x.client_id.as_str() == "victim")
    ));
    assert_eq!(
        answer(&mut sim, AdminRequest::Disconnect(s("victim"))),
        Err(AdminError::NotConnected(s("victim")))
    );
    assert_eq!(
        answer(&mut sim, AdminRequest::Disconnect(s("nobody"))),
        Err(AdminError::NoSuchSession(s("nobody")))
    );
}

#[test]
fn disconnect_closes_a_v311_client_without_a_packet() {
    let mut sim = Sim::default_broker(910);
    let mut c = config(V311, "old");
    c.reconnect = None;
    let old = sim.connected(c);
    answer(&mut sim, AdminRequest::Disconnect(s("old"))).unwrap();
    let (_, reason) = sim.disconnected(old);
    assert!(
        !matches!(reason.error, Some(ConnectionError::Disconnected(_))),
        "3.1.1 has no server DISCONNECT: the connection just closes ({reason:?})"
    );
    sim.no_event(old, "a new connection", |e| {
        matches!(e, Event::Connected { .. })
    });
}

// ---- links: clients in the broker's process ---------------------------------------------------

/// The link events drained so far, for `conn`.
fn link_events(sim: &mut Sim, conn: tinymqtt::broker::ConnId) -> Vec<Event> {
    std::iter::from_fn(|| sim.broker.poll_link_event())
        .filter(|(c, _)| *c == conn)
        .map(|(_, e)| e)
        .collect()
}

fn link_messages(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(String::from_utf8_lossy(&m.publish.payload).into_owned()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_link_subscribes_publishes_and_receives_without_a_socket() {
    let mut sim = Sim::default_broker(920);
    let now = sim.now();
    let link = sim.broker.link(now, config(V5, "app")).unwrap();
    let events = link_events(&mut sim, link);
    assert!(
        events.iter().any(|e| matches!(e, Event::Connected { .. })),
        "{events:?}"
    );
    sim.broker
        .with_link(now, link, |c| {
            c.subscribe(
                now,
                vec![tinymqtt::codec::Subscription::new(
                    tinymqtt::TopicFilter::new("dev/#").unwrap(),
                    QoS::AtLeastOnce,
                )],
                Default::default(),
            )
        })
        .unwrap()
        .unwrap();
    let events = link_events(&mut sim, link);
    assert!(
        events.iter().any(|e| matches!(e, Event::Subscribed { .. })),
        "{events:?}"
    );

    // A network client's message and the application's own reach the link.
    let dev = sim.connected(config(V311, "dev"));
    sim.subscribe(dev, &[("cmd/#", QoS::AtLeastOnce)]);
    sim.publish_settled(dev, msg("dev/1", "reading", QoS::AtLeastOnce));
    answer(
        &mut sim,
        AdminRequest::Publish(msg("dev/2", "from-app", QoS::AtMostOnce)),
    )
    .unwrap();
    let events = link_events(&mut sim, link);
    assert_eq!(link_messages(&events), ["reading", "from-app"]);

    // The link publishes to the network client, at QoS 1, and hears it complete.
    let now = sim.now();
    sim.broker
        .with_link(now, link, |c| {
            c.publish(now, msg("cmd/1", "go", QoS::AtLeastOnce))
        })
        .unwrap()
        .unwrap();
    sim.settle();
    assert_eq!(texts(&sim.messages_on(dev, "cmd/1")), ["go"]);
    let events = link_events(&mut sim, link);
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Published {
                reason_code: ReasonCode::Success,
                ..
            }
        )),
        "{events:?}"
    );

    // Listed like any client, on the in-process listener.
    let Ok(AdminReply::Clients(list)) = answer(&mut sim, AdminRequest::Clients) else {
        panic!("clients")
    };
    let app = list
        .iter()
        .find(|c| c.client_id.as_str() == "app")
        .expect("the link is listed");
    assert_eq!(app.listener.as_deref(), Some(tinymqtt::broker::IN_PROCESS));
}

#[test]
fn a_link_has_a_network_clients_queue_limits_and_can_be_kicked() {
    let mut config_ = BrokerConfig::default();
    config_.max_queued_messages = 2;
    let mut sim = Sim::new(config_, 921);
    let now = sim.now();
    let mut c = config(V5, "app");
    c.manual_acks = true;
    c.properties.receive_maximum = std::num::NonZeroU16::new(1);
    let link = sim.broker.link(now, c).unwrap();
    sim.broker
        .with_link(now, link, |c| {
            let q = tinymqtt::TopicFilter::new("q").unwrap();
            c.subscribe(
                now,
                vec![tinymqtt::codec::Subscription::new(q, QoS::AtLeastOnce)],
                Default::default(),
            )
        })
        .unwrap()
        .unwrap();
    // Ten QoS 1 messages to a link that acknowledges nothing yet, with a window of one: one
    // in flight, and the session's queue at its limit (held publishers let it reach twice
    // that), the rest dropped and counted, as for a network client.
    for i in 0..10 {
        let now = sim.now();
        sim.broker.handle_admin(
            now,
            AdminTag(i),
            AdminRequest::Publish(msg("q", format!("{i}"), QoS::AtLeastOnce)),
        );
    }
    sim.run_for(secs(2));
    let first = link_events(&mut sim, link);
    let mut tokens: Vec<_> = first
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => m.ack.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(tokens.len(), 1, "the window holds one: {first:?}");
    let dropped = sim.broker.dropped(&s("app")).expect("the link's session");
    assert!(dropped > 0, "its queue is bounded");
    let mut got = link_messages(&first);
    while let Some(token) = tokens.pop() {
        let now = sim.now();
        sim.broker
            .with_link(now, link, |c| c.ack(now, token))
            .unwrap()
            .unwrap();
        let events = link_events(&mut sim, link);
        got.extend(link_messages(&events));
        tokens.extend(events.iter().filter_map(|e| match e {
            Event::Message(m) => m.ack.clone(),
            _ => None,
        }));
    }
    assert_eq!(got.len() as u64 + dropped, 10, "{got:?}, {dropped} dropped");
    assert_eq!(got[0], "0", "oldest first");
    let answered = drain(&mut sim);
    assert_eq!(
        answered.len(),
        10,
        "every publish answered (held ones after max_publisher_wait)"
    );

    // Kicked: DISCONNECT 0x98, its last event.
    answer(&mut sim, AdminRequest::Disconnect(s("app"))).unwrap();
    let events = link_events(&mut sim, link);
    let reason = events
        .iter()
        .find_map(|e| match e {
            Event::Disconnected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .expect("the link hears it was disconnected");
    assert_eq!(reason.reason_code, ReasonCode::AdministrativeAction);
    assert!(
        sim.broker.with_link(sim.now(), link, |_| ()).is_none(),
        "the link is gone"
    );
    assert_eq!(sim.broker.stats().connections, 0);
}

#[test]
fn a_link_over_max_connections_ends_at_once() {
    let mut config_ = BrokerConfig::default();
    config_.max_connections = Some(0);
    let mut sim = Sim::new(config_, 922);
    let now = sim.now();
    // The first transport is accepted (room for a takeover), the second closed before it is
    // read: that link ends at once.
    let _a = sim.broker.link(now, config(V5, "a")).unwrap();
    let b = sim.broker.link(now, config(V5, "b")).unwrap();
    let events = link_events(&mut sim, b);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Disconnected { .. })),
        "a refused link hears it ended: {events:?}"
    );
    assert!(sim.broker.with_link(now, b, |_| ()).is_none());
}
