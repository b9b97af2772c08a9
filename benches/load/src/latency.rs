//! The latency scenario: one publisher at a fixed rate (open loop), one subscriber, end-to-end
//! latency from the send time stamped in each payload; plain threads and blocking sockets, so a
//! message is sent when it is due rather than when a runtime's timer wheel ticks.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::check::{Checker, SeqSet, Verdict};
use crate::conn::{io_err, nanos};
use crate::packet::{self, Protocol, PublishTemplate};

/// What one latency run does.
#[derive(Clone, Debug)]
pub struct LatencyConfig {
    /// The broker.
    pub addr: SocketAddr,
    /// Where the subscriber connects: the broker, or a relay to it with a delay
    /// (`--delay-ms`).
    pub subscriber_addr: SocketAddr,
    /// The protocol level.
    pub protocol: Protocol,
    /// The QoS of the publishes and the subscription.
    pub qos: u8,
    /// The payload size.
    pub payload: usize,
    /// Messages per second.
    pub rate: u64,
    /// How long to publish (when `count` is not set).
    pub duration: Duration,
    /// How many messages to publish.
    pub count: Option<u64>,
    /// How long to wait for the last acknowledgements and deliveries.
    pub drain: Duration,
    /// The keep alive sent in CONNECT.
    pub keep_alive: u16,
    /// Print a progress line each second.
    pub progress: bool,
}

/// The first messages (this long at the rate) warm caches up and are left out of the histogram.
pub const WARMUP: Duration = Duration::from_millis(500);

/// What one latency run measured.
pub struct LatencyResult {
    /// Seconds spent publishing.
    pub secs: f64,
    /// Messages published.
    pub sent: u64,
    /// Messages acknowledged (all published ones at QoS 0).
    pub acked: u64,
    /// End-to-end latencies in nanoseconds, warm-up excluded.
    pub hist: Histogram<u64>,
    /// The sequence check.
    pub verdict: Verdict,
    /// Errors from the connections.
    pub errors: Vec<String>,
    /// Cores the load tool used (filled in by the caller).
    pub tool_cpu: Option<f64>,
    /// Cores the broker used (filled in by the caller).
    pub broker_cpu: Option<f64>,
}

fn open(
    cfg: &LatencyConfig,
    addr: SocketAddr,
    client_id: &str,
) -> io::Result<(TcpStream, Vec<u8>, packet::Connack)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_nodelay(true)?;
    stream.write_all(&packet::connect(client_id, cfg.protocol, cfg.keep_alive))?;
    let mut buf = Vec::new();
    let (first, body) = read_packet(&mut stream, &mut buf)?;
    let connack = packet::parse_connack(packet::Frame { first, body: &body }, cfg.protocol)
        .map_err(io_err)?;
    if connack.code != 0 {
        return Err(io_err(format!(
            "connection refused with 0x{:02x}",
            connack.code
        )));
    }
    Ok((stream, buf, connack))
}

fn read_packet(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<(u8, Vec<u8>)> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((frame, used)) = packet::next_frame(buf).map_err(io_err)? {
            let out = (frame.first, frame.body.to_vec());
            buf.drain(..used);
            return Ok(out);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io_err("the broker closed the connection"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    publisher_done: AtomicBool,
    sent: AtomicU64,
    acked: AtomicU64,
    /// Publishes whose flow is over (PUBACK, or PUBCOMP at QoS 2): what the receive window counts.
    completed: AtomicU64,
    received: AtomicU64,
}

/// Runs the latency scenario.
pub fn run(cfg: LatencyConfig) -> Result<LatencyResult, String> {
    let tag = std::process::id();
    let (mut sub, sub_buf, _) = open(&cfg, cfg.subscriber_addr, &format!("load-{tag}-lat-s"))
        .map_err(|e| format!("subscriber: {e}"))?;
    // The pid keeps an earlier run's backlog on the same broker out of this run.
    let topic = format!("load/{tag}/lat");
    sub.write_all(&packet::subscribe(1, &topic, cfg.qos, cfg.protocol))
        .map_err(|e| e.to_string())?;
    let mut sub_buf = sub_buf;
    let (first, _) = read_packet(&mut sub, &mut sub_buf).map_err(|e| format!("subscriber: {e}"))?;
    if first != packet::SUBACK {
        return Err(format!("subscriber: expected suback, got 0x{first:02x}"));
    }
    let (publ, _, connack) = open(&cfg, cfg.addr, &format!("load-{tag}-lat-p"))
        .map_err(|e| format!("publisher: {e}"))?;
    let cap = match cfg.protocol {
        Protocol::V5 => u64::from(connack.receive_maximum.max(1)),
        Protocol::V4 => 60_000,
    };
    let template = PublishTemplate::new(&topic, cfg.qos, cfg.payload, cfg.protocol, 0)?;
    let shared = Arc::new(Shared::default());
    let acked_set = Arc::new(Mutex::new(SeqSet::default()));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    thread::sleep(Duration::from_millis(100));

    let warmup_msgs = (cfg.rate as f64 * WARMUP.as_secs_f64()) as u64;
    let sub_thread = {
        let shared = shared.clone();
        let cfg = cfg.clone();
        thread::spawn(move || subscriber(sub, sub_buf, &cfg, &shared, warmup_msgs))
    };
    let ack_thread = (cfg.qos > 0).then(|| {
        let reader = publ.try_clone().expect("clone the publisher's socket");
        let (shared, acked_set, qos) = (shared.clone(), acked_set.clone(), cfg.qos);
        let (drain, errors) = (cfg.drain, errors.clone());
        thread::spawn(move || {
            if let Err(e) = acks(reader, qos, &shared, &acked_set, drain) {
                errors
                    .lock()
                    .expect("errors")
                    .push(format!("publisher acks: {e}"));
            }
        })
    });
    let start = Instant::now();
    let pub_thread = {
        let shared = shared.clone();
        let cfg = cfg.clone();
        thread::spawn(move || publisher(publ, &template, &cfg, &shared, cap, start))
    };
    let mut next_progress = start + Duration::from_secs(1);
    let mut last = (0, 0);
    while !pub_thread.is_finished() {
        thread::sleep(Duration::from_millis(20));
        if cfg.count.is_none() && start.elapsed() >= cfg.duration {
            shared.stop.store(true, Ordering::Relaxed);
        }
        if cfg.progress && Instant::now() >= next_progress {
            next_progress += Duration::from_secs(1);
            let now = (
                shared.sent.load(Ordering::Relaxed),
                shared.received.load(Ordering::Relaxed),
            );
            eprintln!(
                "[{:>4.0}s] sent {}/s  received {}/s",
                start.elapsed().as_secs_f64(),
                crate::report::si(now.0 - last.0),
                crate::report::si(now.1 - last.1)
            );
            last = now;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let sent = match pub_thread.join().map_err(|_| "the publisher panicked")? {
        Ok(sent) => sent,
        Err((e, sent)) => {
            errors
                .lock()
                .expect("errors")
                .push(format!("publisher: {e}"));
            sent
        }
    };
    if let Some(t) = ack_thread {
        t.join().map_err(|_| "the ack reader panicked")?;
    }
    let acked = if cfg.qos == 0 {
        let mut set = SeqSet::default();
        for s in 0..sent {
            set.insert(s);
        }
        set
    } else {
        std::mem::take(&mut *acked_set.lock().expect("acked set"))
    };
    shared.acked.store(acked.len(), Ordering::Relaxed);
    shared.publisher_done.store(true, Ordering::Relaxed);
    let (checker, hist, error) = sub_thread.join().map_err(|_| "the subscriber panicked")?;
    if let Some(e) = error {
        errors
            .lock()
            .expect("errors")
            .push(format!("subscriber: {e}"));
    }
    let errors = std::mem::take(&mut *errors.lock().expect("errors"));
    Ok(LatencyResult {
        secs,
        sent,
        acked: acked.len(),
        hist,
        verdict: checker.verdict(&[acked]),
        errors,
        tool_cpu: None,
        broker_cpu: None,
    })
}

type Out<T> = Result<T, (String, T)>;

fn publisher(
    mut stream: TcpStream,
    template: &PublishTemplate,
    cfg: &LatencyConfig,
    shared: &Shared,
    cap: u64,
    start: Instant,
) -> Out<u64> {
    let interval = 1e9 / cfg.rate.max(1) as f64;
    let limit = cfg.count.unwrap_or(u64::MAX);
    let mut seq = 0u64;
    let mut buf = Vec::with_capacity(64 * template.len());
    while seq < limit && !shared.stop.load(Ordering::Relaxed) {
        let due = start + Duration::from_nanos((seq as f64 * interval) as u64);
        let now = Instant::now();
        if now < due {
            thread::sleep(due - now);
            continue;
        }
        if cfg.qos > 0 && seq - shared.completed.load(Ordering::Relaxed) >= cap {
            // The broker's receive window is full: wait for it (the lateness shows as latency).
            thread::sleep(Duration::from_micros(50));
            continue;
        }
        buf.clear();
        let elapsed = now.duration_since(start).as_nanos() as f64;
        while seq < limit && (seq as f64 * interval) <= elapsed && buf.len() < 64 * template.len() {
            let id = (seq % 65_535) as u16 + 1;
            template.write(&mut buf, id, seq, nanos());
            seq += 1;
        }
        if let Err(e) = stream.write_all(&buf) {
            return Err((e.to_string(), seq));
        }
        shared.sent.store(seq, Ordering::Relaxed);
    }
    if cfg.qos == 0 {
        // At QoS 1/2 the ack reader disconnects once the acknowledgements are in.
        let _ = stream.write_all(&packet::disconnect());
    }
    Ok(seq)
}

/// Reads the publisher's acknowledgements; packet ids cycle through 1..=65535 with the sequence.
fn acks(
    mut stream: TcpStream,
    qos: u8,
    shared: &Shared,
    acked: &Mutex<SeqSet>,
    drain: Duration,
) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    let mut stopped_at: Option<Instant> = None;
    let mut count = 0u64;
    let mut completed = 0u64;
    loop {
        if shared.stop.load(Ordering::Relaxed) || stopped_at.is_some() {
            let at = *stopped_at.get_or_insert_with(Instant::now);
            // Stop once everything sent is acknowledged, or the drain is over.
            let sent = shared.sent.load(Ordering::Relaxed);
            if count >= sent && at.elapsed() > Duration::from_millis(50) || at.elapsed() > drain {
                let _ = stream.write_all(&packet::disconnect());
                return Ok(());
            }
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Err(io_err("the broker closed the connection")),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
        let sent = shared.sent.load(Ordering::Relaxed);
        let mut at = 0;
        let mut set = acked.lock().expect("acked set");
        while let Some((frame, used)) = packet::next_frame(&buf[at..]).map_err(io_err)? {
            at += used;
            let id = packet::ack_packet_id(frame).unwrap_or(0);
            let done = match (frame.first, qos) {
                (packet::PUBACK, 1) | (packet::PUBREC, 2) => {
                    if frame.first == packet::PUBREC {
                        packet::put_ack(&mut out, packet::PUBREL, id);
                    }
                    packet::ack_reason(frame) < 0x80
                }
                (packet::PUBCOMP, 2) => {
                    completed += 1;
                    false
                }
                (packet::PINGRESP, _) => false,
                (kind, _) => return Err(io_err(format!("unexpected packet 0x{kind:02x}"))),
            };
            if done && id > 0 && sent > 0 {
                // The newest sequence number sent under this packet id.
                let slot = u64::from(id - 1);
                let top = sent - 1;
                let cycle = 65_535u64;
                let base = top - top % cycle;
                let seq = if base + slot <= top {
                    base + slot
                } else {
                    base.saturating_sub(cycle) + slot
                };
                if set.insert(seq) {
                    count += 1;
                }
            }
        }
        drop(set);
        buf.drain(..at);
        shared.acked.store(count, Ordering::Relaxed);
        let completed = if qos == 1 { count } else { completed };
        shared.completed.store(completed, Ordering::Relaxed);
        if !out.is_empty() {
            stream.write_all(&out)?;
            out.clear();
        }
    }
}

/// What the subscriber saw, and why it stopped early if it did.
type SubOut = (Checker, Histogram<u64>, Option<String>);

fn subscriber(
    mut stream: TcpStream,
    mut buf: Vec<u8>,
    cfg: &LatencyConfig,
    shared: &Shared,
    warmup: u64,
) -> SubOut {
    let mut checker = Checker::new(1);
    let mut hist =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
    let r = receive(
        &mut stream,
        &mut buf,
        cfg,
        shared,
        warmup,
        &mut checker,
        &mut hist,
    );
    let _ = stream.write_all(&packet::disconnect());
    (checker, hist, r.err().map(|e| e.to_string()))
}

fn receive(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    cfg: &LatencyConfig,
    shared: &Shared,
    warmup: u64,
    checker: &mut Checker,
    hist: &mut Histogram<u64>,
) -> io::Result<()> {
    const IDLE: Duration = Duration::from_millis(500);
    stream.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    let mut awaiting_rel = vec![false; 65_536];
    let mut last_rx = Instant::now();
    let mut done_at: Option<Instant> = None;
    let mut received = 0u64;
    loop {
        if shared.publisher_done.load(Ordering::Relaxed) {
            let done = *done_at.get_or_insert_with(Instant::now);
            let complete =
                cfg.qos > 0 && checker.received() >= shared.acked.load(Ordering::Relaxed);
            let idle = last_rx.elapsed() > IDLE && done.elapsed() > IDLE;
            if complete || idle || done.elapsed() > cfg.drain {
                return Ok(());
            }
        }
        let mut at = 0;
        while let Some((frame, used)) = packet::next_frame(&buf[at..]).map_err(io_err)? {
            at += used;
            let now = nanos();
            match frame.first & 0xF0 {
                packet::PUBLISH => {
                    let p = packet::parse_publish(frame, cfg.protocol).map_err(io_err)?;
                    let new = match p.qos {
                        0 => true,
                        1 => {
                            packet::put_ack(&mut out, packet::PUBACK, p.packet_id);
                            true
                        }
                        _ => {
                            packet::put_ack(&mut out, packet::PUBREC, p.packet_id);
                            !std::mem::replace(&mut awaiting_rel[p.packet_id as usize], true)
                        }
                    };
                    if new {
                        received += 1;
                        match packet::read_stamp(p.payload) {
                            Some(s) => {
                                checker.record(s.publisher, s.seq);
                                if s.seq >= warmup {
                                    let _ = hist.record(now.saturating_sub(s.sent_nanos).max(1));
                                }
                            }
                            None => checker.record(u32::MAX, 0),
                        }
                    }
                }
                0x60 => {
                    let id = packet::ack_packet_id(frame).map_err(io_err)?;
                    awaiting_rel[id as usize] = false;
                    packet::put_ack(&mut out, packet::PUBCOMP, id);
                }
                0xD0 => {}
                kind => return Err(io_err(format!("unexpected packet 0x{kind:02x}"))),
            }
        }
        buf.drain(..at);
        shared.received.store(received, Ordering::Relaxed);
        if !out.is_empty() {
            stream.write_all(&out)?;
            out.clear();
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(io_err("the broker closed the connection")),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                last_rx = Instant::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
}
