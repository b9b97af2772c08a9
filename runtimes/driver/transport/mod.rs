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

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

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

use crate::ByteStr;
#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
pub(crate) use open::open;
#[cfg(feature = "blocking")]
pub(crate) use open::open_blocking;
use tls::TlsLayer;
use ws::WsLayer;

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

/// How a client reaches its server: the URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheme {
    /// `mqtt://` (also `tcp://`): plain TCP, port 1883 by default.
    Mqtt,
    /// `mqtts://` (also `ssl://`, `tls://`): TLS, port 8883 by default.
    Mqtts,
    /// `ws://`: WebSocket, port 80 by default.
    Ws,
    /// `wss://`: WebSocket over TLS, port 443 by default.
    Wss,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Scheme::Mqtt => 1883,
            Scheme::Mqtts => 8883,
            Scheme::Ws => 80,
            Scheme::Wss => 443,
        }
    }

    /// Whether the scheme runs over TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Mqtts | Scheme::Wss)
    }

    /// Whether the scheme runs over WebSocket.
    pub fn is_websocket(self) -> bool {
        matches!(self, Scheme::Ws | Scheme::Wss)
    }
}

/// Where a client connects: a URL or a socket address, with its TLS settings.
#[derive(Debug, Clone)]
pub struct Endpoint {
    scheme: Scheme,
    /// A host name, or an IP address in text.
    host: String,
    port: u16,
    /// The address when given as one (no resolution).
    addr: Option<SocketAddr>,
    /// The WebSocket path.
    path: String,
    #[cfg(feature = "tls")]
    tls: TlsOptions,
}

impl Endpoint {
    /// Parses `mqtt://host:port`, `mqtts://host:port`, `ws://host:port/path` or
    /// `wss://host:port/path` (default ports 1883, 8883, 80, 443; a WebSocket URL without a
    /// path gets `/mqtt`). IPv6 addresses go in brackets.
    pub fn parse(url: &str) -> Result<Endpoint, TransportError> {
        let bad = |reason| TransportError::Url {
            url: url.to_owned(),
            reason,
        };
        let uri = http::Uri::from_str(url).map_err(|_| bad("not a URL"))?;
        let scheme = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("mqtt" | "tcp") => Scheme::Mqtt,
            Some("mqtts" | "ssl" | "tls" | "mqtt+ssl") => Scheme::Mqtts,
            Some("ws") => Scheme::Ws,
            Some("wss") => Scheme::Wss,
            Some(_) => return Err(bad("the scheme is not mqtt, mqtts, ws or wss")),
            None => return Err(bad("no scheme (mqtt://, mqtts://, ws://, wss://)")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials belong in the client's configuration"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        // What follows the host is `:port` (http's parser leaves a port it cannot read out).
        let has_port = authority.as_str().len() > authority.host().len();
        let port = match (has_port, authority.port_u16()) {
            (false, _) => scheme.default_port(),
            (true, Some(p)) if p != 0 => p,
            (true, _) => return Err(bad("the port is not 1 to 65535")),
        };
        let path = match uri.path_and_query().map(|p| p.as_str()) {
            None | Some("" | "/") => "/mqtt".to_owned(),
            Some(p) => p.to_owned(),
        };
        let addr = host
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port));
        Ok(Endpoint {
            scheme,
            host: host.to_owned(),
            port,
            addr,
            path,
            #[cfg(feature = "tls")]
            tls: TlsOptions::default(),
        })
    }

    /// The same endpoint with these TLS settings (used by `mqtts://` and `wss://`).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, options: TlsOptions) -> Endpoint {
        self.tls = options;
        self
    }

    /// The URL's scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host name (or address).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address, when the endpoint names one (no resolution needed).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Checks the settings and reads the files a connection needs (CA, client certificate),
    /// once, for every connection to come.
    pub(crate) fn connector(&self) -> Result<Connector, TransportError> {
        #[cfg(feature = "tls")]
        let tls = match self.scheme.is_tls() {
            true => Some(self.tls.build()?),
            false => None,
        };
        #[cfg(not(feature = "tls"))]
        if self.scheme.is_tls() {
            return Err(TransportError::Unsupported("mqtts:// and wss://", "tls"));
        }
        #[cfg(not(feature = "websocket"))]
        if self.scheme.is_websocket() {
            return Err(TransportError::Unsupported("ws:// and wss://", "websocket"));
        }
        Ok(Connector {
            endpoint: self.clone(),
            #[cfg(feature = "tls")]
            tls,
        })
    }
}

impl From<SocketAddr> for Endpoint {
    /// Plain MQTT over TCP to this address.
    fn from(addr: SocketAddr) -> Endpoint {
        Endpoint {
            scheme: Scheme::Mqtt,
            host: addr.ip().to_string(),
            port: addr.port(),
            addr: Some(addr),
            path: "/mqtt".to_owned(),
            #[cfg(feature = "tls")]
            tls: TlsOptions::default(),
        }
    }
}

impl FromStr for Endpoint {
    type Err = TransportError;

    fn from_str(url: &str) -> Result<Endpoint, TransportError> {
        Endpoint::parse(url)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Mqtt => "mqtt",
            Scheme::Mqtts => "mqtts",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        };
        let host = match self.host.contains(':') {
            true => format!("[{}]", self.host),
            false => self.host.clone(),
        };
        write!(f, "{scheme}://{host}:{}", self.port)?;
        if self.scheme.is_websocket() {
            f.write_str(&self.path)?;
        }
        Ok(())
    }
}

/// An endpoint ready for connections: its files read, its TLS configuration built.
#[derive(Debug, Clone)]
pub(crate) struct Connector {
    endpoint: Endpoint,
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Connector {
    /// The addresses to try, resolved now for a host name (`resolve` is the runtime's
    /// resolver).
    #[cfg(any(feature = "tokio", feature = "smol", feature = "async-std", test))]
    pub(crate) async fn addrs<F, Fut>(&self, resolve: F) -> Result<Vec<SocketAddr>, TransportError>
    where
        F: FnOnce(String, u16) -> Fut,
        Fut: std::future::Future<Output = std::io::Result<Vec<SocketAddr>>>,
    {
        if let Some(a) = self.endpoint.addr {
            return Ok(vec![a]);
        }
        let host = self.endpoint.host.clone();
        let found = resolve(host.clone(), self.endpoint.port).await;
        resolved(host, found)
    }

    /// The addresses of a host name, resolved now by the system's resolver (blocking).
    #[cfg(feature = "blocking")]
    pub(crate) fn addrs_blocking(&self) -> Result<Vec<SocketAddr>, TransportError> {
        use std::net::ToSocketAddrs;
        if let Some(a) = self.endpoint.addr {
            return Ok(vec![a]);
        }
        let host = self.endpoint.host.clone();
        let found = (host.as_str(), self.endpoint.port).to_socket_addrs();
        resolved(host, found.map(Iterator::collect))
    }

    /// The machine for a new connection (`None` for plain TCP); its first bytes (a TLS hello,
    /// an upgrade request) wait in [`Link::take_wire`].
    pub(crate) fn link(&self) -> Result<Option<Link>, TransportError> {
        let scheme = self.endpoint.scheme;
        if scheme == Scheme::Mqtt {
            return Ok(None);
        }
        let mut link = Link::default();
        #[cfg(feature = "tls")]
        if let Some(config) = &self.tls {
            let mut t = TlsLayer::client(config.clone(), &self.endpoint.host)?;
            t.output(&mut link.wire);
            link.tls = Some(t);
        }
        if scheme.is_websocket() {
            let e = &self.endpoint;
            let host = match e.host.contains(':') {
                true => format!("[{}]", e.host),
                false => e.host.clone(),
            };
            let url = format!("ws://{host}:{}{}", e.port, e.path);
            let mut out = Vec::new();
            link.ws = Some(WsLayer::client(&url, &mut out)?);
            link.down(out)?;
        }
        Ok(Some(link))
    }
}

/// The addresses a resolver found for `host`, or why there are none.
fn resolved(
    host: String,
    found: std::io::Result<Vec<SocketAddr>>,
) -> Result<Vec<SocketAddr>, TransportError> {
    match found {
        Ok(a) if !a.is_empty() => Ok(a),
        Ok(_) => Err(TransportError::Resolve {
            host,
            source: std::io::ErrorKind::NotFound.into(),
        }),
        Err(source) => Err(TransportError::Resolve { host, source }),
    }
}

/// What a broker listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// MQTT on the TCP stream.
    #[default]
    Mqtt,
    /// MQTT in WebSocket binary messages (subprotocol `mqtt` or `mqttv3.1`).
    WebSockets,
}

/// A broker listener: where it binds and what it speaks.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// The address to bind.
    pub bind: SocketAddr,
    /// MQTT or WebSockets.
    pub protocol: Protocol,
    /// TLS with these files, or plain.
    #[cfg(feature = "tls")]
    pub tls: Option<ServerTls>,
    /// Hands the common name of a client's certificate to the broker as its user name
    /// (needs TLS with a `cafile`; the CONNECT's own user name is ignored and no password is
    /// checked; a client without a certificate is refused).
    pub use_identity_as_username: bool,
}

impl ListenerConfig {
    /// A plain MQTT listener on `bind`.
    pub fn plain(bind: SocketAddr) -> ListenerConfig {
        ListenerConfig {
            bind,
            protocol: Protocol::Mqtt,
            #[cfg(feature = "tls")]
            tls: None,
            use_identity_as_username: false,
        }
    }

    /// Checks the listener's settings and reads its certificate files.
    pub fn acceptor(&self) -> Result<Acceptor, TransportError> {
        #[cfg(feature = "tls")]
        let checked = self.tls.as_ref().is_some_and(|t| t.cafile.is_some());
        #[cfg(not(feature = "tls"))]
        let checked = false;
        if self.use_identity_as_username && !checked {
            return Err(TransportError::Config(
                "use_identity_as_username needs TLS with a cafile (client certificates)".into(),
            ));
        }
        #[cfg(feature = "tls")]
        let tls = match &self.tls {
            Some(t) => Some(t.load()?),
            None => None,
        };
        #[cfg(not(feature = "websocket"))]
        if self.protocol == Protocol::WebSockets {
            return Err(TransportError::Unsupported(
                "protocol = \"websockets\"",
                "websocket",
            ));
        }
        Ok(Acceptor {
            protocol: self.protocol,
            #[cfg(feature = "tls")]
            tls,
            identity: self.use_identity_as_username,
        })
    }
}

/// The open connections of each of a broker's listeners, for `status` (clones share the
/// counts).
#[derive(Debug, Clone, Default)]
pub struct ListenerStats {
    listeners: Vec<(SocketAddr, Gauge)>,
}

impl ListenerStats {
    /// The counts of `addrs`, all zero.
    pub(crate) fn new(addrs: &[SocketAddr]) -> ListenerStats {
        let listeners = addrs.iter().map(|a| (*a, Gauge::default())).collect();
        ListenerStats { listeners }
    }

    /// The gauge of the listener at `index`.
    pub(crate) fn gauge(&self, index: usize) -> Gauge {
        self.listeners[index].1.clone()
    }

    /// Each listener's bound address and its open connections (TCP connections accepted and
    /// not closed yet, whether or not they finished their handshake and CONNECT).
    pub fn connections(&self) -> Vec<(SocketAddr, usize)> {
        self.listeners.iter().map(|(a, g)| (*a, g.get())).collect()
    }
}

/// The open connections of one listener.
#[derive(Debug, Clone, Default)]
pub(crate) struct Gauge(Arc<std::sync::atomic::AtomicUsize>);

impl Gauge {
    /// Counts one more open connection until the returned guard is dropped.
    pub(crate) fn hold(&self) -> Held {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Held(self.0.clone())
    }

    fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// One open connection of a listener, counted until dropped.
#[derive(Debug)]
pub(crate) struct Held(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A listener's acceptor, shared by its accept loop and the [`Reloader`].
pub(crate) type SharedAcceptor = Arc<std::sync::Mutex<Acceptor>>;

/// The acceptors of `configs` (`None` for a plain listener), their files read now, and the
/// [`Reloader`] that re-reads them.
pub(crate) fn acceptors(
    configs: &[ListenerConfig],
) -> std::io::Result<(Vec<Option<SharedAcceptor>>, Reloader)> {
    let mut reloader = Reloader::default();
    let mut all = Vec::new();
    for c in configs {
        match c.acceptor() {
            Ok(a) if a.is_plain() => all.push(None),
            Ok(a) => {
                let shared = Arc::new(std::sync::Mutex::new(a));
                reloader.listeners.push((c.clone(), shared.clone()));
                all.push(Some(shared));
            }
            Err(e) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("listener {}: {e}", c.bind),
                ))
            }
        }
    }
    Ok((all, reloader))
}

/// The transport of a new connection on a listener (`None`: plain).
pub(crate) fn accepted(acceptor: Option<&SharedAcceptor>) -> Result<Option<Link>, TransportError> {
    match acceptor {
        None => Ok(None),
        Some(a) => a.lock().unwrap_or_else(|e| e.into_inner()).link(),
    }
}

/// Re-reads the certificate files of a running broker's listeners (as Mosquitto does on
/// SIGHUP): new connections get the new certificates, open ones keep theirs.
#[derive(Debug, Clone, Default)]
pub struct Reloader {
    listeners: Vec<(ListenerConfig, SharedAcceptor)>,
}

impl Reloader {
    /// Reads every listener's files again; if any cannot be used, no listener changes and the
    /// error names the listener, the file and the reason. Returns how many were reloaded.
    pub fn reload_certificates(&self) -> Result<usize, TransportError> {
        let mut fresh = Vec::new();
        for (config, _) in &self.listeners {
            let a = config
                .acceptor()
                .map_err(|e| TransportError::Config(format!("listener {}: {e}", config.bind)))?;
            fresh.push(a);
        }
        for ((_, slot), a) in self.listeners.iter().zip(fresh) {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = a;
        }
        Ok(self.listeners.len())
    }
}

/// A listener's transport, ready for connections (certificates loaded).
#[derive(Debug, Clone)]
pub struct Acceptor {
    protocol: Protocol,
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ServerConfig>>,
    identity: bool,
}

impl Acceptor {
    /// Whether connections get no link (plain MQTT over TCP).
    pub(crate) fn is_plain(&self) -> bool {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return false;
        }
        self.protocol == Protocol::Mqtt
    }

    /// The machine for an accepted connection (`None` for plain TCP).
    pub(crate) fn link(&self) -> Result<Option<Link>, TransportError> {
        let mut link = Link::default();
        let mut plain = true;
        #[cfg(feature = "tls")]
        if let Some(config) = &self.tls {
            link.tls = Some(TlsLayer::server(config.clone())?);
            plain = false;
        }
        if self.protocol == Protocol::WebSockets {
            link.ws = Some(WsLayer::server()?);
            plain = false;
        }
        link.identity = self.identity;
        Ok((!plain).then_some(link))
    }
}

/// One connection's transport machine: TLS, WebSocket, or WebSocket over TLS.
#[derive(Debug, Default)]
pub(crate) struct Link {
    tls: Option<TlsLayer>,
    ws: Option<WsLayer>,
    /// Bytes for the socket.
    wire: Vec<u8>,
    /// The client certificate's name is the client's user name (`use_identity_as_username`).
    identity: bool,
    /// That name, from the end of the TLS handshake until the runtime takes it.
    peer: Option<ByteStr>,
    /// Whether the name was looked for (once, when the first MQTT bytes arrive).
    named: bool,
    failed: bool,
}

impl Link {
    /// Bytes from the socket: the MQTT bytes they carry are appended to `app`; what the
    /// transport answers waits in [`Link::take_wire`]. `Ok(false)`: the peer closed the
    /// transport. After an error (whose alert or HTTP answer waits in `take_wire`), every
    /// later input is refused.
    pub(crate) fn input(&mut self, data: &[u8], app: &mut Vec<u8>) -> Result<bool, TransportError> {
        if self.failed {
            return Ok(false);
        }
        let r = self.input_layers(data, app);
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn input_layers(&mut self, data: &[u8], app: &mut Vec<u8>) -> Result<bool, TransportError> {
        let mut mid = Vec::new();
        let (data, mut open) = match &mut self.tls {
            Some(t) => {
                let open = t.input(data, &mut mid, &mut self.wire)?;
                (&mid[..], open)
            }
            None => (data, true),
        };
        let before = app.len();
        match &mut self.ws {
            Some(ws) => {
                let mut out = Vec::new();
                let r = ws.input(data, app, &mut out);
                // Answers go out even when the input failed (an HTTP error, a close frame).
                self.down(out)?;
                open &= r?;
            }
            None => app.extend_from_slice(data),
        }
        if self.identity && !self.named && app.len() > before {
            // The handshake is done: the certificate names the client, or it is refused.
            self.named = true;
            let name = self
                .tls
                .as_ref()
                .and_then(TlsLayer::peer_name)
                .ok_or_else(|| {
                    TransportError::Identity(
                        "no client certificate to take the user name from".into(),
                    )
                })?;
            let name = ByteStr::try_from(name.as_str())
                .map_err(|_| TransportError::Identity("unusable certificate name".into()))?;
            self.peer = Some(name);
        }
        Ok(open)
    }

    /// MQTT bytes to send.
    pub(crate) fn send(&mut self, data: &[u8]) -> Result<(), TransportError> {
        match &mut self.ws {
            Some(ws) => {
                let mut out = Vec::new();
                ws.send(data, &mut out)?;
                self.down(out)
            }
            None => self.down_slice(data),
        }
    }

    /// Bytes from the WebSocket layer for the socket (through TLS, when under it).
    fn down(&mut self, out: Vec<u8>) -> Result<(), TransportError> {
        if out.is_empty() {
            return Ok(());
        }
        match self.tls {
            Some(_) => self.down_slice(&out),
            None if self.wire.is_empty() => {
                self.wire = out;
                Ok(())
            }
            None => {
                self.wire.extend_from_slice(&out);
                Ok(())
            }
        }
    }

    fn down_slice(&mut self, data: &[u8]) -> Result<(), TransportError> {
        match &mut self.tls {
            Some(t) => t.send(data, &mut self.wire),
            None => {
                self.wire.extend_from_slice(data);
                Ok(())
            }
        }
    }

    /// The bytes to write to the socket now.
    pub(crate) fn take_wire(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.wire)
    }

    /// Whether bytes wait for the socket.
    pub(crate) fn has_wire(&self) -> bool {
        !self.wire.is_empty()
    }

    /// Ends the transport cleanly (WebSocket close frame, TLS close_notify).
    pub(crate) fn close(&mut self) {
        let mut out = Vec::new();
        if let Some(ws) = &mut self.ws {
            ws.close(&mut out);
        }
        let _ = self.down(out);
        if let Some(t) = &mut self.tls {
            t.close(&mut self.wire);
        }
    }

    /// Whether a handshake (TLS or WebSocket upgrade) is still running.
    #[cfg(test)]
    pub(crate) fn is_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(TlsLayer::is_handshaking)
            || self.ws.as_ref().is_some_and(WsLayer::is_handshaking)
    }

    /// With `use_identity_as_username`: the client certificate's name, once, as soon as the
    /// handshake is over and before the CONNECT's bytes go to the connection (the runtime
    /// hands it to [`ServerConnection::set_peer_identity`](crate::broker::ServerConnection::set_peer_identity)).
    pub(crate) fn take_identity(&mut self) -> Option<ByteStr> {
        self.peer.take()
    }

    /// The name the peer's certificate gives (its common name).
    #[cfg(test)]
    pub(crate) fn identity(&self) -> Option<String> {
        self.tls.as_ref().and_then(TlsLayer::peer_name)
    }
}
