//! QoS 1/2 messages through JetStream: the stream, the publisher's side (a message is
//! acknowledged to the router only once JetStream stored it) and each node's durable
//! consumer (what this node's subscriptions need, read from where it left off, even
//! across a restart).
//!
//! **The stream** is named after the cluster's prefix and holds the subjects
//! `{prefix}.d.>`: a QoS 1/2 message travels under `{prefix}.d.{subject}`, a QoS 0 one
//! under `{prefix}.{subject}` (core NATS only, never stored). File storage, one replica
//! (a NATS cluster's operator may raise it with `nats stream edit`), [`MAX_AGE`] and
//! [`MAX_BYTES`] at most (the oldest messages go first), and a duplicate window of
//! [`DUPLICATE_WINDOW`]: a message is published with `Nats-Msg-Id`
//! `{node_id}-{run}-{ticket}` ("run" is random per start of the node), so that a publish
//! the link retries (its acknowledgement was lost) is stored once.
//!
//! **Publishing.** Each QoS 1/2 message published on this node is sent to the stream and
//! retried every [`RETRY`] until JetStream acknowledges it; the router hears of the
//! acknowledgements in the order the messages were sent (`Router::handle_remote_ack`),
//! and only then lets the publisher's PUBACK / PUBREC go. While NATS is unreachable the
//! publishers wait, as they do for a full queue; their receive windows bound what waits.
//!
//! **Consuming.** Each node reads the stream through a durable pull consumer named after
//! its `node_id`, filtered on the subjects of its plain subscriptions (NATS 2.10's
//! several filter subjects; the whole stream when two of them overlap, which NATS does
//! not allow; the router drops what no session wants). It starts with the messages
//! published after its creation and resumes where it left off when the node restarts.
//! A message is acknowledged to JetStream only once the router routed it and, with
//! persistence, once the store holds what that changed; one not acknowledged within
//! [`ACK_WAIT`] (the node died, the acknowledgement was lost or late) is delivered
//! again; a live node routes each stream sequence once (see `once.rs`). A node's own
//! messages are acknowledged and skipped (it routed them itself).

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_nats::HeaderMap;
use futures_util::StreamExt;
use tokio::sync::watch;

use super::channel::{AckId, FromLink};
use super::envelope::{self, ORIGIN};
use super::inbound::Inbound;
use super::once::{Handed, Verdict};
use super::Counters;
use crate::broker::cluster::RemoteTicket;
use crate::store::RemotePosition;

/// How long the stream keeps a message (a node down longer misses what is older).
pub(crate) const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// The most bytes the stream keeps (the oldest messages go first).
pub(crate) const MAX_BYTES: i64 = 1 << 30;
/// How long JetStream remembers a message id, to store a retried publish once.
pub(crate) const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long a delivered message waits for the node's acknowledgement before JetStream
/// delivers it again. Short, because a node killed with pull requests outstanding leaves
/// them behind: JetStream delivers to them what is published until it notices, and those
/// messages reach the restarted node after this wait.
pub(crate) const ACK_WAIT: Duration = Duration::from_secs(5);
/// How many messages the consumer delivers before the node acknowledges them.
const MAX_ACK_PENDING: i64 = 1024;
/// The pause before a JetStream request that failed (NATS unreachable) is tried again.
pub(crate) const RETRY: Duration = Duration::from_millis(500);

/// The stream's subject space under `prefix`.
pub(crate) fn stream_subjects(prefix: &str) -> String {
    format!("{prefix}.d.>")
}

/// Creates (or finds) the cluster's stream, retrying until NATS answers.
pub(crate) async fn ensure_stream(js: &jetstream::Context, prefix: &str) -> stream::Stream {
    loop {
        let config = stream::Config {
            name: prefix.to_owned(),
            subjects: vec![stream_subjects(prefix)],
            max_age: MAX_AGE,
            max_bytes: MAX_BYTES,
            discard: stream::DiscardPolicy::Old,
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        };
        if let Ok(s) = js.get_or_create_stream(config).await {
            return s;
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Waits for JetStream's acknowledgement of one QoS 1/2 message sent as `first` (the link
/// sends each at once, in order, so that the stream keeps the order they were published
/// in), publishing it again until JetStream acknowledges it; returns its ticket.
pub(crate) async fn publish(
    js: jetstream::Context,
    first: Option<jetstream::context::PublishAckFuture>,
    (subject, headers, body): (String, HeaderMap, bytes::Bytes),
    ticket: Option<RemoteTicket>,
) -> Option<RemoteTicket> {
    if let Some(ack) = first {
        if ack.await.is_ok() {
            return ticket;
        }
    }
    loop {
        tokio::time::sleep(RETRY).await;
        let sent = js
            .publish_with_headers(subject.clone(), headers.clone(), body.clone())
            .await;
        if let Ok(ack) = sent {
            if ack.await.is_ok() {
                return ticket;
            }
        }
    }
}

/// The headers of a QoS 1/2 message: its origin and its id for the duplicate window
/// (`seq` is the router's ticket, or a number of the link's own for a message without
/// one, told apart by `kind`).
pub(crate) fn headers(node_id: &str, run: u64, kind: char, seq: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(ORIGIN, node_id);
    let id = format!("{node_id}-{run:016x}-{kind}{seq}");
    h.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
    h
}

/// The filter subjects for the consumer: `subjects` if no two overlap, else the whole
/// stream.
pub(crate) fn consumer_filters(prefix: &str, subjects: &[String]) -> Vec<String> {
    let overlap = subjects
        .iter()
        .enumerate()
        .any(|(i, a)| subjects[i + 1..].iter().any(|b| collide(a, b)));
    if overlap {
        vec![stream_subjects(prefix)]
    } else {
        subjects.to_vec()
    }
}

/// Whether some subject matches both subject filters.
fn collide(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.split('.'), b.split('.'));
    loop {
        match (a.next(), b.next()) {
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(x), Some(y)) if x == y || x == "*" || y == "*" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Reads the node's durable consumer into the router task, on the filter subjects
/// `filters` holds (none: nothing is read), until the router task is gone.
pub(crate) async fn consume(
    stream: stream::Stream,
    inbound: Inbound,
    mut filters: watch::Receiver<Vec<String>>,
    acks: async_channel::Receiver<AckId>,
) {
    let mut delivered = Delivered::default();
    'config: loop {
        let subjects = filters.borrow_and_update().clone();
        if subjects.is_empty() {
            tokio::select! {
                changed = filters.changed() => if changed.is_err() { return },
                a = acks.recv() => match a {
                    Ok(id) => delivered.ack(id).await,
                    Err(_) => return,
                },
            }
            continue;
        }
        let config = consumer::pull::Config {
            durable_name: Some(inbound.node_id.to_string()),
            filter_subjects: subjects,
            deliver_policy: consumer::DeliverPolicy::New,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            max_ack_pending: MAX_ACK_PENDING,
            ..Default::default()
        };
        let messages = match stream.create_consumer(config).await {
            Ok(c) => c.messages().await.ok(),
            Err(_) => None,
        };
        let Some(mut messages) = messages else {
            tokio::time::sleep(RETRY).await;
            continue;
        };
        loop {
            tokio::select! {
                changed = filters.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue 'config;
                }
                a = acks.recv() => match a {
                    Ok(id) => delivered.ack(id).await,
                    Err(_) => return,
                },
                m = messages.next() => match m {
                    Some(Ok(m)) => {
                        let Some(p) = take(&inbound, &m) else {
                            let _ = m.ack().await;
                            continue;
                        };
                        let Some((id, seq)) = delivered.take(m).await else {
                            continue;
                        };
                        if inbound.to_router.send(FromLink::Durable(p, id, seq)).await.is_err() {
                            return;
                        }
                    }
                    // The pull stream failed (NATS went away): make it again.
                    Some(Err(_)) | None => {
                        tokio::time::sleep(RETRY).await;
                        continue 'config;
                    }
                },
            }
        }
    }
}

/// The messages handed to the router whose acknowledgement waits for it, and the stream
/// sequences handed over (each is routed once: see `once.rs`).
#[derive(Default)]
struct Delivered {
    /// By id: the position (if JetStream gave one) and the newest delivery.
    waiting: HashMap<AckId, (Option<RemotePosition>, jetstream::Message)>,
    handed: Handed,
    next_id: AckId,
}

impl Delivered {
    /// The id and position to hand message `m` to the router with; `None` for a delivery
    /// again of a sequence handed over already (acknowledged here, or by the pending
    /// acknowledgement, which now answers this delivery).
    async fn take(&mut self, m: jetstream::Message) -> Option<(AckId, Option<RemotePosition>)> {
        let seq = position(&m);
        match seq.map(|s| self.handed.check(s)) {
            Some(Verdict::Pending(id)) => {
                if let Some(w) = self.waiting.get_mut(&id) {
                    // Any delivery's reply acknowledges the sequence; the newest is the
                    // one JetStream waits on now.
                    w.1 = m;
                }
                None
            }
            Some(Verdict::Acked) => {
                // Lost with the connection: JetStream delivers it again after ACK_WAIT.
                let _ = m.ack().await;
                None
            }
            Some(Verdict::Route) | None => {
                self.next_id += 1;
                let id = self.next_id;
                if let Some(s) = seq {
                    self.handed.handed(s, id);
                }
                self.waiting.insert(id, (seq, m));
                Some((id, seq))
            }
        }
    }

    /// Acknowledges a delivered message to JetStream (the router took it).
    async fn ack(&mut self, id: AckId) {
        if let Some((seq, m)) = self.waiting.remove(&id) {
            if let Some(s) = seq {
                self.handed.acked(s);
            }
            // Lost with the connection: JetStream delivers it again after ACK_WAIT, and
            // `take` acknowledges it then.
            let _ = m.ack().await;
        }
    }
}

/// Where a delivered message sits in the stream: its sequence, stamped with the time the
/// stream stored it (the same for every delivery of it; a stream made anew reuses
/// sequences, not times).
fn position(m: &jetstream::Message) -> Option<RemotePosition> {
    let info = m.info().ok()?;
    Some(RemotePosition {
        sequence: info.stream_sequence,
        stamp: info.published.unix_timestamp_nanos() as u64,
    })
}

/// The message a consumer delivered, checked; `None` for this node's own and for one
/// that is malformed (counted).
fn take(inbound: &Inbound, m: &jetstream::Message) -> Option<crate::codec::Publish> {
    let own = m
        .headers
        .as_ref()
        .and_then(|h| h.get(ORIGIN))
        .is_some_and(|o| o.as_str() == &*inbound.node_id);
    if own {
        return None;
    }
    match envelope::decode(
        &inbound.prefix,
        m.subject.as_str(),
        &m.payload,
        inbound.max_packet_size,
    ) {
        Ok(p) => {
            Counters::bump(&inbound.counters.received);
            Some(p)
        }
        Err(_) => {
            Counters::bump(&inbound.counters.malformed);
            None
        }
    }
}

/// A random number for this run's message ids.
pub(crate) fn run_id() -> u64 {
    let mut b = [0; 8];
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::UNIX_EPOCH
            .elapsed()
            .unwrap_or_default();
        return t.as_nanos() as u64;
    }
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_filters_read_the_whole_stream() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let apart = s(&["p.d.t.a.>", "p.d.t.a", "p.d.t.b.*"]);
        assert_eq!(consumer_filters("p", &apart), apart);
        for pair in [
            ["p.d.t.a.>", "p.d.t.a.b"],
            ["p.d.t.*.c", "p.d.t.a.*"],
            ["p.d.t.>", "p.d.t.x.y.z"],
            ["p.d.t.a", "p.d.t.a"],
        ] {
            assert_eq!(consumer_filters("p", &s(&pair)), ["p.d.>"], "{pair:?}");
        }
        assert!(!collide("p.d.t.a", "p.d.t.a.b"));
        assert!(!collide("p.d.t.a.>", "p.d.t.a"));
        assert!(!collide("p.d.t.*", "p.d.s.x"));
    }
}
