//! Wire primitives: integers, variable byte integers, strings and binary data.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::PacketType;
use crate::types::{
    check_mqtt_bytes, check_scanned, is_plain_ascii, scan, ByteStr, ProtocolVersion,
};

/// The error for `what`, which the protocol `version` cannot carry (shared by every packet's
/// encoder).
pub(crate) fn not_in(version: ProtocolVersion, what: &'static str) -> EncodeError {
    EncodeError::NotInVersion { what, version }
}

/// The largest value a variable byte integer can carry (four bytes).
pub const MAX_VAR_INT: u32 = 268_435_455;

/// The number of bytes `value` takes as a variable byte integer.
pub(crate) const fn var_int_len(value: u32) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Where a variable byte integer is read, for errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarIntError {
    /// Not enough bytes yet.
    Incomplete,
    /// A fifth byte, or a non-minimal encoding where that is forbidden.
    Malformed,
}

/// Reads a variable byte integer from the front of `bytes`: the value and its length.
///
/// With `minimal`, an encoding longer than needed is refused ([MQTT-1.5.5-1]).
pub(crate) fn read_var_int(bytes: &[u8], minimal: bool) -> Result<(u32, usize), VarIntError> {
    let mut value = 0u32;
    for i in 0..4 {
        let Some(&b) = bytes.get(i) else {
            return Err(VarIntError::Incomplete);
        };
        value |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            if minimal && i > 0 && b == 0 {
                return Err(VarIntError::Malformed);
            }
            return Ok((value, i + 1));
        }
    }
    Err(VarIntError::Malformed)
}

/// A cursor over one whole packet's bytes; slices come out as [`Bytes`] without copying.
pub(crate) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
    pub(crate) packet: PacketType,
    /// Refuse non-minimal variable byte integers (MQTT 5).
    pub(crate) minimal: bool,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a Bytes, pos: usize, packet: PacketType, minimal: bool) -> Self {
        Reader {
            buf,
            pos,
            end: buf.len(),
            packet,
            minimal,
        }
    }

    fn truncated(&self) -> DecodeError {
        DecodeError::Truncated {
            packet: self.packet,
        }
    }

    /// Bytes left before the end of this reader.
    pub(crate) fn remaining(&self) -> usize {
        self.end - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.end
    }

    fn slice(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(self.truncated());
        }
        let buf: &'a Bytes = self.buf;
        let s = &buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.slice(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let s = self.slice(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let s = self.slice(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    pub(crate) fn var_int(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let bytes = &self.buf[self.pos..self.end];
        match read_var_int(bytes, self.minimal) {
            Ok((value, len)) => {
                self.pos += len;
                Ok(value)
            }
            Err(VarIntError::Incomplete) => Err(self.truncated()),
            Err(VarIntError::Malformed) => Err(DecodeError::MalformedVarInt { field }),
        }
    }

    /// The next `n` bytes, sharing the packet's buffer.
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if self.remaining() < n {
            return Err(self.truncated());
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    /// Two-byte length, then that many bytes.
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// An MQTT UTF-8 encoded string ([MQTT-1.5.4-1], [MQTT-1.5.4-2]).
    pub(crate) fn string(&mut self, field: &'static str) -> Result<ByteStr, DecodeError> {
        self.string_checked(field, |_| Ok(()))
    }

    /// An MQTT string that `check` also accepts: both look at the received bytes before the
    /// string takes its share of the buffer, so a refused string costs no reference count.
    pub(crate) fn string_checked(
        &mut self,
        field: &'static str,
        check: impl FnOnce(&[u8]) -> Result<(), DecodeError>,
    ) -> Result<ByteStr, DecodeError> {
        let len = usize::from(self.u16()?);
        if self.remaining() < len {
            return Err(self.truncated());
        }
        let raw = &self.buf[self.pos..self.pos + len];
        check_mqtt_bytes(raw).map_err(|error| DecodeError::InvalidString { field, error })?;
        check(raw)?;
        Ok(ByteStr::from_checked(self.take(len)?))
    }

    /// Checks and skips an MQTT string, taking no share of the buffer (for a caller that
    /// keeps the bytes around it whole).
    pub(crate) fn skip_string(&mut self, field: &'static str) -> Result<(), DecodeError> {
        let len = usize::from(self.u16()?);
        if self.remaining() < len {
            return Err(self.truncated());
        }
        let raw = &self.buf[self.pos..self.pos + len];
        check_mqtt_bytes(raw).map_err(|error| DecodeError::InvalidString { field, error })?;
        self.pos += len;
        Ok(())
    }

    /// A topic name's MQTT string, checked in one pass, and whether it holds a wildcard.
    pub(crate) fn topic_name(&mut self) -> Result<(ByteStr, bool), DecodeError> {
        let field = "topic name";
        let len = usize::from(self.u16()?);
        if self.remaining() < len {
            return Err(self.truncated());
        }
        let raw = &self.buf[self.pos..self.pos + len];
        let wildcard = if is_plain_ascii::<true>(raw) {
            false
        } else {
            let found = scan(raw);
            check_scanned(raw, found)
                .map_err(|error| DecodeError::InvalidString { field, error })?;
            found.wildcard
        };
        let bytes = self.take(len)?;
        Ok((ByteStr::from_checked(bytes), wildcard))
    }

    /// How many length-prefixed fields, each followed by `trailer` bytes, fill the rest of the
    /// reader, counting at most `max`; a cheap look ahead that consumes nothing and stops at
    /// the first that does not fit (the real read reports it).
    pub(crate) fn count_binaries(&self, trailer: usize, max: usize) -> usize {
        let rest = &self.buf[self.pos..self.end];
        let (mut at, mut count) = (0, 0);
        while count < max {
            let Some(len) = rest.get(at..at + 2) else {
                break;
            };
            at += 2 + usize::from(u16::from_be_bytes([len[0], len[1]])) + trailer;
            if at > rest.len() {
                break;
            }
            count += 1;
        }
        count
    }

    /// Consumes a property length of zero, the common case; false (nothing consumed) otherwise.
    pub(crate) fn skip_empty_properties(&mut self) -> bool {
        if self.remaining() > 0 && self.buf[self.pos] == 0 {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// How far this reader has read, from the start of the packet.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// The whole packet's bytes (positions index them).
    pub(crate) fn frame(&self) -> &'a Bytes {
        self.buf
    }

    /// A reader over the next `len` bytes; this one skips past them.
    pub(crate) fn sub(&mut self, len: usize) -> Result<Reader<'a>, DecodeError> {
        if self.remaining() < len {
            return Err(self.truncated());
        }
        let sub = Reader {
            buf: self.buf,
            pos: self.pos,
            end: self.pos + len,
            packet: self.packet,
            minimal: self.minimal,
        };
        self.pos += len;
        Ok(sub)
    }

    /// Fails if bytes are left over inside the packet.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                packet: self.packet,
                count: self.remaining(),
            })
        }
    }
}

/// Where encoded bytes go: a real buffer, or a counter that makes `encoded_len` exact.
pub(crate) trait Sink {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_slice(&mut self, s: &[u8]);

    fn put_var_int(&mut self, mut v: u32) {
        loop {
            let mut b = (v & 0x7F) as u8;
            v >>= 7;
            if v > 0 {
                b |= 0x80;
            }
            self.put_u8(b);
            if v == 0 {
                break;
            }
        }
    }

    /// Two-byte length and the bytes; the caller checked `b.len() <= 65535`.
    fn put_binary(&mut self, b: &[u8]) {
        self.put_u16(b.len() as u16);
        self.put_slice(b);
    }

    fn put_str(&mut self, s: &ByteStr) {
        self.put_binary(s.as_bytes());
    }
}

/// Counts bytes instead of writing them.
#[derive(Default)]
pub(crate) struct Counter(pub(crate) usize);

impl Sink for Counter {
    fn put_u8(&mut self, _: u8) {
        self.0 += 1;
    }
    fn put_u16(&mut self, _: u16) {
        self.0 += 2;
    }
    fn put_u32(&mut self, _: u32) {
        self.0 += 4;
    }
    fn put_slice(&mut self, s: &[u8]) {
        self.0 += s.len();
    }
    fn put_var_int(&mut self, v: u32) {
        self.0 += var_int_len(v);
    }
}

impl Sink for BytesMut {
    fn put_u8(&mut self, v: u8) {
        BufMut::put_u8(self, v);
    }
    fn put_u16(&mut self, v: u16) {
        BufMut::put_u16(self, v);
    }
    fn put_u32(&mut self, v: u32) {
        BufMut::put_u32(self, v);
    }
    fn put_slice(&mut self, s: &[u8]) {
        self.extend_from_slice(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_int_boundaries_round_trip() {
        for (v, len) in [
            (0, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (2_097_151, 3),
            (2_097_152, 4),
            (MAX_VAR_INT, 4),
        ] {
            let mut b = BytesMut::new();
            b.put_var_int(v);
            assert_eq!(b.len(), len, "{v}");
            assert_eq!(var_int_len(v), len, "{v}");
            assert_eq!(read_var_int(&b, true), Ok((v, len)), "{v}");
        }
    }

    #[test]
    fn mqtt_1_5_5_1_var_int_must_be_minimal() {
        assert_eq!(
            read_var_int(&[0x80, 0x00], true),
            Err(VarIntError::Malformed)
        );
        assert_eq!(read_var_int(&[0x80, 0x00], false), Ok((0, 2)));
        assert_eq!(
            read_var_int(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01], false),
            Err(VarIntError::Malformed),
            "a fifth byte is never allowed"
        );
        assert_eq!(
            read_var_int(&[0xFF, 0xFF], true),
            Err(VarIntError::Incomplete)
        );
    }
}
