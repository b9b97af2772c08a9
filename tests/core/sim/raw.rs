//! Raw-packet access to a broker: bytes written by hand (or encoded with the codec) go straight
//! into `Broker::handle_input`, and what the broker writes back is decoded per connection.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tinymqtt::broker::{Broker, BrokerConfig, BrokerEvent, ConnId};
use tinymqtt::codec::{ConnAck, Connect, Decoder, Packet};
use tinymqtt::error::{ConnectionError, ProtocolViolation};
use tinymqtt::{ByteStr, ProtocolVersion, ReasonCode};

use super::t0;

pub(crate) use crate::support::{hex, wire};

/// What the broker wrote to one connection, and whether it asked to close it.
#[derive(Debug, Default)]
struct Wire {
    rx: BytesMut,
    close_requested: bool,
}

/// A broker driven with raw bytes and a fake clock.
pub(crate) struct Raw {
    /// The broker under test.
    pub(crate) broker: Broker,
    start: Instant,
    now: Instant,
    wires: HashMap<ConnId, Wire>,
    /// Connections whose transport the test closed.
    gone: HashSet<ConnId>,
    events: Vec<BrokerEvent>,
}

impl Raw {
    /// A broker with `config`.
    pub(crate) fn new(config: BrokerConfig) -> Raw {
        Raw::with_broker(Broker::new(config))
    }

    /// An already built broker.
    pub(crate) fn with_broker(broker: Broker) -> Raw {
        let start = t0();
        Raw {
            broker,
            start,
            now: start,
            wires: HashMap::new(),
            gone: HashSet::new(),
            events: Vec::new(),
        }
    }

    /// The fake clock's reading.
    pub(crate) fn now(&self) -> Instant {
        self.now
    }

    /// Time since the origin.
    pub(crate) fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// A new transport.
    pub(crate) fn accept(&mut self) -> ConnId {
        let conn = self.broker.accept(self.now);
        self.wires.insert(conn, Wire::default());
        self.pump();
        conn
    }

    /// Drains the broker's outputs in the documented order.
    pub(crate) fn pump(&mut self) {
        while let Some((conn, bytes)) = self.broker.poll_transmit() {
            assert!(!bytes.is_empty(), "poll_transmit yielded no bytes");
            let w = self.wires.entry(conn).or_default();
            assert!(
                !w.close_requested,
                "the broker wrote {:02X?} to {conn:?} after asking to close it",
                &bytes[..]
            );
            w.rx.extend_from_slice(&bytes);
        }
        let _ = self.broker.poll_timeout();
        while let Some(e) = self.broker.poll_event() {
            if let BrokerEvent::CloseTransport(conn) = &e {
                self.wires.entry(*conn).or_default().close_requested = true;
            }
            self.events.push(e);
        }
    }

    /// Feeds raw bytes on `conn`.
    pub(crate) fn send(&mut self, conn: ConnId, bytes: &[u8]) {
        let now = self.now;
        self.broker.handle_input(now, conn, bytes);
        self.pump();
    }

    /// Feeds raw bytes on `conn` one byte at a time.
    pub(crate) fn send_bytewise(&mut self, conn: ConnId, bytes: &[u8]) {
        for b in bytes {
            self.send(conn, std::slice::from_ref(b));
        }
    }

    /// Encodes `packet` for `v` and feeds it on `conn`.
    pub(crate) fn send_packet(
        &mut self,
        conn: ConnId,
        v: ProtocolVersion,
        packet: impl Into<Packet>,
    ) {
        let bytes = wire(&packet.into(), v);
        self.send(conn, &bytes);
    }

    /// Closes `conn`'s transport from the client side.
    pub(crate) fn close(&mut self, conn: ConnId) {
        let now = self.now;
        self.gone.insert(conn);
        self.broker.handle_transport_closed(now, conn);
        self.pump();
    }

    /// Shuts the broker down.
    pub(crate) fn shutdown(&mut self) {
        let now = self.now;
        self.broker.shutdown(now);
        self.pump();
    }

    /// Moves the clock by `d`, handling every broker deadline on the way at its instant.
    pub(crate) fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        for _ in 0..100_000 {
            self.pump();
            match self.broker.poll_timeout() {
                Some(t) if t <= target => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    self.broker.handle_timeout(now);
                }
                _ => {
                    self.now = target;
                    self.pump();
                    return;
                }
            }
        }
        panic!(
            "broker deadlines did not settle before {:?}",
            target - self.start
        );
    }

    /// The next whole packet the broker wrote to `conn`, decoded as `v`, if any.
    pub(crate) fn try_packet(&mut self, conn: ConnId, v: ProtocolVersion) -> Option<Packet> {
        self.pump();
        let w = self.wires.entry(conn).or_default();
        Decoder::new(v)
            .decode(&mut w.rx)
            .unwrap_or_else(|e| panic!("the broker wrote an invalid packet to {conn:?}: {e}"))
    }

    /// The next packet the broker wrote to `conn`; fails if there is none.
    pub(crate) fn expect_packet(&mut self, conn: ConnId, v: ProtocolVersion) -> Packet {
        let pending = self.pending(conn);
        self.try_packet(conn, v).unwrap_or_else(|| {
            panic!(
                "expected a packet on {conn:?} at {:?}; pending bytes {pending:02X?}, closed: {}",
                self.elapsed(),
                self.close_requested(conn)
            )
        })
    }

    /// Every packet the broker wrote to `conn` and the test has not read.
    pub(crate) fn packets(&mut self, conn: ConnId, v: ProtocolVersion) -> Vec<Packet> {
        let mut out = Vec::new();
        while let Some(p) = self.try_packet(conn, v) {
            out.push(p);
        }
        out
    }

    /// The bytes the broker wrote to `conn` that the test has not read.
    pub(crate) fn pending(&mut self, conn: ConnId) -> Vec<u8> {
        self.pump();
        self.wires
            .get(&conn)
            .map(|w| w.rx.to_vec())
            .unwrap_or_default()
    }

    /// Checks that the next bytes on `conn` are exactly `expected`, and consumes them.
    pub(crate) fn expect_bytes(&mut self, conn: ConnId, expected: &[u8]) {
        self.pump();
        let w = self.wires.entry(conn).or_default();
        assert!(
            w.rx.starts_with(expected),
            "bytes from the broker on {conn:?}: expected {expected:02X?}, got {:02X?}",
            &w.rx[..]
        );
        let _ = w.rx.split_to(expected.len());
    }

    /// Checks that the broker wrote nothing more to `conn`.
    pub(crate) fn expect_silence(&mut self, conn: ConnId) {
        let pending = self.pending(conn);
        assert!(
            pending.is_empty(),
            "the broker wrote {pending:02X?} to {conn:?}, expected nothing"
        );
    }

    /// Whether the broker asked to close `conn`'s transport.
    pub(crate) fn close_requested(&mut self, conn: ConnId) -> bool {
        self.pump();
        self.wires.get(&conn).is_some_and(|w| w.close_requested)
    }

    /// Checks that the broker asked to close `conn`'s transport.
    pub(crate) fn expect_closed(&mut self, conn: ConnId) {
        assert!(
            self.close_requested(conn),
            "expected the broker to close {conn:?}; events: {:#?}",
            self.events
        );
    }

    /// Checks that the broker has not asked to close `conn`.
    pub(crate) fn expect_open(&mut self, conn: ConnId) {
        assert!(
            !self.close_requested(conn),
            "the broker closed {conn:?}; events: {:#?}",
            self.events
        );
    }

    /// Checks that the broker closed `conn` because the client broke `rule`.
    pub(crate) fn expect_violation(&mut self, conn: ConnId, rule: ProtocolViolation) {
        self.pump();
        let error = self.events.iter().find_map(|e| match e {
            BrokerEvent::Closed { conn: c, reason } if *c == conn => Some(reason.error.clone()),
            _ => None,
        });
        assert_eq!(
            error,
            Some(Some(ConnectionError::Violation(rule))),
            "the close of {conn:?}; events: {:#?}",
            self.events
        );
    }

    /// The broker events so far.
    pub(crate) fn events(&mut self) -> &[BrokerEvent] {
        self.pump();
        &self.events
    }

    /// Expects the next packet on `conn` to be a DISCONNECT with `code`, then a close.
    pub(crate) fn expect_disconnect(&mut self, conn: ConnId, code: ReasonCode) {
        match self.expect_packet(conn, ProtocolVersion::V5) {
            Packet::Disconnect(d) => assert_eq!(
                d.reason_code, code,
                "DISCONNECT reason code: expected {code}, got {}",
                d.reason_code
            ),
            p => panic!("expected DISCONNECT {code}, got {p:?}"),
        }
        self.expect_closed(conn);
    }

    /// Expects the next packet on `conn` to be a CONNACK (decoded as `v`); returns it.
    pub(crate) fn expect_connack(&mut self, conn: ConnId, v: ProtocolVersion) -> ConnAck {
        match self.expect_packet(conn, v) {
            Packet::ConnAck(c) => *c,
            p => panic!("expected CONNACK, got {p:?}"),
        }
    }

    /// Connects a client with `connect` on a new transport and expects it accepted.
    pub(crate) fn connect_with(&mut self, connect: Connect) -> (ConnId, ConnAck) {
        let v = connect.protocol;
        let conn = self.accept();
        self.send_packet(conn, v, connect);
        let ack = self.expect_connack(conn, v);
        assert_eq!(
            ack.reason_code,
            ReasonCode::Success,
            "the broker refused the connection: {ack:?}"
        );
        (conn, ack)
    }

    /// Connects client `id` with protocol `v` (clean start, keep-alive 60 s).
    pub(crate) fn connect(&mut self, v: ProtocolVersion, id: &'static str) -> ConnId {
        self.connect_with(Connect::new(v, ByteStr::from_static(id)))
            .0
    }
}
