//! Deliveries held back until the store says their record is durable, with each session's
//! count of them kept here only.

use std::collections::VecDeque;

use crate::broker::mail::{ConnId, Delivery};
use crate::broker::tree::SessionId;
use crate::hash::IdMap;

/// Deliveries to connections held back until their store ticket comes back (with durable
/// acks), oldest first, one ticket each: a receiver that delivers a QoS 2 message on PUBLISH
/// must never see one the store may forget, or it could get it again under another packet
/// identifier after a crash. Those behind a parked one for the same session wait too, so its
/// connection gets them in order. Only these methods change the queue and the counts.
#[derive(Debug, Default)]
pub(super) struct Parked {
    queue: VecDeque<(ConnId, SessionId, Delivery)>,
    /// How many of `queue` are for each session (sessions with none are absent).
    per_session: IdMap<SessionId, usize>,
}

impl Parked {
    /// Holds `d` for `sid`'s connection `conn` behind the others.
    pub(super) fn park(&mut self, conn: ConnId, sid: SessionId, d: Delivery) {
        *self.per_session.entry(sid).or_default() += 1;
        self.queue.push_back((conn, sid, d));
    }

    /// The oldest held delivery, let go (its ticket came back).
    pub(super) fn unpark(&mut self) -> Option<(ConnId, SessionId, Delivery)> {
        let (conn, sid, d) = self.queue.pop_front()?;
        if let Some(n) = self.per_session.get_mut(&sid) {
            *n -= 1;
            if *n == 0 {
                self.per_session.remove(&sid);
            }
        }
        Some((conn, sid, d))
    }

    /// Whether deliveries for `sid` wait here (a new one must wait behind them).
    pub(super) fn holds(&self, sid: SessionId) -> bool {
        self.per_session.contains_key(&sid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Publish;
    use crate::types::TopicName;

    fn d() -> Delivery {
        Delivery::of(Publish::new(TopicName::from_static("t"), &b"x"[..]))
    }

    #[test]
    fn counts_follow_the_queue_in_order() {
        let (a, b) = (SessionId(1), SessionId(2));
        let mut p = Parked::default();
        p.park(ConnId(10), a, d());
        p.park(ConnId(20), b, d());
        p.park(ConnId(10), a, d());
        assert!(p.holds(a) && p.holds(b));
        assert_eq!(p.unpark().map(|(c, s, _)| (c, s)), Some((ConnId(10), a)));
        assert!(p.holds(a));
        assert_eq!(p.unpark().map(|(c, s, _)| (c, s)), Some((ConnId(20), b)));
        assert!(!p.holds(b));
        assert!(p.unpark().is_some());
        assert!(!p.holds(a) && p.unpark().is_none());
        assert!(p.per_session.is_empty());
    }
}
