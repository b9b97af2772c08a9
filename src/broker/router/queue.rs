//! A session's queue of deliveries waiting to be released, and the counts it keeps of itself.
//!
//! Every count (messages, bytes, QoS 0 messages, where returned deliveries go back in) is
//! changed only here, by the operation that changes the queue: nothing outside can make them
//! disagree with what the queue holds. Each entry records the weight and QoS it was counted
//! with, so a delivery changed in place (the store numbering it) is taken out exactly as it
//! was put in.

use std::collections::VecDeque;

use crate::broker::budget::{delivery_weight, Budget, Charge, DELIVERY_OVERHEAD};
use crate::broker::mail::Delivery;

/// A delivery and what the queue counted for it.
#[derive(Debug)]
struct Entry {
    delivery: Delivery,
    /// Its weight in bytes (see [`delivery_weight`]) when it was queued.
    weight: usize,
    qos0: bool,
}

/// The deliveries of one session waiting to go out, oldest first.
#[derive(Debug, Default)]
pub(super) struct SessionQueue {
    entries: VecDeque<Entry>,
    bytes: usize,
    qos0: usize,
    /// Where the next delivery put back goes (behind those put back before it).
    returned: usize,
    /// `bytes`, in the broker's memory budget.
    charge: Option<Charge>,
}

impl SessionQueue {
    /// An empty queue whose bytes count in `budget`.
    pub(super) fn new(budget: &Budget) -> SessionQueue {
        SessionQueue {
            charge: Some(budget.charge(0)),
            ..SessionQueue::default()
        }
    }

    fn entry(delivery: Delivery) -> Entry {
        Entry {
            weight: delivery_weight(&delivery),
            qos0: delivery.is_qos0(),
            delivery,
        }
    }

    /// Mirrors the queue in the memory budget: its bytes and every entry's overhead.
    fn recharge(&mut self) {
        if let Some(c) = &mut self.charge {
            c.set(self.bytes + self.entries.len() * DELIVERY_OVERHEAD);
        }
    }

    fn count_in(&mut self, e: &Entry) {
        self.bytes += e.weight;
        self.qos0 += usize::from(e.qos0);
    }

    fn count_out(&mut self, e: Entry) -> Delivery {
        self.bytes -= e.weight;
        self.qos0 -= usize::from(e.qos0);
        e.delivery
    }

    /// Deliveries waiting.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The weight of what waits, in bytes (whole messages: topic, properties and payload).
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// QoS 0 deliveries waiting (the first to go when the queue overflows).
    #[cfg(test)]
    pub(super) fn qos0(&self) -> usize {
        self.qos0
    }

    /// Queues `d` at the back.
    pub(super) fn push(&mut self, d: Delivery) {
        let e = Self::entry(d);
        self.count_in(&e);
        self.entries.push_back(e);
        self.recharge();
    }

    /// Puts a delivery that was never sent back at the front, behind those put back before
    /// it since [`SessionQueue::reset_returned`].
    pub(super) fn put_back(&mut self, d: Delivery) {
        let e = Self::entry(d);
        self.count_in(&e);
        let at = self.returned.min(self.entries.len());
        self.entries.insert(at, e);
        self.returned = at + 1;
        self.recharge();
    }

    /// Deliveries put back from now on go to the very front again.
    pub(super) fn reset_returned(&mut self) {
        self.returned = 0;
    }

    /// The oldest delivery.
    pub(super) fn front(&self) -> Option<&Delivery> {
        self.entries.front().map(|e| &e.delivery)
    }

    /// The newest delivery, to number it in the store.
    pub(super) fn back_mut(&mut self) -> Option<&mut Delivery> {
        self.entries.back_mut().map(|e| &mut e.delivery)
    }

    /// Takes the oldest delivery.
    pub(super) fn pop(&mut self) -> Option<Delivery> {
        let e = self.entries.pop_front()?;
        self.returned = self.returned.saturating_sub(1);
        let d = self.count_out(e);
        self.recharge();
        Some(d)
    }

    /// Takes the oldest QoS 0 delivery, to make room (none when only QoS 1/2 ones wait).
    pub(super) fn drop_oldest_qos0(&mut self) -> Option<Delivery> {
        if self.qos0 == 0 {
            return None;
        }
        let i = self.entries.iter().position(|e| e.qos0)?;
        let e = self.entries.remove(i)?;
        if i < self.returned {
            self.returned -= 1;
        }
        let d = self.count_out(e);
        self.recharge();
        Some(d)
    }

    /// Keeps only the deliveries `keep` accepts, in order; the others are taken out (counts
    /// and budget with them) and handed back.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Delivery) -> bool) -> Vec<Delivery> {
        let mut gone = Vec::new();
        let mut kept = VecDeque::with_capacity(self.entries.len());
        for (i, e) in std::mem::take(&mut self.entries).into_iter().enumerate() {
            if keep(&e.delivery) {
                kept.push_back(e);
            } else {
                if i < self.returned {
                    self.returned -= 1;
                }
                gone.push(self.count_out(e));
            }
        }
        self.entries = kept;
        self.recharge();
        gone
    }

    /// The deliveries, oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Delivery> {
        self.entries.iter().map(|e| &e.delivery)
    }

    /// The deliveries, oldest first, to number them in the store. Their weight and QoS stay
    /// counted as they were queued.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Delivery> {
        self.entries.iter_mut().map(|e| &mut e.delivery)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::codec::Publish;
    use crate::types::{QoS, TopicName};

    fn d(qos: QoS, payload: &'static [u8]) -> Delivery {
        let mut p = Publish::new(TopicName::new("t").unwrap(), Bytes::from_static(payload));
        p.qos = qos;
        Delivery {
            qos,
            ..Delivery::of(p)
        }
    }

    #[test]
    fn retain_takes_out_what_it_refuses_with_its_counts() {
        let budget = Budget::new(usize::MAX);
        let mut q = SessionQueue::new(&budget);
        q.push(d(QoS::AtMostOnce, b"a"));
        q.push(d(QoS::AtLeastOnce, b"bb"));
        q.push(d(QoS::AtMostOnce, b"ccc"));
        let before = q.bytes();
        let gone = q.retain(|d| !d.is_qos0());
        assert_eq!(gone.len(), 2);
        assert_eq!((q.len(), q.qos0()), (1, 0));
        assert!(q.bytes() < before && q.bytes() > 0);
        assert_eq!(q.front().map(|d| d.payload_len()), Some(2));
    }

    #[test]
    fn put_back_counts_a_qos0_delivery_like_push() {
        // A QoS 0 delivery parked and returned after its connection closed: popping it
        // again must not underflow the QoS 0 count.
        let mut q = SessionQueue::default();
        q.push(d(QoS::AtLeastOnce, b"a"));
        q.put_back(d(QoS::AtMostOnce, b"b"));
        assert_eq!((q.len(), q.qos0()), (2, 1));
        let first = q.pop().unwrap();
        assert_eq!(first.message.payload, Bytes::from_static(b"b"));
        assert_eq!(q.qos0(), 0);
        q.pop().unwrap();
        assert_eq!((q.len(), q.qos0(), q.bytes()), (0, 0, 0));
    }

    #[test]
    fn put_back_keeps_the_order_of_returned_deliveries() {
        let mut q = SessionQueue::default();
        q.push(d(QoS::AtLeastOnce, b"new"));
        q.put_back(d(QoS::AtLeastOnce, b"1"));
        q.put_back(d(QoS::AtLeastOnce, b"2"));
        let order: Vec<Bytes> = q.iter().map(|d| d.message.payload.clone()).collect();
        assert_eq!(order, [&b"1"[..], b"2", b"new"]);
        q.reset_returned();
        q.put_back(d(QoS::AtLeastOnce, b"0"));
        assert_eq!(q.front().unwrap().message.payload, Bytes::from_static(b"0"));
    }

    #[test]
    fn drop_oldest_qos0_skips_qos1_and_keeps_counts() {
        let mut q = SessionQueue::default();
        q.push(d(QoS::AtLeastOnce, b"keep"));
        q.push(d(QoS::AtMostOnce, b"old"));
        q.push(d(QoS::AtMostOnce, b"young"));
        let before = q.bytes();
        let dropped = q.drop_oldest_qos0().unwrap();
        assert_eq!(dropped.message.payload, Bytes::from_static(b"old"));
        assert_eq!((q.len(), q.qos0()), (2, 1));
        assert!(q.bytes() < before);
        assert!(q.drop_oldest_qos0().is_some());
        assert!(q.drop_oldest_qos0().is_none());
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn the_budget_holds_what_the_queue_holds() {
        let budget = Budget::new(usize::MAX);
        let mut q = SessionQueue::new(&budget);
        q.push(d(QoS::AtMostOnce, b"x"));
        q.put_back(d(QoS::AtLeastOnce, b"y"));
        assert_eq!(budget.used(), q.bytes() + 2 * DELIVERY_OVERHEAD);
        q.pop();
        assert_eq!(budget.used(), q.bytes() + DELIVERY_OVERHEAD);
        drop(q);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_delivery_changed_in_place_leaves_as_it_was_counted() {
        let mut q = SessionQueue::default();
        q.push(d(QoS::AtMostOnce, b"x"));
        for d in q.iter_mut() {
            d.qos = QoS::AtLeastOnce;
            d.message = Arc::new(Publish::new(
                TopicName::new("a/much/longer/topic").unwrap(),
                Bytes::from_static(b"a larger payload"),
            ));
        }
        q.pop().unwrap();
        assert_eq!((q.qos0(), q.bytes()), (0, 0));
    }
}
