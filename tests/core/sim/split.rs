//! The broker's split API driven without the `Broker` facade: one `Router` and its
//! `ServerConnection`s exchanging only opaque mail, relayed through per-connection queues the
//! way a runtime's channels carry it (connections in their own tasks, the router in another).

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::BytesMut;
use tinymqtt::broker::{
    BrokerConfig, BrokerEvent, ConnId, ConnectionMail, Router, RouterMail, ServerConnection,
};
use tinymqtt::codec::{Connect, Decoder, Encoder, Packet, Subscribe, Subscription};
use tinymqtt::{ByteStr, ProtocolVersion, QoS, ReasonCode, TopicFilter};

use crate::support::{pid, t0};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// A router and its connections, each connection with the inbox a runtime would give it.
pub(crate) struct Split {
    pub(crate) now: Instant,
    pub(crate) router: Router,
    pub(crate) conns: HashMap<ConnId, ServerConnection>,
    /// Mail on its way to each connection (a runtime's per-connection channel).
    pub(crate) inboxes: HashMap<ConnId, VecDeque<ConnectionMail>>,
    /// Connections whose inbox is "full": their mail goes back to the router.
    pub(crate) full: Vec<ConnId>,
    /// Connections whose task is busy: their mail waits in their inbox.
    pub(crate) parked: Vec<ConnId>,
    /// Bytes each connection wrote, not decoded yet.
    pub(crate) wire: HashMap<ConnId, BytesMut>,
    pub(crate) events: Vec<BrokerEvent>,
}

impl Split {
    pub(crate) fn new(config: BrokerConfig) -> Split {
        let now = t0();
        Split {
            now,
            router: Router::new(config),
            conns: HashMap::new(),
            inboxes: HashMap::new(),
            full: Vec::new(),
            parked: Vec::new(),
            wire: HashMap::new(),
            events: Vec::new(),
        }
    }

    pub(crate) fn accept(&mut self) -> ConnId {
        let c = self.router.accept(self.now);
        let id = c.id();
        self.conns.insert(id, c);
        self.inboxes.insert(id, VecDeque::new());
        id
    }

    /// What a connection task does after an input: write, then batch its mail to the router.
    pub(crate) fn drain_conn(&mut self, id: ConnId) -> Vec<RouterMail> {
        let Some(c) = self.conns.get_mut(&id) else {
            return Vec::new();
        };
        while let Some(b) = c.poll_transmit() {
            self.wire.entry(id).or_default().extend_from_slice(&b);
        }
        let mut batch = Vec::new();
        while let Some(m) = c.poll_mail() {
            assert_eq!(m.conn(), id, "mail is tagged with its connection");
            batch.push(m);
        }
        while let Some(e) = c.poll_event() {
            self.events.push(e);
        }
        if c.is_closed() {
            self.conns.remove(&id);
        }
        batch
    }

    /// What the router task does with a batch: route, then hand each mail to its inbox (or
    /// back to the router when the inbox is full).
    pub(crate) fn route(&mut self, batch: Vec<RouterMail>) {
        for m in batch {
            self.router.handle_mail(self.now, m);
        }
        while let Some(m) = self.router.poll_mail() {
            if self.full.contains(&m.conn()) {
                self.router.handle_undelivered(self.now, m);
            } else if let Some(q) = self.inboxes.get_mut(&m.conn()) {
                q.push_back(m);
            }
        }
    }

    /// Runs every connection's inbox and the router until nothing moves.
    pub(crate) fn settle(&mut self) {
        loop {
            let mut moved = false;
            let ids: Vec<ConnId> = self
                .inboxes
                .keys()
                .copied()
                .filter(|id| !self.parked.contains(id))
                .collect();
            for id in ids {
                let mail: Vec<ConnectionMail> = self
                    .inboxes
                    .get_mut(&id)
                    .map(|q| q.drain(..).collect())
                    .unwrap_or_default();
                for m in mail {
                    moved = true;
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.handle_mail(self.now, m);
                    }
                }
                let batch = self.drain_conn(id);
                moved |= !batch.is_empty();
                self.route(batch);
            }
            if !moved {
                return;
            }
        }
    }

    pub(crate) fn send(&mut self, id: ConnId, packet: impl Into<Packet>) {
        let mut buf = BytesMut::new();
        Encoder::new(V5)
            .encode(&packet.into(), &mut buf)
            .expect("encodable");
        self.conns
            .get_mut(&id)
            .expect("open connection")
            .handle_input(self.now, &buf);
        let batch = self.drain_conn(id);
        self.route(batch);
        self.settle();
    }

    pub(crate) fn transport_closed(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.handle_transport_closed(self.now);
        }
        let batch = self.drain_conn(id);
        self.route(batch);
        self.settle();
    }

    /// Every packet `id` received so far.
    pub(crate) fn received(&mut self, id: ConnId) -> Vec<Packet> {
        let mut out = Vec::new();
        if let Some(buf) = self.wire.get_mut(&id) {
            let d = Decoder::new(V5);
            while let Some(p) = d.decode(buf).expect("the broker sends valid packets") {
                out.push(p);
            }
        }
        out
    }

    pub(crate) fn connect(&mut self, client_id: &'static str, clean: bool) -> ConnId {
        let (id, rest) = self.resume(client_id, clean);
        assert!(rest.is_empty(), "{rest:?}");
        id
    }

    /// Connects; the CONNACK is checked, what follows it is returned.
    pub(crate) fn resume(&mut self, client_id: &'static str, clean: bool) -> (ConnId, Vec<Packet>) {
        let id = self.accept();
        let mut c = Connect::new(V5, ByteStr::from_static(client_id));
        c.clean_start = clean;
        c.properties.session_expiry_interval = Some(if clean { 0 } else { 600 });
        self.send(id, c);
        let mut got = self.received(id).into_iter();
        let ack = got.next();
        assert!(
            matches!(&ack, Some(Packet::ConnAck(a)) if a.reason_code == ReasonCode::Success),
            "{ack:?}"
        );
        (id, got.collect())
    }

    pub(crate) fn subscribe(&mut self, id: ConnId, filter: &'static str, qos: QoS) {
        self.send(
            id,
            Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                properties: Default::default(),
                filters: vec![Subscription::new(TopicFilter::from_static(filter), qos)],
            }),
        );
        let got = self.received(id);
        assert!(matches!(got.as_slice(), [Packet::SubAck(_)]), "{got:?}");
    }
}
