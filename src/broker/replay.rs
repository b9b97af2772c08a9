//! Replays of released inbound QoS 2 messages.
//!
//! After a QoS 2 sender sends PUBREL it must never send that PUBLISH again, and the spec lets
//! the receiver forget the packet identifier at PUBREL: a later PUBLISH with it is a new
//! message. Some clients break this rule when a connection ends before their PUBCOMP arrives:
//! paho-mqtt for Python (2.2), whose reconnect turns "resend PUBREL" into "resend PUBLISH" when
//! a connection attempt fails before the next one succeeds, sends the released message again,
//! without DUP, under the same identifier. A broker that follows the spec to the letter routes
//! it a second time, and a QoS 2 subscriber gets it twice.
//!
//! So each session remembers, for the last [`MAX_COMPLETED`] identifiers of QoS 2 messages it
//! received, a digest of the message (written to the store with the "PUBREC sent" state, in
//! the same transaction, and kept past the PUBREL, so no crash point forgets it). On a later
//! connection of the session, the first PUBLISH that reuses such an identifier, with no flow
//! open under it, and repeats the topic, payload, QoS and retain flag is taken for the replay
//! it almost surely is: answered with PUBREC and not routed. Any other PUBLISH with that
//! identifier is a new message (and replaces the entry). Within the connection that released
//! an identifier it is not checked: a client reuses an identifier only after PUBCOMP, and
//! there it got it. An identifier forgotten because its PUBREL did not come in time
//! (`await_rel_timeout`) is the exception: the client never got its PUBCOMP, so the connection
//! remembers it at once, and a late resend of that PUBLISH is answered, not routed again.
//!
//! The price: a client that gets its PUBCOMP, reconnects, and as its first use of that same
//! identifier publishes a message identical in topic, payload, QoS and retain flag has it
//! acknowledged and not routed again.

use std::collections::VecDeque;

use crate::codec::Publish;
use crate::types::PacketId;

/// Released identifiers a session remembers (the oldest is forgotten first).
pub(crate) const MAX_COMPLETED: usize = 256;

/// The digest of what a replay repeats: topic, payload, QoS and retain flag (FNV-1a, 64 bits:
/// stable across versions and restarts, as the store keeps it).
pub(crate) fn digest(p: &Publish) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(&(p.topic.len() as u64).to_le_bytes());
    eat(p.topic.as_bytes());
    eat(&p.payload);
    eat(&[p.qos as u8, u8::from(p.retain)]);
    h
}

/// A session's last inbound QoS 2 identifiers with the digests of their messages, oldest
/// first, at most [`MAX_COMPLETED`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Completed(VecDeque<(PacketId, u64)>);

impl Completed {
    /// Remembers that `id` carried a message with `digest`; returns the identifier forgotten
    /// to make room, if any.
    pub(crate) fn push(&mut self, id: PacketId, digest: u64) -> Option<PacketId> {
        self.remove(id);
        self.0.push_back((id, digest));
        if self.0.len() > MAX_COMPLETED {
            return self.0.pop_front().map(|(id, _)| id);
        }
        None
    }

    /// Forgets `id`; whether it was remembered.
    pub(crate) fn remove(&mut self, id: PacketId) -> bool {
        match self.0.iter().position(|(i, _)| *i == id) {
            Some(at) => {
                self.0.remove(at);
                true
            }
            None => false,
        }
    }

    /// Forgets `id`, giving back its digest if it was remembered.
    pub(crate) fn take(&mut self, id: PacketId) -> Option<u64> {
        let at = self.0.iter().position(|(i, _)| *i == id)?;
        self.0.remove(at).map(|(_, digest)| digest)
    }

    /// The identifiers and digests it remembers, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (PacketId, u64)> + '_ {
        self.0.iter().copied()
    }

    /// How many it remembers.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{QoS, TopicName};

    fn id(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    #[test]
    fn the_digest_covers_topic_payload_qos_and_retain_only() {
        let mut p = Publish::new(TopicName::from_static("a/b"), &b"x"[..]);
        p.qos = QoS::ExactlyOnce;
        let d = digest(&p);
        let mut same = p.clone();
        same.dup = true;
        same.packet_id = Some(id(9));
        assert_eq!(digest(&same), d);
        let mut other = p.clone();
        other.payload = bytes::Bytes::from_static(b"y");
        assert_ne!(digest(&other), d);
        // The topic's length is part of it: "a/b" + "x" is not "a/bx" + "".
        let shifted = Publish::new(TopicName::from_static("a/bx"), &b""[..]);
        let mut shifted = shifted;
        shifted.qos = QoS::ExactlyOnce;
        assert_ne!(digest(&shifted), d);
        let mut retained = p.clone();
        retained.retain = true;
        assert_ne!(digest(&retained), d);
    }

    #[test]
    fn remembers_the_last_released_identifiers_and_forgets_the_oldest() {
        let mut c = Completed::default();
        for n in 1..=MAX_COMPLETED as u16 {
            assert_eq!(c.push(id(n), u64::from(n)), None);
        }
        // Released again: moves to the back, nothing forgotten.
        assert_eq!(c.push(id(1), 7), None);
        assert_eq!(c.push(id(500), 5), Some(id(2)));
        assert!(c.remove(id(1)) && !c.remove(id(1)) && !c.remove(id(2)));
        assert_eq!(c.len(), MAX_COMPLETED - 1);
        assert_eq!(c.take(id(500)), Some(5));
        assert_eq!(c.take(id(500)), None);
    }
}
