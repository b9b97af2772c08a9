//! Sessions moving between two nodes of a cluster (`export_session` / `import_session`, the
//! image travelling as bytes between them), and retained messages set from the cluster's
//! retained store (`handle_remote_retained`), on a fake clock.

use crate::sim::raw::Raw;
use crate::sim::{msg, sub};
use crate::support::{pid, s, secs, topic};
use tinymqtt::broker::cluster::{Export, ImportError, RemoteOutput, SessionImage};
use tinymqtt::broker::{BrokerConfig, ConnId};
use tinymqtt::codec::{Connect, Packet, PubAck, Publish, Subscribe, SubscribeProperties, Will};
use tinymqtt::{ProtocolVersion, QoS, ReasonCode};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V4: ProtocolVersion = ProtocolVersion::V3_1_1;

fn node() -> Raw {
    Raw::new(BrokerConfig::default().with_cluster(true))
}

/// A persistent session for `id` (clean start off, expiry one hour on MQTT 5).
fn persistent(v: ProtocolVersion, id: &'static str) -> Connect {
    let mut c = Connect::new(v, s(id));
    c.clean_start = false;
    if v == V5 {
        c.properties.session_expiry_interval = Some(3600);
    }
    c
}

fn subscribe(r: &mut Raw, conn: ConnId, v: ProtocolVersion, f: &'static str, qos: QoS) {
    let s = Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        filters: vec![sub(f, qos)],
    };
    r.send_packet(conn, v, Packet::Subscribe(s));
    assert!(matches!(r.expect_packet(conn, v), Packet::SubAck(_)));
}

/// Publishes `payloads` at QoS 1 on `topic` from a client of `r` and checks each PUBACK
/// (the cluster, played here, holds each message at once).
fn publish_all(r: &mut Raw, t: &'static str, payloads: &[&'static str]) {
    let publisher = r.connect(V5, "publisher");
    for (i, p) in payloads.iter().enumerate() {
        let mut m = msg(t, *p, QoS::AtLeastOnce);
        m.packet_id = Some(pid(i as u16 + 1));
        r.send_packet(publisher, V5, Packet::Publish(m));
        while let Some(o) = r.broker.poll_remote() {
            if let RemoteOutput::Held { ticket, .. } = o {
                let now = r.now();
                r.broker.handle_remote_ack(now, ticket);
            }
        }
        assert!(matches!(r.expect_packet(publisher, V5), Packet::PubAck(_)));
    }
}

/// The PUBLISHes `conn` received, each acknowledged.
fn received(r: &mut Raw, conn: ConnId, v: ProtocolVersion) -> Vec<Publish> {
    let mut got = Vec::new();
    for p in r.packets(conn, v) {
        match p {
            Packet::Publish(p) => {
                if let Some(id) = p.packet_id {
                    r.send_packet(conn, v, Packet::PubAck(PubAck::new(id)));
                }
                got.push(p);
            }
            p => panic!("expected PUBLISH, got {p:?}"),
        }
    }
    got
}

fn payloads(ps: &[Publish]) -> Vec<String> {
    ps.iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

/// The image as the other node gets it: encoded, carried as bytes, decoded.
fn carried(image: &SessionImage) -> SessionImage {
    SessionImage::decode(&image.encode().unwrap()).unwrap()
}

/// Exports `id` from `from` and expects an image, whether the session was online or not.
fn export(from: &mut Raw, id: &'static str) -> SessionImage {
    let now = from.now();
    match from.broker.export_session(now, &s(id)) {
        Export::Ready(image) => *image,
        Export::Pending => {
            from.pump();
            match from.broker.poll_export() {
                Some((client, Some(image))) if client == s(id) => *image,
                other => panic!("expected the image of {id}, got {other:?}"),
            }
        }
        Export::Absent => panic!("no session {id} to export"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn an_offline_session_moves_to_another_node_with_its_subscriptions_and_queue_in_order() {
    let (mut b, mut c) = (node(), node());
    let (conn, ack) = b.connect_with(persistent(V5, "mover"));
    assert!(!ack.session_present);
    subscribe(&mut b, conn, V5, "q/#", QoS::AtLeastOnce);
    b.close(conn);
    publish_all(&mut b, "q/x", &["m1", "m2", "m3"]);
    assert_eq!(b.broker.stats().queued, 3);

    let image = export(&mut b, "mover");
    assert_eq!(image.client_id(), &s("mover"));
    assert_eq!(image.subscriptions(), 1);
    let stats = b.broker.stats();
    assert_eq!((stats.queued, stats.subscriptions), (0, 0));
    assert_eq!(
        b.broker.dropped(&s("mover")),
        None,
        "the session is still here"
    );
    // The session is gone from the old node: nothing more is queued for it there, and its
    // interest in the cluster went with it.
    assert!(std::iter::from_fn(|| b.broker.poll_remote())
        .any(|o| o == RemoteOutput::Unsubscribe(tinymqtt::TopicFilter::new("q/#").unwrap())));

    let now = c.now();
    c.broker.import_session(now, carried(&image)).unwrap();
    let stats = c.broker.stats();
    assert_eq!(
        (stats.sessions, stats.queued, stats.subscriptions),
        (1, 3, 1)
    );
    assert_eq!(c.broker.dropped(&s("mover")), Some(0));

    // [MQTT-3.2.2-2]: the resumed session is present; its messages arrive in order.
    let (conn, ack) = c.connect_with(persistent(V5, "mover"));
    assert!(ack.session_present, "session present after the move");
    let got = received(&mut c, conn, V5);
    assert_eq!(payloads(&got), ["m1", "m2", "m3"]);
    assert!(got.iter().all(|p| p.qos == QoS::AtLeastOnce && !p.dup));
    // Its subscription lives on at the new node.
    publish_all(&mut c, "q/y", &["m4"]);
    assert_eq!(payloads(&received(&mut c, conn, V5)), ["m4"]);
}

#[test]
fn an_online_v5_session_is_taken_over_with_disconnect_0x8e_and_keeps_its_unacknowledged_flows() {
    let (mut b, mut c) = (node(), node());
    let (old, _) = b.connect_with(persistent(V5, "mover"));
    subscribe(&mut b, old, V5, "q/#", QoS::AtLeastOnce);
    publish_all(&mut b, "q/x", &["m1", "m2"]);
    // Delivered, never acknowledged: in flight in the old connection.
    let inflight = b.packets(old, V5);
    assert_eq!(inflight.len(), 2);

    let now = b.now();
    assert_eq!(b.broker.export_session(now, &s("mover")), Export::Pending);
    b.expect_disconnect(old, ReasonCode::SessionTakenOver);
    let (id, image) = b
        .broker
        .poll_export()
        .expect("the image once the connection closed");
    assert_eq!(id, s("mover"));
    let image = image.expect("a persistent session outlives its connection");
    assert!(b.broker.poll_export().is_none());
    assert_eq!(
        b.broker.dropped(&s("mover")),
        None,
        "the session is still here"
    );

    let now = c.now();
    c.broker.import_session(now, carried(&image)).unwrap();
    let (conn, ack) = c.connect_with(persistent(V5, "mover"));
    assert!(ack.session_present);
    // [MQTT-4.4.0-1]: unacknowledged PUBLISHes are resent with their packet identifiers, DUP.
    let got = received(&mut c, conn, V5);
    assert_eq!(payloads(&got), ["m1", "m2"]);
    assert!(got.iter().all(|p| p.dup), "{got:?}");
    let ids: Vec<_> = inflight
        .iter()
        .map(|p| match p {
            Packet::Publish(p) => p.packet_id,
            p => panic!("{p:?}"),
        })
        .collect();
    assert_eq!(got.iter().map(|p| p.packet_id).collect::<Vec<_>>(), ids);
}

#[test]
fn an_online_v311_session_is_taken_over_by_closing_its_connection() {
    let (mut b, mut c) = (node(), node());
    let (old, _) = b.connect_with(persistent(V4, "mover"));
    subscribe(&mut b, old, V4, "q/#", QoS::AtLeastOnce);
    let now = b.now();
    assert_eq!(b.broker.export_session(now, &s("mover")), Export::Pending);
    // 3.1.1 has no DISCONNECT from the server: the connection is closed.
    assert!(b.packets(old, V4).is_empty());
    b.expect_closed(old);
    let (_, image) = b.broker.poll_export().unwrap();
    let now = c.now();
    c.broker.import_session(now, *image.unwrap()).unwrap();
    let (_, ack) = c.connect_with(persistent(V4, "mover"));
    assert!(ack.session_present);
}

#[test]
fn a_session_that_ends_with_its_connection_is_exported_as_nothing() {
    let mut b = node();
    let old = b.connect(V5, "brief"); // clean start, expiry 0
    let now = b.now();
    assert_eq!(b.broker.export_session(now, &s("brief")), Export::Pending);
    b.expect_disconnect(old, ReasonCode::SessionTakenOver);
    assert_eq!(b.broker.poll_export(), Some((s("brief"), None)));
    assert_eq!(b.broker.export_session(now, &s("brief")), Export::Absent);
}

#[test]
fn a_clean_start_after_an_import_discards_the_session() {
    let (mut b, mut c) = (node(), node());
    let (conn, _) = b.connect_with(persistent(V5, "mover"));
    subscribe(&mut b, conn, V5, "q/#", QoS::AtLeastOnce);
    b.close(conn);
    publish_all(&mut b, "q/x", &["m1"]);
    let image = export(&mut b, "mover");
    let now = c.now();
    c.broker.import_session(now, image).unwrap();
    let mut fresh = persistent(V5, "mover");
    fresh.clean_start = true;
    let (conn, ack) = c.connect_with(fresh);
    assert!(!ack.session_present);
    assert!(c.packets(conn, V5).is_empty());
    assert_eq!(c.broker.stats().subscriptions, 0);
}

#[test]
fn an_image_is_refused_while_the_session_is_online_here_or_once_it_expired() {
    let (mut b, mut c) = (node(), node());
    let (conn, _) = b.connect_with(persistent(V5, "mover"));
    b.close(conn);
    // Offline for 3599 of its 3600 seconds: one second left.
    b.advance(secs(3599));
    let image = export(&mut b, "mover");
    let now = c.now();
    let (here, _) = c.connect_with(persistent(V5, "mover"));
    assert_eq!(
        c.broker.import_session(now, image.clone()),
        Err(ImportError::Online)
    );
    c.expect_open(here);
    c.close(here);
    c.broker.import_session(now, image.clone()).unwrap();
    // It keeps what was left of its expiry: gone a second later.
    c.advance(secs(2));
    assert_eq!(c.broker.stats().sessions, 0);
    // Exported again after an hour offline, it has expired on the way.
    let (mut b, mut c) = (node(), node());
    let (conn, _) = b.connect_with(persistent(V5, "late"));
    b.close(conn);
    b.advance(secs(1800));
    let image = export(&mut b, "late");
    c.advance(secs(10));
    let mut bytes = image.encode().unwrap();
    // The offline time follows the format byte: make it the whole hour.
    bytes[1..5].copy_from_slice(&3600u32.to_be_bytes());
    let image = SessionImage::decode(&bytes).unwrap();
    let now = c.now();
    assert_eq!(
        c.broker.import_session(now, image),
        Err(ImportError::Expired)
    );
}

/// Node B with "mover"'s session, whose connection closed abnormally 10 s ago with a will
/// delayed 30 s, exported; node C with a watcher subscribed to `wills/#`.
fn will_waiting_when_exported() -> (Raw, Raw, ConnId, SessionImage) {
    let (mut b, mut c) = (node(), node());
    let watcher = c.connect(V5, "watcher");
    subscribe(&mut c, watcher, V5, "wills/#", QoS::AtMostOnce);
    let mut connect = persistent(V5, "mover");
    let mut will = Will::new(topic("wills/mover"), &b"gone"[..]);
    will.properties.will_delay_interval = Some(30);
    connect.will = Some(will);
    let (conn, _) = b.connect_with(connect);
    b.close(conn); // abnormal: the will waits 30 s
    b.advance(secs(10));
    let image = export(&mut b, "mover");
    (b, c, watcher, image)
}

#[test]
fn a_will_delayed_past_the_move_is_cancelled_by_the_reconnect_on_the_new_node() {
    let (mut b, mut c, watcher, image) = will_waiting_when_exported();
    // The old node forgot it: no will there, ever.
    b.advance(secs(60));
    let now = c.now();
    c.broker.import_session(now, carried(&image)).unwrap();
    let (_, ack) = c.connect_with(persistent(V5, "mover"));
    assert!(ack.session_present);
    c.advance(secs(60));
    assert!(c.packets(watcher, V5).is_empty(), "the will went out");
}

#[test]
fn an_imported_will_goes_out_when_its_client_never_comes() {
    let (_b, mut c, watcher, image) = will_waiting_when_exported();
    let now = c.now();
    c.broker.import_session(now, carried(&image)).unwrap();
    // 20 s were left of its delay.
    c.advance(secs(19));
    assert!(c.packets(watcher, V5).is_empty());
    c.advance(secs(2));
    assert_eq!(payloads(&received(&mut c, watcher, V5)), ["gone"]);
}

#[test]
fn a_retained_message_from_the_cluster_is_kept_here_and_never_routed() {
    let mut c = node();
    let existing = c.connect(V5, "existing");
    subscribe(&mut c, existing, V5, "r/#", QoS::AtLeastOnce);
    while c.broker.poll_remote().is_some() {}
    let mut m = msg("r/1", "kept", QoS::AtLeastOnce);
    m.retain = true;
    m.packet_id = Some(pid(9));
    let now = c.now();
    assert!(c.broker.handle_remote_retained(now, m));
    c.pump();
    // Neither routed to the subscribers here nor handed back to the cluster.
    assert!(c.packets(existing, V5).is_empty());
    assert!(c.broker.poll_remote().is_none());
    assert_eq!(c.broker.stats().retained, 1);
    // [MQTT-3.3.1-9]: a new subscription gets it, retained.
    let late = c.connect(V5, "late");
    subscribe(&mut c, late, V5, "r/+", QoS::AtLeastOnce);
    let got = received(&mut c, late, V5);
    assert_eq!(payloads(&got), ["kept"]);
    assert!(got[0].retain);
    // An empty payload clears it, likewise without routing.
    let now = c.now();
    assert!(!c
        .broker
        .handle_remote_retained(now, msg("r/1", "", QoS::AtMostOnce)));
    assert!(c.packets(existing, V5).is_empty());
    assert!(c.packets(late, V5).is_empty());
    assert_eq!(c.broker.stats().retained, 0);
    let later = c.connect(V5, "later");
    subscribe(&mut c, later, V5, "r/+", QoS::AtLeastOnce);
    assert!(c.packets(later, V5).is_empty());
}

#[test]
fn with_stores_the_old_node_forgets_the_session_and_the_new_one_keeps_it_across_a_restart() {
    use tinymqtt::broker::persist::{StoreOp, StoreSnapshot};
    fn drain(r: &mut Raw, into: &mut StoreSnapshot) -> Vec<StoreOp> {
        let ops: Vec<StoreOp> = std::iter::from_fn(|| r.broker.poll_store()).collect();
        for op in &ops {
            into.apply(op.clone());
        }
        ops
    }
    let wall = 1_800_000_000;
    // Acknowledgements without waiting for the disk (which this test plays by hand).
    let node = || {
        Raw::new(
            BrokerConfig::default()
                .with_cluster(true)
                .with_durable_acks(false),
        )
    };
    let (mut b, mut c) = (node(), node());
    let (mut b_disk, mut c_disk) = (StoreSnapshot::default(), StoreSnapshot::default());
    let now = b.now();
    b.broker.restore(now, wall, StoreSnapshot::default());
    c.broker.restore(now, wall, StoreSnapshot::default());
    let (conn, _) = b.connect_with(persistent(V5, "mover"));
    subscribe(&mut b, conn, V5, "q/#", QoS::AtLeastOnce);
    b.close(conn);
    publish_all(&mut b, "q/x", &["m1", "m2"]);
    drain(&mut b, &mut b_disk);
    assert_eq!((b_disk.sessions.len(), b_disk.queued.len()), (1, 2));

    let image = export(&mut b, "mover");
    let ops = drain(&mut b, &mut b_disk);
    assert!(ops.contains(&StoreOp::DeleteSession(s("mover"))), "{ops:?}");
    assert!(b_disk.sessions.is_empty() && b_disk.queued.is_empty());

    let now = c.now();
    c.broker.import_session(now, carried(&image)).unwrap();
    drain(&mut c, &mut c_disk);
    assert_eq!((c_disk.sessions.len(), c_disk.queued.len()), (1, 2));
    // The new node restarts before the client comes back: the session is still there.
    let mut c = node();
    let now = c.now();
    let restored = c.broker.restore(now, wall + 5, c_disk);
    assert_eq!((restored.sessions, restored.queued), (1, 2));
    let (conn, ack) = c.connect_with(persistent(V5, "mover"));
    assert!(ack.session_present);
    assert_eq!(payloads(&received(&mut c, conn, V5)), ["m1", "m2"]);
}

#[test]
fn a_session_that_ends_here_is_reported_once_for_the_cluster_to_forget() {
    let mut b = node();
    // Ends with its connection (expiry 0).
    let brief = b.connect(V5, "brief");
    b.close(brief);
    assert_eq!(b.broker.poll_ended_session(), Some(s("brief")));
    assert_eq!(b.broker.poll_ended_session(), None);
    // A clean start discards the old session but starts a new one: nothing ended for good.
    let (conn, _) = b.connect_with(persistent(V5, "kept"));
    b.close(conn);
    let mut fresh = persistent(V5, "kept");
    fresh.clean_start = true;
    b.connect_with(fresh);
    assert_eq!(b.broker.poll_ended_session(), None);
    // Expired.
    let (conn, _) = b.connect_with(persistent(V5, "later"));
    b.close(conn);
    b.advance(secs(3601));
    assert_eq!(b.broker.poll_ended_session(), Some(s("later")));
    // Exported: owned elsewhere now, not ended.
    let (conn, _) = b.connect_with(persistent(V5, "moved"));
    b.close(conn);
    export(&mut b, "moved");
    assert_eq!(b.broker.poll_ended_session(), None);
    // Without a cluster, nothing is kept for it.
    let mut single = Raw::new(BrokerConfig::default());
    let c = single.connect(V5, "brief");
    single.close(c);
    assert_eq!(single.broker.poll_ended_session(), None);
}
