//! End-to-end smoke tests: real `ClientSession`s talking to a `Broker` through the sans-IO APIs only.

use std::time::Instant;

use bytes::Bytes;
use tinymqtt::broker::{Broker, BrokerConfig, BrokerEvent, ConnId};
use tinymqtt::client::{ClientConfig, ClientSession, Event};
use tinymqtt::codec::{Publish, SubscribeProperties, Subscription};
use tinymqtt::error::Initiator;
use tinymqtt::{ByteStr, ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName};

#[allow(clippy::disallowed_methods)]
fn t0() -> Instant {
    Instant::now()
}

struct Net {
    now: Instant,
    broker: Broker,
    clients: Vec<(ClientSession, ConnId, Vec<Event>)>,
    broker_events: Vec<BrokerEvent>,
}

impl Net {
    fn new() -> Net {
        Net {
            now: t0(),
            broker: Broker::new(BrokerConfig::default()),
            clients: Vec::new(),
            broker_events: Vec::new(),
        }
    }

    fn connect(&mut self, v: ProtocolVersion, id: &'static str) -> usize {
        let mut config = ClientConfig::new(v, ByteStr::from_static(id));
        config.reconnect = None;
        let mut c = ClientSession::new(config);
        let conn = self.broker.accept(self.now);
        c.connect(self.now).unwrap();
        self.clients.push((c, conn, Vec::new()));
        self.run();
        self.clients.len() - 1
    }

    /// Moves bytes both ways until nothing moves (bounded).
    fn run(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            for (c, conn, events) in &mut self.clients {
                while let Some(b) = c.poll_transmit() {
                    self.broker.handle_input(self.now, *conn, &b);
                    moved = true;
                }
                while let Some(e) = c.poll_event() {
                    events.push(e);
                }
            }
            while let Some((conn, b)) = self.broker.poll_transmit() {
                if let Some((c, _, _)) = self.clients.iter_mut().find(|(_, id, _)| *id == conn) {
                    c.handle_input(self.now, &b);
                    moved = true;
                }
            }
            while let Some(e) = self.broker.poll_event() {
                if let BrokerEvent::CloseTransport(conn) = e {
                    if let Some((c, _, _)) = self.clients.iter_mut().find(|(_, id, _)| *id == conn)
                    {
                        c.handle_transport_closed(self.now);
                    }
                }
                self.broker_events.push(e);
                moved = true;
            }
            if !moved {
                return;
            }
        }
        panic!("the network did not settle");
    }

    fn messages(&mut self, i: usize) -> Vec<(String, Bytes, QoS, bool)> {
        let events = std::mem::take(&mut self.clients[i].2);
        events
            .into_iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some((
                    m.publish.topic.to_string(),
                    m.publish.payload,
                    m.publish.qos,
                    m.publish.retain,
                )),
                _ => None,
            })
            .collect()
    }
}

fn sub(f: &'static str, qos: QoS) -> Vec<Subscription> {
    vec![Subscription::new(TopicFilter::from_static(f), qos)]
}

fn msg(t: &'static str, payload: &'static [u8], qos: QoS, retain: bool) -> Publish {
    let mut p = Publish::new(TopicName::from_static(t), Bytes::from_static(payload));
    p.qos = qos;
    p.retain = retain;
    p
}

#[test]
fn qos_0_1_2_end_to_end_in_every_version() {
    for v in [
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ] {
        let mut net = Net::new();
        let s = net.connect(v, "sub");
        let p = net.connect(v, "pub");
        let now = net.now;
        net.clients[s]
            .0
            .subscribe(
                now,
                sub("a/+", QoS::ExactlyOnce),
                SubscribeProperties::default(),
            )
            .unwrap();
        net.run();
        for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .enumerate()
        {
            let payload: &'static [u8] = [b"zero".as_slice(), b"one", b"two"][i];
            net.clients[p]
                .0
                .publish(now, msg("a/b", payload, qos, false))
                .unwrap();
            net.run();
        }
        let got = net.messages(s);
        let want: Vec<(String, Bytes, QoS, bool)> = [
            (b"zero".as_slice(), QoS::AtMostOnce),
            (b"one", QoS::AtLeastOnce),
            (b"two", QoS::ExactlyOnce),
        ]
        .into_iter()
        .map(|(pl, q)| ("a/b".to_string(), Bytes::from_static(pl), q, false))
        .collect();
        assert_eq!(got, want, "{v}");
        let published = net.clients[p]
            .2
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::Published {
                        reason_code: ReasonCode::Success,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(published, 2, "{v}: QoS 1 and 2 flows completed");
    }
}

#[test]
fn retained_message_reaches_a_later_subscriber_with_the_retain_flag() {
    let mut net = Net::new();
    let p = net.connect(ProtocolVersion::V3_1_1, "pub");
    let now = net.now;
    net.clients[p]
        .0
        .publish(now, msg("r/1", b"kept", QoS::AtLeastOnce, true))
        .unwrap();
    net.run();
    let s = net.connect(ProtocolVersion::V5, "sub");
    net.clients[s]
        .0
        .subscribe(
            now,
            sub("r/#", QoS::AtLeastOnce),
            SubscribeProperties::default(),
        )
        .unwrap();
    net.run();
    assert_eq!(
        net.messages(s),
        vec![(
            "r/1".to_string(),
            Bytes::from_static(b"kept"),
            QoS::AtLeastOnce,
            true
        )]
    );
    assert_eq!(net.broker.stats().retained, 1);
}

#[test]
fn takeover_closes_the_first_connection_with_0x8e() {
    let mut net = Net::new();
    let first = net.connect(ProtocolVersion::V5, "same");
    let _second = net.connect(ProtocolVersion::V5, "same");
    let reason = net.clients[first]
        .2
        .iter()
        .find_map(|e| match e {
            Event::Disconnected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .expect("the first connection was closed");
    assert_eq!(reason.initiator, Initiator::Remote);
    assert_eq!(reason.reason_code, ReasonCode::SessionTakenOver);
    assert_eq!(net.broker.stats().connections, 1);
}
