//! Without the cargo feature `websocket` no WebSocket layer exists: the type has no values.

use super::TransportError;

/// No WebSocket in this build.
#[derive(Debug)]
pub(crate) enum WsLayer {}

impl WsLayer {
    pub(crate) fn client(_: &str, _: &mut Vec<u8>) -> Result<WsLayer, TransportError> {
        Err(TransportError::Unsupported("ws:// and wss://", "websocket"))
    }

    pub(crate) fn server() -> Result<WsLayer, TransportError> {
        Err(TransportError::Unsupported(
            "protocol = \"websockets\"",
            "websocket",
        ))
    }

    pub(crate) fn input(
        &mut self,
        _: &[u8],
        _: &mut Vec<u8>,
        _: &mut Vec<u8>,
    ) -> Result<bool, TransportError> {
        match *self {}
    }

    pub(crate) fn send(&mut self, _: &[u8], _: &mut Vec<u8>) -> Result<(), TransportError> {
        match *self {}
    }

    pub(crate) fn close(&mut self, _: &mut Vec<u8>) {
        match *self {}
    }

    #[cfg(test)]
    pub(crate) fn is_handshaking(&self) -> bool {
        match *self {}
    }
}
