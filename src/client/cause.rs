//! The transport's own account of why it failed, carried by the `Disconnected` event it
//! causes.

use std::time::Instant;

use super::{ClientSession, Event};
use crate::error::TransportCause;

impl ClientSession {
    /// The transport failed, or could not be opened, for `cause` (the host name did not
    /// resolve, the connection was refused, a certificate was rejected): as
    /// [`ClientSession::handle_transport_closed`], and the
    /// [`Event::Disconnected`] it raises carries `cause`. A runtime that opens a transport
    /// for a connection attempt and fails calls [`ClientSession::connect`], then this.
    pub fn handle_transport_error(&mut self, now: Instant, cause: TransportCause) {
        let before = self.events.len();
        self.handle_transport_closed(now);
        for e in self.events.iter_mut().skip(before) {
            if let Event::Disconnected { cause: c, .. } = e {
                *c = Some(cause.clone());
            }
        }
    }
}
