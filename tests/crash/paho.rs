//! The crash test with real paho-mqtt clients (`tests/crash/paho_clients.py`): a persistent
//! publisher (clean session 0, `WINDOW` messages in flight, alternating QoS 1 and QoS 2,
//! unique payloads, automatic reconnect) and a persistent subscriber (clean session 0, one
//! filter at QoS 1 and one at QoS 2, automatic reconnect), while the example broker is
//! killed with SIGKILL at random intervals of 0.3 to 1.5 s and restarted on the same store.
//!
//! paho completes a QoS 2 delivery on PUBREL, so it sees a duplicate whenever the broker
//! releases the same message twice: this is the receiver that found QoS 2 messages arriving
//! twice after a crash. The oracle: no acknowledged message is lost, no QoS 2 message arrives
//! twice, and the subscriber's session is never forgotten. paho reports a flow's end, not its
//! PUBREC: a QoS 2 message counts as acknowledged from its PUBCOMP (a QoS 1 one from its
//! PUBACK).
//!
//! `PAHO_CRASH_KILLS=N` sets the number of kills (3 by default, bounded for `make test`;
//! `make crash` runs 8), `CRASH_SEED=N` repeats the kill moments.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::peers::{free_port, Peer};
use super::{next_random, start_broker, Work};

/// Messages the paho publisher has unacknowledged at once.
const WINDOW: usize = 50;
/// Kills in `make test` (a few seconds of load).
const KILLS: usize = 3;

/// What the paho clients reported.
#[derive(Debug, Default)]
struct Figures {
    published: u32,
    acked: BTreeSet<u32>,
    /// Every delivery: sequence number and the QoS it arrived with.
    got: Vec<(u32, u8)>,
    unfinished: usize,
    /// Reconnects whose CONNACK said session present 0: subscriber, publisher.
    lost_sessions: (usize, usize),
}

fn numbers(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').filter(|s| !s.is_empty())
}

/// Reads the script's report (see its docstring).
fn figures(script: &Peer) -> Figures {
    let mut f = Figures::default();
    loop {
        let line = script.line_where(|_| true);
        let (key, rest) = line.split_once(' ').unwrap_or((&line, ""));
        match key {
            "PUBLISHED" => f.published = rest.parse().expect("published"),
            "ACKED" => f.acked = numbers(rest).map(|s| s.parse().expect("seq")).collect(),
            "GOT" => {
                f.got = numbers(rest)
                    .map(|g| {
                        let (s, q) = g.split_once(':').expect("seq:qos");
                        (s.parse().expect("seq"), q.parse().expect("qos"))
                    })
                    .collect()
            }
            "UNFINISHED" => f.unfinished = rest.parse().expect("unfinished"),
            "SESSIONS" => {
                let (a, b) = rest.split_once(' ').expect("two counts");
                f.lost_sessions = (a.parse().expect("count"), b.parse().expect("count"));
            }
            "DONE" => return f,
            "DRAINED" => {}
            _ => panic!("paho clients: {line}"),
        }
    }
}

/// The problems in `f`, and a one-line summary of it.
fn judge(f: &Figures) -> (Vec<String>, String) {
    let mut count: BTreeMap<u32, (usize, u8)> = BTreeMap::new();
    for &(seq, qos) in &f.got {
        let c = count.entry(seq).or_insert((0, qos));
        c.0 += 1;
    }
    let lost: Vec<u32> = f
        .acked
        .iter()
        .filter(|s| !count.contains_key(s))
        .copied()
        .collect();
    let twice = |q: u8| -> Vec<u32> {
        count
            .iter()
            .filter(|(s, (n, _))| *n > 1 && (*s % 2 == 1) == (q == 2))
            .map(|(s, _)| *s)
            .collect()
    };
    let (dup1, dup2) = (twice(1), twice(2));
    let invented: Vec<u32> = count
        .keys()
        .filter(|&&s| s >= f.published)
        .copied()
        .collect();
    let wrong_qos: Vec<u32> = count
        .iter()
        .filter(|(s, (_, q))| *q != if *s % 2 == 0 { 1 } else { 2 })
        .map(|(s, _)| *s)
        .collect();
    let summary = format!(
        "published {}, acknowledged {} ({} QoS 2), arrived {} distinct in {} deliveries; \
         lost {}, QoS 2 duplicates {}, QoS 1 duplicates {}, unfinished {}, sessions forgotten \
         (subscriber, publisher) {:?}",
        f.published,
        f.acked.len(),
        f.acked.iter().filter(|s| *s % 2 == 1).count(),
        count.len(),
        f.got.len(),
        lost.len(),
        dup2.len(),
        dup1.len(),
        f.unfinished,
        f.lost_sessions,
    );
    let mut problems = Vec::new();
    let few = |v: &[u32]| format!("{:?}", &v[..v.len().min(10)]);
    if f.acked.is_empty() {
        problems.push("nothing was acknowledged (no load)".into());
    }
    if !lost.is_empty() {
        problems.push(format!("acknowledged, never arrived: {}", few(&lost)));
    }
    if !dup2.is_empty() {
        problems.push(format!("QoS 2 arrived more than once: {}", few(&dup2)));
    }
    if !invented.is_empty() {
        problems.push(format!("arrived, never published: {}", few(&invented)));
    }
    if !wrong_qos.is_empty() {
        problems.push(format!("arrived at the wrong QoS: {}", few(&wrong_qos)));
    }
    if f.lost_sessions.0 > 0 {
        problems.push("the broker forgot the subscriber's session".into());
    }
    (problems, summary)
}

#[test]
fn paho_clients_see_no_qos2_duplicate_and_no_loss_across_sigkills() {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let kills = std::env::var("PAHO_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(KILLS)
        .min(50);
    eprintln!("paho crash seed {seed} (CRASH_SEED={seed} repeats the kill moments)");
    let mut rng = seed;
    let work = Work::new();
    let port = free_port();
    let mut broker = start_broker(port, &work.0);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/crash/paho_clients.py");
    let (port_arg, window) = (port.to_string(), WINDOW.to_string());
    let mut clients = Peer::spawn_with_stdin("python3", &[script, &port_arg, &window]);
    clients.line_where(|l| l == "READY");
    let mut at = Vec::new();
    for _ in 0..kills {
        let load = 300 + next_random(&mut rng) % 1200;
        std::thread::sleep(Duration::from_millis(load));
        broker.kill();
        broker = start_broker(port, &work.0);
        at.push(load);
    }
    std::thread::sleep(Duration::from_millis(300));
    let said = clients.lines_within(Duration::ZERO, |_| true);
    assert!(said.is_empty(), "the paho clients said {said:?}");
    clients.send_line("stop");
    let f = figures(&clients);
    drop(broker);
    let (problems, summary) = judge(&f);
    eprintln!("paho crash: {kills} kills after {at:?} ms of load: {summary}");
    assert!(problems.is_empty(), "{summary}\nproblems: {problems:#?}");
}

#[test]
fn the_paho_oracle_names_losses_and_qos2_duplicates() {
    let f = Figures {
        published: 6,
        acked: (0..5).collect(),
        // 3 (QoS 2) twice, 0 (QoS 1) twice, 2 missing, 7 invented, 4 at the wrong QoS.
        got: vec![(0, 1), (0, 1), (1, 2), (3, 2), (3, 2), (4, 2), (7, 2)],
        ..Figures::default()
    };
    let (problems, summary) = judge(&f);
    assert_eq!(
        problems,
        vec![
            "acknowledged, never arrived: [2]",
            "QoS 2 arrived more than once: [3]",
            "arrived, never published: [7]",
            "arrived at the wrong QoS: [4]",
        ]
    );
    assert!(summary.contains("QoS 1 duplicates 1"), "{summary}");
}
