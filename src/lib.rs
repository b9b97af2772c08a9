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
//! The whole IO loop of a client over a blocking TCP socket: write what the session transmits,
//! read until its next deadline, and feed back what arrived or that the deadline passed. The
//! runtime adapters run this same loop on their own sockets and timers.
//!
//! ```no_run
//! use std::io::{ErrorKind, Read, Write};
//! use std::net::TcpStream;
//! use std::time::Instant;
//!
//! use tinymqtt::client::{ClientConfig, ClientSession, Event};
//! use tinymqtt::codec::{SubscribeProperties, Subscription};
//! use tinymqtt::{ByteStr, ProtocolVersion, QoS, TopicFilter};
//!
//! # #[allow(clippy::disallowed_methods)]
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let mut socket = TcpStream::connect("127.0.0.1:1883")?;
//!     let config = ClientConfig::new(ProtocolVersion::V5, ByteStr::from_static("watcher"));
//!     let mut client = ClientSession::new(config);
//!     client.connect(Instant::now())?;
//!     let mut buf = [0u8; 4096];
//!     loop {
//!         // 1. Bytes to write.
//!         while let Some(bytes) = client.poll_transmit() {
//!             socket.write_all(&bytes)?;
//!         }
//!         // 2. The next deadline (keep-alive, CONNACK wait, resends).
//!         let deadline = client.poll_timeout();
//!         // 3. What happened; a command answering an event queues bytes, so drain again.
//!         let mut commanded = false;
//!         while let Some(event) = client.poll_event() {
//!             match event {
//!                 Event::Connected { .. } => {
//!                     let filter = TopicFilter::new("sensors/#")?;
//!                     let all = vec![Subscription::new(filter, QoS::AtLeastOnce)];
//!                     client.subscribe(Instant::now(), all, SubscribeProperties::default())?;
//!                     commanded = true;
//!                 }
//!                 Event::Message(m) => println!("{}: {:?}", m.publish.topic, m.publish.payload),
//!                 Event::Disconnected { reason, .. } => {
//!                     println!("closed: {reason:?}");
//!                     return Ok(());
//!                 }
//!                 _ => {}
//!             }
//!         }
//!         if commanded {
//!             continue;
//!         }
//!         // Wait for input until the deadline, then feed the session what happened.
//!         let now = Instant::now();
//!         match deadline {
//!             Some(at) if at <= now => {
//!                 client.handle_timeout(now);
//!                 continue;
//!             }
//!             Some(at) => socket.set_read_timeout(Some(at - now))?,
//!             None => socket.set_read_timeout(None)?,
//!         }
//!         match socket.read(&mut buf) {
//!             Ok(0) => client.handle_transport_closed(Instant::now()),
//!             Ok(n) => client.handle_input(Instant::now(), &buf[..n]),
//!             Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
//!                 client.handle_timeout(Instant::now())
//!             }
//!             Err(_) => client.handle_transport_closed(Instant::now()),
//!         }
//!     }
//! }
//! ```
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
// On docs.rs (see `[package.metadata.docs.rs]`), every item gated by a feature carries the
// badge of that feature; `.ci/docsrs.sh` checks the badges are there.
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
