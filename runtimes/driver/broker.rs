//! The broker driver's router side: `RouterCore`, the sans-IO [`Router`] and a mailbox per
//! connection.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::broker::{BrokerStats, ConnId, ConnectionMail, Router, ServerConnection};
use crate::hash::IdMap;
use crate::runtimes::driver::connection::Report;
use crate::runtimes::driver::mailbox::{batch_bytes, MailQueue, Mailbox};
use crate::runtimes::driver::metrics::{BatchSizes, RuntimeMetrics};
use crate::runtimes::driver::options::BrokerOptions;
use crate::runtimes::driver::transport::ListenerStats;
use crate::runtimes::driver::writer::{Done, Stopped, StoreWriter};

/// A map keyed by connection.
type ConnMap<V> = IdMap<ConnId, V>;

/// The most mails a connection's batch starts with room for (see [`RouterCore::drain`]).
const BATCH_ROOM: usize = 256;

/// The most messages of the cluster link routed before one drain.
#[cfg(feature = "cluster")]
const CLUSTER_BATCH: usize = 256;

/// The most connections [`RouterCore::drain`] keeps room for between drains.
const DRAIN_ROOM: usize = 1024;

/// The router task's state: the sans-IO router and every connection's mailbox.
pub(crate) struct RouterCore<Q> {
    pub(crate) router: Router,
    /// Where connections run deferred credentials checks.
    pub(crate) checks: Arc<super::checks::Checks>,
    mailboxes: ConnMap<Mailbox<Q>>,
    /// A drain's batches, by connection; kept between drains (room for up to
    /// [`DRAIN_ROOM`] connections).
    batches: ConnMap<Vec<ConnectionMail>>,
    /// The connections of `batches`, in the order of their first mail in the drain.
    order: Vec<ConnId>,
    /// The executor runs the task woken last first (tokio's LIFO slot): connections are then
    /// woken in the reverse order of their first mail.
    last_woken_first: bool,
    max_batches: usize,
    max_bytes: usize,
    /// The thread that writes the router's changes, with persistence on.
    store: Option<StoreWriter>,
    /// A write to the store failed: the broker stops.
    failed: bool,
    /// Batches sent to the store writer, and batches it made durable.
    store_batches: (u64, u64),
    /// The handle's requests waiting for the router's answer.
    admin: super::admin::AdminWaiters,
    /// Links: clients in this process, served here (see `link`).
    links: HashMap<ConnId, super::link::Hosted>,
    /// The most events a link's channel holds (`max_outbound_batches`).
    link_events: usize,
    /// The sizes of the batches sent (plain counts), copied to `batch_sizes_out` when a
    /// snapshot is asked for ([`RouterCore::stats`]).
    batch_sizes: BatchSizes,
    batch_sizes_out: Arc<Mutex<BatchSizes>>,
    /// The link to the other nodes of a cluster (see `runtimes/cluster/`): handed the
    /// router's remote outputs after each input.
    #[cfg(feature = "cluster")]
    pub(crate) cluster: Option<crate::runtimes::cluster::Port>,
}

/// How many assigned client identifiers' worth of random bits are drawn at once.
const RANDOM_POOL: usize = 32;

/// Random bits for assigned client identifiers, drawn from the system's random source
/// [`RANDOM_POOL`] identifiers at a time: the router asks for them at every accept, and one
/// system call per connection was a visible part of the connect path.
struct RandomPool {
    bits: [u8; 16 * RANDOM_POOL],
    /// The next unused 16 bytes of `bits`, in units of 16.
    next: usize,
}

impl RandomPool {
    fn new() -> RandomPool {
        RandomPool {
            bits: [0; 16 * RANDOM_POOL],
            next: RANDOM_POOL,
        }
    }

    /// 128 bits from the system's random source (a fixed pattern mixed with the clock if it
    /// fails, which it does not on any supported system).
    fn next(&mut self) -> u128 {
        if self.next == RANDOM_POOL {
            if getrandom::fill(&mut self.bits).is_err() {
                let t = std::time::SystemTime::UNIX_EPOCH
                    .elapsed()
                    .unwrap_or_default();
                let b = (t.as_nanos() ^ 0x5bd1_e995_8f3c_2a17_d3b5_01c9_6e7a_4f21).to_le_bytes();
                for chunk in self.bits.chunks_exact_mut(16) {
                    chunk.copy_from_slice(&b);
                }
                // Not pooled: the next call tries the system again.
                return u128::from_le_bytes(b);
            }
            self.next = 0;
        }
        let at = 16 * self.next;
        self.next += 1;
        let mut b = [0; 16];
        b.copy_from_slice(&self.bits[at..at + 16]);
        // Used once: what is handed out does not stay in the pool.
        self.bits[at..at + 16].fill(0);
        u128::from_le_bytes(b)
    }
}

impl<Q: MailQueue> RouterCore<Q> {
    /// A router task's state around `router` (restored from the store `store` writes, if
    /// there is one).
    pub(crate) fn new(
        router: Router,
        options: &BrokerOptions,
        store: Option<StoreWriter>,
        last_woken_first: bool,
    ) -> RouterCore<Q> {
        let mut router = router;
        // Assigned client identifiers nobody can guess.
        let mut random = RandomPool::new();
        router.set_client_id_source(Box::new(move || random.next()));
        let mut core = RouterCore {
            router,
            checks: super::checks::Checks::new(options),
            mailboxes: ConnMap::default(),
            batches: ConnMap::default(),
            order: Vec::new(),
            last_woken_first,
            max_batches: options.max_outbound_batches.max(1),
            max_bytes: options.max_outbound_bytes,
            store,
            failed: false,
            store_batches: (0, 0),
            admin: Default::default(),
            links: HashMap::new(),
            link_events: options.max_outbound_batches,
            batch_sizes: BatchSizes::default(),
            batch_sizes_out: Arc::default(),
            #[cfg(feature = "cluster")]
            cluster: None,
        };
        // What the restore itself changed (records that expired while the broker was down).
        core.persist(super::now());
        core
    }

    /// The router's snapshot; the batch sizes counted so far become readable by the metrics
    /// endpoint ([`RouterCore::runtime_metrics`]) with it.
    pub(crate) fn stats(&mut self) -> BrokerStats {
        *self
            .batch_sizes_out
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = self.batch_sizes;
        self.router.stats()
    }

    /// Hands the metrics endpoint the batch sizes counted from now on, and tells `$SYS`
    /// each listener's open connections.
    pub(crate) fn observe(&mut self, metrics: &RuntimeMetrics, listeners: &ListenerStats) {
        self.batch_sizes_out = metrics.batches.clone();
        let listeners = listeners.clone();
        self.router.set_listener_source(Box::new(move || {
            let open = listeners.connections().into_iter();
            open.map(|(a, n)| (a.to_string(), n)).collect()
        }));
    }

    /// Whether the broker must stop: its store can no longer be written.
    pub(crate) fn failed(&self) -> bool {
        self.failed
    }

    /// Sends what the router changed since the last batch to the store writer, as one batch.
    ///
    /// With [`STORE_BATCHES`](super::STORE_BATCHES) batches in flight, this first blocks the
    /// thread until the writer hands some back (the async loop waits for that itself, see
    /// [`RouterCore::store_full`], so it never blocks here). A writer that stopped (its write
    /// failed, told on standard error) stops the broker: it cannot keep what it would go on
    /// acknowledging.
    fn persist(&mut self, now: Instant) {
        if self.failed || self.store.is_none() {
            return;
        }
        let mut ops = Vec::new();
        while let Some(op) = self.router.poll_store() {
            ops.push(op);
        }
        if ops.is_empty() {
            return;
        }
        while let Some(store) = self.store.as_mut().filter(|s| !s.has_room()) {
            // Backpressure: the disk is behind; the router waits.
            let done = store.wait_done();
            self.durable(now, done);
            if self.failed {
                return;
            }
        }
        match self.store.as_mut().map(|s| s.send(ops)) {
            Some(Err(Stopped)) => self.failed = true,
            Some(Ok(())) => self.store_batches.0 += 1,
            None => {}
        }
    }

    /// Hands the tickets of a writer's hand-back to the router, in order.
    fn durable(&mut self, now: Instant, done: Result<Done, Stopped>) {
        match done {
            Ok(d) => {
                self.store_batches.1 += d.batches as u64;
                for t in d.tickets {
                    self.router.handle_durable(now, t);
                }
                #[cfg(feature = "cluster")]
                if let Some(port) = &mut self.cluster {
                    port.durable(self.store_batches.1);
                }
            }
            Err(Stopped) => self.failed = true,
        }
    }

    /// Takes every hand-back the store writer has ready (call it on every turn of the loop,
    /// and when the writer's wake arrives): held acknowledgements go out.
    pub(crate) fn collect(&mut self, now: Instant) {
        let mut any = false;
        while let Some(done) = self.store.as_mut().and_then(StoreWriter::try_done) {
            self.durable(now, done);
            any = true;
        }
        if any && !self.failed {
            self.drain(now);
        }
    }

    #[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
    /// The writer's hand-backs while [`STORE_BATCHES`](super::STORE_BATCHES) batches are in
    /// flight: the async loop must wait on it (and give what it gets to
    /// [`RouterCore::stored`]) before anything else.
    pub(crate) fn store_full(&self) -> Option<async_channel::Receiver<Done>> {
        let s = self.store.as_ref().filter(|s| !s.has_room())?;
        (!self.failed).then(|| s.done_receiver())
    }

    #[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
    /// A hand-back received from [`RouterCore::store_full`]'s receiver.
    pub(crate) fn stored(&mut self, now: Instant, done: Result<Done, async_channel::RecvError>) {
        let done = match (done, self.store.as_mut()) {
            (Ok(d), Some(s)) => Ok(s.took(d)),
            _ => Err(Stopped),
        };
        self.durable(now, done);
        if !self.failed {
            self.drain(now);
        }
    }

    /// Lets the store writer finish (and sync) what it was sent and closes the store file;
    /// tickets still in flight are not handed back.
    pub(crate) fn close_store(&mut self) {
        if let Some(mut s) = self.store.take() {
            s.close();
        }
    }

    /// A transport connected: its connection (for its own task), whose mail goes to `mailbox`.
    pub(crate) fn accept(&mut self, now: Instant) -> ServerConnection {
        self.router.accept(now)
    }

    /// Registers where the mail for `conn` goes.
    pub(crate) fn register(&mut self, conn: ConnId, mailbox: Mailbox<Q>) {
        self.mailboxes.insert(conn, mailbox);
    }

    /// A connection's report, routed; what it causes waits for [`RouterCore::flush`], so that
    /// the reports of one turn reach each connection as one batch.
    pub(crate) fn take_report(&mut self, now: Instant, report: Report) {
        self.router.record_traffic(report.received, report.sent);
        for m in report.mail {
            // A CONNECT of a cluster node waits for its session's claim (`cluster/claims.rs`).
            #[cfg(feature = "cluster")]
            let Some(m) = (match &mut self.cluster {
                Some(port) => port.claims.hold(now, &mut self.router, m),
                None => Some(m),
            }) else {
                continue;
            };
            self.router.handle_mail(now, m);
        }
        if report.last {
            self.mailboxes.remove(&report.conn);
        }
    }

    /// Mails out what the reports taken since the last flush caused.
    pub(crate) fn flush(&mut self, now: Instant) {
        self.drain(now);
    }

    /// A request of the broker's handle; `reply` hears the router's answer.
    pub(crate) fn admin(
        &mut self,
        now: Instant,
        request: Box<crate::broker::AdminRequest>,
        reply: super::Reply<crate::broker::AdminReply>,
    ) {
        self.admin.ask(&mut self.router, now, request, reply);
        self.drain(now);
    }

    /// A call of a link: a new one (`conn` `None`, a connect) or one of `conn`'s.
    pub(crate) fn link(
        &mut self,
        now: Instant,
        conn: Option<ConnId>,
        call: super::handle::LinkCall,
        reply: super::Reply<super::handle::LinkAnswer>,
    ) {
        use super::handle::{LinkAnswer, LinkCall};
        use super::link::Hosted;
        let answer = match (conn, call) {
            (None, LinkCall::Connect(config)) => {
                let conn = self.router.accept(now);
                let id = conn.id();
                match Hosted::start(now, &mut self.router, conn, *config, self.link_events) {
                    Ok((mut hosted, events)) => {
                        if hosted.pump(now, &mut self.router) {
                            self.links.insert(id, hosted);
                        }
                        Ok(LinkAnswer::Started(id, events))
                    }
                    Err(e) => Err(e),
                }
            }
            (Some(id), call) => match self.links.get_mut(&id) {
                Some(hosted) => {
                    let r = hosted.call(now, call).map(LinkAnswer::Done);
                    if !hosted.pump(now, &mut self.router) {
                        self.links.remove(&id);
                    }
                    r
                }
                None => Err(super::Error::Stopped),
            },
            (None, _) => Err(super::Error::Stopped),
        };
        super::answer(reply, answer);
        self.drain(now);
    }

    /// A message of the cluster link's, routed.
    #[cfg(feature = "cluster")]
    pub(crate) fn cluster_input(&mut self, now: Instant, m: crate::runtimes::cluster::FromLink) {
        let Some(port) = &mut self.cluster else {
            return;
        };
        // What else waits is routed with it, up to CLUSTER_BATCH: one drain, so a subscriber
        // gets one batch of mail for them (one per message would fill its channel).
        let mut taken = Vec::new();
        taken.extend(port.input(now, &mut self.router, m));
        for _ in 1..CLUSTER_BATCH {
            let Ok(m) = port.from_link.try_recv() else {
                break;
            };
            taken.extend(port.input(now, &mut self.router, m));
        }
        self.drain(now);
        if let Some(port) = &mut self.cluster {
            // Acknowledged to JetStream once the batch that drain sent is durable.
            for id in taken {
                port.taken(id, self.store_batches.0);
            }
            port.durable(self.store_batches.1);
        }
    }

    /// Hands the router's remote outputs to the cluster link; without one (a router with
    /// `BrokerConfig::cluster` on, bound without a link) they go nowhere.
    fn hand_remote(&mut self) {
        #[cfg(feature = "cluster")]
        if let Some(port) = &mut self.cluster {
            port.hand(&mut self.router);
            port.claims.drained(&mut self.router);
            return;
        }
        while self.router.poll_remote().is_some() {}
    }

    /// A deadline passed.
    pub(crate) fn timeout(&mut self, now: Instant) {
        let due: Vec<ConnId> = self
            .links
            .iter()
            .filter(|(_, l)| l.deadline().is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(l) = self.links.get_mut(&id) {
                l.timeout(now);
                if !l.pump(now, &mut self.router) {
                    self.links.remove(&id);
                }
            }
        }
        self.router.handle_timeout(now);
        self.drain(now);
    }

    /// The graceful shutdown: every connection is told; the router routes nothing more (so no
    /// will is published).
    pub(crate) fn shutdown(&mut self) {
        for (_, m) in self.mailboxes.drain() {
            m.queue.shutdown();
        }
        for (_, l) in self.links.drain() {
            l.shut_down(super::now());
        }
    }

    /// The earliest deadline.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let links = self.links.values().filter_map(|l| l.deadline());
        let at = self.router.poll_timeout().into_iter().chain(links).min();
        #[cfg(feature = "cluster")]
        if self.cluster.as_ref().is_some_and(|p| p.backlog()) {
            // What waits for the cluster link is offered again soon, input or not.
            let soon = super::now() + std::time::Duration::from_millis(10);
            return Some(at.map_or(soon, |at| at.min(soon)));
        }
        at
    }

    /// Mails what the router produced, one batch per connection. A connection whose channel
    /// is full (or over its byte cap) is closed as too slow and its batch goes back to the
    /// router; the router never waits on a connection.
    fn drain(&mut self, now: Instant) {
        self.persist(now);
        let mut batches = std::mem::take(&mut self.batches);
        self.admin.answer(&mut self.router);
        while let Some(m) = self.router.poll_mail() {
            let conn = m.conn();
            if let Some(l) = self.links.get_mut(&conn) {
                // A link's connection is here: its mail goes in now, and what it answers
                // comes back to the router in this same drain.
                l.mail(now, m);
                if !l.pump(now, &mut self.router) {
                    self.links.remove(&conn);
                }
                continue;
            }
            let mailboxes = &self.mailboxes;
            let order = &mut self.order;
            batches
                .entry(conn)
                .or_insert_with(|| {
                    order.push(conn);
                    // As much room as the connection's last batch took (up to BATCH_ROOM), so
                    // that a batch of the usual size is not regrown (each regrowth moves
                    // every mail so far).
                    let room = mailboxes.get(&conn).map_or(1, |mb| mb.last);
                    Vec::with_capacity(room.clamp(1, BATCH_ROOM))
                })
                .push(m);
        }
        // What goes to the other nodes, as the mail's batches go out.
        self.hand_remote();
        let mut order = std::mem::take(&mut self.order);
        if self.last_woken_first {
            // So that the connection with the drain's first mail (usually a delivery) runs
            // first, before the ones whose acknowledgements the router let go after it.
            order.reverse();
        }
        for conn in order.drain(..) {
            let Some(batch) = batches.remove(&conn) else {
                continue;
            };
            let back = match self.mailboxes.get_mut(&conn) {
                Some(mb) => {
                    mb.last = batch.len();
                    self.batch_sizes.count(batch.len());
                    let len = batch_bytes(&batch);
                    let q = mb.queue.queued();
                    let full = q.batches.load(Ordering::Relaxed) >= self.max_batches
                        || q.bytes.load(Ordering::Relaxed) + len > self.max_bytes;
                    let refused = if full {
                        Err(batch)
                    } else {
                        q.batches.fetch_add(1, Ordering::Relaxed);
                        q.bytes.fetch_add(len, Ordering::Relaxed);
                        mb.queue.try_push(batch).inspect_err(|_| {
                            q.batches.fetch_sub(1, Ordering::Relaxed);
                            q.bytes.fetch_sub(len, Ordering::Relaxed);
                        })
                    };
                    match refused {
                        Ok(()) => continue,
                        Err(batch) => {
                            mb.queue.abort();
                            self.mailboxes.remove(&conn);
                            batch
                        }
                    }
                }
                None => batch,
            };
            for m in back {
                self.router.handle_undelivered(now, m);
            }
        }
        batches.shrink_to(DRAIN_ROOM);
        order.shrink_to(DRAIN_ROOM);
        self.batches = batches;
        self.order = order;
    }
}

#[cfg(test)]
mod tests;
