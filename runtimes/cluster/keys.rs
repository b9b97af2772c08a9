//! The names the cluster's state lives under in JetStream: its key-value buckets, their keys
//! and each node's request subject.
//!
//! A key-value key may hold only `-`, `/`, `_`, `=`, `.` and ASCII letters and digits. A
//! retained message's key is the NATS subject of its topic
//! ([`topic_to_subject`](crate::broker::cluster::topic_to_subject)) with every other byte
//! written `=XX` (upper-case hexadecimal; `=` itself too), so one topic has one key and the
//! key gives the topic back; a session's key is `c.` and its client id written the same way
//! (`.` escaped too; the empty client id, which the router never keeps, is `e`). A key that
//! would be longer than [`MAX_KEY`] is `h.` and the SHA-256 of what it names instead (a
//! retained message's value names its topic; such a key is not read back).

use sha2::{Digest, Sha256};

use crate::broker::cluster::{subject_to_topic, topic_to_subject};
use crate::types::TopicName;

/// The longest key written as it is (NATS takes subjects of a few kilobytes; a hash keeps
/// every key well within that).
pub(crate) const MAX_KEY: usize = 1024;

/// Appends `bytes`, every byte a key may not hold (and `=`, and `.` unless `dots`) as `=XX`.
fn escape(out: &mut String, bytes: &[u8], dots: bool) {
    for &b in bytes {
        let plain =
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_') || (dots && b == b'.');
        if plain {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
}

/// `h.` and the SHA-256 of `bytes`, in hexadecimal.
fn hashed(bytes: &[u8]) -> String {
    let mut out = String::from("h.");
    for b in Sha256::digest(bytes) {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The key of `topic`'s retained message.
pub(crate) fn retained_key(topic: &TopicName) -> String {
    let subject = topic_to_subject(topic);
    let mut out = String::with_capacity(subject.len() + 8);
    escape(&mut out, subject.as_bytes(), true);
    if out.len() > MAX_KEY {
        return hashed(topic.as_bytes());
    }
    out
}

/// The topic a retained message's key names; `None` for a hashed key or one this node did
/// not write.
pub(crate) fn retained_topic(key: &str) -> Option<TopicName> {
    if key.starts_with("h.") {
        return None;
    }
    let mut bytes = Vec::with_capacity(key.len());
    let mut rest = key.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'=' {
            let hex = tail.get(..2)?;
            let hex = std::str::from_utf8(hex).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    let subject = String::from_utf8(bytes).ok()?;
    let topic = subject_to_topic(&subject).ok()?;
    // One spelling per topic: anything else was not written by a node.
    (retained_key(&topic) == key).then_some(topic)
}

/// The key of the session of `client_id`.
pub(crate) fn session_key(client_id: &str) -> String {
    if client_id.is_empty() {
        // A key may not end with `.`; no other key is a lone `e`.
        return "e".to_owned();
    }
    let mut out = String::from("c.");
    escape(&mut out, client_id.as_bytes(), false);
    if out.len() > MAX_KEY {
        return hashed(client_id.as_bytes());
    }
    out
}

/// `s` as one subject token or part of a bucket name: every byte but ASCII letters, digits,
/// `-` and `_` written as `escape_byte` and two hexadecimal digits (a bucket name takes no
/// `=`: `_` escapes there, itself included).
pub(crate) fn token(s: &str, escape_byte: char) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || (b == b'_' && escape_byte != '_') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("{escape_byte}{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_key(k: &str) -> bool {
        !k.is_empty()
            && !k.starts_with('.')
            && !k.ends_with('.')
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
    }

    #[test]
    fn every_topic_has_one_valid_key_that_gives_it_back() {
        for t in [
            "a/b",
            "/",
            "a//b/",
            "$SYS/x",
            "v1.2/x*y>z",
            "room 1/t=3%",
            "ünï/cödé",
            "a\u{7f}b",
        ] {
            let topic = TopicName::new(t).unwrap();
            let key = retained_key(&topic);
            assert!(valid_key(&key), "{t:?} -> {key:?}");
            assert_eq!(retained_topic(&key), Some(topic), "{key}");
        }
        assert_ne!(
            retained_key(&TopicName::new("a=2E").unwrap()),
            retained_key(&TopicName::new("a.").unwrap())
        );
    }

    #[test]
    fn keys_nobody_wrote_and_long_ones_name_no_topic() {
        for k in [
            "", "x", "t.a=", "t.a=G1", "t.a=2", "t.=61", "h.00", "t..a", "t.a=FF",
        ] {
            assert_eq!(retained_topic(k), None, "{k:?}");
        }
        let long = TopicName::new(&"x".repeat(2000)).unwrap();
        let key = retained_key(&long);
        assert!(key.starts_with("h.") && valid_key(&key) && key.len() == 66);
        assert_eq!(retained_topic(&key), None);
    }

    #[test]
    fn session_keys_are_one_valid_key_per_client_id() {
        let ids = ["a", "a.b", "a=2Eb", "", "ünï", "x y", &"z".repeat(2000)];
        let keys: Vec<String> = ids.iter().map(|i| session_key(i)).collect();
        for k in &keys {
            assert!(valid_key(k), "{k:?}");
            assert!(k.matches('.').count() <= 1, "{k:?}");
        }
        let distinct: std::collections::BTreeSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len());
        assert_eq!(token("node.a b", '='), "node=2Ea=20b");
        assert_eq!(token("my_prefix", '_'), "my_5Fprefix");
    }
}
