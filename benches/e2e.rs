//! End to end in memory: sans-IO clients and one sans-IO [`Broker`] exchanging bytes
//! through their public API only, no sockets, no threads, a fake clock. It measures the CPU
//! cost of the core (codec, connection machines, router, client sessions) per message.
//!
//! - `e2e/fanin_q{0,1,2}`: 4 publishers → 1 subscriber on one topic;
//! - `e2e/fanout_q{0,1}`: 1 publisher → 16 subscribers on one topic;
//!
//! MQTT 3.1.1, 64-byte payloads, at most [`WINDOW`] unacknowledged QoS 1/2 publishes per
//! publisher (QoS 0: [`WINDOW`] per publisher per exchange). Throughput is in deliveries (one per
//! subscriber per message). Run with `cargo bench --bench e2e`; `-- --test` runs each once.
//! Instruction counts, which the machine's noise does not move: `valgrind --tool=callgrind
//! target/release/deps/e2e-* --bench --test fanin_q1` (the `--test` pass delivers
//! [`MESSAGES`] messages per benchmark after connecting).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use tinymqtt::broker::{Broker, BrokerConfig, ConnId};
use tinymqtt::client::{ClientConfig, ClientSession, Event};
use tinymqtt::codec::{Publish, SubscribeProperties, Subscription};
use tinymqtt::{ByteStr, ProtocolVersion, QoS, TopicFilter, TopicName};

/// Unacknowledged publishes per publisher (the load tool's and `make bench-brokers`' window).
const WINDOW: usize = 20;
/// Messages published per benchmark iteration, over all publishers.
const MESSAGES: u64 = 4_000;
const TOPIC: &str = "bench/e2e";

/// The benchmark's clock: a fixed origin that moves a microsecond per exchange.
#[allow(clippy::disallowed_methods)]
fn origin() -> Instant {
    Instant::now()
}

/// A client and the broker connection it talks to.
struct Peer {
    client: ClientSession,
    conn: ConnId,
    /// Unacknowledged QoS 1/2 publishes.
    inflight: usize,
    /// Messages received (subscribers).
    received: u64,
}

/// One broker and its clients, all connected, the subscribers subscribed.
struct World {
    now: Instant,
    broker: Broker,
    publishers: Vec<Peer>,
    subscribers: Vec<Peer>,
    qos: QoS,
    template: Publish,
}

impl World {
    fn new(publishers: usize, subscribers: usize, qos: QoS) -> World {
        let now = origin();
        let mut w = World {
            now,
            broker: Broker::new(BrokerConfig::default().with_sys_interval(None)),
            publishers: Vec::new(),
            subscribers: Vec::new(),
            qos,
            template: Publish::new(TopicName::from_static(TOPIC), Bytes::from(vec![7u8; 64])),
        };
        w.template.qos = qos;
        for i in 0..subscribers {
            let mut p = w.connect(&format!("sub-{i}"));
            let filter = Subscription::new(TopicFilter::from_static(TOPIC), qos);
            p.client
                .subscribe(now, vec![filter], SubscribeProperties::default())
                .expect("subscribe");
            w.subscribers.push(p);
        }
        for i in 0..publishers {
            let p = w.connect(&format!("pub-{i}"));
            w.publishers.push(p);
        }
        w.exchange();
        w
    }

    fn connect(&mut self, id: &str) -> Peer {
        let mut config = ClientConfig::new(
            ProtocolVersion::V3_1_1,
            ByteStr::try_from(id).expect("client id"),
        );
        config.keep_alive = 0;
        let mut client = ClientSession::new(config);
        let conn = self.broker.accept(self.now);
        client.connect(self.now).expect("connect");
        let mut p = Peer {
            client,
            conn,
            inflight: 0,
            received: 0,
        };
        // CONNECT, CONNACK.
        for _ in 0..2 {
            Self::exchange_one(self.now, &mut self.broker, &mut p);
        }
        assert!(matches!(
            p.client.poll_event(),
            Some(Event::Connected { .. })
        ));
        p
    }

    /// Moves the client's bytes to the broker and the broker's to whoever they are for.
    fn exchange_one(now: Instant, broker: &mut Broker, p: &mut Peer) {
        while let Some(b) = p.client.poll_transmit() {
            broker.handle_input(now, p.conn, &b);
        }
        while let Some((_, b)) = broker.poll_transmit() {
            p.client.handle_input(now, &b);
        }
    }

    /// One round: every client's bytes to the broker, the broker's bytes to every client, and
    /// the clients' events counted.
    fn exchange(&mut self) {
        self.now += Duration::from_micros(1);
        let now = self.now;
        for p in self
            .publishers
            .iter_mut()
            .chain(self.subscribers.iter_mut())
        {
            while let Some(b) = p.client.poll_transmit() {
                self.broker.handle_input(now, p.conn, &b);
            }
        }
        while let Some((conn, b)) = self.broker.poll_transmit() {
            let p = self
                .publishers
                .iter_mut()
                .chain(self.subscribers.iter_mut())
                .find(|p| p.conn == conn)
                .expect("a known connection");
            p.client.handle_input(now, &b);
        }
        while self.broker.poll_event().is_some() {}
        for p in self
            .publishers
            .iter_mut()
            .chain(self.subscribers.iter_mut())
        {
            while let Some(e) = p.client.poll_event() {
                match e {
                    Event::Published { .. } => p.inflight -= 1,
                    Event::Message(_) => p.received += 1,
                    Event::Subscribed { reason_codes, .. } => {
                        assert!(reason_codes.iter().all(|c| !c.is_error()), "refused")
                    }
                    e => panic!("unexpected event {e:?}"),
                }
            }
        }
    }

    /// Publishes `count` messages over all publishers (each keeping its window full) and
    /// returns once every subscriber received them all.
    fn run(&mut self, count: u64) {
        let target: Vec<u64> = self
            .subscribers
            .iter()
            .map(|s| s.received + count)
            .collect();
        let per = count / self.publishers.len() as u64;
        let mut left: Vec<u64> = vec![per; self.publishers.len()];
        loop {
            let now = self.now;
            for (p, left) in self.publishers.iter_mut().zip(left.iter_mut()) {
                let mut burst = 0;
                while *left > 0 && p.inflight < WINDOW && burst < WINDOW {
                    p.client
                        .publish(now, self.template.clone())
                        .expect("publish");
                    *left -= 1;
                    burst += 1;
                    if self.qos != QoS::AtMostOnce {
                        p.inflight += 1;
                    }
                }
            }
            self.exchange();
            let done = left.iter().all(|l| *l == 0)
                && self.publishers.iter().all(|p| p.inflight == 0)
                && self
                    .subscribers
                    .iter()
                    .zip(&target)
                    .all(|(s, t)| s.received >= *t);
            if done {
                break;
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    let cases = [
        ("fanin_q0", 4, 1, QoS::AtMostOnce),
        ("fanin_q1", 4, 1, QoS::AtLeastOnce),
        ("fanin_q2", 4, 1, QoS::ExactlyOnce),
        ("fanout_q0", 1, 16, QoS::AtMostOnce),
        ("fanout_q1", 1, 16, QoS::AtLeastOnce),
    ];
    let mut g = c.benchmark_group("e2e");
    for (name, publishers, subscribers, qos) in cases {
        let mut w = World::new(publishers, subscribers, qos);
        g.throughput(Throughput::Elements(MESSAGES * subscribers as u64));
        g.bench_function(name, |b| b.iter(|| w.run(black_box(MESSAGES))));
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20)
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
}
