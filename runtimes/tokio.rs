//! The `tokio` runtime: a [`Client`] and a [`Server`] on tokio's sockets and timers.
//!
//! `Client::connect`, `Server::bind` and `Server::run` must run inside a tokio runtime (they
//! spawn tasks); the other calls only wait on channels and work from any executor.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! use tinymqtt::client::ClientConfig;
//! use tinymqtt::codec::Publish;
//! use tinymqtt::runtimes::tokio::{Server, Client};
//! use tinymqtt::{ByteStr, ProtocolVersion, QoS, TopicName};
//!
//! let broker = Server::bind(Default::default(), &["127.0.0.1:0".parse()?]).await?;
//! let addr = broker.local_addrs()[0];
//! let stop = broker.handle();
//! let served = tokio::spawn(broker.run());
//!
//! let config = ClientConfig::new(ProtocolVersion::V5, ByteStr::from_static("demo"));
//! let (client, _events) = Client::connect(addr, config).await?;
//! let mut msg = Publish::new(TopicName::new("a/b")?, "hello");
//! msg.qos = QoS::AtLeastOnce;
//! let ack = client.publish(msg).await?.ack().await?;
//! assert!(ack.packet_id.is_some());
//! client.disconnect().await?;
//! stop.shutdown();
//! served.await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })
//! # }
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use super::driver::{self, Runtime};
pub use super::driver::{Ack, ConnectOptions, Error, Events, Pending, SubAck};
#[cfg(feature = "broker")]
pub use super::driver::{BrokerHandle, BrokerOptions};

/// The tokio binding of the driver.
#[derive(Debug, Clone, Copy)]
pub struct Tokio;

impl driver::Reader for OwnedReadHalf {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        // tokio's own read clears the socket's readiness on a short read, so the next poll
        // waits for epoll instead of reading again to find nothing.
        let mut buf = ReadBuf::new(buf);
        AsyncRead::poll_read(Pin::new(self), cx, &mut buf).map_ok(|()| buf.filled().len())
    }
}

impl driver::Writer for OwnedWriteHalf {
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(self), cx, buf)
    }

    fn write_all<'a>(
        &'a mut self,
        buf: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a {
        AsyncWriteExt::write_all(self, buf)
    }

    async fn close(&mut self) {
        let _ = self.shutdown().await;
    }
}

impl driver::Listener for TcpListener {
    type Reader = OwnedReadHalf;
    type Writer = OwnedWriteHalf;

    async fn accept(&mut self) -> io::Result<(OwnedReadHalf, OwnedWriteHalf)> {
        let (stream, _) = TcpListener::accept(self).await?;
        stream.set_nodelay(true)?;
        Ok(stream.into_split())
    }
}

impl Runtime for Tokio {
    const RUNS_LAST_WOKEN_FIRST: bool = true;

    type Reader = OwnedReadHalf;
    type Writer = OwnedWriteHalf;
    type Listener = TcpListener;

    async fn resolve(host: String, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host.as_str(), port))
            .await?
            .collect())
    }

    async fn connect(addr: SocketAddr) -> io::Result<(OwnedReadHalf, OwnedWriteHalf)> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream.into_split())
    }

    async fn bind(addr: SocketAddr) -> io::Result<(TcpListener, SocketAddr)> {
        let l = TcpListener::bind(addr).await?;
        let local = l.local_addr()?;
        Ok((l, local))
    }

    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send {
        tokio::time::sleep_until(deadline.into())
    }

    fn spawn(future: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(future);
    }
}

/// An MQTT broker on tokio: bound listeners, run until its [`BrokerHandle`] is triggered.
#[cfg(feature = "broker")]
pub type Server = driver::Server<Tokio>;

/// An MQTT client on tokio; see [`driver::Client`].
pub type Client = driver::Client<Tokio>;
