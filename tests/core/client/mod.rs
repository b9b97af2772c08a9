//! The client session against a scripted server ([`peer::Peer`]).

mod peer;
mod props;
mod session;
