//! The router's end of a connection's mail channel, and what is queued in it.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::broker::ConnectionMail;

/// The router's end of one connection's mail channel.
pub(crate) trait MailQueue {
    /// Queues a batch; gives it back when the channel is full or the connection is gone.
    fn try_push(&self, batch: Vec<ConnectionMail>) -> Result<(), Vec<ConnectionMail>>;
    /// Makes the connection close now, as if its transport failed (it may be stuck writing
    /// to a peer that does not read).
    fn abort(&self);
    /// Tells the connection the server is shutting down (DISCONNECT 0x8B, no will).
    fn shutdown(&self);
    /// What is queued in the channel (kept with the channel: one allocation fewer per
    /// connection).
    fn queued(&self) -> &Queued;
}

/// What waits in a connection's mail channel: batches and the bytes they hold.
#[derive(Debug, Default)]
pub(crate) struct Queued {
    pub(super) batches: AtomicUsize,
    pub(super) bytes: AtomicUsize,
}

/// A connection's mail channel (with what is queued in it: the connection subtracts what it
/// took).
pub(crate) struct Mailbox<Q> {
    pub(super) queue: Q,
    /// The size of the last batch sent, the room the next one starts with.
    pub(super) last: usize,
}

impl<Q> Mailbox<Q> {
    /// The router's end of a connection's mail channel.
    pub(crate) fn new(queue: Q) -> Mailbox<Q> {
        Mailbox { queue, last: 0 }
    }
}

/// The bytes a batch holds, for the byte cap.
pub(super) fn batch_bytes(batch: &[ConnectionMail]) -> usize {
    batch.iter().map(ConnectionMail::size).sum()
}

/// Marks `batch` as taken from a mail channel (called by a connection).
pub(crate) fn taken(queued: &Queued, batch: &[ConnectionMail]) {
    queued.batches.fetch_sub(1, Ordering::Relaxed);
    queued
        .bytes
        .fetch_sub(batch_bytes(batch), Ordering::Relaxed);
}
