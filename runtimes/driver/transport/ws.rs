//! WebSocket (RFC 6455) through tungstenite over in-memory buffers: the socket's bytes go into
//! a [`Pipe`] that tungstenite reads until it would block, and what it writes is taken from the
//! pipe for the socket. MQTT travels in binary messages (subprotocol `mqtt`, or `mqttv3.1`);
//! the stream of packets is cut into messages however the sender likes, so a packet may span
//! messages and a message may hold several packets.

use std::io::{self, Read, Write};

use bytes::{Buf, BytesMut};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::handshake::machine::TryParse;
use tungstenite::handshake::server::{create_response, write_response, Request};
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::http::{HeaderValue, Response, StatusCode};
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use super::TransportError;

/// The subprotocols a server accepts, in its order of preference ([MQTT-6.0.0-3]: `mqtt`; the
/// MQTT 3.1 name too).
pub(crate) const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// The largest WebSocket message (and frame) taken, in bytes; a bigger one closes the
/// connection (tungstenite reassembles a message before it hands it over).
pub const MAX_WS_MESSAGE: usize = 16 << 20;

/// The largest HTTP upgrade request a server reads before it gives up.
const MAX_REQUEST: usize = 8 * 1024;

/// Where tungstenite reads the socket's bytes and writes its own.
#[derive(Debug, Default)]
pub(crate) struct Pipe {
    rx: BytesMut,
    tx: Vec<u8>,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.rx.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.rx.len());
        buf[..n].copy_from_slice(&self.rx[..n]);
        self.rx.advance(n);
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_WS_MESSAGE))
        .max_frame_size(Some(MAX_WS_MESSAGE))
        // Eagerly allocated per connection: small, it grows with the messages.
        .read_buffer_size(4096)
        // Every message goes to the pipe at once.
        .write_buffer_size(0)
}

enum State {
    /// A client waiting for the server's 101.
    Client(MidHandshake<ClientHandshake<Pipe>>),
    /// A server reading the upgrade request (so far).
    Server(BytesMut),
    Open(WebSocket<Pipe>),
    /// Failed or closed.
    Done,
}

/// One WebSocket connection, client or server, as a byte-in/byte-out machine.
pub(crate) struct WsLayer {
    state: State,
    /// What a client sent before its handshake completed.
    pending: Vec<u8>,
}

impl std::fmt::Debug for WsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Client(_) => "client handshake",
            State::Server(_) => "server handshake",
            State::Open(_) => "open",
            State::Done => "done",
        };
        f.debug_struct("WsLayer").field("state", &state).finish()
    }
}

fn ws_error(e: tungstenite::Error) -> TransportError {
    TransportError::WebSocket(e.to_string())
}

impl WsLayer {
    /// A client for `url` (`ws://host:port/path` or `wss://...`), asking for subprotocol
    /// `mqtt`; its upgrade request goes to `down`.
    pub(crate) fn client(url: &str, down: &mut Vec<u8>) -> Result<WsLayer, TransportError> {
        let mut request = url.into_client_request().map_err(ws_error)?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(SUBPROTOCOLS[0]),
        );
        let mid =
            ClientHandshake::start(Pipe::default(), request, Some(config())).map_err(ws_error)?;
        let mut layer = WsLayer {
            state: State::Done,
            pending: Vec::new(),
        };
        match mid.handshake() {
            Err(HandshakeError::Interrupted(mut mid)) => {
                down.append(&mut mid.get_mut().get_mut().tx);
                layer.state = State::Client(mid);
                Ok(layer)
            }
            Err(HandshakeError::Failure(e)) => Err(ws_error(e)),
            Ok(_) => Err(TransportError::WebSocket(
                "handshake ended before an answer".into(),
            )),
        }
    }

    /// A server waiting for the upgrade request.
    pub(crate) fn server() -> Result<WsLayer, TransportError> {
        Ok(WsLayer {
            state: State::Server(BytesMut::new()),
            pending: Vec::new(),
        })
    }

    /// Bytes from below: MQTT bytes go to `up`, the handshake's answers, pongs and close
    /// replies to `down`. `Ok(false)`: the peer closed.
    pub(crate) fn input(
        &mut self,
        data: &[u8],
        up: &mut Vec<u8>,
        down: &mut Vec<u8>,
    ) -> Result<bool, TransportError> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Client(mut mid) => {
                mid.get_mut().get_mut().rx.extend_from_slice(data);
                match mid.handshake() {
                    Ok((mut ws, _)) => {
                        if !self.pending.is_empty() {
                            let msg = Message::Binary(std::mem::take(&mut self.pending).into());
                            ws.send(msg).map_err(ws_error)?;
                        }
                        self.state = State::Open(ws);
                    }
                    Err(HandshakeError::Interrupted(mid)) => {
                        self.state = State::Client(mid);
                        return Ok(true);
                    }
                    Err(HandshakeError::Failure(e)) => return Err(ws_error(e)),
                }
            }
            State::Server(mut request) => {
                request.extend_from_slice(data);
                match self.accept(&mut request, down) {
                    Ok(Some(ws)) => self.state = State::Open(ws),
                    Ok(None) if request.len() > MAX_REQUEST => {
                        reject(down, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
                        return Err(TransportError::WebSocket(
                            "upgrade request too large".into(),
                        ));
                    }
                    Ok(None) => {
                        self.state = State::Server(request);
                        return Ok(true);
                    }
                    Err(e) => return Err(e),
                }
            }
            State::Open(mut ws) => {
                ws.get_mut().rx.extend_from_slice(data);
                self.state = State::Open(ws);
            }
            State::Done => return Ok(false),
        }
        let State::Open(ws) = &mut self.state else {
            return Ok(false);
        };
        let open = read_messages(ws, up)?;
        down.append(&mut ws.get_mut().tx);
        if !open {
            self.state = State::Done;
        }
        Ok(open)
    }

    /// The server's side of the upgrade: `Ok(None)` while the request is incomplete; a bad
    /// request or one without an MQTT subprotocol is answered with an HTTP error.
    fn accept(
        &mut self,
        request: &mut BytesMut,
        down: &mut Vec<u8>,
    ) -> Result<Option<WebSocket<Pipe>>, TransportError> {
        let (size, req) = match Request::try_parse(request) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(None),
            Err(e) => {
                reject(down, StatusCode::BAD_REQUEST);
                return Err(ws_error(e));
            }
        };
        let mut response = match create_response(&req) {
            Ok(r) => r,
            Err(e) => {
                reject(down, StatusCode::BAD_REQUEST);
                return Err(ws_error(e));
            }
        };
        let offered = req
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        let Some(chosen) = SUBPROTOCOLS.iter().find(|p| offered.contains(p)) else {
            reject(down, StatusCode::BAD_REQUEST);
            return Err(TransportError::WebSocket(format!(
                "upgrade without the mqtt subprotocol (offered: {offered:?})"
            )));
        };
        response
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(chosen));
        write_response(&mut *down, &response).map_err(ws_error)?;
        let tail = request.split_off(size).to_vec();
        Ok(Some(WebSocket::from_partially_read(
            Pipe::default(),
            tail,
            Role::Server,
            Some(config()),
        )))
    }

    /// MQTT bytes to send, as one binary message (held until a client's handshake is done).
    pub(crate) fn send(&mut self, data: &[u8], down: &mut Vec<u8>) -> Result<(), TransportError> {
        match &mut self.state {
            State::Open(ws) => {
                ws.send(Message::Binary(bytes::Bytes::copy_from_slice(data)))
                    .map_err(ws_error)?;
                down.append(&mut ws.get_mut().tx);
                Ok(())
            }
            State::Client(_) => {
                self.pending.extend_from_slice(data);
                Ok(())
            }
            State::Server(_) | State::Done => Err(TransportError::WebSocket(
                "the connection is not open".into(),
            )),
        }
    }

    /// Sends a close frame.
    pub(crate) fn close(&mut self, down: &mut Vec<u8>) {
        if let State::Open(ws) = &mut self.state {
            let _ = ws.close(None);
            let _ = ws.flush();
            down.append(&mut ws.get_mut().tx);
        }
    }

    /// Whether the upgrade is still running.
    #[cfg(test)]
    pub(crate) fn is_handshaking(&self) -> bool {
        matches!(self.state, State::Client(_) | State::Server(_))
    }
}

/// Reads every complete message in the pipe; `Ok(false)`: the peer closed.
fn read_messages(ws: &mut WebSocket<Pipe>, up: &mut Vec<u8>) -> Result<bool, TransportError> {
    loop {
        match ws.read() {
            Ok(Message::Binary(b)) => up.extend_from_slice(&b),
            // [MQTT-6.0.0-1]: MQTT travels in binary data frames only.
            Ok(Message::Text(_)) => {
                let _ = ws.close(None);
                let _ = ws.flush();
                return Err(TransportError::WebSocket(
                    "text frame (MQTT needs binary frames)".into(),
                ));
            }
            // Pings are answered by tungstenite (on the flush below).
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
            // Its reply is queued; the next read says the connection is closed.
            Ok(Message::Close(_)) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                let _ = ws.flush();
                return Ok(true);
            }
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return Ok(false)
            }
            Err(e) => return Err(ws_error(e)),
        }
    }
}

/// An HTTP error answer to a bad upgrade request.
fn reject(down: &mut Vec<u8>, status: StatusCode) {
    let mut response = Response::new(());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("Connection", HeaderValue::from_static("close"));
    let _ = write_response(down, &response);
}
