//! A scripted server for one `ClientSession`, with a fake clock.
//!
//! Time never comes from the system except once, in [`t0`], as an origin; tests move it only
//! by adding durations. The [`Peer`] plays the server: it encodes packets with the codec (or
//! takes raw bytes written by hand), feeds them to the client, and decodes what the client
//! sends, after draining the client's outputs in the documented order (transmit, timeout,
//! events).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tinymqtt::client::{Backoff, ClientConfig, ClientSession, Event, Message};
use tinymqtt::codec::{
    AckProperties, ConnAck, Decoder, DisconnectProperties, Packet, Publish, SubscribeProperties,
    Subscription, UnsubscribeProperties,
};
use tinymqtt::error::{ClientError, CloseReason};
use tinymqtt::{PacketId, ProtocolVersion, QoS, ReasonCode, TopicFilter};

pub(crate) use crate::support::{filter, hex, ms, pid, s, secs, t0, topic, wire};

/// A PUBLISH at `qos` without a packet id (the client or the test sets it).
pub(crate) fn message(t: &'static str, payload: &'static [u8], qos: QoS) -> Publish {
    let mut p = Publish::new(topic(t), Bytes::from_static(payload));
    p.qos = qos;
    p
}

/// A PUBLISH as a server sends it, with its packet id for QoS 1 and 2.
pub(crate) fn server_publish(
    t: &'static str,
    payload: &'static [u8],
    qos: QoS,
    id: u16,
) -> Publish {
    let mut p = message(t, payload, qos);
    if qos != QoS::AtMostOnce {
        p.packet_id = Some(pid(id));
    }
    p
}

/// A backoff without jitter: attempt `n` waits `initial * 2^n`, at most `max`.
pub(crate) fn fixed_backoff(initial: Duration, max: Duration) -> Backoff {
    Backoff {
        initial,
        max,
        jitter_percent: 0,
        seed: 1,
    }
}

/// A configuration with a predictable reconnect delay (1 s, doubling, no jitter).
pub(crate) fn config(v: ProtocolVersion, id: &'static str) -> ClientConfig {
    let mut c = ClientConfig::new(v, s(id));
    c.reconnect = Some(fixed_backoff(secs(1), secs(60)));
    c
}

/// A scripted server talking to one client, with a fake clock.
pub(crate) struct Peer {
    /// The client under test.
    pub(crate) client: ClientSession,
    /// The protocol version of the connection.
    pub(crate) v: ProtocolVersion,
    /// The clock origin.
    pub(crate) start: Instant,
    /// The current time.
    pub(crate) now: Instant,
    rx: BytesMut,
    events: Vec<Event>,
}

impl Peer {
    /// A peer for a new client with `config`.
    pub(crate) fn new(config: ClientConfig) -> Peer {
        Peer::with_client(ClientSession::new(config))
    }

    /// A peer for an existing client.
    pub(crate) fn with_client(client: ClientSession) -> Peer {
        let start = t0();
        Peer {
            v: client.config().protocol,
            client,
            start,
            now: start,
            rx: BytesMut::new(),
            events: Vec::new(),
        }
    }

    /// A client that has connected and been accepted (no session present); events drained.
    pub(crate) fn connected(config: ClientConfig) -> Peer {
        let mut p = Peer::new(config);
        p.connect();
        p.accept(ConnAck::accepted(false));
        p.expect_event("connected", |e| {
            matches!(e, Event::Connected { .. } | Event::Reconnected { .. }).then_some(())
        });
        p
    }

    /// Time since the origin.
    pub(crate) fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Moves the clock forward without firing anything.
    pub(crate) fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// Drains the client's outputs in the documented order: transmit, timeout, events.
    pub(crate) fn pump(&mut self) {
        while let Some(bytes) = self.client.poll_transmit() {
            assert!(!bytes.is_empty(), "poll_transmit yielded an empty buffer");
            self.rx.extend_from_slice(&bytes);
        }
        let _ = self.client.poll_timeout();
        while let Some(e) = self.client.poll_event() {
            self.events.push(e);
        }
    }

    /// `client.connect(now)` and the CONNECT it sends.
    pub(crate) fn connect(&mut self) -> Packet {
        self.client.connect(self.now).expect("connect");
        let p = self.expect_packet();
        assert!(
            matches!(p, Packet::Connect(_)),
            "expected CONNECT, got {p:?}"
        );
        p
    }

    /// Sends CONNACK.
    pub(crate) fn accept(&mut self, connack: ConnAck) {
        self.send(connack);
    }

    /// Encodes `packet` for this connection's version and feeds it to the client.
    pub(crate) fn send(&mut self, packet: impl Into<Packet>) {
        let bytes = wire(&packet.into(), self.v);
        self.send_raw(&bytes);
    }

    /// Feeds raw bytes to the client.
    pub(crate) fn send_raw(&mut self, bytes: &[u8]) {
        self.client.handle_input(self.now, bytes);
        self.pump();
    }

    /// `client.publish` at the current time.
    pub(crate) fn publish(&mut self, m: Publish) -> Result<Option<PacketId>, ClientError> {
        let r = self.client.publish(self.now, m);
        self.pump();
        r
    }

    /// `client.subscribe` at the current time.
    pub(crate) fn subscribe(
        &mut self,
        filters: Vec<Subscription>,
        properties: SubscribeProperties,
    ) -> Result<PacketId, ClientError> {
        let r = self.client.subscribe(self.now, filters, properties);
        self.pump();
        r
    }

    /// `client.unsubscribe` at the current time.
    pub(crate) fn unsubscribe(
        &mut self,
        filters: Vec<TopicFilter>,
        properties: UnsubscribeProperties,
    ) -> Result<PacketId, ClientError> {
        let r = self.client.unsubscribe(self.now, filters, properties);
        self.pump();
        r
    }

    /// Reports the transport closed.
    pub(crate) fn close_transport(&mut self) {
        self.client.handle_transport_closed(self.now);
        self.pump();
    }

    /// The next packet the client sent; fails if there is none.
    pub(crate) fn expect_packet(&mut self) -> Packet {
        self.try_packet()
            .unwrap_or_else(|| panic!("expected a packet from the client at {:?}", self.elapsed()))
    }

    /// The next packet the client sent, if any.
    pub(crate) fn try_packet(&mut self) -> Option<Packet> {
        self.pump();
        let decoder = Decoder::new(self.v);
        decoder
            .decode(&mut self.rx)
            .unwrap_or_else(|e| panic!("the client sent an invalid packet: {e}"))
    }

    /// Every packet the client has sent and the test has not read yet.
    pub(crate) fn packets(&mut self) -> Vec<Packet> {
        let mut out = Vec::new();
        while let Some(p) = self.try_packet() {
            out.push(p);
        }
        assert!(
            self.rx.is_empty(),
            "a partial packet was left: {:02X?}",
            &self.rx[..]
        );
        out
    }

    /// Checks that the next bytes the client sent are exactly `expected`, and consumes them.
    pub(crate) fn expect_bytes(&mut self, expected: &[u8]) {
        self.pump();
        let n = expected.len().min(self.rx.len());
        assert_eq!(
            &self.rx[..n],
            expected,
            "bytes from the client at {:?} (all pending: {:02X?})",
            self.elapsed(),
            &self.rx[..]
        );
        assert!(
            self.rx.len() >= expected.len(),
            "the client sent only {:02X?}, expected {expected:02X?}",
            &self.rx[..]
        );
        let _ = self.rx.split_to(expected.len());
    }

    /// Checks that the client has sent nothing more.
    pub(crate) fn expect_silence(&mut self) {
        self.pump();
        assert!(
            self.rx.is_empty(),
            "the client sent {:02X?} at {:?}, expected nothing",
            &self.rx[..],
            self.elapsed()
        );
    }

    /// The next deadline, as time since the origin.
    pub(crate) fn deadline(&self) -> Option<Duration> {
        self.client.poll_timeout().map(|t| t - self.start)
    }

    /// Runs the clock to `at` (since the origin), handling every deadline on the way at its
    /// exact instant.
    pub(crate) fn run_until(&mut self, at: Duration) {
        let target = self.start + at;
        assert!(target >= self.now, "the clock never goes back");
        for _ in 0..10_000 {
            self.pump();
            match self.client.poll_timeout() {
                Some(d) if d <= target => {
                    self.now = self.now.max(d);
                    self.client.handle_timeout(self.now);
                    self.pump();
                    if let Some(next) = self.client.poll_timeout() {
                        assert!(
                            next >= self.now,
                            "poll_timeout is in the past after handle_timeout"
                        );
                    }
                }
                _ => {
                    self.now = target;
                    return;
                }
            }
        }
        panic!("timeouts did not settle before {at:?}");
    }

    /// Runs the clock by `d`.
    pub(crate) fn run_for(&mut self, d: Duration) {
        let at = self.elapsed() + d;
        self.run_until(at);
    }

    /// Jumps to the next deadline and handles it; returns when it was.
    pub(crate) fn fire_next(&mut self) -> Duration {
        let at = self.deadline().expect("a deadline is armed");
        self.run_until(at);
        at
    }

    /// Takes every event drained so far.
    pub(crate) fn take_events(&mut self) -> Vec<Event> {
        self.pump();
        std::mem::take(&mut self.events)
    }

    /// Finds and removes the first event `f` accepts; fails, listing the events, if none does.
    pub(crate) fn expect_event<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        self.pump();
        for i in 0..self.events.len() {
            if let Some(t) = f(&self.events[i]) {
                self.events.remove(i);
                return t;
            }
        }
        panic!(
            "expected event {what} at {:?}; events: {:#?}",
            self.elapsed(),
            self.events
        );
    }

    /// Checks that no pending event matches `f`.
    pub(crate) fn no_event(&mut self, what: &str, f: impl Fn(&Event) -> bool) {
        self.pump();
        if let Some(e) = self.events.iter().find(|e| f(e)) {
            panic!("unexpected event ({what}): {e:#?}");
        }
    }

    /// The `Disconnected` event.
    pub(crate) fn disconnected(&mut self) -> (CloseReason, DisconnectProperties) {
        self.expect_event("disconnected", |e| match e {
            Event::Disconnected { reason, properties } => {
                Some((reason.clone(), (**properties).clone()))
            }
            _ => None,
        })
    }

    /// The `Published` event for `id`: its reason code and properties.
    pub(crate) fn published(&mut self, id: u16) -> (ReasonCode, AckProperties) {
        self.expect_event(&format!("published({id})"), |e| match e {
            Event::Published {
                packet_id,
                reason_code,
                properties,
            } if packet_id.get() == id => Some((*reason_code, properties.clone())),
            _ => None,
        })
    }

    /// The next received message.
    pub(crate) fn message(&mut self) -> Message {
        self.expect_event("message", |e| match e {
            Event::Message(m) => Some(m.clone()),
            _ => None,
        })
    }

    /// Checks that no message is pending.
    pub(crate) fn no_message(&mut self) {
        self.no_event("message", |e| matches!(e, Event::Message(_)));
    }

    /// Goes through a reconnect: runs to `ReconnectDue`, connects, and returns the CONNECT.
    pub(crate) fn reconnect(&mut self) -> Packet {
        for _ in 0..100 {
            if self.events.iter().any(|e| matches!(e, Event::ReconnectDue)) {
                break;
            }
            self.fire_next();
        }
        self.expect_event("reconnect due", |e| {
            matches!(e, Event::ReconnectDue).then_some(())
        });
        self.connect()
    }
}
