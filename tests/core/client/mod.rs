//! The client session against a scripted server ([`crate::sim::peer::Peer`]).

mod props;
mod session;
