//! The cluster's shared state in JetStream key-value buckets: retained messages, and who owns
//! each session. This task runs beside the link task, on a NATS connection of its own, and
//! talks to the router task through the link's channel ([`FromLink::State`]) and its own
//! ([`ToState`]).
//!
//! - **Retained messages** (`{prefix}_retained`): each retained message published on this node
//!   is put under its topic's key ([`keys::retained_key`]) as a [`RetainedRecord`] (the MQTT 5
//!   PUBLISH and when it was stored); a clear deletes the key. Every node watches the bucket
//!   from its start (the last value of each key first, so a node started later gets them all)
//!   into its local retained store, without routing
//!   ([`Router::handle_remote_retained`](crate::broker::Router::handle_remote_retained)).
//! - **Sessions** (`{prefix}_sessions`): a session's key ([`keys::session_key`]) holds its
//!   owner node and expiry. A CONNECT waits in the router task while this node claims the
//!   session: a compare-and-set of the owner on the entry's revision (a few attempts); if
//!   another node owned it, this node asks it, on its request subject
//!   `{prefix}.node.{node}.export`, for the session's image, and the router imports it before
//!   the CONNECT goes on. The old node takes the session away from its connection (0x8E).
//!
//! Everything read from NATS is checked: a value or request that does not decode is counted
//! as malformed and ignored, never trusted.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation, Store};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::oneshot;

use super::channel::{Claimed, FromLink, StateEvent};
use super::keys;
use super::{ClusterConfig, Counters};
use crate::broker::cluster::SessionImage;
use crate::broker::persist::RetainedRecord;
use crate::broker::ConnId;
use crate::codec::Publish;
use crate::types::{ByteStr, ReasonCode};

/// How long a claim may take in all (the CONNECT waits that long at most, then is refused
/// with 0x88 Server unavailable).
pub(crate) const CLAIM_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a node waits for another node's session image (a node that does not answer in
/// time is taken for gone: the session starts afresh here).
pub(crate) const EXPORT_WAIT: Duration = Duration::from_secs(3);

/// Compare-and-set attempts of one claim before it gives up (0x89 Server busy): each failed
/// attempt means another node claimed the session in between.
const CLAIM_ATTEMPTS: usize = 5;

/// The longest owner value read (a node id and an expiry).
const MAX_OWNER_VALUE: usize = 512;

/// The header numbering the pieces of a session image (`{index}/{count}`): an image larger
/// than the NATS server's largest message travels in pieces, in order.
const PIECE: &str = "Tinymqtt-Piece";

/// What a piece of an image leaves of the server's largest message for headers and protocol.
const PIECE_ROOM: usize = 4096;

/// What the router task hands this task.
#[derive(Debug)]
pub(crate) enum ToState {
    /// A retained message published on this node (an empty payload clears its topic).
    Retained(Arc<Publish>),
    /// Claim the session of `client_id` for this node; a CONNECT waits on `conn`.
    Claim {
        conn: ConnId,
        client_id: ByteStr,
        expiry: u32,
    },
    /// The session of `client_id` ended here: its entry goes, if this node still owns it.
    Release(ByteStr),
}

/// The router task's handle on this task: claims and releases go one way, retained messages
/// another (a slow bucket write never holds a claim back).
#[derive(Debug, Clone)]
pub(crate) struct StateHandle {
    pub(crate) to_state: async_channel::Sender<ToState>,
    /// Only [`ToState::Retained`].
    pub(crate) to_retained: async_channel::Sender<ToState>,
}

/// What the task's pieces share.
struct Ctx {
    client: async_nats::Client,
    retained: Store,
    sessions: Store,
    prefix: Arc<str>,
    node_id: Arc<str>,
    max_packet_size: u32,
    /// The largest image this node takes (twice its queue's byte limit, and room for the
    /// rest): an image claiming more is refused as hostile.
    max_image: usize,
    to_router: async_channel::Sender<FromLink>,
    counters: Arc<Counters>,
}

/// Starts the task on the current tokio runtime; `cap` bounds its channel.
pub(crate) fn start(
    handle: &tokio::runtime::Handle,
    config: &ClusterConfig,
    broker: &crate::broker::BrokerConfig,
    to_router: async_channel::Sender<FromLink>,
    counters: Arc<Counters>,
) -> StateHandle {
    let (to_state, rx) = async_channel::bounded(config.max_pending.max(1));
    let (to_retained, retained_rx) = async_channel::bounded(config.max_pending.max(1));
    let limits = (
        broker.max_packet_size,
        broker
            .max_queued_bytes
            .saturating_mul(2)
            .saturating_add(16 << 20),
    );
    handle.spawn(run(
        config.clone(),
        limits,
        (rx, retained_rx),
        to_router,
        counters,
    ));
    StateHandle {
        to_state,
        to_retained,
    }
}

/// The name of the cluster's bucket `what`.
fn bucket(prefix: &str, what: &str) -> String {
    format!("{}_{what}", keys::token(prefix, '_'))
}

/// The subject node `node` answers export requests on.
fn export_subject(prefix: &str, node: &str) -> String {
    format!("{prefix}.node.{}.export", keys::token(node, '='))
}

/// Opens (or creates) the bucket `name`, keeping one value per key.
async fn open(js: &async_nats::jetstream::Context, name: &str) -> Option<Store> {
    if let Ok(kv) = js.get_key_value(name).await {
        return Some(kv);
    }
    let config = kv::Config {
        bucket: name.to_owned(),
        history: 1,
        ..kv::Config::default()
    };
    // Another node may be creating it at the same time: then it opens.
    match js.create_key_value(config).await {
        Ok(kv) => Some(kv),
        Err(_) => js.get_key_value(name).await.ok(),
    }
}

/// Opens both buckets, trying again every second until NATS and JetStream answer.
async fn open_both(client: &async_nats::Client, prefix: &str) -> (Store, Store) {
    let js = async_nats::jetstream::new(client.clone());
    let (retained, sessions) = (bucket(prefix, "retained"), bucket(prefix, "sessions"));
    loop {
        if let (Some(r), Some(s)) = (open(&js, &retained).await, open(&js, &sessions).await) {
            return (r, s);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Runs until the router task drops its end of the channel.
async fn run(
    config: ClusterConfig,
    (max_packet_size, max_image): (u32, usize),
    (from_router, retained_rx): (
        async_channel::Receiver<ToState>,
        async_channel::Receiver<ToState>,
    ),
    to_router: async_channel::Sender<FromLink>,
    counters: Arc<Counters>,
) {
    let addrs: Vec<async_nats::ServerAddr> =
        config.nats.iter().filter_map(|u| u.parse().ok()).collect();
    let options = async_nats::ConnectOptions::new()
        .name(format!("tinymqtt {} state", config.node_id))
        .retry_on_initial_connect();
    // Until the buckets are open, every claim is refused (no session is owned twice).
    let (stop, stopped) = oneshot::channel();
    let refuser = tokio::spawn(refuse_until(
        stopped,
        from_router.clone(),
        to_router.clone(),
    ));
    let Ok(client) = options.connect(addrs).await else {
        // Only a malformed option fails here (settings checked the URLs).
        return;
    };
    let (retained, sessions) = open_both(&client, &config.prefix).await;
    let _ = stop.send(());
    let _ = refuser.await;
    let ctx = Arc::new(Ctx {
        client,
        retained,
        sessions,
        prefix: config.prefix.as_str().into(),
        node_id: config.node_id.as_str().into(),
        max_packet_size,
        max_image,
        to_router,
        counters,
    });
    let watcher = tokio::spawn(watch_retained(ctx.clone()));
    let exports = tokio::spawn(answer_exports(ctx.clone()));
    let writer = tokio::spawn(write_retained(ctx.clone(), retained_rx));
    while let Ok(item) = from_router.recv().await {
        match item {
            ToState::Retained(p) => {
                put_retained(&ctx, &p).await;
            }
            ToState::Release(client_id) => {
                let ctx = ctx.clone();
                tokio::spawn(async move { release(&ctx, &client_id).await });
            }
            ToState::Claim {
                conn,
                client_id,
                expiry,
            } => {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let outcome =
                        tokio::time::timeout(CLAIM_TIMEOUT, claim(&ctx, &client_id, expiry))
                            .await
                            .unwrap_or(Claimed::Refused(ReasonCode::ServerUnavailable));
                    let event = StateEvent::Claimed { conn, outcome };
                    let _ = ctx.to_router.send(FromLink::State(event)).await;
                });
            }
        }
    }
    watcher.abort();
    exports.abort();
    writer.abort();
}

/// Until `stop`: claims wait [`CLAIM_TIMEOUT`] for the buckets to open (a node starting beside
/// its NATS server), then every claim is refused with 0x88, so that no session is owned twice
/// while the buckets cannot be read (a release is left for later claims to overwrite). Each
/// item taken is answered whole: the receive is the only point where it stops.
async fn refuse_until(
    mut stop: oneshot::Receiver<()>,
    from_router: async_channel::Receiver<ToState>,
    to_router: async_channel::Sender<FromLink>,
) {
    tokio::select! {
        _ = &mut stop => return,
        () = tokio::time::sleep(CLAIM_TIMEOUT) => {}
    }
    loop {
        let item = tokio::select! {
            _ = &mut stop => return,
            item = from_router.recv() => item,
        };
        let Ok(item) = item else {
            return;
        };
        if let ToState::Claim { conn, .. } = item {
            let outcome = Claimed::Refused(ReasonCode::ServerUnavailable);
            let event = StateEvent::Claimed { conn, outcome };
            if to_router.send(FromLink::State(event)).await.is_err() {
                return;
            }
        }
    }
}

/// Writes the retained messages published here into the bucket, in order (the bucket keeps
/// the last one of each topic), each tried a few times while NATS is away.
async fn write_retained(ctx: Arc<Ctx>, from_router: async_channel::Receiver<ToState>) {
    while let Ok(item) = from_router.recv().await {
        if let ToState::Retained(p) = item {
            for wait in [0, 1, 2, 4, 8] {
                tokio::time::sleep(Duration::from_secs(wait)).await;
                if put_retained(&ctx, &p).await {
                    break;
                }
            }
        }
    }
}

/// Seconds since the Unix epoch (records carry wall-clock times).
#[allow(clippy::disallowed_methods)]
fn wall() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Puts (or clears) the retained message `p` of this node's in the bucket; whether the
/// bucket took it (a message it can never take counts as taken).
async fn put_retained(ctx: &Ctx, p: &Publish) -> bool {
    let key = keys::retained_key(&p.topic);
    let hashed = key.starts_with("h.");
    if p.payload.is_empty() && !hashed {
        return ctx.retained.delete(&key).await.is_ok();
    }
    // A hashed key names no topic: its clear is a record with an empty payload.
    let mut publish = p.clone();
    publish.retain = true;
    publish.packet_id = None;
    let record = RetainedRecord {
        publish,
        stored_at: wall(),
    };
    let Ok(bytes) = record.encode() else {
        return true;
    };
    if bytes.len() > ctx.client.server_info().max_payload {
        // Larger than the server's largest message: it stays on this node.
        return true;
    }
    ctx.retained.put(&key, bytes.into()).await.is_ok()
}

/// The retained message a bucket entry holds (an empty payload: cleared), checked.
fn read_retained(ctx: &Ctx, entry: &kv::Entry) -> Option<Publish> {
    match entry.operation {
        Operation::Delete | Operation::Purge => {
            let topic = keys::retained_topic(&entry.key)?;
            let mut p = Publish::new(topic, Bytes::new());
            p.retain = true;
            Some(p)
        }
        Operation::Put => {
            if entry.value.len() > ctx.max_packet_size as usize + 64 {
                return None;
            }
            let r = RetainedRecord::decode(&entry.value).ok()?;
            if keys::retained_key(&r.publish.topic) != entry.key {
                return None;
            }
            let mut p = r.publish;
            if let Some(interval) = p.properties.message_expiry_interval {
                // What is left of its lifetime (an expired one clears the topic here).
                let age = wall().saturating_sub(r.stored_at);
                match u32::try_from(age)
                    .ok()
                    .and_then(|a| interval.checked_sub(a))
                {
                    Some(left) if left > 0 => p.properties.message_expiry_interval = Some(left),
                    _ => p.payload = Bytes::new(),
                }
            }
            Some(p)
        }
    }
}

/// Watches the retained bucket into the router, from the last value of each key on; starts
/// again (from the last values) whenever the watch ends.
async fn watch_retained(ctx: Arc<Ctx>) {
    loop {
        if let Ok(mut watch) = ctx.retained.watch_with_history(">").await {
            while let Some(entry) = watch.next().await {
                let Ok(entry) = entry else {
                    break;
                };
                match read_retained(&ctx, &entry) {
                    Some(p) => {
                        let event = FromLink::State(StateEvent::Retained(p));
                        if ctx.to_router.send(event).await.is_err() {
                            return;
                        }
                    }
                    None => Counters::bump(&ctx.counters.malformed),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The owner value of a session entry: this node and the session's expiry.
fn owner_value(node_id: &str, expiry: u32) -> Bytes {
    Bytes::from(format!("{node_id}\n{expiry}"))
}

/// The owner node an entry names; `None` if it names none that makes sense.
fn read_owner(value: &[u8]) -> Option<&str> {
    if value.len() > MAX_OWNER_VALUE {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?;
    let (node, expiry) = text.split_once('\n')?;
    expiry.parse::<u32>().ok()?;
    let plain = !node.is_empty() && !node.chars().any(|c| c.is_whitespace() || c.is_control());
    plain.then_some(node)
}

/// Makes this node the owner of `client_id`'s session, bringing what its previous owner held.
async fn claim(ctx: &Ctx, client_id: &ByteStr, expiry: u32) -> Claimed {
    let key = keys::session_key(client_id.as_str());
    let value = owner_value(&ctx.node_id, expiry);
    let unavailable = Claimed::Refused(ReasonCode::ServerUnavailable);
    for _ in 0..CLAIM_ATTEMPTS {
        let entry = match ctx.sessions.entry(key.clone()).await {
            Ok(e) => e,
            Err(_) => return unavailable,
        };
        let previous = match entry {
            Some(e) if e.operation == Operation::Put => {
                let owner = read_owner(&e.value).map(str::to_owned);
                // Written even when this node owns it already: a release of the entry
                // racing with this claim then fails on the revision instead.
                let ours = owner.as_deref() == Some(&*ctx.node_id);
                match ctx.sessions.update(&key, value.clone(), e.revision).await {
                    // Ours already: a takeover here, if any, is the router's.
                    Ok(_) if ours => None,
                    Ok(_) => owner,
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                    Err(_) => return unavailable,
                }
            }
            _ => match ctx.sessions.create(&key, value.clone()).await {
                Ok(_) => None,
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => continue,
                Err(_) => return unavailable,
            },
        };
        return match previous {
            None => Claimed::Here,
            Some(node) => fetch(ctx, &node, client_id).await,
        };
    }
    Claimed::Refused(ReasonCode::ServerBusy)
}

/// Removes the entry of `client_id`'s session if this node owns it (on the revision read:
/// a claim in between keeps it).
async fn release(ctx: &Ctx, client_id: &ByteStr) {
    let key = keys::session_key(client_id.as_str());
    if let Ok(Some(e)) = ctx.sessions.entry(key.clone()).await {
        if e.operation == Operation::Put && read_owner(&e.value) == Some(&*ctx.node_id) {
            let _ = ctx
                .sessions
                .delete_expect_revision(&key, Some(e.revision))
                .await;
        }
    }
}

/// Asks `node` for the image of `client_id`'s session (it gives the session up).
async fn fetch(ctx: &Ctx, node: &str, client_id: &ByteStr) -> Claimed {
    let subject = export_subject(&ctx.prefix, node);
    let payload = Bytes::copy_from_slice(client_id.as_bytes());
    let image = tokio::time::timeout(EXPORT_WAIT, receive(ctx, subject, payload)).await;
    let bytes = match image {
        Ok(Ok(bytes)) => bytes,
        // No answer: the node is gone, and the session with it.
        Ok(Err(Gone::NoAnswer)) | Err(_) => return Claimed::Here,
        Ok(Err(Gone::Malformed)) => {
            Counters::bump(&ctx.counters.malformed);
            return Claimed::Here;
        }
    };
    if bytes.is_empty() {
        return Claimed::Here;
    }
    match SessionImage::decode(&bytes) {
        Ok(image) if image.client_id() == client_id => Claimed::Moved(Box::new(image)),
        _ => {
            Counters::bump(&ctx.counters.malformed);
            Claimed::Here
        }
    }
}

/// Why an export request brought no image.
enum Gone {
    NoAnswer,
    Malformed,
}

/// Sends an export request and gathers the image's pieces, checked: numbered in order, of
/// one count, within the image size limit.
async fn receive(ctx: &Ctx, subject: String, payload: Bytes) -> Result<Vec<u8>, Gone> {
    let inbox = ctx.client.new_inbox();
    let mut answers = ctx
        .client
        .subscribe(inbox.clone())
        .await
        .map_err(|_| Gone::NoAnswer)?;
    ctx.client
        .publish_with_reply(subject, inbox, payload)
        .await
        .map_err(|_| Gone::NoAnswer)?;
    let _ = ctx.client.flush().await;
    let mut image = Vec::new();
    let mut next = 0;
    while let Some(m) = answers.next().await {
        if m.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
            return Err(Gone::NoAnswer);
        }
        let piece = m.headers.as_ref().and_then(|h| h.get(PIECE));
        let (index, count) = piece
            .and_then(|p| p.as_str().split_once('/'))
            .and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n.parse::<usize>().ok()?)))
            .ok_or(Gone::Malformed)?;
        if index != next || index >= count || image.len() + m.payload.len() > ctx.max_image {
            return Err(Gone::Malformed);
        }
        image.extend_from_slice(&m.payload);
        next += 1;
        if next == count {
            return Ok(image);
        }
    }
    Err(Gone::NoAnswer)
}

/// Sends `image` to `reply` in pieces that fit the server's largest message.
async fn send_pieces(client: &async_nats::Client, reply: async_nats::Subject, image: Bytes) {
    let max = client.server_info().max_payload;
    let size = max.saturating_sub(PIECE_ROOM).max(PIECE_ROOM);
    let count = image.len().div_ceil(size).max(1);
    for index in 0..count {
        let from = (index * size).min(image.len());
        let to = (from + size).min(image.len());
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(PIECE, format!("{index}/{count}").as_str());
        let piece = image.slice(from..to);
        if client
            .publish_with_headers(reply.clone(), headers, piece)
            .await
            .is_err()
        {
            return;
        }
    }
    let _ = client.flush().await;
}

/// Answers other nodes' export requests: the router gives the session up and its image goes
/// back (empty if there is none here).
async fn answer_exports(ctx: Arc<Ctx>) {
    let subject = export_subject(&ctx.prefix, &ctx.node_id);
    let Ok(mut requests) = ctx.client.subscribe(subject).await else {
        return;
    };
    while let Some(m) = requests.next().await {
        let Some(reply) = m.reply.clone() else {
            continue;
        };
        let Ok(client_id) = ByteStr::from_utf8(m.payload.clone()) else {
            Counters::bump(&ctx.counters.malformed);
            continue;
        };
        let (tx, rx) = oneshot::channel();
        let event = StateEvent::Export {
            client_id,
            reply: tx,
        };
        if ctx.to_router.send(FromLink::State(event)).await.is_err() {
            return;
        }
        let client = ctx.client.clone();
        tokio::spawn(async move {
            if let Ok(Ok(image)) = tokio::time::timeout(EXPORT_WAIT, rx).await {
                send_pieces(&client, reply, image).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_values_read_back_and_garbage_names_no_owner() {
        assert_eq!(read_owner(&owner_value("b", 60)), Some("b"));
        assert_eq!(read_owner(&owner_value("node-7", u32::MAX)), Some("node-7"));
        for bad in [
            &b""[..],
            b"b",
            b"b\nx",
            b"\n5",
            b"a b\n5",
            b"\xff\n5",
            &[b'a'; 600],
        ] {
            assert_eq!(read_owner(bad), None, "{bad:?}");
        }
        assert_eq!(bucket("tinymqtt", "sessions"), "tinymqtt_sessions");
        assert_eq!(export_subject("p", "a.b"), "p.node.a=2Eb.export");
    }
}
