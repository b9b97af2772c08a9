//! Hostile clients against the example broker, on 127.0.0.1: each attack runs against a broker
//! started with a memory budget ([`harness::BUDGET`]) while a well-behaved probe client keeps
//! publishing QoS 1 messages to itself and pinging. Every test asserts that the broker is
//! alive, that its peak resident memory stayed within the budget plus [`harness::SLACK`], that
//! every probe message arrived and every PINGREQ came back within [`harness::PROBE_BOUND`], and
//! that the attacker got the right reason code.
//!
//! `make soak` runs the same attacks bigger (`HOSTILE_SCALE`) and prints, per attack, the
//! broker's peak RSS and the probe's worst round trip (`--nocapture`).
//!
//! `cargo test` builds the examples before it runs this (they need every runtime feature).

#![cfg(all(
    feature = "tokio",
    feature = "smol",
    feature = "async-std",
    feature = "blocking"
))]
// Real processes run on real time: these tests read the clock and sleep.
#![allow(clippy::disallowed_methods)]

#[path = "support/interop.rs"]
mod peers;

#[path = "hostile/harness.rs"]
mod harness;
#[path = "hostile/metrics.rs"]
mod metrics;

use std::time::{Duration, Instant};

use bytes::Bytes;
use harness::{pid, scale, topic, Broker, Conn, Probe, BUDGET, PROBE_BOUND, SLACK};
use tinymqtt::codec::{Packet, Publish, Subscribe, Subscription};
use tinymqtt::{ByteStr, ProtocolVersion, QoS, ReasonCode, TopicFilter};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

/// Runs `attack` against a broker started with `config` while the probe runs; checks the
/// broker and the probe afterwards and prints the figures.
fn under_attack(name: &str, config: &str, attack: impl FnOnce(&Broker)) {
    under_attack_on("tokio", name, config, attack)
}

/// [`under_attack`] with the broker on `runtime`.
fn under_attack_on(runtime: &str, name: &str, config: &str, attack: impl FnOnce(&Broker)) {
    under_attack_within(runtime, name, config, PROBE_BOUND, attack)
}

/// [`under_attack_on`] with another bound on the probe's round trips.
fn under_attack_within(
    runtime: &str,
    name: &str,
    config: &str,
    bound: Duration,
    attack: impl FnOnce(&Broker),
) {
    // One attack at a time: each has the machine's cores to itself, as its figures assume.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let broker = Broker::start_on(runtime, name, config);
    let probe = Probe::start(broker.port);
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    attack(&broker);
    std::thread::sleep(Duration::from_millis(200));
    let report = probe.finish();
    assert!(broker.alive(), "{name}: the broker died");
    let (rss, peak) = broker.rss();
    println!(
        "hostile {name}: {:.1} s, peak RSS {} MiB (now {} MiB), probe worst round trip {} ms \
         over {} pings, {}/{} messages",
        started.elapsed().as_secs_f64(),
        peak >> 20,
        rss >> 20,
        report.worst_ping.as_millis(),
        report.pings,
        report.received,
        report.sent
    );
    assert!(
        peak <= BUDGET + SLACK,
        "{name}: peak RSS {} MiB above the budget {} MiB + slack {} MiB",
        peak >> 20,
        BUDGET >> 20,
        SLACK >> 20
    );
    assert!(report.sent > 0 && report.pings > 0, "{name}: {report:?}");
    assert_eq!(
        report.received, report.sent,
        "{name}: the probe lost messages"
    );
    assert!(
        report.worst_ping <= bound,
        "{name}: a PINGREQ took {:?} (bound {bound:?})",
        report.worst_ping
    );
}

/// A variable byte integer.
fn var_int(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (n % 128) as u8;
        n /= 128;
        out.push(if n > 0 { b | 0x80 } else { b });
        if n == 0 {
            return out;
        }
    }
}

/// Publishes `n` retained QoS 0 messages `retained/i` of `size` bytes.
fn retain(port: u16, n: usize, size: usize) {
    let (mut c, code) = Conn::connect(port, V311, "retainer", true);
    assert_eq!(code, ReasonCode::Success);
    let payload = Bytes::from(vec![b'r'; size]);
    for i in 0..n {
        let mut p = Publish::new(topic(&format!("retained/{i}")), payload.clone());
        p.retain = true;
        c.send(&p.into());
    }
    // A round trip: everything before it was routed.
    c.send(&Packet::PingReq);
    assert_eq!(c.recv(), Some(Packet::PingResp));
    c.close();
}

fn subscribe_packet(id: u16, filters: impl IntoIterator<Item = String>) -> Packet {
    let subs = filters
        .into_iter()
        .map(|f| Subscription::new(TopicFilter::new(&f).unwrap(), QoS::AtMostOnce))
        .collect();
    Packet::Subscribe(Subscribe {
        packet_id: pid(id),
        properties: Default::default(),
        filters: subs,
    })
}

#[test]
fn subscribe_replay_amplification() {
    let stored = 1000 * scale();
    let retained = stored;
    under_attack("subscribe-amplification", "", |b| {
        retain(b.port, stored, 16);
        // 100,000 copies of `#` in one 400 KB SUBSCRIBE: over max_subscribe_filters.
        let mut c = Conn::connect(b.port, V5, "amplifier", true).0;
        c.send(&subscribe_packet(1, (0..100_000).map(|_| "#".to_owned())));
        let (code, closed) = c.closed_within(Duration::from_secs(10));
        assert_eq!(code, Some(ReasonCode::QuotaExceeded));
        assert!(closed);
        // At the limit, repeated filters are merged: each retained message comes once.
        let mut c = Conn::connect(b.port, V5, "amplifier2", true).0;
        c.send(&subscribe_packet(
            1,
            (0..1000).map(|_| "retained/#".to_owned()),
        ));
        let mut got = 0;
        c.stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        while let Some(p) = c.recv() {
            match p {
                Packet::SubAck(a) => assert_eq!(a.reason_codes.len(), 1000),
                Packet::Publish(_) => got += 1,
                p => panic!("unexpected {p:?}"),
            }
            if got == retained {
                break;
            }
        }
        assert_eq!(got, retained, "each retained message once");
    });
}

#[test]
fn subscribe_replay_amplification_without_a_filter_cap() {
    // The measured failure: 1,000 retained messages, then one SUBSCRIBE holding 100,000
    // copies of `#`, here with no cap on filters: merged, each retained message comes once.
    let stored = 1000 * scale();
    let retained = stored;
    let config = "[limits]\nmax_subscribe_filters = 0\n";
    // Without the cap the router takes the 100,000 filters in one turn (about 200 ms in a
    // debug build, on a loaded machine): the probe waits that long at worst.
    let bound = Duration::from_secs(1);
    under_attack_within(
        "tokio",
        "subscribe-amplification-uncapped",
        config,
        bound,
        |b| {
            retain(b.port, stored, 16);
            let mut c = Conn::connect(b.port, V5, "amplifier", true).0;
            c.send(&subscribe_packet(1, (0..100_000).map(|_| "#".to_owned())));
            let (mut got, mut acked) = (0, false);
            c.stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            // Until every retained message came, and half a second more for duplicates (the
            // probe's messages match `#` too, so the stream never falls silent).
            let mut done: Option<Instant> = None;
            let deadline = Instant::now() + Duration::from_secs(20);
            while done.is_none_or(|at| at.elapsed() < Duration::from_millis(500)) {
                assert!(
                    Instant::now() < deadline,
                    "{got} of {retained} retained messages"
                );
                match c.recv() {
                    Some(Packet::SubAck(a)) => {
                        assert_eq!(a.reason_codes.len(), 100_000);
                        acked = true;
                    }
                    Some(Packet::Publish(p)) if p.topic.starts_with("retained/") => got += 1,
                    Some(_) => {}
                    None => break,
                }
                if acked && got >= retained && done.is_none() {
                    done = Some(Instant::now());
                }
            }
            assert!(acked);
            assert_eq!(
                got, retained,
                "each retained message once, not once per filter"
            );
        },
    );
}

#[test]
fn property_inflation() {
    under_attack("property-inflation", "", |b| {
        // Retained QoS 1 messages of ~1 MB of minimal user properties (5 bytes each on the
        // wire, and in memory): the budget refuses them with 0x97 once it is reached, after
        // about as many as its size in MB.
        let mut c = Conn::connect(b.port, V5, "inflater", true).0;
        // The properties are written once: 200,000 user properties with empty strings.
        let props: Vec<u8> = [0x26u8, 0, 0, 0, 0].repeat(200_000);
        let mut refused = 0;
        let total = 40 * scale();
        for i in 0..total {
            let topic = format!("inflate/{i:06}");
            let id = (i % 60_000) as u16 + 1;
            let mut body = Vec::with_capacity(props.len() + 32);
            body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
            body.extend_from_slice(topic.as_bytes());
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&var_int(props.len()));
            body.extend_from_slice(&props);
            body.push(b'x');
            // PUBLISH, QoS 1, retain.
            let mut packet = vec![0x33];
            packet.extend_from_slice(&var_int(body.len()));
            packet.extend_from_slice(&body);
            c.send_raw(&packet).unwrap();
            match c.recv() {
                Some(Packet::PubAck(a)) if a.reason_code == ReasonCode::QuotaExceeded => {
                    refused += 1
                }
                // Accepted; nobody subscribes, so MQTT 5 says 0x10.
                Some(Packet::PubAck(a)) => {
                    assert_eq!(a.reason_code, ReasonCode::NoMatchingSubscribers)
                }
                p => panic!("expected PUBACK, got {p:?}"),
            }
        }
        assert!(refused > 0, "the budget refused none");
        // Weighed at their wire size, not inflated: most of the budget's worth is taken.
        let kept = total - refused;
        println!("property-inflation: {kept} of {total} messages of 1 MB kept");
        assert!(
            kept >= (BUDGET >> 20) as usize / 2,
            "only {kept} messages of 1 MB kept"
        );
    });
}

#[test]
fn retained_flood() {
    let config = "[limits]\nmax_retained_bytes = 4194304\n";
    under_attack("retained-flood", config, |b| {
        let mut c = Conn::connect(b.port, V5, "flooder", true).0;
        let payload = Bytes::from(vec![b'f'; 1024]);
        let mut refused = 0;
        for batch in 0..(100 * scale()) {
            for i in 0..100 {
                let n = batch * 100 + i;
                let mut p = Publish::new(topic(&format!("flood/{n}")), payload.clone());
                p.retain = true;
                p.qos = QoS::AtLeastOnce;
                p.packet_id = Some(pid((n % 60_000) as u16 + 1));
                c.send(&p.into());
            }
            for _ in 0..100 {
                match c.recv() {
                    Some(Packet::PubAck(a)) => {
                        refused += usize::from(a.reason_code == ReasonCode::QuotaExceeded)
                    }
                    p => panic!("expected PUBACK, got {p:?}"),
                }
            }
        }
        assert!(refused > 0, "the retained limit refused none");
    });
}

#[test]
fn retained_count_flood() {
    // Tiny retained messages on ever new topics: beyond the count limit each is refused with
    // 0x97 (neither retained nor routed), however little it weighs.
    let config = "[limits]\nmax_retained_messages = 2000\n";
    under_attack("retained-count-flood", config, |b| {
        let mut c = Conn::connect(b.port, V5, "counter", true).0;
        let total = 3000 * scale();
        let mut refused = 0;
        for batch in 0..total / 100 {
            for i in 0..100 {
                let n = batch * 100 + i;
                let mut p = Publish::new(topic(&format!("count/{n}")), Bytes::from_static(b"c"));
                p.retain = true;
                p.qos = QoS::AtLeastOnce;
                p.packet_id = Some(pid((n % 60_000) as u16 + 1));
                c.send(&p.into());
            }
            for _ in 0..100 {
                match c.recv() {
                    Some(Packet::PubAck(a)) => {
                        refused += usize::from(a.reason_code == ReasonCode::QuotaExceeded)
                    }
                    p => panic!("expected PUBACK, got {p:?}"),
                }
            }
        }
        assert_eq!(
            refused,
            total - 2000,
            "every one beyond the count, and only those"
        );
    });
}

#[test]
fn retained_replay_cut_by_disconnects() {
    // Persistent sessions that subscribe to 2,000 retained messages and drop at once, over
    // and over: what is left of each replay waits in the session's queue, within its limit.
    under_attack("replay-cut", "", |b| {
        retain(b.port, 2000, 1024);
        for i in 0..30 * scale() {
            let id = format!("cutter{}", i % 5);
            let (mut c, code) = Conn::connect(b.port, V5, &id, false);
            assert_eq!(code, ReasonCode::Success);
            c.subscribe(1, &["retained/#"], QoS::AtLeastOnce);
            c.close();
        }
        // A session that comes back gets the rest of its last replay.
        let (mut c, _) = Conn::connect(b.port, V5, "cutter0", false);
        c.stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut got = 0;
        while let Some(Packet::Publish(p)) = c.recv() {
            assert!(p.retain, "{p:?}");
            got += 1;
            if let Some(id) = p.packet_id {
                c.send(&Packet::PubAck(tinymqtt::codec::PubAck::new(id)));
            }
        }
        assert!(got > 0, "the rest of the replay was lost");
        println!("replay-cut: {got} retained messages after the session resumed");
    });
}

#[test]
fn subscription_count_flood() {
    let config = "[limits]\nmax_subscriptions_per_client = 2000\n";
    under_attack("subscription-flood", config, |b| {
        let mut c = Conn::connect(b.port, V5, "subscriber", true).0;
        let mut refused = 0;
        for batch in 0..(30 * scale()) {
            c.send(&subscribe_packet(
                (batch % 60_000) as u16 + 1,
                (0..100).map(|i| format!("s/{batch}/{i}/+/#")),
            ));
            match c.recv() {
                Some(Packet::SubAck(a)) => {
                    refused += a
                        .reason_codes
                        .iter()
                        .filter(|c| **c == ReasonCode::QuotaExceeded)
                        .count()
                }
                p => panic!("expected SUBACK, got {p:?}"),
            }
        }
        assert_eq!(refused, 30 * scale() * 100 - 2000);
    });
}

#[test]
fn session_flood() {
    let config = "[limits]\nmax_sessions = 300\n";
    under_attack("session-flood", config, |b| {
        let mut refused = 0;
        for i in 0..400 * scale() {
            let (c, code) = Conn::connect(b.port, V5, &format!("s{i}"), false);
            match code {
                ReasonCode::Success => {}
                ReasonCode::QuotaExceeded => refused += 1,
                code => panic!("CONNACK {code:?}"),
            }
            c.close();
        }
        // The probe's session and the 299 first flooders' fill the 300 places.
        assert_eq!(refused, 400 * scale() - 299);
    });
}

#[test]
fn slow_reader() {
    let config = "[limits]\nmax_outbound_bytes = 1048576\n";
    under_attack("slow-reader", config, |b| {
        let mut reader = Conn::connect(b.port, V311, "slow", true).0;
        reader.subscribe(1, &["slow/#"], QoS::AtMostOnce).unwrap();
        // Never read again; another client floods it.
        let mut flooder = Conn::connect(b.port, V311, "flooder", true).0;
        let payload = Bytes::from(vec![b's'; 8 << 10]);
        for _ in 0..4000 * scale() {
            flooder.send(&Publish::new(topic("slow/x"), payload.clone()).into());
        }
        flooder.send(&Packet::PingReq);
        assert_eq!(flooder.recv(), Some(Packet::PingResp));
        // The slow reader was closed as too slow: its stream ends.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut chunk = vec![0u8; 1 << 20];
        reader
            .stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        loop {
            use std::io::Read;
            match reader.stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(_) => assert!(Instant::now() < deadline, "the slow reader stays open"),
            }
        }
    });
}

#[test]
fn takeover_of_a_connection_that_stops_reading() {
    for runtime in ["tokio", "blocking"] {
        under_attack_on(
            runtime,
            &format!("blocked-takeover-{runtime}"),
            "",
            blocked_takeover,
        );
    }
}

fn blocked_takeover(b: &Broker) {
    {
        let (mut old, _) = Conn::connect(b.port, V311, "victim", true);
        old.subscribe(1, &["blocked/#"], QoS::AtMostOnce).unwrap();
        let mut flooder = Conn::connect(b.port, V311, "flooder", true).0;
        let payload = Bytes::from(vec![b'b'; 16 << 10]);
        for _ in 0..500 {
            flooder.send(&Publish::new(topic("blocked/x"), payload.clone()).into());
        }
        flooder.send(&Packet::PingReq);
        assert_eq!(flooder.recv(), Some(Packet::PingResp));
        // The old connection's socket is full; a new one with its client id is answered at
        // once.
        let start = Instant::now();
        let (_new, code) = Conn::connect(b.port, V311, "victim", true);
        assert_eq!(code, ReasonCode::Success);
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "CONNACK after {:?}",
            start.elapsed()
        );
        drop(old);
    }
}

#[test]
fn slowloris_before_connect() {
    let config = "[limits]\nconnect_timeout_secs = 1\n";
    under_attack("slowloris", config, |b| {
        let mut conns: Vec<Conn> = (0..200 * scale())
            .map(|_| {
                let mut c = Conn::tcp(b.port, V311);
                let _ = c.send_raw(&[0x10]);
                c
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        for c in &mut conns {
            let (_, closed) = c.closed_within(Duration::from_secs(3));
            assert!(closed, "a silent connection outlived the connect timeout");
        }
    });
}

#[test]
fn oversized_first_packet() {
    under_attack("oversized-first-packet", "", |b| {
        for first in [
            &[0x10u8, 0xFF, 0xFF, 0xFF, 0x7F][..], // a 256 MB CONNECT
            &[0x30, 0xFF, 0xFF, 0x3F],             // a 1 MB PUBLISH first
            &[0x10, 0x80, 0x80, 0x08],             // a CONNECT of 128 KiB
        ] {
            let mut c = Conn::tcp(b.port, V311);
            c.send_raw(first).unwrap();
            let (_, closed) = c.closed_within(Duration::from_secs(2));
            assert!(closed, "{first:02X?} was not refused at once");
        }
    });
}

#[test]
fn qos2_ids_never_released() {
    // Identifiers wait 1 s for their PUBREL: then they are forgotten and their slots free.
    let config = "[limits]\nawait_rel_timeout_secs = 1\n";
    under_attack("qos2-never-released", config, |b| {
        let mut c = Conn::connect(b.port, V5, "hoarder", true).0;
        let mut next = 1u16;
        let mut hoard = |c: &mut Conn, n: u16| {
            for _ in 0..n {
                let mut p = Publish::new(topic("q2/x"), Bytes::from_static(b"2"));
                p.qos = QoS::ExactlyOnce;
                p.packet_id = Some(pid(next));
                next = next % 60_000 + 1;
                c.send(&p.into());
            }
        };
        // The broker's receive maximum is 100: a full window of unreleased identifiers, over
        // and over, each round after the last one's have timed out.
        for round in 0..3 * scale() {
            hoard(&mut c, 100);
            for _ in 0..100 {
                match c.recv() {
                    Some(Packet::PubRec(a)) => assert!(!a.reason_code.is_error(), "{a:?}"),
                    p => panic!("round {round}: expected PUBREC, got {p:?}"),
                }
            }
            std::thread::sleep(Duration::from_millis(1500));
        }
        // Within the timeout the window still holds: the 101st is too many.
        hoard(&mut c, 101);
        let mut recs = 0;
        let code = loop {
            match c.recv() {
                Some(Packet::PubRec(_)) => recs += 1,
                Some(Packet::Disconnect(d)) => break d.reason_code,
                p => panic!("expected PUBREC or DISCONNECT, got {p:?}"),
            }
        };
        assert!(recs <= 100, "{recs} PUBRECs");
        assert_eq!(code, ReasonCode::ReceiveMaximumExceeded);
    });
}

#[test]
fn auth_ping_pong() {
    under_attack("auth-ping-pong", "", |b| {
        for i in 0..200 * scale() {
            let mut c = Conn::tcp(b.port, V5);
            let mut connect =
                tinymqtt::codec::Connect::new(V5, ByteStr::try_from(format!("a{i}")).unwrap());
            connect.properties.authentication_method = Some(ByteStr::try_from("SCRAM").unwrap());
            c.send(&connect.into());
            match c.recv() {
                Some(Packet::ConnAck(a)) => {
                    assert_eq!(a.reason_code, ReasonCode::BadAuthenticationMethod)
                }
                p => panic!("expected CONNACK, got {p:?}"),
            }
            assert!(c.closed_within(Duration::from_secs(2)).1);
        }
    });
}

#[test]
fn connect_disconnect_churn() {
    under_attack("churn", "", |b| {
        // Sessions that expire a second after they end, reconnected over and over: their
        // timers must not pile up.
        for i in 0..2000 * scale() {
            let mut c = Conn::tcp(b.port, V5);
            let mut connect = tinymqtt::codec::Connect::new(
                V5,
                ByteStr::try_from(format!("c{}", i % 50)).unwrap(),
            );
            connect.clean_start = false;
            connect.properties.session_expiry_interval = Some(1);
            c.send(&connect.into());
            match c.recv() {
                Some(Packet::ConnAck(a)) => assert_eq!(a.reason_code, ReasonCode::Success),
                p => panic!("expected CONNACK, got {p:?}"),
            }
            c.send(&Packet::Disconnect(tinymqtt::codec::Disconnect::new(
                ReasonCode::Success,
            )));
            c.close();
        }
    });
}
