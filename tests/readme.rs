//! The README's quick start is `examples/quickstart.rs` word for word, and it runs: over TLS, by
//! host name (`mqtts://localhost`), against our tokio broker's TLS listener with a CA this test
//! makes, it publishes, receives its own message and exits 0.
//!
//! `cargo test` builds the examples before it runs this.

use std::process::Command;

use tinymqtt::broker::{BrokerConfig, Router};
use tinymqtt::runtimes::driver::transport::{ListenerConfig, ServerTls};
use tinymqtt::runtimes::tokio::Server;
use tinymqtt::runtimes::BrokerOptions;

#[path = "support/pki.rs"]
mod pki;

/// The body of the first ```rust block after `heading` in the README.
fn readme_block(heading: &str) -> String {
    let readme = include_str!("../README.md");
    let section = &readme[readme.find(heading).expect("the README has the heading")..];
    let start = section.find("```rust\n").expect("a rust block") + "```rust\n".len();
    let end = section[start..].find("```").expect("the block ends");
    section[start..start + end].to_string()
}

#[test]
fn the_readme_quick_start_is_the_quickstart_example() {
    assert_eq!(
        readme_block("## Quick start"),
        include_str!("../examples/quickstart.rs"),
        "README.md's quick start and examples/quickstart.rs must stay the same"
    );
}

#[test]
fn the_quickstart_example_runs_over_tls_by_host_name_against_our_broker() {
    let pki = pki::make("readme");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (port, stop, served) = rt.block_on(async {
        let config = BrokerConfig::default().with_sys_interval(None);
        let listener = ListenerConfig {
            tls: Some(ServerTls {
                certfile: pki.path("server.pem"),
                keyfile: pki.path("server.key"),
                cafile: None,
                require_certificate: false,
            }),
            ..ListenerConfig::plain("127.0.0.1:0".parse().unwrap())
        };
        let broker =
            Server::bind_listeners(Router::new(config), BrokerOptions::default(), &[listener])
                .await
                .unwrap();
        let port = broker.local_addrs()[0].port();
        let stop = broker.handle();
        (port, stop, tokio::spawn(broker.run()))
    });
    // target/<profile>/deps/readme-* -> target/<profile>/examples/quickstart
    let mut exe = std::env::current_exe().unwrap();
    exe.pop();
    if exe.ends_with("deps") {
        exe.pop();
    }
    let exe = exe.join("examples").join("quickstart");
    let out = Command::new(&exe)
        .arg(format!("mqtts://localhost:{port}"))
        .arg(pki.path("ca.pem"))
        .output()
        .expect("the quickstart example is built (cargo test builds the examples)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("acknowledged: Success"), "{stdout}");
    assert!(
        stdout.contains("tinymqtt/quickstart/kitchen 21.5"),
        "{stdout}"
    );

    // Without the CA the server's certificate is refused, and the example says why.
    let out = Command::new(&exe)
        .arg(format!("mqtts://localhost:{port}"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
    stop.shutdown();
    rt.block_on(served).unwrap();
}

#[test]
fn the_readme_embedding_section_is_the_embed_example() {
    assert_eq!(
        readme_block("## Embed the broker"),
        include_str!("../examples/embed.rs"),
        "README.md's embedding section and examples/embed.rs must stay the same"
    );
}

#[test]
fn the_embed_example_publishes_into_its_broker_and_kicks_its_client() {
    let mut exe = std::env::current_exe().unwrap();
    exe.pop();
    if exe.ends_with("deps") {
        exe.pop();
    }
    let out = Command::new(exe.join("examples").join("embed"))
        .output()
        .expect("the embed example is built (cargo test builds the examples)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    // The callback saw the application's message, then the kick.
    let got = stdout.find("sensor-1 got commands/sensor-1 calibrate");
    let listed = stdout.find("connected: sensor-1 over V5");
    let kicked = stdout.find("sensor-1 disconnected: administrative action");
    assert!(
        got.is_some() && listed.is_some() && kicked.is_some(),
        "{stdout}"
    );
    assert!(got < kicked, "{stdout}");
}
