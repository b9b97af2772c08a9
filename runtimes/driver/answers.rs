//! What a runtime client's callers wait on: a publish's [`Pending`] and the [`Events`]
//! stream, each with its blocking twin.

use crate::client::Event;
use crate::runtimes::driver::park::block_until;
use crate::runtimes::driver::{now, Ack, Answer, Error};
use crate::PacketId;

/// A publish on its way (async runtimes); [`Pending::ack`] tells how it ended.
///
/// It has no blocking wait, so it cannot block an executor's thread: to wait from a thread
/// that is not running async code, turn it into a [`BlockingPending`] with
/// [`Pending::into_blocking`].
///
/// ```compile_fail
/// fn inside_async_code(pending: tinymqtt::runtimes::Pending) {
///     let _ = pending.wait(); // would block the executor's thread: no such method
/// }
/// ```
#[derive(Debug)]
#[must_use = "a publish's acknowledgement (or its refusal) is only known through its Pending"]
pub struct Pending {
    rx: Answer<Ack>,
}

impl Pending {
    /// Wraps the receiving end of a reply.
    #[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
    pub(crate) fn from_receiver(rx: Answer<Ack>) -> Pending {
        Pending { rx }
    }

    /// The packet identifier of a QoS 1/2 message once the session has taken it (at once
    /// when the in-flight window has room, else when it leaves the client's queue); `None`
    /// before, and always for QoS 0.
    pub fn packet_id(&self) -> Option<PacketId> {
        PacketId::new(self.rx.tag())
    }

    /// Waits for the acknowledgement the message's QoS requires.
    pub async fn ack(self) -> Result<Ack, Error> {
        self.rx.recv().await.unwrap_or(Err(Error::Stopped))
    }

    /// The same publish, awaited by blocking a thread (one that runs no async code).
    pub fn into_blocking(self) -> BlockingPending {
        BlockingPending { rx: self.rx }
    }
}

/// A publish on its way (blocking runtime); [`BlockingPending::wait`] tells how it ended.
#[derive(Debug)]
#[must_use = "a publish's acknowledgement (or its refusal) is only known through its Pending"]
pub struct BlockingPending {
    rx: Answer<Ack>,
}

impl BlockingPending {
    /// Wraps the receiving end of a reply.
    #[cfg(feature = "blocking")]
    pub(crate) fn from_receiver(rx: Answer<Ack>) -> BlockingPending {
        BlockingPending { rx }
    }

    /// The packet identifier of a QoS 1/2 message once the session has taken it; see
    /// [`Pending::packet_id`].
    pub fn packet_id(&self) -> Option<PacketId> {
        PacketId::new(self.rx.tag())
    }

    /// Blocks the thread until the acknowledgement the message's QoS requires.
    pub fn wait(self) -> Result<Ack, Error> {
        self.rx.recv_blocking().unwrap_or(Err(Error::Stopped))
    }
}

/// The stream of what a client's session reports (async runtimes): messages, connects,
/// reconnects, disconnects; read it with [`Events::recv`]`.await`.
///
/// Acknowledgements are not in it: they complete [`Pending`] and the subscribe calls. The one
/// exception is the SUBACK of the session's own re-subscription after a reconnect (no call
/// waits for it): it arrives as [`Event::Subscribed`]. Read it
/// or drop it: while [`CLIENT_EVENTS`] events wait unread, the client stops reading and
/// writing its socket (and so, once [`CLIENT_COMMANDS`] commands wait, stops taking commands).
///
/// It is not an [`Iterator`]: a blocking `for event in events` inside async code would block
/// the executor's thread (and, on a current-thread runtime, the client's own driver). To read
/// events on a thread of their own, turn it into [`BlockingEvents`] with
/// [`Events::into_blocking`].
///
/// ```compile_fail
/// async fn inside_async_code(events: tinymqtt::runtimes::Events) {
///     for event in events {} // would block the executor: Events is no Iterator
/// }
/// ```
///
/// [`CLIENT_EVENTS`]: crate::runtimes::driver::CLIENT_EVENTS
/// [`CLIENT_COMMANDS`]: crate::runtimes::driver::CLIENT_COMMANDS
#[derive(Debug, Clone)]
pub struct Events {
    rx: async_channel::Receiver<Event>,
}

impl Events {
    /// Wraps the receiving end of the event channel.
    #[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
    pub(crate) fn from_receiver(rx: async_channel::Receiver<Event>) -> Events {
        Events { rx }
    }

    /// The next event; `None` once the client has stopped and every event was read.
    pub async fn recv(&self) -> Option<Event> {
        self.rx.recv().await.ok()
    }

    /// The next event if one is queued now.
    pub fn try_recv(&self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// The same events, read by blocking a thread (one that runs no async code).
    pub fn into_blocking(self) -> BlockingEvents {
        BlockingEvents { rx: self.rx }
    }
}

/// The events of a client read by blocking a thread: an [`Iterator`] (the blocking runtime's
/// `Events`, or [`Events::into_blocking`]). The same caps as [`Events`] apply.
#[derive(Debug, Clone)]
pub struct BlockingEvents {
    rx: async_channel::Receiver<Event>,
}

impl BlockingEvents {
    /// Wraps the receiving end of the event channel.
    #[cfg(feature = "blocking")]
    pub(crate) fn from_receiver(rx: async_channel::Receiver<Event>) -> BlockingEvents {
        BlockingEvents { rx }
    }

    /// Blocks the thread until the next event; `None` once the client has stopped.
    pub fn recv(&self) -> Option<Event> {
        self.rx.recv_blocking().ok()
    }

    /// [`BlockingEvents::recv`], giving up after `timeout` (then `None` too).
    pub fn recv_timeout(&self, timeout: std::time::Duration) -> Option<Event> {
        let recv = std::pin::pin!(self.rx.recv());
        block_until(recv, Some(now() + timeout))?.ok()
    }

    /// The next event if one is queued now.
    pub fn try_recv(&self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

impl Iterator for BlockingEvents {
    type Item = Event;

    /// Blocks the thread until the next event.
    fn next(&mut self) -> Option<Event> {
        self.recv()
    }
}
