//! A session as it moves from one node of a cluster to another: everything the node that takes
//! it over needs, as a value with a byte encoding.
//!
//! The encoding reuses the store's records ([`SessionRecord`], [`QueuedRecord`]) inside a small
//! envelope: a format byte, how long the session had been offline, the session record, its
//! queue, its unfinished outbound flows, its inbound QoS 2 identifiers waiting for PUBREL and
//! the digests of its last released ones. An image comes from another process: decoding
//! checks everything, never panics, and sizes no allocation from a claimed count beyond what
//! the bytes can hold.

use std::collections::BTreeSet;

use crate::broker::persist::{QueuedRecord, SessionRecord, StoreError};
use crate::broker::replay::MAX_COMPLETED;
use crate::codec::Publish;
use crate::types::{ByteStr, PacketId, QoS};

/// The format byte an image starts with.
const IMAGE_FORMAT: u8 = 0xC1;

/// Each list of an image holds at most this many entries (packet identifiers bound the flows
/// anyway; a queue longer than this is refused as hostile before anything is built).
pub const MAX_IMAGE_ENTRIES: usize = 1 << 20;

/// A session taken from one node ([`Router::export_session`]) to be given to another
/// ([`Router::import_session`]): its client id, owner, protocol, expiry, subscriptions with
/// their options and identifiers, its will, its queued messages in order, its unfinished
/// outbound QoS 1/2 flows with their packet identifiers, and its inbound QoS 2 state.
///
/// Expiry travels as what is left of it: the image counts how long the session had been
/// offline, and a queued message how many seconds it has to live, so the clocks of the two
/// nodes never meet.
///
/// [`Router::export_session`]: crate::broker::Router::export_session
/// [`Router::import_session`]: crate::broker::Router::import_session
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionImage {
    /// The session (its `disconnected_at` unused: see `offline_for`).
    pub(crate) session: SessionRecord,
    /// Seconds the session had been offline when it was exported (0: it was online).
    pub(crate) offline_for: u32,
    /// Queued messages, oldest first; `expires_at` is the seconds left to live from the
    /// export, `seq` the place in the queue, `stored_at` unused.
    pub(crate) queued: Vec<QueuedRecord>,
    /// Outbound flows in the order they started: a PUBLISH waiting for PUBACK / PUBREC
    /// (`Some`, as in `queued`) or a PUBREL waiting for PUBCOMP (`None`).
    pub(crate) outbound: Vec<(PacketId, Option<QueuedRecord>)>,
    /// Inbound QoS 2 identifiers answered with PUBREC, waiting for PUBREL.
    pub(crate) incoming_qos2: Vec<PacketId>,
    /// The last released inbound QoS 2 identifiers with their messages' digests, oldest first.
    pub(crate) completed: Vec<(PacketId, u64)>,
}

/// What is wrong with a session image's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The bytes end before the image does.
    #[error("session image truncated")]
    Truncated,
    /// The first byte is not a format this version reads.
    #[error("unknown session image format {0:#04x}")]
    UnknownFormat(u8),
    /// Bytes follow the image.
    #[error("session image followed by trailing bytes")]
    TrailingBytes,
    /// A list claims more entries than the bytes can hold or [`MAX_IMAGE_ENTRIES`] allows.
    #[error("session image lists too many {0}")]
    TooMany(&'static str),
    /// A record inside the image is corrupt.
    #[error("session image: {0}")]
    Record(#[from] StoreError),
    /// The image is well formed but does not make sense.
    #[error("invalid session image: {0}")]
    Invalid(&'static str),
}

impl SessionImage {
    /// The client identifier of the session.
    pub fn client_id(&self) -> &ByteStr {
        &self.session.client_id
    }

    /// Seconds the session outlives its connection; `u32::MAX` is forever.
    pub fn expiry(&self) -> u32 {
        self.session.expiry
    }

    /// How many subscriptions the session holds.
    pub fn subscriptions(&self) -> usize {
        self.session.subscriptions.len()
    }

    /// The messages waiting for the session: queued ones first to last, then the unfinished
    /// outbound PUBLISHes (which are resent first), without packet identifiers.
    pub fn messages(&self) -> impl Iterator<Item = &Publish> {
        let flows = self.outbound.iter().filter_map(|(_, q)| q.as_ref());
        flows.chain(&self.queued).map(|q| &q.publish)
    }

    /// The image's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, ImageError> {
        let mut out = vec![IMAGE_FORMAT];
        out.extend_from_slice(&self.offline_for.to_be_bytes());
        put_block(&mut out, &self.session.encode()?)?;
        put_count(&mut out, self.queued.len())?;
        for q in &self.queued {
            put_message(&mut out, q)?;
        }
        put_count(&mut out, self.outbound.len())?;
        for (id, flow) in &self.outbound {
            out.extend_from_slice(&id.get().to_be_bytes());
            match flow {
                Some(q) => {
                    out.push(1);
                    put_message(&mut out, q)?;
                }
                None => out.push(0),
            }
        }
        put_count(&mut out, self.incoming_qos2.len())?;
        for id in &self.incoming_qos2 {
            out.extend_from_slice(&id.get().to_be_bytes());
        }
        put_count(&mut out, self.completed.len())?;
        for (id, digest) in &self.completed {
            out.extend_from_slice(&id.get().to_be_bytes());
            out.extend_from_slice(&digest.to_be_bytes());
        }
        Ok(out)
    }

    /// Reads an image written by [`SessionImage::encode`], checking everything.
    pub fn decode(bytes: &[u8]) -> Result<SessionImage, ImageError> {
        let mut r = Reader(bytes);
        match r.u8()? {
            IMAGE_FORMAT => {}
            other => return Err(ImageError::UnknownFormat(other)),
        }
        let offline_for = r.u32()?;
        let session = SessionRecord::decode(r.block()?)?;
        // A queued message takes at least 6 bytes (flag, length, a record of at least one).
        let n = r.count(6, "queued messages")?;
        let mut queued = Vec::with_capacity(n);
        for _ in 0..n {
            queued.push(r.message(&session.client_id)?);
        }
        let n = r.count(3, "outbound flows")?;
        let mut outbound = Vec::with_capacity(n);
        let mut ids = BTreeSet::new();
        for _ in 0..n {
            let id = r.packet_id()?;
            if !ids.insert(id) {
                return Err(ImageError::Invalid("an outbound packet identifier twice"));
            }
            let flow = match r.u8()? {
                0 => None,
                1 => {
                    let q = r.message(&session.client_id)?;
                    if q.publish.qos == QoS::AtMostOnce {
                        return Err(ImageError::Invalid("a qos 0 outbound flow"));
                    }
                    Some(q)
                }
                _ => return Err(ImageError::Invalid("bad outbound flow kind")),
            };
            outbound.push((id, flow));
        }
        let n = r.count(2, "inbound qos 2 identifiers")?;
        let mut incoming_qos2 = Vec::with_capacity(n);
        for _ in 0..n {
            incoming_qos2.push(r.packet_id()?);
        }
        incoming_qos2.sort();
        incoming_qos2.dedup();
        let n = r.count(10, "completed identifiers")?;
        if n > MAX_COMPLETED {
            return Err(ImageError::TooMany("completed identifiers"));
        }
        let mut completed = Vec::with_capacity(n);
        for _ in 0..n {
            completed.push((r.packet_id()?, r.u64()?));
        }
        if !r.0.is_empty() {
            return Err(ImageError::TrailingBytes);
        }
        Ok(SessionImage {
            session,
            offline_for,
            queued,
            outbound,
            incoming_qos2,
            completed,
        })
    }
}

/// Appends a u32 count.
fn put_count(out: &mut Vec<u8>, n: usize) -> Result<(), ImageError> {
    match u32::try_from(n) {
        Ok(n) if n as usize <= MAX_IMAGE_ENTRIES => {
            out.extend_from_slice(&n.to_be_bytes());
            Ok(())
        }
        _ => Err(ImageError::TooMany("entries")),
    }
}

/// Appends a u32-length-prefixed block.
fn put_block(out: &mut Vec<u8>, block: &[u8]) -> Result<(), ImageError> {
    let len = u32::try_from(block.len()).map_err(|_| ImageError::Invalid("a record too long"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(block);
    Ok(())
}

/// Appends a message: whether it has a packet identifier, then its record (whose PUBLISH
/// carries a placeholder identifier when it has none).
fn put_message(out: &mut Vec<u8>, q: &QueuedRecord) -> Result<(), ImageError> {
    out.push(u8::from(q.packet_id.is_some()));
    put_block(out, &q.encode()?)
}

/// Reads an image front to back; every shortfall is [`ImageError::Truncated`].
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ImageError> {
        if self.0.len() < n {
            return Err(ImageError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, ImageError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, ImageError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, ImageError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, ImageError> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }

    fn packet_id(&mut self) -> Result<PacketId, ImageError> {
        PacketId::new(self.u16()?).ok_or(ImageError::Invalid("packet identifier 0"))
    }

    fn block(&mut self) -> Result<&'a [u8], ImageError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// A count of entries of at least `min` bytes each: never more than the rest can hold.
    fn count(&mut self, min: usize, what: &'static str) -> Result<usize, ImageError> {
        let n = self.u32()? as usize;
        if n > MAX_IMAGE_ENTRIES || n.saturating_mul(min) > self.0.len() {
            return Err(ImageError::TooMany(what));
        }
        Ok(n)
    }

    /// A message of the session `client_id` (written by `put_message`).
    fn message(&mut self, client_id: &ByteStr) -> Result<QueuedRecord, ImageError> {
        let has_id = match self.u8()? {
            0 => false,
            1 => true,
            _ => return Err(ImageError::Invalid("bad packet identifier flag")),
        };
        let mut q = QueuedRecord::decode(self.block()?)?;
        if q.client_id != *client_id {
            return Err(ImageError::Invalid("a message of another session"));
        }
        if !has_id {
            q.packet_id = None;
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::broker::persist::{SessionOwner, StoredSubscription, StoredWill};
    use crate::codec::SubscriptionOptions;
    use crate::types::{ProtocolVersion, TopicFilter, TopicName};

    fn message(seq: u64, qos: QoS, id: Option<u16>) -> QueuedRecord {
        let mut p = Publish::new(TopicName::from_static("a/b"), format!("m{seq}"));
        p.qos = qos;
        p.properties.subscription_identifiers = vec![NonZeroU32::new(4).unwrap()];
        QueuedRecord {
            client_id: ByteStr::from_static("c1"),
            seq,
            publish: p,
            packet_id: id.and_then(PacketId::new),
            stored_at: 0,
            expires_at: (seq == 1).then_some(30),
        }
    }

    pub(crate) fn image() -> SessionImage {
        let mut will = Publish::new(TopicName::from_static("w"), &b"bye"[..]);
        will.qos = QoS::AtLeastOnce;
        SessionImage {
            session: SessionRecord {
                client_id: ByteStr::from_static("c1"),
                protocol: ProtocolVersion::V5,
                expiry: 600,
                disconnected_at: None,
                subscriptions: vec![StoredSubscription {
                    filter: TopicFilter::from_static("a/+"),
                    options: SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        ..SubscriptionOptions::default()
                    },
                    identifier: NonZeroU32::new(4),
                }],
                will: Some(StoredWill {
                    publish: will,
                    delay: 10,
                }),
                owner: SessionOwner::User(ByteStr::from_static("alice")),
            },
            offline_for: 12,
            queued: vec![
                message(0, QoS::AtLeastOnce, None),
                message(1, QoS::AtMostOnce, None),
                message(2, QoS::ExactlyOnce, Some(9)),
            ],
            outbound: vec![
                (
                    PacketId::new(3).unwrap(),
                    Some(message(0, QoS::AtLeastOnce, Some(3))),
                ),
                (PacketId::new(4).unwrap(), None),
            ],
            incoming_qos2: vec![PacketId::new(7).unwrap()],
            completed: vec![(PacketId::new(5).unwrap(), 0xfeed)],
        }
    }

    /// [`image`] without its queue, flows and QoS 2 state.
    fn bare() -> SessionImage {
        SessionImage {
            queued: Vec::new(),
            outbound: Vec::new(),
            incoming_qos2: Vec::new(),
            completed: Vec::new(),
            ..image()
        }
    }

    #[test]
    fn an_image_reads_back_exactly() {
        let i = image();
        assert_eq!(SessionImage::decode(&i.encode().unwrap()).unwrap(), i);
        let bare = bare();
        assert_eq!(SessionImage::decode(&bare.encode().unwrap()).unwrap(), bare);
        let order: Vec<_> = i.messages().map(|p| p.payload.clone()).collect();
        assert_eq!(
            order,
            ["m0", "m0", "m1", "m2"].map(|m| bytes::Bytes::from_static(m.as_bytes()))
        );
    }

    #[test]
    fn every_cut_and_every_byte_change_is_a_typed_error_or_a_stable_image() {
        let bytes = image().encode().unwrap();
        for n in 0..bytes.len() {
            assert!(SessionImage::decode(&bytes[..n]).is_err(), "cut at {n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            SessionImage::decode(&longer),
            Err(ImageError::TrailingBytes)
        );
        for at in 0..bytes.len() {
            for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[at] = v;
                // Never a panic; what decodes encodes to bytes that decode to it again.
                if let Ok(i) = SessionImage::decode(&b) {
                    let again = i.encode().expect("a decoded image encodes");
                    assert_eq!(SessionImage::decode(&again).unwrap(), i, "byte {at}={v}");
                }
            }
        }
    }

    #[test]
    fn hostile_counts_and_contents_are_refused_before_anything_is_built() {
        assert_eq!(
            SessionImage::decode(&[0x02]),
            Err(ImageError::UnknownFormat(2))
        );
        let bare = bare();
        let mut b = bare.encode().unwrap();
        // The four counts end the image: claim four billion queued messages.
        let at = b.len() - 16;
        b[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            SessionImage::decode(&b),
            Err(ImageError::TooMany("queued messages"))
        );
        // A message of another session.
        let mut other = image();
        other.queued[0].client_id = ByteStr::from_static("c2");
        let b = other.encode().unwrap();
        assert!(matches!(
            SessionImage::decode(&b),
            Err(ImageError::Invalid(_))
        ));
        // The same outbound packet identifier twice.
        let mut twice = image();
        twice.outbound[1].0 = twice.outbound[0].0;
        let b = twice.encode().unwrap();
        assert!(matches!(
            SessionImage::decode(&b),
            Err(ImageError::Invalid(_))
        ));
        // More completed identifiers than a session keeps.
        let mut many = bare;
        many.completed = (1..=MAX_COMPLETED as u16 + 1)
            .map(|i| (PacketId::new(i).unwrap(), 0))
            .collect();
        let b = many.encode().unwrap();
        assert_eq!(
            SessionImage::decode(&b),
            Err(ImageError::TooMany("completed identifiers"))
        );
    }
}
