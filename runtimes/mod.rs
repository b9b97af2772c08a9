//! Runtime adapters: sockets and timers around the sans-IO core, one cargo feature each.
//!
//! They use only the core's public API. The poll loop is written once in [`driver`]; each
//! runtime module binds its sockets and timers and names the driver's types for it:
//! `tokio::{Client, Broker}`, `smol::{..}`, `async_std::{..}` and `blocking::{..}`.

#[cfg(feature = "broker")]
pub mod access;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod driver;
#[cfg(feature = "broker")]
pub mod settings;

pub use driver::{
    Ack, AuthHandler, BlockingEvents, BlockingPending, ConnectOptions, Error, Events, Pending,
    SubAck,
};
#[cfg(feature = "broker")]
pub use driver::{BrokerHandle, BrokerOptions, CheckCredentials, Fsync, Verdict};

#[cfg(any(feature = "smol", feature = "async-std"))]
mod aio;
#[cfg(feature = "async-std")]
pub mod async_std;
#[cfg(feature = "blocking")]
pub mod blocking;
#[cfg(feature = "smol")]
pub mod smol;
#[cfg(feature = "tokio")]
pub mod tokio;

/// A fresh, empty folder for one unit test's files, named after the test and this process.
#[cfg(all(test, feature = "broker"))]
pub(crate) fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tinymqtt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    dir
}
