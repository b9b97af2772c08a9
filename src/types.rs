//! Vocabulary shared by the codec, the client and the broker.

use std::fmt;
use std::num::NonZeroU16;
use std::ops::Deref;

use bytes::Bytes;

use crate::topic::{self, TopicError};

/// Quality of service of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum QoS {
    /// QoS 0: fire and forget.
    #[default]
    AtMostOnce = 0,
    /// QoS 1: acknowledged by PUBACK, may be delivered more than once.
    AtLeastOnce = 1,
    /// QoS 2: four-way handshake, delivered exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// Returns the QoS for a two-bit value, or `None` for 3.
    pub const fn from_u8(value: u8) -> Option<QoS> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// The protocol revision spoken on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name `MQIsdp`, level 3.
    V3_1,
    /// MQTT 3.1.1: protocol name `MQTT`, level 4.
    V3_1_1,
    /// MQTT 5.0: protocol name `MQTT`, level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte carried in CONNECT.
    pub const fn level(self) -> u8 {
        match self {
            ProtocolVersion::V3_1 => 3,
            ProtocolVersion::V3_1_1 => 4,
            ProtocolVersion::V5 => 5,
        }
    }

    /// The protocol name carried in CONNECT.
    pub const fn protocol_name(self) -> &'static str {
        match self {
            ProtocolVersion::V3_1 => "MQIsdp",
            ProtocolVersion::V3_1_1 | ProtocolVersion::V5 => "MQTT",
        }
    }

    /// Whether this is MQTT 5.0 (properties, reason codes, AUTH).
    pub const fn is_v5(self) -> bool {
        matches!(self, ProtocolVersion::V5)
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProtocolVersion::V3_1 => "MQTT 3.1",
            ProtocolVersion::V3_1_1 => "MQTT 3.1.1",
            ProtocolVersion::V5 => "MQTT 5.0",
        })
    }
}

/// A packet identifier: never zero ([MQTT-2.2.1-3]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PacketId(NonZeroU16);

impl PacketId {
    /// The smallest identifier, 1.
    pub const MIN: PacketId = PacketId(NonZeroU16::MIN);
    /// The largest identifier, 65535.
    pub const MAX: PacketId = PacketId(NonZeroU16::MAX);

    /// Returns the identifier for `value`, or `None` for zero.
    pub const fn new(value: u16) -> Option<PacketId> {
        match NonZeroU16::new(value) {
            Some(v) => Some(PacketId(v)),
            None => None,
        }
    }

    /// The identifier as a number in `1..=65535`.
    pub const fn get(self) -> u16 {
        self.0.get()
    }
}

impl fmt::Display for PacketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

macro_rules! reason_codes {
    ($( $(#[$doc:meta])* $name:ident = $value:literal, $text:literal; )*) => {
        /// An MQTT 5 reason code; MQTT 3.1.x return codes map onto the same values.
        ///
        /// One value can have several names in the specification (0x00 is Success, Normal
        /// disconnection and Granted QoS 0); the associated constants give those names.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        #[repr(u8)]
        pub enum ReasonCode {
            $( $(#[$doc])* $name = $value, )*
        }

        impl ReasonCode {
            /// Returns the reason code for a byte, or `None` if the specification defines none.
            pub const fn from_u8(value: u8) -> Option<ReasonCode> {
                match value {
                    $( $value => Some(ReasonCode::$name), )*
                    _ => None,
                }
            }

            /// The specification's name for this code (the first one, where it has several).
            pub const fn description(self) -> &'static str {
                match self {
                    $( ReasonCode::$name => $text, )*
                }
            }
        }
    };
}

reason_codes! {
    /// 0x00: Success, Normal disconnection, Granted QoS 0.
    Success = 0x00, "success";
    /// 0x01: Granted QoS 1.
    GrantedQoS1 = 0x01, "granted qos 1";
    /// 0x02: Granted QoS 2.
    GrantedQoS2 = 0x02, "granted qos 2";
    /// 0x04: Disconnect with Will Message.
    DisconnectWithWillMessage = 0x04, "disconnect with will message";
    /// 0x10: No matching subscribers.
    NoMatchingSubscribers = 0x10, "no matching subscribers";
    /// 0x11: No subscription existed.
    NoSubscriptionExisted = 0x11, "no subscription existed";
    /// 0x18: Continue authentication.
    ContinueAuthentication = 0x18, "continue authentication";
    /// 0x19: Re-authenticate.
    ReAuthenticate = 0x19, "re-authenticate";
    /// 0x80: Unspecified error (also the MQTT 3.1.1 SUBACK failure code).
    UnspecifiedError = 0x80, "unspecified error";
    /// 0x81: Malformed Packet.
    MalformedPacket = 0x81, "malformed packet";
    /// 0x82: Protocol Error.
    ProtocolError = 0x82, "protocol error";
    /// 0x83: Implementation specific error.
    ImplementationSpecificError = 0x83, "implementation specific error";
    /// 0x84: Unsupported Protocol Version.
    UnsupportedProtocolVersion = 0x84, "unsupported protocol version";
    /// 0x85: Client Identifier not valid.
    ClientIdentifierNotValid = 0x85, "client identifier not valid";
    /// 0x86: Bad User Name or Password.
    BadUserNameOrPassword = 0x86, "bad user name or password";
    /// 0x87: Not authorized.
    NotAuthorized = 0x87, "not authorized";
    /// 0x88: Server unavailable.
    ServerUnavailable = 0x88, "server unavailable";
    /// 0x89: Server busy.
    ServerBusy = 0x89, "server busy";
    /// 0x8A: Banned.
    Banned = 0x8A, "banned";
    /// 0x8B: Server shutting down.
    ServerShuttingDown = 0x8B, "server shutting down";
    /// 0x8C: Bad authentication method.
    BadAuthenticationMethod = 0x8C, "bad authentication method";
    /// 0x8D: Keep Alive timeout.
    KeepAliveTimeout = 0x8D, "keep alive timeout";
    /// 0x8E: Session taken over.
    SessionTakenOver = 0x8E, "session taken over";
    /// 0x8F: Topic Filter invalid.
    TopicFilterInvalid = 0x8F, "topic filter invalid";
    /// 0x90: Topic Name invalid.
    TopicNameInvalid = 0x90, "topic name invalid";
    /// 0x91: Packet Identifier in use.
    PacketIdentifierInUse = 0x91, "packet identifier in use";
    /// 0x92: Packet Identifier not found.
    PacketIdentifierNotFound = 0x92, "packet identifier not found";
    /// 0x93: Receive Maximum exceeded.
    ReceiveMaximumExceeded = 0x93, "receive maximum exceeded";
    /// 0x94: Topic Alias invalid.
    TopicAliasInvalid = 0x94, "topic alias invalid";
    /// 0x95: Packet too large.
    PacketTooLarge = 0x95, "packet too large";
    /// 0x96: Message rate too high.
    MessageRateTooHigh = 0x96, "message rate too high";
    /// 0x97: Quota exceeded.
    QuotaExceeded = 0x97, "quota exceeded";
    /// 0x98: Administrative action.
    AdministrativeAction = 0x98, "administrative action";
    /// 0x99: Payload format invalid.
    PayloadFormatInvalid = 0x99, "payload format invalid";
    /// 0x9A: Retain not supported.
    RetainNotSupported = 0x9A, "retain not supported";
    /// 0x9B: QoS not supported.
    QoSNotSupported = 0x9B, "qos not supported";
    /// 0x9C: Use another server.
    UseAnotherServer = 0x9C, "use another server";
    /// 0x9D: Server moved.
    ServerMoved = 0x9D, "server moved";
    /// 0x9E: Shared Subscriptions not supported.
    SharedSubscriptionsNotSupported = 0x9E, "shared subscriptions not supported";
    /// 0x9F: Connection rate exceeded.
    ConnectionRateExceeded = 0x9F, "connection rate exceeded";
    /// 0xA0: Maximum connect time.
    MaximumConnectTime = 0xA0, "maximum connect time";
    /// 0xA1: Subscription Identifiers not supported.
    SubscriptionIdentifiersNotSupported = 0xA1, "subscription identifiers not supported";
    /// 0xA2: Wildcard Subscriptions not supported.
    WildcardSubscriptionsNotSupported = 0xA2, "wildcard subscriptions not supported";
}

impl ReasonCode {
    /// 0x00 in DISCONNECT.
    pub const NORMAL_DISCONNECTION: ReasonCode = ReasonCode::Success;
    /// 0x00 in SUBACK.
    pub const GRANTED_QOS_0: ReasonCode = ReasonCode::Success;

    /// The byte on the wire.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// Whether the code reports a failure (0x80 and above).
    pub const fn is_error(self) -> bool {
        self.as_u8() >= 0x80
    }

    /// This code if DISCONNECT may carry it, else Protocol Error: a fault found while decoding
    /// can map to a code only CONNACK knows (0x84, 0x85...), and DISCONNECT needs one it allows.
    pub fn for_disconnect(self) -> ReasonCode {
        if crate::codec::valid_disconnect(self) {
            self
        } else {
            ReasonCode::ProtocolError
        }
    }

    /// The SUBACK code granting `qos`.
    pub const fn granted(qos: QoS) -> ReasonCode {
        match qos {
            QoS::AtMostOnce => ReasonCode::Success,
            QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
            QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
        }
    }
}

impl Default for ReasonCode {
    /// Success / Normal disconnection.
    fn default() -> ReasonCode {
        ReasonCode::Success
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:02X})", self.description(), self.as_u8())
    }
}

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

/// Why a string is not a valid topic name or filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidTopic {
    /// Not a valid MQTT string.
    #[error(transparent)]
    String(#[from] StringError),
    /// Valid string, invalid topic.
    #[error(transparent)]
    Topic(#[from] TopicError),
}

macro_rules! topic_type {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(ByteStr);

        impl $name {
            /// Validates and copies `s`.
            pub fn new(s: &str) -> Result<$name, InvalidTopic> {
                $check(s)?;
                Ok($name(ByteStr::try_from(s)?))
            }

            /// Validates an MQTT string without copying it.
            pub fn from_byte_str(s: ByteStr) -> Result<$name, InvalidTopic> {
                $check(s.as_str())?;
                Ok($name(s))
            }

            /// Wraps a string literal.
            ///
            /// # Panics
            /// If `s` is not valid.
            pub fn from_static(s: &'static str) -> $name {
                match $check(s) {
                    Ok(()) => $name(ByteStr::from_static(s)),
                    Err(e) => panic!("invalid topic literal {s:?}: {e}"),
                }
            }

            /// The topic as a string (checks the UTF-8 again: prefer [`Self::as_bytes`] in hot
            /// paths).
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }

            /// The topic's UTF-8 bytes, without any check.
            pub fn as_bytes(&self) -> &Bytes {
                self.0.as_bytes()
            }

            /// The length in bytes.
            pub fn len(&self) -> usize {
                self.0.len()
            }

            /// Whether the topic is empty (only [`TopicName::empty`] is).
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }

            /// The topic as an MQTT string.
            pub fn as_byte_str(&self) -> &ByteStr {
                &self.0
            }

            /// Returns the underlying MQTT string.
            pub fn into_byte_str(self) -> ByteStr {
                self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                self.0.as_str()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.0.as_str()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.0.as_str(), f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0.as_str())
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidTopic;
            fn try_from(s: &str) -> Result<$name, InvalidTopic> {
                $name::new(s)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == **other
            }
        }
    };
}

topic_type!(
    /// A topic name to publish to: at least one character, no `+` or `#` ([MQTT-4.7.3-1], [MQTT-3.3.2-2]).
    ///
    /// The one exception is [`TopicName::empty`], which an MQTT 5 PUBLISH carries when it uses
    /// a topic alias instead of a name.
    TopicName,
    topic::validate_topic_name
);

topic_type!(
    /// A topic filter to subscribe with: `+` and `#` only as whole levels, `#` only last
    /// ([MQTT-4.7.1-1], [MQTT-4.7.1-2]); `$share/{group}/{filter}` checked as a shared subscription.
    TopicFilter,
    topic::validate_topic_filter
);

impl TopicName {
    /// The empty name of an MQTT 5 PUBLISH that names its topic by alias only.
    pub const fn empty() -> TopicName {
        TopicName(ByteStr::new())
    }

    /// Wraps a string the caller has already checked with `validate_topic_name_bytes`
    /// (or the empty alias-only name).
    pub(crate) fn from_checked(s: ByteStr) -> TopicName {
        TopicName(s)
    }
}

impl TopicFilter {
    /// Wraps a string the caller has already checked with `validate_topic_filter`.
    pub(crate) fn from_checked(s: ByteStr) -> TopicFilter {
        TopicFilter(s)
    }

    /// For `$share/{group}/{filter}`, the group name and the filter; `None` otherwise.
    pub fn shared(&self) -> Option<(&str, &str)> {
        topic::split_shared(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_round_trip_through_bytes() {
        for b in 0..=255u8 {
            if let Some(rc) = ReasonCode::from_u8(b) {
                assert_eq!(rc.as_u8(), b);
            }
        }
        assert_eq!(ReasonCode::from_u8(0x03), None);
        assert_eq!(
            ReasonCode::from_u8(0xA2),
            Some(ReasonCode::WildcardSubscriptionsNotSupported)
        );
        assert!(ReasonCode::NotAuthorized.is_error());
        assert!(!ReasonCode::GrantedQoS2.is_error());
    }

    #[test]
    fn disconnect_gets_a_code_it_may_carry() {
        assert_eq!(
            ReasonCode::KeepAliveTimeout.for_disconnect(),
            ReasonCode::KeepAliveTimeout
        );
        assert_eq!(
            ReasonCode::MalformedPacket.for_disconnect(),
            ReasonCode::MalformedPacket
        );
        for connack_only in [
            ReasonCode::UnsupportedProtocolVersion,
            ReasonCode::ClientIdentifierNotValid,
            ReasonCode::BadUserNameOrPassword,
            ReasonCode::PacketIdentifierNotFound,
        ] {
            assert_eq!(connack_only.for_disconnect(), ReasonCode::ProtocolError);
        }
    }

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

    #[test]
    fn packet_id_is_never_zero() {
        assert_eq!(PacketId::new(0), None);
        assert_eq!(PacketId::new(7).map(PacketId::get), Some(7));
        assert_eq!(PacketId::MAX.get(), 65_535);
    }
}
