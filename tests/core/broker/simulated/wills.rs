//! Wills: published on abnormal ends, discarded on normal DISCONNECT, delayed by the will
//! delay interval, cancelled by a timely reconnect, hastened by the end of the session.

use std::time::Duration;

use bytes::Bytes;
use tinymqtt::client::Event;
use tinymqtt::codec::Disconnect;
use tinymqtt::{QoS, ReasonCode};

use crate::broker::simulated::{is_message_on, watcher, will, V311, V3_1, V5};
use crate::sim::{config, persistent, secs, Cl, Sim};

// ---- wills ----------------------------------------------------------------------------------

#[test]
fn mqtt_3_1_2_8_will_published_when_the_network_connection_fails() {
    for (i, v) in [V3_1, V311, V5].into_iter().enumerate() {
        let mut sim = Sim::default_broker(20 + i as u64);
        let w = watcher(&mut sim, V311);
        let mut c = config(v, "dev");
        c.reconnect = None;
        c.will = Some(will("will/dev", "lost"));
        let dev = sim.connected(c);
        sim.sever(dev);
        sim.settle();
        let (_, m) = sim.one_message(w, "will/dev");
        assert_eq!(
            (m.payload, m.qos),
            (Bytes::from("lost"), QoS::AtLeastOnce),
            "{v:?}"
        );
    }
}

#[test]
fn mqtt_3_1_2_10_will_discarded_on_normal_disconnect() {
    for (i, v) in [V3_1, V311, V5].into_iter().enumerate() {
        let mut sim = Sim::default_broker(23 + i as u64);
        let w = watcher(&mut sim, V5);
        let mut c = config(v, "dev");
        c.will = Some(will("will/dev", "lost"));
        let dev = sim.connected(c);
        sim.disconnect(dev, Disconnect::default());
        sim.run_for(secs(120));
        sim.no_event(w, "will", |e| is_message_on(e, "will/dev"));
    }
}

#[test]
fn mqtt_3_14_2_1_disconnect_with_will_message_0x04_publishes_the_will() {
    let mut sim = Sim::default_broker(26);
    let w = watcher(&mut sim, V5);
    let mut c = config(V5, "dev");
    c.will = Some(will("will/dev", "asked for"));
    let dev = sim.connected(c);
    sim.disconnect(dev, Disconnect::new(ReasonCode::DisconnectWithWillMessage));
    sim.settle();
    let (_, m) = sim.one_message(w, "will/dev");
    assert_eq!(m.payload, Bytes::from("asked for"));
}

#[test]
fn mqtt_3_1_2_17_will_retain_publishes_a_retained_will() {
    let mut sim = Sim::default_broker(27);
    let mut c = config(V311, "dev");
    c.reconnect = None;
    let mut wl = will("will/dev", "offline");
    wl.retain = true;
    c.will = Some(wl);
    let dev = sim.connected(c);
    sim.sever(dev);
    sim.settle();
    let late = sim.connected(config(V311, "late"));
    sim.subscribe(late, &[("will/+", QoS::AtLeastOnce)]);
    sim.settle();
    let (_, m) = sim.one_message(late, "will/dev");
    assert!(
        m.retain,
        "[MQTT-3.1.2-17] / [MQTT-3.3.1-8]: a retained will, sent retained"
    );
    assert_eq!(m.payload, Bytes::from("offline"));
}

/// A v5 client with a will delayed `delay` s and a session expiry of `expiry` s.
fn delayed_will_client(sim: &mut Sim, delay: u32, expiry: u32, reconnect: bool) -> Cl {
    let mut c = persistent(V5, "dev", expiry);
    if !reconnect {
        c.reconnect = None;
    }
    let mut wl = will("will/dev", "delayed");
    wl.properties.will_delay_interval = Some(delay);
    c.will = Some(wl);
    sim.connected(c)
}

/// The time the watcher got the will, since `from`.
fn will_after(sim: &mut Sim, w: Cl, from: Duration) -> Duration {
    let (at, _) = sim.run_until_timed_event(w, "will", secs(7200), |e| {
        is_message_on(e, "will/dev").then_some(())
    });
    at - from
}

#[test]
fn mqtt_3_1_3_9_will_delay_interval_delays_the_will() {
    let mut sim = Sim::default_broker(28);
    let w = watcher(&mut sim, V5);
    let dev = delayed_will_client(&mut sim, 30, 3600, false);
    sim.run_for(secs(1));
    let t = sim.elapsed();
    sim.sever(dev);
    let after = will_after(&mut sim, w, t);
    assert!(
        after >= secs(30) && after < secs(31),
        "v5 [MQTT-3.1.3-9]: will {after:?} after the close, expected the 30 s will delay"
    );
}

#[test]
fn mqtt_3_1_3_9_reconnect_within_the_will_delay_cancels_the_will() {
    let mut sim = Sim::default_broker(29);
    let w = watcher(&mut sim, V5);
    let dev = delayed_will_client(&mut sim, 30, 3600, true);
    sim.sever(dev);
    // The backoff reconnects after 1 s and resumes the session.
    let present = sim.run_until_event(dev, "reconnected", secs(10), |e| match e {
        Event::Reconnected {
            session_present, ..
        } => Some(*session_present),
        _ => None,
    });
    assert!(present, "the session survives the 1 s outage");
    sim.run_for(secs(120));
    sim.no_event(w, "will", |e| is_message_on(e, "will/dev"));
}

#[test]
fn mqtt_3_1_3_9_will_published_when_the_session_ends_before_the_will_delay() {
    let mut sim = Sim::default_broker(30);
    let w = watcher(&mut sim, V5);
    let dev = delayed_will_client(&mut sim, 100, 10, false);
    let t = sim.elapsed();
    sim.sever(dev);
    let after = will_after(&mut sim, w, t);
    assert!(
        after >= secs(10) && after < secs(11),
        "v5 [MQTT-3.1.3-9]: will {after:?} after the close, expected at the 10 s session end"
    );
}

#[test]
fn mqtt_3_1_3_9_will_delay_with_session_expiry_zero_publishes_at_once() {
    let mut sim = Sim::default_broker(31);
    let w = watcher(&mut sim, V5);
    let dev = delayed_will_client(&mut sim, 30, 0, false);
    let t = sim.elapsed();
    sim.sever(dev);
    let after = will_after(&mut sim, w, t);
    assert!(
        after < secs(1),
        "the session ends with the connection: will after {after:?}"
    );
}

#[test]
fn mqtt_3_1_3_9_clean_start_by_a_new_connection_ends_the_session_and_sends_the_delayed_will() {
    let mut sim = Sim::default_broker(74);
    let w = watcher(&mut sim, V5);
    let dev = delayed_will_client(&mut sim, 30, 3600, false);
    sim.sever(dev);
    sim.run_for(secs(5));
    sim.no_event(w, "will", |e| is_message_on(e, "will/dev"));
    let t = sim.elapsed();
    let fresh = sim.add_client(config(V5, "dev")); // clean start
    let (present, _) = sim.connect(fresh);
    assert!(!present);
    let after = will_after(&mut sim, w, t);
    assert!(
        after < secs(1),
        "v5 [MQTT-3.1.3-9]: the session ended with the clean start, so the will goes out \
         then, not {after:?} later"
    );
}
