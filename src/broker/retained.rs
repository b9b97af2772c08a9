//! Retained messages by topic, found by topic filter.
//!
//! Stored level by level like the subscription tree, so a filter visits only the branches it
//! can match; `+` and `#` at the first level skip `$` topics ([MQTT-4.7.2-1]).

// Public with the internal feature `_internals` (for the benches and property tests); without
// it, what only they use is unused here, and what is `pub` is the router's alone.
#![cfg_attr(not(feature = "_internals"), allow(dead_code, unreachable_pub))]

use std::collections::HashMap;

use crate::topic::split_shared;
use crate::types::{TopicFilter, TopicName};

#[derive(Debug)]
struct Node<M> {
    children: HashMap<Box<[u8]>, Node<M>>,
    message: Option<M>,
}

impl<M> Default for Node<M> {
    fn default() -> Self {
        Node {
            children: HashMap::new(),
            message: None,
        }
    }
}

impl<M> Node<M> {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.message.is_none()
    }
}

/// At most one retained message per topic name.
///
/// `M` is what the broker keeps with each message (the PUBLISH and when it arrived, for expiry).
#[derive(Debug)]
pub struct RetainedStore<M> {
    root: Node<M>,
    len: usize,
}

impl<M> Default for RetainedStore<M> {
    fn default() -> Self {
        RetainedStore {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<M> RetainedStore<M> {
    /// An empty store.
    pub fn new() -> Self {
        RetainedStore::default()
    }

    /// Messages stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores `message` for `topic`, replacing and returning the previous one
    /// ([MQTT-3.3.1-5]).
    pub fn insert(&mut self, topic: &TopicName, message: M) -> Option<M> {
        let mut node = &mut self.root;
        for level in topic.as_bytes().split(|&b| b == b'/') {
            node = node.children.entry(level.into()).or_default();
        }
        let old = node.message.replace(message);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes and returns the message of `topic` (an empty retained payload does this,
    /// [MQTT-3.3.1-6]); empty branches are pruned.
    pub fn remove(&mut self, topic: &TopicName) -> Option<M> {
        let levels: Vec<&[u8]> = topic.as_bytes().split(|&b| b == b'/').collect();
        let old = remove_at(&mut self.root, &levels);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// The message of `topic`, if one is retained.
    pub fn get(&self, topic: &TopicName) -> Option<&M> {
        let mut node = &self.root;
        for level in topic.as_bytes().split(|&b| b == b'/') {
            node = node.children.get(level)?;
        }
        node.message.as_ref()
    }

    /// Calls `f` with every message whose topic `filter` matches (for `$share/{group}/{f}`,
    /// the inner filter `f`).
    pub fn for_each_match<'a>(&'a self, filter: &TopicFilter, mut f: impl FnMut(&'a M)) {
        let text = match split_shared(filter.as_str()) {
            Some((_, inner)) => inner,
            None => filter.as_str(),
        };
        let levels: Vec<&str> = text.split('/').collect();
        walk(&self.root, &levels, true, &mut f);
    }

    /// Keeps only the messages `keep` says to (an expiry sweep); returns how many were dropped.
    pub fn retain(&mut self, mut keep: impl FnMut(&M) -> bool) -> usize {
        let dropped = retain_at(&mut self.root, &mut keep);
        self.len -= dropped;
        dropped
    }
}

fn remove_at<M>(node: &mut Node<M>, levels: &[&[u8]]) -> Option<M> {
    match levels {
        [] => node.message.take(),
        [level, rest @ ..] => {
            let child = node.children.get_mut(*level)?;
            let old = remove_at(child, rest);
            if child.is_empty() {
                node.children.remove(*level);
            }
            old
        }
    }
}

fn retain_at<M>(node: &mut Node<M>, keep: &mut impl FnMut(&M) -> bool) -> usize {
    let mut dropped = 0;
    if node.message.as_ref().is_some_and(|m| !keep(m)) {
        node.message = None;
        dropped += 1;
    }
    node.children.retain(|_, child| {
        dropped += retain_at(child, keep);
        !child.is_empty()
    });
    dropped
}

fn all<'a, M>(node: &'a Node<M>, f: &mut impl FnMut(&'a M)) {
    if let Some(m) = &node.message {
        f(m);
    }
    for child in node.children.values() {
        all(child, f);
    }
}

fn walk<'a, M>(node: &'a Node<M>, levels: &[&str], first: bool, f: &mut impl FnMut(&'a M)) {
    // A wildcard at the first level skips topics starting with `$`.
    let visible = |key: &[u8]| !(first && key.first() == Some(&b'$'));
    match levels {
        [] => {
            if let Some(m) = &node.message {
                f(m);
            }
        }
        ["#"] => {
            // `a/#` also matches `a` itself; at the root there is no message to match.
            if let Some(m) = &node.message {
                f(m);
            }
            for (key, child) in &node.children {
                if visible(key) {
                    all(child, f);
                }
            }
        }
        ["+", rest @ ..] => {
            for (key, child) in &node.children {
                if visible(key) {
                    walk(child, rest, false, f);
                }
            }
        }
        [level, rest @ ..] => {
            if let Some(child) = node.children.get(level.as_bytes()) {
                walk(child, rest, false, f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(store: &RetainedStore<&'static str>, filter: &'static str) -> Vec<&'static str> {
        let mut v = Vec::new();
        store.for_each_match(&TopicFilter::from_static(filter), |m| v.push(*m));
        v.sort();
        v
    }

    #[test]
    fn filters_find_what_they_match() {
        let mut s = RetainedStore::new();
        for t in ["a", "a/b", "a/b/c", "a/c", "$SYS/x", "/lead", "b"] {
            assert!(s.insert(&TopicName::new(t).unwrap(), t).is_none());
        }
        assert_eq!(s.len(), 7);
        assert_eq!(
            found(&s, "#"),
            vec!["/lead", "a", "a/b", "a/b/c", "a/c", "b"]
        );
        assert_eq!(found(&s, "a/#"), vec!["a", "a/b", "a/b/c", "a/c"]);
        assert_eq!(found(&s, "a/+"), vec!["a/b", "a/c"]);
        assert_eq!(found(&s, "+"), vec!["a", "b"]);
        assert_eq!(found(&s, "+/lead"), vec!["/lead"]);
        assert_eq!(found(&s, "$SYS/#"), vec!["$SYS/x"]);
        assert_eq!(found(&s, "$share/g/a/b"), vec!["a/b"]);
        assert_eq!(found(&s, "a/b/c/d"), Vec::<&str>::new());
    }

    #[test]
    fn replace_remove_and_sweep_keep_the_count() {
        let mut s = RetainedStore::new();
        let t = TopicName::from_static("x/y");
        assert_eq!(s.insert(&t, "one"), None);
        assert_eq!(s.insert(&t, "two"), Some("one"), "[MQTT-3.3.1-5] replaces");
        assert_eq!(s.len(), 1);
        assert_eq!(s.get(&t), Some(&"two"));
        assert_eq!(s.remove(&t), Some("two"));
        assert!(s.is_empty() && s.root.is_empty(), "branches pruned");
        for t in ["p/1", "p/2", "q"] {
            s.insert(&TopicName::new(t).unwrap(), t);
        }
        assert_eq!(s.retain(|m| m.starts_with('p')), 1);
        assert_eq!(s.len(), 2);
        assert_eq!(found(&s, "#"), vec!["p/1", "p/2"]);
    }
}
