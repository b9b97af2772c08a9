//! A cluster's infrastructure: the NATS server with JetStream that cluster nodes meet on,
//! started on a free loopback port for each test.

#[path = "support/nats.rs"]
mod nats;

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
