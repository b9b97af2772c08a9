//! The one test harness of the sans-IO core: a simulated network ([`Sim`]: one `Broker`, any
//! number of `ClientSession`s, a fake clock and seeded links) and scripted peers on either side
//! of it, for tests that write the packets themselves: [`raw::Raw`] plays clients of a
//! `Broker`, [`peer::Peer`] plays the server of one `ClientSession`, and [`split::Split`]
//! plays clients of a `Router` and its `ServerConnection`s without the `Broker` facade.
//!
//! Everything goes through the public sans-IO API. The clock starts at [`t0`] and only ever
//! moves by jumping to the earliest deadline of any party (or the next byte delivery), so a
//! one-hour session expiry takes microseconds. Bytes travel over [`Link`]s that cut them into
//! seeded chunks (down to one byte), may delay them by a fixed latency, keep their order per
//! direction, and can be severed or muted. Every loop is bounded: a run that does not settle
//! fails with the simulator's state instead of hanging.
//!
//! Events are recorded per client and for the broker, with the time they were drained; tests
//! find them by kind and content ([`Sim::expect_event`], [`Sim::messages`], ...), never by
//! position.

mod events;
pub(crate) mod peer;
pub(crate) mod raw;
pub(crate) mod split;

pub(crate) use crate::support::{filter, s, secs, t0, topic};

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tinymqtt::broker::{Authenticator, Broker, BrokerConfig, BrokerEvent, ConnId};
use tinymqtt::client::{Backoff, ClientConfig, ClientSession, Event};
use tinymqtt::codec::{
    ConnAckProperties, Disconnect, Publish, SubscribeProperties, Subscription,
    UnsubscribeProperties,
};
use tinymqtt::error::{ClientError, CloseReason};
use tinymqtt::{ByteStr, PacketId, ProtocolVersion, QoS, ReasonCode};

/// A message to publish at `qos`.
pub(crate) fn msg(t: &'static str, payload: impl Into<Bytes>, qos: QoS) -> Publish {
    let mut p = Publish::new(topic(t), payload);
    p.qos = qos;
    p
}

/// A subscription at `qos` with default options.
pub(crate) fn sub(f: &'static str, qos: QoS) -> Subscription {
    Subscription::new(filter(f), qos)
}

/// A client configuration with a predictable reconnect delay (1 s doubling to 8 s, no jitter).
pub(crate) fn config(v: ProtocolVersion, id: &'static str) -> ClientConfig {
    let mut c = ClientConfig::new(v, s(id));
    c.reconnect = Some(Backoff {
        initial: secs(1),
        max: secs(8),
        jitter_percent: 0,
        seed: 1,
    });
    c
}

/// A client configuration that keeps its session: session expiry `expiry` seconds under MQTT 5,
/// clean session 0 under 3.1.x.
pub(crate) fn persistent(v: ProtocolVersion, id: &'static str, expiry: u32) -> ClientConfig {
    let mut c = config(v, id);
    if v.is_v5() {
        c.properties.session_expiry_interval = Some(expiry);
    } else {
        c.clean_start = false;
    }
    c
}

/// Lets in `alice` with password `secret`, refuses every other credential.
pub(crate) struct Passwords;

impl Authenticator for Passwords {
    fn authenticate(
        &self,
        _: &ByteStr,
        username: Option<&ByteStr>,
        password: Option<&Bytes>,
    ) -> Result<(), ReasonCode> {
        match (username.map(ByteStr::as_str), password.map(|p| &p[..])) {
            (Some("alice"), Some(b"secret")) => Ok(()),
            _ => Err(ReasonCode::BadUserNameOrPassword),
        }
    }
}

/// SplitMix64: a small deterministic generator for chunk sizes.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A client of the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Cl(pub(crate) usize);

/// One direction of a link: chunks in flight, in order.
#[derive(Debug, Default)]
struct Pipe {
    /// (delivery time, global sequence number, bytes).
    queue: VecDeque<(Instant, u64, Bytes)>,
    /// The sending side closed: the receiver sees the close once the queue drains.
    closing: bool,
    /// Bytes sent into this pipe are dropped (a one-way partition).
    muted: bool,
}

/// A transport between one client and the broker.
#[derive(Debug)]
struct Link {
    node: usize,
    conn: ConnId,
    /// ClientSession to broker.
    up: Pipe,
    /// Broker to client.
    down: Pipe,
}

/// A simulated client and what it reported.
#[derive(Debug)]
pub(crate) struct Node {
    /// The client session.
    pub(crate) client: ClientSession,
    /// Open a new transport when the client says `ReconnectDue`.
    pub(crate) auto_reconnect: bool,
    /// Events not yet taken by the test, with the time they were drained (since the origin).
    events: Vec<(Duration, Event)>,
    /// How many connections this client opened.
    pub(crate) connections: usize,
    /// How many events were pending when the latest connection opened: its outcome comes after.
    open_base: usize,
}

/// The simulation: a broker, its clients, the links between them and the clock.
pub(crate) struct Sim {
    /// The broker under test.
    pub(crate) broker: Broker,
    start: Instant,
    now: Instant,
    rng: Rng,
    /// Chunks are `1..=max_chunk` bytes, drawn from the seeded generator.
    pub(crate) max_chunk: usize,
    /// Delay of every chunk on every link.
    pub(crate) latency: Duration,
    /// Inputs and timeouts one call may process before it fails as a livelock.
    pub(crate) step_limit: u64,
    nodes: Vec<Node>,
    links: Vec<Link>,
    broker_events: Vec<(Duration, BrokerEvent)>,
    seq: u64,
    trace: VecDeque<String>,
    /// How many trace lines a failure prints.
    pub(crate) dump_lines: usize,
    /// Call every party's `handle_timeout` at every step, due or not (spurious calls must be
    /// no-ops).
    pub(crate) spurious_timeouts: bool,
}

impl Sim {
    /// A simulation of a broker with `config`; chunk sizes follow `seed`.
    pub(crate) fn new(config: BrokerConfig, seed: u64) -> Sim {
        let start = t0();
        Sim {
            broker: Broker::new(config),
            start,
            now: start,
            rng: Rng::new(seed),
            max_chunk: 64,
            latency: Duration::ZERO,
            step_limit: 200_000,
            nodes: Vec::new(),
            links: Vec::new(),
            broker_events: Vec::new(),
            seq: 0,
            trace: VecDeque::new(),
            dump_lines: 60,
            spurious_timeouts: false,
        }
    }

    /// A simulation around an already built broker (custom authentication, say).
    pub(crate) fn with_broker(broker: Broker, seed: u64) -> Sim {
        let mut sim = Sim::new(BrokerConfig::default(), seed);
        sim.broker = broker;
        sim
    }

    /// A simulation with the default broker configuration.
    pub(crate) fn default_broker(seed: u64) -> Sim {
        Sim::new(BrokerConfig::default(), seed)
    }

    // ---- clock ----------------------------------------------------------------------------

    /// The current simulated time.
    pub(crate) fn now(&self) -> Instant {
        self.now
    }

    /// Time since the origin.
    pub(crate) fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    // ---- clients ------------------------------------------------------------------------

    /// Adds a client that has not connected yet.
    pub(crate) fn add_client(&mut self, config: ClientConfig) -> Cl {
        self.add_node(ClientSession::new(config))
    }

    /// Adds an existing client session (for example one built with `ClientSession::with_session`).
    pub(crate) fn add_node(&mut self, client: ClientSession) -> Cl {
        self.nodes.push(Node {
            client,
            auto_reconnect: true,
            events: Vec::new(),
            connections: 0,
            open_base: 0,
        });
        Cl(self.nodes.len() - 1)
    }

    /// The client session of `cl`.
    pub(crate) fn client(&self, cl: Cl) -> &ClientSession {
        &self.nodes[cl.0].client
    }

    /// The broker connection currently serving `cl`, if any.
    pub(crate) fn conn(&self, cl: Cl) -> Option<ConnId> {
        self.current_link(cl.0).map(|i| self.links[i].conn)
    }

    /// Adds a client, connects it and waits for the accepting CONNACK.
    pub(crate) fn connected(&mut self, config: ClientConfig) -> Cl {
        let cl = self.add_client(config);
        self.connect(cl);
        cl
    }

    /// Opens a transport for `cl` and calls `connect`; does not wait.
    pub(crate) fn open(&mut self, cl: Cl) -> ConnId {
        let conn = self.broker.accept(self.now);
        self.log(format!("{cl:?} opens {conn:?}"));
        self.links.push(Link {
            node: cl.0,
            conn,
            up: Pipe::default(),
            down: Pipe::default(),
        });
        let now = self.now;
        let node = &mut self.nodes[cl.0];
        node.connections += 1;
        node.open_base = node.events.len();
        if let Err(e) = node.client.connect(now) {
            self.fail(&format!("{cl:?}: connect refused by the client: {e}"));
        }
        self.pump();
        conn
    }

    /// Connects `cl` on a new transport and returns (session present, CONNACK properties);
    /// fails if the server refuses.
    pub(crate) fn connect(&mut self, cl: Cl) -> (bool, ConnAckProperties) {
        match self.try_connect(cl) {
            Ok(r) => r,
            Err(reason) => self.fail(&format!("{cl:?} was refused: {reason:?}")),
        }
    }

    /// Connects `cl` on a new transport: `Ok` with (session present, CONNACK properties), or the
    /// reason the connection ended.
    pub(crate) fn try_connect(&mut self, cl: Cl) -> Result<(bool, ConnAckProperties), CloseReason> {
        self.open(cl);
        self.wait_connack(cl)
    }

    /// Runs until `cl`'s connection attempt ends: accepted, or closed.
    pub(crate) fn wait_connack(
        &mut self,
        cl: Cl,
    ) -> Result<(bool, ConnAckProperties), CloseReason> {
        let base = self.nodes[cl.0].open_base;
        let f = |e: &Event| match e {
            Event::Connected {
                session_present,
                properties,
            }
            | Event::Reconnected {
                session_present,
                properties,
                ..
            } => Some(Ok((*session_present, (**properties).clone()))),
            Event::Disconnected { reason, .. } => Some(Err(reason.clone())),
            _ => None,
        };
        self.run_until_event_from(cl, base, "connack", secs(30), f)
            .1
    }

    /// Subscribes `cl` to `filters` and waits for SUBACK; returns its reason codes.
    pub(crate) fn subscribe(&mut self, cl: Cl, filters: &[(&'static str, QoS)]) -> Vec<ReasonCode> {
        let subs = filters.iter().map(|(f, q)| sub(f, *q)).collect();
        self.subscribe_with(cl, subs, SubscribeProperties::default())
    }

    /// Subscribes `cl` with full options and waits for SUBACK; returns its reason codes.
    pub(crate) fn subscribe_with(
        &mut self,
        cl: Cl,
        subs: Vec<Subscription>,
        properties: SubscribeProperties,
    ) -> Vec<ReasonCode> {
        let now = self.now;
        let id = match self.nodes[cl.0].client.subscribe(now, subs, properties) {
            Ok(id) => id,
            Err(e) => self.fail(&format!("{cl:?}: subscribe refused by the client: {e}")),
        };
        self.pump();
        self.run_until_event(cl, "suback", secs(30), |e| match e {
            Event::Subscribed {
                packet_id,
                reason_codes,
                ..
            } if *packet_id == id => Some(reason_codes.clone()),
            _ => None,
        })
    }

    /// Unsubscribes `cl` from `filters` and waits for UNSUBACK; returns its reason codes
    /// (empty under 3.1.x).
    pub(crate) fn unsubscribe(&mut self, cl: Cl, filters: &[&'static str]) -> Vec<ReasonCode> {
        let now = self.now;
        let filters = filters.iter().map(|f| filter(f)).collect();
        let r = self.nodes[cl.0]
            .client
            .unsubscribe(now, filters, UnsubscribeProperties::default());
        let id = match r {
            Ok(id) => id,
            Err(e) => self.fail(&format!("{cl:?}: unsubscribe refused by the client: {e}")),
        };
        self.pump();
        self.run_until_event(cl, "unsuback", secs(30), |e| match e {
            Event::Unsubscribed {
                packet_id,
                reason_codes,
                ..
            } if *packet_id == id => Some(reason_codes.clone()),
            _ => None,
        })
    }

    /// `cl` publishes `p`; returns its packet identifier (QoS 1/2). Does not wait.
    pub(crate) fn publish(&mut self, cl: Cl, p: Publish) -> Option<PacketId> {
        let now = self.now;
        let r = self.nodes[cl.0].client.publish(now, p);
        let id = match r {
            Ok(id) => id,
            Err(e) => self.fail(&format!("{cl:?}: publish refused by the client: {e}")),
        };
        self.pump();
        id
    }

    /// `cl` publishes `p` if the client accepts it now; does not wait.
    pub(crate) fn try_publish(
        &mut self,
        cl: Cl,
        p: Publish,
    ) -> Result<Option<PacketId>, ClientError> {
        let now = self.now;
        let r = self.nodes[cl.0].client.publish(now, p);
        self.pump();
        r
    }

    /// A number in `0..n` from the simulation's seeded generator.
    pub(crate) fn random(&mut self, n: u64) -> u64 {
        self.rng.below(n)
    }

    /// `cl` publishes `p` and the simulation settles.
    pub(crate) fn publish_settled(&mut self, cl: Cl, p: Publish) -> Option<PacketId> {
        let id = self.publish(cl, p);
        self.settle();
        id
    }

    /// `cl` sends DISCONNECT; the simulator then closes its transport.
    pub(crate) fn disconnect(&mut self, cl: Cl, d: Disconnect) {
        let now = self.now;
        if let Err(e) = self.nodes[cl.0].client.disconnect(now, d) {
            self.fail(&format!("{cl:?}: disconnect refused by the client: {e}"));
        }
        self.pump();
    }

    /// Severs `cl`'s transport at once: both sides see it closed, bytes in flight are lost.
    pub(crate) fn sever(&mut self, cl: Cl) {
        let Some(i) = self.current_link(cl.0) else {
            self.fail(&format!("{cl:?} has no transport to sever"));
        };
        let link = self.links.remove(i);
        self.log(format!("sever {cl:?} {:?}", link.conn));
        let now = self.now;
        self.nodes[cl.0].client.handle_transport_closed(now);
        self.broker.handle_transport_closed(now, link.conn);
        self.pump();
    }

    /// Drops every byte `cl` sends from now on (the broker hears nothing more from it).
    pub(crate) fn mute(&mut self, cl: Cl) {
        let Some(i) = self.current_link(cl.0) else {
            self.fail(&format!("{cl:?} has no transport to mute"));
        };
        self.links[i].up.muted = true;
        self.links[i].up.queue.clear();
    }

    /// Drops every byte the broker sends to `cl` from now on.
    pub(crate) fn deafen(&mut self, cl: Cl) {
        let Some(i) = self.current_link(cl.0) else {
            self.fail(&format!("{cl:?} has no transport to deafen"));
        };
        self.links[i].down.muted = true;
        self.links[i].down.queue.clear();
    }

    /// Shuts the broker down.
    pub(crate) fn shutdown(&mut self) {
        let now = self.now;
        self.broker.shutdown(now);
        self.pump();
    }

    // ---- running ------------------------------------------------------------------------

    /// Runs until no byte is in flight and no close is pending, firing the deadlines met on
    /// the way; fails if that takes more than a simulated hour or the step bound.
    pub(crate) fn settle(&mut self) {
        let limit = self.now + secs(3600);
        let mut steps = 0;
        loop {
            self.pump();
            if self
                .links
                .iter()
                .all(|l| l.up.queue.is_empty() && l.down.queue.is_empty())
                && !self.links.iter().any(|l| l.up.closing || l.down.closing)
            {
                return;
            }
            if !self.step(limit) {
                self.fail("the simulation did not settle within an hour");
            }
            steps += 1;
            self.check_steps(steps);
        }
    }

    /// Runs the clock to `at` (since the origin), handling every delivery and deadline at its
    /// exact instant.
    pub(crate) fn run_until(&mut self, at: Duration) {
        let target = self.start + at;
        if target < self.now {
            self.fail(&format!("run_until({at:?}): the clock never goes back"));
        }
        let mut steps = 0;
        loop {
            self.pump();
            if !self.step(target) {
                break;
            }
            steps += 1;
            self.check_steps(steps);
        }
        self.now = target;
        self.pump();
    }

    /// Runs the clock forward by `d`.
    pub(crate) fn run_for(&mut self, d: Duration) {
        let at = self.elapsed() + d;
        self.run_until(at);
    }

    /// Runs until `cl` reports an event `f` accepts (which is taken), at most `max` of
    /// simulated time; fails, with the state, if none comes.
    pub(crate) fn run_until_event<T>(
        &mut self,
        cl: Cl,
        what: &str,
        max: Duration,
        f: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        self.run_until_timed_event(cl, what, max, f).1
    }

    /// [`Sim::run_until_event`], with the time the event came (since the origin).
    pub(crate) fn run_until_timed_event<T>(
        &mut self,
        cl: Cl,
        what: &str,
        max: Duration,
        f: impl FnMut(&Event) -> Option<T>,
    ) -> (Duration, T) {
        self.run_until_event_from(cl, 0, what, max, f)
    }

    /// [`Sim::run_until_timed_event`] looking only at events from index `base` of the pending
    /// ones (those that came after some point).
    fn run_until_event_from<T>(
        &mut self,
        cl: Cl,
        base: usize,
        what: &str,
        max: Duration,
        mut f: impl FnMut(&Event) -> Option<T>,
    ) -> (Duration, T) {
        let limit = self.now + max;
        let mut steps = 0;
        loop {
            self.pump();
            if let Some(t) = self.take_event_from(cl, base, &mut f) {
                return t;
            }
            if !self.step(limit) {
                self.fail(&format!(
                    "{cl:?}: no {what} event within {max:?}; pending events: {:#?}",
                    self.nodes[cl.0].events
                ));
            }
            steps += 1;
            self.check_steps(steps);
        }
    }

    /// One step: one delivery or one round of deadlines at or before `limit`. False when
    /// nothing is left to do before `limit`.
    fn step(&mut self, limit: Instant) -> bool {
        if let Some((li, up)) = self.next_delivery(self.now) {
            self.deliver(li, up);
            return true;
        }
        if let Some(i) = self.links.iter().position(|l| {
            (l.up.closing && l.up.queue.is_empty()) || (l.down.closing && l.down.queue.is_empty())
        }) {
            self.finish_close(i);
            return true;
        }
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        };
        consider(self.broker.poll_timeout());
        for n in &self.nodes {
            consider(n.client.poll_timeout());
        }
        for l in &self.links {
            consider(l.up.queue.front().map(|c| c.0));
            consider(l.down.queue.front().map(|c| c.0));
        }
        let Some(next) = next else {
            return false;
        };
        if next > limit {
            return false;
        }
        self.now = self.now.max(next);
        let now = self.now;
        let spurious = self.spurious_timeouts;
        if spurious || self.broker.poll_timeout().is_some_and(|t| t <= now) {
            self.broker.handle_timeout(now);
            if self.broker.poll_timeout().is_some_and(|t| t < now) {
                self.fail("broker poll_timeout is in the past after handle_timeout");
            }
        }
        for i in 0..self.nodes.len() {
            let c = &mut self.nodes[i].client;
            if spurious || c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now);
                if c.poll_timeout().is_some_and(|t| t < now) {
                    self.fail(&format!(
                        "client {i} poll_timeout is in the past after handle_timeout"
                    ));
                }
            }
        }
        self.pump();
        true
    }

    fn check_steps(&self, steps: u64) {
        if steps > self.step_limit {
            self.fail(&format!(
                "more than {} steps without settling (a livelock, or a deadline that never \
                 moves past now)",
                self.step_limit
            ));
        }
    }

    /// The earliest chunk deliverable at `now`: (link index, whether it goes up).
    fn next_delivery(&self, now: Instant) -> Option<(usize, bool)> {
        let mut best: Option<(Instant, u64, usize, bool)> = None;
        for (i, l) in self.links.iter().enumerate() {
            for (up, pipe) in [(true, &l.up), (false, &l.down)] {
                if let Some(&(at, seq, _)) = pipe.queue.front() {
                    if at <= now && best.is_none_or(|b| (at, seq) < (b.0, b.1)) {
                        best = Some((at, seq, i, up));
                    }
                }
            }
        }
        best.map(|(_, _, i, up)| (i, up))
    }

    fn deliver(&mut self, li: usize, up: bool) {
        let now = self.now;
        let link = &mut self.links[li];
        let conn = link.conn;
        let node = link.node;
        let pipe = if up { &mut link.up } else { &mut link.down };
        let (_, _, bytes) = pipe.queue.pop_front().expect("a chunk");
        if self.spurious_timeouts {
            // A deadline that is not due must be a no-op.
            self.broker.handle_timeout(now);
            self.nodes[node].client.handle_timeout(now);
        }
        if up {
            self.log(format!("client {node} -> {conn:?}: {:02X?}", &bytes[..]));
            self.broker.handle_input(now, conn, &bytes);
        } else {
            self.log(format!("{conn:?} -> client {node}: {:02X?}", &bytes[..]));
            self.nodes[node].client.handle_input(now, &bytes);
        }
        self.pump();
    }

    /// A pipe drained after its sender closed: tell the receiver, forget the link.
    fn finish_close(&mut self, i: usize) {
        let link = self.links.remove(i);
        let now = self.now;
        if link.up.closing && link.up.queue.is_empty() && !link.down.closing {
            // The client closed its end: the broker reads the end of the stream.
            self.log(format!("{:?} closed by client {}", link.conn, link.node));
            self.broker.handle_transport_closed(now, link.conn);
        } else if link.down.closing && link.down.queue.is_empty() && !link.up.closing {
            // The broker closed its end: the client reads the end of the stream.
            self.log(format!("{:?} closed by the broker", link.conn));
            self.nodes[link.node].client.handle_transport_closed(now);
        } else {
            self.log(format!("{:?} closed by both sides", link.conn));
        }
        self.pump();
    }

    /// The link `node` sends on: the newest one its client has not closed.
    fn current_link(&self, node: usize) -> Option<usize> {
        self.links
            .iter()
            .rposition(|l| l.node == node && !l.up.closing)
    }

    fn link_of_conn(&self, conn: ConnId) -> Option<usize> {
        self.links.iter().position(|l| l.conn == conn)
    }

    /// Cuts `bytes` into seeded chunks and queues them on a pipe.
    fn enqueue(&mut self, li: usize, up: bool, bytes: Bytes) {
        let deliver_at = self.now + self.latency;
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = if self.max_chunk <= 1 {
                1
            } else {
                1 + self.rng.below(self.max_chunk as u64) as usize
            };
            let chunk = rest.split_to(n.min(rest.len()));
            self.seq += 1;
            let seq = self.seq;
            let pipe = if up {
                &mut self.links[li].up
            } else {
                &mut self.links[li].down
            };
            if pipe.muted || pipe.closing {
                return;
            }
            // Never overtake what is already in flight on this pipe.
            let at = pipe
                .queue
                .back()
                .map_or(deliver_at, |b| b.0.max(deliver_at));
            pipe.queue.push_back((at, seq, chunk));
        }
    }

    /// Drains every party's outputs in the documented order (transmit, timeout, events)
    /// until nothing moves, routing bytes and acting on closes and reconnects.
    pub(crate) fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            while let Some((conn, bytes)) = self.broker.poll_transmit() {
                moved = true;
                if bytes.is_empty() {
                    self.fail(&format!(
                        "broker poll_transmit yielded no bytes for {conn:?}"
                    ));
                }
                match self.link_of_conn(conn) {
                    Some(li) if !self.links[li].down.closing && !self.links[li].up.closing => {
                        self.enqueue(li, false, bytes)
                    }
                    _ => self.log(format!(
                        "broker wrote {} bytes to closed {conn:?}",
                        bytes.len()
                    )),
                }
            }
            let _ = self.broker.poll_timeout();
            while let Some(e) = self.broker.poll_event() {
                moved = true;
                self.log(format!("broker event {e:?}"));
                if let BrokerEvent::CloseTransport(conn) = &e {
                    if let Some(li) = self.link_of_conn(*conn) {
                        let l = &mut self.links[li];
                        l.down.closing = true;
                        // The broker reads no more from this socket.
                        l.up.queue.clear();
                        l.up.muted = true;
                    }
                }
                let at = self.elapsed();
                self.broker_events.push((at, e));
            }
            for n in 0..self.nodes.len() {
                while let Some(bytes) = self.nodes[n].client.poll_transmit() {
                    moved = true;
                    if bytes.is_empty() {
                        self.fail(&format!("client {n} poll_transmit yielded no bytes"));
                    }
                    match self.current_link(n) {
                        Some(li) => self.enqueue(li, true, bytes),
                        None => self.log(format!(
                            "client {n} wrote {} bytes with no transport",
                            bytes.len()
                        )),
                    }
                }
                let _ = self.nodes[n].client.poll_timeout();
                while let Some(e) = self.nodes[n].client.poll_event() {
                    moved = true;
                    self.log(format!("client {n} event {}", events::short(&e)));
                    match &e {
                        Event::Disconnected { .. } => {
                            // Send what was written, then close the transport.
                            if let Some(li) = self.current_link(n) {
                                let l = &mut self.links[li];
                                l.up.closing = true;
                                // The client reads no more from this socket.
                                l.down.queue.clear();
                                l.down.muted = true;
                            }
                        }
                        Event::ReconnectDue if self.nodes[n].auto_reconnect => {
                            let at = self.elapsed();
                            self.nodes[n].events.push((at, e));
                            self.open(Cl(n));
                            continue;
                        }
                        _ => {}
                    }
                    let at = self.elapsed();
                    self.nodes[n].events.push((at, e));
                }
            }
            if !moved {
                return;
            }
        }
        self.fail("outputs never stopped coming");
    }
}
