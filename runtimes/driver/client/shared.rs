//! What the async client's handles and its driver task share: the session's core under a
//! lock, with the driver's waker and the counts that bound the commands in flight.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use crate::runtimes::driver::client::core::ClientCore;
use crate::runtimes::driver::transport::TransportError;
use crate::runtimes::driver::CLIENT_COMMANDS;

/// What the handles and the driver task share: the session's core itself, so that a
/// command is carried out by the caller that gives it (encoded into the session's output
/// at once, or queued behind the window) and the driver only reads, writes and keeps
/// time. No channel between them, no allocation per command beyond its answer.
pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    /// Signalled when the command queue has room again (or the driver ended).
    pub(super) room: event_listener::Event,
}

pub(super) struct State {
    pub(super) core: ClientCore,
    /// The driver's waker while it waits; taken by whoever wakes it.
    pub(super) driver: Option<Waker>,
    /// A handle gave the core something to send or to report; the driver flushes it.
    pub(super) work: bool,
    /// Commands carried out by handles whose bytes the driver has not taken for writing
    /// yet: with the queued ones at most [`CLIENT_COMMANDS`], so a caller cannot pile up
    /// QoS 0 messages (which need no window) while the socket or the event reader is slow.
    pub(super) unsent: usize,
    /// Live handles; when the last goes, the driver disconnects.
    pub(super) handles: usize,
    /// Why the last transport failed or could not be opened (its close event says only
    /// that the transport closed).
    pub(super) transport_error: Option<TransportError>,
    /// The driver has ended: commands are refused.
    pub(super) ended: bool,
    /// The driver has waited [`EVENTS_STALL`] for room in the full event queue: a
    /// command that would wait is refused with [`Error::EventsUnread`].
    pub(super) stalled: bool,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // The core is never left half-updated by a panic that matters here: the
        // session's methods do not panic on any input.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// Whether a command must wait for room.
    pub(super) fn full(&self) -> bool {
        self.core.queued() + self.unsent >= CLIENT_COMMANDS
    }

    /// Marks work for the driver; returns its waker to wake once the lock is released.
    pub(super) fn work(&mut self) -> Option<Waker> {
        self.work = true;
        self.driver.take()
    }
}
