//! A client session driven by a fuzzed server: raw bytes, well-formed server packets, time
//! jumps, commands and transport drops in any order. The session must never panic, never
//! hand out a packet id that is still held, never exceed the server's window, and never return
//! a deadline in the past after `handle_timeout(now)`.
//!
//! The first byte picks the version and options; the rest is a list of operations.

#![no_main]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tinymqtt::client::{ClientConfig, ClientSession, Event};
use tinymqtt::codec::{
    encode, AckProperties, ConnAck, Decoder, Packet, PubAck, Publish, SubAck, SubscribeProperties,
    Subscription, UnsubscribeProperties,
};
use tinymqtt::{ByteStr, PacketId, ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName};

struct Harness {
    client: ClientSession,
    version: ProtocolVersion,
    now: Instant,
    decoder: Decoder,
    sent: BytesMut,
    /// Packet ids the client holds (sent, not yet finished), as seen on the wire.
    held: HashSet<u16>,
    tokens: Vec<tinymqtt::client::AckToken>,
}

impl Harness {
    fn drain(&mut self) {
        while let Some(bytes) = self.client.poll_transmit() {
            self.sent.extend_from_slice(&bytes);
        }
        while let Ok(Some(p)) = self.decoder.decode(&mut self.sent) {
            match &p {
                Packet::Publish(p) if !p.dup => {
                    if let Some(id) = p.packet_id {
                        assert!(
                            self.held.insert(id.get()),
                            "packet id {id} reused while held"
                        );
                    }
                }
                Packet::Subscribe(s) => {
                    assert!(
                        self.held.insert(s.packet_id.get()),
                        "subscribe reused a held id"
                    );
                }
                Packet::Unsubscribe(u) => {
                    assert!(
                        self.held.insert(u.packet_id.get()),
                        "unsubscribe reused a held id"
                    );
                }
                _ => {}
            }
        }
        let (used, max) = self.client.window();
        assert!(used <= usize::from(max), "window {used} above {max}");
        while let Some(e) = self.client.poll_event() {
            match e {
                Event::Published { packet_id, .. }
                | Event::Subscribed { packet_id, .. }
                | Event::Unsubscribed { packet_id, .. } => {
                    self.held.remove(&packet_id.get());
                }
                Event::Reconnected { lost, .. } => {
                    for p in &lost.publishes {
                        if let Some(id) = p.packet_id {
                            self.held.remove(&id.get());
                        }
                    }
                    for id in lost
                        .released
                        .iter()
                        .chain(&lost.subscribes)
                        .chain(&lost.unsubscribes)
                    {
                        self.held.remove(&id.get());
                    }
                }
                Event::Message(m) => {
                    if let Some(t) = m.ack {
                        self.tokens.push(t);
                    }
                }
                _ => {}
            }
        }
    }

    fn server_send(&mut self, packet: Packet) {
        let mut buf = BytesMut::new();
        if encode(&packet, self.version, &mut buf).is_ok() {
            self.client.handle_input(self.now, &buf);
        }
    }
}

fn id(b: &[u8]) -> PacketId {
    let v = u16::from_be_bytes([
        b.first().copied().unwrap_or(0),
        b.get(1).copied().unwrap_or(1),
    ]);
    PacketId::new(v).unwrap_or(PacketId::MIN)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, mut ops)) = data.split_first() else {
        return;
    };
    let version = match first & 3 {
        0 => ProtocolVersion::V3_1,
        1 => ProtocolVersion::V3_1_1,
        _ => ProtocolVersion::V5,
    };
    let mut config = ClientConfig::new(version, ByteStr::from_static("fuzz"));
    config.manual_acks = first & 4 != 0;
    config.keep_alive = u16::from(first >> 4);
    config.clean_start = first & 8 != 0;
    if version.is_v5() {
        config.properties.topic_alias_maximum = Some(4);
        config.properties.receive_maximum = std::num::NonZeroU16::new(8);
        config.properties.session_expiry_interval = Some(u32::from(first & 8));
    }
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let mut h = Harness {
        client: ClientSession::new(config),
        version,
        now,
        decoder: Decoder::new(version),
        sent: BytesMut::new(),
        held: HashSet::new(),
        tokens: Vec::new(),
    };
    let _ = h.client.connect(h.now);
    h.drain();
    let topic = TopicName::from_static("a/b");
    while let Some((&op, rest)) = ops.split_first() {
        let arg = rest.get(..2).unwrap_or(rest);
        ops = rest;
        match op % 16 {
            0 => {
                // Raw bytes from the server.
                let n = usize::from(arg.first().copied().unwrap_or(0) % 32);
                let take = n.min(ops.len());
                let (chunk, tail) = ops.split_at(take);
                h.client.handle_input(h.now, chunk);
                ops = tail;
            }
            1 => {
                let mut c = ConnAck::accepted(arg.first().is_some_and(|b| b & 1 != 0));
                if version.is_v5() {
                    c.properties.receive_maximum = std::num::NonZeroU16::new(u16::from(
                        arg.first().copied().unwrap_or(3) % 5 + 1,
                    ));
                    c.properties.topic_alias_maximum = Some(2);
                }
                h.server_send(c.into());
            }
            2 => h.server_send(Packet::PubAck(PubAck::new(id(arg)))),
            3 => h.server_send(Packet::PubRec(PubAck::new(id(arg)))),
            4 => h.server_send(Packet::PubComp(PubAck::new(id(arg)))),
            5 => h.server_send(Packet::PubRel(PubAck::new(id(arg)))),
            6 => {
                let mut p = Publish::new(topic.clone(), Bytes::from_static(b"x"));
                p.qos = QoS::from_u8(arg.first().copied().unwrap_or(0) % 3).unwrap_or_default();
                if p.qos != QoS::AtMostOnce {
                    p.packet_id = Some(id(arg));
                    p.dup = arg.get(1).is_some_and(|b| b & 1 != 0);
                }
                h.server_send(Packet::Publish(p));
            }
            7 => {
                let sub = SubAck {
                    packet_id: id(arg),
                    properties: AckProperties::default(),
                    reason_codes: vec![ReasonCode::GrantedQoS1],
                };
                h.server_send(Packet::SubAck(sub));
            }
            8 => {
                let mut p = Publish::new(topic.clone(), Bytes::from_static(b"payload"));
                p.qos = QoS::from_u8(arg.first().copied().unwrap_or(0) % 3).unwrap_or_default();
                let _ = h.client.publish(h.now, p);
            }
            9 => {
                let f = TopicFilter::from_static("a/+");
                let _ = h.client.subscribe(
                    h.now,
                    vec![Subscription::new(f, QoS::ExactlyOnce)],
                    SubscribeProperties::default(),
                );
            }
            10 => {
                let f = TopicFilter::from_static("a/+");
                let _ = h
                    .client
                    .unsubscribe(h.now, vec![f], UnsubscribeProperties::default());
            }
            11 => {
                if let Some(t) = h.tokens.pop() {
                    let _ = h.client.ack(h.now, t);
                }
            }
            12 => h.client.handle_transport_closed(h.now),
            13 => {
                let _ = h.client.connect(h.now);
            }
            14 => {
                // Time passes by up to 25.5 s.
                let ms = u64::from(arg.first().copied().unwrap_or(0)) * 100;
                h.now += Duration::from_millis(ms);
                h.client.handle_timeout(h.now);
                if let Some(t) = h.client.poll_timeout() {
                    assert!(t >= h.now, "deadline in the past after handle_timeout");
                }
            }
            _ => {
                // Jump to the next deadline.
                if let Some(t) = h.client.poll_timeout() {
                    h.now = h.now.max(t);
                    h.client.handle_timeout(h.now);
                    if let Some(t) = h.client.poll_timeout() {
                        assert!(t >= h.now, "deadline in the past after handle_timeout");
                    }
                }
            }
        }
        h.drain();
    }
});
