//! Exactly once across JetStream's redeliveries: the durable consumer's bookkeeping of the
//! stream sequences it handed to the router.
//!
//! JetStream delivers a message again (same stream sequence) when the node's
//! acknowledgement did not reach it within the consumer's ack wait: the router or the
//! store was slow, or the NATS connection dropped with acknowledgements unsent. Routed
//! again, a QoS 2 message would reach its subscribers a second time under a new packet
//! id. So the consumer remembers each sequence it handed over: one whose acknowledgement
//! still waits for the router is not routed again, its pending acknowledgement now answers
//! the newest delivery; one already acknowledged is acknowledged again and skipped. A
//! sequence is stamped with the time the stream stored the message: a stream made anew
//! reuses sequences for other messages, which are routed. (This is the running node's
//! memory; the router keeps the same in the store, for a restart: `handle_remote_durable`.)
//!
//! **Cap.** A sequence waiting for the router is remembered until the router gives it
//! back (at most the consumer's `max_ack_pending` of them). Acknowledged sequences are
//! remembered up to [`ACKED_CAP`]; past it the lowest is forgotten, and a redelivery of
//! a forgotten sequence (its acknowledgement was lost while more than [`ACKED_CAP`] newer
//! messages were acknowledged) is routed again: the one case left where a QoS 2
//! subscriber of a live node may see a message twice.

use std::collections::{BTreeSet, HashMap};

use super::channel::AckId;
use crate::store::RemotePosition;

/// How many acknowledged stream sequences the consumer remembers (about 1 MB at most).
pub(crate) const ACKED_CAP: usize = 64 * 1024;

/// What to do with a message the consumer delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A sequence not handed over before: route it.
    Route,
    /// Handed over as `AckId`, its acknowledgement still waits for the router: do not
    /// route it again; the pending acknowledgement answers this delivery.
    Pending(AckId),
    /// Handed over and acknowledged already (the acknowledgement was lost): acknowledge
    /// it again, do not route it.
    Acked,
}

/// The stream sequences handed to the router (see the module's documentation).
#[derive(Debug)]
pub(crate) struct Handed {
    /// Positions whose acknowledgement waits for the router, with their id.
    pending: HashMap<RemotePosition, AckId>,
    /// Positions acknowledged, the lowest forgotten past `cap`.
    acked: BTreeSet<RemotePosition>,
    cap: usize,
}

impl Default for Handed {
    fn default() -> Self {
        Self::with_cap(ACKED_CAP)
    }
}

impl Handed {
    /// Remembers up to `cap` acknowledged sequences.
    pub(crate) fn with_cap(cap: usize) -> Self {
        Handed {
            pending: HashMap::new(),
            acked: BTreeSet::new(),
            cap: cap.max(1),
        }
    }

    /// What to do with a delivery at `seq` (stream sequence and publish time: a stream
    /// made anew reuses sequences).
    pub(crate) fn check(&self, seq: RemotePosition) -> Verdict {
        if let Some(&id) = self.pending.get(&seq) {
            Verdict::Pending(id)
        } else if self.acked.contains(&seq) {
            Verdict::Acked
        } else {
            Verdict::Route
        }
    }

    /// `seq` was handed to the router as `id`.
    pub(crate) fn handed(&mut self, seq: RemotePosition, id: AckId) {
        self.acked.remove(&seq);
        self.pending.insert(seq, id);
    }

    /// The router gave `seq` back: it is acknowledged to JetStream.
    pub(crate) fn acked(&mut self, seq: RemotePosition) {
        self.pending.remove(&seq);
        self.acked.insert(seq);
        while self.acked.len() > self.cap {
            self.acked.pop_first();
        }
    }

    /// How many sequences are remembered (pending and acknowledged).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.pending.len() + self.acked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sequence `n`, as published at one time.
    fn p(n: u64) -> RemotePosition {
        RemotePosition {
            sequence: n,
            stamp: 1,
        }
    }

    #[test]
    fn a_redelivery_is_routed_once() {
        let mut h = Handed::default();
        assert_eq!(h.check(p(7)), Verdict::Route);
        h.handed(p(7), 1);
        // Delivered again before the router gave it back: wait for that, route nothing.
        assert_eq!(h.check(p(7)), Verdict::Pending(1));
        assert_eq!(h.check(p(8)), Verdict::Route);
        h.acked(p(7));
        // Delivered again after the acknowledgement (lost on the way): acknowledge again.
        assert_eq!(h.check(p(7)), Verdict::Acked);
        assert_eq!(h.check(p(7)), Verdict::Acked);
        // The same sequence in a stream made anew is another message.
        let anew = RemotePosition {
            sequence: 7,
            stamp: 2,
        };
        assert_eq!(h.check(anew), Verdict::Route);
    }

    #[test]
    fn acknowledged_sequences_are_capped_lowest_first() {
        let mut h = Handed::with_cap(3);
        for seq in [5, 1, 9, 3] {
            h.handed(p(seq), seq);
        }
        // Pending ones are never forgotten.
        for seq in [5, 1, 9, 3] {
            assert_eq!(h.check(p(seq)), Verdict::Pending(seq));
        }
        for seq in [5, 1, 9, 3] {
            h.acked(p(seq));
        }
        assert_eq!(h.len(), 3);
        // The lowest went first: sequence 1 would be routed again.
        assert_eq!(h.check(p(1)), Verdict::Route);
        for seq in [3, 5, 9] {
            assert_eq!(h.check(p(seq)), Verdict::Acked, "{seq}");
        }
    }

    #[test]
    fn the_cap_holds_under_many_sequences() {
        let mut h = Handed::with_cap(100);
        for seq in 0..10_000 {
            assert_eq!(h.check(p(seq)), Verdict::Route);
            h.handed(p(seq), seq);
            h.acked(p(seq));
        }
        assert_eq!(h.len(), 100);
        assert_eq!(h.check(p(9_999)), Verdict::Acked);
        assert_eq!(h.check(p(9_900)), Verdict::Acked);
        assert_eq!(h.check(p(9_899)), Verdict::Route);
    }
}
