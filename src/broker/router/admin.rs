//! The router's side of the application's requests (see [`crate::broker::admin`]): a
//! message published by the application is routed like a client's QoS 1/2 PUBLISH, its
//! answer held like that client's acknowledgement (backpressure, durability) under the
//! connection identifier [`HOST`], which no connection ever gets.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::Router;
use crate::broker::admin::{
    is_sys_topic, AdminError, AdminReply, AdminRequest, AdminTag, ClientInfo, SessionInfo,
    SubscriptionInfo,
};
use crate::broker::budget::{content_weight, message_weight};
use crate::broker::mail::{ConnId, ToConnection};
use crate::codec::Publish;
use crate::hash::IdMap;
use crate::types::{ByteStr, QoS, ReasonCode};

/// The publisher name of the application's messages where the router holds acknowledgements
/// per connection (`Router::ticket`, a session's `waiting`, the store's tickets).
pub(crate) const HOST: ConnId = ConnId(u64::MAX);

/// The application's requests in progress, and what a connection told about itself.
#[derive(Debug, Default)]
pub(super) struct Admin {
    /// Publishes routed and not answered yet, oldest first (their answers go in order, as
    /// a connection's held acknowledgements do).
    publishes: VecDeque<AdminTag>,
    /// Answers not drained yet.
    replies: VecDeque<(AdminTag, Result<AdminReply, AdminError>)>,
    /// Per connection: its listener (set by the runtime) and when its CONNECT arrived.
    conns: IdMap<ConnId, ConnInfo>,
}

#[derive(Debug, Default)]
struct ConnInfo {
    listener: Option<ByteStr>,
    since: Option<Instant>,
}

impl Router {
    /// A request from the application; its answer comes out of [`Router::poll_admin`] with
    /// `tag` (at once, except a publish: see [`AdminRequest::Publish`]).
    pub fn handle_admin(&mut self, now: Instant, tag: AdminTag, request: AdminRequest) {
        self.start_clock(now);
        let reply = match request {
            AdminRequest::Publish(p) => {
                // Answered by the ticket its routing gives (maybe right away).
                self.admin.publishes.push_back(tag);
                match self.host_publish(now, p) {
                    Ok(()) => return,
                    Err(e) => {
                        // Refused before anything was routed or ticketed.
                        self.admin.publishes.pop_back();
                        Err(e)
                    }
                }
            }
            AdminRequest::Clients => Ok(AdminReply::Clients(self.clients())),
            AdminRequest::Subscriptions(id) => self.subscriptions_of(&id),
            AdminRequest::OfflineSessions => Ok(AdminReply::OfflineSessions(self.offline())),
            AdminRequest::Disconnect(id) => self.kick(&id),
            AdminRequest::RemoveSession(id) => self.remove_offline(now, &id),
        };
        self.admin.replies.push_back((tag, reply));
    }

    /// The answer to a request of the application; yields after [`Router::handle_admin`],
    /// and after inputs and timeouts for publishes that waited (drain it after
    /// [`Router::poll_mail`]).
    pub fn poll_admin(&mut self) -> Option<(AdminTag, Result<AdminReply, AdminError>)> {
        self.admin.replies.pop_front()
    }

    /// Names the listener `conn` came through, for [`AdminReply::Clients`] (call it right
    /// after [`Router::accept`]).
    pub fn set_listener(&mut self, conn: ConnId, listener: ByteStr) {
        if self.conns.contains(&conn) {
            self.admin.conns.entry(conn).or_default().listener = Some(listener);
        }
    }

    /// A CONNECT from `conn` reached the router.
    pub(super) fn admin_connecting(&mut self, now: Instant, conn: ConnId) {
        self.admin.conns.entry(conn).or_default().since = Some(now);
    }

    /// `conn` ended.
    pub(super) fn admin_gone(&mut self, conn: ConnId) {
        self.admin.conns.remove(&conn);
    }

    /// One of the application's publishes may be answered (the oldest waiting).
    pub(super) fn host_ticket(&mut self) {
        if let Some(tag) = self.admin.publishes.pop_front() {
            self.admin
                .replies
                .push_back((tag, Ok(AdminReply::Published)));
        }
    }

    /// Checks and routes the application's message, as `ToRouter::Publish` does a client's
    /// QoS 1/2 one.
    fn host_publish(&mut self, now: Instant, mut p: Publish) -> Result<(), AdminError> {
        if p.topic.is_empty() {
            return Err(AdminError::EmptyTopic);
        }
        if is_sys_topic(&p) {
            self.counts.denied += 1;
            return Err(AdminError::SysTopic);
        }
        if p.qos > self.config.maximum_qos {
            return Err(AdminError::QoSNotSupported);
        }
        if p.retain && !self.config.retain_available {
            return Err(AdminError::RetainNotAvailable);
        }
        let keeps = p.retain && !p.payload.is_empty();
        if !self.budget.has_room(message_weight(&p))
            || (keeps && !self.retained_budget.has_room(content_weight(&p)))
        {
            self.budget.count_refused();
            return Err(AdminError::QuotaExceeded);
        }
        p.dup = false;
        p.packet_id = None;
        p.properties.topic_alias = None;
        if p.qos != QoS::AtMostOnce {
            // A full queue of an online subscriber holds the answer back (backpressure).
            self.routing = Some(None);
        }
        self.route(now, Arc::new(p), None);
        let full = self.routing.take().flatten();
        match full.and_then(|sid| Some(sid).zip(self.sessions.get_mut(&sid))) {
            Some((sid, s)) => {
                s.waiting.push(HOST);
                if s.waiting.len() == 1 {
                    let at = now + self.config.max_publisher_wait;
                    self.set_timer(at, super::Timer::Waited(sid));
                }
            }
            None => self.ticket(HOST),
        }
        Ok(())
    }

    fn clients(&self) -> Vec<ClientInfo> {
        let mut out: Vec<ClientInfo> = self
            .online
            .iter()
            .filter_map(|(conn, sid)| {
                let s = self.sessions.get(sid)?;
                let info = self.admin.conns.get(conn);
                Some(ClientInfo {
                    client_id: s.client_id.clone(),
                    username: s.owner.as_deref().cloned(),
                    listener: info.and_then(|i| i.listener.clone()),
                    protocol: s.protocol,
                    since: info.and_then(|i| i.since).or(self.started)?,
                })
            })
            .collect();
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        out
    }

    fn subscriptions_of(&self, id: &ByteStr) -> Result<AdminReply, AdminError> {
        let s = self
            .by_client
            .get(id)
            .and_then(|sid| self.sessions.get(sid))
            .ok_or_else(|| AdminError::NoSuchSession(id.clone()))?;
        let subs = s
            .subscriptions
            .iter()
            .map(|(filter, e)| SubscriptionInfo {
                filter: filter.clone(),
                options: e.options,
                identifier: e.identifier,
            })
            .collect();
        Ok(AdminReply::Subscriptions(subs))
    }

    fn offline(&self) -> Vec<SessionInfo> {
        let mut out: Vec<SessionInfo> = self
            .sessions
            .values()
            .filter(|s| s.conn.is_none())
            .map(|s| SessionInfo {
                client_id: s.client_id.clone(),
                username: s.owner.as_deref().cloned(),
                protocol: s.protocol,
                expiry: s.expiry,
                queued: s.queue.len(),
                subscriptions: s.subscriptions.len(),
            })
            .collect();
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        out
    }

    fn kick(&mut self, id: &ByteStr) -> Result<AdminReply, AdminError> {
        let s = self
            .by_client
            .get(id)
            .and_then(|sid| self.sessions.get(sid))
            .ok_or_else(|| AdminError::NoSuchSession(id.clone()))?;
        let conn = s.conn.ok_or_else(|| AdminError::NotConnected(id.clone()))?;
        let mail = ToConnection::Disconnect(ReasonCode::AdministrativeAction);
        self.send_to((conn, mail));
        Ok(AdminReply::Disconnected)
    }

    fn remove_offline(&mut self, now: Instant, id: &ByteStr) -> Result<AdminReply, AdminError> {
        let sid = *self
            .by_client
            .get(id)
            .ok_or_else(|| AdminError::NoSuchSession(id.clone()))?;
        let online = self.sessions.get(&sid).is_some_and(|s| s.conn.is_some());
        if online || self.takeovers.contains_key(&sid) {
            return Err(AdminError::Connected(id.clone()));
        }
        self.end_session(now, sid);
        Ok(AdminReply::Removed)
    }
}
