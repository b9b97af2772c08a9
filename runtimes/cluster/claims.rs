//! The router task's side of the cluster's shared state (see `state.rs`): CONNECTs held while
//! their session is claimed, other nodes' export requests, and retained messages both ways.
//!
//! Policy: at most [`MAX_CLAIMS`] CONNECTs wait at once; one more (or one that finds the state
//! task's channel full) is refused with 0x89 Server busy. A claim lasts
//! [`CLAIM_TIMEOUT`](super::state::CLAIM_TIMEOUT) at most, then its CONNECT is refused with
//! 0x88 Server unavailable: a session is never owned by two nodes, at the price of refusing
//! connections while NATS is unreachable. Whatever the connection sends while its CONNECT
//! waits (a DISCONNECT, its close) waits behind it, in order. An export request for a client
//! id whose CONNECT waits here is answered once that CONNECT has gone on, so the later claim
//! takes the session over from the earlier one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::channel::{Claimed, StateEvent};
use super::state::{StateHandle, ToState};
use super::Counters;
use crate::broker::cluster::Export;
use crate::broker::{ConnId, Router, RouterMail};
use crate::codec::Publish;
use crate::types::{ByteStr, ReasonCode, TopicName};

/// The most CONNECTs waiting for their claim at once.
pub(crate) const MAX_CLAIMS: usize = 1024;

/// Where an export's image goes.
type Reply = oneshot::Sender<Bytes>;

/// The router task's state for the cluster's sessions and retained messages.
#[derive(Debug)]
pub(crate) struct Claims {
    state: StateHandle,
    counters: Arc<Counters>,
    /// CONNECTs waiting for their claim, by connection: the client id, then the CONNECT and
    /// the mail its connection sent after it.
    held: HashMap<ConnId, (ByteStr, Vec<RouterMail>)>,
    /// Export requests for a client id whose CONNECT waits here.
    deferred: HashMap<ByteStr, Vec<Reply>>,
    /// Exports waiting for their session's connection to close.
    exporting: HashMap<ByteStr, Vec<Reply>>,
    /// Retained messages for the bucket that found the state task's channel full: the last
    /// one of each topic, sent when there is room (at most [`MAX_RETAINED_WAITING`] topics).
    retained: HashMap<TopicName, Arc<Publish>>,
}

/// The most topics whose retained message waits for the state task's channel; past it a new
/// topic's is dropped and counted (the bucket then misses it until that topic changes again).
pub(crate) const MAX_RETAINED_WAITING: usize = 10_000;

impl Claims {
    pub(crate) fn new(state: StateHandle, counters: Arc<Counters>) -> Claims {
        Claims {
            state,
            counters,
            held: HashMap::new(),
            deferred: HashMap::new(),
            exporting: HashMap::new(),
            retained: HashMap::new(),
        }
    }

    /// Takes a connection's mail before the router: a CONNECT waits for its claim (and so
    /// does everything its connection sends after it); any other mail is given back.
    pub(crate) fn hold(
        &mut self,
        now: Instant,
        router: &mut Router,
        mail: RouterMail,
    ) -> Option<RouterMail> {
        let conn = mail.conn();
        if let Some((_, waiting)) = self.held.get_mut(&conn) {
            waiting.push(mail);
            return None;
        }
        let (client_id, expiry) = match mail.connect_request() {
            Some((id, expiry)) => (id.clone(), expiry),
            None => return Some(mail),
        };
        let claim = ToState::Claim {
            conn,
            client_id: client_id.clone(),
            expiry,
        };
        if self.held.len() >= MAX_CLAIMS || self.state.to_state.try_send(claim).is_err() {
            router.refuse_connect(now, mail, ReasonCode::ServerBusy);
            return None;
        }
        self.held.insert(conn, (client_id, vec![mail]));
        None
    }

    /// A message published here is going to the other nodes: a retained one goes to the
    /// cluster's retained store too (behind those of its topic still waiting for room).
    pub(crate) fn published(&mut self, message: &Arc<Publish>) {
        if !message.retain || message.topic.as_str().starts_with("$SYS") {
            return;
        }
        self.flush_retained();
        if self.retained.is_empty() {
            match self
                .state
                .to_retained
                .try_send(ToState::Retained(message.clone()))
            {
                Ok(()) => return,
                Err(e) if e.is_closed() => return,
                Err(_) => {}
            }
        }
        let full = self.retained.len() >= MAX_RETAINED_WAITING;
        if full && !self.retained.contains_key(&message.topic) {
            Counters::bump(&self.counters.dropped);
            return;
        }
        // Only the last message of a topic matters to the bucket.
        self.retained.insert(message.topic.clone(), message.clone());
    }

    /// Sends the retained messages that waited, while the channel has room.
    fn flush_retained(&mut self) {
        if self.retained.is_empty() {
            return;
        }
        let to_retained = &self.state.to_retained;
        self.retained.retain(|_, m| {
            matches!(
                to_retained.try_send(ToState::Retained(m.clone())),
                Err(async_channel::TrySendError::Full(_))
            )
        });
    }

    /// What the state task found.
    pub(crate) fn input(&mut self, now: Instant, router: &mut Router, event: StateEvent) {
        match event {
            StateEvent::Retained(p) => {
                router.handle_remote_retained(now, p);
            }
            StateEvent::Claimed { conn, outcome } => {
                let Some((client_id, mails)) = self.held.remove(&conn) else {
                    return;
                };
                let mut mails = mails.into_iter();
                match outcome {
                    Claimed::Here => {}
                    // Refused only when the session is online here, which the claim rules
                    // out; then the CONNECT takes it over here as usual.
                    Claimed::Moved(image) => {
                        let _ = router.import_session(now, *image);
                    }
                    Claimed::Refused(code) => {
                        if let Some(connect) = mails.next() {
                            router.refuse_connect(now, connect, code);
                        }
                    }
                }
                for m in mails {
                    router.handle_mail(now, m);
                }
                if !self.held.values().any(|(id, _)| *id == client_id) {
                    for reply in self.deferred.remove(&client_id).unwrap_or_default() {
                        self.export(now, router, client_id.clone(), reply);
                    }
                }
            }
            StateEvent::Export { client_id, reply } => {
                if self.held.values().any(|(id, _)| *id == client_id) {
                    self.deferred.entry(client_id).or_default().push(reply);
                } else {
                    self.export(now, router, client_id, reply);
                }
            }
        }
    }

    /// Gives the session of `client_id` up for another node.
    fn export(&mut self, now: Instant, router: &mut Router, client_id: ByteStr, reply: Reply) {
        match router.export_session(now, &client_id) {
            Export::Ready(image) => {
                let _ = reply.send(image.encode().map(Bytes::from).unwrap_or_default());
            }
            Export::Pending => self.exporting.entry(client_id).or_default().push(reply),
            _ => {
                let _ = reply.send(Bytes::new());
            }
        }
    }

    /// Answers the exports whose connections have closed, and releases the sessions that
    /// ended (call it after each input).
    pub(crate) fn drained(&mut self, router: &mut Router) {
        self.flush_retained();
        while let Some(client_id) = router.poll_ended_session() {
            // A full channel leaves the entry behind: the next claim of the id takes it over.
            let _ = self.state.to_state.try_send(ToState::Release(client_id));
        }
        while let Some((client_id, image)) = router.poll_export() {
            let bytes = image
                .and_then(|i| i.encode().ok())
                .map(Bytes::from)
                .unwrap_or_default();
            // One image: the first asker gets it, any other hears there is none.
            let mut replies = self.exporting.remove(&client_id).unwrap_or_default();
            let mut first = Some(bytes);
            for reply in replies.drain(..) {
                let _ = reply.send(first.take().unwrap_or_default());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retained(topic: &str, payload: &'static str) -> Arc<Publish> {
        let mut p = Publish::new(TopicName::new(topic).unwrap(), payload);
        p.retain = true;
        Arc::new(p)
    }

    fn payload(item: ToState) -> String {
        match item {
            ToState::Retained(p) => String::from_utf8_lossy(&p.payload).into_owned(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retained_messages_wait_for_room_as_the_last_one_of_each_topic() {
        let (to_retained, rx) = async_channel::bounded(1);
        let (to_state, _claims) = async_channel::bounded(1);
        let counters = Arc::new(Counters::default());
        let state = StateHandle {
            to_state,
            to_retained,
        };
        let mut claims = Claims::new(state, counters.clone());
        claims.published(&retained("a", "a1"));
        claims.published(&retained("a", "a2"));
        claims.published(&retained("a", "a3"));
        claims.published(&retained("b", "b1"));
        // Not retained, or `$SYS`: never for the bucket.
        claims.published(&Arc::new(Publish::new(TopicName::new("c").unwrap(), "c")));
        claims.published(&retained("$SYS/x", "s"));
        assert_eq!(payload(rx.try_recv().unwrap()), "a1");
        let mut got = Vec::new();
        for _ in 0..2 {
            claims.flush_retained();
            got.push(payload(rx.try_recv().unwrap()));
        }
        got.sort();
        assert_eq!(got, ["a3", "b1"], "a2 was replaced while it waited");
        claims.flush_retained();
        assert!(rx.try_recv().is_err());
        assert_eq!(counters.snapshot().dropped, 0);
    }
}
