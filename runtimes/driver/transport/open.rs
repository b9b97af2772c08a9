//! Opening a client's transport: the host name resolved now (on every connect and
//! reconnect), each address tried in turn within the connect timeout, then the transport's
//! machine for the new socket.

#[cfg(feature = "blocking")]
use std::net::TcpStream;
#[cfg(feature = "blocking")]
use std::time::Duration;
#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
use std::time::Instant;

use super::{Connector, Link, TransportError};

/// The first address of `addrs` that takes a TCP connection by `deadline` (`connect` opens
/// one); the error names the last address tried and why it failed.
#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
pub(crate) async fn open<R: crate::runtimes::driver::Runtime>(
    connector: &Connector,
    deadline: Instant,
) -> Result<(R::Reader, R::Writer, Option<Link>), TransportError> {
    use crate::runtimes::driver::{wait, Woke};
    let resolve = connector.addrs(|host, port| R::resolve(host, port));
    let addrs =
        match wait::<R, _, ()>(resolve, None::<std::future::Pending<()>>, Some(deadline)).await {
            Woke::First(a) => a?,
            _ => return Err(connector.timed_out()),
        };
    let mut last = None;
    for addr in addrs {
        let none = None::<std::future::Pending<()>>;
        match wait::<R, _, ()>(R::connect(addr), none, Some(deadline)).await {
            Woke::First(Ok((r, w))) => return Ok((r, w, connector.link()?)),
            Woke::First(Err(source)) => last = Some(TransportError::Connect { addr, source }),
            _ => {
                let source = std::io::ErrorKind::TimedOut.into();
                return Err(TransportError::Connect { addr, source });
            }
        }
    }
    Err(last.unwrap_or_else(|| connector.timed_out()))
}

/// [`open`] for the blocking runtime: a `std::net` socket with `TCP_NODELAY`.
#[cfg(feature = "blocking")]
pub(crate) fn open_blocking(
    connector: &Connector,
    timeout: Duration,
) -> Result<(TcpStream, Option<Link>), TransportError> {
    let deadline = crate::runtimes::driver::now() + timeout;
    let mut last = None;
    for addr in connector.addrs_blocking()? {
        let left = deadline.saturating_duration_since(crate::runtimes::driver::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&addr, left).and_then(|s| {
            s.set_nodelay(true)?;
            Ok(s)
        }) {
            Ok(s) => return Ok((s, connector.link()?)),
            Err(source) => last = Some(TransportError::Connect { addr, source }),
        }
    }
    Err(last.unwrap_or_else(|| connector.timed_out()))
}

impl Connector {
    /// No address answered within the connect timeout.
    fn timed_out(&self) -> TransportError {
        TransportError::Resolve {
            host: self.endpoint.host.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no address answered within the connect timeout",
            ),
        }
    }
}
