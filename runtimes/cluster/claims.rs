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

use super::state::{Claimed, StateEvent, StateHandle, ToState};
use super::Counters;
use crate::broker::cluster::Export;
use crate::broker::{ConnId, Router, RouterMail};
use crate::codec::Publish;
use crate::types::{ByteStr, ReasonCode};

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
}

impl Claims {
    pub(crate) fn new(state: StateHandle, counters: Arc<Counters>) -> Claims {
        Claims {
            state,
            counters,
            held: HashMap::new(),
            deferred: HashMap::new(),
            exporting: HashMap::new(),
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
    /// cluster's retained store too (dropped and counted if the state task is that far
    /// behind).
    pub(crate) fn published(&mut self, message: &Arc<Publish>) {
        if message.retain && !message.topic.as_str().starts_with("$SYS") {
            let put = ToState::Retained(message.clone());
            if self.state.to_state.try_send(put).is_err() {
                Counters::bump(&self.counters.dropped);
            }
        }
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
