//! The link task: one NATS connection per node, carrying what the router hands out and
//! subscribing to what its sessions need.
//!
//! It waits on NATS, never the router: the router task pushes into its channel without
//! waiting (`port.rs`). Each NATS subscription is read by a task of its own, which checks
//! every message (`envelope.rs`) and hands it to the router task through a bounded channel
//! (a full channel makes the reader wait, and NATS's per-subscription buffer, then its
//! slow-consumer policy, takes over).

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::{HeaderMap, ServerAddr, Subscriber};
use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::channel::{AckId, FromLink, ToLink};
use super::durable;
use super::envelope::{self, ORIGIN};
use super::inbound::Inbound;
use super::{ClusterConfig, Counters};
use crate::broker::cluster::{filter_to_subjects, RemoteOutput, RemoteTicket};
use crate::topic::split_shared;
use crate::types::{QoS, TopicFilter};

/// Runs the link until the router task drops its end of the channel.
pub(super) async fn run(
    config: ClusterConfig,
    max_packet_size: u32,
    (from_router, to_router): (
        async_channel::Receiver<ToLink>,
        async_channel::Sender<FromLink>,
    ),
    acks: async_channel::Receiver<AckId>,
    counters: Arc<Counters>,
) {
    let addrs: Vec<ServerAddr> = config.nats.iter().filter_map(|u| u.parse().ok()).collect();
    let events = counters.clone();
    let options = async_nats::ConnectOptions::new()
        .name(format!("tinymqtt {}", config.node_id))
        // The node serves its local clients whether NATS is up or not.
        .retry_on_initial_connect()
        .event_callback(move |e| {
            let events = events.clone();
            async move {
                if matches!(e, async_nats::Event::Connected) {
                    Counters::bump(&events.connects);
                }
            }
        });
    let client = match options.connect(addrs).await {
        Ok(c) => c,
        // Only a malformed option fails here (settings checked the URLs): the node runs alone.
        Err(_) => return drain(from_router, acks).await,
    };
    let inbound = Inbound {
        prefix: config.prefix.as_str().into(),
        node_id: config.node_id.as_str().into(),
        max_packet_size,
        to_router,
        counters: counters.clone(),
        plain: Arc::default(),
    };
    let js = async_nats::jetstream::new(client.clone());
    let (filters, filters_rx) = watch::channel(Vec::new());
    let mut link = Link {
        client,
        js: js.clone(),
        run: durable::run_id(),
        untracked: 0,
        inbound: inbound.clone(),
        subscriptions: HashMap::new(),
        filters,
    };
    // The stream first (the consumer reads it, the publishes go to it), in the background:
    // the router's messages queue in the channel meanwhile, QoS 1/2 publishers waiting.
    let consumer = tokio::spawn(async move {
        let stream = durable::ensure_stream(&js, &inbound.prefix.clone()).await;
        durable::consume(stream, inbound, filters_rx, acks).await;
    });
    // JetStream's acknowledgements, in the order the messages were sent.
    let mut stored = FuturesOrdered::new();
    loop {
        let item = tokio::select! {
            item = from_router.recv() => match item {
                Ok(item) => item,
                Err(_) => break,
            },
            Some(ticket) = stored.next(), if !stored.is_empty() => {
                Counters::bump(&link.inbound.counters.sent);
                if let Some(t) = ticket {
                    if link.inbound.to_router.send(FromLink::Stored(t)).await.is_err() {
                        break;
                    }
                }
                continue;
            }
        };
        match item {
            ToLink::Out(RemoteOutput::Publish(p)) if p.qos != QoS::AtMostOnce => {
                stored.push_back(link.publish_durable(&p, None).await);
            }
            ToLink::Out(RemoteOutput::Publish(p)) => link.publish(&p).await,
            ToLink::Out(RemoteOutput::Held { message, ticket }) => {
                stored.push_back(link.publish_durable(&message, Some(ticket)).await);
            }
            ToLink::Out(RemoteOutput::Subscribe(f)) => link.subscribe(f).await,
            ToLink::Out(RemoteOutput::Unsubscribe(f)) => link.unsubscribe(&f),
            ToLink::Interest(filters) => {
                for f in filters {
                    link.subscribe(f).await;
                }
            }
        }
    }
    consumer.abort();
    for (_, tasks) in link.subscriptions.drain() {
        tasks.into_iter().for_each(|t| t.abort());
    }
}

/// Takes what the router hands out and drops it (the link could not start).
async fn drain(
    from_router: async_channel::Receiver<ToLink>,
    _acks: async_channel::Receiver<AckId>,
) {
    while from_router.recv().await.is_ok() {}
}

/// The link's state.
struct Link {
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    /// This run's random number, in message ids.
    run: u64,
    /// The QoS 1/2 messages without a ticket sent so far (wills, the application's).
    untracked: u64,
    inbound: Inbound,
    /// The readers of each filter's NATS subscriptions.
    subscriptions: HashMap<TopicFilter, Vec<JoinHandle<()>>>,
    /// The durable consumer's filter subjects.
    filters: watch::Sender<Vec<String>>,
}

impl Link {
    /// Sends a QoS 1/2 message to the stream now; the future completes once JetStream
    /// stored it.
    async fn publish_durable(
        &mut self,
        p: &crate::codec::Publish,
        ticket: Option<RemoteTicket>,
    ) -> impl std::future::Future<Output = Option<RemoteTicket>> + Send + 'static {
        let body = envelope::encode_body(p).unwrap_or_default();
        let (kind, seq) = match ticket {
            Some(t) => ('t', t.get()),
            None => {
                self.untracked += 1;
                ('u', self.untracked)
            }
        };
        let headers = durable::headers(&self.inbound.node_id, self.run, kind, seq);
        let subject = envelope::subject(&self.inbound.prefix, p);
        // Sent here, in the order the router handed them out (the futures of the acks are
        // polled in any order).
        let first = self
            .js
            .publish_with_headers(subject.clone(), headers.clone(), body.clone())
            .await
            .ok();
        durable::publish(self.js.clone(), first, (subject, headers, body), ticket)
    }

    /// Tells the durable consumer the subjects of this node's plain filters.
    fn refilter(&self) {
        let plain = self.inbound.plain.read().unwrap_or_else(|e| e.into_inner());
        let subjects: Vec<String> = plain
            .iter()
            .flat_map(|f| {
                let s = filter_to_subjects(f);
                s.iter()
                    .map(|s| format!("{}.{}.{s}", self.inbound.prefix, envelope::DURABLE))
                    .collect::<Vec<_>>()
            })
            .collect();
        drop(plain);
        let subjects = durable::consumer_filters(&self.inbound.prefix, &subjects);
        self.filters.send_if_modified(|old| {
            let changed = *old != subjects;
            *old = subjects;
            changed
        });
    }

    /// Publishes a message of this node's on its topic's subject.
    async fn publish(&mut self, p: &crate::codec::Publish) {
        let Some(body) = envelope::encode_body(p) else {
            return;
        };
        let mut headers = HeaderMap::new();
        headers.insert(ORIGIN, &*self.inbound.node_id);
        let subject = envelope::subject(&self.inbound.prefix, p);
        if self
            .client
            .publish_with_headers(subject, headers, body)
            .await
            .is_ok()
        {
            Counters::bump(&self.inbound.counters.sent);
        }
    }

    /// Subscribes to the subjects of `filter` (a queue subscription for a shared one).
    async fn subscribe(&mut self, filter: TopicFilter) {
        if self.subscriptions.contains_key(&filter) {
            return;
        }
        let queue = split_shared(filter.as_str()).map(|_| queue_name(&filter));
        if queue.is_none() {
            let mut plain = self
                .inbound
                .plain
                .write()
                .unwrap_or_else(|e| e.into_inner());
            plain.insert(filter.clone());
            drop(plain);
            self.refilter();
        }
        let mut tasks = Vec::new();
        let prefix = &self.inbound.prefix;
        let mapped = filter_to_subjects(&filter);
        let mut subjects: Vec<String> = mapped.iter().map(|s| format!("{prefix}.{s}")).collect();
        if queue.is_some() {
            // A shared subscription takes its QoS 1/2 messages from the queue group too
            // (core NATS sees what is published to the stream).
            let durable = mapped
                .iter()
                .map(|s| format!("{prefix}.{}.{s}", envelope::DURABLE));
            subjects.extend(durable);
        }
        for subject in subjects {
            let sub = match &queue {
                Some(q) => self.client.queue_subscribe(subject, q.clone()).await,
                None => self.client.subscribe(subject).await,
            };
            // Fails only once the client is closed (the broker is stopping).
            if let Ok(sub) = sub {
                let reader = Reader {
                    filter: filter.clone(),
                    shared: queue.is_some(),
                };
                tasks.push(tokio::spawn(read(sub, reader, self.inbound.clone())));
            }
        }
        self.subscriptions.insert(filter, tasks);
    }

    /// Drops the subscriptions of `filter` (the NATS client unsubscribes them).
    fn unsubscribe(&mut self, filter: &TopicFilter) {
        let mut plain = self
            .inbound
            .plain
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let was_plain = plain.remove(filter);
        drop(plain);
        if was_plain {
            self.refilter();
        }
        for t in self.subscriptions.remove(filter).unwrap_or_default() {
            t.abort();
        }
    }
}

/// The NATS queue group of a shared subscription: its group and filter, every byte NATS
/// could read as a separator escaped (`%XX`), so that two groups of one name on two
/// filters are two queues, as in MQTT.
fn queue_name(filter: &TopicFilter) -> String {
    let mut out = String::with_capacity(filter.as_str().len() + 8);
    for b in filter.as_str().bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/' | b'$' | b'+' | b'#') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What a subscription's reader reads for.
struct Reader {
    /// The filter it was subscribed for.
    filter: TopicFilter,
    /// A shared subscription's queue subscription.
    shared: bool,
}

/// Reads one NATS subscription into the router task until it is dropped.
///
/// A plain subscription drops this node's own messages (routed here already); a queue
/// subscription takes them, because this node routes none of its messages to its shared
/// subscriptions itself: NATS picks one node of the queue group, this one included.
async fn read(mut sub: Subscriber, reader: Reader, inbound: Inbound) {
    let shared = reader.shared.then_some(reader.filter.clone());
    while let Some(m) = sub.next().await {
        let own = m
            .headers
            .as_ref()
            .and_then(|h| h.get(ORIGIN))
            .is_some_and(|o| o.as_str() == &*inbound.node_id);
        if own && shared.is_none() {
            continue;
        }
        match envelope::decode(
            &inbound.prefix,
            m.subject.as_str(),
            &m.payload,
            inbound.max_packet_size,
        ) {
            Ok(p) if shared.is_none() && !inbound.routes(&reader.filter, p.topic.as_str()) => {}
            Ok(p) => {
                Counters::bump(&inbound.counters.received);
                let m = match &shared {
                    Some(f) => FromLink::Shared(f.clone(), p),
                    None => FromLink::Message(p),
                };
                if inbound.to_router.send(m).await.is_err() {
                    return;
                }
            }
            Err(_) => Counters::bump(&inbound.counters.malformed),
        }
    }
}
