//! Arbitrary client bytes and time steps into one `Broker` with several connections. The
//! broker must never panic, never return a deadline in the past after `handle_timeout(now)`,
//! and only ever send bytes that decode as packets of the connection's version.
//!
//! Each operation is a byte: the low 3 bits pick the action, the rest its argument.
//!
//! When the first byte is odd the broker keeps a store (an in-memory snapshot of what it
//! logs, each record through its byte format): acknowledgements then wait for their tickets,
//! which action 7 hands back, and a time step of 31 (action 6) is a crash: a new broker
//! restored from the snapshot, with every connection gone.
//!
//! The broker runs with an enhanced authenticator (method "X": CONNECT data, then one AUTH
//! answer "ok"), outbound topic aliases, a topic depth limit and a connection limit, so those
//! paths are reachable from the openings.

#![no_main]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tinymqtt::broker::{
    AllowAll, AuthExchange, AuthStep, Authenticator, Broker, BrokerConfig, BrokerEvent, ConnId,
};
use tinymqtt::codec::{Decoder, Packet};
use tinymqtt::store::{
    QueuedRecord, RetainedRecord, SessionRecord, StoreOp, StoreSnapshot, Ticket,
};
use tinymqtt::{ByteStr, ProtocolVersion, ReasonCode};

/// Method "X": continue once when the CONNECT carries data, then succeed on "ok".
struct TwoStep;

struct TwoStepExchange {
    asked: bool,
}

impl AuthExchange for TwoStepExchange {
    fn step(&mut self, data: Option<&Bytes>) -> AuthStep {
        match (self.asked, data.map(|d| &d[..])) {
            (false, Some(d)) if !d.is_empty() => {
                self.asked = true;
                AuthStep::Continue(Bytes::from_static(b"nonce"))
            }
            (true, Some(b"ok")) | (false, None) => AuthStep::Success(None),
            _ => AuthStep::Failure(ReasonCode::NotAuthorized),
        }
    }
}

impl Authenticator for TwoStep {
    fn authenticate(
        &self,
        _: &ByteStr,
        _: Option<&ByteStr>,
        _: Option<&Bytes>,
    ) -> Result<(), ReasonCode> {
        Ok(())
    }

    fn start_auth(
        &self,
        _: &ByteStr,
        _: Option<&ByteStr>,
        method: &ByteStr,
    ) -> Option<Box<dyn AuthExchange>> {
        (method.as_str() == "X").then(|| Box::new(TwoStepExchange { asked: false }) as _)
    }
}

/// Valid openings, so the fuzzer starts past CONNECT: 3.1.1 and 5.0, client ids "a" / "b" /
/// "c" (the last two with enhanced authentication, one finishing it at once).
const CONNECTS: [&[u8]; 5] = [
    // 3.1.1, persistent session, client id "a".
    &[
        0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0, 0, 5, 0, 1, b'a',
    ],
    // 5.0, clean start, client id "b".
    &[
        0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 5, 0, 0, 1, b'b',
    ],
    // 5.0, clean start, receive maximum 1, client id "a" (a takeover of the first).
    &[
        0x10, 17, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 5, 3, 0x21, 0, 1, 0, 1, b'a',
    ],
    // 5.0, client id "c", topic alias maximum 4, method "X" with data "hi": waits for AUTH.
    &[
        0x10, 26, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 5, 12, 0x22, 0, 4, 0x15, 0, 1, b'X', 0x16,
        0, 2, b'h', b'i', 0, 1, b'c',
    ],
    // The same, followed by the AUTH 0x18 answer "ok" that completes it.
    &[
        0x10, 26, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 5, 12, 0x22, 0, 4, 0x15, 0, 1, b'X', 0x16,
        0, 2, b'h', b'i', 0, 1, b'c', 0xF0, 11, 0x18, 9, 0x15, 0, 1, b'X', 0x16, 0, 2, b'o', b'k',
    ],
];

/// A broker with the target's configuration, restored from `store` if there is one.
fn broker(now: Instant, store: Option<&StoreSnapshot>) -> Broker {
    let config = BrokerConfig::default()
        .with_max_queued_messages(8)
        .with_max_packet_size(512)
        .with_outbound_topic_aliases(4)
        .with_max_topic_levels(4)
        .with_max_connections(Some(4));
    let mut broker = Broker::with_auth(config, Arc::new(TwoStep), Arc::new(AllowAll));
    if let Some(s) = store {
        broker.restore(now, 1_800_000_000, s.clone());
    }
    broker
}

/// `op` as a store reads it back: every record through its bytes, which must decode.
fn through_bytes(op: StoreOp) -> StoreOp {
    match op {
        StoreOp::PutRetained(r) => StoreOp::PutRetained(
            RetainedRecord::decode(&r.encode().expect("encodes")).expect("decodes"),
        ),
        StoreOp::PutSession(r) => StoreOp::PutSession(
            SessionRecord::decode(&r.encode().expect("encodes")).expect("decodes"),
        ),
        StoreOp::Enqueue(q) => {
            StoreOp::Enqueue(QueuedRecord::decode(&q.encode().expect("encodes")).expect("decodes"))
        }
        other => other,
    }
}

fuzz_target!(|data: &[u8]| {
    #[allow(clippy::disallowed_methods)]
    let mut now = Instant::now();
    let mut store = data
        .first()
        .is_some_and(|b| b & 1 == 1)
        .then(StoreSnapshot::default);
    let mut tickets: Vec<Ticket> = Vec::new();
    let mut broker = broker(now, store.as_ref());
    let mut conns: Vec<ConnId> = Vec::new();
    // What each connection received, decoded as the broker's version for it.
    let mut received: HashMap<ConnId, (BytesMut, Decoder)> = HashMap::new();
    let mut i = 0;
    while i < data.len() {
        let op = data[i];
        i += 1;
        let arg = usize::from(op >> 3);
        match op & 7 {
            0 | 1 => {
                let conn = broker.accept(now);
                let opening = CONNECTS[arg % CONNECTS.len()];
                let v = if opening[8] == 5 {
                    ProtocolVersion::V5
                } else {
                    ProtocolVersion::V3_1_1
                };
                received.insert(conn, (BytesMut::new(), Decoder::new(v)));
                conns.push(conn);
                if op & 7 == 1 {
                    broker.handle_input(now, conn, opening);
                }
            }
            2..=4 => {
                // Raw bytes to a connection.
                let Some(&conn) = conns.get(arg % conns.len().max(1)) else {
                    continue;
                };
                let n = usize::from(data.get(i).copied().unwrap_or(0) % 64);
                i += 1;
                let end = (i + n).min(data.len());
                broker.handle_input(now, conn, &data[i.min(end)..end]);
                i = end;
            }
            5 => {
                if let Some(&conn) = conns.get(arg % conns.len().max(1)) {
                    broker.handle_transport_closed(now, conn);
                }
            }
            6 if arg == 31 && store.is_some() => {
                // A crash: what was written survives, nothing else.
                tickets.clear();
                conns.clear();
                received.clear();
                broker = self::broker(now, store.as_ref());
            }
            6 => {
                now += Duration::from_millis(arg as u64 * 250);
                broker.handle_timeout(now);
                if let Some(t) = broker.poll_timeout() {
                    assert!(t >= now, "deadline in the past after handle_timeout");
                }
            }
            _ => {
                for t in tickets.drain(..) {
                    broker.handle_durable(now, t);
                }
                if let Some(t) = broker.poll_timeout() {
                    now = now.max(t);
                    broker.handle_timeout(now);
                    if let Some(t) = broker.poll_timeout() {
                        assert!(t >= now, "deadline in the past after handle_timeout");
                    }
                }
            }
        }
        if let Some(s) = &mut store {
            while let Some(op) = broker.poll_store() {
                if let StoreOp::Durable(t) = &op {
                    tickets.push(*t);
                }
                s.apply(through_bytes(op));
            }
        }
        while let Some((conn, bytes)) = broker.poll_transmit() {
            let (buf, decoder) = received
                .get_mut(&conn)
                .expect("bytes for a known connection");
            buf.extend_from_slice(&bytes);
            loop {
                let snapshot = buf.clone();
                match decoder.decode(buf) {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        // The answer to an unknown protocol level is a CONNACK in 3.1.1's
                        // format (return code 1), which every client can read; anything else
                        // the broker sends must decode in the connection's version.
                        let mut again = snapshot;
                        let v311 = Decoder::new(ProtocolVersion::V3_1_1).decode(&mut again);
                        match v311 {
                            Ok(Some(Packet::ConnAck(c)))
                                if c.reason_code == ReasonCode::UnsupportedProtocolVersion =>
                            {
                                *buf = again;
                            }
                            _ => panic!("broker sent an undecodable packet: {e}"),
                        }
                    }
                }
            }
        }
        while let Some(e) = broker.poll_event() {
            if let BrokerEvent::CloseTransport(conn) = e {
                conns.retain(|c| *c != conn);
            }
        }
    }
});
