//! Where a client connects: `Endpoint` URLs and host names, and the `Connector` made of one.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
#[cfg(feature = "tls")]
use std::sync::Arc;

#[cfg(feature = "tls")]
use crate::runtimes::driver::transport::tls::TlsLayer;
#[cfg(feature = "tls")]
use crate::runtimes::driver::transport::tls::TlsOptions;
use crate::runtimes::driver::transport::ws::WsLayer;
use crate::runtimes::driver::transport::{Link, TransportError};

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
    pub(super) host: String,
    port: u16,
    /// The address when given as one (no resolution).
    addr: Option<SocketAddr>,
    /// The WebSocket path.
    pub(super) path: String,
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
    pub(super) endpoint: Endpoint,
    #[cfg(feature = "tls")]
    pub(super) tls: Option<Arc<rustls::ClientConfig>>,
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
