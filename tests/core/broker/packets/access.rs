//! Access control against a hostile client: sessions belong to the user name that made them
//! (no takeover, resumption or discard by another user), identity rules
//! (`use_username_as_clientid`, `use_identity_as_username`), assigned client identifiers,
//! the read rights checked before a message is queued, `$SYS` closed to publishers, and
//! `$share` filters and retained messages under the ACL.

use std::sync::Arc;

use bytes::Bytes;
use tinymqtt::broker::{AllowAll, Authorizer, Broker, BrokerConfig, BrokerEvent, DeniedAction};
use tinymqtt::codec::{Connect, Will, WillProperties};
use tinymqtt::{ByteStr, ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName};

use crate::broker::packets::{publish, publishes, refused, suback, subscribe, V311, V5};
use crate::sim::raw::Raw;
use crate::sim::{s, sub};

/// Each user reads and writes `USER/#` only; anonymous clients `public/#`. Subscriptions
/// are granted when they may see such a topic (`#` included), as an ACL file grants them.
struct OwnTopics;

fn prefix(user: Option<&ByteStr>) -> String {
    format!("{}/", user.map_or("public", ByteStr::as_str))
}

impl Authorizer for OwnTopics {
    fn can_publish(&self, _: &ByteStr, user: Option<&ByteStr>, t: &TopicName) -> bool {
        t.as_str().starts_with(&prefix(user))
    }
    fn can_subscribe(&self, _: &ByteStr, user: Option<&ByteStr>, f: &TopicFilter) -> bool {
        let f = f.shared().map_or(f.as_str(), |(_, f)| f);
        f == "#" || f.starts_with(&prefix(user))
    }
    fn can_receive(&self, _: &ByteStr, user: Option<&ByteStr>, t: &TopicName) -> bool {
        t.as_str().starts_with(&prefix(user))
    }
}

fn broker(f: impl FnOnce(&mut BrokerConfig)) -> Raw {
    let mut bc = BrokerConfig::default();
    f(&mut bc);
    Raw::with_broker(Broker::with_auth(
        bc,
        Arc::new(AllowAll),
        Arc::new(OwnTopics),
    ))
}

fn as_user(v: ProtocolVersion, id: &'static str, user: Option<&'static str>) -> Connect {
    let mut c = Connect::new(v, s(id));
    c.username = user.map(s);
    c.password = user.map(|_| Bytes::from_static(b"pw"));
    c
}

fn persistent(mut c: Connect) -> Connect {
    c.clean_start = false;
    if c.protocol.is_v5() {
        c.properties.session_expiry_interval = Some(3600);
    }
    c
}

fn with_will(mut c: Connect) -> Connect {
    c.will = Some(Will {
        topic: crate::sim::topic("alice/will"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    c
}

#[test]
fn another_user_cannot_take_over_a_connected_session() {
    for v in [V5, V311] {
        let code = ReasonCode::NotAuthorized;
        let mut r = broker(|_| {});
        let (watcher, _) = r.connect_with(as_user(v, "w", Some("alice")));
        r.send_packet(
            watcher,
            v,
            subscribe(1, vec![sub("alice/#", QoS::AtLeastOnce)]),
        );
        suback(&mut r, watcher, v);
        let (alice, _) = r.connect_with(with_will(as_user(v, "dev", Some("alice"))));
        // Mallory (and an anonymous client) with alice's client id: refused, alice stays.
        assert_eq!(refused(&mut r, as_user(v, "dev", Some("mallory"))), code);
        assert_eq!(refused(&mut r, as_user(v, "dev", None)), code);
        assert_eq!(
            refused(&mut r, persistent(as_user(v, "dev", Some("mallory")))),
            code
        );
        r.expect_open(alice);
        r.expect_silence(watcher); // no will: alice was not disconnected
                                   // Alice herself takes it over, as MQTT says.
        let (again, _) = r.connect_with(as_user(v, "dev", Some("alice")));
        r.expect_open(again);
        r.expect_closed(alice);
    }
}

#[test]
fn a_v311_takeover_by_another_user_gets_return_code_5() {
    let mut r = broker(|_| {});
    r.connect_with(as_user(V311, "dev", Some("alice")));
    let c = r.accept();
    r.send_packet(c, V311, as_user(V311, "dev", Some("mallory")));
    r.expect_bytes(c, &crate::broker::packets::hex("20 02 00 05"));
    r.expect_closed(c);
}

#[test]
fn another_user_cannot_resume_or_discard_an_offline_session() {
    let mut r = broker(|_| {});
    let (alice, _) = r.connect_with(persistent(as_user(V5, "dev", Some("alice"))));
    r.send_packet(
        alice,
        V5,
        subscribe(1, vec![sub("alice/#", QoS::AtLeastOnce)]),
    );
    suback(&mut r, alice, V5);
    r.close(alice);
    let publisher = r.connect_with(as_user(V5, "p", Some("alice"))).0;
    r.send_packet(
        publisher,
        V5,
        publish("alice/x", "queued", QoS::AtLeastOnce, 1),
    );
    r.packets(publisher, V5);
    for c in [
        persistent(as_user(V5, "dev", Some("mallory"))),
        as_user(V5, "dev", Some("mallory")),
    ] {
        assert_eq!(refused(&mut r, c), ReasonCode::NotAuthorized);
    }
    // The session is intact for its owner: present, with its queued message.
    let (back, ack) = r.connect_with(persistent(as_user(V5, "dev", Some("alice"))));
    assert!(ack.session_present);
    let got = publishes(&mut r, back, V5);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].payload, "queued");
}

#[test]
fn an_allowed_takeover_by_another_user_rechecks_subscriptions_and_queue() {
    let mut r = broker(|c| c.allow_takeover_by_other_user = true);
    let (alice, _) = r.connect_with(persistent(as_user(V5, "dev", Some("alice"))));
    r.send_packet(
        alice,
        V5,
        subscribe(
            1,
            vec![sub("alice/#", QoS::AtLeastOnce), sub("#", QoS::AtLeastOnce)],
        ),
    );
    suback(&mut r, alice, V5);
    r.close(alice);
    let p = r.connect_with(as_user(V5, "p", Some("alice"))).0;
    r.send_packet(p, V5, publish("alice/x", "for alice", QoS::AtLeastOnce, 1));
    r.packets(p, V5);
    let (bob, ack) = r.connect_with(persistent(as_user(V5, "dev", Some("bob"))));
    assert!(ack.session_present);
    // Nothing of alice's reaches bob: not the queued message, and not through her
    // subscriptions (`alice/#` is gone; `#` stays, read-checked per message).
    assert_eq!(publishes(&mut r, bob, V5), vec![]);
    r.send_packet(p, V5, publish("alice/y", "later", QoS::AtLeastOnce, 2));
    r.packets(p, V5);
    assert_eq!(publishes(&mut r, bob, V5), vec![]);
    let pb = r.connect_with(as_user(V5, "pb", Some("bob"))).0;
    r.send_packet(pb, V5, publish("bob/y", "for bob", QoS::AtLeastOnce, 1));
    // alice's `alice/#` went with her: only `#` is left.
    assert_eq!(r.broker.stats().subscriptions, 1);
    let got = publishes(&mut r, bob, V5);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].topic.as_str(), "bob/y");
}

#[test]
fn use_username_as_clientid_replaces_the_id_and_refuses_clients_without_one() {
    let mut r = broker(|c| c.use_username_as_clientid = true);
    let (alice, _) = r.connect_with(as_user(V5, "whatever", Some("alice")));
    let named = r.events().iter().any(|e| {
        matches!(e, BrokerEvent::Connected { conn, client_id, .. } if *conn == alice && client_id.as_str() == "alice")
    });
    assert!(named, "{:?}", r.events());
    // Another id, same user: the same session, taken over.
    let (again, _) = r.connect_with(as_user(V5, "other", Some("alice")));
    r.expect_closed(alice);
    r.expect_open(again);
    assert_eq!(
        refused(&mut r, as_user(V5, "anon", None)),
        ReasonCode::NotAuthorized
    );
    let c = r.accept();
    r.send_packet(c, V311, as_user(V311, "anon", None));
    r.expect_bytes(c, &crate::broker::packets::hex("20 02 00 05"));
}

#[test]
fn use_identity_as_username_takes_the_transports_identity() {
    struct Never;
    impl tinymqtt::broker::Authenticator for Never {
        fn authenticate(
            &self,
            _: &ByteStr,
            _: Option<&ByteStr>,
            _: Option<&Bytes>,
        ) -> Result<(), ReasonCode> {
            Err(ReasonCode::BadUserNameOrPassword)
        }
    }
    let bc = BrokerConfig::default()
        .with_use_identity_as_username(true)
        .with_allow_anonymous(false);
    let mut r = Raw::with_broker(Broker::with_auth(bc, Arc::new(Never), Arc::new(OwnTopics)));
    // No identity from the transport: refused, whatever the CONNECT claims.
    assert_eq!(
        refused(&mut r, as_user(V5, "c", Some("alice"))),
        ReasonCode::NotAuthorized
    );
    let c = r.accept();
    r.broker.set_peer_identity(c, s("alice"));
    r.send_packet(c, V5, as_user(V5, "c", Some("mallory")));
    assert_eq!(r.expect_connack(c, V5).reason_code, ReasonCode::Success);
    // The user name is the identity's: alice's topics, not mallory's.
    r.send_packet(c, V5, publish("alice/x", "m", QoS::AtLeastOnce, 1));
    r.send_packet(c, V5, publish("mallory/x", "m", QoS::AtLeastOnce, 2));
    let codes: Vec<ReasonCode> = r
        .packets(c, V5)
        .into_iter()
        .map(|p| crate::broker::packets::ack_of(p).1.reason_code)
        .collect();
    // Allowed (and matched by nobody: 0x10), then refused.
    assert_eq!(
        codes,
        [ReasonCode::NoMatchingSubscribers, ReasonCode::NotAuthorized]
    );
}

#[test]
fn assigned_client_ids_come_from_the_random_source() {
    let mut broker = Broker::new(BrokerConfig::default());
    broker.set_client_id_source(Box::new(|| 0x0123_4567_89ab_cdef_0011_2233_4455_6677));
    let mut r = Raw::with_broker(broker);
    let (_, ack) = r.connect_with(Connect::new(V5, s("")));
    assert_eq!(
        ack.properties
            .assigned_client_identifier
            .as_ref()
            .map(ByteStr::as_str),
        Some("tinymqtt-0123456789abcdef0011223344556677")
    );
    // Without a source, still not the connection counter.
    let mut r = broker_default();
    let ids: Vec<String> = (0..2)
        .map(|_| {
            let (conn, ack) = r.connect_with(Connect::new(V5, s("")));
            let id = ack.properties.assigned_client_identifier.unwrap();
            assert_ne!(id.as_str(), format!("tinymqtt-{:016x}", conn.0));
            id.as_str().to_owned()
        })
        .collect();
    assert_ne!(ids[0], ids[1]);
}

fn broker_default() -> Raw {
    Raw::new(BrokerConfig::default())
}

#[test]
fn a_subscription_wider_than_the_read_rights_queues_only_what_its_owner_may_read() {
    let mut r = broker(|c| c.max_queued_messages = 2);
    let (alice, _) = r.connect_with(persistent(as_user(V5, "dev", Some("alice"))));
    r.send_packet(alice, V5, subscribe(1, vec![sub("#", QoS::AtLeastOnce)]));
    suback(&mut r, alice, V5);
    r.close(alice);
    let bob = r.connect_with(as_user(V5, "pb", Some("bob"))).0;
    for (i, t) in ["bob/1", "bob/2", "bob/3"].into_iter().enumerate() {
        r.send_packet(
            bob,
            V5,
            publish(t, "not alice's", QoS::AtLeastOnce, i as u16 + 1),
        );
    }
    r.packets(bob, V5);
    let pa = r.connect_with(as_user(V5, "pa", Some("alice"))).0;
    r.send_packet(pa, V5, publish("alice/x", "hers", QoS::AtLeastOnce, 1));
    r.packets(pa, V5);
    // Bob's messages never took room in alice's queue: hers is there.
    assert_eq!(r.broker.dropped(&s("dev")), Some(0));
    let (back, _) = r.connect_with(persistent(as_user(V5, "dev", Some("alice"))));
    let got = publishes(&mut r, back, V5);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].topic.as_str(), "alice/x");
}

#[test]
fn publishes_to_sys_are_refused_whatever_the_acl_says() {
    let mut r = Raw::new(BrokerConfig::default()); // allows everything
    let watcher = crate::broker::packets::subscriber(&mut r, V5, "w", "$SYS/#");
    let other = crate::broker::packets::subscriber(&mut r, V5, "o", "$other/#");
    let c = r.connect(V5, "c");
    r.send_packet(
        c,
        V5,
        publish("$SYS/broker/uptime", "0", QoS::AtLeastOnce, 1),
    );
    r.send_packet(c, V5, publish("$SYS/x", "0", QoS::ExactlyOnce, 2));
    r.send_packet(c, V5, publish("$SYS", "0", QoS::AtLeastOnce, 3));
    let acks: Vec<(&str, ReasonCode)> = r
        .packets(c, V5)
        .into_iter()
        .map(|p| {
            let (kind, a) = crate::broker::packets::ack_of(p);
            (kind, a.reason_code)
        })
        .collect();
    let no = ReasonCode::NotAuthorized;
    assert_eq!(acks, [("PUBACK", no), ("PUBREC", no), ("PUBACK", no)]);
    // 3.1.x has no code: dropped, and reported.
    let old = r.connect(V311, "old");
    r.send_packet(old, V311, publish("$SYS/y", "0", QoS::AtMostOnce, 0));
    r.send_packet(old, V311, publish("$SYS/y", "1", QoS::AtLeastOnce, 4));
    let denied = r
        .events()
        .iter()
        .filter(|e| matches!(e, BrokerEvent::Denied { denied, .. } if matches!(&denied.action, DeniedAction::Publish(t) if t.as_str().starts_with("$SYS"))))
        .count();
    assert_eq!(denied, 5);
    assert_eq!(r.broker.stats().publishes_denied, 5);
    r.expect_silence(watcher);
    // Other `$` topics follow the ACL.
    r.send_packet(c, V5, publish("$other/x", "ok", QoS::AtMostOnce, 0));
    assert_eq!(publishes(&mut r, other, V5).len(), 1);
    // Nor may a will go to `$SYS`.
    let mut w = Connect::new(V5, s("willing"));
    w.will = Some(Will {
        topic: crate::sim::topic("$SYS/fake"),
        payload: Bytes::from_static(b"x"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    assert_eq!(refused(&mut r, w), ReasonCode::NotAuthorized);
}

#[test]
fn refused_connections_and_denied_requests_are_reported_with_client_and_user() {
    let mut r = broker(|_| {});
    r.connect_with(as_user(V5, "dev", Some("alice")));
    refused(&mut r, as_user(V5, "dev", Some("mallory")));
    let (c, _) = r.connect_with(as_user(V5, "b", Some("bob")));
    r.send_packet(c, V5, subscribe(1, vec![sub("alice/#", QoS::AtMostOnce)]));
    suback(&mut r, c, V5);
    let denied: Vec<(String, Option<String>, DeniedAction)> = r
        .events()
        .iter()
        .filter_map(|e| match e {
            BrokerEvent::Denied { denied, .. } => Some((
                denied.client_id.as_str().to_owned(),
                denied.username.as_ref().map(|u| u.as_str().to_owned()),
                denied.action.clone(),
            )),
            _ => None,
        })
        .collect();
    assert!(denied.contains(&(
        "dev".into(),
        Some("mallory".into()),
        DeniedAction::Connect(ReasonCode::NotAuthorized)
    )));
    assert!(denied.contains(&(
        "b".into(),
        Some("bob".into()),
        DeniedAction::Subscribe(crate::sim::filter("alice/#"))
    )));
    assert_eq!(denied.len(), 2, "{denied:?}");
}

#[test]
fn a_shared_group_delivers_to_a_member_that_may_read_the_message() {
    let mut r = broker(|_| {});
    let (alice, _) = r.connect_with(as_user(V5, "a", Some("alice")));
    let (bob, _) = r.connect_with(as_user(V5, "b", Some("bob")));
    for c in [alice, bob] {
        r.send_packet(
            c,
            V5,
            subscribe(1, vec![sub("$share/g/#", QoS::AtLeastOnce)]),
        );
        suback(&mut r, c, V5);
    }
    let p = r.connect_with(as_user(V5, "p", Some("alice"))).0;
    for i in 1..=4 {
        r.send_packet(p, V5, publish("alice/x", "hers", QoS::AtLeastOnce, i));
    }
    r.packets(p, V5);
    // Every one reaches alice: bob, who may not read them, is passed over, not handed
    // messages that his connection would then drop.
    assert_eq!(publishes(&mut r, alice, V5).len(), 4);
    assert_eq!(publishes(&mut r, bob, V5), vec![]);
}

#[test]
fn retained_messages_the_owner_may_not_read_are_never_queued() {
    let mut r = broker(|_| {});
    let bob = r.connect_with(as_user(V5, "pb", Some("bob"))).0;
    let mut m = publish("bob/secret", "bob's", QoS::AtLeastOnce, 1);
    m.retain = true;
    r.send_packet(bob, V5, m);
    let pa = r.connect_with(as_user(V5, "pa", Some("alice"))).0;
    let mut m = publish("alice/state", "alice's", QoS::AtLeastOnce, 1);
    m.retain = true;
    r.send_packet(pa, V5, m);
    let (alice, _) = r.connect_with(as_user(V5, "a", Some("alice")));
    r.send_packet(alice, V5, subscribe(1, vec![sub("#", QoS::AtLeastOnce)]));
    suback(&mut r, alice, V5);
    let got = publishes(&mut r, alice, V5);
    let topics: Vec<&str> = got.iter().map(|p| p.topic.as_str()).collect();
    assert_eq!(topics, ["alice/state"]);
}

#[test]
fn a_session_restored_from_the_store_still_belongs_to_its_owner() {
    use tinymqtt::store::{SessionOwner, SessionRecord, StoreOp, StoreSnapshot};
    let stored = |snapshot: StoreSnapshot, wall: u64| {
        let mut r = broker(|c| c.durable_acks = false);
        let now = r.now();
        r.broker.restore(now, wall, snapshot);
        r
    };
    let mut r = stored(StoreSnapshot::default(), 1_800_000_000);
    let (alice, _) = r.connect_with(persistent(as_user(V5, "dev", Some("alice"))));
    r.send_packet(
        alice,
        V5,
        subscribe(1, vec![sub("alice/#", QoS::AtLeastOnce)]),
    );
    suback(&mut r, alice, V5);
    r.close(alice);
    let mut store = StoreSnapshot::default();
    let mut owners = Vec::new();
    while let Some(op) = r.broker.poll_store() {
        if let StoreOp::PutSession(s) = &op {
            // Through its bytes, as a store keeps it.
            let back = SessionRecord::decode(&s.encode().unwrap()).unwrap();
            owners.push(back.owner.clone());
            store.apply(StoreOp::PutSession(back));
        } else {
            store.apply(op);
        }
    }
    assert!(
        owners.contains(&SessionOwner::User(s("alice"))),
        "{owners:?}"
    );
    // After a restart, mallory still cannot have it; alice resumes it.
    let mut r = stored(store, 1_800_000_010);
    assert_eq!(
        refused(&mut r, persistent(as_user(V5, "dev", Some("mallory")))),
        ReasonCode::NotAuthorized
    );
    let (_, ack) = r.connect_with(persistent(as_user(V5, "dev", Some("alice"))));
    assert!(ack.session_present);
}
