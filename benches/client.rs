//! QoS 1 publish throughput of our tokio client against rumqttc's `AsyncClient`, side by side
//! in one run, to the same broker.
//!
//! One broker serves both clients for the whole run: our tokio broker in-process, on a thread
//! and a single-threaded runtime of its own, or `--mosquitto PORT` to use a Mosquitto (or any
//! broker) already listening on 127.0.0.1:PORT. The clients run on the main thread's
//! single-threaded runtime, so each gets the same one core of work. Each round, in turn (the
//! two alternating which goes first), one client connects with MQTT 3.1.1 and publishes
//! `--count` QoS 1 messages of 64 bytes to one topic nobody subscribes to; the time runs from
//! the first publish to the last PUBACK.
//!
//! Both clients are set up alike, with the settings a user would pick for this job: at most
//! [`WINDOW`] messages unacknowledged on the wire (rumqttc's `inflight`, our
//! `ClientConfig::max_inflight`), and up to [`WINDOW`] more queued in the client behind them
//! (rumqttc's request channel capacity; our caller holds at most `2 * WINDOW` unfinished
//! `Pending`s), so that neither has to wait for its caller to refill the window. rumqttc keeps
//! its other defaults (Nagle's algorithm on, as its `NetworkOptions` default; ours sets
//! `TCP_NODELAY`).
//!
//! It prints each round (with the CPU time and the sleeps, i.e. voluntary context switches,
//! per message of the clients' thread and of the broker's, read from /proc on Linux), the
//! median messages per second of each client and the ratio ours/rumqttc. Run with
//! `make bench-client` (`cargo bench --features tokio --bench client`); options after `--`:
//! `--count N` (default 1,000,000), `--rounds N` (default 5), `--mosquitto PORT`,
//! `--only tinymqtt|rumqttc` (one client only, e.g. to profile it), `--rumqttc-nodelay`
//! (rumqttc with `TCP_NODELAY` too), `--test` (one small round, to see that it works).

#[path = "support/mod.rs"]
mod support;

use support::{arg, median};

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tinymqtt::broker::{BrokerConfig, Router as Core};
use tinymqtt::client::ClientConfig;
use tinymqtt::codec::Publish;
use tinymqtt::runtimes::tokio::{Client, Server};
use tinymqtt::runtimes::{BrokerOptions, Pending};
use tinymqtt::{ByteStr, ProtocolVersion, QoS, TopicName};

/// Messages a publisher has unacknowledged at once (rumqttc's default `inflight`).
const WINDOW: usize = 100;
/// The payload size, in bytes.
const PAYLOAD: usize = 64;
const TOPIC: &str = "bench/client";

/// Benchmarks run on real time.
#[allow(clippy::disallowed_methods)]
fn clock() -> Instant {
    Instant::now()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Ours,
    Rumqttc,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Ours => "tinymqtt",
            Which::Rumqttc => "rumqttc",
        }
    }
}

/// Our tokio client: messages per second.
async fn ours(addr: SocketAddr, count: usize, round: usize) -> f64 {
    let id = ByteStr::try_from(format!("bench-ours-{round}")).unwrap();
    let mut config = ClientConfig::new(ProtocolVersion::V3_1_1, id);
    config.reconnect = None;
    config.keep_alive = 60;
    config.max_inflight = NonZeroU16::new(WINDOW as u16);
    let (client, _events) = Client::connect(addr, config)
        .await
        .expect("connect our client");
    let topic = TopicName::new(TOPIC).unwrap();
    let payload = Bytes::from(vec![b'x'; PAYLOAD]);
    let start = clock();
    let mut pending: VecDeque<Pending> = VecDeque::with_capacity(2 * WINDOW);
    for _ in 0..count {
        if pending.len() == 2 * WINDOW {
            pending.pop_front().unwrap().ack().await.expect("puback");
        }
        let mut m = Publish::new(topic.clone(), payload.clone());
        m.qos = QoS::AtLeastOnce;
        pending.push_back(client.publish(m).await.expect("publish"));
    }
    for p in pending {
        p.ack().await.expect("puback");
    }
    let elapsed = start.elapsed();
    let _ = client.disconnect().await;
    count as f64 / elapsed.as_secs_f64()
}

/// rumqttc's `AsyncClient` and `EventLoop`: messages per second.
async fn rumqttc(addr: SocketAddr, count: usize, round: usize, nodelay: bool) -> f64 {
    use rumqttc::{AsyncClient, Event, MqttOptions, NetworkOptions, Packet, QoS};

    let mut options = MqttOptions::new(
        format!("bench-rumqttc-{round}"),
        addr.ip().to_string(),
        addr.port(),
    );
    options.set_inflight(WINDOW as u16);
    options.set_keep_alive(Duration::from_secs(60));
    let (client, mut eventloop) = AsyncClient::new(options, WINDOW);
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(nodelay);
    eventloop.set_network_options(network);
    // The first poll connects; start the clock once the CONNACK is in.
    loop {
        match eventloop.poll().await.expect("connect rumqttc") {
            Event::Incoming(Packet::ConnAck(_)) => break,
            _ => continue,
        }
    }
    let payload = Bytes::from(vec![b'x'; PAYLOAD]);
    let start = clock();
    let publisher = tokio::spawn(async move {
        for _ in 0..count {
            client
                .publish_bytes(TOPIC, QoS::AtLeastOnce, false, payload.clone())
                .await
                .expect("rumqttc publish");
        }
        client
    });
    let mut acks = 0;
    while acks < count {
        if let Event::Incoming(Packet::PubAck(_)) = eventloop.poll().await.expect("rumqttc poll") {
            acks += 1;
        }
    }
    let elapsed = start.elapsed();
    let client = publisher.await.expect("the publisher task");
    let _ = client.disconnect().await;
    // Let the event loop write the DISCONNECT.
    let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
    count as f64 / elapsed.as_secs_f64()
}

/// This thread's id under /proc/self/task (Linux), to read its CPU time from another thread.
fn thread_id() -> Option<String> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// A thread's CPU time (ns) and its voluntary context switches (its sleeps), from /proc.
fn thread_usage(tid: Option<&str>) -> Option<(u64, u64)> {
    let dir = format!("/proc/self/task/{}", tid?);
    let sched = std::fs::read_to_string(format!("{dir}/schedstat")).ok()?;
    let cpu = sched.split_whitespace().next()?.parse().ok()?;
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    let switches = status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
        .trim()
        .parse()
        .ok()?;
    Some((cpu, switches))
}

/// Starts our tokio broker on a thread of its own; returns its address, its thread id and a
/// stop function.
fn start_broker() -> (SocketAddr, Option<String>, impl FnOnce()) {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("broker".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the broker's runtime");
            rt.block_on(async move {
                let config = BrokerConfig::default().with_sys_interval(None);
                let any: SocketAddr = ([127, 0, 0, 1], 0).into();
                let broker = Server::bind_with(Core::new(config), BrokerOptions::default(), &[any])
                    .await
                    .expect("bind the broker");
                tx.send((broker.local_addrs()[0], broker.handle(), thread_id()))
                    .unwrap();
                broker.run().await;
            });
        });
    let thread = thread.expect("the broker thread");
    let (addr, handle, tid) = rx.recv().expect("the broker started");
    (addr, tid, move || {
        handle.shutdown();
        thread.join().expect("the broker thread");
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let test = args.iter().any(|a| a == "--test");
    let nodelay = args.iter().any(|a| a == "--rumqttc-nodelay");
    let count = arg(&args, "--count").unwrap_or(if test { 1_000 } else { 1_000_000 });
    let rounds = arg(&args, "--rounds").unwrap_or(if test { 1 } else { 5 });
    assert!(
        count > 0 && rounds > 0,
        "--count and --rounds must be positive"
    );
    let external = arg(&args, "--mosquitto").map(|port| {
        let port = u16::try_from(port).expect("--mosquitto takes a port");
        SocketAddr::from(([127, 0, 0, 1], port))
    });
    let (addr, broker_tid, stop) = match external {
        Some(addr) => (addr, None, None),
        None => {
            let (addr, tid, stop) = start_broker();
            (addr, tid, Some(stop))
        }
    };
    let client_tid = thread_id();
    let broker = if external.is_some() {
        "the broker on"
    } else {
        "our tokio broker on"
    };
    println!(
        "client: {count} QoS 1 messages of {PAYLOAD} B, window {WINDOW}, {rounds} rounds, \
         MQTT 3.1.1, {broker} {addr}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the clients' runtime");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .map(|i| args.get(i + 1).cloned().unwrap_or_default());
    let mut results = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [Which::Ours, Which::Rumqttc]
        } else {
            [Which::Rumqttc, Which::Ours]
        };
        for which in order {
            if only.as_deref().is_some_and(|o| o != which.name()) {
                continue;
            }
            let usage = |tid: &Option<String>| thread_usage(tid.as_deref());
            let before = (usage(&client_tid), usage(&broker_tid));
            let rate = match which {
                Which::Ours => rt.block_on(ours(addr, count, round)),
                Which::Rumqttc => rt.block_on(rumqttc(addr, count, round, nodelay)),
            };
            let after = (usage(&client_tid), usage(&broker_tid));
            // Per message: CPU time and sleeps of the client thread and of the broker's.
            let per = |a: Option<(u64, u64)>, b: Option<(u64, u64)>| match (a, b) {
                (Some(a), Some(b)) => format!(
                    "{:>5.2} µs {:>5.3} sleeps",
                    (b.0 - a.0) as f64 / 1e3 / count as f64,
                    (b.1 - a.1) as f64 / count as f64
                ),
                _ => "-".to_string(),
            };
            println!(
                "  round {} {:<9} {:>12.0} msg/s   client {}   broker {}",
                round + 1,
                which.name(),
                rate,
                per(before.0, after.0),
                per(before.1, after.1),
            );
            results[which as usize].push(rate);
        }
    }
    drop(rt);
    if let Some(stop) = stop {
        stop();
    }
    let mut medians = [None, None];
    for which in [Which::Ours, Which::Rumqttc] {
        let r = &mut results[which as usize];
        if !r.is_empty() {
            let m = median(r);
            println!("median {:<9}{m:>12.0} msg/s", which.name());
            medians[which as usize] = Some(m);
        }
    }
    if let [Some(ours), Some(theirs)] = medians {
        println!("ratio tinymqtt/rumqttc {:.2}x", ours / theirs);
    }
}
