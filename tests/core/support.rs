//! What every suite shares: the fake clock's origin and durations, identifiers, strings and
//! topics, and packet bytes written as in the specification's figures
//! (`hex("32 09 00 03 'a/b' ...")`, or encoded with [`wire`]).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tinymqtt::codec::{encode, Packet};
use tinymqtt::{ByteStr, PacketId, ProtocolVersion, TopicFilter, TopicName};

/// The origin of the fake clock; only differences from it matter (time never comes from the
/// system but here).
#[allow(clippy::disallowed_methods)]
pub(crate) fn t0() -> Instant {
    Instant::now()
}

/// `n` milliseconds.
pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `n` seconds.
pub(crate) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A packet identifier (non-zero).
pub(crate) fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero packet id")
}

/// A topic name.
pub(crate) fn topic(t: &'static str) -> TopicName {
    TopicName::from_static(t)
}

/// A topic filter.
pub(crate) fn filter(f: &'static str) -> TopicFilter {
    TopicFilter::from_static(f)
}

/// A string.
pub(crate) fn s(v: &'static str) -> ByteStr {
    ByteStr::from_static(v)
}

/// `packet` encoded for `v`.
pub(crate) fn wire(packet: &Packet, v: ProtocolVersion) -> Bytes {
    let mut buf = BytesMut::new();
    encode(packet, v, &mut buf).expect("the test's packet encodes");
    buf.freeze()
}

/// Bytes written as in the specification's figures: hex pairs, and ASCII in single quotes.
///
/// `hex("32 09 00 03 'a/b' 00 01 'hi'")` is a QoS 1 PUBLISH to `a/b` with id 1 and payload `hi`.
pub(crate) fn hex(spec: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = spec.trim();
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('\'') {
            let end = quoted.find('\'').expect("closing quote");
            out.extend_from_slice(&quoted.as_bytes()[..end]);
            rest = quoted[end + 1..].trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let byte = u8::from_str_radix(&rest[..end], 16)
                .unwrap_or_else(|_| panic!("bad hex byte {:?} in {spec:?}", &rest[..end]));
            out.push(byte);
            rest = rest[end..].trim_start();
        }
    }
    out
}
