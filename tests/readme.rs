//! The README's quick start is `examples/quickstart.rs` word for word, and it runs: against our
//! tokio broker it publishes, receives its own message and exits 0.
//!
//! `cargo test` builds the examples before it runs this.

use std::process::Command;

use tinymqtt::broker::BrokerConfig;
use tinymqtt::runtimes::tokio::Server;

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
fn the_quickstart_example_runs_against_our_broker() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (addr, stop, served) = rt.block_on(async {
        let config = BrokerConfig::default().with_sys_interval(None);
        let broker = Server::bind(config, &["127.0.0.1:0".parse().unwrap()])
            .await
            .unwrap();
        let addr = broker.local_addrs()[0];
        let stop = broker.handle();
        (addr, stop, tokio::spawn(broker.run()))
    });
    // target/<profile>/deps/readme-* -> target/<profile>/examples/quickstart
    let mut exe = std::env::current_exe().unwrap();
    exe.pop();
    if exe.ends_with("deps") {
        exe.pop();
    }
    let exe = exe.join("examples").join("quickstart");
    let out = Command::new(&exe)
        .arg(addr.to_string())
        .output()
        .expect("the quickstart example is built (cargo test builds the examples)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("acknowledged: Success"), "{stdout}");
    assert!(stdout.contains("sensors/kitchen 21.5"), "{stdout}");
    stop.shutdown();
    rt.block_on(served).unwrap();
}
