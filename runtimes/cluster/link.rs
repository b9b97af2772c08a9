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
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::envelope::{self, ORIGIN};
use super::port::{FromLink, ToLink};
use super::{ClusterConfig, Counters};
use crate::broker::cluster::{filter_to_subjects, RemoteOutput};
use crate::topic::split_shared;
use crate::types::TopicFilter;

/// What every subscription reader needs.
#[derive(Clone)]
struct Inbound {
    prefix: Arc<str>,
    node_id: Arc<str>,
    max_packet_size: u32,
    to_router: async_channel::Sender<FromLink>,
    counters: Arc<Counters>,
}

/// Runs the link until the router task drops its end of the channel.
pub(super) async fn run(
    config: ClusterConfig,
    max_packet_size: u32,
    from_router: async_channel::Receiver<ToLink>,
    to_router: async_channel::Sender<FromLink>,
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
        Err(_) => return drain(from_router).await,
    };
    let inbound = Inbound {
        prefix: config.prefix.as_str().into(),
        node_id: config.node_id.as_str().into(),
        max_packet_size,
        to_router,
        counters: counters.clone(),
    };
    let mut link = Link {
        client,
        inbound,
        subscriptions: HashMap::new(),
    };
    while let Ok(item) = from_router.recv().await {
        match item {
            ToLink::Out(RemoteOutput::Publish(p)) => link.publish(&p).await,
            ToLink::Out(RemoteOutput::Subscribe(f)) => link.subscribe(f).await,
            ToLink::Out(RemoteOutput::Unsubscribe(f)) => link.unsubscribe(&f),
            ToLink::Interest(filters) => {
                for f in filters {
                    link.subscribe(f).await;
                }
            }
        }
    }
    for (_, tasks) in link.subscriptions.drain() {
        tasks.into_iter().for_each(|t| t.abort());
    }
}

/// Takes what the router hands out and drops it (the link could not start).
async fn drain(from_router: async_channel::Receiver<ToLink>) {
    while from_router.recv().await.is_ok() {}
}

/// The link's state.
struct Link {
    client: async_nats::Client,
    inbound: Inbound,
    /// The readers of each filter's NATS subscriptions.
    subscriptions: HashMap<TopicFilter, Vec<JoinHandle<()>>>,
}

impl Link {
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
        let mut tasks = Vec::new();
        for subject in filter_to_subjects(&filter).iter() {
            let subject = format!("{}.{subject}", self.inbound.prefix);
            let sub = match &queue {
                Some(q) => self.client.queue_subscribe(subject, q.clone()).await,
                None => self.client.subscribe(subject).await,
            };
            // Fails only once the client is closed (the broker is stopping).
            if let Ok(sub) = sub {
                tasks.push(tokio::spawn(read(sub, self.inbound.clone())));
            }
        }
        self.subscriptions.insert(filter, tasks);
    }

    /// Drops the subscriptions of `filter` (the NATS client unsubscribes them).
    fn unsubscribe(&mut self, filter: &TopicFilter) {
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

/// Reads one NATS subscription into the router task until it is dropped.
async fn read(mut sub: Subscriber, inbound: Inbound) {
    while let Some(m) = sub.next().await {
        let own = m
            .headers
            .as_ref()
            .and_then(|h| h.get(ORIGIN))
            .is_some_and(|o| o.as_str() == &*inbound.node_id);
        if own {
            continue;
        }
        match envelope::decode(
            &inbound.prefix,
            m.subject.as_str(),
            &m.payload,
            inbound.max_packet_size,
        ) {
            Ok(p) => {
                Counters::bump(&inbound.counters.received);
                if inbound.to_router.send(FromLink::Message(p)).await.is_err() {
                    return;
                }
            }
            Err(_) => Counters::bump(&inbound.counters.malformed),
        }
    }
}
