//! The sans-IO core's suites, in one test binary: the codec (`codec/`), the client session
//! against a scripted server (`client/`), and the broker (`broker/`): raw packets from a
//! scripted client (`sim::raw::Raw`) and clients and a broker on one simulated network with a
//! fake clock (`sim::Sim`). Everything goes through the public API; nothing here opens a
//! socket or reads the system clock but once, for an origin.

mod broker;
mod client;
mod codec;
mod sim;
mod support;
