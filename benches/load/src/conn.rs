//! Opening MQTT connections with tokio: CONNECT/CONNACK, SUBSCRIBE/SUBACK, and reading frames.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::packet::{self, Connack, Protocol};

/// The tool's clock: nanoseconds since its first use (the stamps in payloads use it).
pub fn nanos() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// How the tool reaches a TLS listener (`--tls`): the connector and the server name.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("name", &self.name).finish()
    }
}

impl Tls {
    /// Trusts the CA certificates of `cafile` and checks the server's certificate against
    /// `host`.
    pub fn new(cafile: &std::path::Path, host: &str) -> io::Result<Tls> {
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(cafile).map_err(io_err)? {
            roots.add(c.map_err(io_err)?).map_err(io_err)?;
        }
        #[allow(deprecated)] // ring has no post-quantum key exchange; the broker's provider
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io_err)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(host.to_owned()).map_err(io_err)?;
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }
}

/// A plain, TLS or WebSocket connection to the broker.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// WebSocket over TCP: each write is one binary message; reads hand out the bytes of the
    /// messages received, whatever their boundaries.
    Ws(Box<Ws>),
}

/// A WebSocket and the rest of the last message read.
pub struct Ws {
    socket: tokio_tungstenite::WebSocketStream<TcpStream>,
    rest: Vec<u8>,
    at: usize,
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
            Stream::Ws(w) => w.socket.get_ref(),
        }
    }
}

/// Upgrades `tcp` to a WebSocket at `ws://addr/mqtt` with the subprotocol `mqtt`.
async fn upgrade(tcp: TcpStream, addr: SocketAddr) -> io::Result<Stream> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{addr}/mqtt")
        .into_client_request()
        .map_err(io_err)?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        tokio_tungstenite::tungstenite::http::HeaderValue::from_static("mqtt"),
    );
    let (socket, _) = tokio_tungstenite::client_async(request, tcp)
        .await
        .map_err(io_err)?;
    Ok(Stream::Ws(Box::new(Ws {
        socket,
        rest: Vec::new(),
        at: 0,
    })))
}

impl Ws {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        use futures_util::Sink as _;
        use futures_util::Stream as _;
        use tokio_tungstenite::tungstenite::Message;
        // What a write left in the socket's buffer goes out while the task waits to read.
        if let Poll::Ready(Err(e)) = Pin::new(&mut self.socket).poll_flush(cx) {
            return Poll::Ready(Err(io_err(e)));
        }
        loop {
            if self.at < self.rest.len() {
                let n = buf.remaining().min(self.rest.len() - self.at);
                buf.put_slice(&self.rest[self.at..self.at + n]);
                self.at += n;
                return Poll::Ready(Ok(()));
            }
            match std::task::ready!(Pin::new(&mut self.socket).poll_next(cx)) {
                Some(Ok(Message::Binary(b))) => {
                    self.rest = b.to_vec();
                    self.at = 0;
                }
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(io_err(e))),
            }
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        use futures_util::Sink as _;
        use tokio_tungstenite::tungstenite::Message;
        let mut s = Pin::new(&mut self.socket);
        std::task::ready!(s.as_mut().poll_ready(cx)).map_err(io_err)?;
        s.as_mut()
            .start_send(Message::Binary(buf.to_vec().into()))
            .map_err(io_err)?;
        // Callers never flush (a TCP stream needs none): the message goes out now, or on the
        // next write or read when the socket is full.
        if let Poll::Ready(Err(e)) = s.as_mut().poll_flush(cx) {
            return Poll::Ready(Err(io_err(e)));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        use futures_util::Sink as _;
        Pin::new(&mut self.socket).poll_flush(cx).map_err(io_err)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        use futures_util::Sink as _;
        Pin::new(&mut self.socket).poll_close(cx).map_err(io_err)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Ws(w) => w.poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Ws(w) => w.poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Ws(w) => w.poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Ws(w) => w.poll_shutdown(cx),
        }
    }
}

/// An open MQTT connection and the bytes read past the last packet handled.
pub struct Conn {
    /// The socket (TLS with `--tls`).
    pub stream: Stream,
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
pub async fn read_packet(stream: &mut Stream, buf: &mut Vec<u8>) -> io::Result<(u8, Vec<u8>)> {
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

/// How the tool reaches the broker beyond TCP.
#[derive(Clone, Debug, Default)]
pub enum Transport {
    /// MQTT on the TCP stream.
    #[default]
    Plain,
    /// TLS (`--tls`).
    Tls(Tls),
    /// WebSocket (`--ws`).
    Ws,
}

/// Connects (optionally from a chosen local address; over TLS or WebSocket as `transport`
/// says), sends CONNECT and waits for a good CONNACK.
pub async fn open(
    addr: SocketAddr,
    local: Option<IpAddr>,
    client_id: &str,
    protocol: Protocol,
    keep_alive: u16,
    transport: &Transport,
) -> io::Result<Conn> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = local {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let tcp = socket.connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut stream = match transport {
        Transport::Plain => Stream::Plain(tcp),
        Transport::Tls(t) => Stream::Tls(Box::new(t.connector.connect(t.name.clone(), tcp).await?)),
        Transport::Ws => upgrade(tcp, addr).await?,
    };
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
