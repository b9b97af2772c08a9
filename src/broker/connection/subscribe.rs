//! SUBSCRIBE and UNSUBSCRIBE on the connection's side: the filter count, topic limits and
//! the authorizer; the router does the rest.

use super::close::Close;
use super::ServerConnection;
use crate::broker::mail::ToRouter;
use crate::broker::DeniedAction;
use crate::codec::{Subscribe, Unsubscribe};
use crate::error::ProtocolViolation;
use crate::types::ReasonCode;

impl ServerConnection {
    pub(super) fn on_subscribe(&mut self, s: Subscribe) {
        if s.filters.len() > self.config.max_subscribe_filters {
            // More filters than one SUBSCRIBE may carry: quota exceeded.
            return self.close(Close::violation(ProtocolViolation::TooManyFilters));
        }
        let v5 = self.protocol.is_v5();
        let (refused, too_long) = if v5 {
            (ReasonCode::NotAuthorized, ReasonCode::TopicFilterInvalid)
        } else {
            (ReasonCode::UnspecifiedError, ReasonCode::UnspecifiedError)
        };
        let filters = s
            .filters
            .into_iter()
            .map(|sub| {
                let filter = sub.filter.shared().map_or(sub.filter.as_str(), |(_, f)| f);
                if !self.topic_within_limits(filter.as_bytes()) {
                    return (sub, Some(too_long));
                }
                let ok = self.authorizer.can_subscribe(
                    &self.client_id,
                    self.username.as_ref(),
                    &sub.filter,
                );
                if !ok {
                    let action = DeniedAction::Subscribe(sub.filter.clone());
                    self.denied(action, "not authorized");
                }
                (sub, (!ok).then_some(refused))
            })
            .collect();
        self.to_router.push_back(ToRouter::Subscribe {
            packet_id: s.packet_id,
            subscription_id: s.properties.subscription_identifier,
            filters,
        });
    }

    pub(super) fn on_unsubscribe(&mut self, u: Unsubscribe) {
        self.to_router.push_back(ToRouter::Unsubscribe {
            packet_id: u.packet_id,
            filters: u.filters,
        });
    }
}
