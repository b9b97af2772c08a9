//! A broker connection's post: the router's mail batches for one connection task, and the kill.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::broker::ConnectionMail;
use crate::runtimes::driver::mailbox::Queued;

/// What the router sends one connection: its mail batches and the kill (too slow), in one
/// small shared box with the waker of the connection's task (its only reader).
///
/// Two async channels cost every connection ~1.5 KB, and an unbounded one keeps a block of
/// ~1 KB once used; an event listener costs an allocation on every wait. An idle
/// connection's post holds no allocation but its waker. The router caps the batches itself
/// (`RouterCore::drain` checks `Queued` before every push).
#[derive(Default)]
pub(super) struct Post {
    state: Mutex<State>,
    /// What waits in it, counted by the router as it pushes and by the connection as it
    /// takes.
    pub(super) queued: Queued,
}

#[derive(Default)]
struct State {
    batches: VecDeque<Vec<ConnectionMail>>,
    /// No more batches come.
    closed: bool,
    /// The router closed the connection as too slow.
    killed: bool,
    /// A batch waiting in the post closes the connection (a takeover): it is acted on even
    /// while a write to the peer is blocked.
    closing: bool,
    /// The connection's task, while it waits on the post.
    waker: Option<Waker>,
}

/// Wakes the waiting task (once: its waker is taken), after unlocking.
fn ring(mut s: MutexGuard<'_, State>) {
    let waker = s.waker.take();
    drop(s);
    if let Some(w) = waker {
        w.wake();
    }
}

impl State {
    /// Wakes the current task when something comes.
    fn register(&mut self, cx: &Context<'_>) {
        match &mut self.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
    }
}

/// What a connection's task finds in its post.
pub(super) enum Letters {
    /// Batches, oldest first.
    Mail(VecDeque<Vec<ConnectionMail>>),
    /// The post is closed and empty: the server is shutting down.
    Closed,
    /// The router closed the connection as too slow.
    Killed,
}

impl Post {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Posts a batch; a closed post gives it back.
    pub(super) fn push(&self, batch: Vec<ConnectionMail>) -> Result<(), Vec<ConnectionMail>> {
        let mut s = self.state();
        if s.closed {
            return Err(batch);
        }
        s.closing |= batch.iter().any(ConnectionMail::closes);
        s.batches.push_back(batch);
        ring(s);
        Ok(())
    }

    /// Closes the post: batches still in it can be taken, no more come.
    pub(super) fn close(&self) {
        let mut s = self.state();
        s.closed = true;
        ring(s);
    }

    /// Kills the connection.
    pub(super) fn kill(&self) {
        let mut s = self.state();
        s.killed = true;
        ring(s);
    }

    /// The kill first, then up to `max` batches, then the close; pending (the task wakes
    /// when that changes) while the post is open and empty. Once the batches are taken the
    /// post keeps no memory for them.
    pub(super) fn poll_take(&self, cx: &Context<'_>, max: usize) -> Poll<Letters> {
        let mut s = self.state();
        if s.killed {
            return Poll::Ready(Letters::Killed);
        }
        if s.batches.len() > max {
            let taken = s.batches.drain(..max).collect();
            s.closing = s.batches.iter().flatten().any(ConnectionMail::closes);
            return Poll::Ready(Letters::Mail(taken));
        }
        if !s.batches.is_empty() {
            s.closing = false;
            return Poll::Ready(Letters::Mail(std::mem::take(&mut s.batches)));
        }
        if s.closed {
            return Poll::Ready(Letters::Closed);
        }
        s.register(cx);
        Poll::Pending
    }

    /// Every batch still in the post (for a connection that closed).
    pub(super) fn take_all(&self) -> VecDeque<Vec<ConnectionMail>> {
        std::mem::take(&mut self.state().batches)
    }

    /// Ready once the connection is killed, or mail that closes it waits (a takeover: the
    /// connection ends without waiting for a peer that does not read).
    pub(super) fn poll_killed(&self, cx: &Context<'_>) -> Poll<()> {
        let mut s = self.state();
        if s.killed || s.closing {
            return Poll::Ready(());
        }
        s.register(cx);
        Poll::Pending
    }
}
