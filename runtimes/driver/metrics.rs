//! The Prometheus endpoint: `GET /metrics` on [`BrokerOptions::metrics_listener`], in the
//! Prometheus text format (0.0.4), from the core's [`BrokerStats`] snapshot and the runtime's
//! own measures (store commits and their times, the router's mail batch sizes).
//!
//! It runs on threads of its own whatever the runtime (one accept thread, one short-lived
//! thread per scrape): a scrape never runs on a task that serves MQTT, and what it asks the
//! router for is one snapshot through the broker's control channel, as `status` does.
//!
//! Every request is hostile until parsed: the request head is read within
//! [`REQUEST_TIMEOUT`] (408 otherwise) and [`MAX_HEAD`] bytes (431 beyond), parsed with
//! `httparse` (400 for anything else than HTTP/1.x), and only `GET` / `HEAD` of `/metrics` is
//! served (405, 404); every answer closes the connection. At most [`MAX_SCRAPERS`] scrapes run
//! at once; one more gets 503 at once.
//!
//! [`BrokerOptions::metrics_listener`]: super::BrokerOptions::metrics_listener

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{
    proto, Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::handle::BrokerHandle;
use super::options::BrokerOptions;
use super::transport::ListenerStats;
use super::writer::{StoreWriter, WriterStats};
use crate::broker::{BrokerStats, DropReason};
use crate::QoS;

/// The longest a scraper may take to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head read (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// Scrapes served at once; one more is answered 503.
pub const MAX_SCRAPERS: usize = 4;
/// The longest a scraper may take to read the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long what a refused client still sends is read and dropped before the close.
const LINGER: Duration = Duration::from_secs(2);
/// How much of it at most.
const LINGER_BYTES: usize = 2 << 20;

/// Mail batch sizes are counted in buckets of at most 1, 2, 4, ..., 256 mails, and more.
pub(crate) const BATCH_BUCKETS: usize = 10;

/// The sizes of the mail batches the router sent to connections: counted by the router in
/// plain integers (one increment per batch), copied out when a scrape asks for the snapshot.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BatchSizes {
    /// Batches per bucket (see [`BATCH_BUCKETS`]; not cumulative).
    pub(crate) buckets: [u64; BATCH_BUCKETS],
    /// Mails in every batch.
    pub(crate) mails: u64,
}

impl BatchSizes {
    /// Counts a batch of `n` mails.
    #[inline]
    pub(crate) fn count(&mut self, n: usize) {
        let bucket = (usize::BITS - n.saturating_sub(1).leading_zeros()) as usize;
        self.buckets[bucket.min(BATCH_BUCKETS - 1)] += 1;
        self.mails += n as u64;
    }
}

/// What the runtime measures itself, beside the core's counters (clones share the values).
#[derive(Debug, Clone, Default)]
pub(crate) struct RuntimeMetrics {
    /// The store writer's counts and commit times, with persistence.
    pub(crate) store: Option<Arc<WriterStats>>,
    /// The router's batch sizes, as of the last snapshot it answered.
    pub(crate) batches: Arc<Mutex<BatchSizes>>,
    /// The cluster link's counters, once it started (see `runtimes/cluster/`).
    #[cfg(feature = "cluster")]
    pub(crate) cluster: Arc<std::sync::OnceLock<crate::runtimes::cluster::ClusterMonitor>>,
}

/// The batch sizes as a Prometheus histogram family.
fn batch_family(b: &BatchSizes) -> proto::MetricFamily {
    let mut buckets = Vec::new();
    let mut cumulative = 0;
    for (i, n) in b.buckets.iter().enumerate().take(BATCH_BUCKETS - 1) {
        cumulative += n;
        let mut bucket = proto::Bucket::default();
        bucket.set_upper_bound(f64::from(1u32 << i));
        bucket.set_cumulative_count(cumulative);
        buckets.push(bucket);
    }
    let mut h = proto::Histogram::default();
    h.set_bucket(buckets);
    h.set_sample_count(b.buckets.iter().sum());
    h.set_sample_sum(b.mails as f64);
    let mut m = proto::Metric::default();
    m.set_histogram(h);
    let mut f = proto::MetricFamily::default();
    f.set_name("tinymqtt_router_mail_batch_size".into());
    f.set_help("Mails per batch the router sent to a connection.".into());
    f.set_field_type(proto::MetricType::HISTOGRAM);
    f.set_metric(vec![m]);
    f
}

/// A metric family of the snapshot: registered, then filled.
fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid name");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid name");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn int(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The Prometheus text for `stats`, the open connections of each listener and what the
/// runtime measured.
pub(crate) fn encode(
    stats: &BrokerStats,
    listeners: &[(SocketAddr, usize)],
    rt: &RuntimeMetrics,
) -> String {
    let s = stats;
    let r = Registry::new();
    let g = |name: &str, help: &str, v: usize| {
        let m = IntGauge::new(name, help).expect("a valid name");
        m.set(int(v));
        r.register(Box::new(m)).expect("registered once");
    };
    let c = |name: &str, help: &str, v: u64| {
        let m = IntCounter::new(name, help).expect("a valid name");
        m.inc_by(v);
        r.register(Box::new(m)).expect("registered once");
    };
    g(
        "tinymqtt_connections",
        "Connections open now, handshakes included.",
        s.connections,
    );
    g(
        "tinymqtt_connections_maximum",
        "The most connections open at once.",
        s.connections_maximum,
    );
    c(
        "tinymqtt_connections_accepted_total",
        "Transports accepted.",
        s.connections_total,
    );
    c(
        "tinymqtt_connects_total",
        "CONNECT packets that got a verdict.",
        s.connects,
    );
    let refused = counter(
        &r,
        "tinymqtt_connections_refused_total",
        "CONNECTs refused, by CONNACK reason code.",
        &["code", "reason"],
    );
    for (code, n) in s.refused.iter() {
        let hex = format!("0x{:02x}", code.as_u8());
        refused
            .with_label_values(&[hex.as_str(), code.description()])
            .inc_by(n);
    }
    c(
        "tinymqtt_auth_failures_total",
        "CONNECTs refused for their credentials or authorization.",
        s.refused.auth_failures(),
    );
    let sessions = gauge(&r, "tinymqtt_sessions", "Sessions, by state.", &["state"]);
    sessions
        .with_label_values(&["online"])
        .set(int(s.sessions_online));
    sessions
        .with_label_values(&["offline"])
        .set(int(s.sessions_offline()));
    c(
        "tinymqtt_sessions_expired_total",
        "Sessions ended by their expiry.",
        s.sessions_expired,
    );
    g("tinymqtt_subscriptions", "Subscriptions.", s.subscriptions);
    g(
        "tinymqtt_shared_groups",
        "Shared subscription groups.",
        s.shared_groups,
    );
    g(
        "tinymqtt_retained_messages",
        "Retained messages.",
        s.retained,
    );
    g(
        "tinymqtt_retained_bytes",
        "Bytes of retained messages.",
        s.retained_bytes,
    );
    let by_qos = [
        (
            "tinymqtt_messages_received_total",
            "PUBLISH packets received from clients, by QoS.",
            s.publish_received,
        ),
        (
            "tinymqtt_messages_sent_total",
            "Messages sent to subscribers, by the QoS they went at.",
            s.publish_sent,
        ),
        (
            "tinymqtt_payload_received_bytes_total",
            "Payload bytes of the PUBLISH packets received, by QoS.",
            s.publish_received_bytes,
        ),
        (
            "tinymqtt_payload_sent_bytes_total",
            "Payload bytes of the messages sent, by QoS.",
            s.publish_sent_bytes,
        ),
    ];
    for (name, help, counts) in by_qos {
        let m = counter(&r, name, help, &["qos"]);
        for (qos, label) in [
            (QoS::AtMostOnce, "0"),
            (QoS::AtLeastOnce, "1"),
            (QoS::ExactlyOnce, "2"),
        ] {
            m.with_label_values(&[label]).inc_by(counts.get(qos));
        }
    }
    c(
        "tinymqtt_received_bytes_total",
        "Bytes read from transports.",
        s.bytes_received,
    );
    c(
        "tinymqtt_sent_bytes_total",
        "Bytes written to transports.",
        s.bytes_sent,
    );
    let dropped = counter(
        &r,
        "tinymqtt_messages_dropped_total",
        "Messages dropped, by reason.",
        &["reason"],
    );
    for reason in DropReason::ALL {
        dropped
            .with_label_values(&[reason.as_str()])
            .inc_by(s.dropped_by.get(reason));
    }
    g(
        "tinymqtt_messages_inflight",
        "QoS 1/2 messages sent and not acknowledged yet.",
        s.inflight,
    );
    g(
        "tinymqtt_messages_queued",
        "Messages waiting in session queues.",
        s.queued,
    );
    g(
        "tinymqtt_queued_bytes",
        "Bytes of the messages waiting in session queues.",
        s.queued_bytes,
    );
    g(
        "tinymqtt_memory_used_bytes",
        "Bytes of the memory budget in use.",
        s.memory_used,
    );
    c(
        "tinymqtt_refused_over_limits_total",
        "PUBLISHes, subscriptions and connections refused at the memory or session limits.",
        s.refused_over_limits,
    );
    c(
        "tinymqtt_await_rel_expired_total",
        "Inbound QoS 2 packet identifiers forgotten because their PUBREL did not come in time.",
        s.await_rel_expired,
    );
    let per_listener = gauge(
        &r,
        "tinymqtt_listener_connections",
        "Connections open now, by listener.",
        &["listener"],
    );
    for (addr, n) in listeners {
        per_listener
            .with_label_values(&[addr.to_string().as_str()])
            .set(int(*n));
    }
    if let Some(store) = &rt.store {
        c(
            "tinymqtt_store_commits_total",
            "Store commits (each writes one or more router batches).",
            store.commits.load(Ordering::Relaxed),
        );
        r.register(Box::new(store.commit_seconds.clone()))
            .expect("registered once");
    }
    #[cfg(feature = "cluster")]
    if let Some(m) = rt.cluster.get() {
        let k = m.stats();
        c(
            "tinymqtt_cluster_messages_sent_total",
            "Messages handed to NATS (QoS 1/2: stored by JetStream).",
            k.sent,
        );
        c(
            "tinymqtt_cluster_messages_received_total",
            "Messages from the other nodes handed to the router.",
            k.received,
        );
        c(
            "tinymqtt_cluster_messages_dropped_total",
            "QoS 0 messages dropped because the link's queue was full.",
            k.dropped,
        );
        c(
            "tinymqtt_cluster_messages_malformed_total",
            "Messages from NATS dropped as malformed.",
            k.malformed,
        );
        c(
            "tinymqtt_cluster_connects_total",
            "Times the link (re)connected to NATS.",
            k.connects,
        );
        g(
            "tinymqtt_cluster_queued",
            "Messages and interest changes waiting for the link.",
            k.queued as usize,
        );
    }
    let mut families = r.gather();
    let batches = *rt.batches.lock().unwrap_or_else(|e| e.into_inner());
    families.push(batch_family(&batches));
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut out = Vec::new();
    // Encoding into memory cannot fail for these families.
    let _ = TextEncoder::new().encode(&families, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Where a scrape reads the broker's snapshot (`None` once the broker stopped).
pub(crate) type StatsSource = Arc<dyn Fn() -> Option<BrokerStats> + Send + Sync>;

/// The endpoint of a broker being bound, if its options name one, and what its runtime will
/// measure for it (the store's commits; the router's batch sizes once it runs).
pub(crate) fn start(
    options: &BrokerOptions,
    handle: &BrokerHandle,
    listeners: &ListenerStats,
    store: Option<&StoreWriter>,
) -> io::Result<(Option<MetricsServer>, RuntimeMetrics)> {
    let rt = RuntimeMetrics {
        store: store.map(|s| s.stats.clone()),
        batches: Arc::default(),
        #[cfg(feature = "cluster")]
        cluster: Arc::default(),
    };
    let Some(addr) = options.metrics_listener else {
        return Ok((None, rt));
    };
    let handle = handle.clone();
    let stats: StatsSource = Arc::new(move || handle.stats_blocking().ok());
    let server = MetricsServer::start(addr, stats, listeners.clone(), rt.clone())
        .map_err(|e| io::Error::new(e.kind(), format!("metrics_listener {addr}: {e}")))?;
    Ok((Some(server), rt))
}

/// The running endpoint; dropping it stops the accept thread (scrapes under way finish).
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl MetricsServer {
    /// Binds `addr` and serves `/metrics` from `stats`, `listeners` and `rt` on threads of its
    /// own.
    pub(crate) fn start(
        addr: SocketAddr,
        stats: StatsSource,
        listeners: ListenerStats,
        rt: RuntimeMetrics,
    ) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let scrapers = Arc::new(AtomicUsize::new(0));
        std::thread::Builder::new()
            .name("tinymqtt-metrics".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if flag.load(Ordering::Acquire) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    if scrapers.fetch_add(1, Ordering::AcqRel) >= MAX_SCRAPERS {
                        scrapers.fetch_sub(1, Ordering::AcqRel);
                        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                        respond(
                            &stream,
                            503,
                            "Service Unavailable",
                            "too many scrapes\n",
                            true,
                        );
                        continue;
                    }
                    let (stats, listeners, rt) = (stats.clone(), listeners.clone(), rt.clone());
                    let count = scrapers.clone();
                    let spawned = std::thread::Builder::new()
                        .name("tinymqtt-scrape".into())
                        .spawn(move || {
                            serve(stream, &stats, &listeners, &rt);
                            count.fetch_sub(1, Ordering::AcqRel);
                        });
                    if spawned.is_err() {
                        scrapers.fetch_sub(1, Ordering::AcqRel);
                    }
                }
            })?;
        Ok(MetricsServer { addr, stop })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the accept thread, which sees the flag and ends.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    /// `GET` (`true`) or `HEAD` (`false`) of `/metrics`.
    Metrics(bool),
    Refused(u16, &'static str),
}

/// Reads and answers one request, then closes.
fn serve(
    mut stream: TcpStream,
    stats: &StatsSource,
    listeners: &ListenerStats,
    rt: &RuntimeMetrics,
) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let asked = read_head(&mut stream);
    match asked {
        Asked::Metrics(body) => match stats() {
            Some(s) => {
                let text = encode(&s, &listeners.connections(), rt);
                respond(&stream, 200, "OK", &text, body);
            }
            None => respond(
                &stream,
                503,
                "Service Unavailable",
                "broker stopped\n",
                body,
            ),
        },
        Asked::Refused(code, reason) => answer(&stream, code, reason, "", true),
    }
}

/// Reads a request head within [`REQUEST_TIMEOUT`] and [`MAX_HEAD`] bytes and says what it
/// asks for.
fn read_head(stream: &mut TcpStream) -> Asked {
    let deadline = super::now() + REQUEST_TIMEOUT;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    loop {
        let left = deadline.saturating_duration_since(super::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Asked::Refused(408, "Request Timeout");
        }
        match stream.read(&mut buf[len..]) {
            Ok(0) => return Asked::Refused(400, "Bad Request"),
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Asked::Refused(408, "Request Timeout")
            }
            Err(_) => return Asked::Refused(400, "Bad Request"),
        }
        match parse(&buf[..len]) {
            Some(asked) => return asked,
            None if len == MAX_HEAD => {
                return Asked::Refused(431, "Request Header Fields Too Large")
            }
            None => {}
        }
    }
}

/// What a complete head asks for; `None` while it is incomplete.
fn parse(head: &[u8]) -> Option<Asked> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Partial) => None,
        Err(httparse::Error::TooManyHeaders) => {
            Some(Asked::Refused(431, "Request Header Fields Too Large"))
        }
        Err(_) => Some(Asked::Refused(400, "Bad Request")),
        Ok(httparse::Status::Complete(_)) => {
            let path = req.path.unwrap_or("");
            let path = path.split('?').next().unwrap_or(path);
            Some(match (req.method, path) {
                (Some("GET"), "/metrics") => Asked::Metrics(true),
                (Some("HEAD"), "/metrics") => Asked::Metrics(false),
                (_, "/metrics") => Asked::Refused(405, "Method Not Allowed"),
                _ => Asked::Refused(404, "Not Found"),
            })
        }
    }
}

/// Writes a whole answer and closes: the write side first, then what the client may still be
/// sending is read and dropped for [`LINGER`] at most (at most [`LINGER_BYTES`]), so the
/// answer is not lost to a reset (a close with unread input resets the connection).
fn answer(stream: &TcpStream, code: u16, reason: &str, body: &str, with_body: bool) {
    respond(stream, code, reason, body, with_body);
    let deadline = super::now() + LINGER;
    let mut drained = 0;
    let mut buf = [0u8; 8192];
    let mut s = stream;
    while drained < LINGER_BYTES {
        let left = deadline.saturating_duration_since(super::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// Writes a whole answer and shuts the write side.
fn respond(mut stream: &TcpStream, code: u16, reason: &str, body: &str, with_body: bool) {
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if code == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if with_body {
        out.push_str(body);
    }
    let _ = stream.write_all(out.as_bytes());
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests;
