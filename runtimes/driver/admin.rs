//! What the application that runs a broker may ask of it through its [`BrokerHandle`]:
//! publish into it, list who is connected, a client's subscriptions and the offline
//! sessions, disconnect a client, remove an offline session. Every request is mail for the
//! router task (the core's [`AdminRequest`]), answered through a one-shot reply; the
//! `_blocking` twins wait on the thread instead (for consoles and threads outside any
//! executor).
//!
//! ```no_run
//! # use tinymqtt::runtimes::{BrokerHandle, Error};
//! # async fn f(handle: BrokerHandle) -> Result<(), Error> {
//! use tinymqtt::codec::Publish;
//! use tinymqtt::{QoS, TopicName};
//!
//! // Routed like a client's message; returns once it is (durable, with persistence).
//! let topic = TopicName::new("app/status").expect("a valid topic");
//! let status = Publish::new(topic, "up").with_qos(QoS::AtLeastOnce).with_retain(true);
//! handle.publish(status).await?;
//! for c in handle.clients().await? {
//!     if c.username.is_none() {
//!         handle.disconnect_client(c.client_id).await?; // DISCONNECT 0x98 (MQTT 5)
//!     }
//! }
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::time::Instant;

use super::handle::{BrokerHandle, Control};
use super::{answer, reply_channel, Error, Reply};
use crate::broker::{
    AdminReply, AdminRequest, AdminTag, ClientInfo, Router, SessionInfo, SubscriptionInfo,
};
use crate::codec::Publish;
use crate::types::ByteStr;

/// The router task's side: each request gets a tag, its reply waits under it until the
/// router answers (at once, or for a publish once routed and durable). As many wait as
/// callers are waiting on their answers.
#[derive(Debug, Default)]
pub(crate) struct AdminWaiters {
    waiting: HashMap<AdminTag, Reply<AdminReply>>,
    next: u64,
}

impl AdminWaiters {
    /// Hands `request` to the router; `reply` hears its answer (drain with
    /// [`AdminWaiters::answer`]).
    pub(crate) fn ask(
        &mut self,
        router: &mut Router,
        now: Instant,
        request: Box<AdminRequest>,
        reply: Reply<AdminReply>,
    ) {
        let tag = AdminTag(self.next);
        self.next += 1;
        self.waiting.insert(tag, reply);
        router.handle_admin(now, tag, *request);
    }

    /// Answers every request the router has answered.
    pub(crate) fn answer(&mut self, router: &mut Router) {
        while let Some((tag, answered)) = router.poll_admin() {
            if let Some(reply) = self.waiting.remove(&tag) {
                answer(reply, answered.map_err(Error::Admin));
            }
        }
    }
}

impl BrokerHandle {
    /// Asks the router `request` and waits for its answer.
    async fn ask(&self, request: AdminRequest) -> Result<AdminReply, Error> {
        let (tx, rx) = reply_channel();
        self.tx
            .send(Control::Admin(Box::new(request), tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.recv().await.unwrap_or(Err(Error::Stopped))
    }

    /// [`BrokerHandle::ask`], blocking the thread.
    fn ask_blocking(&self, request: AdminRequest) -> Result<AdminReply, Error> {
        let (tx, rx) = reply_channel();
        self.tx
            .send_blocking(Control::Admin(Box::new(request), tx))
            .map_err(|_| Error::Stopped)?;
        rx.recv_blocking().unwrap_or(Err(Error::Stopped))
    }

    /// Publishes `publish` into the broker as if a client had: retained when its retain flag
    /// is set, to every matching subscription at the QoS both allow. Returns once it is
    /// routed (and durable, with persistence and durable acknowledgements); a QoS 1/2
    /// message that finds an online subscriber's queue full waits for room as a client's
    /// acknowledgement would (`max_publisher_wait` at most). `$SYS` topics are refused
    /// ([`AdminError::SysTopic`]), and so is what a client could not publish (above the
    /// maximum QoS, retained without retain available, over the memory limit).
    ///
    /// [`AdminError::SysTopic`]: crate::broker::AdminError::SysTopic
    pub async fn publish(&self, publish: Publish) -> Result<(), Error> {
        expect(self.ask(AdminRequest::Publish(publish)).await?, |r| {
            matches!(r, AdminReply::Published).then_some(())
        })
    }

    /// [`BrokerHandle::publish`], blocking the thread.
    pub fn publish_blocking(&self, publish: Publish) -> Result<(), Error> {
        expect(self.ask_blocking(AdminRequest::Publish(publish))?, |r| {
            matches!(r, AdminReply::Published).then_some(())
        })
    }

    /// The connected clients (identifier, user name, listener, protocol, since when), by
    /// client identifier.
    pub async fn clients(&self) -> Result<Vec<ClientInfo>, Error> {
        expect(self.ask(AdminRequest::Clients).await?, clients)
    }

    /// [`BrokerHandle::clients`], blocking the thread.
    pub fn clients_blocking(&self) -> Result<Vec<ClientInfo>, Error> {
        expect(self.ask_blocking(AdminRequest::Clients)?, clients)
    }

    /// The subscriptions of the session of `client_id` (online or offline), by filter.
    pub async fn subscriptions(&self, client_id: ByteStr) -> Result<Vec<SubscriptionInfo>, Error> {
        expect(
            self.ask(AdminRequest::Subscriptions(client_id)).await?,
            subscriptions,
        )
    }

    /// [`BrokerHandle::subscriptions`], blocking the thread.
    pub fn subscriptions_blocking(
        &self,
        client_id: ByteStr,
    ) -> Result<Vec<SubscriptionInfo>, Error> {
        expect(
            self.ask_blocking(AdminRequest::Subscriptions(client_id))?,
            subscriptions,
        )
    }

    /// The sessions whose client is not connected, by client identifier.
    pub async fn offline_sessions(&self) -> Result<Vec<SessionInfo>, Error> {
        expect(self.ask(AdminRequest::OfflineSessions).await?, offline)
    }

    /// [`BrokerHandle::offline_sessions`], blocking the thread.
    pub fn offline_sessions_blocking(&self) -> Result<Vec<SessionInfo>, Error> {
        expect(self.ask_blocking(AdminRequest::OfflineSessions)?, offline)
    }

    /// Disconnects `client_id`: DISCONNECT 0x98 Administrative action to an MQTT 5 client
    /// (a 3.1.x one is just closed); its will is published and its session stays, as its
    /// expiry says. Returns once the close is on its way.
    pub async fn disconnect_client(&self, client_id: ByteStr) -> Result<(), Error> {
        expect(self.ask(AdminRequest::Disconnect(client_id)).await?, |r| {
            matches!(r, AdminReply::Disconnected).then_some(())
        })
    }

    /// [`BrokerHandle::disconnect_client`], blocking the thread.
    pub fn disconnect_client_blocking(&self, client_id: ByteStr) -> Result<(), Error> {
        expect(
            self.ask_blocking(AdminRequest::Disconnect(client_id))?,
            |r| matches!(r, AdminReply::Disconnected).then_some(()),
        )
    }

    /// Removes the offline session of `client_id` with its subscriptions and queued
    /// messages (a pending will is published now); a connected client's session is refused
    /// ([`AdminError::Connected`]).
    ///
    /// [`AdminError::Connected`]: crate::broker::AdminError::Connected
    pub async fn remove_session(&self, client_id: ByteStr) -> Result<(), Error> {
        expect(
            self.ask(AdminRequest::RemoveSession(client_id)).await?,
            |r| matches!(r, AdminReply::Removed).then_some(()),
        )
    }

    /// [`BrokerHandle::remove_session`], blocking the thread.
    pub fn remove_session_blocking(&self, client_id: ByteStr) -> Result<(), Error> {
        expect(
            self.ask_blocking(AdminRequest::RemoveSession(client_id))?,
            |r| matches!(r, AdminReply::Removed).then_some(()),
        )
    }
}

/// The answer's payload, if it is the kind asked for (the router answers each request with
/// its own kind).
fn expect<T>(reply: AdminReply, take: impl FnOnce(AdminReply) -> Option<T>) -> Result<T, Error> {
    take(reply).ok_or(Error::Stopped)
}

fn clients(r: AdminReply) -> Option<Vec<ClientInfo>> {
    match r {
        AdminReply::Clients(v) => Some(v),
        _ => None,
    }
}

fn subscriptions(r: AdminReply) -> Option<Vec<SubscriptionInfo>> {
    match r {
        AdminReply::Subscriptions(v) => Some(v),
        _ => None,
    }
}

fn offline(r: AdminReply) -> Option<Vec<SessionInfo>> {
    match r {
        AdminReply::OfflineSessions(v) => Some(v),
        _ => None,
    }
}
