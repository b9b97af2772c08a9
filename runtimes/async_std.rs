//! The `async-std` runtime: a [`Client`] and a [`Server`] on async-std's sockets and tasks.
//!
//! async-std is discontinued upstream in favour of smol; this adapter shares smol's sockets
//! (async-io's, the reactor async-std runs on) and stays for code that already runs on
//! async-std.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::Instant;

use async_io::Async;

pub use super::aio::{TcpReader, TcpWriter};
use super::driver::{self, now, Runtime};
pub use super::driver::{Ack, ConnectOptions, Error, Events, Pending, SubAck};
#[cfg(feature = "broker")]
pub use super::driver::{BrokerHandle, BrokerOptions};

/// The async-std binding of the driver.
#[derive(Debug, Clone, Copy)]
pub struct AsyncStd;

impl Runtime for AsyncStd {
    type Reader = TcpReader;
    type Writer = TcpWriter;
    type Listener = Async<TcpListener>;

    async fn connect(addr: SocketAddr) -> io::Result<(TcpReader, TcpWriter)> {
        super::aio::connect(addr).await
    }

    async fn bind(addr: SocketAddr) -> io::Result<(Async<TcpListener>, SocketAddr)> {
        super::aio::bind(addr)
    }

    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send {
        async_std::task::sleep(deadline.saturating_duration_since(now()))
    }

    fn spawn(future: impl Future<Output = ()> + Send + 'static) {
        async_std::task::spawn(future);
    }
}

/// An MQTT broker on async-std: bound listeners, run until its [`BrokerHandle`] is triggered.
#[cfg(feature = "broker")]
pub type Server = driver::Server<AsyncStd>;

/// An MQTT client on async-std; see [`driver::Client`].
pub type Client = driver::Client<AsyncStd>;
