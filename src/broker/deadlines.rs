//! The connections' deadlines in [`Broker`](super::Broker), ordered, so the earliest is found
//! in O(log n) instead of by asking every connection.

use std::collections::BTreeSet;
use std::time::Instant;

use super::connection::ServerConnection;
use super::mail::ConnId;

/// Every connection's next deadline, in deadline order.
///
/// A connection's deadline only changes when it gets an input (bytes, router mail, a
/// timeout), and the broker drains every such connection before it returns: that drain
/// records the new deadline with [`Deadlines::record`].
#[derive(Debug, Default)]
pub(super) struct Deadlines {
    order: BTreeSet<(Instant, ConnId)>,
}

/// A connection of the broker and the deadline [`Deadlines`] holds for it.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) conn: ServerConnection,
    /// What `Deadlines` holds for this connection: compared with the connection's own after
    /// each drain, so an unchanged deadline (the common case) costs no lookup.
    recorded: Option<Instant>,
}

impl Slot {
    /// A connection not recorded yet.
    pub(super) fn new(conn: ServerConnection) -> Slot {
        Slot {
            conn,
            recorded: None,
        }
    }
}

impl Deadlines {
    /// Records `slot`'s deadline if its timers changed since it was last recorded (`id` is
    /// its connection's identifier): one flag to read for a connection whose timers were not
    /// touched, such as one that was only handed deliveries.
    pub(super) fn record(&mut self, id: ConnId, slot: &mut Slot) {
        if slot.conn.take_deadline_change() {
            self.record_now(id, slot);
        }
    }

    /// Records `slot`'s current deadline, whatever changed.
    pub(super) fn record_now(&mut self, id: ConnId, slot: &mut Slot) {
        slot.conn.take_deadline_change();
        let at = slot.conn.poll_timeout();
        if at == slot.recorded {
            return;
        }
        if let Some(old) = slot.recorded {
            self.order.remove(&(old, id));
        }
        if let Some(at) = at {
            self.order.insert((at, id));
        }
        slot.recorded = at;
    }

    /// Forgets `slot`'s deadline: its connection leaves the broker.
    pub(super) fn forget(&mut self, id: ConnId, slot: &Slot) {
        if let Some(old) = slot.recorded {
            self.order.remove(&(old, id));
        }
    }

    /// The earliest deadline.
    pub(super) fn first(&self) -> Option<Instant> {
        self.order.first().map(|&(at, _)| at)
    }

    /// Takes out a connection whose deadline is due at `now`, if any. The caller marks its
    /// slot [`Deadlines::taken`], handles the timeout, then records it with
    /// [`Deadlines::record_now`].
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<ConnId> {
        let &(at, conn) = self.order.first()?;
        if at > now {
            return None;
        }
        self.order.pop_first();
        Some(conn)
    }

    /// `slot`'s deadline was taken out by [`Deadlines::pop_due`].
    pub(super) fn taken(slot: &mut Slot) {
        slot.recorded = None;
    }

    /// The number of connections with a deadline.
    #[cfg(debug_assertions)]
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::broker::{BrokerConfig, Router};

    #[test]
    fn the_earliest_deadline_follows_every_change() {
        let t0 = crate::test_instant();
        let config = BrokerConfig {
            connect_timeout: Duration::from_secs(10),
            ..BrokerConfig::default()
        };
        let mut router = Router::new(config);
        let mut d = Deadlines::default();
        let mut slots: Vec<(ConnId, Slot)> = (0..3)
            .map(|i| {
                let conn = router.accept(t0 + Duration::from_secs(i));
                (conn.id(), Slot::new(conn))
            })
            .collect();
        for (id, slot) in &mut slots {
            d.record(*id, slot);
        }
        assert_eq!(d.first(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(d.len(), 3);
        // Recording an unchanged deadline changes nothing.
        let (id, slot) = &mut slots[0];
        d.record(*id, slot);
        assert_eq!(d.len(), 3);
        // The first one leaves; the next earliest is the second's.
        let (id, slot) = &slots[0];
        d.forget(*id, slot);
        assert_eq!(d.first(), Some(t0 + Duration::from_secs(11)));
        assert_eq!(d.pop_due(t0 + Duration::from_secs(10)), None);
        let due = d.pop_due(t0 + Duration::from_secs(12));
        assert_eq!(due, Some(slots[1].0));
        let (id, slot) = &mut slots[1];
        Deadlines::taken(slot);
        d.record_now(*id, slot); // nothing handled: still due, so it goes back
        assert_eq!(d.pop_due(t0 + Duration::from_secs(12)), Some(*id));
        Deadlines::taken(slot);
        assert_eq!(d.pop_due(t0 + Duration::from_secs(12)), Some(slots[2].0));
        assert_eq!((d.first(), d.len()), (None, 0));
    }
}
