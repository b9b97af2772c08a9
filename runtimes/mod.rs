//! Runtime adapters: sockets and timers around the sans-IO core, one cargo feature each.
//!
//! They use only the core's public API. The client and broker drivers arrive with the runtime
//! issue; for now each feature compiles its (empty) module so every feature combination builds.

#[cfg(feature = "async-std")]
pub mod async_std;
#[cfg(feature = "blocking")]
pub mod blocking;
#[cfg(feature = "smol")]
pub mod smol;
#[cfg(feature = "tokio")]
pub mod tokio;
