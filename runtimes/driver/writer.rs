//! The store writer: a thread that owns the [`RedbStore`] and writes the router's batches of
//! [`StoreOp`]s off the router task, with group commit.
//!
//! The router task sends each drained batch over a bounded channel; the writer takes every
//! batch already waiting, writes them all in one transaction with one commit (one fsync for all
//! of them with [`Fsync::Always`]), then hands the tickets of those batches back, in order,
//! over a second channel and wakes the router task. A batch of tickets alone needs no commit:
//! its tickets go back once every batch before it is committed (the batches are taken in
//! order). A failed write is told on standard error; the writer then stops, so no ticket comes
//! back and the router sees the writer gone (the broker stops).

// Without `persistence`, only `Fsync`, the types and `start` (which refuses a store) remain.
#![cfg_attr(not(feature = "persistence"), allow(unused_imports, dead_code))]

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

#[cfg(feature = "persistence")]
use redb::Durability;

use super::now;
#[cfg(feature = "persistence")]
use super::store::RedbStore;
use super::STORE_BATCHES;
use crate::broker::Router;
use crate::runtimes::driver::options::{BrokerOptions, Fsync};
use crate::store::{StoreOp, Ticket};

/// What the writer hands back after a commit: the tickets of the batches it covered, in order.
#[derive(Debug)]
pub(crate) struct Done {
    pub(crate) tickets: Vec<Ticket>,
    /// How many of the router's batches it covers.
    pub(crate) batches: usize,
}

/// Tells the router task that a [`Done`] waits (it must not block).
pub(crate) type Wake = Box<dyn Fn() + Send>;

/// What the writer did, for tests, measurements and the metrics endpoint.
#[derive(Debug)]
pub(crate) struct WriterStats {
    /// Batches taken from the router.
    pub(crate) batches: AtomicU64,
    /// Write transactions committed (each covers one or more batches).
    pub(crate) commits: AtomicU64,
    /// Syncs of earlier unsynced commits ([`Fsync::Interval`]).
    pub(crate) syncs: AtomicU64,
    /// How long each commit took, its sync included.
    pub(crate) commit_seconds: prometheus::Histogram,
}

impl Default for WriterStats {
    fn default() -> WriterStats {
        WriterStats {
            batches: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            commit_seconds: commit_histogram(),
        }
    }
}

/// The buckets of the store's commit times, in seconds.
fn commit_histogram() -> prometheus::Histogram {
    let opts = prometheus::HistogramOpts::new(
        "tinymqtt_store_commit_seconds",
        "Time for a store commit to reach the disk, sync included.",
    )
    .buckets(vec![
        0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    ]);
    prometheus::Histogram::with_opts(opts).expect("valid buckets")
}

/// The router's end of the writer thread.
pub(crate) struct StoreWriter {
    tx: Option<SyncSender<Vec<StoreOp>>>,
    done: async_channel::Receiver<Done>,
    /// Batches sent whose tickets have not come back: at most [`STORE_BATCHES`].
    in_flight: usize,
    thread: Option<JoinHandle<()>>,
    pub(crate) stats: Arc<WriterStats>,
}

impl std::fmt::Debug for StoreWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWriter")
            .field("in_flight", &self.in_flight)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The writer is gone (its write failed): no more tickets come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stopped;

// Without the `persistence` feature no writer is ever started (`start` refuses a store).
#[cfg_attr(not(feature = "persistence"), allow(dead_code))]
impl StoreWriter {
    /// Starts the writer thread on `store`, committing as `fsync` says; `wake` is called after
    /// each hand-back and when the writer stops.
    #[cfg(feature = "persistence")]
    pub(crate) fn spawn(store: RedbStore, fsync: Fsync, wake: Wake) -> io::Result<StoreWriter> {
        // The router never has more than STORE_BATCHES batches in flight, so neither channel
        // ever makes its sender wait: the count is the backpressure.
        let (tx, rx) = sync_channel(STORE_BATCHES);
        let (done_tx, done) = async_channel::bounded(STORE_BATCHES);
        let stats = Arc::new(WriterStats::default());
        let s = stats.clone();
        let thread = std::thread::Builder::new()
            .name("tinymqtt-store".into())
            .spawn(move || {
                if let Err(e) = write_loop(&store, &rx, &done_tx, &*wake, fsync, &s) {
                    eprintln!("tinymqtt: {e}; stopping the broker");
                }
                drop(done_tx);
                wake();
            })?;
        Ok(StoreWriter {
            tx: Some(tx),
            done,
            in_flight: 0,
            thread: Some(thread),
            stats,
        })
    }

    /// Whether a batch may be sent now without going over [`STORE_BATCHES`].
    pub(crate) fn has_room(&self) -> bool {
        self.in_flight < STORE_BATCHES
    }

    /// Sends a batch to the writer (call only with room).
    pub(crate) fn send(&mut self, batch: Vec<StoreOp>) -> Result<(), Stopped> {
        let tx = self.tx.as_ref().ok_or(Stopped)?;
        tx.send(batch).map_err(|_| Stopped)?;
        self.in_flight += 1;
        Ok(())
    }

    /// A hand-back, if one waits.
    pub(crate) fn try_done(&mut self) -> Option<Result<Done, Stopped>> {
        match self.done.try_recv() {
            Ok(d) => Some(Ok(self.took(d))),
            Err(async_channel::TryRecvError::Empty) => None,
            Err(async_channel::TryRecvError::Closed) => Some(Err(Stopped)),
        }
    }

    /// Blocks the thread until the next hand-back.
    pub(crate) fn wait_done(&mut self) -> Result<Done, Stopped> {
        let d = self.done.recv_blocking().map_err(|_| Stopped)?;
        Ok(self.took(d))
    }

    #[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
    /// The receiving end of the hand-backs, for an async wait; give what it yields to
    /// [`StoreWriter::took`].
    pub(crate) fn done_receiver(&self) -> async_channel::Receiver<Done> {
        self.done.clone()
    }

    /// Counts a hand-back received from [`StoreWriter::done_receiver`].
    pub(crate) fn took(&mut self, d: Done) -> Done {
        self.in_flight = self.in_flight.saturating_sub(d.batches);
        d
    }

    /// Lets the writer finish what it was sent (and sync it, with [`Fsync::Interval`]) and
    /// waits for its thread, so the store file is closed when this returns.
    pub(crate) fn close(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        self.close();
    }
}

/// The writer thread's loop: until the router's end is dropped (then a last sync), or a write
/// fails (the error).
#[cfg(feature = "persistence")]
fn write_loop(
    store: &RedbStore,
    rx: &Receiver<Vec<StoreOp>>,
    done: &async_channel::Sender<Done>,
    wake: &dyn Fn(),
    fsync: Fsync,
    stats: &WriterStats,
) -> io::Result<()> {
    let (durability, interval) = match fsync {
        Fsync::Always => (Durability::Immediate, None),
        Fsync::Interval(d) => (Durability::None, Some(d)),
    };
    // When the oldest unsynced commit was made (Interval only).
    let mut unsynced: Option<Instant> = None;
    loop {
        let sync_at = unsynced.zip(interval).map(|(at, d)| at + d);
        let first = match sync_at {
            Some(at) => rx.recv_timeout(at.saturating_duration_since(now())),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let first = match first {
            Ok(b) => b,
            Err(RecvTimeoutError::Timeout) => {
                sync(store, stats, &mut unsynced)?;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                if unsynced.is_some() {
                    sync(store, stats, &mut unsynced)?;
                }
                return Ok(());
            }
        };
        // Group commit: every batch already waiting goes into the same transaction.
        let mut group = vec![first];
        while let Ok(b) = rx.try_recv() {
            group.push(b);
        }
        stats
            .batches
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        let writes = group
            .iter()
            .flatten()
            .any(|op| !matches!(op, StoreOp::Durable(_)));
        if writes {
            let started = now();
            store.commit(group.iter().flatten(), durability)?;
            stats.commits.fetch_add(1, Ordering::Relaxed);
            let took = now().saturating_duration_since(started);
            stats.commit_seconds.observe(took.as_secs_f64());
            if interval.is_some() {
                unsynced.get_or_insert_with(now);
            }
        }
        let tickets = group
            .iter()
            .flatten()
            .filter_map(|op| match op {
                StoreOp::Durable(t) => Some(*t),
                _ => None,
            })
            .collect();
        let batches = group.len();
        // Never full (the router keeps at most STORE_BATCHES in flight); gone at shutdown.
        let _ = done.send_blocking(Done { tickets, batches });
        wake();
        if sync_at.is_some_and(|at| now() >= at) {
            sync(store, stats, &mut unsynced)?;
        }
    }
}

/// Opens the store the options name, restores `router` from it, makes its acknowledgements
/// follow the fsync policy ([`Fsync::durable_acks`]) and starts its writer; `None` without
/// persistence.
#[cfg(feature = "persistence")]
pub(crate) fn start(
    options: &BrokerOptions,
    router: &mut Router,
    wake: Wake,
) -> io::Result<Option<StoreWriter>> {
    let Some(dir) = options.persistence.as_deref() else {
        return Ok(None);
    };
    // The one setting is the policy: the broker's acknowledgements are derived from it.
    router.set_durable_acks(options.fsync.durable_acks());
    let Some(store) = super::store::start(Some(dir), router)? else {
        return Ok(None);
    };
    StoreWriter::spawn(store, options.fsync, wake).map(Some)
}

/// Without the `persistence` feature: no store, and a configured one is an error.
#[cfg(not(feature = "persistence"))]
pub(crate) fn start(
    options: &BrokerOptions,
    _router: &mut Router,
    _wake: Wake,
) -> io::Result<Option<StoreWriter>> {
    match options.persistence {
        None => Ok(None),
        Some(_) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "BrokerOptions::persistence needs tinymqtt's `persistence` feature",
        )),
    }
}

/// Makes every earlier unsynced commit durable.
#[cfg(feature = "persistence")]
fn sync(store: &RedbStore, stats: &WriterStats, unsynced: &mut Option<Instant>) -> io::Result<()> {
    store.sync()?;
    stats.syncs.fetch_add(1, Ordering::Relaxed);
    *unsynced = None;
    Ok(())
}

#[cfg(all(test, feature = "persistence"))]
#[path = "writer_tests.rs"]
mod tests;
