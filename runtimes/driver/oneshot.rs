//! A one-value channel for the driver's answers: one allocation, a lock and a wake, waited
//! on from any executor (`recv`) or from a thread (`recv_blocking`).
//!
//! Every publish gets one, so it is kept cheaper than a general channel: no queue, no
//! listener lists. A sender dropped unsent closes the channel (the receiver gets `None`).

use std::future::poll_fn;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

/// What the two ends share.
#[derive(Debug)]
struct Shared<T> {
    slot: Mutex<Slot<T>>,
    /// Signalled for a receiver blocked in `recv_blocking`.
    ready: Condvar,
    /// A number the sender may tell before the value (a publish's packet id; 0: none yet).
    tag: AtomicU16,
}

#[derive(Debug)]
struct Slot<T> {
    value: Option<T>,
    /// The sender is gone (after sending or without).
    closed: bool,
    waker: Option<Waker>,
    /// A receiver waits on the condvar (signalling it costs a syscall, so only then).
    blocked: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, Slot<T>> {
        // The lock guards plain data that no panic can leave half-written.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending end: answers once.
#[derive(Debug)]
pub(crate) struct Sender<T>(Arc<Shared<T>>);

/// The receiving end.
#[derive(Debug)]
pub(crate) struct Receiver<T>(Arc<Shared<T>>);

/// A new channel.
pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        slot: Mutex::new(Slot {
            value: None,
            closed: false,
            waker: None,
            blocked: false,
        }),
        ready: Condvar::new(),
        tag: AtomicU16::new(0),
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl<T> Sender<T> {
    /// Tells the receiver `tag` before the value.
    pub(crate) fn set_tag(&self, tag: u16) {
        self.0.tag.store(tag, Ordering::Release);
    }

    /// Sends `value` (dropped if the receiver is gone).
    pub(crate) fn send(self, value: T) {
        self.0.lock().value = Some(value);
        // Dropping `self` closes the channel and wakes the receiver.
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let (waker, blocked) = {
            let mut slot = self.0.lock();
            slot.closed = true;
            (slot.waker.take(), slot.blocked)
        };
        if blocked {
            self.0.ready.notify_all();
        }
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// What the sender told with [`Sender::set_tag`] (0: nothing yet).
    pub(crate) fn tag(&self) -> u16 {
        self.0.tag.load(Ordering::Acquire)
    }

    /// Waits for the value; `None` if the sender went away without one.
    pub(crate) async fn recv(&self) -> Option<T> {
        poll_fn(|cx| {
            let mut slot = self.0.lock();
            if let Some(v) = slot.value.take() {
                return Poll::Ready(Some(v));
            }
            if slot.closed {
                return Poll::Ready(None);
            }
            match &mut slot.waker {
                Some(w) => w.clone_from(cx.waker()),
                None => slot.waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// Blocks the thread until the value; `None` if the sender went away without one.
    pub(crate) fn recv_blocking(&self) -> Option<T> {
        let mut slot = self.0.lock();
        loop {
            if let Some(v) = slot.value.take() {
                return Some(v);
            }
            if slot.closed {
                return None;
            }
            slot.blocked = true;
            slot = self
                .0
                .ready
                .wait(slot)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::channel;

    #[test]
    fn a_sent_value_arrives_and_a_dropped_sender_closes() {
        let (tx, rx) = channel::<u32>();
        tx.send(7);
        assert_eq!(rx.recv_blocking(), Some(7));
        assert_eq!(rx.recv_blocking(), None);
        let (tx, rx) = channel::<u32>();
        drop(tx);
        assert_eq!(futures_lite::future::block_on(rx.recv()), None);
    }

    #[test]
    fn a_blocked_receiver_wakes_for_a_value_from_another_thread() {
        let (tx, rx) = channel::<u32>();
        let t = std::thread::spawn(move || rx.recv_blocking());
        tx.send(3);
        assert_eq!(t.join().unwrap(), Some(3));
        let (tx, rx) = channel::<u32>();
        let t = std::thread::spawn(move || futures_lite::future::block_on(rx.recv()));
        tx.send(4);
        assert_eq!(t.join().unwrap(), Some(4));
    }
}
