//! The socket binding smol and async-std share: `async_io::Async<std::net::TcpStream>` (both
//! runtimes run on async-io's reactor), read and written directly with the reactor's
//! readiness.
//!
//! Not through futures-io: its `poll_read` always tries a read first, so every poll of an idle
//! socket (a connection woken by router mail, say) costs a read that finds nothing. Here a read
//! shorter than the buffer marks the socket drained, and the next poll waits for the
//! reactor's readiness event instead.

use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use async_io::Async;

use super::driver;

/// The read half of a TCP connection on async-io's reactor (smol, async-std).
#[derive(Debug)]
pub struct TcpReader {
    io: Arc<Async<TcpStream>>,
    /// The last read found the socket empty (or emptied it): wait for readiness first.
    drained: bool,
}

/// The write half of a TCP connection on async-io's reactor (smol, async-std).
#[derive(Debug)]
pub struct TcpWriter {
    io: Arc<Async<TcpStream>>,
}

/// Both halves of a connected socket, with `TCP_NODELAY`.
fn halves(stream: Async<TcpStream>) -> io::Result<(TcpReader, TcpWriter)> {
    stream.get_ref().set_nodelay(true)?;
    let io = Arc::new(stream);
    let reader = TcpReader {
        io: io.clone(),
        // A new socket is read once the reactor says so.
        drained: true,
    };
    Ok((reader, TcpWriter { io }))
}

/// Opens a TCP connection.
pub(crate) async fn connect(addr: SocketAddr) -> io::Result<(TcpReader, TcpWriter)> {
    halves(Async::<TcpStream>::connect(addr).await?)
}

/// Binds a listener; returns it and its local address.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<(Async<TcpListener>, SocketAddr)> {
    let l = Async::<TcpListener>::bind(addr)?;
    let local = l.get_ref().local_addr()?;
    Ok((l, local))
}

impl driver::Reader for TcpReader {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            if self.drained {
                // Ready once the reactor has delivered an event since the last pending poll.
                ready!(self.io.poll_readable(cx))?;
                self.drained = false;
            }
            match self.io.get_ref().read(buf) {
                Ok(n) => {
                    self.drained = n < buf.len();
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.drained = true,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_read_now(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.drained = false;
        self.poll_read(cx, buf)
    }
}

impl driver::Writer for TcpWriter {
    /// Writes what it can of `buf`, or waits until the socket takes some.
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            match self.io.get_ref().write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.io.poll_writable(cx))?;
                }
                r => return Poll::Ready(r),
            }
        }
    }

    async fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match poll_fn(|cx| driver::Writer::poll_write(self, cx, buf)).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => buf = &buf[n..],
            }
        }
        Ok(())
    }

    async fn close(&mut self) {
        let _ = self.io.get_ref().shutdown(Shutdown::Write);
    }
}

impl driver::Listener for Async<TcpListener> {
    type Reader = TcpReader;
    type Writer = TcpWriter;

    async fn accept(&mut self) -> io::Result<(TcpReader, TcpWriter)> {
        let (stream, _) = Async::<TcpListener>::accept(self).await?;
        halves(stream)
    }
}
