//! MQTT topics as NATS subjects, and back.
//!
//! A subject is a root token, then one token per topic level, joined by `.`:
//!
//! | MQTT | NATS |
//! |---|---|
//! | `sensors/room 1/temp` | `t.sensors.room%201.temp` |
//! | `$SYS/broker/uptime` | `s.$SYS.broker.uptime` |
//! | `/a//b/` (empty levels) | `t.%.a.%.b.%` |
//! | `v1.2/x*y` | `t.v1%2E2.x%2Ay` |
//! | filter `a/+/c` | `t.a.*.c` |
//! | filter `a/#` | `t.a.>` and `t.a` (`#` also matches its parent level) |
//! | filter `#`, `+/x` | `t.>`, `t.*.x` (never under `s`) |
//! | filter `$SYS/#` | `s.$SYS.>` and `s.$SYS` |
//!
//! # The rules
//!
//! - **Root.** A topic whose first level starts with `$` lives under the root token `s`, every
//!   other topic under `t`. A filter starting with a wildcard maps under `t` only, so that, as
//!   in MQTT, `#` and `+/...` never match `$` topics ([MQTT-4.7.2-1]); NATS's wildcards know
//!   no such rule, the root token gives it to them.
//! - **Levels.** Each level is one token. NATS tokens cannot be empty, so an empty level is the
//!   token `%` alone (never the result of an escape, which is always three bytes).
//! - **Escapes.** Inside a level, the bytes NATS gives a meaning to, and the escape byte itself,
//!   are written `%` and two upper-case hexadecimal digits: `.` (`%2E`), `*` (`%2A`), `>`
//!   (`%3E`), `%` (`%25`), space and every other ASCII control character (`%00`-`%20`, `%7F`:
//!   NATS's protocol splits on white space and its subject tree keeps `%7F` for itself).
//!   Everything else passes as it is, `$` and non-ASCII UTF-8 included: NATS subjects are
//!   UTF-8, and a multi-byte character never contains an ASCII byte.
//! - **Wildcards.** In a filter, `+` is `*` and `#` is `>`; a `#` that is not the whole filter
//!   also gives the subject filter of its parent level, because MQTT's `a/#` matches `a`
//!   ([MQTT-4.7.1-2]) and NATS's `a.>` does not match `a`. A shared subscription
//!   (`$share/{group}/{filter}`) maps its filter; the group is the transport's business.
//!
//! The mapping is one to one: [`subject_to_topic`] gives back the topic [`topic_to_subject`]
//! was given, and accepts only subjects it could have produced (one spelling per topic), so
//! a subject received from another node is either the topic it was sent as, or an error.
//! The mapping itself has no length limit: a subject is at most three times its topic's
//! length plus two bytes, and the transport checks it against the NATS server's limits.
//!
//! # Compared with NATS's own MQTT support
//!
//! nats-server maps `/` to `.`, `.` inside a level to `//`, an empty level to a `/` token, and
//! refuses topics with white space; `*` and `>` inside a level stay as they are, and `$`
//! topics share one namespace with the others (it filters them out of wildcard subscriptions
//! itself). Here no MQTT topic is refused (a broker of the cluster accepts what a single
//! broker accepts: spaces, control characters, a level that is exactly `*`), the escapes keep
//! every wildcard byte out of subjects so that any NATS client library takes them, and the
//! root token lets plain NATS subscriptions keep MQTT's `$` rule.

use std::fmt::Write as _;

use crate::topic::split_shared;
use crate::types::{InvalidTopic, TopicFilter, TopicName};

/// The root token of topics whose first level does not start with `$`.
const ROOT_TOPIC: &str = "t";
/// The root token of topics whose first level starts with `$`.
const ROOT_DOLLAR: &str = "s";
/// The token of an empty level, and the first byte of an escape.
const ESCAPE: u8 = b'%';

/// Why a subject is not one [`topic_to_subject`] produces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubjectError {
    /// The first token is not a root token (`t` or `s`).
    #[error("subject does not start with a topic root token")]
    UnknownRoot,
    /// A root token with no level after it.
    #[error("subject has no topic level")]
    NoLevel,
    /// Two dots in a row, or a dot at the end.
    #[error("subject has an empty token")]
    EmptyToken,
    /// A wildcard, white space or control byte that a topic's subject escapes.
    #[error("subject has an unescaped byte 0x{0:02X}")]
    Unescaped(u8),
    /// A `%` not followed by two upper-case hexadecimal digits naming a byte that is escaped.
    #[error("subject has an invalid escape")]
    BadEscape,
    /// The root token does not agree with the first level (`$` under `t`, or not under `s`).
    #[error("subject's root token does not match its first level")]
    RootMismatch,
    /// The decoded topic is not a valid MQTT topic name.
    #[error("subject is not a valid topic name: {0}")]
    InvalidTopic(#[from] InvalidTopic),
}

/// The one or two NATS subject filters that together match what an MQTT filter matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectFilters {
    filter: String,
    parent: Option<String>,
}

impl SubjectFilters {
    /// The mapped filter itself (`t.a.>` for `a/#`).
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// The parent level a trailing `#` also matches (`t.a` for `a/#`), if any.
    pub fn parent(&self) -> Option<&str> {
        self.parent.as_deref()
    }

    /// Both, the filter first.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.filter.as_str()).chain(self.parent.as_deref())
    }
}

/// Whether a byte inside a level is written as an escape.
fn escaped(b: u8) -> bool {
    b <= b' ' || b == 0x7f || b == b'.' || b == b'*' || b == b'>' || b == ESCAPE
}

/// The root token for a first level.
fn root(first_level: &str) -> &'static str {
    if first_level.starts_with('$') {
        ROOT_DOLLAR
    } else {
        ROOT_TOPIC
    }
}

/// Appends one level as a token.
fn push_level(out: &mut String, level: &str) {
    if level.is_empty() {
        out.push(ESCAPE as char);
        return;
    }
    let mut rest = level;
    // Copy the runs that need no escape whole; escaped bytes are ASCII, so every split is on
    // a character boundary.
    while let Some(i) = rest.bytes().position(escaped) {
        out.push_str(&rest[..i]);
        let _ = write!(out, "%{:02X}", rest.as_bytes()[i]);
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

/// The subject a message published on `topic` travels under.
pub fn topic_to_subject(topic: &TopicName) -> String {
    let topic = topic.as_str();
    let mut out = String::with_capacity(topic.len() + 4);
    let mut levels = topic.split('/');
    let first = levels.next().unwrap_or_default();
    out.push_str(root(first));
    for level in std::iter::once(first).chain(levels) {
        out.push('.');
        push_level(&mut out, level);
    }
    out
}

/// The subject filters a node subscribes to on NATS for a local subscription to `filter`
/// (for `$share/{group}/{filter}`, those of its filter).
pub fn filter_to_subjects(filter: &TopicFilter) -> SubjectFilters {
    let filter = split_shared(filter.as_str()).map_or(filter.as_str(), |(_, f)| f);
    let mut levels = filter.split('/');
    let first = levels.next().unwrap_or_default();
    let wildcard_first = first == "+" || first == "#";
    let mut out = String::with_capacity(filter.len() + 4);
    out.push_str(if wildcard_first {
        ROOT_TOPIC
    } else {
        root(first)
    });
    let mut parent = None;
    for level in std::iter::once(first).chain(levels) {
        match level {
            "#" => {
                // `a/#` also matches `a`; a lone `#` has no parent level.
                if first != "#" {
                    parent = Some(out.clone());
                }
                out.push_str(".>");
            }
            "+" => out.push_str(".*"),
            _ => {
                out.push('.');
                push_level(&mut out, level);
            }
        }
    }
    SubjectFilters {
        filter: out,
        parent,
    }
}

/// Appends the decoded text of one token.
fn decode_level(token: &str, out: &mut String) -> Result<(), SubjectError> {
    if token.is_empty() {
        return Err(SubjectError::EmptyToken);
    }
    if token.as_bytes() == [ESCAPE] {
        return Ok(());
    }
    let mut rest = token;
    // Escaped bytes and the escape itself are ASCII: every split is on a character boundary.
    while let Some(i) = rest.bytes().position(escaped) {
        let bytes = rest.as_bytes();
        if bytes[i] != ESCAPE {
            return Err(SubjectError::Unescaped(bytes[i]));
        }
        let decoded = match bytes.get(i + 1..i + 3) {
            Some(&[hi, lo]) => match (upper_hex(hi), upper_hex(lo)) {
                (Some(hi), Some(lo)) => (hi << 4) | lo,
                _ => return Err(SubjectError::BadEscape),
            },
            _ => return Err(SubjectError::BadEscape),
        };
        if !escaped(decoded) {
            return Err(SubjectError::BadEscape);
        }
        out.push_str(&rest[..i]);
        out.push(char::from(decoded));
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(())
}

/// The value of an upper-case hexadecimal digit.
fn upper_hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The topic a message received under `subject` was published on.
///
/// Only subjects [`topic_to_subject`] produces are accepted; any other is an error, never a
/// guess.
pub fn subject_to_topic(subject: &str) -> Result<TopicName, SubjectError> {
    let mut tokens = subject.split('.');
    let dollar = match tokens.next() {
        Some(ROOT_TOPIC) => false,
        Some(ROOT_DOLLAR) => true,
        _ => return Err(SubjectError::UnknownRoot),
    };
    let mut topic = String::with_capacity(subject.len());
    let mut count = 0usize;
    for token in tokens {
        if count > 0 {
            topic.push('/');
        }
        decode_level(token, &mut topic)?;
        count += 1;
    }
    if count == 0 {
        return Err(SubjectError::NoLevel);
    }
    if topic.starts_with('$') != dollar {
        return Err(SubjectError::RootMismatch);
    }
    Ok(TopicName::new(&topic)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(t: &str) -> String {
        topic_to_subject(&TopicName::new(t).unwrap())
    }

    fn filters(f: &str) -> Vec<String> {
        filter_to_subjects(&TopicFilter::new(f).unwrap())
            .iter()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_documented_examples() {
        assert_eq!(subject("sensors/room 1/temp"), "t.sensors.room%201.temp");
        assert_eq!(subject("$SYS/broker/uptime"), "s.$SYS.broker.uptime");
        assert_eq!(subject("/a//b/"), "t.%.a.%.b.%");
        assert_eq!(subject("v1.2/x*y"), "t.v1%2E2.x%2Ay");
        assert_eq!(subject("50%/>/é"), "t.50%25.%3E.é");
        assert_eq!(filters("a/+/c"), ["t.a.*.c"]);
        assert_eq!(filters("a/#"), ["t.a.>", "t.a"]);
        assert_eq!(filters("#"), ["t.>"]);
        assert_eq!(filters("+/x"), ["t.*.x"]);
        assert_eq!(filters("+/#"), ["t.*.>", "t.*"]);
        assert_eq!(filters("$SYS/#"), ["s.$SYS.>", "s.$SYS"]);
        assert_eq!(filters("$share/g/a/#"), ["t.a.>", "t.a"]);
        assert_eq!(filters("/#"), ["t.%.>", "t.%"]);
    }

    #[test]
    fn subjects_not_produced_by_the_mapping_are_refused() {
        let cases = [
            ("x.a", SubjectError::UnknownRoot),
            ("t", SubjectError::NoLevel),
            ("t..a", SubjectError::EmptyToken),
            ("t.a.", SubjectError::EmptyToken),
            ("t.*", SubjectError::Unescaped(b'*')),
            ("t.a.>", SubjectError::Unescaped(b'>')),
            ("t.a b", SubjectError::Unescaped(b' ')),
            ("t.%2", SubjectError::BadEscape),
            ("t.%2e", SubjectError::BadEscape),
            ("t.%41", SubjectError::BadEscape),
            ("t.%%", SubjectError::BadEscape),
            ("t.$SYS", SubjectError::RootMismatch),
            ("s.SYS", SubjectError::RootMismatch),
            (
                "t.a+b",
                SubjectError::InvalidTopic(InvalidTopic::Topic(
                    crate::topic::TopicError::WildcardInName,
                )),
            ),
        ];
        for (subject, error) in cases {
            assert_eq!(subject_to_topic(subject), Err(error), "{subject}");
        }
    }
}
