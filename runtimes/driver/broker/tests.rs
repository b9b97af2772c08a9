use std::cell::RefCell;
use std::rc::Rc;

use bytes::BytesMut;

use super::*;
use crate::broker::{Broker, BrokerConfig};
use crate::codec::{encode, Connect, Packet, Publish, Subscribe, Subscription};
use crate::runtimes::driver::connection::drain_connection;
use crate::runtimes::driver::mailbox::Queued;
use crate::{ByteStr, PacketId, ProtocolVersion, QoS, TopicFilter, TopicName};

/// Every batch pushed, with its connection, in push order.
type Log = Rc<RefCell<Vec<(ConnId, Vec<ConnectionMail>)>>>;

struct Recorder {
    conn: ConnId,
    log: Log,
    queued: Queued,
}

impl MailQueue for Recorder {
    fn queued(&self) -> &Queued {
        &self.queued
    }

    fn try_push(&self, batch: Vec<ConnectionMail>) -> Result<(), Vec<ConnectionMail>> {
        self.log.borrow_mut().push((self.conn, batch));
        Ok(())
    }
    fn abort(&self) {}
    fn shutdown(&self) {}
}

const V: ProtocolVersion = ProtocolVersion::V3_1_1;

fn bytes(p: &Packet) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode(p, V, &mut b).unwrap();
    b.to_vec()
}

/// Feeds `packet` to `conn`, routes its mail and hands every batch back to its connection;
/// returns the connections in the order their batches were pushed.
fn exchange(
    core: &mut RouterCore<Recorder>,
    log: &Log,
    conns: &mut [ServerConnection],
    from: usize,
    packet: &Packet,
    now: Instant,
) -> Vec<ConnId> {
    conns[from].handle_input(now, &bytes(packet));
    let d = drain_connection(&mut conns[from], None);
    let report = Report {
        conn: conns[from].id(),
        mail: d.mail,
        received: 0,
        sent: 0,
        last: false,
    };
    core.take_report(now, report);
    core.flush(now);
    let pushed = std::mem::take(&mut *log.borrow_mut());
    let mut order = Vec::new();
    for (id, batch) in pushed {
        order.push(id);
        let c = conns.iter_mut().find(|c| c.id() == id).unwrap();
        for m in batch {
            c.handle_mail(now, m);
        }
    }
    order
}

/// The first byte of every packet `conn` transmits now (its type and flags).
fn sent_kinds(conn: &mut ServerConnection) -> Vec<u8> {
    std::iter::from_fn(|| conn.poll_transmit())
        .map(|b| b[0] >> 4)
        .collect()
}

fn publish_order(last_woken_first: bool) -> (Vec<ConnId>, ConnId, ConnId) {
    let now = crate::runtimes::driver::now();
    let config = BrokerConfig::default().with_sys_interval(None);
    let router = Broker::new(config).into_router(now);
    let log: Log = Rc::default();
    let options = BrokerOptions::default();
    let mut core = RouterCore::new(router, &options, None, last_woken_first);
    let mut conns = vec![core.accept(now), core.accept(now)];
    for c in &conns {
        let queue = Recorder {
            conn: c.id(),
            log: log.clone(),
            queued: Queued::default(),
        };
        core.register(c.id(), Mailbox::new(queue));
    }
    for (i, id) in ["sub", "pub"].into_iter().enumerate() {
        let connect = Packet::Connect(Box::new(Connect::new(V, ByteStr::from_static(id))));
        exchange(&mut core, &log, &mut conns, i, &connect, now);
        assert_eq!(sent_kinds(&mut conns[i]), [2], "CONNACK");
    }
    let subscribe = Packet::Subscribe(Subscribe {
        packet_id: PacketId::MIN,
        properties: Default::default(),
        filters: vec![Subscription::new(
            TopicFilter::new("t").unwrap(),
            QoS::AtLeastOnce,
        )],
    });
    exchange(&mut core, &log, &mut conns, 0, &subscribe, now);
    assert_eq!(sent_kinds(&mut conns[0]), [9], "SUBACK");
    let mut p = Publish::new(TopicName::new("t").unwrap(), "m");
    p.qos = QoS::AtLeastOnce;
    p.packet_id = Some(PacketId::MIN);
    let order = exchange(&mut core, &log, &mut conns, 1, &Packet::Publish(p), now);
    assert_eq!(sent_kinds(&mut conns[0]), [3], "the delivery");
    assert_eq!(sent_kinds(&mut conns[1]), [4], "the PUBACK");
    (order, conns[0].id(), conns[1].id())
}

#[test]
fn assigned_ids_draw_fresh_random_bits_across_refills_of_the_pool() {
    let mut pool = RandomPool::new();
    let drawn: Vec<u128> = (0..3 * RANDOM_POOL).map(|_| pool.next()).collect();
    let distinct: std::collections::HashSet<&u128> = drawn.iter().collect();
    assert_eq!(distinct.len(), drawn.len(), "no value is handed out twice");
    assert!(drawn.iter().all(|&b| b != 0));
}

#[test]
fn deliveries_are_woken_to_run_before_the_acknowledgements_they_released() {
    // Threads and FIFO executors: in mail order, the subscriber first.
    let (order, sub, publisher) = publish_order(false);
    assert_eq!(order, [sub, publisher]);
    // tokio runs the task woken last first: the subscriber is woken last.
    let (order, sub, publisher) = publish_order(true);
    assert_eq!(order, [publisher, sub]);
}
