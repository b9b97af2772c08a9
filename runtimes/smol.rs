//! The `smol` runtime: a [`Client`] and a [`Broker`] on smol's sockets, timers and global
//! executor (the futures-io path it shares with async-std).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use smol::net::{TcpListener, TcpStream};

use super::driver::{self, Runtime};
pub use super::driver::{Ack, BrokerHandle, BrokerOptions, Error, Events, Pending, SubAck};

super::fio::futures_io_sockets!(TcpStream, TcpListener);

/// The smol binding of the driver.
#[derive(Debug, Clone, Copy)]
pub struct Smol;

impl Runtime for Smol {
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

    async fn sleep_until(deadline: Instant) {
        smol::Timer::at(deadline).await;
    }

    fn spawn(future: impl Future<Output = ()> + Send + 'static) {
        smol::spawn(future).detach();
    }
}

/// An MQTT broker on smol: bound listeners, run until its [`BrokerHandle`] is triggered.
pub type Broker = driver::Server<Smol>;

/// An MQTT client on smol; see [`driver::Client`].
pub type Client = driver::Client<Smol>;
