//! The user properties of a message, kept as they are written on the wire.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::property_id::PropertyId;
use crate::types::ByteStr;

/// A user property: a name and a value, both UTF-8 strings. Order and repeats are kept.
pub type UserProperty = (ByteStr, ByteStr);

/// The user properties of a PUBLISH or a will: name and value pairs, in order, repeats kept
/// ([MQTT-3.3.2-17], [MQTT-3.3.2-18]).
///
/// Kept in their wire form, shared with the packet they were decoded from: a message costs
/// what it weighed on the wire (five bytes for an empty pair, not two string handles), and
/// every copy of it (each delivery, each stored copy) shares one buffer. Reading walks the
/// bytes ([`UserProperties::iter`]); building appends to them ([`UserProperties::push`],
/// [`FromIterator`], `From<Vec<UserProperty>>`).
///
/// ```
/// use tinymqtt::codec::UserProperties;
/// use tinymqtt::ByteStr;
///
/// let mut props = UserProperties::new();
/// props.push(ByteStr::from_static("unit"), ByteStr::from_static("cm"));
/// props.push(ByteStr::from_static("unit"), ByteStr::from_static("mm"));
/// let values: Vec<String> = props.iter().map(|(_, v)| v.to_string()).collect();
/// assert_eq!(values, ["cm", "mm"]);
/// assert_eq!(props.encoded_len(), 2 * (1 + 2 + 4 + 2 + 2));
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct UserProperties {
    /// Each property as the wire has it: the identifier 0x26, then the name and the value,
    /// each a two-byte length and checked UTF-8.
    raw: Bytes,
}

impl UserProperties {
    /// No user property.
    pub fn new() -> UserProperties {
        UserProperties::default()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// How many there are (a walk over the bytes).
    pub fn len(&self) -> usize {
        self.iter_raw().count()
    }

    /// Their size on the wire (what they hold in memory too).
    pub fn encoded_len(&self) -> usize {
        self.raw.len()
    }

    /// Appends a pair. Cheap while this list has its buffer to itself; a list that shares
    /// its buffer (a decoded one, a clone) is copied first.
    pub fn push(&mut self, name: ByteStr, value: ByteStr) {
        let more = 5 + name.len() + value.len();
        let mut buf = match std::mem::take(&mut self.raw).try_into_mut() {
            Ok(buf) => buf,
            Err(shared) => {
                let mut buf = BytesMut::with_capacity(shared.len() + more);
                buf.extend_from_slice(&shared);
                buf
            }
        };
        buf.reserve(more);
        put_pair(&mut buf, &name, &value);
        self.raw = buf.freeze();
    }

    /// The pairs in order, each string sharing this list's buffer.
    pub fn iter(&self) -> UserPropertiesIter<'_> {
        UserPropertiesIter {
            raw: &self.raw,
            pos: 0,
        }
    }

    /// The pairs as owned values (each string still shares this list's buffer).
    pub fn to_vec(&self) -> Vec<UserProperty> {
        self.iter().collect()
    }

    /// The wire form: every property with its identifier.
    pub(crate) fn as_wire(&self) -> &Bytes {
        &self.raw
    }

    /// The user properties whose wire form `raw` is, already checked by the decoder.
    pub(crate) fn from_checked_wire(raw: Bytes) -> UserProperties {
        UserProperties { raw }
    }

    /// Where each pair's name and value lie in `raw`.
    fn iter_raw(&self) -> impl Iterator<Item = ((usize, usize), (usize, usize))> + '_ {
        let raw = &self.raw[..];
        let mut pos = 0;
        std::iter::from_fn(move || {
            let (name, end) = field(raw, pos + 1)?;
            let (value, end) = field(raw, end)?;
            pos = end;
            Some((name, value))
        })
    }
}

/// The string at `at` in `raw`: its span, and where the next field starts.
fn field(raw: &[u8], at: usize) -> Option<((usize, usize), usize)> {
    let len = raw.get(at..at + 2)?;
    let start = at + 2;
    let end = start + usize::from(u16::from_be_bytes([len[0], len[1]]));
    (end <= raw.len()).then_some(((start, end), end))
}

/// Writes one user property with its identifier.
fn put_pair(buf: &mut BytesMut, name: &ByteStr, value: &ByteStr) {
    buf.put_u8(PropertyId::UserProperty as u8);
    for s in [name, value] {
        // A `ByteStr` is at most 65,535 bytes.
        buf.put_u16(s.len() as u16);
        buf.put_slice(s.as_bytes());
    }
}

/// The pairs of a [`UserProperties`], in order.
#[derive(Debug, Clone)]
pub struct UserPropertiesIter<'a> {
    raw: &'a Bytes,
    pos: usize,
}

impl Iterator for UserPropertiesIter<'_> {
    type Item = UserProperty;

    fn next(&mut self) -> Option<UserProperty> {
        let ((ns, ne), at) = field(self.raw, self.pos + 1)?;
        let ((vs, ve), end) = field(self.raw, at)?;
        self.pos = end;
        // Checked when decoded or pushed.
        let name = ByteStr::from_checked(self.raw.slice(ns..ne));
        let value = ByteStr::from_checked(self.raw.slice(vs..ve));
        Some((name, value))
    }
}

impl<'a> IntoIterator for &'a UserProperties {
    type Item = UserProperty;
    type IntoIter = UserPropertiesIter<'a>;

    fn into_iter(self) -> UserPropertiesIter<'a> {
        self.iter()
    }
}

impl FromIterator<UserProperty> for UserProperties {
    fn from_iter<I: IntoIterator<Item = UserProperty>>(iter: I) -> UserProperties {
        let mut buf = BytesMut::new();
        for (name, value) in iter {
            put_pair(&mut buf, &name, &value);
        }
        UserProperties { raw: buf.freeze() }
    }
}

impl From<Vec<UserProperty>> for UserProperties {
    fn from(pairs: Vec<UserProperty>) -> UserProperties {
        pairs.into_iter().collect()
    }
}

impl<const N: usize> From<[UserProperty; N]> for UserProperties {
    fn from(pairs: [UserProperty; N]) -> UserProperties {
        pairs.into_iter().collect()
    }
}

impl PartialEq<Vec<UserProperty>> for UserProperties {
    fn eq(&self, other: &Vec<UserProperty>) -> bool {
        self.iter().eq(other.iter().cloned())
    }
}

impl fmt::Debug for UserProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Collects the user properties of a property block being decoded: one slice of the
/// received frame while they lie back to back (the usual case), one copy of their bytes
/// otherwise.
#[derive(Debug, Default)]
pub(crate) struct WireCollector {
    span: Option<(usize, usize)>,
    copied: Option<BytesMut>,
}

impl WireCollector {
    /// The property at `start..end` of `frame` is a user property.
    pub(crate) fn add(&mut self, frame: &Bytes, start: usize, end: usize) {
        if let Some(buf) = &mut self.copied {
            buf.extend_from_slice(&frame[start..end]);
            return;
        }
        match self.span {
            None => self.span = Some((start, end)),
            Some((s, e)) if e == start => self.span = Some((s, end)),
            Some((s, e)) => {
                let mut buf = BytesMut::with_capacity(e - s + end - start);
                buf.extend_from_slice(&frame[s..e]);
                buf.extend_from_slice(&frame[start..end]);
                self.copied = Some(buf);
            }
        }
    }

    /// The user properties collected from `frame`.
    pub(crate) fn finish(self, frame: &Bytes) -> UserProperties {
        let raw = match (self.copied, self.span) {
            (Some(buf), _) => buf.freeze(),
            (None, Some((s, e))) => frame.slice(s..e),
            (None, None) => Bytes::new(),
        };
        UserProperties::from_checked_wire(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &'static str) -> ByteStr {
        ByteStr::from_static(v)
    }

    #[test]
    fn keeps_order_and_repeats_in_five_bytes_per_empty_pair() {
        let mut p = UserProperties::new();
        assert!(p.is_empty());
        p.push(s("a"), s("1"));
        p.push(s(""), s(""));
        p.push(s("a"), s("2"));
        assert_eq!(p.len(), 3);
        assert_eq!(p.encoded_len(), 7 + 5 + 7);
        assert_eq!(p, vec![(s("a"), s("1")), (s(""), s("")), (s("a"), s("2"))]);
        let built: UserProperties = p.iter().collect();
        assert_eq!(built, p);
        // A clone shares the bytes; pushing to it copies them, leaving the original alone.
        let mut q = p.clone();
        q.push(s("b"), s("3"));
        assert_eq!((p.len(), q.len()), (3, 4));
        assert_eq!(format!("{p:?}"), r#"[("a", "1"), ("", ""), ("a", "2")]"#);
    }

    #[test]
    fn a_publish_with_properties_between_its_user_properties_decodes_them_in_order() {
        use crate::codec::{encode, Decoder, Packet, PayloadFormat};
        use crate::types::ProtocolVersion;
        // User property k=v, payload format indicator 1, user property x="".
        let props = b"\x26\x00\x01k\x00\x01v\x01\x01\x26\x00\x01x\x00\x00";
        let mut wire = BytesMut::from(&b"\x30\x14\x00\x01a\x0f"[..]);
        wire.extend_from_slice(props);
        wire.put_u8(b'p');
        let v5 = ProtocolVersion::V5;
        let Ok(Some(Packet::Publish(p))) = Decoder::new(v5).decode(&mut wire) else {
            panic!("not decoded");
        };
        let users = &p.properties.user_properties;
        assert_eq!(users, &vec![(s("k"), s("v")), (s("x"), s(""))]);
        assert_eq!(
            p.properties.payload_format_indicator,
            Some(PayloadFormat::Utf8)
        );
        // Written back in the encoder's order: the indicator, then the user properties.
        let mut out = BytesMut::new();
        encode(&Packet::Publish(p), v5, &mut out).unwrap();
        let mut want = BytesMut::from(&b"\x30\x14\x00\x01a\x0f\x01\x01"[..]);
        want.extend_from_slice(b"\x26\x00\x01k\x00\x01v\x26\x00\x01x\x00\x00p");
        assert_eq!(out, want);
    }

    #[test]
    fn collects_adjacent_properties_as_one_slice_and_others_as_a_copy() {
        let mut wire = BytesMut::new();
        put_pair(&mut wire, &s("k"), &s("v"));
        wire.put_u8(0x01); // a payload format indicator between them
        wire.put_u8(0x01);
        put_pair(&mut wire, &s("x"), &s("y"));
        put_pair(&mut wire, &s("z"), &s(""));
        let frame = wire.freeze();
        let mut c = WireCollector::default();
        c.add(&frame, 9, 16);
        c.add(&frame, 16, 22);
        let adjacent = c.finish(&frame);
        assert_eq!(adjacent, vec![(s("x"), s("y")), (s("z"), s(""))]);
        assert_eq!(adjacent.as_wire().as_ptr(), frame[9..].as_ptr(), "a slice");
        let mut c = WireCollector::default();
        c.add(&frame, 0, 7);
        c.add(&frame, 9, 16);
        c.add(&frame, 16, 22);
        let apart = c.finish(&frame);
        assert_eq!(
            apart,
            vec![(s("k"), s("v")), (s("x"), s("y")), (s("z"), s(""))]
        );
    }
}
