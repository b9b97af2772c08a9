//! A transport failure as the cause a `Disconnected` event carries: the runtime's
//! [`TransportError`] in the core's opaque [`TransportCause`] (users get it back with
//! `cause.downcast_ref::<TransportError>()`).
//!
//! The driver keeps its own copy for `Client::take_transport_error` as well; an `io::Error`
//! cannot be cloned, so the event's copy keeps its kind and its message.

use std::io;

use super::transport::TransportError;
use crate::error::TransportCause;

/// The cause for an event, a copy of `e`.
pub(crate) fn cause_of(e: &TransportError) -> TransportCause {
    TransportCause::new(copy(e))
}

/// `e` again: the same variant and fields, an `io::Error` with its kind and message.
fn copy(e: &TransportError) -> TransportError {
    let io = |e: &io::Error| io::Error::new(e.kind(), e.to_string());
    match e {
        TransportError::Url { url, reason } => TransportError::Url {
            url: url.clone(),
            reason,
        },
        TransportError::Resolve { host, source } => TransportError::Resolve {
            host: host.clone(),
            source: io(source),
        },
        TransportError::Connect { addr, source } => TransportError::Connect {
            addr: *addr,
            source: io(source),
        },
        TransportError::Config(s) => TransportError::Config(s.clone()),
        TransportError::Unsupported(what, feature) => TransportError::Unsupported(what, feature),
        #[cfg(feature = "tls")]
        TransportError::Tls(e) => TransportError::Tls(e.clone()),
        TransportError::WebSocket(s) => TransportError::WebSocket(s.clone()),
        TransportError::Identity(s) => TransportError::Identity(s.clone()),
        TransportError::Io(e) => TransportError::Io(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_keeps_the_variant_the_kind_and_the_message() {
        let e = TransportError::Connect {
            addr: "127.0.0.1:1".parse().unwrap(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        let cause = cause_of(&e);
        assert_eq!(cause.to_string(), e.to_string());
        match cause.downcast_ref::<TransportError>() {
            Some(TransportError::Connect { addr, source }) => {
                assert_eq!(addr.port(), 1);
                assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused);
            }
            other => panic!("{other:?}"),
        }
    }
}
