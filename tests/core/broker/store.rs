//! Persistence in the core: the change log a broker's router writes for a store, and a broker
//! restored from that log answering as the first one would (retained messages delivered,
//! persistent sessions resumed with their subscriptions, expiry counted across the restart
//! from the wall clock the runtime gives).

use std::num::NonZeroU32;

use crate::sim::{config, msg, persistent, s, secs, sub, topic, Sim};
use tinymqtt::broker::{Broker, BrokerConfig, Restored};
use tinymqtt::codec::{Disconnect, Publish, SubscribeProperties};
use tinymqtt::store::{QueuedRecord, RetainedRecord, SessionRecord, StoreOp, StoreSnapshot};
use tinymqtt::{ProtocolVersion, QoS};

const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// The wall clock of the first broker's start, in seconds since the Unix epoch.
const WALL: u64 = 1_800_000_000;

/// A simulation whose broker logs its changes from `wall` on, restored from `snapshot`.
fn stored_sim(wall: u64, snapshot: StoreSnapshot) -> (Sim, Restored) {
    stored_sim_with(BrokerConfig::default(), wall, snapshot)
}

/// [`stored_sim`] with a broker configuration.
fn stored_sim_with(config: BrokerConfig, wall: u64, snapshot: StoreSnapshot) -> (Sim, Restored) {
    let mut sim = Sim::new(config, 7);
    let now = sim.now();
    let restored = sim.broker.restore(now, wall, snapshot);
    (sim, restored)
}

/// Drains the broker's change log into `store`, each op through its record's bytes as a
/// store keeps them, then hands the tickets back as a runtime does once the batch is durable
/// (so held acknowledgements go out); returns the ops.
fn drain(sim: &mut Sim, store: &mut StoreSnapshot) -> Vec<StoreOp> {
    let mut ops = Vec::new();
    loop {
        let batch = drain_batch(sim, store);
        if batch.is_empty() {
            return ops;
        }
        let now = sim.now();
        for op in &batch {
            if let StoreOp::Durable(t) = op {
                sim.broker.handle_durable(now, *t);
            }
        }
        sim.settle();
        ops.extend(batch);
    }
}

/// One batch of [`drain`], without handing tickets back.
fn drain_batch(sim: &mut Sim, store: &mut StoreSnapshot) -> Vec<StoreOp> {
    let mut ops = Vec::new();
    while let Some(op) = sim.broker.poll_store() {
        let kept = match op.clone() {
            StoreOp::PutRetained(r) => {
                StoreOp::PutRetained(RetainedRecord::decode(&r.encode().unwrap()).unwrap())
            }
            StoreOp::PutSession(r) => {
                StoreOp::PutSession(SessionRecord::decode(&r.encode().unwrap()).unwrap())
            }
            StoreOp::Enqueue(q) => {
                StoreOp::Enqueue(QueuedRecord::decode(&q.encode().unwrap()).unwrap())
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
            queued: 0,
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
    // The store hands its tickets back: a stored QoS 2 delivery waits for its record.
    drain(&mut b, &mut StoreSnapshot::default());
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

/// The payloads of a store's queued messages for `id`, in sequence order.
fn queued_payloads(store: &StoreSnapshot, id: &str) -> Vec<String> {
    let mut q: Vec<&QueuedRecord> = store.queued.iter().filter(|q| q.client_id == id).collect();
    q.sort_by_key(|q| q.seq);
    q.iter()
        .map(|q| String::from_utf8_lossy(&q.publish.payload).into_owned())
        .collect()
}

fn payloads(got: &[Publish]) -> Vec<(String, QoS)> {
    got.iter()
        .map(|p| (String::from_utf8_lossy(&p.payload).into_owned(), p.qos))
        .collect()
}

#[test]
fn an_offline_queue_survives_the_restart_in_order_and_is_not_redelivered() {
    let mut store = StoreSnapshot::default();
    let (mut a, _) = stored_sim(WALL, StoreSnapshot::default());
    let subr = a.connected(persistent(V5, "sub", 3600));
    a.subscribe(subr, &[("q", QoS::ExactlyOnce)]);
    let pubr = a.connected(config(V5, "pub"));
    a.publish_settled(pubr, msg("q", "online", QoS::AtLeastOnce));
    assert_eq!(a.messages(subr).len(), 1);
    a.disconnect(subr, Disconnect::default());
    a.settle();
    a.publish_settled(pubr, msg("q", "m1", QoS::AtLeastOnce));
    a.publish_settled(pubr, msg("q", "m2", QoS::ExactlyOnce));
    a.publish_settled(pubr, msg("q", "m3", QoS::AtLeastOnce));
    let ops = drain(&mut a, &mut store);
    let enqueued: Vec<u64> = ops
        .iter()
        .filter_map(|op| match op {
            StoreOp::Enqueue(q) => Some(q.seq),
            _ => None,
        })
        .collect();
    assert_eq!(
        enqueued.len(),
        4,
        "each message owed to the session: {ops:?}"
    );
    assert!(
        ops.contains(&StoreOp::Dequeue {
            client_id: s("sub"),
            seq: enqueued[0]
        }),
        "the one delivered online leaves the store with its PUBACK: {ops:?}"
    );
    assert_eq!(queued_payloads(&store, "sub"), ["m1", "m2", "m3"]);

    // A new broker from the store: the subscriber resumes and gets them, in order, once.
    let (mut b, restored) = stored_sim(WALL + 10, store.clone());
    assert_eq!((restored.sessions, restored.queued), (1, 3));
    let back = b.add_client(resuming(V5, "sub", 3600));
    let (present, _) = b.connect(back);
    assert!(present, "the session is present after the restart");
    b.settle();
    // The store hands its tickets back (the QoS 2 one waits for its record); the client
    // hands a QoS 2 message over at PUBREL, so it comes last here although it was sent in
    // its place.
    let mut ops = drain(&mut b, &mut store);
    let mut got = payloads(&b.messages(back));
    got.sort();
    assert_eq!(
        got,
        [
            ("m1".to_owned(), QoS::AtLeastOnce),
            ("m2".to_owned(), QoS::ExactlyOnce),
            ("m3".to_owned(), QoS::AtLeastOnce)
        ]
    );
    ops.extend(drain(&mut b, &mut store));
    let dequeued = ops
        .iter()
        .filter(|op| matches!(op, StoreOp::Dequeue { client_id, .. } if client_id == "sub"))
        .count();
    assert_eq!(dequeued, 3, "{ops:?}");
    assert!(store.queued.is_empty());

    // Restarted again: what was delivered is not delivered twice.
    let (mut c, restored) = stored_sim(WALL + 20, store);
    assert_eq!((restored.sessions, restored.queued), (1, 0));
    let again = c.add_client(resuming(V5, "sub", 3600));
    assert!(c.connect(again).0);
    c.settle();
    assert!(c.messages(again).is_empty());
}

#[test]
fn mqtt_3_3_2_5_queued_message_expiry_keeps_counting_across_the_restart() {
    let mut store = StoreSnapshot::default();
    let (mut a, _) = stored_sim(WALL, StoreSnapshot::default());
    let subr = a.connected(persistent(V5, "sub", 3600));
    a.subscribe(subr, &[("q", QoS::AtLeastOnce)]);
    a.disconnect(subr, Disconnect::default());
    a.settle();
    let pubr = a.connected(config(V5, "pub"));
    let mut brief = msg("q", "brief", QoS::AtLeastOnce);
    brief.properties.message_expiry_interval = Some(30);
    a.publish_settled(pubr, brief);
    a.publish_settled(pubr, msg("q", "lasting", QoS::AtLeastOnce));
    drain(&mut a, &mut store);
    assert_eq!(queued_payloads(&store, "sub"), ["brief", "lasting"]);

    // Back after 10 s: both, the first with what is left of its lifetime.
    let (mut b, restored) = stored_sim(WALL + 10, store.clone());
    assert_eq!((restored.queued, restored.expired), (2, 0));
    let back = b.add_client(resuming(V5, "sub", 3600));
    b.connect(back);
    b.settle();
    let got = b.messages(back);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].properties.message_expiry_interval, Some(20));

    // Back after 31 s: the expired one is deleted, never delivered.
    let (mut late, restored) = stored_sim(WALL + 31, store.clone());
    assert_eq!((restored.queued, restored.expired), (1, 1));
    let mut after = store.clone();
    let ops = drain(&mut late, &mut after);
    assert!(
        ops.iter()
            .any(|op| matches!(op, StoreOp::Dequeue { client_id, .. } if client_id == "sub")),
        "{ops:?}"
    );
    assert_eq!(queued_payloads(&after, "sub"), ["lasting"]);
    let back = late.add_client(resuming(V5, "sub", 3600));
    late.connect(back);
    late.settle();
    assert_eq!(
        payloads(&late.messages(back)),
        [("lasting".to_owned(), QoS::AtLeastOnce)]
    );
}

#[test]
fn queue_overflow_drops_and_session_end_reach_the_store() {
    let cfg = BrokerConfig::default()
        .with_max_queued_messages(2)
        .with_queue_qos0_offline(true);
    let mut store = StoreSnapshot::default();
    let (mut a, _) = stored_sim_with(cfg.clone(), WALL, StoreSnapshot::default());
    let subr = a.connected(persistent(V5, "sub", 3600));
    a.subscribe(subr, &[("q", QoS::AtLeastOnce)]);
    a.disconnect(subr, Disconnect::default());
    a.settle();
    let pubr = a.connected(config(V5, "pub"));
    a.publish_settled(pubr, msg("q", "zero", QoS::AtMostOnce));
    drain(&mut a, &mut store);
    assert_eq!(
        queued_payloads(&store, "sub"),
        ["zero"],
        "qos 0 queued is stored"
    );
    assert_eq!(store.queued[0].publish.qos, QoS::AtMostOnce);
    a.publish_settled(pubr, msg("q", "b", QoS::AtLeastOnce));
    // Full: the oldest QoS 0 message makes room, in the store too.
    a.publish_settled(pubr, msg("q", "c", QoS::AtLeastOnce));
    // Full of QoS 1: the new message is dropped and never stored.
    a.publish_settled(pubr, msg("q", "d", QoS::AtLeastOnce));
    drain(&mut a, &mut store);
    assert_eq!(a.broker.dropped(&s("sub")), Some(2));
    assert_eq!(queued_payloads(&store, "sub"), ["b", "c"]);

    let (mut b, restored) = stored_sim_with(cfg, WALL + 5, store.clone());
    assert_eq!(restored.queued, 2);
    let back = b.add_client(resuming(V5, "sub", 3600));
    b.connect(back);
    b.settle();
    assert_eq!(
        payloads(&b.messages(back)),
        [
            ("b".to_owned(), QoS::AtLeastOnce),
            ("c".to_owned(), QoS::AtLeastOnce)
        ]
    );

    // Restarted with a smaller limit: what no longer fits is dropped, in the store too.
    let one = BrokerConfig::default().with_max_queued_messages(1);
    let (mut small, restored) = stored_sim_with(one, WALL + 5, store.clone());
    assert_eq!(restored.queued, 1);
    assert_eq!(small.broker.dropped(&s("sub")), Some(1));
    let mut after = store.clone();
    drain(&mut small, &mut after);
    assert_eq!(queued_payloads(&after, "sub"), ["b"]);

    // A clean start ends the session: its queue leaves the store with it.
    let (mut c, _) = stored_sim(WALL + 6, store.clone());
    c.connected(config(V5, "sub"));
    let ops = drain(&mut c, &mut store);
    assert!(ops.contains(&StoreOp::DeleteSession(s("sub"))), "{ops:?}");
    assert!(store.queued.is_empty());
}

#[test]
fn messages_owed_to_an_online_session_in_flight_or_queued_are_stored_and_come_back() {
    let mut store = StoreSnapshot::default();
    let (mut a, _) = stored_sim(WALL, StoreSnapshot::default());
    let mut slow = persistent(V5, "slow", 3600);
    slow.properties.receive_maximum = std::num::NonZeroU16::new(1);
    let subr = a.connected(slow);
    a.subscribe(subr, &[("q", QoS::AtLeastOnce)]);
    a.deafen(subr);
    let pubr = a.connected(config(V5, "pub"));
    for m in ["w1", "w2", "w3"] {
        a.publish_settled(pubr, msg("q", m, QoS::AtLeastOnce));
    }
    drain(&mut a, &mut store);
    // "w1" is in flight (sent, unacknowledged), the rest waits: all are stored before the
    // publisher gets its PUBACK, each with the packet id it goes out with.
    assert_eq!(queued_payloads(&store, "slow"), ["w1", "w2", "w3"]);
    let ids: Vec<_> = store.queued.iter().map(|q| q.packet_id).collect();
    assert!(ids.iter().all(Option::is_some), "{ids:?}");
    a.sever(subr);
    a.settle();
    drain(&mut a, &mut store);
    assert_eq!(queued_payloads(&store, "slow"), ["w1", "w2", "w3"]);

    let (mut b, restored) = stored_sim(WALL + 5, store);
    assert_eq!(restored.queued, 3);
    let back = b.add_client(resuming(V5, "slow", 3600));
    assert!(b.connect(back).0);
    b.settle();
    assert_eq!(
        payloads(&b.messages(back)),
        [
            ("w1".to_owned(), QoS::AtLeastOnce),
            ("w2".to_owned(), QoS::AtLeastOnce),
            ("w3".to_owned(), QoS::AtLeastOnce)
        ]
    );
}
