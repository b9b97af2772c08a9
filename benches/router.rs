//! Router benchmarks (issue 4). Today they measure the subscription tree the router will own:
//!
//! - `tree_match/{10k,100k}`: one topic matched against 10,000 / 100,000 subscriptions
//!   (distinct literal filters plus a share of `+` and `#` filters), ns per match;
//! - `tree_fanout/1000`: one topic with 1,000 subscribers, ns per delivery found.
//!
//! Run with `cargo bench --bench router`; `-- --test` runs each once.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use tinymqtt::broker::{Match, SessionId, Subscription, SubscriptionTree};
use tinymqtt::codec::SubscriptionOptions;
use tinymqtt::TopicFilter;

fn sub() -> Subscription {
    Subscription {
        options: SubscriptionOptions::default(),
        identifier: None,
    }
}

/// `n` subscriptions: mostly `site/{a}/dev/{b}/temp`, one in ten with a `+` or `#`.
fn tree(n: usize) -> SubscriptionTree {
    let mut t = SubscriptionTree::new();
    for i in 0..n {
        let f = match i % 10 {
            0 => format!("site/{}/dev/+/temp", i / 10),
            1 => format!("site/{}/#", i / 10),
            _ => format!("site/{}/dev/{}/temp", i / 100, i % 100),
        };
        t.insert(&TopicFilter::new(&f).unwrap(), SessionId(i as u64), sub());
    }
    t
}

/// Visits every delivery the way the router will: reads the session and its options (through
/// `black_box`, so the loop cannot be folded into a count).
fn count(t: &SubscriptionTree, topic: &[u8]) -> usize {
    let mut n = 0;
    let mut visit = |s: SessionId, sub: &Subscription| {
        black_box((s, sub.options.qos));
        n += 1;
    };
    t.for_each_match(topic, |m| match m {
        Match::Plain(s, sub) => visit(s, sub),
        Match::Shared { members, .. } => {
            for (s, sub) in members.as_slice() {
                visit(*s, sub);
            }
        }
    });
    n
}

fn bench(c: &mut Criterion) {
    for (name, n) in [("10k", 10_000), ("100k", 100_000)] {
        let t = tree(n);
        let topic = b"site/42/dev/7/temp";
        assert!(count(&t, topic) >= 1, "the benchmark topic matches");
        let mut g = c.benchmark_group(format!("tree_match/{name}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("match", |b| b.iter(|| count(&t, black_box(topic))));
        g.finish();
    }
    let mut t = SubscriptionTree::new();
    let f = TopicFilter::from_static("fanout/topic");
    for i in 0..1000 {
        t.insert(&f, SessionId(i), sub());
    }
    let mut g = c.benchmark_group("tree_fanout/1000");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("deliveries", |b| {
        b.iter(|| {
            let n = count(&t, black_box(b"fanout/topic"));
            assert_eq!(n, 1000);
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30)
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
}
