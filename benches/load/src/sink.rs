//! A trivial "broker" that acknowledges everything and routes nothing: CONNECT gets CONNACK,
//! SUBSCRIBE gets SUBACK, PUBLISH gets PUBACK or PUBREC, PUBREL gets PUBCOMP, PINGREQ gets
//! PINGRESP; fan-in against it measures the load tool's own publishing ceiling.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::conn::io_err;
use crate::packet::{self, Protocol};

/// What the sink counted.
#[derive(Default)]
pub struct SinkStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// PUBLISH packets received.
    pub publishes: AtomicU64,
}

/// Serves until `duration` is over (forever without one), printing the publish rate each second.
pub async fn run(
    addr: SocketAddr,
    duration: Option<Duration>,
    progress: bool,
) -> io::Result<Arc<SinkStats>> {
    let listener = TcpListener::bind(addr).await?;
    eprintln!("sink listening on {}", listener.local_addr()?);
    let stats = Arc::new(SinkStats::default());
    let start = Instant::now();
    let reporter = progress.then(|| {
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let mut last = 0;
            loop {
                tick.tick().await;
                let now = stats.publishes.load(Ordering::Relaxed);
                eprintln!(
                    "[{:>4.0}s] sink: {} connections, {} publishes/s",
                    start.elapsed().as_secs_f64(),
                    stats.connections.load(Ordering::Relaxed),
                    crate::report::si(now - last)
                );
                last = now;
            }
        })
    });
    let accept = async {
        loop {
            let (stream, _) = listener.accept().await?;
            stats.connections.fetch_add(1, Ordering::Relaxed);
            let stats = stats.clone();
            tokio::spawn(async move {
                let _ = serve(stream, &stats).await;
            });
        }
    };
    let outcome: io::Result<()> = match duration {
        Some(d) => tokio::time::timeout(d, accept).await.unwrap_or(Ok(())),
        None => accept.await,
    };
    if let Some(r) = reporter {
        r.abort();
    }
    outcome.map(|()| stats)
}

/// The SUBACK for a SUBSCRIBE body: every filter granted the QoS it asked for.
pub fn suback(body: &[u8], protocol: Protocol) -> Result<Vec<u8>, packet::WireError> {
    let bad = || packet::WireError("malformed subscribe".into());
    let mut at = 2;
    let mut reply = body.get(..2).ok_or_else(bad)?.to_vec();
    if protocol == Protocol::V5 {
        let props = *body.get(2).ok_or_else(bad)? as usize;
        at += 1 + props;
        reply.push(0);
    }
    while at < body.len() {
        let len = body.get(at..at + 2).ok_or_else(bad)?;
        at += 2 + u16::from_be_bytes([len[0], len[1]]) as usize;
        let options = *body.get(at).ok_or_else(bad)?;
        reply.push(options & 3);
        at += 1;
    }
    let mut out = vec![packet::SUBACK];
    packet::put_varint(&mut out, reply.len());
    out.extend_from_slice(&reply);
    Ok(out)
}

async fn serve(mut stream: TcpStream, stats: &SinkStats) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut out = Vec::with_capacity(16 * 1024);
    let mut protocol = Protocol::V4;
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        let mut at = 0;
        let mut publishes = 0;
        while let Some((frame, used)) = packet::next_frame(&buf[at..]).map_err(io_err)? {
            at += used;
            match frame.first & 0xF0 {
                packet::CONNECT => {
                    protocol = match packet::connect_level(frame.body) {
                        Some(5) => Protocol::V5,
                        _ => Protocol::V4,
                    };
                    match protocol {
                        Protocol::V5 => out.extend_from_slice(&[packet::CONNACK, 3, 0, 0, 0]),
                        Protocol::V4 => out.extend_from_slice(&[packet::CONNACK, 2, 0, 0]),
                    }
                }
                packet::PUBLISH => {
                    publishes += 1;
                    let p = packet::parse_publish(frame, protocol).map_err(io_err)?;
                    match p.qos {
                        1 => packet::put_ack(&mut out, packet::PUBACK, p.packet_id),
                        2 => packet::put_ack(&mut out, packet::PUBREC, p.packet_id),
                        _ => {}
                    }
                }
                0x60 => {
                    let id = packet::ack_packet_id(frame).map_err(io_err)?;
                    packet::put_ack(&mut out, packet::PUBCOMP, id);
                }
                0x80 => out.extend_from_slice(&suback(frame.body, protocol).map_err(io_err)?),
                packet::PINGREQ => out.extend_from_slice(&[packet::PINGRESP, 0]),
                packet::DISCONNECT => return Ok(()),
                _ => {} // PUBACK, PUBREC, PUBCOMP from a subscriber: nothing was sent
            }
        }
        buf.drain(..at);
        stats.publishes.fetch_add(publishes, Ordering::Relaxed);
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suback_grants_each_requested_qos() {
        let sub = packet::subscribe(9, "a/b", 2, Protocol::V4);
        let (frame, _) = packet::next_frame(&sub).unwrap().unwrap();
        assert_eq!(
            suback(frame.body, Protocol::V4).unwrap(),
            [0x90, 3, 0, 9, 2]
        );
        let sub = packet::subscribe(10, "x", 1, Protocol::V5);
        let (frame, _) = packet::next_frame(&sub).unwrap().unwrap();
        assert_eq!(
            suback(frame.body, Protocol::V5).unwrap(),
            [0x90, 4, 0, 10, 0, 1]
        );
        assert!(suback(&[0, 1, 0, 5, b'a'], Protocol::V4).is_err());
    }
}
