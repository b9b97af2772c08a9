//! The byte format of stored records: a format byte, fixed-width big-endian numbers,
//! length-prefixed strings; the PUBLISH of a retained or queued message is kept as an MQTT 5
//! packet, so every property survives (a queued message's packet identifier is the packet's
//! own; a session's client id is followed by its owner, and its subscriptions by a will flag
//! and, if set, the will's delay and PUBLISH). Decoding checks everything and never panics.

use std::num::NonZeroU32;

use bytes::{Bytes, BytesMut};

use super::{
    QueuedRecord, RetainedRecord, SessionOwner, SessionRecord, StoreError, StoredSubscription,
    StoredWill,
};
use crate::codec::{Decoder, Encoder, Packet, Publish, SubscriptionOptions};
use crate::types::{ByteStr, PacketId, ProtocolVersion, QoS, TopicFilter};

/// The format byte every record starts with (2: queued messages keep their packet id and
/// sessions their will; a store of format 1 is refused as of an unknown format).
const FORMAT: u8 = 2;
/// The format byte of session records that keep their owner (a byte after the client id: 0
/// unknown, 1 anonymous, 2 a user name, which follows); format 2 ones are still read, with
/// an unknown owner.
const SESSION_FORMAT: u8 = 3;

impl RetainedRecord {
    /// The record's key in a store: its topic.
    pub fn key(&self) -> &[u8] {
        self.publish.topic.as_bytes()
    }

    /// The record's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[FORMAT]);
        buf.extend_from_slice(&self.stored_at.to_be_bytes());
        put_publish(&mut buf, &self.publish, None, "retained")?;
        Ok(buf.to_vec())
    }

    /// Reads a record written by [`RetainedRecord::encode`].
    pub fn decode(bytes: &[u8]) -> Result<RetainedRecord, StoreError> {
        let mut r = Reader(bytes, "retained");
        r.format()?;
        let stored_at = r.u64()?;
        let (publish, _) = read_publish(r)?;
        Ok(RetainedRecord { publish, stored_at })
    }
}

impl QueuedRecord {
    /// The record's key in a store: its client id and sequence number.
    pub fn key(&self) -> (&str, u64) {
        (self.client_id.as_str(), self.seq)
    }

    /// The record's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[FORMAT]);
        buf.extend_from_slice(&self.seq.to_be_bytes());
        buf.extend_from_slice(&self.stored_at.to_be_bytes());
        match self.expires_at {
            Some(at) => {
                buf.extend_from_slice(&[1]);
                buf.extend_from_slice(&at.to_be_bytes());
            }
            None => buf.extend_from_slice(&[0]),
        }
        let mut id = Vec::new();
        put_str(&mut id, self.client_id.as_bytes()).ok_or(StoreError::Encode {
            record: "queued",
            reason: "client id too long",
        })?;
        buf.extend_from_slice(&id);
        put_publish(&mut buf, &self.publish, self.packet_id, "queued")?;
        Ok(buf.to_vec())
    }

    /// Reads a record written by [`QueuedRecord::encode`].
    pub fn decode(bytes: &[u8]) -> Result<QueuedRecord, StoreError> {
        let mut r = Reader(bytes, "queued");
        r.format()?;
        let seq = r.u64()?;
        let stored_at = r.u64()?;
        let expires_at = match r.u8()? {
            0 => None,
            1 => Some(r.u64()?),
            _ => return Err(r.corrupt("bad expiry flag")),
        };
        let client_id = ByteStr::from_utf8(r.str()?).map_err(|_| r.corrupt("client id"))?;
        let (publish, packet_id) = read_publish(r)?;
        Ok(QueuedRecord {
            client_id,
            seq,
            publish,
            packet_id,
            stored_at,
            expires_at,
        })
    }
}

/// Appends `publish` as an MQTT 5 PUBLISH with no alias; a QoS 1/2 one carries `packet_id`
/// (or a placeholder: the wire format needs one).
fn put_publish(
    buf: &mut BytesMut,
    publish: &Publish,
    packet_id: Option<PacketId>,
    record: &'static str,
) -> Result<(), StoreError> {
    let mut p = publish.clone();
    p.packet_id = (p.qos != QoS::AtMostOnce).then_some(packet_id.unwrap_or(PacketId::MIN));
    p.properties.topic_alias = None;
    Encoder::new(ProtocolVersion::V5)
        .encode(&Packet::Publish(p), buf)
        .map_err(|_| StoreError::Encode {
            record,
            reason: "the message cannot be encoded as an mqtt 5 publish",
        })?;
    Ok(())
}

/// Reads the PUBLISH that ends a record (written by `put_publish`), and its packet id.
fn read_publish(r: Reader<'_>) -> Result<(Publish, Option<PacketId>), StoreError> {
    let mut buf = BytesMut::from(r.0);
    let p = match Decoder::new(ProtocolVersion::V5).decode(&mut buf) {
        Ok(Some(Packet::Publish(p))) => p,
        Ok(Some(_)) => return Err(r.corrupt("not a publish")),
        Ok(None) => return Err(r.corrupt("truncated")),
        Err(_) => return Err(r.corrupt("the publish does not decode")),
    };
    if !buf.is_empty() {
        return Err(r.corrupt("trailing bytes"));
    }
    let mut publish = p;
    let packet_id = publish.packet_id.take();
    publish.dup = false;
    Ok((publish, packet_id))
}

impl SessionRecord {
    /// The record's key in a store: its client id.
    pub fn key(&self) -> &[u8] {
        self.client_id.as_bytes()
    }

    /// The record's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let too_long = |reason| StoreError::Encode {
            record: "session",
            reason,
        };
        let mut out = vec![SESSION_FORMAT, self.protocol.level()];
        out.extend_from_slice(&self.expiry.to_be_bytes());
        match self.disconnected_at {
            Some(at) => {
                out.push(1);
                out.extend_from_slice(&at.to_be_bytes());
            }
            None => out.push(0),
        }
        put_str(&mut out, self.client_id.as_bytes()).ok_or(too_long("client id too long"))?;
        match &self.owner {
            SessionOwner::Unknown => out.push(0),
            SessionOwner::Anonymous => out.push(1),
            SessionOwner::User(u) => {
                out.push(2);
                put_str(&mut out, u.as_bytes()).ok_or(too_long("user name too long"))?;
            }
        }
        let n = u32::try_from(self.subscriptions.len()).map_err(|_| too_long("too many"))?;
        out.extend_from_slice(&n.to_be_bytes());
        for s in &self.subscriptions {
            put_str(&mut out, s.filter.as_bytes()).ok_or(too_long("filter too long"))?;
            out.push(s.options.byte());
            out.extend_from_slice(&s.identifier.map_or(0, NonZeroU32::get).to_be_bytes());
        }
        match &self.will {
            Some(w) => {
                out.push(1);
                out.extend_from_slice(&w.delay.to_be_bytes());
                let mut buf = BytesMut::from(&out[..]);
                put_publish(&mut buf, &w.publish, None, "session")?;
                out = buf.to_vec();
            }
            None => out.push(0),
        }
        Ok(out)
    }

    /// Reads a record written by [`SessionRecord::encode`].
    pub fn decode(bytes: &[u8]) -> Result<SessionRecord, StoreError> {
        let mut r = Reader(bytes, "session");
        let with_owner = match r.u8()? {
            SESSION_FORMAT => true,
            FORMAT => false,
            _ => return Err(r.corrupt("unknown format")),
        };
        let protocol = match r.u8()? {
            3 => ProtocolVersion::V3_1,
            4 => ProtocolVersion::V3_1_1,
            5 => ProtocolVersion::V5,
            _ => return Err(r.corrupt("unknown protocol level")),
        };
        let expiry = r.u32()?;
        let disconnected_at = match r.u8()? {
            0 => None,
            1 => Some(r.u64()?),
            _ => return Err(r.corrupt("bad disconnect flag")),
        };
        let client_id = ByteStr::from_utf8(r.str()?).map_err(|_| r.corrupt("client id"))?;
        let owner = match with_owner.then(|| r.u8()).transpose()? {
            None | Some(0) => SessionOwner::Unknown,
            Some(1) => SessionOwner::Anonymous,
            Some(2) => SessionOwner::User(
                ByteStr::from_utf8(r.str()?).map_err(|_| r.corrupt("user name"))?,
            ),
            Some(_) => return Err(r.corrupt("bad owner flag")),
        };
        let n = r.u32()?;
        // Each subscription takes at least 7 bytes: a claimed count beyond that is corrupt
        // (and never sizes an allocation).
        if u64::from(n) * 7 > r.0.len() as u64 {
            return Err(r.corrupt("truncated"));
        }
        let mut subscriptions = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let text = ByteStr::from_utf8(r.str()?).map_err(|_| r.corrupt("filter"))?;
            let filter = TopicFilter::from_byte_str(text).map_err(|_| r.corrupt("filter"))?;
            let shared = filter.shared().is_some();
            let options = SubscriptionOptions::read(r.u8()?, ProtocolVersion::V5, shared)
                .map_err(|_| r.corrupt("subscription options"))?;
            let identifier = NonZeroU32::new(r.u32()?);
            subscriptions.push(StoredSubscription {
                filter,
                options,
                identifier,
            });
        }
        let will = match r.u8()? {
            0 if r.0.is_empty() => None,
            0 => return Err(r.corrupt("trailing bytes")),
            1 => {
                let delay = r.u32()?;
                let (publish, _) = read_publish(r)?;
                Some(StoredWill { publish, delay })
            }
            _ => return Err(r.corrupt("bad will flag")),
        };
        Ok(SessionRecord {
            client_id,
            protocol,
            expiry,
            disconnected_at,
            subscriptions,
            will,
            owner,
        })
    }
}

/// Appends a u16-length-prefixed string; `None` if it is too long.
fn put_str(out: &mut Vec<u8>, s: &[u8]) -> Option<()> {
    let len = u16::try_from(s.len()).ok()?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s);
    Some(())
}

/// Reads a record front to back; every shortfall is a corrupt record.
struct Reader<'a>(&'a [u8], &'static str);

impl<'a> Reader<'a> {
    fn corrupt(&self, reason: &'static str) -> StoreError {
        StoreError::Corrupt {
            record: self.1,
            reason,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(self.corrupt("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn format(&mut self) -> Result<(), StoreError> {
        match self.u8()? {
            FORMAT => Ok(()),
            _ => Err(self.corrupt("unknown format")),
        }
    }

    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }

    fn str(&mut self) -> Result<Bytes, StoreError> {
        let b = self.take(2)?;
        let len = usize::from(u16::from_be_bytes([b[0], b[1]]));
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::RetainHandling;
    use crate::types::TopicName;

    fn retained() -> RetainedRecord {
        let mut p = Publish::new(TopicName::from_static("a/b"), &b"hello"[..]);
        p.qos = QoS::ExactlyOnce;
        p.retain = true;
        p.properties.message_expiry_interval = Some(60);
        p.properties.content_type = Some(ByteStr::from_static("text/plain"));
        RetainedRecord {
            publish: p,
            stored_at: 1_700_000_000,
        }
    }

    fn session() -> SessionRecord {
        let opts = SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::SendIfNew,
        };
        SessionRecord {
            client_id: ByteStr::from_static("c1"),
            owner: SessionOwner::User(ByteStr::from_static("alice")),
            protocol: ProtocolVersion::V5,
            expiry: 3600,
            disconnected_at: Some(1_700_000_123),
            subscriptions: vec![
                StoredSubscription {
                    filter: TopicFilter::from_static("a/+"),
                    options: opts,
                    identifier: NonZeroU32::new(7),
                },
                StoredSubscription {
                    filter: TopicFilter::from_static("$share/g/x/#"),
                    options: SubscriptionOptions {
                        no_local: false,
                        ..opts
                    },
                    identifier: None,
                },
            ],
            will: Some(StoredWill {
                publish: {
                    let mut w = retained().publish;
                    w.qos = QoS::ExactlyOnce;
                    w
                },
                delay: 30,
            }),
        }
    }

    fn queued() -> QueuedRecord {
        let mut p = retained().publish;
        p.retain = false;
        p.qos = QoS::AtLeastOnce;
        p.properties.subscription_identifiers = vec![NonZeroU32::new(3).unwrap()];
        QueuedRecord {
            client_id: ByteStr::from_static("c1"),
            seq: 42,
            publish: p,
            packet_id: PacketId::new(9),
            stored_at: 1_700_000_000,
            expires_at: Some(1_700_000_060),
        }
    }

    #[test]
    fn queued_records_read_back_exactly_and_every_cut_is_a_typed_error() {
        let q = queued();
        assert_eq!(QueuedRecord::decode(&q.encode().unwrap()).unwrap(), q);
        let mut forever = queued();
        forever.expires_at = None;
        forever.publish.qos = QoS::AtMostOnce;
        forever.packet_id = None;
        assert_eq!(
            QueuedRecord::decode(&forever.encode().unwrap()).unwrap(),
            forever
        );
        let b = q.encode().unwrap();
        for n in 0..b.len() {
            assert!(
                matches!(
                    QueuedRecord::decode(&b[..n]),
                    Err(StoreError::Corrupt {
                        record: "queued",
                        ..
                    })
                ),
                "queued cut at {n}"
            );
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(QueuedRecord::decode(&longer).is_err(), "trailing bytes");
        let mut flag = b;
        flag[17] = 7;
        assert!(QueuedRecord::decode(&flag).is_err(), "bad expiry flag");
    }

    #[test]
    fn every_single_byte_change_decodes_to_a_stable_record_or_a_typed_error() {
        fn check<T: PartialEq + std::fmt::Debug>(
            bytes: &[u8],
            decode: impl Fn(&[u8]) -> Result<T, StoreError>,
            encode: impl Fn(&T) -> Result<Vec<u8>, StoreError>,
        ) {
            for at in 0..bytes.len() {
                for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                    let mut b = bytes.to_vec();
                    b[at] = v;
                    // Never a panic; what decodes encodes to bytes that decode to it again.
                    if let Ok(r) = decode(&b) {
                        let again = encode(&r).expect("a decoded record encodes");
                        assert_eq!(decode(&again).unwrap(), r, "byte {at} set to {v}");
                    }
                }
            }
        }
        check(
            &retained().encode().unwrap(),
            RetainedRecord::decode,
            RetainedRecord::encode,
        );
        check(
            &session().encode().unwrap(),
            SessionRecord::decode,
            SessionRecord::encode,
        );
        check(
            &queued().encode().unwrap(),
            QueuedRecord::decode,
            QueuedRecord::encode,
        );
    }

    #[test]
    fn records_read_back_exactly() {
        let r = retained();
        assert_eq!(RetainedRecord::decode(&r.encode().unwrap()).unwrap(), r);
        let s = session();
        assert_eq!(SessionRecord::decode(&s.encode().unwrap()).unwrap(), s);
        let mut online = session();
        online.disconnected_at = None;
        online.subscriptions.clear();
        assert_eq!(
            SessionRecord::decode(&online.encode().unwrap()).unwrap(),
            online
        );
        for owner in [SessionOwner::Anonymous, SessionOwner::Unknown] {
            let s = SessionRecord { owner, ..session() };
            assert_eq!(SessionRecord::decode(&s.encode().unwrap()).unwrap(), s);
        }
    }

    #[test]
    fn session_records_of_format_2_read_back_with_an_unknown_owner() {
        // Format 2 had no owner byte after the client id.
        let s = SessionRecord {
            owner: SessionOwner::Unknown,
            ..session()
        };
        let mut bytes = s.encode().unwrap();
        assert_eq!(bytes[0], SESSION_FORMAT);
        // format, level, expiry, disconnect flag and time, then the client id "c1".
        let owner_at = 1 + 1 + 4 + 9 + 2 + 2;
        assert_eq!(bytes.remove(owner_at), 0);
        bytes[0] = FORMAT;
        assert_eq!(SessionRecord::decode(&bytes).unwrap(), s);
        bytes[0] = 9;
        assert!(SessionRecord::decode(&bytes).is_err());
    }

    #[test]
    fn every_truncation_and_garbage_is_a_typed_error() {
        let r = retained().encode().unwrap();
        let s = session().encode().unwrap();
        for n in 0..r.len() {
            assert!(
                matches!(
                    RetainedRecord::decode(&r[..n]),
                    Err(StoreError::Corrupt {
                        record: "retained",
                        ..
                    })
                ),
                "retained cut at {n}"
            );
        }
        for n in 0..s.len() {
            assert!(
                matches!(
                    SessionRecord::decode(&s[..n]),
                    Err(StoreError::Corrupt {
                        record: "session",
                        ..
                    })
                ),
                "session cut at {n}"
            );
        }
        let mut longer = s.clone();
        longer.push(0);
        assert!(SessionRecord::decode(&longer).is_err(), "trailing bytes");
        let mut wrong = s;
        wrong[0] = 9;
        assert!(SessionRecord::decode(&wrong).is_err(), "unknown format");
        // A huge claimed subscription count is refused before anything is allocated.
        let mut huge = session();
        huge.subscriptions.clear();
        huge.will = None;
        let mut b = huge.encode().unwrap();
        let at = b.len() - 5; // the count, then the will flag
        b[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(SessionRecord::decode(&b).is_err());
        assert!(RetainedRecord::decode(b"\x02garbage garbage").is_err());
    }
}
