//! The connections scenario: open C idle MQTT connections (no PINGREQ), measure the connect
//! rate and the broker's resident memory per connection, hold them, and count any the broker closed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::conn;
use crate::packet::Protocol;

/// What one connections run does.
#[derive(Clone, Debug)]
pub struct ConnsConfig {
    /// The broker.
    pub addr: SocketAddr,
    /// The protocol level.
    pub protocol: Protocol,
    /// How many connections to open.
    pub connections: usize,
    /// How many handshakes may be in progress at once.
    pub concurrency: usize,
    /// How long to hold the connections once all are open.
    pub hold: Duration,
    /// The broker's process id, to read its VmRSS.
    pub broker_pid: Option<u32>,
    /// Print a progress line each second.
    pub progress: bool,
    /// The keep alive sent in CONNECT.
    pub keep_alive: u16,
    /// TLS (`--tls`, each connection's handshake is part of its connect) or WebSocket.
    pub transport: conn::Transport,
}

/// What one connections run measured.
#[derive(Clone, Debug, Default)]
pub struct ConnsResult {
    /// Connections that got a CONNACK.
    pub opened: u64,
    /// Connections that failed to open.
    pub failed: u64,
    /// Seconds from the first connect to the last CONNACK.
    pub secs: f64,
    /// The broker's VmRSS in bytes before the first connection.
    pub rss_before: Option<u64>,
    /// The broker's VmRSS in bytes with all connections open.
    pub rss_after: Option<u64>,
    /// Connections the broker closed while they were held.
    pub dropped: u64,
    /// The first errors seen.
    pub errors: Vec<String>,
}

/// Reads VmRSS (bytes) from /proc/PID/status.
pub fn vm_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

/// Reads VmHWM (bytes, the peak resident memory) from /proc/PID/status.
pub fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kb(&status, "VmHWM:")
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    parse_status_kb(status, "VmRSS:")
}

fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Connections per local address: well below half the ephemeral port range, the half that
/// `bind` to port 0 picks from first (beyond it each bind scans the whole range).
const PER_SOURCE: usize = 10_000;

/// The local address for connection `i`: loopback brokers are reached from many 127.x.y.1
/// addresses so that more connections than ephemeral ports can be opened, and a new run does not
/// collide with the TIME_WAIT sockets of the last one.
fn source(addr: SocketAddr, i: usize) -> Option<IpAddr> {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            let run = (std::process::id() % 200) as u8 + 1;
            let block = i / PER_SOURCE;
            Some(IpAddr::V4(Ipv4Addr::new(
                127,
                run,
                (block / 250) as u8,
                (block % 250) as u8 + 1,
            )))
        }
        _ => None,
    }
}

/// Runs the connections scenario.
pub async fn run(cfg: ConnsConfig) -> ConnsResult {
    let mut result = ConnsResult {
        rss_before: cfg.broker_pid.and_then(vm_rss),
        ..ConnsResult::default()
    };
    let tag = std::process::id();
    let mut open: Vec<conn::Stream> = Vec::with_capacity(cfg.connections);
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    let mut next_progress = start + Duration::from_secs(1);
    let mut next = 0usize;
    while next < cfg.connections || !tasks.is_empty() {
        while next < cfg.connections && tasks.len() < cfg.concurrency.max(1) {
            let (addr, protocol, keep_alive, i) = (cfg.addr, cfg.protocol, cfg.keep_alive, next);
            let transport = cfg.transport.clone();
            tasks.spawn(async move {
                let id = format!("load-{tag}-c{i}");
                let c = conn::open(addr, source(addr, i), &id, protocol, keep_alive, &transport);
                match tokio::time::timeout(Duration::from_secs(10), c).await {
                    Ok(Ok(c)) => Ok(c.stream),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("connect timed out".to_string()),
                }
            });
            next += 1;
        }
        if let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(stream)) => open.push(stream),
                Ok(Err(e)) => {
                    result.failed += 1;
                    if result.errors.len() < 5 {
                        result.errors.push(e);
                    }
                }
                Err(e) => {
                    result.failed += 1;
                    result.errors.push(e.to_string());
                }
            }
        }
        if cfg.progress && Instant::now() >= next_progress {
            next_progress += Duration::from_secs(1);
            eprintln!(
                "[{:>4.0}s] open {}  failed {}",
                start.elapsed().as_secs_f64(),
                open.len(),
                result.failed
            );
        }
    }
    result.secs = start.elapsed().as_secs_f64();
    result.opened = open.len() as u64;
    // Let the broker settle (lazy allocations, deferred frees) before reading its memory.
    tokio::time::sleep(cfg.hold).await;
    result.rss_after = cfg.broker_pid.and_then(vm_rss);
    let mut probe = [0u8; 1];
    for stream in &open {
        match stream.tcp().try_read(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => result.dropped += 1,
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tbroker\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status), Some(1234 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(vm_rss(std::process::id()).map(|b| b > 0), Some(true));
    }

    #[test]
    fn vm_hwm_is_the_peak_in_bytes() {
        let status = "VmPeak:	  9000 kB
VmHWM:	    2000 kB
VmRSS:	    1234 kB
";
        assert_eq!(parse_status_kb(status, "VmHWM:"), Some(2000 * 1024));
        let me = std::process::id();
        assert!(
            vm_hwm(me).unwrap() >= vm_rss(me).unwrap() / 2,
            "the peak is at least now"
        );
    }

    #[test]
    fn sources_change_every_block_and_stay_loopback() {
        let addr: SocketAddr = "127.0.0.1:1883".parse().unwrap();
        let a = source(addr, 0).unwrap();
        assert_eq!(source(addr, PER_SOURCE - 1), Some(a));
        let b = source(addr, PER_SOURCE).unwrap();
        assert_ne!(a, b);
        assert!(a.is_loopback() && b.is_loopback());
        assert!(source(addr, 99 * PER_SOURCE).unwrap().is_loopback());
        assert_eq!(source("[::1]:1883".parse().unwrap(), 0), None);
    }
}
