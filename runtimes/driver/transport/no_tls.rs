//! Without the cargo feature `tls` no TLS layer exists: the type has no values.

use super::TransportError;

/// No TLS in this build.
#[derive(Debug)]
pub(crate) enum TlsLayer {}

impl TlsLayer {
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

    pub(crate) fn peer_name(&self) -> Option<String> {
        match *self {}
    }
}
