//! The hostile suite's harness: the example broker as a process with a memory budget, a
//! well-behaved probe client that keeps publishing and pinging through every attack, raw MQTT
//! connections for the attackers, and the broker's resident memory read from `/proc`.

// Real processes run on real time: this harness may read the clock and sleep.
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tinymqtt::codec::{encode, Connect, Decoder, Packet, PubAck, Publish, Subscribe, Subscription};
use tinymqtt::{ByteStr, PacketId, ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName};

use crate::peers::{example, free_port, wait_for_port, Peer};

/// The memory budget every attacked broker runs with.
pub(crate) const BUDGET: u64 = 32 << 20;

/// What the broker may hold beyond its budget: the process itself (code, runtime, logs) and
/// what is in transit (packets being decoded, socket buffers, mail), which the budget does
/// not count.
pub(crate) const SLACK: u64 = 64 << 20;

/// The longest PINGREQ round trip the probe may see while an attack runs. The broker is a
/// debug build sharing two cores with the attack and the test runner: the worst measured
/// over three runs of the suite on a loaded machine is under 80 ms (release builds answer in
/// a few ms). One attack on a deliberately unsafe setting has its own bound.
pub(crate) const PROBE_BOUND: Duration = Duration::from_millis(250);

/// How much bigger and longer the attacks are: 1 in `make test`, more in `make soak`
/// (`HOSTILE_SCALE`).
pub(crate) fn scale() -> usize {
    std::env::var("HOSTILE_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1usize)
        .max(1)
}

/// The example broker, started with a config file.
pub(crate) struct Broker {
    pub(crate) port: u16,
    peer: Peer,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Broker {
    /// Starts the broker on `runtime` (the example's `--runtime`) with [`BUDGET`] and
    /// `extra` lines of TOML (top-level keys, then an optional `[limits]` table).
    pub(crate) fn start_on(runtime: &str, name: &str, extra: &str) -> Broker {
        let dir =
            std::env::temp_dir().join(format!("tinymqtt-hostile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("broker.toml");
        std::fs::write(&config, format!("memory_limit = {BUDGET}\n{extra}")).unwrap();
        let port = free_port();
        let peer = Peer::spawn(
            &example("broker"),
            &[
                "--port",
                &port.to_string(),
                "--config",
                config.to_str().unwrap(),
                "--log-level",
                "error",
                "--runtime",
                runtime,
            ],
        );
        wait_for_port(port);
        Broker {
            port,
            peer,
            _dir: TempDir(dir),
        }
    }

    /// Resident memory now and at its peak, in bytes (`VmRSS`, `VmHWM`).
    pub(crate) fn rss(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.peer.pid()))
            .expect("the broker is alive");
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
                .map(|k| k * 1024)
                .unwrap_or(0)
        };
        (kb("VmRSS:"), kb("VmHWM:"))
    }

    /// Whether the process still runs and accepts connections.
    pub(crate) fn alive(&self) -> bool {
        std::fs::metadata(format!("/proc/{}", self.peer.pid())).is_ok()
            && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }
}

/// A raw MQTT connection for an attacker (or the probe): packets in, packets out.
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) v: ProtocolVersion,
    buf: BytesMut,
    decoder: Decoder,
}

impl Conn {
    /// A TCP connection, nothing sent.
    pub(crate) fn tcp(port: u16, v: ProtocolVersion) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            v,
            buf: BytesMut::new(),
            decoder: Decoder::new(v).with_max_packet_size(u32::MAX),
        }
    }

    /// Connects as `id` and returns the CONNACK's reason code.
    pub(crate) fn connect(
        port: u16,
        v: ProtocolVersion,
        id: &str,
        clean: bool,
    ) -> (Conn, ReasonCode) {
        let mut c = Conn::tcp(port, v);
        let mut connect = Connect::new(v, ByteStr::try_from(id).unwrap());
        connect.clean_start = clean;
        connect.keep_alive = 60;
        if !clean && v.is_v5() {
            connect.properties.session_expiry_interval = Some(600);
        }
        c.send(&connect.into());
        let code = match c.recv() {
            Some(Packet::ConnAck(a)) => a.reason_code,
            p => panic!("expected CONNACK, got {p:?}"),
        };
        (c, code)
    }

    /// Writes a packet (errors ignored: an attacker's socket may be closed under it).
    pub(crate) fn send(&mut self, p: &Packet) {
        let mut b = BytesMut::new();
        encode(p, self.v, &mut b).expect("encodable");
        let _ = self.stream.write_all(&b);
    }

    /// Writes raw bytes.
    pub(crate) fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next packet, or `None` once the broker closed the connection (or 10 s passed).
    pub(crate) fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Ok(Some(p)) = self.decoder.decode(&mut self.buf) {
                return Some(p);
            }
            let mut chunk = [0u8; 64 << 10];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads until the broker closes the connection; the DISCONNECT's reason code, if it
    /// sent one, and whether it closed within `within`.
    pub(crate) fn closed_within(&mut self, within: Duration) -> (Option<ReasonCode>, bool) {
        let start = Instant::now();
        let mut code = None;
        self.stream.set_read_timeout(Some(within)).unwrap();
        while let Some(p) = self.recv() {
            if let Packet::Disconnect(d) = p {
                code = Some(d.reason_code);
            }
            if start.elapsed() > within {
                return (code, false);
            }
        }
        (code, start.elapsed() <= within)
    }

    /// Subscribes to `filters` (all at `qos`) and returns the SUBACK's codes.
    pub(crate) fn subscribe(
        &mut self,
        id: u16,
        filters: &[&str],
        qos: QoS,
    ) -> Option<Vec<ReasonCode>> {
        let subs = filters
            .iter()
            .map(|f| Subscription::new(TopicFilter::new(f).unwrap(), qos))
            .collect();
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: pid(id),
            properties: Default::default(),
            filters: subs,
        }));
        loop {
            match self.recv()? {
                Packet::SubAck(a) => return Some(a.reason_codes),
                Packet::Publish(_) => continue,
                Packet::Disconnect(_) => return None,
                p => panic!("expected SUBACK, got {p:?}"),
            }
        }
    }

    /// Closes the TCP connection.
    pub(crate) fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

pub(crate) fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

pub(crate) fn topic(t: &str) -> TopicName {
    TopicName::new(t).unwrap()
}

/// What the probe saw.
#[derive(Debug)]
pub(crate) struct ProbeReport {
    pub(crate) sent: u32,
    pub(crate) received: u32,
    pub(crate) pings: u32,
    pub(crate) worst_ping: Duration,
}

/// A well-behaved client: it publishes QoS 1 messages to itself and pings, every 20 ms, and
/// counts every message that comes back and every PINGREQ round trip.
pub(crate) struct Probe {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU32>,
    writer: JoinHandle<()>,
    reader: JoinHandle<(u32, u32, Duration)>,
}

impl Probe {
    pub(crate) fn start(port: u16) -> Probe {
        let v = ProtocolVersion::V3_1_1;
        let (mut c, code) = Conn::connect(port, v, "probe", true);
        assert_eq!(code, ReasonCode::Success, "the probe is let in");
        assert!(c.subscribe(1, &["probe/#"], QoS::AtLeastOnce).is_some());
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU32::new(0));
        let pinged: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
        let out = Arc::new(Mutex::new(c.stream.try_clone().unwrap()));
        let write = move |out: &Mutex<TcpStream>, p: &Packet| {
            let mut b = BytesMut::new();
            encode(p, v, &mut b).unwrap();
            out.lock().unwrap().write_all(&b)
        };
        let writer = {
            let (stop, sent, pinged, out) =
                (stop.clone(), sent.clone(), pinged.clone(), out.clone());
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let mut p =
                        Publish::new(topic("probe/m"), Bytes::copy_from_slice(&n.to_be_bytes()));
                    p.qos = QoS::AtLeastOnce;
                    p.packet_id = Some(pid((n % 60_000) as u16 + 1));
                    if write(&out, &p.into()).is_err() {
                        break;
                    }
                    n += 1;
                    sent.store(n, Ordering::Relaxed);
                    let ping = {
                        let mut at = pinged.lock().unwrap();
                        at.is_none().then(|| *at = Some(Instant::now())).is_some()
                    };
                    if ping && write(&out, &Packet::PingReq).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        let reader = {
            let (stop, sent, pinged, out) =
                (stop.clone(), sent.clone(), pinged.clone(), out.clone());
            c.stream
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            std::thread::spawn(move || {
                let (mut received, mut pings, mut worst) = (0u32, 0u32, Duration::ZERO);
                let mut buf = BytesMut::new();
                let decoder = Decoder::new(v);
                let mut stopped_at: Option<Instant> = None;
                loop {
                    while let Ok(Some(p)) = decoder.decode(&mut buf) {
                        match p {
                            Packet::Publish(m) => {
                                received += 1;
                                if let Some(id) = m.packet_id {
                                    let _ = write(&out, &Packet::PubAck(PubAck::new(id)));
                                }
                            }
                            Packet::PingResp => {
                                if let Some(at) = pinged.lock().unwrap().take() {
                                    worst = worst.max(at.elapsed());
                                    pings += 1;
                                }
                            }
                            _ => {}
                        }
                    }
                    if let Some(at) = pinged.lock().unwrap().as_ref() {
                        // A ping still unanswered counts as long as it has waited.
                        worst = worst.max(at.elapsed());
                    }
                    if stop.load(Ordering::Relaxed) {
                        let since = *stopped_at.get_or_insert_with(Instant::now);
                        let all = received >= sent.load(Ordering::Relaxed);
                        if all || since.elapsed() > Duration::from_secs(5) {
                            break;
                        }
                    }
                    let mut chunk = [0u8; 16 << 10];
                    match c.stream.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => break,
                    }
                }
                (received, pings, worst)
            })
        };
        Probe {
            stop,
            sent,
            writer,
            reader,
        }
    }

    /// Stops publishing, waits for the last messages (5 s at most), and reports.
    pub(crate) fn finish(self) -> ProbeReport {
        self.stop.store(true, Ordering::Relaxed);
        self.writer.join().unwrap();
        let (received, pings, worst_ping) = self.reader.join().unwrap();
        ProbeReport {
            sent: self.sent.load(Ordering::Relaxed),
            received,
            pings,
            worst_ping,
        }
    }
}
