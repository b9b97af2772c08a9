//! Transports between the socket and the sans-IO machines, written once for every runtime:
//! plain TCP, TLS (cargo feature `tls`), WebSocket (feature `websocket`) and WebSocket over
//! TLS. Each is a byte-in/byte-out machine (`Link`): the runtime hands it what the socket
//! read and writes what it gives back; the MQTT machines above never learn which one they
//! sit on. A plain connection has no `Link` at all (its bytes go straight through).
//!
//! A client names its server with an [`Endpoint`]: `mqtt://host:1883`, `mqtts://host:8883`,
//! `ws://host:80/mqtt`, `wss://host:443/mqtt`, or a [`SocketAddr`]. A host name is resolved on
//! every connect and reconnect, and TLS checks the certificate against it (and sends it as
//! SNI).
//!
//! ```no_run
//! # #[cfg(all(feature = "tokio", feature = "tls"))]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tinymqtt::client::ClientConfig;
//! use tinymqtt::runtimes::driver::transport::{Endpoint, TlsOptions};
//! use tinymqtt::runtimes::tokio::Client;
//! use tinymqtt::{ByteStr, ProtocolVersion};
//!
//! let endpoint = Endpoint::parse("mqtts://broker.example.com:8883")?
//!     .tls(TlsOptions::new().ca_file("ca.pem"));
//! let config = ClientConfig::new(ProtocolVersion::V5, ByteStr::from_static("sensor-1"));
//! let (client, events) = Client::connect_to(endpoint, config).await?;
//! # drop((client, events));
//! # Ok(())
//! # }
//! ```

// The listener half (acceptors, the server side of TLS and WebSocket, certificate names) is
// compiled with every runtime but used only by the broker feature's servers.
#![cfg_attr(not(feature = "broker"), allow(dead_code))]

use std::net::SocketAddr;

mod endpoint;
mod link;
mod listener;
mod open;
#[cfg(test)]
mod tests;
#[cfg(feature = "tls")]
mod tls;
#[cfg(not(feature = "tls"))]
#[path = "no_tls.rs"]
mod tls;
#[cfg(feature = "websocket")]
mod ws;
#[cfg(not(feature = "websocket"))]
#[path = "no_ws.rs"]
mod ws;

#[cfg(feature = "tls")]
pub use tls::{Roots, ServerTls, TlsOptions};
#[cfg(feature = "websocket")]
pub use ws::MAX_WS_MESSAGE;

pub(crate) use endpoint::Connector;
pub use endpoint::{Endpoint, Scheme};
pub(crate) use link::Link;
#[cfg(all(
    feature = "broker",
    any(feature = "tokio", feature = "smol", feature = "async-std")
))]
pub(crate) use listener::Gauge;
#[cfg_attr(not(feature = "broker"), allow(unused_imports))]
pub(crate) use listener::{accepted, acceptors, Held, SharedAcceptor};
pub use listener::{Acceptor, ListenerConfig, ListenerStats, Protocol, Reloader};
#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
pub(crate) use open::open;
#[cfg(feature = "blocking")]
pub(crate) use open::open_blocking;

/// Why a transport could not be opened or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A URL that is not one of the forms a client connects to.
    #[error("invalid url {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The host name could not be resolved.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// No address of the host took the TCP connection.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The last address tried.
        addr: SocketAddr,
        /// The socket's error (refused, unreachable, timed out).
        source: std::io::Error,
    },
    /// A setting or a file (certificate, key, CA) that cannot be used; names the file.
    #[error("{0}")]
    Config(String),
    /// The transport needs a cargo feature this build does not have.
    #[error("{0} needs the cargo feature `{1}`")]
    Unsupported(&'static str, &'static str),
    /// TLS failed: a certificate refused (and why: unknown issuer, expired, wrong name), an
    /// alert from the peer, bytes that are not TLS.
    #[cfg(feature = "tls")]
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// The WebSocket upgrade was refused or the WebSocket protocol broken.
    #[error("websocket: {0}")]
    WebSocket(String),
    /// `use_identity_as_username` could not name the client (no certificate, or a name
    /// that is not a usable user name).
    #[error("identity: {0}")]
    Identity(String),
    /// The socket failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}
