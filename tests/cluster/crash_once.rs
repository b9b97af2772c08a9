//! QoS 2 exactly once across a node's crash: node B (with persistence) routes and stores
//! messages from A but its acknowledgements never reach JetStream (a proxy between B and
//! NATS swallows what B sends from then on), and B is killed with SIGKILL. Restarted on
//! its store, B gets those messages again from JetStream; its persistent QoS 2 subscriber
//! must get each acknowledged message once: none missing, none twice.

// Real processes run on real time.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::nats::NatsServer;
use crate::node::{assert_each_once, collect, settle, Node};
use crate::peers::{line_buffered, mosquitto_pub, Peer};

/// Messages before the cut, and after it (routed and stored by B, never acknowledged).
const BEFORE: usize = 5;
const AFTER: usize = 10;

/// A loopback TCP proxy to NATS whose client-to-server direction can be cut: what the
/// client sends on a connection made before the cut is read and dropped.
struct Proxy {
    port: u16,
    cuts: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        let port = listener.local_addr().expect("proxy address").port();
        let cuts: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let all = cuts.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let cut = Arc::new(AtomicBool::new(false));
                all.lock().unwrap().push(cut.clone());
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pipe(server, client, None));
                std::thread::spawn(move || pipe(c2, s2, Some(cut)));
            }
        });
        Proxy { port, cuts }
    }

    /// From now on, what clients already connected send is dropped.
    fn cut(&self) {
        for c in self.cuts.lock().unwrap().iter() {
            c.store(true, Ordering::SeqCst);
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// Copies `from` into `to` until either ends; once `cut` is set, reads and drops.
fn pipe(mut from: TcpStream, mut to: TcpStream, cut: Option<Arc<AtomicBool>>) {
    let mut buf = [0; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if cut.as_ref().is_some_and(|c| c.load(Ordering::SeqCst)) {
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// B's persistent QoS 2 subscriber (clean session 0).
fn subscriber(port: u16) -> Peer {
    let port = port.to_string();
    line_buffered(
        "mosquitto_sub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "once/#",
            "-q",
            "2",
            "-c",
            "-i",
            "cluster-once-sub",
            "-d",
            "-F",
            "MSG %r %q %t %p",
        ],
    )
}

#[test]
fn a_persistent_qos2_subscriber_gets_each_message_once_though_its_node_died_unacknowledged() {
    let nats = NatsServer::start();
    let proxy = Proxy::start(nats.port());
    let a = Node::start(&nats, "crash-once", "a", "");
    let dir = crate::peers::scratch("cluster", "crash-once-b");
    let store = "persistence = \"data\"";
    let b = Node::start_in(proxy.url(), dir, "b", store, crate::peers::free_port());
    let sub = subscriber(b.port);
    sub.line_where(|l| l.contains("SUBACK"));
    settle(&a, "once/probe", &[&sub]);

    let mut got = BTreeMap::new();
    let publish = |i: usize| {
        mosquitto_pub(a.port, &["-t", "once/x", "-m", &format!("m{i}"), "-q", "2"]);
    };
    (0..BEFORE).for_each(publish);
    collect(&sub, Duration::from_millis(500), &mut got);
    // B still routes, stores and delivers what JetStream hands it; its acknowledgements
    // are lost.
    proxy.cut();
    (BEFORE..BEFORE + AFTER).for_each(publish);
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < BEFORE + AFTER && Instant::now() < deadline {
        collect(&sub, Duration::from_millis(300), &mut got);
    }
    // B routed and delivered them all (the crash comes after the store, before JetStream).
    assert_eq!(got.len(), BEFORE + AFTER, "before the crash: {got:?}");
    let (dir, port) = b.kill();
    drop(sub);

    let b = Node::start_in(nats.url(), dir, "b", store, port);
    let sub = subscriber(b.port);
    // JetStream delivers the unacknowledged messages again after the ack wait (5 s).
    let deadline = Instant::now() + Duration::from_secs(12);
    while Instant::now() < deadline {
        collect(&sub, Duration::from_millis(300), &mut got);
    }
    assert_each_once(&got, BEFORE + AFTER);
    drop(b);
}
