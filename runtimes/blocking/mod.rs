//! The `blocking` runtime: a [`Client`] and a [`Server`] on `std::net` and threads.
//!
//! The client's session runs in a thread of its own (plus one reader thread per connection);
//! its [`Events`] are an iterator. The broker runs a router thread (which owns the `Router` and
//! only routes), an accept thread per listener, and per connection a reader thread and a
//! connection thread that owns its `ServerConnection` (decoding, keep-alive, encoding, writes),
//! joined by bounded channels with the caps of the
//! [`driver`](super::driver#queue-caps-and-overflow-policies).
//!
//! `client.rs` holds the client's handle and session thread, `server.rs` the broker's bind and
//! router thread, `connection.rs` a broker connection's threads; this file what they share.

#[cfg(feature = "broker")]
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
#[cfg(feature = "broker")]
use std::sync::Arc;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

#[cfg(feature = "broker")]
use crate::broker::BrokerStats;
#[cfg(feature = "broker")]
use crate::runtimes::driver::connection::Report;
use crate::runtimes::driver::now;
#[cfg(feature = "broker")]
use crate::runtimes::driver::transport::{Held, Link};
#[cfg(feature = "broker")]
use crate::runtimes::driver::Reply;
pub use crate::runtimes::driver::{
    Ack, BlockingEvents as Events, BlockingPending as Pending, ConnectOptions, Error, SubAck,
};
#[cfg(feature = "broker")]
pub use crate::runtimes::driver::{BrokerHandle, BrokerOptions};

mod client;
#[cfg(feature = "broker")]
mod connection;
#[cfg(feature = "broker")]
mod server;

pub use client::Client;
#[cfg(feature = "broker")]
pub use connection::MAX_CONNECTION_THREADS;
#[cfg(feature = "broker")]
pub use server::Server;

/// Counts the commands in flight towards the session thread, so they stay within the cap.
struct Permits {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Permits {
    #[cfg(feature = "broker")]
    fn acquire(&self) {
        self.acquire_unless(&AtomicBool::new(false));
    }

    /// [`Permits::acquire`], or false (no permit taken) once `stop` is set: whoever sets
    /// it does so under the lock, through [`Permits::stop`].
    fn acquire_unless(&self, stop: &AtomicBool) -> bool {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            if stop.load(Ordering::Acquire) {
                return false;
            }
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        true
    }

    /// Sets `stop` (to `value`) and wakes every waiter.
    fn stop(&self, stop: &AtomicBool, value: bool) {
        let _free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        stop.store(value, Ordering::Release);
        self.freed.notify_all();
    }

    fn release(&self) {
        *self.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.freed.notify_one();
    }

    /// Lets every waiter through from now on (the other end is gone).
    #[cfg(feature = "broker")]
    fn open_all(&self) {
        *self.free.lock().unwrap_or_else(|e| e.into_inner()) = usize::MAX / 2;
        self.freed.notify_all();
    }
}

#[cfg(feature = "broker")]
/// Opens the permits when dropped, so a reader waiting for one ends instead of hanging.
struct OpenOnDrop(Arc<Permits>);

#[cfg(feature = "broker")]
impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open_all();
    }
}

/// The next input, or `Timeout` once `deadline` has passed: a passed deadline goes first, so
/// a busy channel cannot starve the timers.
fn next<T>(rx: &Receiver<T>, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
    match deadline.map(|at| at.saturating_duration_since(now())) {
        Some(left) if left.is_zero() => Err(RecvTimeoutError::Timeout),
        Some(left) => rx.recv_timeout(left),
        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
    }
}

#[cfg(feature = "broker")]
/// What reaches the broker's router thread.
enum Inbox {
    Accept(TcpStream, Option<Box<Link>>, Held),
    Report(Report),
    Stats(Reply<BrokerStats>),
    /// The store writer handed tickets back (or stopped).
    Stored,
    Shutdown,
}
