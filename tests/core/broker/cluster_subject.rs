//! The MQTT topic <-> NATS subject mapping of a cluster against MQTT's own matching
//! (`tinymqtt::topic::matches`) and a model of NATS's: random topics and filters from an
//! alphabet of the characters either side gives a meaning to.

use proptest::prelude::*;
use tinymqtt::broker::cluster::{filter_to_subjects, subject_to_topic, topic_to_subject};
use tinymqtt::topic::{matches, split_shared};
use tinymqtt::{TopicFilter, TopicName};

/// NATS's subject matching: `*` is any one token, a final `>` is one or more tokens, any other
/// token matches itself. Wildcards have no meaning in a subject a message is published to.
fn nats_matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return f.next().is_none(),
            (Some("*"), Some(_)) => {}
            (Some(ft), Some(st)) if ft == st => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Levels mixing plain text with what NATS or the escaping gives a meaning to.
fn level() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        4 => Just("a"),
        2 => Just("b"),
        3 => Just(""),
        2 => Just("$x"),
        1 => Just("."),
        1 => Just("a.b"),
        1 => Just("*"),
        1 => Just(">"),
        1 => Just("x>"),
        1 => Just(" "),
        1 => Just("%"),
        1 => Just("%2E"),
        1 => Just("é"),
        1 => Just("\t"),
        1 => Just("\u{7f}"),
        1 => Just("$"),
    ]
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
        any::<bool>(),
    )
        .prop_map(|(mut levels, hash, shared)| {
            if hash || levels.is_empty() {
                levels.push("#");
            }
            let f = levels.join("/");
            if shared {
                format!("$share/g/{f}")
            } else {
                f
            }
        })
        .prop_filter("a valid filter", |f| TopicFilter::new(f).is_ok())
}

/// A topic the filter matches, most of the time: its wildcards replaced by levels.
fn matching_pair() -> impl Strategy<Value = (String, String)> {
    (filter(), prop::collection::vec(level(), 4), 0..3usize)
        .prop_map(|(f, fill, extra)| {
            let inner = split_shared(&f).map_or(f.as_str(), |(_, inner)| inner);
            let mut levels = Vec::new();
            let mut fill = fill.into_iter();
            for l in inner.split('/') {
                match l {
                    "+" => levels.push(fill.next().unwrap_or("a")),
                    "#" => levels.extend(fill.by_ref().take(extra)),
                    _ => levels.push(l),
                }
            }
            (f.clone(), levels.join("/"))
        })
        .prop_filter("a topic name is not empty", |(_, t)| !t.is_empty())
}

fn check_matching(f: &str, t: &str) -> Result<(), TestCaseError> {
    let filter = TopicFilter::new(f).unwrap();
    let topic = TopicName::new(t).unwrap();
    let inner = split_shared(f).map_or(f, |(_, inner)| inner);
    let subject = topic_to_subject(&topic);
    let subjects = filter_to_subjects(&filter);
    let nats = subjects.iter().any(|s| nats_matches(s, &subject));
    prop_assert_eq!(
        matches(inner, t),
        nats,
        "filter {:?} topic {:?}: subject {:?}, filters {:?}",
        f,
        t,
        subject,
        subjects
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// NATS matches the mapped subject filters exactly where MQTT matches the filter.
    #[test]
    fn nats_matches_where_mqtt_matches(f in filter(), t in topic()) {
        check_matching(&f, &t)?;
    }

    /// The same on pairs built to match (random pairs rarely do).
    #[test]
    fn nats_matches_where_mqtt_matches_on_close_pairs((f, t) in matching_pair()) {
        check_matching(&f, &t)?;
    }

    /// A subject is one NATS token per level, never a wildcard or an empty token, never white
    /// space, and gives back its topic.
    #[test]
    fn a_subject_gives_back_its_topic(t in topic()) {
        let topic = TopicName::new(&t).unwrap();
        let subject = topic_to_subject(&topic);
        prop_assert!(subject.split('.').all(|tok| !tok.is_empty() && tok != "*" && tok != ">"));
        prop_assert!(!subject.bytes().any(|b| b <= b' ' || b == 0x7f));
        prop_assert_eq!(subject.split('.').count(), t.split('/').count() + 1);
        prop_assert_eq!(subject_to_topic(&subject), Ok(topic));
    }

    /// The same for any valid topic name, not only those of the alphabet.
    #[test]
    fn any_topic_round_trips(t in "[^+#\u{0}]{1,40}") {
        let topic = TopicName::new(&t).unwrap();
        prop_assert_eq!(subject_to_topic(&topic_to_subject(&topic)), Ok(topic));
    }

    /// A subject from elsewhere is accepted only in the one spelling the mapping gives its
    /// topic, so two subjects never name the same topic.
    #[test]
    fn a_foreign_subject_has_one_spelling(s in "[ts$%.*>a2E5 é]{0,12}") {
        if let Ok(topic) = subject_to_topic(&s) {
            prop_assert_eq!(topic_to_subject(&topic), s);
        }
    }
}
