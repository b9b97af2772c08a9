//! Router benchmarks, all in the group `router`:
//!
//! - `match_10k`, `match_100k`: the [`SubscriptionTree`] alone, one topic matched against
//!   10,000 / 100,000 subscriptions (distinct literal filters plus one in ten with `+` or `#`,
//!   see [`filter`]); the topic matches three of them. Per match.
//! - `tree_fanout_1000`: the tree alone, walking one topic's 1,000 subscribers. Per delivery
//!   found.
//! - `route_10k`: the real routing path through the [`Broker`] facade: one QoS 0 PUBLISH (bytes
//!   in) routed by a broker holding the same 10,000 subscriptions, the three that match held by
//!   one connected session, which gets one delivery (bytes out). Per routed message.
//! - `fanout_1000_q0`, `fanout_1000_q1`: one PUBLISH (64-byte payload) from one connection routed
//!   to 1,000 connected subscribers through the facade, every delivery drained from
//!   `poll_transmit`. Per delivery (`Throughput::Elements(1000)`). At QoS 1 the subscribers'
//!   1,000 PUBACKs are fed back after each routed message, outside the timed region (see
//!   [`Fanout::ack`]); what is timed is the publisher's PUBLISH in, its PUBACK and the
//!   deliveries out, and reading each delivery's packet id (a few instructions).
//!
//! Every client is a raw MQTT 3.1.1 connection: packets built with `tinymqtt::codec` and fed
//! with [`Broker::handle_input`], keep-alive off, `$SYS` off, a fixed clock. Each routine
//! asserts what it measured (deliveries per message, their size, the publisher's PUBACK), so
//! it cannot silently measure nothing. Setup happens only for the benchmarks that the filter
//! selects.
//!
//! Run with `cargo bench --bench router`; `-- --test` runs each once (setup included, well under
//! a second). Instruction counts, which the machine's noise does not move: `ROUTER_ITERS=N` makes
//! each criterion iteration route N messages (the time divided by N, so criterion's figures stay
//! per message), so the `--test` pass routes N + 1 messages after connecting (one in setup):
//!
//! ```sh
//! B=$(ls -t target/release/deps/router-* | grep -v '\.d$' | head -1)
//! for n in 1 101; do ROUTER_ITERS=$n valgrind --tool=callgrind --callgrind-out-file=cg.$n.%p \
//!     $B --bench --test router/fanout_1000_q1; done
//! ```
//!
//! (Two processes report: take the larger total.) The difference of the totals over 100 is one
//! message: here with its 1,000 PUBACKs; add `--toggle-collect='*Fanout*route_one*'` to count the
//! timed part alone, `'*Fanout*ack*'` the PUBACKs alone, `'*Route*route_one*'` for `route_10k`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{Bencher, Criterion, Throughput};
use tinymqtt::broker::{
    Broker, BrokerConfig, BrokerEvent, ConnId, Match, SessionId, SubscriptionEntry,
    SubscriptionTree,
};
use tinymqtt::codec::{
    self, Connect, Packet, PubAck, Publish, Subscribe, SubscribeProperties, SubscriptionOptions,
};
use tinymqtt::{ByteStr, PacketId, ProtocolVersion, QoS, TopicFilter, TopicName};

const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
/// The topic `route_10k` and the tree benches publish to; it matches [`filter`] 420, 421 and
/// 4207.
const MATCH_TOPIC: &str = "site/42/dev/7/temp";
const FANOUT_TOPIC: &str = "fanout/topic";
const FANOUT: usize = 1_000;
const PAYLOAD: usize = 64;

/// The benchmark's clock (the broker's fixed `now`, and the timer of `iter_custom`).
#[allow(clippy::disallowed_methods)]
fn clock() -> Instant {
    Instant::now()
}

/// Messages routed per criterion iteration: `ROUTER_ITERS` (default 1); durations are divided
/// by it, so criterion's figures stay per message.
fn iters_per_iteration() -> u64 {
    match std::env::var("ROUTER_ITERS") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or_else(|| panic!("ROUTER_ITERS takes a positive number, not {v:?}")),
        Err(_) => 1,
    }
}

/// Runs `route` criterion's `iters` times [`iters_per_iteration`] times, timed as one loop,
/// and reports the time per criterion iteration.
fn measure<W>(b: &mut Bencher<'_>, w: &mut W, per: u64, mut route: impl FnMut(&mut W)) {
    b.iter_custom(|iters| {
        let t = clock();
        for _ in 0..iters * per {
            route(w);
        }
        t.elapsed() / per as u32
    });
}

/// Like [`measure`], with `untimed` run after each `route` outside the timed region (two clock
/// reads per route: fine for routes of tens of microseconds, not for the tree alone).
fn measure_split<W>(
    b: &mut Bencher<'_>,
    w: &mut W,
    per: u64,
    mut route: impl FnMut(&mut W),
    mut untimed: impl FnMut(&mut W),
) {
    b.iter_custom(|iters| {
        let mut spent = Duration::ZERO;
        for _ in 0..iters * per {
            let t = clock();
            route(w);
            spent += t.elapsed();
            untimed(w);
        }
        spent / per as u32
    });
}

/// Filter `i` of the 10k/100k sets: mostly `site/{a}/dev/{b}/temp`, one in ten with a `+` or
/// `#`.
fn filter(i: usize) -> String {
    match i % 10 {
        0 => format!("site/{}/dev/+/temp", i / 10),
        1 => format!("site/{}/#", i / 10),
        _ => format!("site/{}/dev/{}/temp", i / 100, i % 100),
    }
}

fn matches_topic(f: &str) -> bool {
    tinymqtt::topic::matches(f, MATCH_TOPIC)
}

// ---------------------------------------------------------------------------------------------
// The tree alone.

fn sub() -> SubscriptionEntry {
    SubscriptionEntry {
        options: SubscriptionOptions::default(),
        identifier: None,
    }
}

/// `n` subscriptions of [`filter`], each its own session.
fn tree(n: usize) -> SubscriptionTree {
    let mut t = SubscriptionTree::new();
    for i in 0..n {
        let f = TopicFilter::new(&filter(i)).unwrap();
        t.insert(&f, SessionId(i as u64), sub());
    }
    t
}

/// Visits every delivery the way the router does: reads the session and its options (through
/// `black_box`, so the loop cannot be folded into a count).
fn count(t: &SubscriptionTree, topic: &[u8]) -> usize {
    let mut n = 0;
    let mut visit = |s: SessionId, sub: &SubscriptionEntry| {
        black_box((s, sub.options.qos));
        n += 1;
    };
    t.for_each_match(topic, |m| match m {
        Match::Plain(s, sub) => visit(s, sub),
        Match::Shared { members, .. } => {
            for (s, sub) in members.as_slice() {
                visit(*s, sub);
            }
        }
    });
    n
}

// ---------------------------------------------------------------------------------------------
// Raw 3.1.1 clients of a `Broker`.

fn encode(p: Packet) -> Bytes {
    let mut buf = BytesMut::new();
    codec::encode(&p, V311, &mut buf).expect("encode");
    buf.freeze()
}

fn publish_bytes(topic: &str, qos: QoS) -> Bytes {
    let mut p = Publish::new(TopicName::new(topic).unwrap(), vec![7u8; PAYLOAD]);
    p.qos = qos;
    p.packet_id = (qos != QoS::AtMostOnce).then_some(PacketId::MIN);
    encode(p.into())
}

/// A PUBACK for `id`, as four bytes (checked against the codec in [`Fanout::new`]).
fn puback(id: u16) -> [u8; 4] {
    let [hi, lo] = id.to_be_bytes();
    [0x40, 2, hi, lo]
}

/// A broker, its fixed clock, and raw clients.
struct Net {
    now: Instant,
    broker: Broker,
}

impl Net {
    fn new() -> Net {
        Net {
            now: clock(),
            broker: Broker::new(BrokerConfig::default().with_sys_interval(None)),
        }
    }

    /// The one packet the broker sends back to `conn` after an input.
    fn reply(&mut self, conn: ConnId) -> Packet {
        let (to, bytes) = self.broker.poll_transmit().expect("a reply");
        assert_eq!(to, conn);
        assert!(self.broker.poll_transmit().is_none(), "one reply");
        let mut buf = BytesMut::from(&bytes[..]);
        let p = codec::Decoder::new(V311)
            .decode(&mut buf)
            .expect("decodes")
            .expect("whole");
        assert!(buf.is_empty(), "one packet");
        p
    }

    /// A clean-session 3.1.1 connection, keep-alive off.
    fn connect(&mut self, client_id: String) -> ConnId {
        let mut c = Connect::new(V311, ByteStr::try_from(client_id.as_str()).unwrap());
        c.keep_alive = 0;
        let conn = self.broker.accept(self.now);
        self.broker.handle_input(self.now, conn, &encode(c.into()));
        match self.reply(conn) {
            Packet::ConnAck(a) => assert!(!a.reason_code.is_error(), "refused: {a:?}"),
            p => panic!("expected CONNACK, got {p:?}"),
        }
        while let Some(e) = self.broker.poll_event() {
            assert!(matches!(e, BrokerEvent::Connected { .. }), "{e:?}");
        }
        conn
    }

    fn subscribe(&mut self, conn: ConnId, filters: &[String], qos: QoS) {
        let s = Subscribe {
            packet_id: PacketId::MIN,
            properties: SubscribeProperties::default(),
            filters: filters
                .iter()
                .map(|f| codec::Subscription::new(TopicFilter::new(f).unwrap(), qos))
                .collect(),
        };
        self.broker
            .handle_input(self.now, conn, &encode(Packet::Subscribe(s)));
        match self.reply(conn) {
            Packet::SubAck(a) => {
                assert_eq!(a.reason_codes.len(), filters.len());
                assert!(a.reason_codes.iter().all(|c| !c.is_error()), "refused");
            }
            p => panic!("expected SUBACK, got {p:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fan-out 1 → 1,000 through the facade.

/// One publisher and [`FANOUT`] subscribers of [`FANOUT_TOPIC`], all connected.
struct Fanout {
    net: Net,
    publisher: ConnId,
    qos: QoS,
    /// The publisher's PUBLISH (QoS 1: always packet id 1, acknowledged before the next).
    publish: Bytes,
    /// The size of each delivery: one PUBLISH with the same topic and payload.
    delivery_len: usize,
    /// QoS 1: the deliveries of the last message, to acknowledge.
    acks: Vec<(ConnId, u16)>,
}

impl Fanout {
    fn new(qos: QoS) -> Fanout {
        assert_eq!(
            &puback(0x1234)[..],
            &encode(Packet::PubAck(PubAck::new(PacketId::new(0x1234).unwrap())))[..]
        );
        let mut net = Net::new();
        let topic = vec![FANOUT_TOPIC.to_string()];
        for i in 0..FANOUT {
            let conn = net.connect(format!("sub-{i}"));
            net.subscribe(conn, &topic, qos);
        }
        let publisher = net.connect("pub".into());
        let publish = publish_bytes(FANOUT_TOPIC, qos);
        let mut f = Fanout {
            net,
            publisher,
            qos,
            delivery_len: publish.len(),
            publish,
            acks: Vec::with_capacity(FANOUT),
        };
        // A first message, to check and to size the buffers.
        assert_eq!(f.route_one(), FANOUT);
        f.ack();
        f
    }

    /// The timed part: the PUBLISH in, the publisher's PUBACK and every delivery out. Returns
    /// the deliveries.
    #[inline(never)]
    fn route_one(&mut self) -> usize {
        let Net { now, broker } = &mut self.net;
        broker.handle_input(*now, self.publisher, &self.publish);
        let (mut delivered, mut acked) = (0, 0);
        while let Some((conn, bytes)) = broker.poll_transmit() {
            if conn == self.publisher {
                assert_eq!(&bytes[..], &puback(1)[..], "the publisher's PUBACK");
                acked += 1;
                continue;
            }
            assert_eq!(bytes.len(), self.delivery_len, "one PUBLISH");
            if self.qos == QoS::AtMostOnce {
                assert_eq!(bytes[0], 0x30);
            } else {
                // 0x32, remaining length (one byte), topic length and topic, packet id.
                assert_eq!(bytes[0], 0x32);
                let at = 4 + FANOUT_TOPIC.len();
                self.acks
                    .push((conn, u16::from_be_bytes([bytes[at], bytes[at + 1]])));
            }
            delivered += 1;
        }
        assert_eq!(delivered, FANOUT, "every subscriber got the message");
        assert_eq!(acked, usize::from(self.qos != QoS::AtMostOnce));
        delivered
    }

    /// QoS 1: every subscriber's PUBACK, so no window fills (not timed).
    #[inline(never)]
    fn ack(&mut self) {
        let Net { now, broker } = &mut self.net;
        for (conn, id) in self.acks.drain(..) {
            broker.handle_input(*now, conn, &puback(id));
        }
        assert!(broker.poll_transmit().is_none(), "nothing follows a PUBACK");
        assert!(broker.poll_event().is_none());
    }
}

// ---------------------------------------------------------------------------------------------
// One PUBLISH into 10,000 subscriptions through the facade.

/// A broker holding [`filter`] `0..n`: the ones that match [`MATCH_TOPIC`] held by `reader`,
/// the others by connected sessions of 1,000 subscriptions each.
struct Route {
    net: Net,
    publisher: ConnId,
    reader: ConnId,
    publish: Bytes,
}

impl Route {
    fn new(n: usize) -> Route {
        let mut net = Net::new();
        let (matching, rest): (Vec<String>, Vec<String>) =
            (0..n).map(filter).partition(|f| matches_topic(f));
        assert_eq!(matching.len(), 3);
        for (i, chunk) in rest.chunks(1_000).enumerate() {
            let conn = net.connect(format!("bulk-{i}"));
            net.subscribe(conn, chunk, QoS::AtMostOnce);
        }
        let reader = net.connect("reader".into());
        net.subscribe(reader, &matching, QoS::AtMostOnce);
        assert_eq!(net.broker.stats().subscriptions, n);
        let publisher = net.connect("pub".into());
        let mut r = Route {
            net,
            publisher,
            reader,
            publish: publish_bytes(MATCH_TOPIC, QoS::AtMostOnce),
        };
        r.route_one();
        r
    }

    /// The PUBLISH in, its one delivery out.
    #[inline(never)]
    fn route_one(&mut self) {
        let Net { now, broker } = &mut self.net;
        broker.handle_input(*now, self.publisher, &self.publish);
        let (conn, bytes) = broker.poll_transmit().expect("a delivery");
        assert_eq!(conn, self.reader);
        assert_eq!(bytes.len(), self.publish.len(), "one PUBLISH");
        assert!(broker.poll_transmit().is_none(), "one delivery per session");
    }
}

// ---------------------------------------------------------------------------------------------

fn bench(c: &mut Criterion) {
    let per = iters_per_iteration();
    let mut g = c.benchmark_group("router");
    for (name, n) in [("match_10k", 10_000), ("match_100k", 100_000)] {
        let mut t = None;
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| {
            let t = t.get_or_insert_with(|| {
                let t = tree(n);
                assert_eq!(count(&t, MATCH_TOPIC.as_bytes()), 3);
                t
            });
            measure(b, t, per, |t| {
                assert_eq!(count(t, black_box(MATCH_TOPIC.as_bytes())), 3)
            })
        });
    }

    let mut t = None;
    g.throughput(Throughput::Elements(FANOUT as u64));
    g.bench_function("tree_fanout_1000", |b| {
        let t = t.get_or_insert_with(|| {
            let mut t = SubscriptionTree::new();
            let f = TopicFilter::from_static(FANOUT_TOPIC);
            for i in 0..FANOUT {
                t.insert(&f, SessionId(i as u64), sub());
            }
            t
        });
        measure(b, t, per, |t| {
            assert_eq!(count(t, black_box(FANOUT_TOPIC.as_bytes())), FANOUT)
        })
    });

    let mut r = None;
    g.throughput(Throughput::Elements(1));
    g.bench_function("route_10k", |b| {
        let r = r.get_or_insert_with(|| Route::new(10_000));
        measure(b, r, per, Route::route_one)
    });

    for (name, qos) in [
        ("fanout_1000_q0", QoS::AtMostOnce),
        ("fanout_1000_q1", QoS::AtLeastOnce),
    ] {
        let mut f = None;
        g.throughput(Throughput::Elements(FANOUT as u64));
        g.bench_function(name, |b| {
            let f = f.get_or_insert_with(|| Fanout::new(qos));
            let route = |f: &mut Fanout| {
                f.route_one();
            };
            if qos == QoS::AtMostOnce {
                measure(b, f, per, route)
            } else {
                measure_split(b, f, per, route, Fanout::ack)
            }
        });
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30)
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
}
