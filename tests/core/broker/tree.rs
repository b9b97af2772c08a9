//! The subscription tree and the retained store against the reference matcher
//! (`tinymqtt::topic::matches`): random filters, topics, inserts and removes.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use tinymqtt::broker::{Match, RetainedStore, SessionId, SubscriptionEntry, SubscriptionTree};
use tinymqtt::codec::SubscriptionOptions;
use tinymqtt::topic::{matches, split_shared};
use tinymqtt::{TopicFilter, TopicName};

/// Topic levels from a small alphabet, so filters and topics meet often.
fn level() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("a"), Just("b"), Just(""), Just("$x"), Just("c")]
}

fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(level(), 1..5)
        .prop_map(|v| v.join("/"))
        .prop_filter("a topic name is not empty", |t| !t.is_empty())
}

fn filter() -> impl Strategy<Value = String> {
    let lvl = prop_oneof![3 => level(), 1 => Just("+")];
    (
        prop::collection::vec(lvl, 0..4),
        any::<bool>(),
        prop::option::of(prop_oneof![Just("g1"), Just("g2")]),
    )
        .prop_map(|(mut levels, hash, group)| {
            if hash || levels.is_empty() {
                levels.push("#");
            }
            let mut f = levels.join("/");
            if f.is_empty() {
                // A lone empty level: the empty filter is not valid.
                f.push('#');
            }
            match group {
                Some(g) => format!("$share/{g}/{f}"),
                None => f,
            }
        })
}

#[derive(Debug, Clone)]
enum Op {
    Insert(String, u64),
    Remove(String, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (filter(), 0..6u64).prop_map(|(f, s)| Op::Insert(f, s)),
        1 => (filter(), 0..6u64).prop_map(|(f, s)| Op::Remove(f, s)),
    ]
}

fn sub() -> SubscriptionEntry {
    SubscriptionEntry {
        options: SubscriptionOptions::default(),
        identifier: None,
    }
}

proptest! {
    #[test]
    fn tree_matches_like_the_reference(ops in prop::collection::vec(op(), 1..60), topics in prop::collection::vec(topic(), 1..8)) {
        let mut tree = SubscriptionTree::new();
        // The model: filter -> sessions.
        let mut model: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
        for op in &ops {
            match op {
                Op::Insert(f, s) => {
                    let filter = TopicFilter::new(f).unwrap();
                    let fresh = model.entry(f.clone()).or_default().insert(*s);
                    let old = tree.insert(&filter, SessionId(*s), sub());
                    prop_assert_eq!(old.is_none(), fresh);
                }
                Op::Remove(f, s) => {
                    let filter = TopicFilter::new(f).unwrap();
                    let had = model.get_mut(f).is_some_and(|set| set.remove(s));
                    prop_assert_eq!(tree.remove(&filter, SessionId(*s)).is_some(), had);
                }
            }
        }
        let total: usize = model.values().map(BTreeSet::len).sum();
        prop_assert_eq!(tree.len(), total);
        for t in &topics {
            // One entry per matching subscription: a session subscribed with two matching
            // filters appears twice (the router merges those, the tree reports both).
            let mut want: Vec<(u64, Option<String>)> = Vec::new();
            for (f, sessions) in &model {
                let (group, inner) = match split_shared(f) {
                    Some((g, inner)) => (Some(g.to_string()), inner),
                    None => (None, f.as_str()),
                };
                if matches(inner, t) {
                    for s in sessions {
                        want.push((*s, group.clone()));
                    }
                }
            }
            let mut got = Vec::new();
            tree.for_each_match(t.as_bytes(), |m| match m {
                Match::Plain(s, _) => got.push((s.0, None)),
                Match::Shared { group, members } => {
                    for (s, _) in members.as_slice() {
                        got.push((s.0, Some(group.to_string())));
                    }
                }
            });
            want.sort();
            got.sort();
            prop_assert_eq!(&got, &want, "topic {}", t);
        }
    }

    #[test]
    fn retained_store_matches_like_the_reference(topics in prop::collection::vec(topic(), 0..20), filters in prop::collection::vec(filter(), 1..8)) {
        let mut store = RetainedStore::new();
        let mut model = BTreeSet::new();
        for t in &topics {
            store.insert(&TopicName::new(t).unwrap(), t.clone());
            model.insert(t.clone());
        }
        prop_assert_eq!(store.len(), model.len());
        for f in &filters {
            let inner = split_shared(f).map_or(f.as_str(), |(_, i)| i);
            let want: BTreeSet<String> = model.iter().filter(|t| matches(inner, t)).cloned().collect();
            let mut got = Vec::new();
            store.for_each_match(&TopicFilter::new(f).unwrap(), |m| got.push(m.clone()));
            let n = got.len();
            let got: BTreeSet<String> = got.into_iter().collect();
            prop_assert_eq!(n, got.len());
            prop_assert_eq!(got, want, "filter {}", f);
        }
    }
}
