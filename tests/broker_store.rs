//! Persistence in the core: the change log a broker's router writes for a store, and a broker
//! restored from that log answering as the first one would (retained messages delivered,
//! persistent sessions resumed with their subscriptions, expiry counted across the restart
//! from the wall clock the runtime gives).

mod sim;

use std::num::NonZeroU32;

use sim::{config, msg, persistent, s, secs, sub, topic, Sim};
use tinymqtt::broker::{Broker, BrokerConfig, Restored};
use tinymqtt::codec::{Disconnect, Publish, SubscribeProperties};
use tinymqtt::store::{RetainedRecord, SessionRecord, StoreOp, StoreSnapshot};
use tinymqtt::{ProtocolVersion, QoS};

const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// The wall clock of the first broker's start, in seconds since the Unix epoch.
const WALL: u64 = 1_800_000_000;

/// A simulation whose broker logs its changes from `wall` on, restored from `snapshot`.
fn stored_sim(wall: u64, snapshot: StoreSnapshot) -> (Sim, Restored) {
    let mut sim = Sim::new(BrokerConfig::default(), 7);
    let now = sim.now();
    let restored = sim.broker.restore(now, wall, snapshot);
    (sim, restored)
}

/// Drains the broker's change log into `store`, each op through its record's bytes as a
/// store keeps them; returns the ops.
fn drain(sim: &mut Sim, store: &mut StoreSnapshot) -> Vec<StoreOp> {
    let mut ops = Vec::new();
    while let Some(op) = sim.broker.poll_store() {
        let kept = match op.clone() {
            StoreOp::PutRetained(r) => {
                StoreOp::PutRetained(RetainedRecord::decode(&r.encode().unwrap()).unwrap())
            }
            StoreOp::PutSession(r) => {
                StoreOp::PutSession(SessionRecord::decode(&r.encode().unwrap()).unwrap())
            }
            other => other,
        };
        assert_eq!(kept, op, "a record reads back as written");
        store.apply(kept);
        ops.push(op);
    }
    ops
}

fn retained(t: &'static str, payload: &'static str) -> Publish {
    let mut p = msg(t, payload, QoS::AtLeastOnce);
    p.retain = true;
    p
}

/// A client that resumes its stored session.
fn resuming(v: ProtocolVersion, id: &'static str, expiry: u32) -> tinymqtt::client::ClientConfig {
    let mut c = persistent(v, id, expiry);
    c.clean_start = false;
    c
}

#[test]
fn a_restarted_broker_delivers_retained_and_resumes_sessions_with_their_subscriptions() {
    let mut store = StoreSnapshot::default();
    let (mut a, restored) = stored_sim(WALL, StoreSnapshot::default());
    assert_eq!(restored, Restored::default());

    let v5 = a.connected(persistent(V5, "v5", 3600));
    let mut id = sub("a/+", QoS::AtLeastOnce);
    id.options.no_local = true;
    let props = SubscribeProperties {
        subscription_identifier: NonZeroU32::new(42),
        ..Default::default()
    };
    a.subscribe_with(v5, vec![id], props);
    let old = a.connected(persistent(V311, "old", 0));
    a.subscribe(old, &[("b/#", QoS::ExactlyOnce), ("gone", QoS::AtMostOnce)]);
    a.unsubscribe(old, &["gone"]);
    let pubr = a.connected(config(V5, "pub"));
    a.publish_settled(pubr, retained("a/1", "one"));
    a.publish_settled(pubr, retained("c", "x"));
    a.publish_settled(pubr, retained("c", "")); // [MQTT-3.3.1-6] clears "c"
    a.run_for(secs(5));
    for cl in [v5, old, pubr] {
        a.disconnect(cl, Disconnect::default());
    }
    a.settle();
    let ops = drain(&mut a, &mut store);

    // The op stream: both persistent sessions stored, the clean one never; "c" put then
    // deleted; the closed sessions carry when they ended.
    assert!(ops.iter().all(|op| !matches!(op,
        StoreOp::PutSession(r) if r.client_id == "pub")));
    assert!(ops.contains(&StoreOp::DeleteRetained(topic("c"))));
    assert_eq!(store.retained.len(), 1);
    assert_eq!(store.retained[0].publish.payload, "one");
    assert_eq!(store.retained[0].stored_at, WALL);
    assert_eq!(store.sessions.len(), 2);
    let old_rec = store
        .sessions
        .iter()
        .find(|r| r.client_id == "old")
        .unwrap();
    let filters: Vec<&str> = old_rec
        .subscriptions
        .iter()
        .map(|s| s.filter.as_str())
        .collect();
    assert_eq!(filters, ["b/#"], "unsubscribed filters are gone");
    assert_eq!(
        old_rec.expiry,
        u32::MAX,
        "3.1.1 clean session 0 never expires"
    );
    let v5_rec = store.sessions.iter().find(|r| r.client_id == "v5").unwrap();
    assert_eq!(v5_rec.disconnected_at, Some(WALL + 5));
    assert_eq!(v5_rec.subscriptions[0].identifier, NonZeroU32::new(42));
    assert!(v5_rec.subscriptions[0].options.no_local);

    // A new broker, ten seconds later, from what the store holds.
    let (mut b, restored) = stored_sim(WALL + 15, store.clone());
    assert_eq!(
        restored,
        Restored {
            retained: 1,
            sessions: 2,
            expired: 0
        }
    );
    assert_eq!(b.broker.stats().sessions, 2);
    assert_eq!(b.broker.stats().subscriptions, 2);
    let fresh = b.connected(config(V5, "fresh"));
    b.subscribe(fresh, &[("#", QoS::AtLeastOnce)]);
    b.settle();
    let got = b.messages(fresh);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].topic.as_str(), &got[0].payload[..]),
        ("a/1", &b"one"[..])
    );
    assert!(got[0].retain);

    let v5 = b.add_client(resuming(V5, "v5", 3600));
    assert!(b.connect(v5).0, "session present after the restart");
    let old = b.add_client(resuming(V311, "old", 0));
    assert!(b.connect(old).0, "session present after the restart");
    b.publish_settled(fresh, msg("a/2", "two", QoS::AtLeastOnce));
    b.publish_settled(fresh, msg("b/x/y", "three", QoS::ExactlyOnce));
    b.publish_settled(v5, msg("a/3", "own", QoS::AtLeastOnce));
    let v5_got = b.messages(v5);
    assert_eq!(v5_got.len(), 1, "no local survives the restart: {v5_got:?}");
    assert_eq!(v5_got[0].payload, "two");
    assert_eq!(
        v5_got[0].properties.subscription_identifiers,
        vec![NonZeroU32::new(42).unwrap()]
    );
    let old_got = b.messages(old);
    assert_eq!(old_got.len(), 1, "{old_got:?}");
    assert_eq!(
        (old_got[0].qos, &old_got[0].payload[..]),
        (QoS::ExactlyOnce, &b"three"[..])
    );
}

#[test]
fn session_expiry_keeps_counting_across_the_restart() {
    let mut store = StoreSnapshot::default();
    let (mut a, _) = stored_sim(WALL, StoreSnapshot::default());
    let c = a.connected(persistent(V5, "c", 100));
    a.subscribe(c, &[("t", QoS::AtLeastOnce)]);
    a.disconnect(c, Disconnect::default());
    a.settle();
    drain(&mut a, &mut store);
    assert_eq!(store.sessions.len(), 1);

    // Down for 200 s: the session expired meanwhile and its record is deleted.
    let (mut late, restored) = stored_sim(WALL + 200, store.clone());
    assert_eq!((restored.sessions, restored.expired), (0, 1));
    let mut after = store.clone();
    let ops = drain(&mut late, &mut after);
    assert_eq!(ops, vec![StoreOp::DeleteSession(s("c"))]);
    assert!(after.sessions.is_empty());

    // Down for 60 s: restored, and it ends 40 s later.
    let (mut soon, restored) = stored_sim(WALL + 60, store.clone());
    assert_eq!(restored.sessions, 1);
    soon.run_for(secs(39));
    assert_eq!(soon.broker.stats().sessions, 1);
    soon.run_for(secs(2));
    assert_eq!(soon.broker.stats().sessions, 0);
    let mut after = store;
    assert_eq!(
        drain(&mut soon, &mut after),
        vec![StoreOp::DeleteSession(s("c"))]
    );
}

#[test]
fn mqtt_3_3_2_5_retained_expiry_keeps_counting_across_the_restart() {
    let mut store = StoreSnapshot::default();
    let (mut a, _) = stored_sim(WALL, StoreSnapshot::default());
    let p = a.connected(config(V5, "p"));
    let mut m = retained("e", "soon gone");
    m.properties.message_expiry_interval = Some(30);
    a.publish_settled(p, m);
    drain(&mut a, &mut store);

    let (mut b, restored) = stored_sim(WALL + 20, store.clone());
    assert_eq!(restored.retained, 1);
    let c = b.connected(config(V5, "c"));
    b.subscribe(c, &[("e", QoS::AtLeastOnce)]);
    b.settle();
    let got = b.messages(c);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].properties.message_expiry_interval,
        Some(10),
        "what is left of its lifetime"
    );

    let (mut late, restored) = stored_sim(WALL + 31, store);
    assert_eq!((restored.retained, restored.expired), (0, 1));
    assert_eq!(
        late.broker.poll_store(),
        Some(StoreOp::DeleteRetained(topic("e")))
    );
}

#[test]
fn clean_start_and_expiry_zero_delete_the_stored_session() {
    let mut store = StoreSnapshot::default();
    let (mut a, _) = stored_sim(WALL, StoreSnapshot::default());
    let c = a.connected(persistent(V5, "c", 60));
    a.subscribe(c, &[("t", QoS::AtLeastOnce)]);
    a.disconnect(c, Disconnect::default());
    a.settle();
    drain(&mut a, &mut store);
    assert_eq!(store.sessions.len(), 1);
    // [MQTT-3.1.2-4]: a clean start discards the session, in the store too.
    let again = a.connected(config(V5, "c"));
    let ops = drain(&mut a, &mut store);
    assert!(ops.contains(&StoreOp::DeleteSession(s("c"))), "{ops:?}");
    assert!(store.sessions.is_empty());
    a.disconnect(again, Disconnect::default());
    a.settle();
    assert_eq!(
        drain(&mut a, &mut store),
        vec![],
        "an expiry 0 session is never stored"
    );
}

#[test]
fn without_a_store_nothing_is_logged() {
    let mut sim = Sim::with_broker(Broker::new(BrokerConfig::default()), 3);
    let c = sim.connected(persistent(V5, "c", 60));
    sim.subscribe(c, &[("t", QoS::AtLeastOnce)]);
    sim.publish_settled(c, retained("t", "x"));
    assert_eq!(sim.broker.poll_store(), None);
}
