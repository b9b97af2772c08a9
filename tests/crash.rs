//! Crash tests of the real broker process: the example broker runs with a store,
//! a persistent subscriber listens on `crash/#` at QoS 2, one publisher sends at QoS 1 and
//! one at QoS 2 under load, and the broker is killed with SIGKILL at random moments and
//! restarted on the same store and port while the clients reconnect on their sessions.
//!
//! The oracle: every message the broker acknowledged (PUBACK for QoS 1, PUBREC for QoS 2:
//! the moment the broker takes a QoS 2 message over) arrives, QoS 1 at least once and QoS 2
//! exactly once (no QoS 2 message twice, acknowledged or not); the retained message set
//! before the first kill is still there after the last restart; and the subscriber's
//! subscription survived (it never re-subscribes, yet hears a message sent at the end).
//! Order across reconnects is reported, not required. `crash/paho.rs` runs the same kind of
//! load with real paho-mqtt clients (`PAHO_CRASH_KILLS=N` kills, 3 by default).
//!
//! The kill moments come from a seed printed at the start (`CRASH_SEED=N` repeats them; the
//! load itself runs on real time, so a rerun is close, not identical); `CRASH_KILLS=N`
//! changes the number of kills (0: the oracle on a broker that never crashes) and
//! `CRASH_LOG=info` (or `debug`) prints the broker's log and each client's connections.
//! `cargo test` builds the example broker before it runs this (it needs every runtime
//! feature); alone: `cargo build --examples --all-features && cargo test --all-features
//! --test crash -- --nocapture` (it prints its report).

#![cfg(all(
    feature = "tokio",
    feature = "smol",
    feature = "async-std",
    feature = "blocking"
))]
// Real processes run on real time: this test reads the clock and sleeps.
#![allow(clippy::disallowed_methods)]

#[path = "support/interop.rs"]
mod peers;

#[path = "crash/link.rs"]
mod link;

#[path = "crash/paho.rs"]
mod paho;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use link::{clock, Link};
use peers::{example, free_port, run, Peer};
use tinymqtt::client::{Backoff, ClientConfig, Event};
use tinymqtt::codec::{Publish, SubscribeProperties, Subscription};
use tinymqtt::{ByteStr, PacketId, ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName};

/// How many times the broker is killed (`CRASH_KILLS=N` overrides it; 0 checks the oracle
/// on a broker that never crashes).
const KILLS: usize = 5;
/// Load before each kill: this many milliseconds and up to `KILL_SPREAD_MS` more.
const KILL_AFTER_MS: u64 = 100;
const KILL_SPREAD_MS: u64 = 500;
/// The most messages a publisher sends (the load is bounded in count as well as in time).
const MAX_SEQ: u32 = 30_000;
/// A publisher's pace, in messages per second (so the load lasts through every kill, on a
/// fast machine as on a slow one).
const RATE: u64 = 3_000;
/// Messages a publisher has in flight at once.
const WINDOW: usize = 10;
/// How long the end of the test waits for in-flight messages and deliveries to finish.
const DRAIN: Duration = Duration::from_secs(5);
const RETAINED_TOPIC: &str = "crash/retained";
const RETAINED_PAYLOAD: &str = "kept across crashes";
const FINAL_TOPIC: &str = "crash/final";

/// A scratch folder, removed when dropped: the store and the broker's config file.
struct Work(PathBuf);

impl Work {
    fn new() -> Work {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("tinymqtt-crash-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        Work(dir)
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How the broker binary is told to make every write durable before its acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fsync {
    /// The config file's `fsync = "always"`.
    ConfigKey,
    /// The command line's `--fsync always`.
    Flag,
    /// Neither exists (the broker before durable acknowledgements): run with its default.
    Unsupported,
}

/// What this broker binary supports, asked once (`--check-config` on a file with the key,
/// then `--help`).
fn fsync_support(work: &Path) -> Fsync {
    static SUPPORT: OnceLock<Fsync> = OnceLock::new();
    *SUPPORT.get_or_init(|| {
        let probe = work.join("probe.toml");
        std::fs::write(&probe, "fsync = \"always\"\n").expect("write the probe config");
        let (status, _) = run(&example("broker"), &["--check-config", &path(&probe)]);
        if status.success() {
            return Fsync::ConfigKey;
        }
        let (_, help) = run(&example("broker"), &["--help"]);
        if help.contains("--fsync") {
            Fsync::Flag
        } else {
            Fsync::Unsupported
        }
    })
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Starts the example broker on `127.0.0.1:port` with its store in `work/store`, every write
/// durable before it is acknowledged where the broker can say so; returns once it listens.
///
/// The one place that says how the broker is invoked.
fn start_broker(port: u16, work: &Path) -> Peer {
    let fsync = fsync_support(work);
    let config = work.join("broker.toml");
    // No cap on the queues: the counts are bounded, and a dropped message must be a loss.
    let mut text = String::from("max_queued_messages = 0\nmax_queued_bytes = 0\n");
    if fsync == Fsync::ConfigKey {
        text.push_str("fsync = \"always\"\n");
    }
    std::fs::write(&config, text).expect("write the broker config");
    let port = port.to_string();
    let (config, store) = (path(&config), path(&work.join("store")));
    // `CRASH_LOG=debug` (or any log filter) for a post-mortem.
    let level = std::env::var("CRASH_LOG")
        .ok()
        .filter(|l| l.chars().all(|c| c.is_ascii_alphabetic()) && l.len() > 1)
        .unwrap_or_else(|| "info".into());
    let mut args = vec![
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--config",
        &config,
        "--persistence",
        &store,
        "--log-level",
        &level,
    ];
    if fsync == Fsync::Flag {
        args.extend(["--fsync", "always"]);
    }
    let broker = Peer::spawn(&example("broker"), &args);
    broker.line_where(|l| l.contains("listening on"));
    broker
}

/// With `CRASH_LOG` set, prints what the broker logged so far (for a failure's post-mortem).
fn broker_log(broker: &Peer, t0: Instant) {
    if std::env::var_os("CRASH_LOG").is_some() {
        let t = t0.elapsed().as_secs_f64();
        for line in broker.lines_within(Duration::ZERO, |_| true) {
            eprintln!("[{t:.3}s broker {}] {line}", broker.pid());
        }
    }
}

/// SplitMix64, for the kill moments.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A persistent MQTT 5 session (it outlives its connections by an hour) that reconnects
/// quickly, on the same session, and never re-subscribes by itself.
fn persistent(id: &str, seed: u64) -> ClientConfig {
    let mut c = ClientConfig::new(ProtocolVersion::V5, ByteStr::try_from(id).unwrap());
    c.properties.session_expiry_interval = Some(3600);
    c.keep_alive = 10;
    c.connect_timeout = Duration::from_secs(2);
    c.reconnect = Some(Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
        jitter_percent: 0,
        seed,
    });
    c.resubscribe = false;
    c.topic_aliases = false;
    c
}

/// What a publisher saw.
#[derive(Debug, Default)]
struct Sent {
    name: &'static str,
    qos: u8,
    /// Sequence numbers published (0..published).
    published: u32,
    /// When each was published, since the test started.
    published_at: Vec<Duration>,
    /// Acknowledged: PUBACK (QoS 1) or PUBREC (QoS 2) with a success code.
    acked: BTreeSet<u32>,
    /// Refused with an error code before any success.
    refused: Vec<(u32, ReasonCode)>,
    /// Reconnects that resumed the session, and those that did not.
    resumed: usize,
    not_resumed: usize,
    /// Unacknowledged messages a reconnect without the session gave up.
    given_up: usize,
    /// Still in flight when the drain ended.
    unfinished: usize,
}

/// Publishes `name:seq` on `crash/name` at `qos`, `WINDOW` at a time, until `stop`; then
/// waits (up to `DRAIN`) for what is in flight.
fn publisher(
    addr: SocketAddr,
    name: &'static str,
    qos: QoS,
    stop: Arc<AtomicBool>,
    t0: Instant,
) -> Sent {
    let mut link = Link::connect(addr, persistent(&format!("crash-pub-{name}"), 7));
    let topic = TopicName::new(&format!("crash/{name}")).unwrap();
    let mut sent = Sent {
        name,
        qos: qos as u8,
        ..Sent::default()
    };
    let mut inflight: HashMap<PacketId, u32> = HashMap::new();
    let mut events = Vec::new();
    let mut drain_until: Option<Instant> = None;
    let start = clock();
    loop {
        link.turn(Duration::from_millis(5), &mut events);
        for e in events.drain(..) {
            match e {
                Event::Published {
                    packet_id,
                    reason_code,
                    ..
                } => {
                    if let Some(seq) = inflight.remove(&packet_id) {
                        if !reason_code.is_error() {
                            sent.acked.insert(seq);
                        } else if !sent.acked.contains(&seq) {
                            sent.refused.push((seq, reason_code));
                        }
                    }
                }
                Event::Reconnected {
                    session_present,
                    lost,
                    ..
                } => {
                    if session_present {
                        sent.resumed += 1;
                    } else {
                        sent.not_resumed += 1;
                    }
                    for id in lost.publishes.iter().filter_map(|p| p.packet_id) {
                        sent.given_up += usize::from(inflight.remove(&id).is_some());
                    }
                    for id in &lost.released {
                        inflight.remove(id);
                    }
                }
                _ => {}
            }
        }
        if qos == QoS::ExactlyOnce {
            for id in link.released() {
                if let Some(seq) = inflight.get(&id) {
                    sent.acked.insert(*seq);
                }
            }
        }
        if stop.load(Ordering::Acquire) {
            let until = *drain_until.get_or_insert_with(|| clock() + DRAIN);
            if inflight.is_empty() || clock() > until {
                sent.unfinished = inflight.len();
                break;
            }
            continue;
        }
        let due = start.elapsed().as_millis() as u64 * RATE / 1000;
        let due = u32::try_from(due).unwrap_or(u32::MAX).min(MAX_SEQ);
        while sent.published < due && inflight.len() < WINDOW {
            let seq = sent.published;
            let mut p = Publish::new(topic.clone(), format!("{name}:{seq}"));
            p.qos = qos;
            match link.session.publish(clock(), p) {
                Ok(Some(id)) => {
                    inflight.insert(id, seq);
                    sent.published += 1;
                    sent.published_at.push(t0.elapsed());
                }
                // Not connected, or the server's window is full: later.
                _ => break,
            }
        }
    }
    link.disconnect();
    sent
}

/// What the persistent subscriber received.
#[derive(Debug, Default)]
struct Got {
    /// Per publisher, each sequence number in arrival order.
    seqs: BTreeMap<String, Vec<u32>>,
    /// Messages with the DUP flag set.
    dups: usize,
    /// Payloads on `crash/#` that are none of the test's.
    strange: Vec<String>,
    final_seen: bool,
    resumed: usize,
    not_resumed: usize,
    /// When its connections ended and resumed, since the test started.
    timeline: Vec<String>,
}

/// The persistent subscriber: subscribes once to `crash/#` at QoS 2, then only listens,
/// through every crash, on its one session.
fn subscriber(
    addr: SocketAddr,
    got: Arc<Mutex<Got>>,
    stop: Arc<AtomicBool>,
    ready: mpsc::Sender<()>,
    t0: Instant,
) {
    let mut link = Link::connect(addr, persistent("crash-sub", 11));
    let mut events = Vec::new();
    while !stop.load(Ordering::Acquire) {
        link.turn(Duration::from_millis(20), &mut events);
        for e in events.drain(..) {
            let mut got = got.lock().unwrap();
            match e {
                Event::Connected { .. } => {
                    let filter = TopicFilter::new("crash/#").unwrap();
                    let sub = vec![Subscription::new(filter, QoS::ExactlyOnce)];
                    link.session
                        .subscribe(clock(), sub, SubscribeProperties::default())
                        .expect("subscribe");
                }
                Event::Subscribed { reason_codes, .. } => {
                    assert_eq!(reason_codes, vec![ReasonCode::GrantedQoS2], "suback");
                    let _ = ready.send(());
                }
                Event::Reconnected {
                    session_present, ..
                } => {
                    if session_present {
                        got.resumed += 1;
                    } else {
                        got.not_resumed += 1;
                    }
                    let t = t0.elapsed().as_secs_f64();
                    got.timeline
                        .push(format!("{t:.2}s back ({session_present})"));
                }
                // Once per outage, not once per refused attempt.
                Event::Disconnected { .. }
                    if !got.timeline.last().is_some_and(|l| l.ends_with("down")) =>
                {
                    let t = t0.elapsed().as_secs_f64();
                    got.timeline.push(format!("{t:.2}s down"));
                }
                Event::Message(m) => {
                    let p = m.publish;
                    got.dups += usize::from(p.dup);
                    let text = String::from_utf8_lossy(&p.payload).into_owned();
                    let topic = p.topic.as_str();
                    if topic == FINAL_TOPIC {
                        got.final_seen = true;
                    } else if topic == RETAINED_TOPIC {
                    } else if let Some((name, seq)) = text
                        .split_once(':')
                        .and_then(|(n, s)| Some((n.to_owned(), s.parse::<u32>().ok()?)))
                        .filter(|(n, _)| topic == format!("crash/{n}"))
                    {
                        got.seqs.entry(name).or_default().push(seq);
                    } else {
                        got.strange.push(format!("{topic} {text}"));
                    }
                }
                _ => {}
            }
        }
    }
    link.disconnect();
}

/// Publishes one QoS 1 message from a fresh client and waits for its PUBACK.
fn publish_once(addr: SocketAddr, id: &str, topic: &str, payload: &str, retain: bool) -> bool {
    let mut c = persistent(id, 3);
    c.properties.session_expiry_interval = None;
    let mut link = Link::connect(addr, c);
    let mut events = Vec::new();
    let end = clock() + Duration::from_secs(5);
    let mut sent = None;
    while clock() < end {
        link.turn(Duration::from_millis(20), &mut events);
        for e in events.drain(..) {
            match e {
                Event::Connected { .. } => {
                    let mut p = Publish::new(TopicName::new(topic).unwrap(), payload.to_owned());
                    p.qos = QoS::AtLeastOnce;
                    p.retain = retain;
                    sent = link.session.publish(clock(), p).expect("publish");
                }
                Event::Published {
                    packet_id,
                    reason_code,
                    ..
                } if Some(packet_id) == sent => {
                    link.disconnect();
                    return !reason_code.is_error();
                }
                _ => {}
            }
        }
    }
    false
}

/// The retained message on `topic` a fresh subscriber gets, if any arrives within 5 s.
fn retained(addr: SocketAddr, topic: &str) -> Option<String> {
    let mut c = persistent("crash-fresh", 5);
    c.properties.session_expiry_interval = None;
    let mut link = Link::connect(addr, c);
    let mut events = Vec::new();
    let end = clock() + Duration::from_secs(5);
    while clock() < end {
        link.turn(Duration::from_millis(20), &mut events);
        for e in events.drain(..) {
            match e {
                Event::Connected { .. } => {
                    let filter = TopicFilter::new(topic).unwrap();
                    let sub = vec![Subscription::new(filter, QoS::AtLeastOnce)];
                    let props = SubscribeProperties::default();
                    link.session
                        .subscribe(clock(), sub, props)
                        .expect("subscribe");
                }
                Event::Message(m) if m.publish.retain => {
                    link.disconnect();
                    return Some(String::from_utf8_lossy(&m.publish.payload).into_owned());
                }
                _ => {}
            }
        }
    }
    None
}

/// The first few of `seqs`, and how many there are.
fn few(seqs: &BTreeSet<u32>) -> String {
    let first: Vec<u32> = seqs.iter().take(10).copied().collect();
    let more = if seqs.len() > first.len() {
        ", ..."
    } else {
        ""
    };
    format!("{} ({first:?}{more})", seqs.len())
}

/// When the first few of `seqs` were published (to set beside the kill moments).
fn when(sent: &Sent, seqs: &BTreeSet<u32>) -> String {
    let mut times: Vec<String> = Vec::new();
    for s in seqs.iter().take(10) {
        let t = sent
            .published_at
            .get(*s as usize)
            .map(Duration::as_secs_f64);
        let t = t.map_or("?".into(), |t| format!("{t:.2}s"));
        if times.last() != Some(&t) {
            times.push(t);
        }
    }
    times.join(", ")
}

/// Compares what `sent` acknowledged with what arrived; returns the problems found (and
/// writes what it saw, problems or not, to `report`).
fn check(sent: &Sent, arrived: &[u32], report: &mut String) -> Vec<String> {
    let mut count: BTreeMap<u32, usize> = BTreeMap::new();
    let (mut late, mut top) = (0usize, None::<u32>);
    for &s in arrived {
        let first = {
            let c = count.entry(s).or_default();
            *c += 1;
            *c == 1
        };
        if first {
            if top.is_some_and(|t| s < t) {
                late += 1;
            }
            top = top.max(Some(s));
        }
    }
    let lost: BTreeSet<u32> = sent
        .acked
        .iter()
        .filter(|s| !count.contains_key(s))
        .copied()
        .collect();
    let twice: BTreeSet<u32> = count
        .iter()
        .filter(|(_, &c)| c > 1)
        .map(|(&s, _)| s)
        .collect();
    let never_sent: BTreeSet<u32> = count
        .keys()
        .filter(|&&s| s >= sent.published)
        .copied()
        .collect();
    let unacked_arrived = count.keys().filter(|s| !sent.acked.contains(s)).count();
    let _ = writeln!(
        report,
        "  {} (QoS {}): published {}, acknowledged {}, arrived {} distinct ({} deliveries, {} \
         arrived unacknowledged), duplicated {}, out of order {late}; reconnects resumed {} \
         / not {}, given up {}, refused {}, unfinished {}",
        sent.name,
        sent.qos,
        sent.published,
        sent.acked.len(),
        count.len(),
        arrived.len(),
        unacked_arrived,
        twice.len(),
        sent.resumed,
        sent.not_resumed,
        sent.given_up,
        sent.refused.len(),
        sent.unfinished,
    );
    let mut problems = Vec::new();
    if sent.acked.is_empty() {
        problems.push(format!("{}: nothing was acknowledged (no load)", sent.name));
    }
    if !lost.is_empty() {
        problems.push(format!(
            "{} (QoS {}): acknowledged but never arrived: {}, published at {}",
            sent.name,
            sent.qos,
            few(&lost),
            when(sent, &lost)
        ));
    }
    if sent.qos == 2 && !twice.is_empty() {
        problems.push(format!(
            "{} (QoS 2): arrived more than once: {}, published at {}",
            sent.name,
            few(&twice),
            when(sent, &twice)
        ));
    }
    if !never_sent.is_empty() {
        problems.push(format!(
            "{}: arrived but never sent: {}",
            sent.name,
            few(&never_sent)
        ));
    }
    problems
}

#[test]
fn acknowledged_messages_retained_messages_and_subscriptions_survive_sigkills_of_the_broker() {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("crash seed {seed} (CRASH_SEED={seed} repeats the kill moments)");
    let mut rng = seed;
    let kill_count = std::env::var("CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(KILLS)
        .min(20);
    let started = link::t0();
    let work = Work::new();
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut broker = start_broker(port, &work.0);
    let fsync = fsync_support(&work.0);

    let got = Arc::new(Mutex::new(Got::default()));
    let stop_sub = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready) = mpsc::channel();
    let sub = {
        let (got, stop) = (got.clone(), stop_sub.clone());
        thread::spawn(move || subscriber(addr, got, stop, ready_tx, started))
    };
    ready
        .recv_timeout(Duration::from_secs(10))
        .expect("the subscriber subscribed");
    assert!(
        publish_once(addr, "crash-retain", RETAINED_TOPIC, RETAINED_PAYLOAD, true),
        "the retained message was acknowledged"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = [("q1", QoS::AtLeastOnce), ("q2", QoS::ExactlyOnce)]
        .into_iter()
        .map(|(name, qos)| {
            let stop = stop.clone();
            thread::spawn(move || publisher(addr, name, qos, stop, started))
        })
        .collect();
    let mut kills = Vec::new();
    for _ in 0..kill_count {
        let load = KILL_AFTER_MS + next_random(&mut rng) % KILL_SPREAD_MS;
        let down = next_random(&mut rng) % 50;
        thread::sleep(Duration::from_millis(load));
        let at = started.elapsed();
        broker_log(&broker, started);
        broker.kill();
        thread::sleep(Duration::from_millis(down));
        broker = start_broker(port, &work.0);
        kills.push(format!("{:.2}s ({load}+{down}ms)", at.as_secs_f64()));
    }
    // Load on the last broker too, then the publishers finish what is in flight.
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Release);
    let sent: Vec<Sent> = publishers
        .into_iter()
        .map(|p| p.join().expect("publisher thread"))
        .collect();
    // Sent after everything: the subscriber only hears it if its subscription survived.
    let final_acked = publish_once(addr, "crash-final", FINAL_TOPIC, "end", false);
    let end = clock() + DRAIN;
    loop {
        let done = {
            let g = got.lock().unwrap();
            g.final_seen
                && sent.iter().all(|s| {
                    let seen = g.seqs.get(s.name);
                    s.acked.iter().all(|a| seen.is_some_and(|v| v.contains(a)))
                })
        };
        if done || clock() > end {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    // A QoS 2 message delivered twice would come late: a moment more to see it.
    thread::sleep(Duration::from_millis(200));
    stop_sub.store(true, Ordering::Release);
    sub.join().expect("subscriber thread");
    let kept = retained(addr, RETAINED_TOPIC);
    broker_log(&broker, started);
    drop(broker);

    let got = got.lock().unwrap();
    let mut report = format!(
        "crash seed {seed}, {kill_count} kills at {kills:?} (load+down), fsync {fsync:?}, {:.1?}\n",
        started.elapsed()
    );
    let mut problems = Vec::new();
    for s in &sent {
        let arrived = got.seqs.get(s.name).map_or(&[][..], Vec::as_slice);
        problems.extend(check(s, arrived, &mut report));
    }
    let _ = writeln!(
        report,
        "  subscriber: reconnects resumed {} / not {}, {} deliveries with DUP, retained {kept:?}; \
         connection {:?}",
        got.resumed, got.not_resumed, got.dups, got.timeline
    );
    if got.not_resumed > 0 {
        problems.push(format!(
            "the broker forgot the subscriber's session on {} of its reconnects",
            got.not_resumed
        ));
    }
    if !final_acked {
        problems.push("the last message (after the crashes) was not acknowledged".into());
    } else if !got.final_seen {
        problems.push(
            "the subscription did not survive: the message sent after the crashes never arrived"
                .into(),
        );
    }
    if kept.as_deref() != Some(RETAINED_PAYLOAD) {
        problems.push(format!(
            "the retained message did not survive: a fresh subscriber got {kept:?}"
        ));
    }
    if !got.strange.is_empty() {
        problems.push(format!("unexpected messages: {:?}", got.strange));
    }
    if problems.is_empty() {
        eprintln!("{report}");
    }
    assert!(
        problems.is_empty(),
        "{report}problems:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_oracle_names_lost_duplicated_and_invented_messages() {
    let sent = |qos| Sent {
        name: "p",
        qos,
        published: 6,
        published_at: (0..6).map(|s| Duration::from_millis(100 * s)).collect(),
        acked: (0..5).collect(),
        ..Sent::default()
    };
    let mut report = String::new();
    let arrived = [0, 3, 1, 1, 4, 5, 9];
    let problems = check(&sent(2), &arrived, &mut report);
    assert_eq!(
        problems,
        vec![
            "p (QoS 2): acknowledged but never arrived: 1 ([2]), published at 0.20s",
            "p (QoS 2): arrived more than once: 1 ([1]), published at 0.10s",
            "p: arrived but never sent: 1 ([9])",
        ]
    );
    assert!(report.contains("out of order 1"), "{report}");
    // At least once is enough at QoS 1.
    let problems = check(&sent(1), &arrived, &mut report);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(check(&sent(2), &[4, 3, 2, 1, 0], &mut report).is_empty());
}
