//! The router's public surface: accepting connections, mail, timers, `$SYS`, statistics and
//! shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::connection::ServerConnection;
use super::super::mail::{ConnId, ConnectionMail, RouterMail, ToConnection};
use super::super::{sys, AllowAll, Authenticator, Authorizer, BrokerConfig, BrokerStats};
use super::Router;
use crate::types::{ByteStr, ReasonCode};

impl Router {
    /// A router that lets everyone in and allows everything (see [`Router::with_auth`]).
    pub fn new(config: BrokerConfig) -> Router {
        Router::with_auth(config, Arc::new(AllowAll), Arc::new(AllowAll))
    }

    /// A router whose connections ask `authenticator` and `authorizer`.
    pub fn with_auth(
        config: BrokerConfig,
        authenticator: Arc<dyn Authenticator>,
        authorizer: Arc<dyn Authorizer>,
    ) -> Router {
        Router::build(Arc::new(config), authenticator, authorizer)
    }

    /// The configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// A transport connected: its connection, with an identifier never used before.
    ///
    /// It counts towards [`BrokerStats::connections`] until its last mail (the one its close
    /// produces) reaches [`Router::handle_mail`]. Connections still in their handshake count
    /// against [`BrokerConfig::max_connections`] too: with that many open and one more (room
    /// for a takeover), the new one comes back closed, before anything is read from it.
    pub fn accept(&mut self, now: Instant) -> ServerConnection {
        self.start_clock(now);
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        let full = self
            .config
            .max_connections
            .is_some_and(|max| self.conns.len() > max);
        self.conns.insert(id);
        let mut conn = ServerConnection::new(
            id,
            now,
            self.config.clone(),
            self.authenticator.clone(),
            self.authorizer.clone(),
            self.budgets.clone(),
        );
        if full {
            conn.refuse_transport();
        }
        conn.set_id_nonce(self.next_nonce());
        conn
    }

    /// Sets where the random bits of assigned client identifiers come from (the runtimes
    /// give a system random source). Without one they come from a fixed sequence that a
    /// client can predict: a broker that assigns identifiers should set one.
    pub fn set_client_id_source(&mut self, source: Box<dyn FnMut() -> u128 + Send>) {
        self.id_source = Some(source);
    }

    /// The next random bits for an assigned client identifier.
    fn next_nonce(&mut self) -> u128 {
        match &mut self.id_source {
            Some(source) => source(),
            None => {
                // SplitMix64 over the connection counter: distinct, not secret.
                let mut z = self.next_conn.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                u128::from(z ^ (z >> 31))
            }
        }
    }

    /// Mail from a connection.
    pub fn handle_mail(&mut self, now: Instant, mail: RouterMail) {
        self.handle(now, mail.conn, mail.mail);
    }

    /// Mail that could not reach its connection (its queue is full); the caller closes that
    /// connection as too slow.
    ///
    /// Nothing more is released to the session until its connection's close arrives. QoS 1
    /// and 2 deliveries go back to the front of the session's queue, in order; QoS 0
    /// deliveries and acknowledgements are dropped.
    pub fn handle_undelivered(&mut self, _now: Instant, mail: ConnectionMail) {
        let Some(&sid) = self.online.get(&mail.conn) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if !s.stalled {
            s.stalled = true;
            s.queue.reset_returned();
        }
        if matches!(mail.mail, ToConnection::Deliver(_)) {
            self.sent = self.sent.saturating_sub(1); // counted when released, never sent
        }
        match mail.mail {
            ToConnection::Deliver(d) if !d.is_qos0() => {
                s.inflight = s.inflight.saturating_sub(1);
                s.queue.put_back(d);
            }
            ToConnection::Deliver(_) => s.dropped += 1,
            ToConnection::Accepted { handover, .. } => s.handover = handover,
            _ => {}
        }
    }

    /// A ticket the store logged ([`StoreOp::Durable`](crate::store::StoreOp::Durable)) is
    /// durable, with everything logged before it: its connection may send the
    /// acknowledgement it holds. Hand tickets back in the order they were drained.
    pub fn handle_durable(&mut self, now: Instant, ticket: crate::store::Ticket) {
        if !ticket.delivery {
            if self.conns.contains(&ticket.conn) {
                self.send_held(ticket.conn, 1);
            }
            return;
        }
        let Some((conn, sid, d)) = self.parked.pop_front() else {
            return;
        };
        debug_assert_eq!(conn, ticket.conn, "tickets come back in order");
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.parked = s.parked.saturating_sub(1);
        }
        if self.online.get(&conn) == Some(&sid) {
            self.send_to((conn, ToConnection::Deliver(d)));
        } else {
            // Its connection is gone: back to the session, as if never sent.
            self.returned_to(now, sid, d);
        }
    }

    /// Acts on every deadline due at `now` (will delays, session expiries, `$SYS`); a
    /// spurious call does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.start_clock(now);
        self.fire_timers(now);
        if self.next_sys.is_some_and(|at| at <= now) {
            let uptime = self.started.map_or(Duration::ZERO, |s| now - s);
            let stats = self.stats();
            for p in sys::messages(&stats, uptime) {
                self.route(now, Arc::new(p), None);
            }
            self.next_sys = self.config.sys_interval.map(|i| now + i);
        }
    }

    /// Counts bytes the connections read from and wrote to their transports (for statistics).
    pub fn record_traffic(&mut self, received: u64, sent: u64) {
        self.bytes_received += received;
        self.bytes_sent += sent;
    }

    /// Mails every connection to close for a server shutdown: DISCONNECT 0x8B to MQTT 5
    /// clients, and no wills.
    pub fn shutdown(&mut self, _now: Instant) {
        let conns: Vec<ConnId> = self.conns.iter().copied().collect();
        for conn in conns {
            let mail = ToConnection::Disconnect(ReasonCode::ServerShuttingDown);
            self.send_to((conn, mail));
        }
    }

    /// Mail for a connection; yields after inputs, timeouts and shutdown.
    pub fn poll_mail(&mut self) -> Option<ConnectionMail> {
        let (conn, mail) = match self.outbox.pop_front() {
            Some(m) => m,
            None => {
                let (conn, n) = self.held_due.take()?;
                (conn, ToConnection::SendHeld(n))
            }
        };
        Some(ConnectionMail { conn, mail })
    }

    /// The earliest deadline: will delays, session expiries, publishers' waits for a full
    /// queue, the next `$SYS` round.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timer().into_iter().chain(self.next_sys).min()
    }

    /// Counters.
    pub fn stats(&self) -> BrokerStats {
        BrokerStats {
            connections: self.conns.len(),
            sessions: self.sessions.len(),
            subscriptions: self.tree.len(),
            retained: self.retained.len(),
            messages_received: self.received,
            messages_sent: self.sent,
            bytes_received: self.bytes_received,
            bytes_sent: self.bytes_sent,
            dropped: self.sessions.values().map(|s| s.dropped).sum(),
            publishes_denied: self.denied,
            memory_used: self.budget.used(),
            refused_over_limits: self.budget.refused(),
        }
    }

    /// Messages dropped for `client_id` because its queue was full.
    pub fn dropped(&self, client_id: &ByteStr) -> Option<u64> {
        let sid = self.by_client.get(client_id)?;
        self.sessions.get(sid).map(|s| s.dropped)
    }

    /// Starts the uptime and the `$SYS` timer at the first instant the router is given.
    pub(super) fn start_clock(&mut self, now: Instant) {
        if self.started.is_none() {
            self.started = Some(now);
            self.next_sys = self.config.sys_interval.map(|i| now + i);
        }
    }
}
