//! Who owns a session: the user name it was made under. A client of another user name may
//! neither take the session over nor resume it (unless the configuration allows it, and then
//! what the session holds is checked again against the new owner's rights), and the read
//! rights of the owner are checked for every message routed into the session's queue.

use std::sync::Arc;

use super::{remote, Router, Session};
use crate::broker::mail::{ConnectRequest, OutFlow};
use crate::broker::tree::SessionId;
use crate::codec::Publish;
use crate::types::ByteStr;

impl Router {
    /// Whether the CONNECT `req` may use the session `sid` (take it over, resume it or
    /// discard it with clean start): it is the owner's, or the configuration lets any user
    /// have any session.
    pub(super) fn may_own(&self, sid: SessionId, req: &ConnectRequest) -> bool {
        match self.sessions.get(&sid) {
            Some(s) if s.claimed => {
                s.owner.as_deref() == req.username.as_ref()
                    || self.config.allow_takeover_by_other_user
            }
            _ => true,
        }
    }

    /// Makes `username` the owner of `sid`; when that changes the owner, the subscriptions,
    /// queued messages and unfinished deliveries the new owner may not read are dropped.
    pub(super) fn set_owner(&mut self, sid: SessionId, username: Option<ByteStr>) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        let changed = s.claimed && s.owner.as_deref() != username.as_ref();
        s.claimed = true;
        s.owner = username.map(Box::new);
        if !changed {
            return;
        }
        let user = s.owner_name().cloned();
        let auth = self.authorizer.clone();
        let id = s.client_id.clone();
        let denied: Vec<_> = s
            .subscriptions
            .keys()
            .filter(|f| !auth.can_subscribe(&id, user.as_ref(), f))
            .cloned()
            .collect();
        for f in denied {
            s.subscriptions.remove(&f);
            remote::unsubscribe(&mut self.tree, self.remote.as_deref_mut(), &f, sid);
        }
        let readable = |m: &Publish| auth.can_receive(&id, user.as_ref(), &m.topic);
        let mut gone: Vec<Option<u64>> = s
            .queue
            .retain(|d| readable(&d.message))
            .into_iter()
            .map(|d| d.stored)
            .collect();
        s.handover.outbound.retain(|(_, flow)| match flow {
            OutFlow::Publish(d) if !readable(&d.message) => {
                gone.push(d.stored);
                false
            }
            _ => true,
        });
        for stored in gone {
            super::persist_log::unqueue(&mut self.store, &id, stored);
        }
    }

    /// Whether the owner of `sid` may read a message on `message`'s topic: checked before it
    /// is queued for the session, as well as when it is sent (an unclaimed session's
    /// messages only when they are sent, to its owner's rights).
    pub(super) fn owner_may_read(&self, sid: SessionId, message: &Arc<Publish>) -> bool {
        match self.sessions.get(&sid) {
            Some(s) if s.claimed => {
                self.authorizer
                    .can_receive(&s.client_id, s.owner_name(), &message.topic)
            }
            Some(_) => true,
            None => false,
        }
    }
}

impl Session {
    /// The owner's user name (`None`: anonymous, or not claimed yet).
    pub(super) fn owner_name(&self) -> Option<&ByteStr> {
        self.owner.as_deref()
    }
}
