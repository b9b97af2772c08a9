//! The broker's split API without the `Broker` facade, on the harness's [`Split`]: one
//! `Router` and `ServerConnection`s that only exchange opaque mail, relayed through
//! per-connection queues the way a runtime's channels carry it.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use tinymqtt::broker::{
    BrokerConfig, BrokerEvent, ConnectionMail, Router, RouterMail, ServerConnection,
};
use tinymqtt::codec::{Connect, Decoder, Encoder, Packet, PubAck, Publish};
use tinymqtt::{ByteStr, ProtocolVersion, QoS, ReasonCode, TopicName};

const V5: ProtocolVersion = ProtocolVersion::V5;

use crate::sim::split::Split;
use crate::support::pid;

fn publish(topic: &'static str, payload: &'static str, qos: QoS, id: u16) -> Publish {
    let mut p = Publish::new(TopicName::from_static(topic), payload);
    p.qos = qos;
    p.packet_id = (qos != QoS::AtMostOnce).then(|| pid(id));
    p
}

fn payloads(packets: &[Packet]) -> Vec<(QoS, Vec<u8>)> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((p.qos, p.payload.to_vec())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_router_and_two_connections_route_through_mail_alone() {
    let mut s = Split::new(BrokerConfig::default());
    let sub = s.connect("sub", true);
    let publisher = s.connect("pub", true);
    assert_ne!(sub, publisher, "connection ids are not reused");
    s.subscribe(sub, "a/#", QoS::AtLeastOnce);

    s.send(publisher, publish("a/b", "zero", QoS::AtMostOnce, 0));
    s.send(publisher, publish("a/b", "one", QoS::AtLeastOnce, 7));
    let acks = s.received(publisher);
    assert!(
        matches!(acks.as_slice(), [Packet::PubAck(a)] if a.packet_id == pid(7)),
        "the publisher's connection acknowledges the QoS 1 publish: {acks:?}"
    );
    let got = s.received(sub);
    assert_eq!(
        payloads(&got),
        vec![
            (QoS::AtMostOnce, b"zero".to_vec()),
            (QoS::AtLeastOnce, b"one".to_vec())
        ]
    );
    let stats = s.router.stats();
    assert_eq!(stats.connections, 2);
    assert_eq!(stats.messages_received, 2);
    assert_eq!(stats.subscriptions, 1);

    // A transport that closes before CONNECT still leaves the connection count.
    let idle = s.accept();
    assert_eq!(s.router.stats().connections, 3);
    s.transport_closed(idle);
    assert_eq!(s.router.stats().connections, 2);
    assert!(s
        .events
        .iter()
        .any(|e| matches!(e, BrokerEvent::Closed { conn, .. } if *conn == idle)));
    let next = s.accept();
    assert!(next > idle, "a new connection gets a new id");
}

#[test]
fn undelivered_mail_keeps_qos1_in_order_and_the_session_waits_for_its_next_connection() {
    let mut s = Split::new(BrokerConfig::default());
    let sub = s.connect("sub", false);
    s.subscribe(sub, "t", QoS::AtLeastOnce);
    let sub0 = s.connect("sub0", false);
    s.subscribe(sub0, "u", QoS::AtMostOnce);
    let publisher = s.connect("pub", true);

    // Both subscribers' inboxes are full: what the router mails them comes back.
    s.full.extend([sub, sub0]);
    s.send(publisher, publish("t", "first", QoS::AtLeastOnce, 1));
    s.send(publisher, publish("t", "second", QoS::AtMostOnce, 0));
    s.send(publisher, publish("t", "third", QoS::AtLeastOnce, 2));
    s.send(publisher, publish("u", "dropped", QoS::AtMostOnce, 0));
    assert!(payloads(&s.received(sub)).is_empty(), "nothing reached it");
    assert_eq!(s.router.stats().messages_sent, 0, "nothing was sent");
    assert_eq!(
        s.router.dropped(&ByteStr::from_static("sub0")),
        Some(1),
        "an undelivered QoS 0 message is dropped and counted"
    );

    // The runtime closes them as too slow; the session resumes on the next connection.
    s.full.clear();
    s.transport_closed(sub);
    s.transport_closed(sub0);
    let (again, got) = s.resume("sub", false);
    assert_eq!(
        payloads(&got),
        vec![
            (QoS::AtLeastOnce, b"first".to_vec()),
            (QoS::AtMostOnce, b"second".to_vec()),
            (QoS::AtLeastOnce, b"third".to_vec())
        ],
        "the returned QoS 1 message goes first; what was queued behind it follows"
    );
    assert_eq!(s.router.dropped(&ByteStr::from_static("sub")), Some(0));
    assert_eq!(s.router.stats().messages_sent, 3);
    for p in &got {
        if let Packet::Publish(p) = p {
            if let Some(id) = p.packet_id {
                s.send(again, Packet::PubAck(PubAck::new(id)));
            }
        }
    }
    assert_eq!(s.router.stats().connections, 2, "sub and pub");
    let (_, got) = s.resume("sub0", false);
    assert!(payloads(&got).is_empty(), "{got:?}");
}

/// A delivery mailed to a connection that closes before its task reads the mail is never
/// sent; the closed connection hands it back and the session gets it on its next connection.
#[test]
fn a_delivery_that_reaches_a_closed_connection_goes_back_to_its_session() {
    let mut s = Split::new(BrokerConfig::default());
    let sub = s.connect("sub", false);
    s.subscribe(sub, "t", QoS::AtLeastOnce);
    let publisher = s.connect("pub", true);
    s.parked.push(sub);
    s.send(publisher, publish("t", "late", QoS::AtLeastOnce, 1));
    s.send(publisher, publish("t", "later", QoS::AtLeastOnce, 2));
    // The transport closes with the deliveries still in the connection's inbox.
    let mut c = s.conns.remove(&sub).expect("open");
    c.handle_transport_closed(s.now);
    let closed: Vec<RouterMail> = std::iter::from_fn(|| c.poll_mail()).collect();
    s.route(closed);
    for m in s.inboxes.remove(&sub).unwrap_or_default() {
        c.handle_mail(s.now, m);
    }
    assert!(
        c.poll_transmit().is_none(),
        "nothing is sent after the close"
    );
    let returned: Vec<RouterMail> = std::iter::from_fn(|| c.poll_mail()).collect();
    assert_eq!(returned.len(), 2);
    s.route(returned);
    let (_, got) = s.resume("sub", false);
    assert_eq!(
        payloads(&got),
        vec![
            (QoS::AtLeastOnce, b"late".to_vec()),
            (QoS::AtLeastOnce, b"later".to_vec())
        ],
        "in their order"
    );
}

#[test]
fn a_connection_shuts_down_with_0x8b_and_no_will() {
    let mut s = Split::new(BrokerConfig::default());
    let watcher = s.connect("watcher", true);
    s.subscribe(watcher, "will", QoS::AtMostOnce);
    let id = s.accept();
    let mut c = Connect::new(V5, ByteStr::from_static("dying"));
    c.will = Some(tinymqtt::codec::Will {
        topic: TopicName::from_static("will"),
        payload: "gone".into(),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    s.send(id, c);
    s.received(id);

    s.conns
        .get_mut(&id)
        .expect("open")
        .shutdown(s.now + Duration::from_secs(1));
    let batch = s.drain_conn(id);
    s.route(batch);
    s.settle();
    let got = s.received(id);
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ServerShuttingDown),
        "{got:?}"
    );
    assert!(payloads(&s.received(watcher)).is_empty(), "no will");
    assert_eq!(s.router.stats().connections, 1);
}

#[test]
fn mail_crosses_threads() {
    fn send<T: Send + std::fmt::Debug>() {}
    send::<RouterMail>();
    send::<ConnectionMail>();
    send::<ServerConnection>();
    send::<Router>();
}

/// A connection whose CONNECT waits for the router reads at most about one CONNECT's worth
/// more ([`BrokerConfig::max_connect_size`]); once the session is accepted it reads again and
/// what was pipelined behind the CONNECT is served.
#[test]
fn a_connection_not_accepted_yet_stops_wanting_input_past_one_connect() {
    let config = BrokerConfig::default().with_max_connect_size(1024);
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let mut router = Router::new(config);
    let mut c = router.accept(now);
    assert!(c.wants_input());
    let mut bytes = BytesMut::new();
    Encoder::new(V5)
        .encode(
            &Packet::Connect(Box::new(Connect::new(V5, ByteStr::from_static("p")))),
            &mut bytes,
        )
        .unwrap();
    c.handle_input(now, &bytes);
    // 600 PINGREQs pipelined behind it: 1200 bytes wait for the session.
    c.handle_input(now, &[0xC0, 0x00].repeat(600));
    assert!(!c.wants_input(), "more than max_connect_size waits");
    while let Some(m) = c.poll_mail() {
        router.handle_mail(now, m);
    }
    while let Some(m) = router.poll_mail() {
        c.handle_mail(now, m);
    }
    assert!(c.wants_input(), "accepted: reading again");
    let mut out = BytesMut::new();
    while let Some(b) = c.poll_transmit() {
        out.extend_from_slice(&b);
    }
    let d = Decoder::new(V5);
    assert!(matches!(d.decode(&mut out), Ok(Some(Packet::ConnAck(_)))));
    let mut pongs = 0;
    while let Ok(Some(p)) = d.decode(&mut out) {
        assert_eq!(p, Packet::PingResp);
        pongs += 1;
    }
    assert_eq!(pongs, 600);
}
