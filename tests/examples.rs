//! The example programs as users run them: `publisher` and `subscriber` against Debian's
//! `mosquitto` broker in every protocol version and at every QoS, and the README's walkthrough
//! (`broker`, then a subscriber and a publisher, then `status` and `stop` on its stdin) on every
//! runtime, with `mosquitto_sub` listening too.
//!
//! `cargo test` builds the examples before it runs this (they need every runtime feature).

#![cfg(all(
    feature = "tokio",
    feature = "smol",
    feature = "async-std",
    feature = "blocking"
))]

#[path = "support/interop.rs"]
mod peers;

use peers::{
    example, free_port, mosquitto_sub, next_msg, run, run_ok, wait_for_port, Mosquitto, Peer,
};

const RUNTIMES: [&str; 4] = ["tokio", "smol", "async-std", "blocking"];

/// Starts the example subscriber and waits until its subscription is acknowledged.
fn subscriber(port: u16, args: &[&str]) -> Peer {
    let port = port.to_string();
    let mut all = vec!["--port", &port, "--log-level", "info"];
    all.extend_from_slice(args);
    let sub = Peer::spawn(&example("subscriber"), &all);
    sub.line_where(|l| l.starts_with("stderr: ") && l.contains("subscribed"));
    sub
}

#[test]
fn example_publisher_and_subscriber_talk_through_mosquitto_in_every_version_at_every_qos() {
    let m = Mosquitto::start();
    let port = m.port.to_string();
    let mut runtimes = RUNTIMES.iter().cycle();
    for v in ["3.1", "3.1.1", "5"] {
        for qos in ["0", "1", "2"] {
            let rt = runtimes.next().unwrap();
            let topic = format!("examples/{v}/{qos}");
            let sub = subscriber(
                m.port,
                &[
                    "--topic",
                    &topic,
                    "--qos",
                    qos,
                    "--count",
                    "3",
                    "--protocol",
                    v,
                    "--runtime",
                    rt,
                ],
            );
            run_ok(
                &example("publisher"),
                &[
                    "--port",
                    &port,
                    "--topic",
                    &topic,
                    "--message",
                    "hi there",
                    "--qos",
                    qos,
                    "--count",
                    "3",
                    "--protocol",
                    v,
                    "--runtime",
                    rt,
                ],
            );
            for _ in 0..3 {
                assert_eq!(
                    sub.line_where(|l| !l.starts_with("stderr: ")),
                    format!("{topic} hi there"),
                    "{v} {rt}"
                );
            }
            sub.wait_success();
        }
    }
}

#[test]
fn example_publisher_fails_when_no_broker_listens() {
    let port = free_port().to_string();
    let (status, out) = run(
        &example("publisher"),
        &[
            "--port",
            &port,
            "--topic",
            "t",
            "--message",
            "m",
            "--qos",
            "1",
        ],
    );
    assert!(
        !status.success(),
        "publisher succeeded with nothing listening: {out}"
    );
}

#[test]
fn readme_walkthrough_works_on_every_runtime() {
    for rt in RUNTIMES {
        let port = free_port();
        let p = port.to_string();
        let mut broker = Peer::spawn_with_stdin(
            &example("broker"),
            &["--host", "127.0.0.1", "--port", &p, "--runtime", rt],
        );
        broker.line_where(|l| l.contains("listening on"));
        wait_for_port(port);

        let ours = subscriber(
            port,
            &[
                "--topic",
                "walk/#",
                "--qos",
                "1",
                "--count",
                "2",
                "--runtime",
                rt,
            ],
        );
        let theirs = mosquitto_sub(port, &["-q", "1", "-t", "walk/#", "-C", "2"]);
        for n in ["1", "2"] {
            run_ok(
                &example("publisher"),
                &[
                    "--port",
                    &p,
                    "--topic",
                    "walk/kitchen",
                    "--message",
                    n,
                    "--qos",
                    "1",
                    "--runtime",
                    rt,
                ],
            );
        }
        for n in ["1", "2"] {
            assert_eq!(
                ours.line_where(|l| !l.starts_with("stderr: ")),
                format!("walk/kitchen {n}"),
                "{rt}"
            );
            assert_eq!(
                next_msg(&theirs),
                (false, 1, "walk/kitchen".into(), n.into()),
                "{rt}"
            );
        }
        ours.wait_success();
        theirs.wait_success();

        broker.send_line("status");
        let status = broker.line_where(|l| !l.starts_with("stderr: ") && l.contains("messages"));
        assert!(status.contains("received"), "{rt}: status line {status:?}");

        // The console lists a connected client and its subscription, and kicks it.
        let watcher = mosquitto_sub(
            port,
            &["-V", "mqttv5", "-i", "console-watch", "-t", "console/#"],
        );
        let listed = (0..50).any(|_| {
            broker.send_line("clients");
            let summary = |l: &str| l.contains("client(s)") || l.contains("client console-watch");
            let line = broker.line_where(summary);
            if line.contains("client console-watch") {
                return true;
            }
            #[allow(clippy::disallowed_methods)] // real processes run on real time
            std::thread::sleep(std::time::Duration::from_millis(50));
            false
        });
        assert!(listed, "{rt}: `clients` lists the connected mosquitto_sub");
        broker.send_line("subscriptions console-watch");
        let sub = broker.line_where(|l| l.starts_with("subscription "));
        assert_eq!(sub, "subscription console/# qos 0", "{rt}");
        broker.send_line("kick console-watch");
        let kicked = broker.line_where(|l| l.starts_with("kick"));
        assert_eq!(kicked, "kicked console-watch", "{rt}");
        drop(watcher);
        broker.send_line("stop");
        broker.wait_success();
    }
}

#[test]
fn example_publisher_sets_and_clears_a_retained_message_like_mosquitto_pub() {
    let m = Mosquitto::start();
    let port = m.port.to_string();
    let publisher = example("publisher");
    run_ok(
        &publisher,
        &[
            "-p",
            &port,
            "-t",
            "examples/r",
            "-m",
            "kept",
            "-q",
            "1",
            "-r",
        ],
    );
    let sub = mosquitto_sub(m.port, &["-q", "1", "-t", "examples/r", "-C", "1"]);
    assert_eq!(
        next_msg(&sub),
        (true, 1, "examples/r".into(), "kept".into())
    );
    sub.wait_success();

    run_ok(
        &publisher,
        &["-p", &port, "-t", "examples/r", "-n", "-q", "1", "-r"],
    );
    let sub = mosquitto_sub(m.port, &["-q", "1", "-t", "examples/r"]);
    let got = sub.lines_within(std::time::Duration::from_millis(300), |l| {
        l.starts_with("MSG ")
    });
    assert!(
        got.is_empty(),
        "the retained message was not cleared: {got:?}"
    );
}

#[test]
fn example_broker_with_persistence_keeps_retained_messages_and_sessions_across_a_restart() {
    let dir = std::env::temp_dir().join(format!("tinymqtt-examples-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = dir.to_string_lossy().into_owned();
    let port = free_port();
    let p = port.to_string();
    let start = |fsync: &str| {
        let b = Peer::spawn_with_stdin(
            &example("broker"),
            &[
                "--port",
                &p,
                "--persistence",
                &store,
                "--fsync",
                fsync,
                "--runtime",
                "blocking",
            ],
        );
        b.line_where(|l| l.contains("listening on"));
        wait_for_port(port);
        b
    };
    let mut broker = start("always");
    run_ok(
        &example("publisher"),
        &["-p", &p, "-t", "kept/1", "-m", "across", "-q", "1", "-r"],
    );
    // A persistent session with a subscription, then away.
    let away = ["-c", "-i", "durable-sub", "-q", "1", "-t", "queued/#", "-E"];
    mosquitto_sub(port, &away).wait_success();
    broker.send_line("stop");
    broker.wait_success();

    // Acknowledging at once and syncing every second: a graceful stop syncs everything.
    let mut broker = start("interval");
    let sub = mosquitto_sub(port, &["-q", "1", "-t", "kept/#", "-C", "1"]);
    assert_eq!(next_msg(&sub), (true, 1, "kept/1".into(), "across".into()));
    sub.wait_success();
    // The session and its subscription survived: a message published now is queued for it.
    run_ok(
        &example("publisher"),
        &["-p", &p, "-t", "queued/a", "-m", "for you", "-q", "1"],
    );
    let back = [
        "-c",
        "-i",
        "durable-sub",
        "-q",
        "1",
        "-t",
        "queued/#",
        "-C",
        "1",
    ];
    let back = peers::line_buffered(
        "mosquitto_sub",
        &[
            &["-h", "127.0.0.1", "-p", &p, "-F", "MSG %r %q %t %p"][..],
            &back[..],
        ]
        .concat(),
    );
    assert_eq!(
        next_msg(&back),
        (false, 1, "queued/a".into(), "for you".into())
    );
    back.wait_success();
    broker.send_line("stop");
    broker.wait_success();
    let _ = std::fs::remove_dir_all(&dir);
}
