//! Links: clients that live in the broker's own process, joined to their connection by
//! memory instead of a socket.
//!
//! A link is a [`ClientSession`] and a [`ServerConnection`](super::ServerConnection) of the
//! broker's, whose bytes [`Broker`] moves between them itself: the application subscribes,
//! publishes and receives with the session's calls, and the broker serves it exactly as it
//! serves a network client (the same session queue and its caps, the same in-flight window,
//! the same authorizer). A link does not reconnect and has no keep-alive: it ends when the
//! application disconnects it, when the broker closes it (a kick, a takeover, a shutdown) or
//! when it breaks a rule, and its last event is [`Event::Disconnected`].
//!
//! ```
//! use std::time::Instant;
//! use tinymqtt::broker::{Broker, BrokerConfig};
//! use tinymqtt::client::{ClientConfig, Event};
//! use tinymqtt::codec::{Publish, Subscription};
//! use tinymqtt::{ByteStr, ProtocolVersion, QoS, TopicFilter, TopicName};
//!
//! # #[allow(clippy::disallowed_methods)]
//! let now = Instant::now();
//! let mut broker = Broker::new(BrokerConfig::default());
//! let config = ClientConfig::new(ProtocolVersion::V5, ByteStr::from_static("app"));
//! let app = broker.link(now, config).expect("a valid client id");
//! broker.with_link(now, app, |c| {
//!     let filter = TopicFilter::new("t").unwrap();
//!     c.subscribe(now, vec![Subscription::new(filter, QoS::AtLeastOnce)], Default::default())
//! });
//! // Any client's message to `t` (here the link's own) comes back to the link.
//! let hi = Publish::new(TopicName::new("t").unwrap(), "hi");
//! broker.with_link(now, app, |c| c.publish(now, hi));
//! let got = std::iter::from_fn(|| broker.poll_link_event()).find_map(|(_, e)| match e {
//!     Event::Message(m) => Some(m.publish.payload),
//!     _ => None,
//! });
//! assert_eq!(got.as_deref(), Some(&b"hi"[..]));
//! ```

use crate::ByteStr;
use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::{Broker, ConnId};
use crate::client::{ClientConfig, ClientSession, Event};
use crate::error::ClientError;
use crate::hash::IdMap;

/// The listener name links have in [`AdminReply::Clients`](super::AdminReply::Clients).
pub const IN_PROCESS: &str = "in-process";

/// The links of a [`Broker`], and what travels between them and their connections.
#[derive(Debug, Default)]
pub(super) struct Links {
    clients: IdMap<ConnId, ClientSession>,
    /// Bytes a link's connection transmitted, for its client.
    inbound: VecDeque<(ConnId, Bytes)>,
    /// Links whose connection asked for its transport to close.
    closing: Vec<ConnId>,
    /// Their clients' events.
    events: VecDeque<(ConnId, Event)>,
}

impl Links {
    /// Whether `conn` is a link's connection.
    pub(super) fn holds(&self, conn: ConnId) -> bool {
        !self.clients.is_empty() && self.clients.contains_key(&conn)
    }

    /// Keeps `bytes` that `conn` transmitted for its link.
    pub(super) fn transmitted(&mut self, conn: ConnId, bytes: Bytes) {
        self.inbound.push_back((conn, bytes));
    }

    /// `conn` asked for its transport to close.
    pub(super) fn close(&mut self, conn: ConnId) {
        self.closing.push(conn);
    }

    /// The earliest deadline of a link's client.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.clients.values().filter_map(|c| c.poll_timeout()).min()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

impl Broker {
    /// Connects a new link with `config` (its `reconnect` and `keep_alive` are turned off):
    /// its connection's identifier, by which [`Broker::with_link`] reaches it. The CONNECT
    /// is handled at once; its outcome ([`Event::Connected`], or [`Event::Disconnected`] for a
    /// refusal) comes out of [`Broker::poll_link_event`]. `Err` is the session's refusal of
    /// `config` (an invalid client identifier).
    pub fn link(&mut self, now: Instant, mut config: ClientConfig) -> Result<ConnId, ClientError> {
        config.reconnect = None;
        config.keep_alive = 0;
        let mut client = ClientSession::new(config);
        client.connect(now)?;
        let conn = self.accept(now);
        if !self.conns.contains_key(&conn) {
            // Refused at once (no room, `max_connections`): the link ends before it began.
            client.handle_transport_closed(now);
            while let Some(e) = client.poll_event() {
                self.links.events.push_back((conn, e));
            }
            return Ok(conn);
        }
        self.router
            .set_listener(conn, ByteStr::from_static(IN_PROCESS));
        self.links.clients.insert(conn, client);
        self.shuttle(now);
        Ok(conn)
    }

    /// Runs `f` on the client of the link `conn` (subscribe, publish, ack, disconnect, ...),
    /// then moves what it sends to the broker and what the broker answers; `None` if there
    /// is no such link (it ended, and its events were drained).
    pub fn with_link<T>(
        &mut self,
        now: Instant,
        conn: ConnId,
        f: impl FnOnce(&mut ClientSession) -> T,
    ) -> Option<T> {
        let t = f(self.links.clients.get_mut(&conn)?);
        self.shuttle(now);
        Some(t)
    }

    /// An event of a link's client (a message, a publish's completion, the end); yields
    /// after inputs, timeouts and [`Broker::with_link`] (drain it after
    /// [`Broker::poll_event`]).
    pub fn poll_link_event(&mut self) -> Option<(ConnId, Event)> {
        self.links.events.pop_front()
    }

    /// Acts on the links' deadlines due at `now`.
    pub(super) fn link_timeouts(&mut self, now: Instant) {
        for c in self.links.clients.values_mut() {
            if c.poll_timeout().is_some_and(|at| at <= now) {
                c.handle_timeout(now);
            }
        }
    }

    /// Moves bytes between the links and their connections until neither side has more,
    /// pumping the broker after each round, and collects the clients' events.
    pub(super) fn shuttle(&mut self, now: Instant) {
        loop {
            while let Some((conn, bytes)) = self.links.inbound.pop_front() {
                self.router.record_traffic(0, bytes.len() as u64);
                if let Some(c) = self.links.clients.get_mut(&conn) {
                    c.handle_input(now, &bytes);
                }
            }
            let mut moved = false;
            let ids: Vec<ConnId> = self.links.clients.keys().copied().collect();
            for id in ids {
                let Some(c) = self.links.clients.get_mut(&id) else {
                    continue;
                };
                let mut out = Vec::new();
                while let Some(bytes) = c.poll_transmit() {
                    out.push(bytes);
                }
                while let Some(e) = c.poll_event() {
                    if matches!(e, Event::Disconnected { .. }) {
                        // The client ended it: its last bytes go, then the transport closes.
                        self.links.closing.push(id);
                    }
                    self.links.events.push_back((id, e));
                }
                if let Some(s) = self.conns.get_mut(&id) {
                    for bytes in &out {
                        s.conn.handle_input(now, bytes);
                    }
                    if !out.is_empty() {
                        self.router
                            .record_traffic(out.iter().map(|b| b.len() as u64).sum(), 0);
                        self.touch(id);
                        moved = true;
                    }
                }
            }
            for id in std::mem::take(&mut self.links.closing) {
                if let Some(mut c) = self.links.clients.remove(&id) {
                    c.handle_transport_closed(now);
                    while let Some(e) = c.poll_event() {
                        self.links.events.push_back((id, e));
                    }
                }
                if let Some(s) = self.conns.get_mut(&id) {
                    s.conn.handle_transport_closed(now);
                    self.touch(id);
                    moved = true;
                }
            }
            if !moved && self.links.inbound.is_empty() {
                return;
            }
            self.pump_once(now);
        }
    }
}
