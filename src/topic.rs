//! Topic names and filters: their types, validation, and wildcard matching.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

use crate::string::{ByteStr, StringError};

/// Why a string is not a valid topic name or filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// Topics are at least one character long ([MQTT-4.7.3-1]).
    #[error("topic is empty")]
    Empty,
    /// A topic name contains `+` or `#` ([MQTT-3.3.2-2]).
    #[error("topic name contains a wildcard")]
    WildcardInName,
    /// `#` is not alone in the last level, as in `a/b#` or `#/a` ([MQTT-4.7.1-2]).
    #[error("'#' must be the whole last level of a filter")]
    MisplacedMultiLevelWildcard,
    /// `+` is not alone in its level, as in `+a` ([MQTT-4.7.1-3]).
    #[error("'+' must be a whole level of a filter")]
    MisplacedSingleLevelWildcard,
    /// `$share/` without a share name, or a share name with `+`, `#` ([MQTT-4.8.2-1],
    /// [MQTT-4.8.2-2]).
    #[error("invalid share name in a shared subscription")]
    InvalidShareName,
    /// `$share/{group}` without a `/` and a filter after it.
    #[error("shared subscription has no topic filter")]
    EmptySharedFilter,
}

const SHARE_PREFIX: &str = "$share/";

/// Checks a topic name: not empty, no wildcard characters.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    validate_topic_name_bytes(name.as_bytes())
}

/// [`validate_topic_name`] on the UTF-8 bytes (the wildcards are ASCII).
pub(crate) fn validate_topic_name_bytes(name: &[u8]) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::Empty);
    }
    if name.iter().any(|&b| b == b'+' || b == b'#') {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Checks a topic filter, including the `$share/{group}/{filter}` form.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    validate_topic_filter_bytes(filter.as_bytes())
}

/// [`validate_topic_filter`] on the UTF-8 bytes (`/`, `+`, `#` and `$share/` are ASCII, and
/// never part of a multi-byte character), in one pass per level.
pub(crate) fn validate_topic_filter_bytes(filter: &[u8]) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    if let Some(rest) = filter.strip_prefix(SHARE_PREFIX.as_bytes()) {
        let slash = rest
            .iter()
            .position(|&b| b == b'/')
            .ok_or(TopicError::EmptySharedFilter)?;
        let (group, inner) = (&rest[..slash], &rest[slash + 1..]);
        if group.is_empty() || group.iter().any(|&b| b == b'+' || b == b'#') {
            return Err(TopicError::InvalidShareName);
        }
        if inner.is_empty() {
            return Err(TopicError::EmptySharedFilter);
        }
        return validate_plain_filter(inner);
    }
    validate_plain_filter(filter)
}

/// Level by level, first to last: `#` only as the whole last level, `+` only as a whole level.
fn validate_plain_filter(filter: &[u8]) -> Result<(), TopicError> {
    if wildcards_well_placed(filter) {
        return Ok(());
    }
    let check = |level: &[u8], hash: bool, plus: bool, last: bool| {
        if hash && (level.len() != 1 || !last) {
            return Err(TopicError::MisplacedMultiLevelWildcard);
        }
        if plus && level.len() != 1 {
            return Err(TopicError::MisplacedSingleLevelWildcard);
        }
        Ok(())
    };
    let (mut start, mut hash, mut plus) = (0, false, false);
    for (i, &b) in filter.iter().enumerate() {
        match b {
            b'/' => {
                check(&filter[start..i], hash, plus, false)?;
                (start, hash, plus) = (i + 1, false, false);
            }
            b'#' => hash = true,
            b'+' => plus = true,
            _ => {}
        }
    }
    check(&filter[start..], hash, plus, true)
}

/// Whether every `+` and `#` in `filter` is a whole level, `#` only the last one: the valid
/// case, found eight bytes at a time; `false` sends the caller to the level walk, which
/// decides and names the first fault.
///
/// `(b | 0x08) ^ b'+'` is zero exactly for `+` and `#`; for a byte `y`, bit 7 of
/// `((y & 0x7F) + 0x7F) | y` is clear exactly when `y` is zero, without carries between bytes.
/// The last word overlaps the one before it, so a wildcard may be looked at twice.
fn wildcards_well_placed(f: &[u8]) -> bool {
    const HI: u64 = 0x8080_8080_8080_8080;
    const L7F: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    const L08: u64 = 0x0808_0808_0808_0808;
    const PLUS: u64 = 0x0101_0101_0101_0101 * b'+' as u64;
    let n = f.len();
    let whole_level = |i: usize| {
        let starts = i == 0 || f[i - 1] == b'/';
        let ends = i + 1 == n || (f[i] == b'+' && f[i + 1] == b'/');
        starts && ends
    };
    if n < 8 {
        return f
            .iter()
            .enumerate()
            .all(|(i, &b)| b | 0x08 != b'+' || whole_level(i));
    }
    let mut base = 0;
    loop {
        let c = &f[base..base + 8];
        let x = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let y = (x | L08) ^ PLUS;
        let mut wild = !(((y & L7F).wrapping_add(L7F)) | y) & HI;
        while wild != 0 {
            if !whole_level(base + (wild.trailing_zeros() / 8) as usize) {
                return false;
            }
            wild &= wild - 1;
        }
        if base + 8 == n {
            return true;
        }
        base = (base + 8).min(n - 8);
    }
}

/// Splits `$share/{group}/{filter}` into the group and the filter.
pub fn split_shared(filter: &str) -> Option<(&str, &str)> {
    filter.strip_prefix(SHARE_PREFIX)?.split_once('/')
}

/// Whether `filter` (a valid, non-shared filter) matches the topic `name`.
///
/// A topic starting with `$` is not matched by a filter starting with a wildcard ([MQTT-4.7.2-1]).
pub fn matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut n = name.split('/');
    loop {
        match (f.next(), n.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(nl)) if fl == nl => {}
            (None, None) => return true,
            _ => return false,
        }
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
    /// A topic name to publish to: at least one character, no `+` or `#` ([MQTT-4.7.3-1],
    /// [MQTT-3.3.2-2]).
    ///
    /// The one exception is [`TopicName::empty`], which an MQTT 5 PUBLISH carries when it uses
    /// a topic alias instead of a name.
    TopicName,
    validate_topic_name
);

topic_type!(
    /// A topic filter to subscribe with: `+` and `#` only as whole levels, `#` only last
    /// ([MQTT-4.7.1-1], [MQTT-4.7.1-2]); `$share/{group}/{filter}` checked as a shared
    /// subscription.
    TopicFilter,
    validate_topic_filter
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
        split_shared(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The level walk alone, to compare the word-at-a-time shortcut with.
    fn by_levels(filter: &str) -> Result<(), TopicError> {
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level.contains('#') && (level != "#" || levels.peek().is_some()) {
                return Err(TopicError::MisplacedMultiLevelWildcard);
            }
            if level.contains('+') && level != "+" {
                return Err(TopicError::MisplacedSingleLevelWildcard);
            }
        }
        Ok(())
    }

    #[test]
    fn filter_shortcut_agrees_with_the_level_walk() {
        let alphabet = ['a', '/', '+', '#', 'é'];
        // Every string of up to 5 symbols, alone (the byte loop under 8 bytes) and inside
        // longer filters (the overlapping words).
        let mut all = vec![String::new()];
        let mut layer = all.clone();
        for _ in 0..5 {
            layer = layer
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(layer.iter().cloned());
        }
        for s in &all {
            for f in [
                s.clone(),
                format!("abcdefgh/{s}"),
                format!("{s}/abcdefghij/{s}"),
            ] {
                if f.is_empty() {
                    continue;
                }
                assert_eq!(validate_plain_filter(f.as_bytes()), by_levels(&f), "{f:?}");
            }
        }
    }

    #[test]
    fn mqtt_4_7_1_filters() {
        for ok in [
            "#",
            "+",
            "a/#",
            "a/+/b",
            "+/+",
            "/",
            "a//b",
            "$SYS/#",
            "sport/tennis/+",
        ] {
            assert_eq!(validate_topic_filter(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_topic_filter(""), Err(TopicError::Empty));
        assert_eq!(
            validate_topic_filter("a/b#"),
            Err(TopicError::MisplacedMultiLevelWildcard)
        );
        assert_eq!(
            validate_topic_filter("#/a"),
            Err(TopicError::MisplacedMultiLevelWildcard)
        );
        assert_eq!(
            validate_topic_filter("+a"),
            Err(TopicError::MisplacedSingleLevelWildcard)
        );
        assert_eq!(
            validate_topic_filter("a/b+/c"),
            Err(TopicError::MisplacedSingleLevelWildcard)
        );
    }

    #[test]
    fn mqtt_4_8_2_shared_filters() {
        assert_eq!(validate_topic_filter("$share/g/a/+"), Ok(()));
        assert_eq!(split_shared("$share/g/a/+"), Some(("g", "a/+")));
        assert_eq!(
            validate_topic_filter("$share//a"),
            Err(TopicError::InvalidShareName)
        );
        assert_eq!(
            validate_topic_filter("$share/g+/a"),
            Err(TopicError::InvalidShareName)
        );
        assert_eq!(
            validate_topic_filter("$share/g"),
            Err(TopicError::EmptySharedFilter)
        );
        assert_eq!(
            validate_topic_filter("$share/g/"),
            Err(TopicError::EmptySharedFilter)
        );
        assert_eq!(
            validate_topic_filter("$share/g/a#"),
            Err(TopicError::MisplacedMultiLevelWildcard)
        );
    }

    #[test]
    fn mqtt_4_7_3_names() {
        assert_eq!(validate_topic_name("a/b"), Ok(()));
        assert_eq!(validate_topic_name("/"), Ok(()));
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
        assert_eq!(validate_topic_name("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("a#"), Err(TopicError::WildcardInName));
    }

    #[test]
    fn wildcard_matching() {
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking"
        ));
        assert!(matches("sport/#", "sport"));
        assert!(matches("#", "a/b/c"));
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
    }

    #[test]
    fn mqtt_4_7_2_1_dollar_topics_not_matched_by_leading_wildcards() {
        assert!(!matches("#", "$SYS/broker/uptime"));
        assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
    }
}
