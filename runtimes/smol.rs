//! The `smol` runtime: a [`Client`] and a [`Server`] on smol's sockets, timers and global
//! executor (the async-io sockets it shares with async-std).

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::Instant;

use smol::Async;

pub use super::aio::{TcpReader, TcpWriter};
use super::driver::{self, Runtime};
pub use super::driver::{Ack, ConnectOptions, Error, Events, Pending, SubAck};
#[cfg(feature = "broker")]
pub use super::driver::{BrokerHandle, BrokerOptions};

/// The smol binding of the driver.
#[derive(Debug, Clone, Copy)]
pub struct Smol;

impl Runtime for Smol {
    type Reader = TcpReader;
    type Writer = TcpWriter;
    type Listener = Async<TcpListener>;

    async fn connect(addr: SocketAddr) -> io::Result<(TcpReader, TcpWriter)> {
        super::aio::connect(addr).await
    }

    async fn bind(addr: SocketAddr) -> io::Result<(Async<TcpListener>, SocketAddr)> {
        super::aio::bind(addr)
    }

    async fn sleep_until(deadline: Instant) {
        smol::Timer::at(deadline).await;
    }

    fn spawn(future: impl Future<Output = ()> + Send + 'static) {
        smol::spawn(future).detach();
    }
}

/// An MQTT broker on smol: bound listeners, run until its [`BrokerHandle`] is triggered.
#[cfg(feature = "broker")]
pub type Server = driver::Server<Smol>;

/// An MQTT client on smol; see [`driver::Client`].
pub type Client = driver::Client<Smol>;
