//! The `async-std` runtime: a [`Client`] and a [`Broker`] on async-std's sockets and tasks.
//!
//! async-std is discontinued upstream in favour of smol; this adapter shares smol's futures-io
//! path and stays for code that already runs on async-std.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use async_std::net::{TcpListener, TcpStream};

use super::driver::{self, now, Runtime};
pub use super::driver::{Ack, BrokerHandle, BrokerOptions, Error, Events, Pending, SubAck};

super::fio::futures_io_sockets!(TcpStream, TcpListener);

/// The async-std binding of the driver.
#[derive(Debug, Clone, Copy)]
pub struct AsyncStd;

impl Runtime for AsyncStd {
    type Reader = TcpStream;
    type Writer = TcpStream;
    type Listener = TcpListener;

    async fn connect(addr: SocketAddr) -> io::Result<(TcpStream, TcpStream)> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok((s.clone(), s))
    }

    async fn bind(addr: SocketAddr) -> io::Result<(TcpListener, SocketAddr)> {
        let l = TcpListener::bind(addr).await?;
        let local = l.local_addr()?;
        Ok((l, local))
    }

    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send {
        async_std::task::sleep(deadline.saturating_duration_since(now()))
    }

    fn spawn(future: impl Future<Output = ()> + Send + 'static) {
        async_std::task::spawn(future);
    }
}

/// An MQTT broker on async-std: bound listeners, run until its [`BrokerHandle`] is triggered.
pub type Broker = driver::Server<AsyncStd>;

/// An MQTT client on async-std; see [`driver::Client`].
pub type Client = driver::Client<AsyncStd>;
