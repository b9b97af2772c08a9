//! Sessions and retained messages across the nodes of a cluster: a real `nats-server -js`,
//! three `examples/broker` nodes on loopback, mosquitto_pub/sub and raw MQTT clients.
//!
//! Each test starts its own NATS server and nodes, and every wait has a deadline.

// Real processes on real time: these tests read the clock and sleep.
#![allow(clippy::disallowed_methods)]

#[path = "support/interop.rs"]
mod interop;
#[path = "support/nats.rs"]
mod nats;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use interop::{example, free_port, run, wait_for_port, Peer};
use nats::NatsServer;
use tinymqtt::codec::{encode, ConnAck, Connect, Decoder, Packet, PubAck, Subscribe, Subscription};
use tinymqtt::{ByteStr, PacketId, ProtocolVersion, QoS, ReasonCode, TopicFilter};

/// The longest wait for something to cross the cluster.
const SETTLE: Duration = Duration::from_secs(8);

/// A cluster node: the example broker with `--cluster-nats` and `--cluster-node`.
struct Node {
    port: u16,
    _peer: Peer,
}

impl Node {
    fn start(nats: &NatsServer, id: &str) -> Node {
        let port = free_port();
        let p = port.to_string();
        let url = nats.url();
        let peer = Peer::spawn(
            &example("broker"),
            &[
                "--host",
                "127.0.0.1",
                "--port",
                &p,
                "--cluster-nats",
                &url,
                "--cluster-node",
                id,
                "--log-level",
                "warn",
            ],
        );
        wait_for_port(port);
        Node { port, _peer: peer }
    }
}

/// Three nodes `a`, `b`, `c` on one NATS server.
fn cluster() -> (NatsServer, [Node; 3]) {
    let nats = NatsServer::start();
    let nodes = ["a", "b", "c"].map(|id| Node::start(&nats, id));
    (nats, nodes)
}

/// The messages `mosquitto_sub` reads on `filter` at `port` within a second (retained ones
/// first), one line each.
fn read_once(port: u16, filter: &str) -> Vec<String> {
    let p = port.to_string();
    let (_, out) = run(
        "mosquitto_sub",
        &["-h", "127.0.0.1", "-p", &p, "-t", filter, "-W", "1", "-v"],
    );
    out.lines()
        .filter(|l| !l.starts_with("stderr:") && !l.contains("Timed out"))
        .map(str::to_owned)
        .collect()
}

/// Reads `filter` at `port` until `done` holds for what a new subscription gets.
fn read_until(port: u16, filter: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let got = read_once(port, filter);
        if done(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "still {got:?} after {SETTLE:?}");
    }
}

fn mosquitto_pub(port: u16, args: &[&str]) {
    let p = port.to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &p, "-q", "1"];
    all.extend_from_slice(args);
    interop::run_ok("mosquitto_pub", &all);
}

#[test]
fn a_retained_message_set_on_one_node_is_read_on_another_and_its_clear_too() {
    let nats = NatsServer::start();
    let a = Node::start(&nats, "a");
    let b = Node::start(&nats, "b");
    mosquitto_pub(a.port, &["-t", "state/lamp", "-m", "on", "-r"]);
    // Read on a node started after the message was retained: it watches the bucket from
    // its start.
    let c = Node::start(&nats, "c");
    let got = read_until(c.port, "state/#", |got| !got.is_empty());
    assert_eq!(got, ["state/lamp on"]);
    assert_eq!(read_until(b.port, "state/#", |g| !g.is_empty()), got);
    // Replaced on C, read on A.
    mosquitto_pub(c.port, &["-t", "state/lamp", "-m", "off", "-r"]);
    read_until(a.port, "state/#", |g| g == ["state/lamp off"]);
    // Cleared on A: gone on C.
    mosquitto_pub(a.port, &["-t", "state/lamp", "-n", "-r"]);
    read_until(c.port, "state/#", |g| g.is_empty());
    read_until(b.port, "state/#", |g| g.is_empty());
}

/// A raw MQTT connection (the codec over a blocking socket), for exact CONNACKs and
/// DISCONNECTs.
struct Raw {
    stream: TcpStream,
    rx: BytesMut,
    v: ProtocolVersion,
}

/// What reading a packet found instead of one.
#[derive(Debug, PartialEq)]
enum Nothing {
    TimedOut,
    Closed,
}

impl Raw {
    /// Connects `id` to `port` with a persistent session (MQTT 5: expiry 300 s).
    fn connect(port: u16, v: ProtocolVersion, id: &str) -> (Raw, ConnAck) {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let mut raw = Raw {
            stream,
            rx: BytesMut::new(),
            v,
        };
        let mut c = Connect::new(v, ByteStr::try_from(id.to_owned()).unwrap());
        c.clean_start = false;
        if v == ProtocolVersion::V5 {
            c.properties.session_expiry_interval = Some(300);
        }
        raw.send(Packet::Connect(Box::new(c)));
        match raw.recv(SETTLE) {
            Ok(Packet::ConnAck(ack)) => (raw, *ack),
            other => panic!("expected CONNACK for {id}, got {other:?}"),
        }
    }

    fn send(&mut self, p: Packet) {
        let mut b = BytesMut::new();
        encode(&p, self.v, &mut b).expect("encode");
        self.stream.write_all(&b).expect("write");
    }

    fn recv(&mut self, wait: Duration) -> Result<Packet, Nothing> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(p) = Decoder::new(self.v)
                .decode(&mut self.rx)
                .expect("valid packet")
            {
                return Ok(p);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Nothing::TimedOut);
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut buf = [0; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(Nothing::Closed),
                Ok(n) => self.rx.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return Err(Nothing::Closed),
            }
        }
    }

    fn subscribe(&mut self, filter: &str) {
        self.send(Packet::Subscribe(Subscribe {
            packet_id: PacketId::MIN,
            properties: Default::default(),
            filters: vec![Subscription::new(
                TopicFilter::new(filter).unwrap(),
                QoS::AtLeastOnce,
            )],
        }));
        assert!(matches!(self.recv(SETTLE), Ok(Packet::SubAck(_))));
    }

    /// Whether the broker still answers a PINGREQ on this connection.
    fn alive(&mut self) -> bool {
        self.send_quiet(Packet::PingReq);
        loop {
            match self.recv(Duration::from_secs(2)) {
                Ok(Packet::PingResp) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }

    /// Sends, ignoring a connection the broker closed already.
    fn send_quiet(&mut self, p: Packet) {
        let mut b = BytesMut::new();
        encode(&p, self.v, &mut b).expect("encode");
        let _ = self.stream.write_all(&b);
    }

    /// The payloads of the next `n` PUBLISHes, each acknowledged.
    fn messages(&mut self, n: usize) -> Vec<String> {
        let mut got = Vec::new();
        while got.len() < n {
            match self.recv(SETTLE) {
                Ok(Packet::Publish(p)) => {
                    if let Some(id) = p.packet_id {
                        self.send(Packet::PubAck(PubAck::new(id)));
                    }
                    got.push(String::from_utf8_lossy(&p.payload).into_owned());
                }
                Ok(_) => {}
                Err(e) => panic!("{e:?} after {got:?}"),
            }
        }
        got
    }
}

/// Waits until `port` has routed `n` messages on `filter` to a probe subscription (so a
/// session there has them queued too).
fn probe(port: u16, filter: &str) -> Raw {
    let (mut probe, _) = Raw::connect(port, ProtocolVersion::V5, &format!("probe-{port}"));
    probe.subscribe(filter);
    probe
}

#[test]
fn a_persistent_session_moves_from_b_to_c_with_the_messages_queued_for_it() {
    let (_nats, [a, b, c]) = cluster();
    let v = ProtocolVersion::V3_1_1;
    let (mut mover, ack) = Raw::connect(b.port, v, "mover");
    assert!(!ack.session_present);
    mover.subscribe("jobs/#");
    mover.send(Packet::Disconnect(Default::default()));
    drop(mover);
    let mut seen = probe(b.port, "jobs/#");
    for m in ["j1", "j2", "j3"] {
        mosquitto_pub(a.port, &["-t", "jobs/x", "-m", m]);
    }
    assert_eq!(
        seen.messages(3),
        ["j1", "j2", "j3"],
        "the messages reached B"
    );
    // Published on B itself: half a megabyte each, so that the session's image is larger
    // than the NATS server's largest message (1 MB) and travels in pieces.
    let big: Vec<String> = ["x", "y", "z"].map(|c| c.repeat(500_000)).into();
    let (mut publisher, _) = Raw::connect(b.port, ProtocolVersion::V5, "big-publisher");
    for (i, payload) in big.iter().enumerate() {
        let mut p = tinymqtt::codec::Publish::new(
            tinymqtt::TopicName::new("jobs/big").unwrap(),
            payload.clone(),
        );
        p.qos = QoS::AtLeastOnce;
        p.packet_id = PacketId::new(i as u16 + 1);
        publisher.send(Packet::Publish(p));
        assert!(matches!(publisher.recv(SETTLE), Ok(Packet::PubAck(_))));
    }
    assert!(
        seen.messages(3) == big,
        "the large messages reached the probe"
    );

    // [MQTT-3.2.2-2]: reconnected to C, the session is present with its queue, in order.
    let (mut mover, ack) = Raw::connect(c.port, v, "mover");
    assert!(ack.session_present, "session present on C");
    assert_eq!(mover.messages(3), ["j1", "j2", "j3"]);
    assert!(
        mover.messages(3) == big,
        "the large messages arrived whole, in order"
    );
    // Its subscription lives on C now: a new message reaches it there.
    mosquitto_pub(a.port, &["-t", "jobs/y", "-m", "j4"]);
    assert_eq!(mover.messages(1), ["j4"]);
}

#[test]
fn a_client_online_on_b_that_connects_on_c_is_taken_over_with_0x8e() {
    let (_nats, [_a, b, c]) = cluster();
    let v = ProtocolVersion::V5;
    let (mut first, _) = Raw::connect(b.port, v, "twice");
    first.subscribe("t/#");
    let (mut second, ack) = Raw::connect(c.port, v, "twice");
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert!(ack.session_present, "the session came over from B");
    // [MQTT-3.1.4-3]: the existing connection is closed, with 0x8E on MQTT 5.
    match first.recv(SETTLE) {
        Ok(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::SessionTakenOver),
        other => panic!("expected DISCONNECT 0x8E on B, got {other:?}"),
    }
    assert_eq!(first.recv(SETTLE), Err(Nothing::Closed));
    assert!(second.alive());
}

/// The node the sessions bucket names as the owner of `client_id`.
fn owner(nats: &NatsServer, client_id: &str) -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = nats.url();
    let key = format!("c.{client_id}");
    rt.block_on(async move {
        let client = async_nats::connect(url).await.ok()?;
        let js = async_nats::jetstream::new(client);
        let kv = js.get_key_value("tinymqtt_sessions").await.ok()?;
        let value = kv.get(key).await.ok()??;
        let text = String::from_utf8(value.to_vec()).ok()?;
        Some(text.split('\n').next()?.to_owned())
    })
}

#[test]
fn two_connects_at_once_on_two_nodes_leave_one_owner_and_one_client_online() {
    let (nats, [_a, b, c]) = cluster();
    let v = ProtocolVersion::V5;
    for round in 0..3 {
        let id = format!("racer{round}");
        let ports = [b.port, c.port];
        let racers: Vec<_> = ports
            .into_iter()
            .map(|port| {
                let id = id.clone();
                std::thread::spawn(move || {
                    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    let mut raw = Raw {
                        stream,
                        rx: BytesMut::new(),
                        v,
                    };
                    let mut connect = Connect::new(v, ByteStr::try_from(id).unwrap());
                    connect.clean_start = false;
                    connect.properties.session_expiry_interval = Some(300);
                    raw.send(Packet::Connect(Box::new(connect)));
                    let ack = raw.recv(SETTLE);
                    (raw, ack)
                })
            })
            .collect();
        // Both answered first: a takeover closes the loser before the winner's CONNACK.
        let answers: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        let mut online = Vec::new();
        for (i, (mut raw, ack)) in answers.into_iter().enumerate() {
            // Refused (busy, unavailable) or closed: never online.
            let accepted =
                matches!(&ack, Ok(Packet::ConnAck(a)) if a.reason_code == ReasonCode::Success);
            if accepted && raw.alive() {
                online.push(["b", "c"][i]);
            }
        }
        assert_eq!(online.len(), 1, "round {round}: online on {online:?}");
        assert_eq!(
            owner(&nats, &id).as_deref(),
            Some(online[0]),
            "round {round}: the bucket names another owner"
        );
    }
}

#[test]
fn a_session_that_ends_leaves_no_owner_behind() {
    let (nats, [_a, b, _c]) = cluster();
    let v = ProtocolVersion::V5;
    let stream = TcpStream::connect(("127.0.0.1", b.port)).unwrap();
    let mut raw = Raw {
        stream,
        rx: BytesMut::new(),
        v,
    };
    // Clean start, expiry 0: the session ends with the connection.
    raw.send(Packet::Connect(Box::new(Connect::new(
        v,
        ByteStr::from_static("passing"),
    ))));
    assert!(matches!(raw.recv(SETTLE), Ok(Packet::ConnAck(_))));
    assert_eq!(owner(&nats, "passing").as_deref(), Some("b"));
    raw.send(Packet::Disconnect(Default::default()));
    let deadline = Instant::now() + SETTLE;
    while owner(&nats, "passing").is_some() {
        assert!(
            Instant::now() < deadline,
            "the owner entry outlived the session"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `f` with a NATS client of its own (the tests' blocking side drives it).
fn with_nats<T>(nats: &NatsServer, f: impl AsyncFnOnce(async_nats::Client) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = nats.url();
    rt.block_on(async move {
        let client = async_nats::connect(url).await.expect("a NATS client");
        f(client).await
    })
}

/// A fake node `z` that answers every export request with a piece of garbage, until the
/// returned sender is dropped.
fn garbage_node(nats: &NatsServer) -> std::sync::mpsc::Sender<()> {
    use futures_util::StreamExt;
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let (ready, is_ready) = std::sync::mpsc::channel();
    let url = nats.url();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let client = async_nats::connect(url).await.expect("a NATS client");
            let mut requests = client.subscribe("tinymqtt.node.z.export").await.unwrap();
            client.flush().await.unwrap();
            ready.send(()).unwrap();
            loop {
                let next = tokio::time::timeout(Duration::from_millis(100), requests.next());
                match next.await {
                    Ok(Some(m)) => {
                        if let Some(reply) = m.reply {
                            let mut h = async_nats::HeaderMap::new();
                            h.insert("Tinymqtt-Piece", "0/1");
                            let garbage = vec![0xc1, 0, 0, 0];
                            let _ = client.publish_with_headers(reply, h, garbage.into()).await;
                            let _ = client.flush().await;
                        }
                    }
                    Ok(None) => return,
                    Err(_) => {}
                }
                if !matches!(
                    stopped.try_recv(),
                    Err(std::sync::mpsc::TryRecvError::Empty)
                ) {
                    return;
                }
            }
        });
    });
    is_ready
        .recv_timeout(SETTLE)
        .expect("the fake node subscribed");
    stop
}

#[test]
fn garbage_in_the_buckets_and_on_the_request_subjects_is_ignored_and_nodes_go_on() {
    let (nats, [a, b, c]) = cluster();
    // A hostile NATS client fills the buckets with garbage: values that are no record, a
    // record under another topic's key, an owner value that names nobody, sessions owned by
    // a node "z" that answers export requests with garbage and by a node "y" that is gone.
    with_nats(&nats, async |client| {
        let js = async_nats::jetstream::new(client.clone());
        let retained = js.get_key_value("tinymqtt_retained").await.unwrap();
        retained.put("t.junk", "not a record".into()).await.unwrap();
        retained.put("t.a=2", "x".into()).await.unwrap();
        let sessions = js.get_key_value("tinymqtt_sessions").await.unwrap();
        sessions.put("c.nobody", "\n\n\n".into()).await.unwrap();
        sessions.put("c.victim", "z\n300".into()).await.unwrap();
        sessions.put("c.ghost", "y\n300".into()).await.unwrap();
        // Node b is asked for a session under a client id that is no MQTT string.
        client
            .publish("tinymqtt.node.b.export", vec![0xff, 0xfe].into())
            .await
            .unwrap();
        client.flush().await.unwrap();
    });
    let z = garbage_node(&nats);
    for id in ["nobody", "victim", "ghost"] {
        let (mut raw, ack) = Raw::connect(c.port, ProtocolVersion::V5, id);
        assert_eq!(ack.reason_code, ReasonCode::Success, "{id}");
        assert!(!ack.session_present, "{id}: nothing came over");
        assert!(raw.alive());
        assert_eq!(owner(&nats, id).as_deref(), Some("c"));
    }
    drop(z);
    // Every node still serves, retained messages included.
    mosquitto_pub(a.port, &["-t", "after/garbage", "-m", "fine", "-r"]);
    for n in [&b, &c] {
        let got = read_until(n.port, "after/#", |g| !g.is_empty());
        assert_eq!(got, ["after/garbage fine"]);
    }
}

#[test]
fn without_nats_a_new_connect_is_refused_with_0x88_and_connected_clients_stay() {
    let nats = NatsServer::start();
    let a = Node::start(&nats, "a");
    let (mut before, ack) = Raw::connect(a.port, ProtocolVersion::V5, "before");
    assert_eq!(ack.reason_code, ReasonCode::Success);
    drop(nats);
    // The claim cannot be made: refused rather than risk a second owner elsewhere.
    let started = Instant::now();
    let (_, ack) = Raw::connect(a.port, ProtocolVersion::V5, "after");
    assert_eq!(ack.reason_code, ReasonCode::ServerUnavailable);
    assert!(
        started.elapsed() < SETTLE,
        "the claim waited {:?}",
        started.elapsed()
    );
    assert!(before.alive(), "a connected client was dropped");
}
