//! What an async runtime binds: sockets, a timer and spawn.

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Instant;

/// The read half of a TCP connection.
pub trait Reader: Send + 'static {
    /// Reads some bytes into `buf` if there are any (`Ok(0)` is the end of the stream), or
    /// arranges for the task to wake when there are: `AsyncRead::poll_read`.
    ///
    /// The broker lends `buf` only for this call (no task waits holding a buffer), so an
    /// idle connection holds none. A read shorter than `buf` should tell the binding the
    /// socket is drained (tokio's `poll_read` does), so that the next poll waits for the
    /// readiness event instead of trying a read that finds nothing.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;

    /// Like [`Reader::poll_read`], but tries the socket even if the last read drained it
    /// and no readiness event came since (it may be on its way): the broker reads what a
    /// client sent before it applies mail that ends the connection.
    fn poll_read_now(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.poll_read(cx, buf)
    }

    /// Reads some bytes; `Ok(0)` is the end of the stream.
    fn read<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        poll_fn(move |cx| self.poll_read(cx, buf))
    }
}

/// The write half of a TCP connection.
pub trait Writer: Send + 'static {
    /// Writes what the socket takes of `buf` now (`Ok(0)` only for an empty `buf`), or
    /// arranges for the task to wake when it takes more: `AsyncWrite::poll_write`.
    ///
    /// The broker's connection tasks write through this: the wait for a peer that reads
    /// slowly then keeps only a position in the task, not a write future.
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;
    /// Writes all of `buf`.
    fn write_all<'a>(
        &'a mut self,
        buf: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a;
    /// Flushes and shuts the write side down (the peer reads the end of the stream).
    fn close(&mut self) -> impl Future<Output = ()> + Send + '_;
}

/// A bound TCP listener.
pub trait Listener: Send + 'static {
    /// The read half of an accepted connection.
    type Reader: Reader;
    /// The write half of an accepted connection.
    type Writer: Writer;
    /// Accepts the next connection.
    fn accept(
        &mut self,
    ) -> impl Future<Output = io::Result<(Self::Reader, Self::Writer)>> + Send + '_;
}

/// What a runtime binds for the driver: sockets, a timer and spawn.
///
/// Each runtime module implements it on a marker type; the driver's [`Client`](super::Client)
/// and [`Server`](super::Server) are generic over it.
pub trait Runtime: Send + Sync + 'static {
    /// The read half of a connection.
    type Reader: Reader;
    /// The write half of a connection.
    type Writer: Writer;
    /// A listener whose connections have the same halves.
    type Listener: Listener<Reader = Self::Reader, Writer = Self::Writer>;
    /// The addresses of a host name, resolved now (on every connect and reconnect).
    fn resolve(host: String, port: u16)
        -> impl Future<Output = io::Result<Vec<SocketAddr>>> + Send;
    /// Opens a TCP connection (with `TCP_NODELAY`).
    fn connect(
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<(Self::Reader, Self::Writer)>> + Send;
    /// Binds a listener; returns it and its local address.
    fn bind(
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<(Self::Listener, SocketAddr)>> + Send;
    /// Completes at `deadline`.
    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send;
    /// Runs `future` in the background.
    fn spawn(future: impl Future<Output = ()> + Send + 'static);
    /// Whether the executor runs the task woken last before those woken earlier (tokio's
    /// LIFO slot). The broker's router then wakes connections in the reverse order of
    /// their mail, so that a delivery is written before the acknowledgement it released
    /// (about 10 µs less median latency at QoS 1 on tokio, measured with `load latency`).
    const RUNS_LAST_WOKEN_FIRST: bool = false;
}

/// Which of the futures given to [`wait`] completed first.
pub(crate) enum Woke<A, B> {
    /// The first.
    First(A),
    /// The second.
    Second(B),
    /// The deadline passed.
    Deadline,
}

/// Waits for the first of `a`, `b` (when given) and `deadline` (when given).
///
/// The other futures are dropped, so both must be cancel-safe (channel receives and socket
/// reads are).
pub(crate) async fn wait<R: Runtime, A, B>(
    a: impl Future<Output = A>,
    b: Option<impl Future<Output = B>>,
    deadline: Option<Instant>,
) -> Woke<A, B> {
    let sleep = pin!(None);
    let mut alarm = Alarm::new(sleep);
    alarm.arm(deadline, R::sleep_until);
    wait_fair(a, b, &mut alarm, &mut false).await
}

/// [`wait`] for a loop with two busy sources, on the loop's [`Alarm`]: a fired alarm wins,
/// then `a` and `b` take turns at being polled first (`turn` flips on every call), so
/// neither can starve the other nor the timers.
pub(crate) async fn wait_fair<A, B, F: Future<Output = ()>>(
    a: impl Future<Output = A>,
    b: Option<impl Future<Output = B>>,
    alarm: &mut Alarm<'_, F>,
    turn: &mut bool,
) -> Woke<A, B> {
    let b_first = *turn;
    *turn = !*turn;
    let mut a = pin!(a);
    let mut b = pin!(b);
    poll_fn(|cx| {
        if alarm.poll_fired(cx) {
            return Poll::Ready(Woke::Deadline);
        }
        for round in 0..2 {
            if (round == 0) == b_first {
                if let Some(b) = b.as_mut().as_pin_mut() {
                    if let Poll::Ready(v) = b.poll(cx) {
                        return Poll::Ready(Woke::Second(v));
                    }
                }
            } else if let Poll::Ready(v) = a.as_mut().poll(cx) {
                return Poll::Ready(Woke::First(v));
            }
        }
        Poll::Pending
    })
    .await
}

/// A loop's timer, kept across its turns.
///
/// [`Alarm::arm`] makes a new timer only when the deadline is earlier than the running
/// one's (or none runs): a deadline that moves later (the keep-alive, on every packet)
/// keeps the timer, which then fires early, and a spurious timeout is a no-op for the
/// sans-IO machines. A new timer on every turn costs a timer-wheel update (and a lock) to
/// arm and another to drop.
pub(crate) struct Alarm<'a, F> {
    /// The timer (the loop pins it: `Alarm::new(pin!(None))`).
    sleep: Pin<&'a mut Option<F>>,
    /// When it fires.
    at: Option<Instant>,
}

impl<'a, F: Future<Output = ()>> Alarm<'a, F> {
    /// No timer yet.
    pub(crate) fn new(sleep: Pin<&'a mut Option<F>>) -> Self {
        Alarm { sleep, at: None }
    }

    /// Makes sure the alarm fires at `deadline` or earlier; `timer` makes a timer (the
    /// runtime's `sleep_until`). Without a deadline a running timer is kept (it will only
    /// wake the loop once for nothing).
    pub(crate) fn arm(&mut self, deadline: Option<Instant>, timer: impl FnOnce(Instant) -> F) {
        let Some(d) = deadline else { return };
        if self.at.is_none_or(|at| d < at) {
            self.sleep.set(Some(timer(d)));
            self.at = Some(d);
        }
    }

    /// Whether the timer fired (it is then gone: the next [`Alarm::arm`] makes one).
    pub(crate) fn poll_fired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(s) = self.sleep.as_mut().as_pin_mut() else {
            return false;
        };
        if s.poll(cx).is_pending() {
            return false;
        }
        self.sleep.set(None);
        self.at = None;
        true
    }
}
