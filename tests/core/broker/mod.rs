//! The broker through its public sans-IO API: raw packets ([`crate::sim::raw::Raw`]), real
//! clients on the simulated network ([`crate::sim::Sim`]), the router and connections apart
//! (`split`), the store's records, crash points, and the subscription tree.

mod backpressure;
mod crash_points;
mod durable;
mod e2e;
mod edges;
mod packets;
mod simulated;
mod split;
mod store;
mod tree;
