//! tinymqtt: an MQTT 3.1, 3.1.1 and 5.0 codec, client and broker built as sans-IO state machines.
//!
//! The core in this crate never touches a socket, a thread or a clock: it takes bytes and
//! caller-supplied `Instant`s and gives back bytes, events and the next deadline. Runtime
//! adapters (the `tokio`, `smol`, `async-std` and `blocking` features) do the IO.
//!
//! Every state machine has the same grammar: inputs are `handle_*(now, ...)`, commands return
//! `Result` only for the caller's own mistakes, and after every input or command the caller
//! drains `poll_transmit`, then `poll_timeout`, then `poll_event`, in that order. See
//! [`client::ClientSession`] for a session driven this way.
//!
//! The codec is usable on its own:
//!
//! ```
//! use bytes::BytesMut;
//! use tinymqtt::codec::{encode, Decoder, Packet, Publish};
//! use tinymqtt::{PacketId, ProtocolVersion, QoS, TopicName};
//!
//! let mut publish = Publish::new(TopicName::new("sensors/kitchen/temp")?, "21.5");
//! publish.qos = QoS::AtLeastOnce;
//! publish.packet_id = PacketId::new(1);
//!
//! let mut wire = BytesMut::new();
//! encode(&Packet::Publish(publish.clone()), ProtocolVersion::V5, &mut wire)?;
//!
//! // Bytes may arrive in any chunks: the decoder waits for a whole packet.
//! let decoder = Decoder::new(ProtocolVersion::V5).with_max_packet_size(1024);
//! let mut inbox = BytesMut::new();
//! let mut decoded = None;
//! for byte in wire.iter() {
//!     inbox.extend_from_slice(&[*byte]);
//!     if let Some(packet) = decoder.decode(&mut inbox)? {
//!         decoded = Some(packet);
//!     }
//! }
//! assert_eq!(decoded, Some(Packet::Publish(publish)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod broker;
pub mod client;
pub mod codec;
pub mod error;
mod hash;
mod string;
mod timer;
pub mod topic;
mod types;

/// Broker persistence, at its older path: the same module as [`broker::persist`].
pub use broker::persist as store;

pub use types::{
    ByteStr, InvalidTopic, PacketId, ProtocolVersion, QoS, ReasonCode, StringError, TopicFilter,
    TopicName,
};

#[cfg(any(
    feature = "tokio",
    feature = "smol",
    feature = "async-std",
    feature = "blocking"
))]
#[path = "../runtimes/mod.rs"]
pub mod runtimes;

/// An origin for unit tests: only differences from it matter.
#[cfg(test)]
#[allow(clippy::disallowed_methods)]
pub(crate) fn test_instant() -> std::time::Instant {
    std::time::Instant::now()
}
