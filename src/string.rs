//! MQTT UTF-8 encoded strings ([MQTT-1.5.4]): the checks, done in one pass over the bytes,
//! and [`ByteStr`], a checked string that shares its bytes.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

/// Why a string cannot be an MQTT UTF-8 encoded string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StringError {
    /// The bytes are not well-formed UTF-8 (this includes encoded surrogates).
    #[error("invalid utf-8")]
    InvalidUtf8,
    /// The string contains U+0000 ([MQTT-1.5.4-2]).
    #[error("string contains the null character U+0000")]
    NullCharacter,
    /// The string is longer than 65,535 bytes.
    #[error("string of {0} bytes is longer than 65535")]
    TooLong(usize),
}

/// Checks the rules of an MQTT UTF-8 encoded string and returns it as `&str`.
pub(crate) fn check_mqtt_str(bytes: &[u8]) -> Result<&str, StringError> {
    if bytes.len() > usize::from(u16::MAX) {
        return Err(StringError::TooLong(bytes.len()));
    }
    let s = std::str::from_utf8(bytes).map_err(|_| StringError::InvalidUtf8)?;
    if bytes.contains(&0) {
        return Err(StringError::NullCharacter);
    }
    Ok(s)
}

/// What a look over a string's bytes found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scan {
    /// A byte >= 0x80: the string needs a full UTF-8 check.
    pub(crate) non_ascii: bool,
    /// A zero byte: U+0000.
    pub(crate) nul: bool,
    /// A `+` or `#`.
    pub(crate) wildcard: bool,
}

/// Looks at `bytes` once for what MQTT strings and topic names forbid.
///
/// Eight bytes at a time ("SWAR"): `(x - LO) & !x & HI` is non-zero exactly when some byte of
/// `x` is zero, and `x ^ (LO * c)` turns bytes equal to `c` into zeros. The last word overlaps
/// the one before it instead of copying a padded remainder. On a 38-byte topic this is about a
/// third of the instructions of `is_ascii` plus three `memchr`s (callgrind).
pub(crate) fn scan(bytes: &[u8]) -> Scan {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const PLUS: u64 = LO * b'+' as u64;
    const HASH: u64 = LO * b'#' as u64;
    let zero = |x: u64| x.wrapping_sub(LO) & !x;
    let load = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&bytes[i..i + 8]);
        u64::from_le_bytes(a)
    };
    let (mut high, mut nul, mut wild) = (0u64, 0u64, 0u64);
    let n = bytes.len();
    if n < 8 {
        for &b in bytes {
            high |= u64::from(b);
            nul |= u64::from(b == 0);
            wild |= u64::from(b == b'+' || b == b'#');
        }
        return Scan {
            non_ascii: high >= 0x80,
            nul: nul != 0,
            wildcard: wild != 0,
        };
    }
    let mut i = 0;
    loop {
        let x = load(i);
        high |= x;
        nul |= zero(x);
        wild |= zero(x ^ PLUS) | zero(x ^ HASH);
        if i + 8 == n {
            break;
        }
        i = (i + 8).min(n - 8);
    }
    Scan {
        non_ascii: high & HI != 0,
        nul: nul & HI != 0,
        wildcard: wild & HI != 0,
    }
}

/// Whether `bytes` are all ASCII without U+0000 and, with `WILD`, without `+` or `#`: the
/// common case, decided in one pass so that [`scan`] and the UTF-8 check run only when not.
///
/// For an ASCII byte `b`, `b + 0x7F` sets the byte's high bit exactly when `b != 0`, and cannot
/// carry into the next byte; `(b | 0x08) ^ b'+'` is zero exactly for `+` and `#`, which differ
/// only in bit 3. A byte >= 0x80 can carry, but it also sets `high`, which alone makes the
/// answer false. Eight bytes at a time; the last word overlaps the one before it, and strings
/// under eight bytes are read as two overlapping halves (or single bytes) padded with `a`.
#[inline]
pub(crate) fn is_plain_ascii<const WILD: bool>(bytes: &[u8]) -> bool {
    const HI: u64 = 0x8080_8080_8080_8080;
    const L7F: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    const L08: u64 = 0x0808_0808_0808_0808;
    const PLUS: u64 = 0x0101_0101_0101_0101 * b'+' as u64;
    let word = |x: u64, high: &mut u64, ok: &mut u64| {
        *high |= x;
        let mut w = x.wrapping_add(L7F);
        if WILD {
            w &= ((x | L08) ^ PLUS).wrapping_add(L7F);
        }
        *ok &= w;
    };
    let (mut high, mut ok) = (0u64, u64::MAX);
    let n = bytes.len();
    if n >= 8 {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let x = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            word(x, &mut high, &mut ok);
        }
        if !chunks.remainder().is_empty() {
            let c = &bytes[n - 8..];
            let x = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            word(x, &mut high, &mut ok);
        }
    } else if n >= 4 {
        let lo = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let hi = u32::from_le_bytes([bytes[n - 4], bytes[n - 3], bytes[n - 2], bytes[n - 1]]);
        word(u64::from(lo) | (u64::from(hi) << 32), &mut high, &mut ok);
    } else if n > 0 {
        let x = u64::from_le_bytes([
            bytes[0],
            bytes[n / 2],
            bytes[n - 1],
            b'a',
            b'a',
            b'a',
            b'a',
            b'a',
        ]);
        word(x, &mut high, &mut ok);
    }
    high & HI == 0 && ok & HI == HI
}

/// Checks the rules of an MQTT UTF-8 encoded string on bytes, the full UTF-8 check only when
/// they are not plain ASCII; the same answers, in the same order, as [`check_mqtt_str`].
pub(crate) fn check_mqtt_bytes(bytes: &[u8]) -> Result<(), StringError> {
    if bytes.len() > usize::from(u16::MAX) {
        return Err(StringError::TooLong(bytes.len()));
    }
    if is_plain_ascii::<false>(bytes) {
        return Ok(());
    }
    check_mqtt_str(bytes).map(|_| ())
}

/// Checks an MQTT string from one [`scan`]: the full UTF-8 check only runs on non-ASCII.
pub(crate) fn check_scanned(bytes: &[u8], scan: Scan) -> Result<(), StringError> {
    if bytes.len() > usize::from(u16::MAX) {
        return Err(StringError::TooLong(bytes.len()));
    }
    if scan.non_ascii && std::str::from_utf8(bytes).is_err() {
        return Err(StringError::InvalidUtf8);
    }
    if scan.nul {
        return Err(StringError::NullCharacter);
    }
    Ok(())
}

/// An MQTT UTF-8 encoded string backed by [`Bytes`], so decoding never copies it.
///
/// The invariant (checked on construction): well-formed UTF-8, no U+0000, at most 65,535 bytes.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ByteStr(Bytes);

impl ByteStr {
    /// The empty string.
    pub const fn new() -> ByteStr {
        ByteStr(Bytes::new())
    }

    /// Wraps a string literal.
    ///
    /// # Panics
    /// If `s` is not a valid MQTT string (contains U+0000 or is longer than 65,535 bytes).
    pub fn from_static(s: &'static str) -> ByteStr {
        match check_mqtt_str(s.as_bytes()) {
            Ok(_) => ByteStr(Bytes::from_static(s.as_bytes())),
            Err(e) => panic!("invalid mqtt string literal: {e}"),
        }
    }

    /// Validates `bytes` as an MQTT string without copying them.
    pub fn from_utf8(bytes: Bytes) -> Result<ByteStr, StringError> {
        check_mqtt_bytes(&bytes)?;
        Ok(ByteStr(bytes))
    }

    /// Wraps bytes already checked with [`check_scanned`].
    pub(crate) fn from_checked(bytes: Bytes) -> ByteStr {
        ByteStr(bytes)
    }

    /// The string.
    ///
    /// Safe code cannot turn bytes into `&str` without checking them, so this checks the UTF-8
    /// again (the invariant makes it succeed): use [`ByteStr::as_bytes`] in hot paths.
    pub fn as_str(&self) -> &str {
        // The invariant guarantees valid UTF-8, so the fallback is never taken.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The UTF-8 bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Deref for ByteStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ByteStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<&str> for ByteStr {
    type Error = StringError;
    fn try_from(s: &str) -> Result<ByteStr, StringError> {
        check_mqtt_str(s.as_bytes())?;
        Ok(ByteStr(Bytes::copy_from_slice(s.as_bytes())))
    }
}

impl TryFrom<String> for ByteStr {
    type Error = StringError;
    fn try_from(s: String) -> Result<ByteStr, StringError> {
        check_mqtt_str(s.as_bytes())?;
        Ok(ByteStr(Bytes::from(s)))
    }
}

impl PartialEq<str> for ByteStr {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for ByteStr {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_str_rejects_null_and_bad_utf8() {
        assert_eq!(ByteStr::try_from("a\0b"), Err(StringError::NullCharacter));
        assert_eq!(
            ByteStr::from_utf8(Bytes::from_static(&[0xED, 0xA0, 0x80])),
            Err(StringError::InvalidUtf8),
            "an encoded surrogate is not utf-8"
        );
        let long = "x".repeat(65_536);
        assert_eq!(
            ByteStr::try_from(long.as_str()),
            Err(StringError::TooLong(65_536))
        );
        assert_eq!(ByteStr::try_from("héllo").unwrap(), "héllo");
    }

    #[test]
    fn one_pass_scan_finds_what_it_must_at_every_offset() {
        for len in 0..40 {
            for pos in 0..len {
                for (b, expect) in [
                    (0u8, (false, true, false)),
                    (b'+', (false, false, true)),
                    (b'#', (false, false, true)),
                    (0xC3, (true, false, false)),
                    (b'x', (false, false, false)),
                ] {
                    let mut v = vec![b'a'; len];
                    v[pos] = b;
                    let s = scan(&v);
                    assert_eq!(
                        (s.non_ascii, s.nul, s.wildcard),
                        expect,
                        "len {len} pos {pos}"
                    );
                }
            }
        }
        assert_eq!(check_scanned("é".as_bytes(), scan("é".as_bytes())), Ok(()));
        let bad = [0xC3, 0x28];
        assert_eq!(
            check_scanned(&bad, scan(&bad)),
            Err(StringError::InvalidUtf8)
        );
    }

    #[test]
    fn plain_ascii_agrees_with_scan_at_every_offset_and_length() {
        let probes = [
            0u8,
            b'+',
            b'#',
            b'/',
            b'a',
            0x7F,
            0x80,
            0xC3,
            0xFF,
            0x01,
            0x2B ^ 0x08,
        ];
        for len in 0..40 {
            for pos in 0..len.max(1) {
                for b in probes {
                    for fill in [b'a', 0x7F, b'/', b'*'] {
                        let mut v = vec![fill; len];
                        if len > 0 {
                            v[pos] = b;
                        }
                        let s = scan(&v);
                        assert_eq!(
                            is_plain_ascii::<true>(&v),
                            !s.non_ascii && !s.nul && !s.wildcard,
                            "{v:?}"
                        );
                        assert_eq!(is_plain_ascii::<false>(&v), !s.non_ascii && !s.nul, "{v:?}");
                        let exact = check_mqtt_str(&v).map(|_| ());
                        assert_eq!(check_mqtt_bytes(&v), exact, "{v:?}");
                    }
                }
            }
        }
    }
}
