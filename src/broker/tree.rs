//! The subscription tree: topic filters stored level by level, matched against topic names.
//!
//! Matching walks only the branches a topic can reach (its literal levels and `+`), collects
//! `#` subscribers on the way, splits the topic lazily without allocating, and applies the rule
//! that wildcards at the first level do not match `$` topics ([MQTT-4.7.2-1]).

// Public with the internal feature `_internals` (for the benches and property tests); without
// it, what only they use is unused here, and what is `pub` is the router's alone.
#![cfg_attr(not(feature = "_internals"), allow(dead_code, unreachable_pub))]

use std::collections::HashMap;
use std::num::NonZeroU32;

use crate::codec::SubscriptionOptions;
use crate::hash::IdMap;
use crate::topic::split_shared;
use crate::types::TopicFilter;

/// Identifies a session inside the broker; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u64);

/// What one subscription asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionEntry {
    /// The subscription options (QoS, no local, retain as published, retain handling).
    pub options: SubscriptionOptions,
    /// The subscription identifier (MQTT 5).
    pub identifier: Option<NonZeroU32>,
}

/// The subscribers of one filter: a list for fast iteration, an index for O(1) changes.
#[derive(Debug, Default)]
pub struct Subscribers {
    list: Vec<(SessionId, SubscriptionEntry)>,
    index: IdMap<SessionId, usize>,
    /// A shared group's round-robin turn: kept with its members, so it goes with the group.
    turn: std::cell::Cell<usize>,
}

impl Subscribers {
    /// Adds or replaces `session`'s subscription; returns the one replaced.
    fn insert(&mut self, session: SessionId, sub: SubscriptionEntry) -> Option<SubscriptionEntry> {
        match self.index.get(&session) {
            Some(&i) => Some(std::mem::replace(&mut self.list[i].1, sub)),
            None => {
                self.index.insert(session, self.list.len());
                self.list.push((session, sub));
                None
            }
        }
    }

    fn remove(&mut self, session: SessionId) -> Option<SubscriptionEntry> {
        let i = self.index.remove(&session)?;
        let (_, sub) = self.list.swap_remove(i);
        if let Some((moved, _)) = self.list.get(i) {
            self.index.insert(*moved, i);
        }
        Some(sub)
    }

    /// The subscribers, in no particular order.
    pub fn as_slice(&self) -> &[(SessionId, SubscriptionEntry)] {
        &self.list
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// The next turn of a shared group's round robin (counts up from 0 on every call).
    pub fn next_turn(&self) -> usize {
        let turn = self.turn.get();
        self.turn.set(turn.wrapping_add(1));
        turn
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Plain and shared subscribers of one filter position.
#[derive(Debug, Default)]
struct Slot {
    plain: Subscribers,
    /// `$share/{group}/...` subscribers, by group name.
    shared: HashMap<Box<str>, Subscribers>,
}

impl Slot {
    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.shared.is_empty()
    }
}

/// The literal children of a node: a short list scanned in order while there are few (the
/// usual case: comparing a few short levels costs less than hashing one), a map beyond
/// [`FEW_CHILDREN`] (SipHash: the levels come from clients).
#[derive(Debug)]
enum Children {
    Few(Vec<(Box<[u8]>, Node)>),
    Many(HashMap<Box<[u8]>, Node>),
}

/// The most children a node keeps in a list.
const FEW_CHILDREN: usize = 8;

impl Default for Children {
    fn default() -> Children {
        Children::Few(Vec::new())
    }
}

impl Children {
    fn is_empty(&self) -> bool {
        match self {
            Children::Few(v) => v.is_empty(),
            Children::Many(m) => m.is_empty(),
        }
    }

    #[inline]
    fn get(&self, level: &[u8]) -> Option<&Node> {
        match self {
            Children::Few(v) => v.iter().find(|(l, _)| **l == *level).map(|(_, n)| n),
            Children::Many(m) => m.get(level),
        }
    }

    fn get_mut(&mut self, level: &[u8]) -> Option<&mut Node> {
        match self {
            Children::Few(v) => v.iter_mut().find(|(l, _)| **l == *level).map(|(_, n)| n),
            Children::Many(m) => m.get_mut(level),
        }
    }

    /// The child for `level`, added empty if missing.
    fn entry(&mut self, level: &[u8]) -> &mut Node {
        if let Children::Few(v) = self {
            if v.len() >= FEW_CHILDREN && !v.iter().any(|(l, _)| **l == *level) {
                *self = Children::Many(std::mem::take(v).into_iter().collect());
            }
        }
        match self {
            Children::Few(v) => {
                let i = match v.iter().position(|(l, _)| **l == *level) {
                    Some(i) => i,
                    None => {
                        v.push((level.into(), Node::default()));
                        v.len() - 1
                    }
                };
                &mut v[i].1
            }
            Children::Many(m) => m.entry(level.into()).or_default(),
        }
    }

    fn remove(&mut self, level: &[u8]) {
        match self {
            Children::Few(v) => v.retain(|(l, _)| **l != *level),
            Children::Many(m) => {
                m.remove(level);
            }
        }
    }
}

#[derive(Debug, Default)]
struct Node {
    children: Children,
    plus: Option<Box<Node>>,
    /// Filters ending at this node.
    exact: Slot,
    /// Filters ending in `/#` below this node (`#` also matches this level itself).
    hash: Slot,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.exact.is_empty()
            && self.hash.is_empty()
    }
}

/// One match of a topic: a plain subscription, or a shared group to pick a member from.
#[derive(Debug, Clone, Copy)]
pub enum Match<'a> {
    /// A plain subscription of `session`.
    Plain(SessionId, &'a SubscriptionEntry),
    /// A shared subscription group (`$share/{group}/{filter}`): deliver to one member.
    Shared {
        /// The group name.
        group: &'a str,
        /// The group's members.
        members: &'a Subscribers,
    },
}

/// Topic filters and their subscribers.
#[derive(Debug, Default)]
pub struct SubscriptionTree {
    root: Node,
    len: usize,
    /// `$share` groups with a member (one per group name and filter).
    groups: usize,
}

/// Splits a filter into its group (for `$share/...`) and its levels.
fn parse(filter: &TopicFilter) -> (Option<&str>, &str) {
    match split_shared(filter.as_str()) {
        Some((group, inner)) => (Some(group), inner),
        None => (None, filter.as_str()),
    }
}

impl SubscriptionTree {
    /// An empty tree.
    pub fn new() -> SubscriptionTree {
        SubscriptionTree::default()
    }

    /// Subscriptions stored (a session subscribed to two filters counts twice).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no subscription is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `$share` groups with at least one member (one per group name and filter).
    pub fn shared_groups(&self) -> usize {
        self.groups
    }

    /// Adds or replaces `session`'s subscription to `filter`; returns the one replaced
    /// ([MQTT-3.8.4-3]: a subscription to an identical filter replaces the existing one).
    pub fn insert(
        &mut self,
        filter: &TopicFilter,
        session: SessionId,
        sub: SubscriptionEntry,
    ) -> Option<SubscriptionEntry> {
        let (group, levels) = parse(filter);
        let mut node = &mut self.root;
        let mut parts = levels.split('/').peekable();
        let mut to_hash = false;
        while let Some(level) = parts.next() {
            if level == "#" && parts.peek().is_none() {
                to_hash = true;
                break;
            }
            node = if level == "+" {
                node.plus.get_or_insert_with(Box::default)
            } else {
                node.children.entry(level.as_bytes())
            };
        }
        let slot = if to_hash {
            &mut node.hash
        } else {
            &mut node.exact
        };
        let subs = match group {
            Some(g) => {
                if !slot.shared.contains_key(g) {
                    self.groups += 1;
                }
                slot.shared.entry(g.into()).or_default()
            }
            None => &mut slot.plain,
        };
        let old = subs.insert(session, sub);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes `session`'s subscription to `filter`; returns it if there was one. Branches left
    /// empty are pruned.
    pub fn remove(
        &mut self,
        filter: &TopicFilter,
        session: SessionId,
    ) -> Option<SubscriptionEntry> {
        let (group, levels) = parse(filter);
        let parts: Vec<&str> = levels.split('/').collect();
        let removed = remove_at(&mut self.root, &parts, group, session, &mut self.groups);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// Calls `f` with every subscription matching the topic name `topic`.
    pub fn for_each_match<'a>(&'a self, topic: &[u8], mut f: impl FnMut(Match<'a>)) {
        let dollar = topic.first() == Some(&b'$');
        walk(&self.root, Some(topic), true, dollar, &mut f);
    }
}

fn remove_at(
    node: &mut Node,
    parts: &[&str],
    group: Option<&str>,
    session: SessionId,
    groups: &mut usize,
) -> Option<SubscriptionEntry> {
    let mut from_slot = |slot: &mut Slot| match group {
        Some(g) => {
            let subs = slot.shared.get_mut(g)?;
            let r = subs.remove(session);
            if subs.is_empty() {
                slot.shared.remove(g);
                *groups -= 1;
            }
            r
        }
        None => slot.plain.remove(session),
    };
    match parts {
        [] => from_slot(&mut node.exact),
        ["#"] => from_slot(&mut node.hash),
        [level, rest @ ..] => {
            let removed;
            if *level == "+" {
                let child = node.plus.as_deref_mut()?;
                removed = remove_at(child, rest, group, session, groups);
                if child.is_empty() {
                    node.plus = None;
                }
            } else {
                let child = node.children.get_mut(level.as_bytes())?;
                removed = remove_at(child, rest, group, session, groups);
                if child.is_empty() {
                    node.children.remove(level.as_bytes());
                }
            }
            removed
        }
    }
}

fn emit<'a>(slot: &'a Slot, f: &mut impl FnMut(Match<'a>)) {
    for (session, sub) in &slot.plain.list {
        f(Match::Plain(*session, sub));
    }
    for (group, members) in &slot.shared {
        f(Match::Shared { group, members });
    }
}

/// `rest` is what is left of the topic (`None` once every level is consumed).
fn walk<'a>(
    node: &'a Node,
    rest: Option<&[u8]>,
    first: bool,
    dollar: bool,
    f: &mut impl FnMut(Match<'a>),
) {
    let wildcards = !(first && dollar);
    if wildcards {
        emit(&node.hash, f);
    }
    let Some(rest) = rest else {
        emit(&node.exact, f);
        return;
    };
    let (level, next) = match rest.iter().position(|&b| b == b'/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    if let Some(child) = node.children.get(level) {
        walk(child, next, false, dollar, f);
    }
    if wildcards {
        if let Some(plus) = node.plus.as_deref() {
            walk(plus, next, false, dollar, f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::QoS;

    fn sub(qos: QoS) -> SubscriptionEntry {
        SubscriptionEntry {
            options: SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            },
            identifier: None,
        }
    }

    fn matches(tree: &SubscriptionTree, topic: &str) -> Vec<(u64, Option<String>)> {
        let mut out = Vec::new();
        tree.for_each_match(topic.as_bytes(), |m| match m {
            Match::Plain(s, _) => out.push((s.0, None)),
            Match::Shared { group, members } => {
                for (s, _) in members.as_slice() {
                    out.push((s.0, Some(group.to_string())));
                }
            }
        });
        out.sort();
        out
    }

    #[test]
    fn many_siblings_match_the_same_as_few() {
        // Past FEW_CHILDREN siblings a node's children move from a list to a map.
        let mut t = SubscriptionTree::new();
        let n = FEW_CHILDREN as u64 * 3;
        for i in 0..n {
            let f = TopicFilter::new(&format!("s/{i}/t")).unwrap();
            t.insert(&f, SessionId(i), sub(QoS::AtMostOnce));
        }
        for i in 0..n {
            assert_eq!(matches(&t, &format!("s/{i}/t")), vec![(i, None)]);
        }
        assert!(matches(&t, &format!("s/{n}/t")).is_empty());
        for i in (0..n).step_by(2) {
            let f = TopicFilter::new(&format!("s/{i}/t")).unwrap();
            assert!(t.remove(&f, SessionId(i)).is_some());
        }
        for i in 0..n {
            let want = if i % 2 == 0 { vec![] } else { vec![(i, None)] };
            assert_eq!(matches(&t, &format!("s/{i}/t")), want, "s/{i}/t");
        }
        assert_eq!(t.len(), (n / 2) as usize);
    }

    #[test]
    fn plain_wildcards_and_dollar_topics() {
        let mut t = SubscriptionTree::new();
        let f = |s: &'static str| TopicFilter::from_static(s);
        t.insert(&f("sport/tennis/+"), SessionId(1), sub(QoS::AtMostOnce));
        t.insert(&f("sport/#"), SessionId(2), sub(QoS::AtLeastOnce));
        t.insert(&f("#"), SessionId(3), sub(QoS::AtMostOnce));
        t.insert(&f("+/+"), SessionId(4), sub(QoS::AtMostOnce));
        t.insert(&f("$SYS/#"), SessionId(5), sub(QoS::AtMostOnce));
        assert_eq!(t.len(), 5);
        let ids = |v: Vec<(u64, Option<String>)>| v.into_iter().map(|(s, _)| s).collect::<Vec<_>>();
        assert_eq!(ids(matches(&t, "sport/tennis/player1")), vec![1, 2, 3]);
        assert_eq!(
            ids(matches(&t, "sport")),
            vec![2, 3],
            "sport/# matches sport"
        );
        assert_eq!(ids(matches(&t, "sport/tennis")), vec![2, 3, 4]);
        assert_eq!(ids(matches(&t, "$SYS/uptime")), vec![5], "[MQTT-4.7.2-1]");
        assert_eq!(ids(matches(&t, "a/")), vec![3, 4]);
        // [MQTT-3.8.4-3]: the same filter again replaces, it does not add.
        let old = t.insert(&f("sport/#"), SessionId(2), sub(QoS::ExactlyOnce));
        assert_eq!(old.map(|s| s.options.qos), Some(QoS::AtLeastOnce));
        assert_eq!(t.len(), 5);
        assert!(t.remove(&f("sport/#"), SessionId(2)).is_some());
        assert!(t.remove(&f("sport/#"), SessionId(2)).is_none());
        assert_eq!(ids(matches(&t, "sport")), vec![3]);
        for (filter, id) in [("sport/tennis/+", 1), ("#", 3), ("+/+", 4), ("$SYS/#", 5)] {
            assert!(t.remove(&f(filter), SessionId(id)).is_some());
        }
        assert!(t.is_empty());
        assert!(t.root.is_empty(), "every branch was pruned");
    }

    #[test]
    fn shared_groups_are_reported_once_with_their_members() {
        let mut t = SubscriptionTree::new();
        let f = |s: &'static str| TopicFilter::from_static(s);
        t.insert(&f("$share/g1/a/+"), SessionId(1), sub(QoS::AtMostOnce));
        t.insert(&f("$share/g1/a/+"), SessionId(2), sub(QoS::AtMostOnce));
        t.insert(&f("$share/g2/a/#"), SessionId(3), sub(QoS::AtMostOnce));
        t.insert(&f("a/+"), SessionId(1), sub(QoS::AtMostOnce));
        let mut groups = Vec::new();
        let mut plain = Vec::new();
        t.for_each_match(b"a/b", |m| match m {
            Match::Plain(s, _) => plain.push(s.0),
            Match::Shared { group, members } => groups.push((group.to_string(), members.len())),
        });
        groups.sort();
        assert_eq!(groups, vec![("g1".to_string(), 2), ("g2".to_string(), 1)]);
        assert_eq!(plain, vec![1]);
        t.remove(&f("$share/g1/a/+"), SessionId(1));
        t.remove(&f("$share/g1/a/+"), SessionId(2));
        let mut n = 0;
        t.for_each_match(b"a/b", |m| {
            if matches!(m, Match::Shared { group: "g1", .. }) {
                n += 1;
            }
        });
        assert_eq!(n, 0, "an empty group is gone");
    }

    #[test]
    fn swap_remove_keeps_the_index_right() {
        let mut s = Subscribers::default();
        for i in 0..10 {
            s.insert(SessionId(i), sub(QoS::AtMostOnce));
        }
        for i in [0, 5, 9, 1] {
            assert!(s.remove(SessionId(i)).is_some());
        }
        for (pos, (id, _)) in s.list.iter().enumerate() {
            assert_eq!(s.index[id], pos);
        }
        assert_eq!(s.len(), 6);
    }
}
