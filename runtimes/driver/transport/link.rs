//! `Link`: one connection's transport machine, TLS and/or WebSocket layered.

use crate::runtimes::driver::transport::tls::TlsLayer;
use crate::runtimes::driver::transport::ws::WsLayer;
use crate::runtimes::driver::transport::TransportError;
use crate::ByteStr;

/// One connection's transport machine: TLS, WebSocket, or WebSocket over TLS.
#[derive(Debug, Default)]
pub(crate) struct Link {
    pub(super) tls: Option<TlsLayer>,
    pub(super) ws: Option<WsLayer>,
    /// Bytes for the socket.
    pub(super) wire: Vec<u8>,
    /// The client certificate's name is the client's user name (`use_identity_as_username`).
    pub(super) identity: bool,
    /// That name, from the end of the TLS handshake until the runtime takes it.
    pub(super) peer: Option<ByteStr>,
    /// Whether the name was looked for (once, when the first MQTT bytes arrive).
    pub(super) named: bool,
    pub(super) failed: bool,
}

impl Link {
    /// Bytes from the socket: the MQTT bytes they carry are appended to `app`; what the
    /// transport answers waits in [`Link::take_wire`]. `Ok(false)`: the peer closed the
    /// transport. After an error (whose alert or HTTP answer waits in `take_wire`), every
    /// later input is refused.
    pub(crate) fn input(&mut self, data: &[u8], app: &mut Vec<u8>) -> Result<bool, TransportError> {
        if self.failed {
            return Ok(false);
        }
        let r = self.input_layers(data, app);
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn input_layers(&mut self, data: &[u8], app: &mut Vec<u8>) -> Result<bool, TransportError> {
        let mut mid = Vec::new();
        let (data, mut open) = match &mut self.tls {
            Some(t) => {
                let open = t.input(data, &mut mid, &mut self.wire)?;
                (&mid[..], open)
            }
            None => (data, true),
        };
        let before = app.len();
        match &mut self.ws {
            Some(ws) => {
                let mut out = Vec::new();
                let r = ws.input(data, app, &mut out);
                // Answers go out even when the input failed (an HTTP error, a close frame).
                self.down(out)?;
                open &= r?;
            }
            None => app.extend_from_slice(data),
        }
        if self.identity && !self.named && app.len() > before {
            // The handshake is done: the certificate names the client, or it is refused.
            self.named = true;
            let name = self
                .tls
                .as_ref()
                .and_then(TlsLayer::peer_name)
                .ok_or_else(|| {
                    TransportError::Identity(
                        "no client certificate to take the user name from".into(),
                    )
                })?;
            let name = ByteStr::try_from(name.as_str())
                .map_err(|_| TransportError::Identity("unusable certificate name".into()))?;
            self.peer = Some(name);
        }
        Ok(open)
    }

    /// MQTT bytes to send.
    pub(crate) fn send(&mut self, data: &[u8]) -> Result<(), TransportError> {
        match &mut self.ws {
            Some(ws) => {
                let mut out = Vec::new();
                ws.send(data, &mut out)?;
                self.down(out)
            }
            None => self.down_slice(data),
        }
    }

    /// Bytes from the WebSocket layer for the socket (through TLS, when under it).
    pub(super) fn down(&mut self, out: Vec<u8>) -> Result<(), TransportError> {
        if out.is_empty() {
            return Ok(());
        }
        match self.tls {
            Some(_) => self.down_slice(&out),
            None if self.wire.is_empty() => {
                self.wire = out;
                Ok(())
            }
            None => {
                self.wire.extend_from_slice(&out);
                Ok(())
            }
        }
    }

    fn down_slice(&mut self, data: &[u8]) -> Result<(), TransportError> {
        match &mut self.tls {
            Some(t) => t.send(data, &mut self.wire),
            None => {
                self.wire.extend_from_slice(data);
                Ok(())
            }
        }
    }

    /// The bytes to write to the socket now.
    pub(crate) fn take_wire(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.wire)
    }

    /// Whether bytes wait for the socket (the blocking broker asks; the async one takes
    /// them all once per wake).
    #[cfg(feature = "blocking")]
    pub(crate) fn has_wire(&self) -> bool {
        !self.wire.is_empty()
    }

    /// Ends the transport cleanly (WebSocket close frame, TLS close_notify).
    pub(crate) fn close(&mut self) {
        let mut out = Vec::new();
        if let Some(ws) = &mut self.ws {
            ws.close(&mut out);
        }
        let _ = self.down(out);
        if let Some(t) = &mut self.tls {
            t.close(&mut self.wire);
        }
    }

    /// Whether a handshake (TLS or WebSocket upgrade) is still running.
    #[cfg(test)]
    pub(crate) fn is_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(TlsLayer::is_handshaking)
            || self.ws.as_ref().is_some_and(WsLayer::is_handshaking)
    }

    /// With `use_identity_as_username`: the client certificate's name, once, as soon as the
    /// handshake is over and before the CONNECT's bytes go to the connection (the runtime hands it
    /// to [`ServerConnection::set_peer_identity`]).
    ///
    /// [`ServerConnection::set_peer_identity`]: crate::broker::ServerConnection::set_peer_identity
    pub(crate) fn take_identity(&mut self) -> Option<ByteStr> {
        self.peer.take()
    }

    /// The name the peer's certificate gives (its common name).
    #[cfg(test)]
    pub(crate) fn identity(&self) -> Option<String> {
        self.tls.as_ref().and_then(TlsLayer::peer_name)
    }
}
