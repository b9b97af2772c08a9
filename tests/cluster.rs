//! Several tinymqtt nodes acting as one broker over NATS with JetStream: a `nats-server -js`
//! on a free loopback port, and example brokers (`target/debug/examples/broker`, built with
//! the `cluster` feature) each with a `[cluster]` config, reached by real clients
//! (mosquitto_pub / mosquitto_sub, paho-mqtt).
//!
//! `cargo test --all-features` builds the example broker before it runs this; alone:
//! `cargo build --examples --all-features && cargo test --all-features --test cluster`.

#[path = "support/nats.rs"]
mod nats;
#[path = "support/interop.rs"]
mod peers;

#[path = "cluster/crash_once.rs"]
mod crash_once;
#[path = "cluster/durability.rs"]
mod durability;
#[path = "cluster/hostile.rs"]
mod hostile;
#[path = "cluster/node.rs"]
mod node;
#[path = "cluster/outage.rs"]
mod outage;
#[path = "cluster/redelivery.rs"]
mod redelivery;
#[path = "cluster/routing.rs"]
mod routing;

use nats::NatsServer;

/// The server `make tools` installs starts with JetStream on, and greets a raw connection
/// with its `INFO` line.
#[test]
fn nats_server_starts_with_jetstream() {
    let server = NatsServer::start();
    let info = server.info_line();
    assert!(info.starts_with("INFO {"), "not an INFO line: {info:?}");
    assert!(
        info.contains("\"jetstream\":true"),
        "JetStream is off: {info}"
    );
    assert!(
        info.contains(&format!("\"port\":{}", server.port())),
        "{info}"
    );
    let store = server.store_dir().to_owned();
    assert!(store.is_dir());
    drop(server);
    assert!(!store.exists(), "the store directory outlived the server");
}
