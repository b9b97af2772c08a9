//! Our broker with real peers over 127.0.0.1: Debian's `mosquitto_pub` / `mosquitto_sub` in
//! MQTT 3.1, 3.1.1 and 5.0, and Python's paho-mqtt for MQTT 5 properties.
//!
//! `make test` installs the peers (apt: mosquitto-clients; pip: paho-mqtt); a missing peer fails
//! the test, it never skips it. Our client against the mosquitto broker is in the behaviour
//! suite (`tests/behaviour/interop.rs`), once per runtime.

#![cfg(feature = "blocking")]

#[path = "support/interop.rs"]
mod peers;

use std::net::SocketAddr;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::Duration;

use peers::{mosquitto_pub, mosquitto_sub, next_msg};
use tinymqtt::broker::BrokerConfig;
use tinymqtt::runtimes::blocking::Server;
use tinymqtt::runtimes::BrokerHandle;

/// The protocol names `mosquitto_pub`/`mosquitto_sub` take with `-V`.
const VERSIONS: [&str; 3] = ["mqttv31", "mqttv311", "mqttv5"];

/// Our broker (blocking runtime) on a free 127.0.0.1 port; shut down when dropped.
struct Ours {
    port: u16,
    stop: BrokerHandle,
    thread: Option<JoinHandle<()>>,
}

impl Ours {
    fn start() -> Ours {
        let config = BrokerConfig::default().with_sys_interval(None);
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let broker = Server::bind(config, &[addr]).expect("bind 127.0.0.1:0");
        let port = broker.local_addrs()[0].port();
        let stop = broker.handle();
        let thread = Some(std::thread::spawn(move || broker.run()));
        Ours { port, stop, thread }
    }
}

impl Drop for Ours {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn mosquitto_clients_exchange_messages_at_qos_0_1_2_in_every_version() {
    let b = Ours::start();
    for v in VERSIONS {
        for qos in ["0", "1", "2"] {
            let topic = format!("interop/{v}/q{qos}");
            let sub = mosquitto_sub(b.port, &["-V", v, "-q", qos, "-t", &topic, "-C", "2"]);
            let payload = format!("hello {v} qos {qos}");
            mosquitto_pub(b.port, &["-V", v, "-q", qos, "-t", &topic, "-m", &payload]);
            mosquitto_pub(b.port, &["-V", v, "-q", qos, "-t", &topic, "-m", "second"]);
            let q: u8 = qos.parse().unwrap();
            assert_eq!(next_msg(&sub), (false, q, topic.clone(), payload), "{v}");
            assert_eq!(
                next_msg(&sub),
                (false, q, topic.clone(), "second".into()),
                "{v}"
            );
            sub.wait_success();
        }
    }
}

#[test]
fn mosquitto_pub_qos2_burst_arrives_exactly_once_and_in_order() {
    let b = Ours::start();
    for v in VERSIONS {
        let topic = format!("interop/burst/{v}");
        let sub = mosquitto_sub(b.port, &["-V", v, "-q", "2", "-t", &topic]);
        let args = [
            "-V", v, "-q", "2", "-t", &topic, "-m", "m", "--repeat", "50",
        ];
        mosquitto_pub(b.port, &args);
        for _ in 0..50 {
            assert_eq!(next_msg(&sub), (false, 2, topic.clone(), "m".into()), "{v}");
        }
        let extra = sub.lines_within(Duration::from_millis(300), |l| l.starts_with("MSG "));
        assert!(extra.is_empty(), "{v}: duplicates after 50: {extra:?}");
    }
}

#[test]
fn retained_message_reaches_a_later_mosquitto_sub_with_the_retain_flag_and_is_cleared() {
    let b = Ours::start();
    for v in VERSIONS {
        let topic = format!("interop/retained/{v}");
        mosquitto_pub(
            b.port,
            &["-V", v, "-q", "1", "-r", "-t", &topic, "-m", "kept"],
        );
        let sub = mosquitto_sub(b.port, &["-V", v, "-q", "1", "-t", &topic, "-C", "1"]);
        assert_eq!(
            next_msg(&sub),
            (true, 1, topic.clone(), "kept".into()),
            "{v}"
        );
        sub.wait_success();

        mosquitto_pub(b.port, &["-V", v, "-q", "1", "-r", "-t", &topic, "-n"]);
        let sub = mosquitto_sub(b.port, &["-V", v, "-q", "1", "-t", &topic]);
        let got = sub.lines_within(Duration::from_millis(300), |l| l.starts_with("MSG "));
        assert!(
            got.is_empty(),
            "{v}: cleared retained message still delivered: {got:?}"
        );
    }
}

#[test]
fn will_of_a_killed_mosquitto_sub_is_published_and_not_of_a_clean_one() {
    let b = Ours::start();
    for v in VERSIONS {
        let will = format!("interop/will/{v}");
        let watcher = mosquitto_sub(b.port, &["-V", v, "-q", "1", "-t", &will]);
        let doomed = mosquitto_sub(
            b.port,
            &[
                "-V",
                v,
                "-t",
                "interop/nothing",
                "--will-topic",
                &will,
                "--will-payload",
                "gone",
                "--will-qos",
                "1",
            ],
        );
        doomed.kill();
        assert_eq!(
            next_msg(&watcher),
            (false, 1, will.clone(), "gone".into()),
            "{v}"
        );

        // `-E` subscribes, then disconnects normally: no will.
        let polite = [
            "-V",
            v,
            "-t",
            "interop/nothing",
            "--will-topic",
            &will,
            "-E",
        ];
        let polite = mosquitto_sub(b.port, &polite);
        polite.wait_success();
        let got = watcher.lines_within(Duration::from_millis(300), |l| l.starts_with("MSG "));
        assert!(
            got.is_empty(),
            "{v}: will sent after a normal DISCONNECT: {got:?}"
        );
    }
}

#[test]
fn persistent_mosquitto_sub_session_gets_what_was_published_while_it_was_away() {
    let b = Ours::start();
    for v in VERSIONS {
        let id = format!("interop-persist-{}", &v[4..]);
        let topic = format!("interop/persist/{v}");
        // Subscribe with a persistent session (-c), then leave.
        let first = mosquitto_sub(
            b.port,
            &["-V", v, "-c", "-i", &id, "-q", "1", "-t", &topic, "-E"],
        );
        first.wait_success();
        for n in ["one", "two", "three"] {
            mosquitto_pub(b.port, &["-V", v, "-q", "1", "-t", &topic, "-m", n]);
        }
        // Come back with the same id: the queued messages arrive, in order.
        let again = peers::line_buffered(
            "mosquitto_sub",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &b.port.to_string(),
                "-V",
                v,
                "-c",
                "-i",
                &id,
                "-q",
                "1",
                "-t",
                &topic,
                "-C",
                "3",
                "-F",
                "MSG %r %q %t %p",
            ],
        );
        for n in ["one", "two", "three"] {
            assert_eq!(next_msg(&again), (false, 1, topic.clone(), n.into()), "{v}");
        }
        again.wait_success();
    }
}

#[test]
fn paho_mqtt_v5_properties_pass_through() {
    let b = Ours::start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/paho_v5.py");
    let out = Command::new("python3")
        .args([script, "--port", &b.port.to_string()])
        .output()
        .expect("python3 runs (make test installs paho-mqtt)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "paho-mqtt checks failed:\n{stdout}");
    assert!(
        stdout.contains("6 passed, 0 failed"),
        "not every check ran:\n{stdout}"
    );
}
