//! A connection's side of the broker driver: its drain after an input and its reports to the
//! router.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::broker::{BrokerEvent, ConnId, RouterMail, ServerConnection};
use crate::runtimes::driver::options::EventHook;
use crate::ByteStr;

/// What a connection's read and mail produced, for the router: all its mail in one batch.
pub(crate) struct Report {
    pub(crate) conn: ConnId,
    pub(crate) mail: Vec<RouterMail>,
    /// Bytes read and written since the last report.
    pub(crate) received: u64,
    pub(crate) sent: u64,
    /// The connection has ended; this is its last report.
    pub(crate) last: bool,
}

/// Room for this many mails is made for a connection's report on its first mail.
const MAIL_ROOM: usize = 16;

/// The connection task's drain after an input: what to write, the report for the router,
/// and whether to close the transport. The `on_event` hook hears every event.
pub(crate) struct Drained {
    pub(crate) transmit: Vec<Bytes>,
    pub(crate) mail: Vec<RouterMail>,
    pub(crate) close: bool,
}

/// The event hook of one connection: `hook`, told the listener it came in on in its
/// [`BrokerEvent::Connected`] (made once per connection, only when there is a hook).
#[cfg(feature = "blocking")]
pub(crate) fn with_listener(hook: Option<EventHook>, listener: ByteStr) -> Option<EventHook> {
    let hook = hook?;
    Some(std::sync::Arc::new(move |e: &BrokerEvent| {
        listener_event(&hook, || listener.clone(), e)
    }))
}

/// Tells `hook` of `e`, with the listener the connection came in on in a
/// [`BrokerEvent::Connected`] (asked for only then).
pub(crate) fn listener_event(
    hook: &EventHook,
    listener: impl FnOnce() -> ByteStr,
    e: &BrokerEvent,
) {
    match e {
        BrokerEvent::Connected { .. } => {
            let mut e = e.clone();
            if let BrokerEvent::Connected { info, .. } = &mut e {
                info.listener = Some(listener());
            }
            hook(&e);
        }
        _ => hook(e),
    }
}

/// Drains `conn` in order: transmit, router mail, events.
#[cfg(any(feature = "blocking", test))]
pub(crate) fn drain_connection(conn: &mut ServerConnection, hook: Option<&EventHook>) -> Drained {
    drain_connection_with(conn, |e| {
        if let Some(h) = hook {
            h(e);
        }
    })
}

/// [`drain_connection`], each event told to `hook`.
pub(crate) fn drain_connection_with(
    conn: &mut ServerConnection,
    mut hook: impl FnMut(&BrokerEvent),
) -> Drained {
    let mut transmit = Vec::new();
    while let Some(b) = conn.poll_transmit() {
        transmit.push(b);
    }
    let mut mail = Vec::new();
    if let Some(first) = conn.poll_mail() {
        match conn.poll_mail() {
            // One mail (a CONNECT, a close, a lone publish): room for it alone, not a large
            // block the allocator has to carve out.
            None => mail = vec![first],
            Some(second) => {
                // A read's worth of publishes or acknowledgements without regrowing (each
                // regrowth moves every mail so far).
                mail.reserve(MAIL_ROOM);
                mail.push(first);
                mail.push(second);
                while let Some(m) = conn.poll_mail() {
                    mail.push(m);
                }
            }
        }
    }
    let mut close = false;
    while let Some(e) = conn.poll_event() {
        hook(&e);
        close |= matches!(e, BrokerEvent::CloseTransport(_));
    }
    Drained {
        transmit,
        mail,
        close: close || conn.is_closed(),
    }
}

/// Traffic not reported yet; reported with the next mail, or alone once a second.
#[derive(Debug)]
pub(crate) struct Traffic {
    pub(crate) received: u64,
    pub(crate) sent: u64,
    last: Instant,
}

impl Traffic {
    /// Nothing counted yet, as of `now`.
    pub(crate) fn new(now: Instant) -> Traffic {
        Traffic {
            received: 0,
            sent: 0,
            last: now,
        }
    }

    /// The report for `conn` if there is mail, the connection ended, or a second passed with
    /// traffic unreported.
    pub(crate) fn report(
        &mut self,
        now: Instant,
        conn: ConnId,
        mail: Vec<RouterMail>,
        last: bool,
    ) -> Option<Report> {
        let stale = (self.received | self.sent) != 0 && now >= self.last + Duration::from_secs(1);
        if mail.is_empty() && !last && !stale {
            return None;
        }
        self.last = now;
        Some(Report {
            conn,
            mail,
            received: std::mem::take(&mut self.received),
            sent: std::mem::take(&mut self.sent),
            last,
        })
    }
}
