//! The broker through its public sans-IO API: raw packets ([`crate::sim::raw::Raw`]), real
//! clients on the simulated network ([`crate::sim::Sim`]), the router and connections apart
//! (`split`), the store's records, crash points, the subscription tree, and the application's
//! requests and links (`admin`).

mod admin;
mod backpressure;
mod cluster_acks;
mod cluster_once;
mod cluster_seam;
mod cluster_sessions;
mod cluster_shared;
mod cluster_subject;
mod crash_points;
mod durable;
mod e2e;
mod edges;
mod packets;
mod simulated;
mod split;
mod store;
mod tree;
