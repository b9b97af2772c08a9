//! The throughput scenarios (fan-in, fan-out, many): closed-loop publishers with a window of
//! unacknowledged messages at QoS 1/2 (at QoS 0 a window of messages not yet received by every
//! subscriber) and subscribers that check sequences.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::check::{Checker, SeqSet, Verdict};
use crate::conn::{self, nanos, Conn};
use crate::packet::{self, Protocol, PublishTemplate};
use crate::report;

/// How publishers and subscribers are wired to topics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Every publisher on one topic, every subscriber on it.
    FanIn,
    /// The same as fan-in (one topic), with the roles' counts the other way around.
    FanOut,
    /// Each publisher on its own topic, every subscriber on a wildcard.
    Many,
}

/// What one throughput run does.
#[derive(Clone, Debug)]
pub struct FlowConfig {
    /// The broker.
    pub addr: SocketAddr,
    /// Where subscribers connect: the broker, or a relay to it with a delay (`--delay-ms`).
    pub subscriber_addr: SocketAddr,
    /// The protocol level.
    pub protocol: Protocol,
    /// The QoS of publishes and subscriptions.
    pub qos: u8,
    /// The payload size in bytes.
    pub payload: usize,
    /// Unacknowledged publishes per publisher (QoS 1/2).
    pub window: usize,
    /// At QoS 0, publishes per publisher not yet received by every subscriber (0: no limit).
    pub qos0_window: usize,
    /// The number of publishers.
    pub publishers: usize,
    /// The number of subscribers.
    pub subscribers: usize,
    /// The topic layout.
    pub shape: Shape,
    /// How long publishers publish (when `count` is not set).
    pub duration: Duration,
    /// The total number of messages to publish, split among publishers.
    pub count: Option<u64>,
    /// How long to wait for the last acknowledgements and deliveries.
    pub drain: Duration,
    /// The keep alive sent in CONNECT (0: off).
    pub keep_alive: u16,
    /// Print a progress line each second.
    pub progress: bool,
    /// The broker's pid, to measure its CPU use.
    pub broker_pid: Option<u32>,
    /// TLS (`--tls`) or WebSocket (`--ws`).
    pub transport: crate::conn::Transport,
}

/// What one throughput run measured.
#[derive(Clone, Debug, Default)]
pub struct FlowResult {
    /// The measured interval in seconds.
    pub secs: f64,
    /// Publishes written within the interval.
    pub sent: u64,
    /// Publishes acknowledged within the interval (QoS 1/2).
    pub acked: u64,
    /// Deliveries received within the interval, over all subscribers.
    pub delivered: u64,
    /// Publishes written in total.
    pub sent_total: u64,
    /// Publishes acknowledged in total (all written ones at QoS 0).
    pub acked_total: u64,
    /// Acknowledgements with a failure reason code (5.0).
    pub rejected: u64,
    /// The sequence check over all subscribers (after the drain).
    pub verdict: Verdict,
    /// Errors from connections that failed mid-run.
    pub errors: Vec<String>,
    /// Cores the load tool used during the interval.
    pub tool_cpu: Option<f64>,
    /// Cores the broker used during the interval.
    pub broker_cpu: Option<f64>,
    /// The broker's peak resident memory (VmHWM) in bytes at the end of the run: a broker
    /// started for the run shows what the run made it hold at most.
    pub broker_peak_rss: Option<u64>,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    publishers_done: AtomicBool,
    expected: AtomicU64,
    sent: AtomicU64,
    acked: AtomicU64,
    delivered: AtomicU64,
    /// When a subscriber last received something (`nanos()`).
    last_rx_nanos: AtomicU64,
    /// `reached[s * publishers + p]`: one past the highest sequence number subscriber `s` got
    /// from publisher `p` (the QoS 0 end-to-end window; a dropped message does not hold it).
    reached: Vec<AtomicU64>,
    /// `wake[p]`: a subscriber got something new from publisher `p`.
    wake: Vec<Notify>,
}

impl Shared {
    fn new(publishers: usize, subscribers: usize) -> Self {
        Self {
            reached: (0..publishers * subscribers)
                .map(|_| AtomicU64::new(0))
                .collect(),
            wake: (0..publishers).map(|_| Notify::new()).collect(),
            ..Self::default()
        }
    }

    /// The lowest `reached` of publisher `p` over all subscribers (None without subscribers).
    fn slowest(&self, p: usize, publishers: usize) -> Option<u64> {
        self.reached
            .iter()
            .skip(p)
            .step_by(publishers.max(1))
            .map(|r| r.load(Ordering::Relaxed))
            .min()
    }
}

// Topics carry the tool's pid so that a backlog still draining from an earlier run on the same
// broker never reaches this run's subscribers.
fn topic(cfg: &FlowConfig, publisher: usize) -> String {
    let tag = std::process::id();
    match cfg.shape {
        Shape::FanIn | Shape::FanOut => format!("load/{tag}/t"),
        Shape::Many => format!("load/{tag}/m/{publisher}"),
    }
}

fn filter(cfg: &FlowConfig) -> String {
    let tag = std::process::id();
    match cfg.shape {
        Shape::FanIn | Shape::FanOut => format!("load/{tag}/t"),
        Shape::Many => format!("load/{tag}/m/+"),
    }
}

/// Runs one throughput scenario against the broker.
pub async fn run(cfg: FlowConfig) -> Result<FlowResult, String> {
    let cfg = Arc::new(cfg);
    let shared = Arc::new(Shared::new(cfg.publishers, cfg.subscribers));
    let tag = std::process::id();
    let mut subs = Vec::with_capacity(cfg.subscribers);
    for i in 0..cfg.subscribers {
        let id = format!("load-{tag}-s{i}");
        let mut c = conn::open(
            cfg.subscriber_addr,
            None,
            &id,
            cfg.protocol,
            cfg.keep_alive,
            &cfg.transport,
        )
        .await
        .map_err(|e| format!("subscriber {i}: {e}"))?;
        conn::subscribe(&mut c, &filter(&cfg), cfg.qos, cfg.protocol)
            .await
            .map_err(|e| format!("subscriber {i}: {e}"))?;
        subs.push(c);
    }
    let mut pubs = Vec::with_capacity(cfg.publishers);
    for i in 0..cfg.publishers {
        let id = format!("load-{tag}-p{i}");
        let c = conn::open(
            cfg.addr,
            None,
            &id,
            cfg.protocol,
            cfg.keep_alive,
            &cfg.transport,
        )
        .await
        .map_err(|e| format!("publisher {i}: {e}"))?;
        pubs.push(c);
    }
    // Let the broker finish installing the subscriptions before the clock starts.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let start = Instant::now();
    let start_nanos = nanos();
    let cpu_start = (report::cpu_secs(None), report::cpu_secs(cfg.broker_pid));
    let sub_tasks: Vec<_> = subs
        .into_iter()
        .enumerate()
        .map(|(i, c)| tokio::spawn(subscriber(c, i, cfg.clone(), shared.clone())))
        .collect();
    let pub_tasks: Vec<_> = pubs
        .into_iter()
        .enumerate()
        .map(|(i, c)| tokio::spawn(publisher(c, i as u32, cfg.clone(), shared.clone())))
        .collect();
    let progress = cfg
        .progress
        .then(|| tokio::spawn(progress_lines(shared.clone(), start)));

    let mut result = FlowResult::default();
    let snapshot = |shared: &Shared, result: &mut FlowResult| {
        result.secs = start.elapsed().as_secs_f64();
        result.sent = shared.sent.load(Ordering::Relaxed);
        result.acked = shared.acked.load(Ordering::Relaxed);
        result.delivered = shared.delivered.load(Ordering::Relaxed);
        let used = |from: Option<f64>, to: Option<f64>| Some((to? - from?) / result.secs);
        result.tool_cpu = used(cpu_start.0, report::cpu_secs(None));
        result.broker_cpu = used(cpu_start.1, report::cpu_secs(cfg.broker_pid));
    };
    if cfg.count.is_none() {
        tokio::time::sleep(cfg.duration).await;
        snapshot(&shared, &mut result);
        shared.stop.store(true, Ordering::Relaxed);
    }
    let mut acked_sets = Vec::with_capacity(pub_tasks.len());
    for task in pub_tasks {
        match task.await.map_err(|e| e.to_string())? {
            Ok(out) => {
                result.sent_total += out.sent;
                result.acked_total += out.acked.len();
                result.rejected += out.rejected;
                acked_sets.push(out.acked);
            }
            Err((e, out)) => {
                result.errors.push(e);
                result.sent_total += out.sent;
                result.acked_total += out.acked.len();
                acked_sets.push(out.acked);
            }
        }
    }
    let pubs_done_nanos = nanos();
    shared.expected.store(result.acked_total, Ordering::Relaxed);
    shared.publishers_done.store(true, Ordering::Relaxed);
    for task in sub_tasks {
        match task.await.map_err(|e| e.to_string())? {
            Ok(checker) => result.verdict.add(checker.verdict(&acked_sets)),
            Err((e, checker)) => {
                result.errors.push(e);
                result.verdict.add(checker.verdict(&acked_sets));
            }
        }
    }
    if cfg.count.is_some() {
        snapshot(&shared, &mut result);
        // The interval ends with the last delivery (or the last acknowledgement), not with
        // the subscribers' wait for stragglers.
        let last = shared
            .last_rx_nanos
            .load(Ordering::Relaxed)
            .max(pubs_done_nanos);
        if last > start_nanos {
            let secs = (last - start_nanos) as f64 / 1e9;
            for c in [&mut result.tool_cpu, &mut result.broker_cpu]
                .into_iter()
                .flatten()
            {
                *c *= result.secs / secs;
            }
            result.secs = secs;
        }
    }
    if let Some(p) = progress {
        p.abort();
    }
    result.broker_peak_rss = cfg.broker_pid.and_then(crate::conns::vm_hwm);
    Ok(result)
}

async fn progress_lines(shared: Arc<Shared>, start: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = (0, 0, 0);
    loop {
        tick.tick().await;
        let now = (
            shared.sent.load(Ordering::Relaxed),
            shared.acked.load(Ordering::Relaxed),
            shared.delivered.load(Ordering::Relaxed),
        );
        eprintln!(
            "[{:>4.0}s] sent {}/s  acked {}/s  delivered {}/s",
            start.elapsed().as_secs_f64(),
            report::si(now.0 - last.0),
            report::si(now.1 - last.1),
            report::si(now.2 - last.2),
        );
        last = now;
    }
}

/// What a publisher did.
#[derive(Default)]
struct PubOut {
    sent: u64,
    acked: SeqSet,
    rejected: u64,
}

type PubResult = Result<PubOut, (String, PubOut)>;

fn limit(cfg: &FlowConfig, publisher: u32) -> u64 {
    match cfg.count {
        None => u64::MAX,
        Some(total) => {
            let p = cfg.publishers as u64;
            total / p + u64::from(u64::from(publisher) < total % p)
        }
    }
}

async fn publisher(mut c: Conn, id: u32, cfg: Arc<FlowConfig>, shared: Arc<Shared>) -> PubResult {
    let mut out = PubOut::default();
    let template = match PublishTemplate::new(
        &topic(&cfg, id as usize),
        cfg.qos,
        cfg.payload,
        cfg.protocol,
        id,
    ) {
        Ok(t) => t,
        Err(e) => return Err((e, out)),
    };
    let limit = limit(&cfg, id);
    let result = if cfg.qos == 0 {
        firehose(
            &mut c,
            &template,
            limit,
            id as usize,
            &cfg,
            &shared,
            &mut out,
        )
        .await
    } else {
        windowed(&mut c, &template, limit, &cfg, &shared, &mut out).await
    };
    let _ = c.stream.write_all(&packet::disconnect()).await;
    match result {
        Ok(()) => Ok(out),
        Err(e) => Err((format!("publisher {id}: {e}"), out)),
    }
}

/// QoS 0: batches of publishes, at most `qos0_window` ahead of the slowest subscriber (a
/// firehose with 0 or without subscribers).
async fn firehose(
    c: &mut Conn,
    template: &PublishTemplate,
    limit: u64,
    id: usize,
    cfg: &FlowConfig,
    shared: &Shared,
    out: &mut PubOut,
) -> std::io::Result<()> {
    const BATCH: u64 = 128;
    // Without news from a subscriber for this long the window opens anyway: the broker may
    // have dropped the messages that would have advanced it.
    const STALL: Duration = Duration::from_millis(50);
    let mut buf = Vec::with_capacity(BATCH as usize * template.len());
    let mut seq = 0u64;
    let window = cfg.qos0_window as u64;
    let mut floor = 0u64;
    while seq < limit && !shared.stop.load(Ordering::Relaxed) {
        let mut room = BATCH;
        if window > 0 {
            if let Some(slowest) = shared.slowest(id, cfg.publishers) {
                let ahead = seq - slowest.max(floor).min(seq);
                if ahead >= window {
                    let woken = tokio::time::timeout(STALL, shared.wake[id].notified()).await;
                    if woken.is_err() {
                        floor = seq.saturating_sub(window / 2);
                    }
                    continue;
                }
                room = room.min(window - ahead);
            }
        }
        buf.clear();
        let n = room.min(limit - seq);
        let now = nanos();
        for _ in 0..n {
            template.write(&mut buf, 0, seq, now);
            seq += 1;
        }
        c.stream.write_all(&buf).await?;
        shared.sent.fetch_add(n, Ordering::Relaxed);
        out.sent = seq;
    }
    for s in 0..seq {
        out.acked.insert(s);
    }
    Ok(())
}

/// QoS 1/2: at most `window` publishes unacknowledged; each completed one frees its packet id
/// for the next sequence number.
async fn windowed(
    c: &mut Conn,
    template: &PublishTemplate,
    limit: u64,
    cfg: &FlowConfig,
    shared: &Shared,
    out: &mut PubOut,
) -> std::io::Result<()> {
    let window = cfg
        .window
        .clamp(1, 65_535)
        .min(c.connack.receive_maximum.max(1) as usize);
    // slots[id - 1]: the sequence number in flight under packet id `id`.
    let mut slots: Vec<Option<u64>> = vec![None; window];
    let mut inflight = 0usize;
    let mut seq = 0u64;
    let mut wbuf = Vec::with_capacity(window * (template.len() + 4));
    for (i, slot) in slots.iter_mut().enumerate() {
        if seq >= limit {
            break;
        }
        template.write(&mut wbuf, i as u16 + 1, seq, nanos());
        *slot = Some(seq);
        seq += 1;
        inflight += 1;
    }
    let mut drain_deadline: Option<Instant> = None;
    loop {
        if !wbuf.is_empty() {
            c.stream.write_all(&wbuf).await?;
            wbuf.clear();
        }
        shared.sent.fetch_add(seq - out.sent, Ordering::Relaxed);
        out.sent = seq;
        let stopping = seq >= limit || shared.stop.load(Ordering::Relaxed);
        if stopping && inflight == 0 {
            return Ok(());
        }
        let read = if stopping {
            let deadline = *drain_deadline.get_or_insert_with(|| Instant::now() + cfg.drain);
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, c.stream.read_buf(&mut c.buf)).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(conn::io_err(format!(
                        "{inflight} publishes still unacknowledged after the drain"
                    )))
                }
            }
        } else {
            c.stream.read_buf(&mut c.buf).await?
        };
        if read == 0 {
            return Err(conn::io_err("the broker closed the connection"));
        }
        let now = nanos();
        let stop = shared.stop.load(Ordering::Relaxed);
        let mut at = 0;
        let mut acked = 0;
        while let Some((frame, used)) = packet::next_frame(&c.buf[at..]).map_err(conn::io_err)? {
            at += used;
            let id = packet::ack_packet_id(frame).unwrap_or(0);
            let kind = frame.first;
            let Some(slot) = (id as usize).checked_sub(1).and_then(|i| slots.get_mut(i)) else {
                if kind == packet::PINGRESP {
                    continue;
                }
                return Err(conn::io_err(format!(
                    "unexpected packet 0x{kind:02x} id {id}"
                )));
            };
            let Some(in_flight) = *slot else {
                return Err(conn::io_err(format!(
                    "0x{kind:02x} for packet id {id} that is not in flight"
                )));
            };
            let completed = match (kind, cfg.qos) {
                (packet::PUBACK, 1) => {
                    if packet::ack_reason(frame) < 0x80 {
                        out.acked.insert(in_flight);
                        acked += 1;
                    } else {
                        out.rejected += 1;
                    }
                    true
                }
                (packet::PUBREC, 2) => {
                    if packet::ack_reason(frame) < 0x80 {
                        out.acked.insert(in_flight);
                        acked += 1;
                        packet::put_ack(&mut wbuf, packet::PUBREL, id);
                        false
                    } else {
                        out.rejected += 1;
                        true
                    }
                }
                (packet::PUBCOMP, 2) => true,
                _ => {
                    return Err(conn::io_err(format!(
                        "unexpected packet 0x{kind:02x} at qos {}",
                        cfg.qos
                    )))
                }
            };
            if completed {
                if !stop && seq < limit {
                    template.write(&mut wbuf, id, seq, now);
                    *slot = Some(seq);
                    seq += 1;
                } else {
                    *slot = None;
                    inflight -= 1;
                }
            }
        }
        c.buf.drain(..at);
        shared.acked.fetch_add(acked, Ordering::Relaxed);
    }
}

type SubResult = Result<Checker, (String, Checker)>;

async fn subscriber(
    mut c: Conn,
    me: usize,
    cfg: Arc<FlowConfig>,
    shared: Arc<Shared>,
) -> SubResult {
    let mut checker = Checker::new(cfg.publishers);
    let result = receive(&mut c, me, &cfg, &shared, &mut checker).await;
    let _ = c.stream.write_all(&packet::disconnect()).await;
    match result {
        Ok(()) => Ok(checker),
        Err(e) => Err((format!("subscriber: {e}"), checker)),
    }
}

async fn receive(
    c: &mut Conn,
    me: usize,
    cfg: &FlowConfig,
    shared: &Shared,
    checker: &mut Checker,
) -> std::io::Result<()> {
    const IDLE: Duration = Duration::from_millis(500);
    // Packet ids of QoS 2 deliveries between PUBREC and PUBREL: a PUBLISH again under one of
    // them is the broker's retransmission, not a new message.
    let mut awaiting_rel = vec![false; 65_536];
    let mut wbuf = Vec::with_capacity(16 * 1024);
    let mut reached = vec![0u64; cfg.publishers];
    let mut last_rx = Instant::now();
    let mut done_at: Option<Instant> = None;
    loop {
        if shared.publishers_done.load(Ordering::Relaxed) {
            let done = *done_at.get_or_insert_with(Instant::now);
            let expected = shared.expected.load(Ordering::Relaxed);
            if checker.received() >= expected && cfg.qos > 0 {
                return Ok(());
            }
            // A broker may still be delivering a backlog: wait while messages keep coming, up
            // to four drains, and say so if they still were (the rest counts as lost).
            let idle = last_rx.elapsed() > IDLE && done.elapsed() > IDLE;
            if idle || (cfg.qos == 0 && done.elapsed() > cfg.drain) {
                return Ok(());
            }
            if done.elapsed() > cfg.drain * 4 {
                return Err(conn::io_err(format!(
                    "still receiving {:.0} s after publishing stopped",
                    done.elapsed().as_secs_f64()
                )));
            }
        }
        let read =
            match tokio::time::timeout(Duration::from_millis(100), c.stream.read_buf(&mut c.buf))
                .await
            {
                Ok(r) => r?,
                Err(_) => continue,
            };
        if read == 0 {
            return Err(conn::io_err("the broker closed the connection"));
        }
        last_rx = Instant::now();
        shared.last_rx_nanos.fetch_max(nanos(), Ordering::Relaxed);
        let mut at = 0;
        let mut delivered = 0;
        while let Some((frame, used)) = packet::next_frame(&c.buf[at..]).map_err(conn::io_err)? {
            at += used;
            match frame.first & 0xF0 {
                packet::PUBLISH => {
                    let p = packet::parse_publish(frame, cfg.protocol).map_err(conn::io_err)?;
                    let new = match p.qos {
                        0 => true,
                        1 => {
                            packet::put_ack(&mut wbuf, packet::PUBACK, p.packet_id);
                            true
                        }
                        _ => {
                            packet::put_ack(&mut wbuf, packet::PUBREC, p.packet_id);
                            let slot = &mut awaiting_rel[p.packet_id as usize];
                            !std::mem::replace(slot, true)
                        }
                    };
                    if new {
                        delivered += 1;
                        match packet::read_stamp(p.payload) {
                            Some(stamp) => {
                                checker.record(stamp.publisher, stamp.seq);
                                let p = stamp.publisher as usize;
                                if let Some(r) = reached.get_mut(p) {
                                    *r = (*r).max(stamp.seq + 1);
                                }
                            }
                            None => checker.record(u32::MAX, 0),
                        }
                    }
                }
                0x60 => {
                    let id = packet::ack_packet_id(frame).map_err(conn::io_err)?;
                    awaiting_rel[id as usize] = false;
                    packet::put_ack(&mut wbuf, packet::PUBCOMP, id);
                }
                0xD0 => {}
                kind => {
                    return Err(conn::io_err(format!("unexpected packet 0x{kind:02x}")));
                }
            }
        }
        c.buf.drain(..at);
        if !wbuf.is_empty() {
            c.stream.write_all(&wbuf).await?;
            wbuf.clear();
        }
        shared.delivered.fetch_add(delivered, Ordering::Relaxed);
        for (p, &r) in reached.iter().enumerate() {
            let slot = &shared.reached[me * cfg.publishers + p];
            if slot.load(Ordering::Relaxed) < r {
                slot.store(r, Ordering::Relaxed);
                shared.wake[p].notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_subscriber_holds_each_publishers_window() {
        // 2 publishers, 3 subscribers: reached[s * 2 + p].
        let shared = Shared::new(2, 3);
        for (s, p, r) in [
            (0, 0, 50),
            (1, 0, 20),
            (2, 0, 90),
            (0, 1, 7),
            (1, 1, 9),
            (2, 1, 8),
        ] {
            shared.reached[s * 2 + p].store(r, Ordering::Relaxed);
        }
        assert_eq!(shared.slowest(0, 2), Some(20));
        assert_eq!(shared.slowest(1, 2), Some(7));
        assert_eq!(
            Shared::new(1, 0).slowest(0, 1),
            None,
            "no subscriber, no window"
        );
    }

    #[test]
    fn a_count_is_split_among_publishers_exactly() {
        let cfg = FlowConfig {
            addr: "127.0.0.1:1".parse().unwrap(),
            subscriber_addr: "127.0.0.1:1".parse().unwrap(),
            protocol: Protocol::V4,
            qos: 1,
            payload: 64,
            window: 20,
            qos0_window: 1000,
            publishers: 3,
            subscribers: 1,
            shape: Shape::FanIn,
            duration: Duration::from_secs(1),
            count: Some(10),
            drain: Duration::from_secs(1),
            keep_alive: 60,
            progress: false,
            broker_pid: None,
            transport: Default::default(),
        };
        let split: Vec<u64> = (0..3).map(|p| limit(&cfg, p)).collect();
        assert_eq!(split, [4, 3, 3]);
    }
}
