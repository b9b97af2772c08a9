//! The connections' deadlines in [`Broker`](super::Broker), ordered, so the earliest is found
//! in O(log n) instead of by asking every connection.

use std::collections::BTreeSet;
use std::time::Instant;

use super::mail::ConnId;
use crate::hash::IdMap;

/// Each connection's next deadline, at most one per connection, in deadline order.
///
/// A connection's deadline only changes when it gets an input (bytes, router mail, a
/// timeout), and the broker drains every such connection before it returns: that drain
/// records the new deadline with [`Deadlines::set`].
#[derive(Debug, Default)]
pub(super) struct Deadlines {
    order: BTreeSet<(Instant, ConnId)>,
    by_conn: IdMap<ConnId, Instant>,
}

impl Deadlines {
    /// Records `conn`'s deadline (`None`: it has none).
    pub(super) fn set(&mut self, conn: ConnId, at: Option<Instant>) {
        let old = match at {
            Some(at) => self.by_conn.insert(conn, at),
            None => self.by_conn.remove(&conn),
        };
        if old == at {
            return;
        }
        if let Some(old) = old {
            self.order.remove(&(old, conn));
        }
        if let Some(at) = at {
            self.order.insert((at, conn));
        }
    }

    /// The earliest deadline.
    pub(super) fn first(&self) -> Option<Instant> {
        self.order.first().map(|&(at, _)| at)
    }

    /// Takes out a connection whose deadline is due at `now`, if any.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<ConnId> {
        let &(at, conn) = self.order.first()?;
        if at > now {
            return None;
        }
        self.order.pop_first();
        self.by_conn.remove(&conn);
        Some(conn)
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

    #[test]
    fn the_earliest_deadline_follows_every_change() {
        let t0 = crate::test_instant();
        let at = |s| Some(t0 + Duration::from_secs(s));
        let mut d = Deadlines::default();
        d.set(ConnId(1), at(5));
        d.set(ConnId(2), at(3));
        d.set(ConnId(3), at(3));
        assert_eq!(d.first(), at(3));
        d.set(ConnId(2), at(9)); // moved later
        d.set(ConnId(3), None); // no deadline any more
        assert_eq!(d.first(), at(5));
        assert_eq!(d.pop_due(t0 + Duration::from_secs(4)), None);
        assert_eq!(d.pop_due(t0 + Duration::from_secs(9)), Some(ConnId(1)));
        assert_eq!(d.pop_due(t0 + Duration::from_secs(9)), Some(ConnId(2)));
        assert_eq!(d.pop_due(t0 + Duration::from_secs(9)), None);
        assert_eq!((d.first(), d.len()), (None, 0));
    }
}
