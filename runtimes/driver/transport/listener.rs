//! A broker's listeners: what each speaks, its acceptor (certificates loaded, reloadable) and
//! its count of open connections.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[cfg(feature = "tls")]
use crate::runtimes::driver::transport::tls::ServerTls;
#[cfg(feature = "tls")]
use crate::runtimes::driver::transport::tls::TlsLayer;
use crate::runtimes::driver::transport::ws::WsLayer;
use crate::runtimes::driver::transport::{Link, TransportError};

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
        let listeners = addrs
            .iter()
            .map(|a| {
                let name = crate::ByteStr::try_from(a.to_string()).unwrap_or_default();
                (*a, Gauge(Arc::new((AtomicUsize::new(0), name))))
            })
            .collect();
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

/// The open connections of one listener, and its name (its bound address), in one shared
/// allocation.
#[derive(Debug, Clone)]
pub(crate) struct Gauge(Arc<(AtomicUsize, crate::ByteStr)>);

impl Gauge {
    /// Counts one more open connection until the returned guard is dropped.
    pub(crate) fn hold(&self) -> Held {
        self.0 .0.fetch_add(1, Ordering::Relaxed);
        Held(self.0.clone())
    }

    fn get(&self) -> usize {
        self.0 .0.load(Ordering::Relaxed)
    }
}

/// One open connection of a listener, counted until dropped (one pointer: every
/// connection's task holds one).
#[derive(Debug)]
pub(crate) struct Held(Arc<(AtomicUsize, crate::ByteStr)>);

impl Held {
    /// The listener's name (its bound address), for the connect log line.
    pub(crate) fn listener(&self) -> crate::ByteStr {
        self.0 .1.clone()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
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
