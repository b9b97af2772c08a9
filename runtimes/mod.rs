//! Runtime adapters: sockets and timers around the sans-IO core, one cargo feature each.
//!
//! They use only the core's public API. The poll loop is written once in [`driver`]; each
//! runtime module binds its sockets and timers and names the driver's types for it:
//! `tokio::{Client, Broker}`, `smol::{..}`, `async_std::{..}` and `blocking::{..}`.

#[cfg(feature = "broker")]
pub mod access;
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
