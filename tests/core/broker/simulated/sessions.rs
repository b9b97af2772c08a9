//! Sessions: clean start, expiry, offline queues, resends on resume and takeover, and a
//! seeded chaos run with severed links.

use std::time::Duration;

use bytes::Bytes;
use tinymqtt::broker::BrokerConfig;
use tinymqtt::client::Event;
use tinymqtt::codec::{Disconnect, DisconnectProperties, Publish};
use tinymqtt::{ProtocolVersion, QoS, ReasonCode};

use crate::broker::simulated::{payloads, V311, V3_1, V5};
use crate::sim::{config, msg, persistent, secs, Cl, Sim};

// ---- sessions -------------------------------------------------------------------------------

/// A persistent subscriber to `q/1` (QoS 1) and `q/2` (QoS 2) that goes offline, ten messages
/// published meanwhile, and the subscriber back after `offline`. Returns the session present
/// flag and the payloads per topic.
fn offline_round_trip(
    v: ProtocolVersion,
    seed: u64,
    broker: BrokerConfig,
    offline: Duration,
    sever: bool,
) -> (bool, Vec<Publish>) {
    let mut sim = Sim::new(broker, seed);
    sim.max_chunk = 1;
    let mut c = persistent(v, "sub", 3600);
    c.reconnect = None;
    let sub = sim.connected(c);
    sim.subscribe(sub, &[("q/1", QoS::AtLeastOnce), ("q/2", QoS::ExactlyOnce)]);
    if sever {
        sim.sever(sub);
    } else {
        sim.disconnect(sub, Disconnect::default());
        sim.settle();
    }
    let p = sim.connected(config(V5, "pub"));
    for i in 0..10 {
        let (t, q) = if i % 2 == 0 {
            ("q/1", QoS::AtLeastOnce)
        } else {
            ("q/2", QoS::ExactlyOnce)
        };
        sim.publish_settled(p, msg(t, format!("{i}"), q));
    }
    sim.disconnect(p, Disconnect::default());
    sim.run_for(offline);
    let (present, _) = sim.connect(sub);
    sim.settle();
    (present, sim.messages(sub))
}

#[test]
fn mqtt_3_1_2_23_v5_session_resumed_within_expiry_delivers_queued_qos1_and_qos2_in_order() {
    let (present, msgs) = offline_round_trip(V5, 40, BrokerConfig::default(), secs(30 * 60), false);
    assert!(
        present,
        "v5 [MQTT-3.2.2-2]: the session is present after 30 min of 60"
    );
    assert_eq!(
        payloads(&msgs),
        (0..10).map(|i| i.to_string()).collect::<Vec<_>>(),
        "[MQTT-4.6.0-6]: queued messages arrive once each, in order"
    );
    for m in &msgs {
        let want = if m.topic.as_str() == "q/1" {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        assert_eq!(m.qos, want, "{m:?}");
    }
}

#[test]
fn mqtt_3_1_2_4_v311_clean_session_0_keeps_the_session_and_queues_offline() {
    let (present, msgs) = offline_round_trip(V311, 41, BrokerConfig::default(), secs(86_400), true);
    assert!(
        present,
        "[MQTT-3.2.2-2]: a day later the session is still present"
    );
    assert_eq!(
        payloads(&msgs),
        (0..10).map(|i| i.to_string()).collect::<Vec<_>>(),
        "[MQTT-3.1.2-5], [MQTT-4.6.0-6]: queued messages arrive once each, in order"
    );
}

#[test]
fn mqtt_3_1_2_23_v5_session_discarded_after_its_expiry() {
    let (present, msgs) = offline_round_trip(V5, 42, BrokerConfig::default(), secs(3601), false);
    assert!(
        !present,
        "v5 [MQTT-3.2.2-3]: no session after its 3600 s expiry"
    );
    assert!(
        msgs.is_empty(),
        "nothing queued survives the session: {msgs:?}"
    );
}

#[test]
fn persistent_session_expiry_ends_an_idle_v311_session() {
    let bc = BrokerConfig::default().with_persistent_session_expiry(Some(60));
    let (present, msgs) = offline_round_trip(V311, 43, bc.clone(), secs(61), true);
    assert!(
        !present,
        "the 60 s persistent_session_expiry ended the session"
    );
    assert!(msgs.is_empty(), "{msgs:?}");
    let (present, msgs) = offline_round_trip(V311, 44, bc, secs(59), true);
    assert!(present, "still within the 60 s persistent_session_expiry");
    assert_eq!(msgs.len(), 10);
}

#[test]
fn mqtt_3_1_clean_session_0_reconnect_is_accepted_and_resumes() {
    let mut sim = Sim::default_broker(53);
    let mut c = persistent(V3_1, "old31", 0);
    c.reconnect = None;
    let old = sim.connected(c);
    sim.subscribe(old, &[("q31", QoS::AtLeastOnce)]);
    sim.sever(old);
    let p = sim.connected(config(V311, "pub"));
    sim.publish_settled(p, msg("q31", "queued", QoS::AtLeastOnce));
    // MQTT 3.1 has no session present flag: CONNACK is 20 02 00 00 either way.
    sim.connect(old);
    sim.settle();
    assert_eq!(
        sim.payloads_on(old, "q31"),
        vec![Bytes::from("queued")],
        "the 3.1 session (clean session 0) kept the subscription and queued the message"
    );
}

#[test]
fn mqtt_3_1_2_23_v5_session_expiry_zero_ends_the_session_with_the_connection() {
    let mut sim = Sim::default_broker(45);
    let first = sim.connected(config(V5, "s0"));
    sim.subscribe(first, &[("z", QoS::AtLeastOnce)]);
    sim.disconnect(first, Disconnect::default());
    sim.settle();
    let mut c = config(V5, "s0");
    c.clean_start = false;
    let again = sim.add_client(c);
    let (present, _) = sim.connect(again);
    assert!(
        !present,
        "v5 [MQTT-3.2.2-3]: expiry 0 (absent) ends the session at disconnect"
    );
    let p = sim.connected(config(V5, "pub"));
    sim.publish_settled(p, msg("z", "x", QoS::AtLeastOnce));
    sim.no_message(again);
}

#[test]
fn mqtt_3_1_2_4_v5_clean_start_discards_an_existing_session() {
    let mut sim = Sim::default_broker(46);
    let first = sim.connected(persistent(V5, "cs", 3600));
    sim.subscribe(first, &[("old", QoS::AtLeastOnce)]);
    sim.disconnect(first, Disconnect::default());
    sim.settle();
    let p = sim.connected(config(V5, "pub"));
    sim.publish_settled(p, msg("old", "queued", QoS::AtLeastOnce));
    let fresh = sim.add_client(persistent(V5, "cs", 3600)); // clean start on its first connect
    let (present, _) = sim.connect(fresh);
    assert!(
        !present,
        "v5 [MQTT-3.1.2-4]: clean start discards the session"
    );
    sim.publish_settled(p, msg("old", "after", QoS::AtLeastOnce));
    sim.no_message(fresh);
}

#[test]
fn mqtt_3_1_2_6_v311_clean_session_1_discards_the_previous_session() {
    let mut sim = Sim::default_broker(47);
    let mut c = persistent(V311, "cs", 0);
    c.reconnect = None;
    let first = sim.connected(c);
    sim.subscribe(first, &[("old", QoS::AtLeastOnce)]);
    sim.sever(first);
    let fresh = sim.add_client(config(V311, "cs"));
    let (present, _) = sim.connect(fresh);
    assert!(
        !present,
        "[MQTT-3.1.2-6], [MQTT-3.2.2-1]: clean session, no session present"
    );
    let p = sim.connected(config(V311, "pub"));
    sim.publish_settled(p, msg("old", "x", QoS::AtLeastOnce));
    sim.no_message(fresh);
    // And the discarded session is not resumed later either.
    sim.disconnect(fresh, Disconnect::default());
    sim.settle();
    let mut c = persistent(V311, "cs", 0);
    c.reconnect = None;
    let back = sim.add_client(c);
    let (present, _) = sim.connect(back);
    assert!(
        !present,
        "[MQTT-3.1.2-6]: a clean session ends with its connection"
    );
}

#[test]
fn mqtt_3_14_2_v5_disconnect_session_expiry_replaces_the_connects() {
    let mut sim = Sim::default_broker(48);
    let first = sim.connected(persistent(V5, "ds", 3600));
    sim.subscribe(first, &[("d", QoS::AtLeastOnce)]);
    let d = Disconnect {
        properties: DisconnectProperties {
            session_expiry_interval: Some(0),
            ..DisconnectProperties::default()
        },
        ..Disconnect::default()
    };
    sim.disconnect(first, d);
    sim.settle();
    let mut c = persistent(V5, "ds", 3600);
    c.clean_start = false;
    let again = sim.add_client(c);
    let (present, _) = sim.connect(again);
    assert!(
        !present,
        "v5 3.14.2.2.2: DISCONNECT with session expiry 0 ends the session"
    );
}

#[test]
fn mqtt_4_4_0_1_unacknowledged_messages_are_resent_with_dup_on_resume() {
    let mut sim = Sim::default_broker(49);
    let mut c = persistent(V5, "slow", 3600);
    c.manual_acks = true;
    let slow = sim.connected(c);
    sim.subscribe(slow, &[("work/#", QoS::AtLeastOnce)]);
    let p = sim.connected(config(V5, "pub"));
    for i in 0..3 {
        sim.publish_settled(p, msg("work/x", format!("job{i}"), QoS::AtLeastOnce));
    }
    let first: Vec<Publish> = sim.messages_on(slow, "work/x");
    assert_eq!(payloads(&first), ["job0", "job1", "job2"]);
    assert!(first.iter().all(|m| !m.dup));
    // Not acknowledged; the link breaks and the backoff reconnects after 1 s.
    sim.sever(slow);
    let present = sim.run_until_event(slow, "reconnected", secs(10), |e| match e {
        Event::Reconnected {
            session_present, ..
        } => Some(*session_present),
        _ => None,
    });
    assert!(present);
    sim.settle();
    let again = sim.take_messages(slow, |p| p.topic.as_str() == "work/x");
    let again: Vec<Publish> = again.into_iter().map(|(_, p)| p).collect();
    assert_eq!(
        payloads(&again),
        ["job0", "job1", "job2"],
        "[MQTT-4.4.0-1]: unacknowledged PUBLISH packets resent in order"
    );
    let ids: Vec<_> = first.iter().map(|m| m.packet_id).collect();
    let ids_again: Vec<_> = again.iter().map(|m| m.packet_id).collect();
    assert_eq!(
        ids, ids_again,
        "[MQTT-4.4.0-1]: with their original packet identifiers"
    );
    assert!(
        again.iter().all(|m| m.dup),
        "[MQTT-3.3.1-1]: DUP set on redelivery"
    );
}

#[test]
fn mqtt_4_3_3_2_qos2_resent_by_the_publisher_after_a_break_is_delivered_once() {
    let mut sim = Sim::default_broker(50);
    sim.latency = Duration::from_millis(10);
    let sub = sim.connected(config(V311, "sub"));
    sim.subscribe(sub, &[("once", QoS::ExactlyOnce)]);
    let p = sim.connected(persistent(V5, "pub", 3600));
    let id = sim.publish(p, msg("once", "exactly", QoS::ExactlyOnce));
    // The broker gets the PUBLISH at 10 ms; its PUBREC is still on the wire at 15 ms.
    sim.run_for(Duration::from_millis(15));
    sim.sever(p);
    let present = sim.run_until_event(p, "reconnected", secs(10), |e| match e {
        Event::Reconnected {
            session_present, ..
        } => Some(*session_present),
        _ => None,
    });
    assert!(present);
    sim.settle();
    assert_eq!(sim.published(p, id.expect("qos 2 id")), ReasonCode::Success);
    assert_eq!(
        sim.payloads_on(sub, "once"),
        vec![Bytes::from("exactly")],
        "[MQTT-4.3.3-2]: the resent PUBLISH is not delivered again"
    );
}

#[test]
fn mqtt_4_4_0_1_pubrel_resent_on_resume_and_the_message_is_not_redelivered() {
    let mut sim = Sim::default_broker(51);
    sim.latency = Duration::from_millis(10);
    let sub = sim.connected(persistent(V5, "sub", 3600));
    sim.subscribe(sub, &[("once", QoS::ExactlyOnce)]);
    let p = sim.connected(config(V5, "pub"));
    sim.publish(p, msg("once", "exactly", QoS::ExactlyOnce));
    // PUBLISH reaches the broker at 10 ms and the subscriber at 20 ms; its PUBREC reaches the
    // broker at 30 ms; the PUBREL is on the wire at 35 ms.
    sim.run_for(Duration::from_millis(35));
    sim.sever(sub);
    sim.run_until_event(sub, "reconnected", secs(10), |e| {
        matches!(e, Event::Reconnected { .. }).then_some(())
    });
    sim.settle();
    assert_eq!(
        sim.payloads_on(sub, "once"),
        vec![Bytes::from("exactly")],
        "[MQTT-4.3.3-2], [MQTT-4.4.0-1]: delivered exactly once across the break"
    );
    sim.run_for(secs(5));
    sim.no_message(sub);
}

// ---- chaos ----------------------------------------------------------------------------------

/// Publishers and persistent subscribers of both versions, links severed at random, seeded
/// chunking and latency: every QoS 1 message arrives at least once, every QoS 2 message
/// exactly once, first arrivals keep each publisher's order, and every publish completes.
fn chaos(seed: u64) {
    use std::collections::HashMap;

    // Small windows both ways, so flow control and resends interleave.
    let bc = BrokerConfig::default()
        .with_receive_maximum(4)
        .with_max_inflight_v3(3);
    let mut sim = Sim::new(bc, seed);
    sim.max_chunk = 1 + (seed as usize % 9);
    sim.latency = Duration::from_millis(seed % 4);
    sim.spurious_timeouts = seed % 2 == 1;
    let mut sub5 = persistent(V5, "sub5", 3600);
    sub5.properties.receive_maximum = std::num::NonZeroU16::new(2);
    let subs = [
        sim.connected(sub5),
        sim.connected(persistent(V311, "sub3", 0)),
    ];
    for s in subs {
        sim.subscribe(s, &[("chaos/#", QoS::ExactlyOnce)]);
    }
    let pubs = [
        sim.connected(persistent(V5, "pub5", 3600)),
        sim.connected(persistent(V311, "pub3", 0)),
        sim.connected(persistent(V3_1, "pub31", 0)),
    ];
    const PER_PUBLISHER: usize = 25;
    let mut next = [0usize; 3];
    let mut ids: HashMap<(usize, u16), usize> = HashMap::new();
    let mut done = [0usize; 3];
    let everyone: Vec<Cl> = subs.iter().chain(&pubs).copied().collect();
    for round in 0..5000 {
        if round >= 400 && next.iter().all(|n| *n == PER_PUBLISHER) {
            break;
        }
        let dt = sim.random(40);
        sim.run_for(Duration::from_millis(dt));
        for (i, p) in pubs.iter().enumerate() {
            if next[i] < PER_PUBLISHER && sim.is_connected(*p) {
                let n = next[i];
                let q = if n % 2 == 0 {
                    QoS::AtLeastOnce
                } else {
                    QoS::ExactlyOnce
                };
                let t = ["chaos/0", "chaos/1", "chaos/2"][i];
                if let Ok(Some(id)) = sim.try_publish(*p, msg(t, format!("{i}-{n}"), q)) {
                    ids.insert((i, id.get()), n);
                    next[i] += 1;
                }
            }
        }
        if round < 400 && sim.random(12) == 0 {
            let victim = everyone[sim.random(everyone.len() as u64) as usize];
            if sim.conn(victim).is_some() {
                sim.sever(victim);
            }
        }
        for (i, p) in pubs.iter().enumerate() {
            while sim
                .take_event(*p, |e| matches!(e, Event::Published { .. }).then_some(()))
                .is_some()
            {
                done[i] += 1;
            }
        }
    }
    // Let every client reconnect and every flow finish.
    sim.run_for(secs(60));
    sim.settle();
    for (i, p) in pubs.iter().enumerate() {
        while sim
            .take_event(*p, |e| match e {
                Event::Published { reason_code, .. } => {
                    assert!(!reason_code.is_error(), "seed {seed}: {reason_code}");
                    Some(())
                }
                _ => None,
            })
            .is_some()
        {
            done[i] += 1;
        }
        let lost = sim.take_event(*p, |e| match e {
            Event::Reconnected { lost, .. } if !lost.is_empty() => Some(lost.clone()),
            _ => None,
        });
        assert_eq!(lost, None, "seed {seed}: publisher {i} lost flows");
        if next[i] != PER_PUBLISHER {
            sim.fail(&format!(
                "seed {seed}: publisher {i} published only {} of {PER_PUBLISHER}",
                next[i]
            ));
        }
        assert_eq!(
            done[i], PER_PUBLISHER,
            "seed {seed}: publisher {i} flows unfinished"
        );
    }
    for s in subs {
        let got = sim.messages(s);
        for (i, t) in ["chaos/0", "chaos/1", "chaos/2"].into_iter().enumerate() {
            let mine: Vec<usize> = got
                .iter()
                .filter(|m| m.topic.as_str() == t)
                .map(|m| {
                    let text = String::from_utf8_lossy(&m.payload).into_owned();
                    text.split('-').nth(1).expect("n").parse().expect("number")
                })
                .collect();
            let mut first: Vec<usize> = Vec::new();
            for n in &mine {
                if !first.contains(n) {
                    first.push(*n);
                }
            }
            assert_eq!(
                first,
                (0..PER_PUBLISHER).collect::<Vec<_>>(),
                "seed {seed} {s:?} from publisher {i}: every message, first arrivals in order \
                 ([MQTT-4.6.0-6]); all arrivals {mine:?}"
            );
            for n in (1..PER_PUBLISHER).step_by(2) {
                let copies = mine.iter().filter(|m| **m == n).count();
                assert_eq!(
                    copies, 1,
                    "seed {seed} {s:?}: QoS 2 message {i}-{n} arrived {copies} times \
                     ([MQTT-4.3.3-2])"
                );
            }
        }
    }
    let _ = ids;
}

#[test]
fn chaos_severed_links_keep_qos1_at_least_once_and_qos2_exactly_once() {
    for seed in 0..16 {
        chaos(9000 + seed);
    }
}

#[test]
fn mqtt_3_1_4_3_takeover_hands_unacknowledged_messages_to_the_new_connection() {
    let mut sim = Sim::default_broker(70);
    let mut c1 = persistent(V5, "worker", 3600);
    c1.manual_acks = true;
    c1.reconnect = None;
    let first = sim.connected(c1);
    sim.subscribe(first, &[("jobs", QoS::AtLeastOnce)]);
    let p = sim.connected(config(V5, "pub"));
    for i in 0..2 {
        sim.publish_settled(p, msg("jobs", format!("job{i}"), QoS::AtLeastOnce));
    }
    assert_eq!(sim.messages(first).len(), 2, "delivered, not acknowledged");
    let mut c2 = persistent(V5, "worker", 3600);
    c2.clean_start = false;
    let second = sim.add_client(c2);
    let (present, _) = sim.connect(second);
    assert!(present);
    sim.settle();
    let again = sim.messages(second);
    assert_eq!(
        payloads(&again),
        ["job0", "job1"],
        "[MQTT-4.4.0-1]: the session's unacknowledged messages are resent to the new connection"
    );
    assert!(again.iter().all(|m| m.dup), "[MQTT-3.3.1-1]: with DUP set");
    // New messages flow to the new connection too.
    sim.publish_settled(p, msg("jobs", "job2", QoS::AtLeastOnce));
    assert_eq!(payloads(&sim.messages(second)), ["job2"]);
}

#[test]
fn mqtt_3_1_2_22_keep_alive_timeout_keeps_a_persistent_session() {
    let mut sim = Sim::default_broker(71);
    let mut c = persistent(V5, "napper", 3600);
    c.keep_alive = 10;
    c.reconnect = None;
    let cl = sim.connected(c);
    sim.subscribe(cl, &[("wake", QoS::AtLeastOnce)]);
    sim.mute(cl);
    sim.wait_disconnected(cl, secs(60));
    let p = sim.connected(config(V5, "pub"));
    sim.publish_settled(p, msg("wake", "up", QoS::AtLeastOnce));
    let (present, _) = sim.connect(cl);
    assert!(present, "the session outlives a keep-alive timeout");
    sim.settle();
    assert_eq!(payloads(&sim.messages(cl)), ["up"]);
}

#[test]
fn mqtt_3_14_2_v5_disconnect_can_extend_a_nonzero_session_expiry() {
    let mut sim = Sim::default_broker(72);
    let first = sim.connected(persistent(V5, "ext", 10));
    sim.subscribe(first, &[("e", QoS::AtLeastOnce)]);
    let d = Disconnect {
        properties: DisconnectProperties {
            session_expiry_interval: Some(3600),
            ..DisconnectProperties::default()
        },
        ..Disconnect::default()
    };
    sim.disconnect(first, d);
    sim.run_for(secs(1000));
    let mut c = persistent(V5, "ext", 10);
    c.clean_start = false;
    let again = sim.add_client(c);
    let (present, _) = sim.connect(again);
    assert!(
        present,
        "the DISCONNECT's 3600 s replaced the CONNECT's 10 s"
    );
}

#[test]
fn mqtt_3_2_2_v5_session_resume_keeps_subscription_options_and_identifiers() {
    let mut sim = Sim::default_broker(73);
    let mut c = persistent(V5, "keep", 3600);
    c.reconnect = None;
    let s1 = sim.connected(c);
    let nl = tinymqtt::codec::Subscription {
        filter: crate::sim::filter("k/#"),
        options: tinymqtt::codec::SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            no_local: true,
            ..Default::default()
        },
    };
    sim.subscribe_with(
        s1,
        vec![nl],
        tinymqtt::codec::SubscribeProperties {
            subscription_identifier: std::num::NonZeroU32::new(7),
            ..Default::default()
        },
    );
    sim.sever(s1);
    let (present, _) = sim.connect(s1);
    assert!(present);
    sim.publish_settled(s1, msg("k/own", "mine", QoS::AtLeastOnce));
    let p = sim.connected(config(V5, "pub"));
    sim.publish_settled(p, msg("k/x", "theirs", QoS::AtLeastOnce));
    let got = sim.messages(s1);
    assert_eq!(payloads(&got), ["theirs"], "no local survived the resume");
    let ids: Vec<u32> = got[0]
        .properties
        .subscription_identifiers
        .iter()
        .map(|n| n.get())
        .collect();
    assert_eq!(ids, [7], "the subscription identifier survived the resume");
}

#[test]
fn mqtt_3_1_clean_session_0_client_resends_in_flight_publishes_after_a_break() {
    // MQTT 3.1's CONNACK has no session present flag: a client with clean session 0 must assume
    // the session is there and resend what was in flight.
    let mut sim = Sim::default_broker(75);
    sim.latency = Duration::from_millis(10);
    let sub = sim.connected(config(V311, "sub"));
    sim.subscribe(sub, &[("once31", QoS::ExactlyOnce)]);
    let p = sim.connected(persistent(V3_1, "pub31", 0));
    let id = sim.publish(p, msg("once31", "exactly", QoS::ExactlyOnce));
    // The broker has the PUBLISH at 10 ms; its PUBREC is still on the wire at 15 ms.
    sim.run_for(Duration::from_millis(15));
    sim.sever(p);
    let lost = sim.run_until_event(p, "reconnected", secs(10), |e| match e {
        Event::Reconnected { lost, .. } => Some(lost.clone()),
        _ => None,
    });
    assert!(lost.is_empty(), "nothing is lost: {lost:?}");
    sim.settle();
    assert_eq!(sim.published(p, id.expect("qos 2 id")), ReasonCode::Success);
    assert_eq!(payloads(&sim.messages(sub)), ["exactly"]);
}
