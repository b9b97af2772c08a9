//! Opening MQTT connections with tokio: CONNECT/CONNACK, SUBSCRIBE/SUBACK, and reading frames.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::packet::{self, Connack, Protocol};

/// The tool's clock: nanoseconds since its first use (the stamps in payloads use it).
pub fn nanos() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// An open MQTT connection and the bytes read past the last packet handled.
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    /// Received bytes not yet parsed.
    pub buf: Vec<u8>,
    /// What the broker said in CONNACK.
    pub connack: Connack,
}

/// Turns any displayable error into an `io::Error`.
pub fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Reads until one whole packet is buffered and returns its first byte and body.
pub async fn read_packet(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<(u8, Vec<u8>)> {
    loop {
        if let Some((frame, used)) = packet::next_frame(buf).map_err(io_err)? {
            let out = (frame.first, frame.body.to_vec());
            buf.drain(..used);
            return Ok(out);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the broker closed the connection",
            ));
        }
    }
}

/// Connects (optionally from a chosen local address), sends CONNECT and waits for a good CONNACK.
pub async fn open(
    addr: SocketAddr,
    local: Option<IpAddr>,
    client_id: &str,
    protocol: Protocol,
    keep_alive: u16,
) -> io::Result<Conn> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = local {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let mut stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    stream
        .write_all(&packet::connect(client_id, protocol, keep_alive))
        .await?;
    let mut buf = Vec::with_capacity(64 * 1024);
    let (first, body) = read_packet(&mut stream, &mut buf).await?;
    let connack =
        packet::parse_connack(packet::Frame { first, body: &body }, protocol).map_err(io_err)?;
    if connack.code != 0 {
        return Err(io_err(format!(
            "connection refused with code 0x{:02x}",
            connack.code
        )));
    }
    Ok(Conn {
        stream,
        buf,
        connack,
    })
}

/// Subscribes to `filter` at `qos` and waits for a SUBACK that grants it.
pub async fn subscribe(
    conn: &mut Conn,
    filter: &str,
    qos: u8,
    protocol: Protocol,
) -> io::Result<()> {
    conn.stream
        .write_all(&packet::subscribe(1, filter, qos, protocol))
        .await?;
    let (first, body) = read_packet(&mut conn.stream, &mut conn.buf).await?;
    if first != packet::SUBACK {
        return Err(io_err(format!("expected suback, got 0x{first:02x}")));
    }
    let granted = match protocol {
        Protocol::V4 => body.get(2),
        Protocol::V5 => {
            let props = body.get(2).copied().unwrap_or(0) as usize;
            body.get(3 + props)
        }
    };
    match granted {
        Some(&code) if code == qos => Ok(()),
        Some(&code) => Err(io_err(format!(
            "subscription to {filter} granted 0x{code:02x}, not qos {qos}"
        ))),
        None => Err(io_err("suback too short")),
    }
}
