//! QoS 1 throughput with persistence on (every write durable: `fsync = "always"`) against
//! off, side by side in one run.
//!
//! Each round starts a fresh in-process tokio broker per configuration (on a fresh store,
//! the two configurations alternating which goes first), and one publisher sends `--count`
//! QoS 1 messages of 64 bytes with at most 20 unacknowledged, to a persistent session
//! (session expiry one hour) subscribed at QoS 1 on the topic in two scenarios:
//!
//! - `online`: the subscriber is connected and reads everything; the time runs from the
//!   first PUBLISH to the last message received (every PUBACK has arrived by then too);
//! - `offline`: the subscriber has disconnected, so every message is queued for its session
//!   (and written to the store); the time runs from the first PUBLISH to the last PUBACK.
//!
//! It prints the median messages per second of each configuration and the ratio on/off.
//! Run with `make bench-persistence` (`cargo bench --features tokio --bench persistence`);
//! options after `--`: `--count N` (default 5000), `--rounds N` (default 5), `--test` (one
//! small round, to see that it works).

#[path = "support/mod.rs"]
mod support;

use support::{arg, median};

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tinymqtt::broker::{BrokerConfig, Router as Core};
use tinymqtt::client::{ClientConfig, Event};
use tinymqtt::codec::{Publish, Subscription};
use tinymqtt::runtimes::tokio::{Client, Events, Server};
use tinymqtt::runtimes::BrokerOptions;
use tinymqtt::{ByteStr, ProtocolVersion, QoS, TopicFilter, TopicName};

/// Messages a publisher has unacknowledged at once.
const WINDOW: usize = 20;
/// The payload size, in bytes.
const PAYLOAD: usize = 64;
const TOPIC: &str = "bench/persistence";

/// Benchmarks run on real time.
#[allow(clippy::disallowed_methods)]
fn clock() -> Instant {
    Instant::now()
}

/// The broker's runtime options: with a store in `dir` (every write durable) or without.
///
/// The one place that says how persistence is configured. Today the store's every
/// transaction is durable (redb's default); once `BrokerOptions` has an fsync policy, set it
/// to "always" here.
fn options(store: Option<&Path>) -> BrokerOptions {
    BrokerOptions::default().with_persistence(store.map(Path::to_path_buf))
}

/// A scratch folder for one broker's store, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(n: usize) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "tinymqtt-bench-persistence-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Online,
    Offline,
}

fn config(id: &str, session_expiry: Option<u32>) -> ClientConfig {
    let mut c = ClientConfig::new(ProtocolVersion::V5, ByteStr::try_from(id).unwrap());
    c.properties.session_expiry_interval = session_expiry;
    c.reconnect = None;
    c
}

/// Waits for `count` messages on `events`; panics after 60 s.
async fn receive(events: &Events, count: usize) {
    let mut got = 0;
    while got < count {
        let next = tokio::time::timeout(Duration::from_secs(60), events.recv()).await;
        match next {
            Ok(Some(Event::Message(_))) => got += 1,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the subscriber stopped after {got} of {count} messages"),
            Err(_) => panic!("the subscriber got {got} of {count} messages in 60 s"),
        }
    }
}

/// One measurement: messages per second through a fresh broker.
async fn run(scenario: Scenario, store: Option<&Path>, count: usize) -> f64 {
    let broker_config = BrokerConfig::default()
        .with_sys_interval(None)
        .with_max_queued_messages(count + WINDOW);
    let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    let broker = Server::bind_with(Core::new(broker_config), options(store), &[addr])
        .await
        .expect("bind the broker");
    let addr = broker.local_addrs()[0];
    let stop = broker.handle();
    let served = tokio::spawn(broker.run());

    let (sub, events) = Client::connect(addr, config("bench-sub", Some(3600)))
        .await
        .expect("connect the subscriber");
    let filter = TopicFilter::new(TOPIC).unwrap();
    sub.subscribe(vec![Subscription::new(filter, QoS::AtLeastOnce)])
        .await
        .expect("subscribe");
    if scenario == Scenario::Offline {
        sub.disconnect().await.expect("disconnect the subscriber");
    }
    let (publisher, _pub_events) = Client::connect(addr, config("bench-pub", None))
        .await
        .expect("connect the publisher");
    let receiver = (scenario == Scenario::Online).then(|| {
        let events = events.clone();
        tokio::spawn(async move { receive(&events, count).await })
    });

    let topic = TopicName::new(TOPIC).unwrap();
    let payload = bytes::Bytes::from(vec![b'x'; PAYLOAD]);
    let start = clock();
    let mut pending = VecDeque::with_capacity(WINDOW);
    for _ in 0..count {
        if pending.len() == WINDOW {
            let p: tinymqtt::runtimes::Pending = pending.pop_front().unwrap();
            p.ack().await.expect("puback");
        }
        let mut m = Publish::new(topic.clone(), payload.clone());
        m.qos = QoS::AtLeastOnce;
        pending.push_back(publisher.publish(m).await.expect("publish"));
    }
    for p in pending {
        p.ack().await.expect("puback");
    }
    if let Some(r) = receiver {
        r.await.expect("the receiver task");
    }
    let elapsed = start.elapsed();

    let _ = publisher.disconnect().await;
    if scenario == Scenario::Online {
        let _ = sub.disconnect().await;
    }
    stop.shutdown();
    let _ = served.await;
    count as f64 / elapsed.as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let test = args.iter().any(|a| a == "--test");
    let count = arg(&args, "--count").unwrap_or(if test { 200 } else { 5_000 });
    let rounds = arg(&args, "--rounds").unwrap_or(if test { 1 } else { 5 });
    assert!(
        count > 0 && rounds > 0,
        "--count and --rounds must be positive"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    println!(
        "persistence: {count} QoS 1 messages of {PAYLOAD} B, window {WINDOW}, {rounds} rounds"
    );
    let mut n = 0;
    for scenario in [Scenario::Online, Scenario::Offline] {
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            // Alternate which goes first, so warming up favours neither.
            for persistent in [round % 2 == 0, round % 2 == 1] {
                n += 1;
                let scratch = Scratch::new(n);
                let store = persistent.then_some(scratch.0.as_path());
                let rate = rt.block_on(run(scenario, store, count));
                if persistent { &mut on } else { &mut off }.push(rate);
            }
        }
        let (on_m, off_m) = (median(&mut on), median(&mut off));
        println!(
            "{scenario:?}: persistence on (fsync always) {on_m:.0} msg/s, off {off_m:.0} msg/s, \
             ratio on/off {:.3} (on {:?}, off {:?})",
            on_m / off_m,
            on.iter().map(|r| r.round() as u64).collect::<Vec<_>>(),
            off.iter().map(|r| r.round() as u64).collect::<Vec<_>>(),
        );
    }
}
