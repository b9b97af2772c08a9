//! The broker's memory budget, and what things weigh.
//!
//! Memory is accounted where it is owned: each owner (a session's queue, the retained store,
//! a session and its subscriptions) holds a [`Charge`] for the bytes it keeps, which adds
//! them to the one [`Budget`] when taken and gives them back when dropped, so the sum can
//! never drift from what is held. The budget answers one question before anything new is
//! accepted: is there room? At the limit, new PUBLISHes and new connections are refused
//! (with Quota exceeded) while what is already held keeps being served.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::broker::mail::Delivery;
use crate::codec::Publish;

/// What a message weighs in memory: topic, payload and properties at their real size, plus
/// the message's own struct.
pub(crate) fn message_weight(p: &Publish) -> usize {
    size_of::<Publish>() + content_weight(p)
}

/// What a message's content weighs: topic, payload and properties at their real size (user
/// properties are kept in their wire form). What `max_queued_bytes` counts.
pub(crate) fn content_weight(p: &Publish) -> usize {
    let props = &p.properties;
    p.topic.len()
        + p.payload.len()
        + props.response_topic.as_ref().map_or(0, |t| t.len())
        + props.correlation_data.as_ref().map_or(0, |c| c.len())
        + props.content_type.as_ref().map_or(0, |c| c.len())
        + props.subscription_identifiers.len() * size_of::<u32>()
        + props.user_properties.encoded_len()
}

/// What a queued delivery's message weighs (its content, counted in every queue that holds
/// it, although the queues share one copy), what `max_queued_bytes` counts.
pub(crate) fn delivery_weight(d: &Delivery) -> usize {
    content_weight(&d.message) + d.subscription_ids.len() * 4
}

/// What a queued delivery costs the memory budget beyond its [`delivery_weight`]: its
/// queue entry and its message's struct.
pub(crate) const DELIVERY_OVERHEAD: usize = size_of::<Delivery>() + size_of::<Publish>() + 16;

/// The room a new connection needs in the budget: a session and a connection's buffers at
/// their usual size.
pub(crate) const CONNECTION_RESERVE: usize = 8 << 10;

#[derive(Debug)]
struct Shared {
    limit: usize,
    used: AtomicUsize,
    refused: AtomicU64,
}

/// The broker's memory budget: the bytes its owners hold, against `memory_limit`.
///
/// Cloned into every connection, which asks [`Budget::has_room`] before it takes a new
/// PUBLISH; only [`Charge`]s change what is used.
#[derive(Debug, Clone)]
pub(crate) struct Budget(Arc<Shared>);

impl Budget {
    /// A budget of `limit` bytes (`usize::MAX`: unlimited).
    pub(crate) fn new(limit: usize) -> Budget {
        Budget(Arc::new(Shared {
            limit,
            used: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        }))
    }

    /// Bytes held.
    pub(crate) fn used(&self) -> usize {
        self.0.used.load(Ordering::Relaxed)
    }

    /// Whether `bytes` more would stay within the limit.
    pub(crate) fn has_room(&self, bytes: usize) -> bool {
        self.used().saturating_add(bytes) <= self.0.limit
    }

    /// Counts a message or connection refused for the budget.
    pub(crate) fn count_refused(&self) {
        self.0.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Messages and connections refused for the budget so far.
    pub(crate) fn refused(&self) -> u64 {
        self.0.refused.load(Ordering::Relaxed)
    }

    /// A charge of `bytes` against this budget, held until dropped.
    pub(crate) fn charge(&self, bytes: usize) -> Charge {
        self.0.used.fetch_add(bytes, Ordering::Relaxed);
        Charge {
            budget: self.clone(),
            bytes,
        }
    }
}

/// Bytes an owner holds, counted in its [`Budget`] until the charge is dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: Budget,
    bytes: usize,
}

impl Charge {
    /// The bytes charged.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Changes the charge to `bytes` (an owner that grew or shrank).
    pub(crate) fn set(&mut self, bytes: usize) {
        let used = &self.budget.0.used;
        if bytes >= self.bytes {
            used.fetch_add(bytes - self.bytes, Ordering::Relaxed);
        } else {
            used.fetch_sub(self.bytes - bytes, Ordering::Relaxed);
        }
        self.bytes = bytes;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.0.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::types::{ByteStr, TopicName};

    #[test]
    fn charges_add_up_and_give_back_when_dropped() {
        let b = Budget::new(100);
        let mut c1 = b.charge(40);
        let c2 = b.charge(50);
        assert_eq!(b.used(), 90);
        assert!(b.has_room(10) && !b.has_room(11));
        c1.set(60);
        assert!(!b.has_room(1));
        drop(c2);
        assert_eq!(b.used(), 60);
        c1.set(5);
        assert_eq!(b.used(), 5);
        drop(c1);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn user_properties_weigh_what_they_weigh_on_the_wire() {
        let t = TopicName::new("t").unwrap();
        let plain = message_weight(&Publish::new(t.clone(), Bytes::from_static(b"abc")));
        let mut p = Publish::new(t, Bytes::from_static(b"abc"));
        p.properties.user_properties = vec![(ByteStr::new(), ByteStr::new()); 10].into();
        // Five bytes each: the identifier and two empty strings' lengths.
        assert_eq!(message_weight(&p), plain + 10 * 5);
    }
}
