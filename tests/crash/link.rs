//! A blocking loop around the sans-IO client session, on one thread: it writes what the
//! session transmits, reads with the session's deadline as the timeout, and reconnects when
//! the session says `ReconnectDue`, on the same session (so a resumed session resends its
//! unacknowledged messages with DUP and keeps its QoS 2 receive state).
//!
//! The test drives the core directly rather than through a runtime's `Client`: it must see
//! the PUBREC of a QoS 2 message (the moment the broker takes it over), which the runtime
//! clients fold into the PUBCOMP.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tinymqtt::client::{ClientConfig, ClientSession as Session, Event, Outgoing};
use tinymqtt::PacketId;

/// Real sockets run on real time.
pub(crate) fn clock() -> Instant {
    Instant::now()
}

/// The moment the test started (the first call), which every trace and report counts from.
pub(crate) fn t0() -> Instant {
    static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *T0.get_or_init(clock)
}

/// With `CRASH_LOG` set, prints what a client's transport does (for a failure's post-mortem).
fn trace(id: &str, what: std::fmt::Arguments<'_>) {
    if std::env::var_os("CRASH_LOG").is_some() {
        eprintln!("[{:.3}s {id}] {what}", t0().elapsed().as_secs_f64());
    }
}

/// A client session and its current transport.
pub(crate) struct Link {
    pub(crate) session: Session,
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Link {
    /// A session for `config` whose first transport is opening now.
    pub(crate) fn connect(addr: SocketAddr, config: ClientConfig) -> Link {
        let mut link = Link {
            session: Session::new(config),
            addr,
            stream: None,
            buf: vec![0; 16 * 1024],
        };
        link.open();
        link
    }

    /// Opens a transport and starts the session's CONNECT on it; a refused connection counts
    /// as a transport that closed at once (the session then waits its backoff).
    fn open(&mut self) {
        let now = clock();
        let id = self.session.config().client_id.to_string();
        let opened = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500));
        trace(
            &id,
            format_args!("open: {:?}", opened.as_ref().map(|s| s.local_addr())),
        );
        match opened {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
                self.stream = Some(s);
                let _ = self.session.connect(now);
            }
            Err(_) => {
                if self.session.connect(now).is_ok() {
                    self.session.handle_transport_closed(now);
                }
            }
        }
    }

    /// The transport failed or ended.
    fn closed(&mut self) {
        let id = self.session.config().client_id.to_string();
        trace(&id, format_args!("transport closed"));
        if let Some(s) = self.stream.take() {
            let _ = s.shutdown(Shutdown::Both);
        }
        self.session.handle_transport_closed(clock());
    }

    /// Writes what the session transmits and collects its events, reconnecting when due,
    /// until the session has nothing more to say.
    pub(crate) fn flush(&mut self, events: &mut Vec<Event>) {
        loop {
            let mut busy = false;
            while let Some(bytes) = self.session.poll_transmit() {
                busy = true;
                if let Some(s) = self.stream.as_mut() {
                    if s.write_all(&bytes).is_err() {
                        self.closed();
                    }
                }
            }
            while let Some(e) = self.session.poll_event() {
                busy = true;
                match e {
                    Event::ReconnectDue => self.open(),
                    Event::Disconnected { .. } => {
                        // What it still had to send went out above.
                        if let Some(s) = self.stream.take() {
                            let _ = s.shutdown(Shutdown::Both);
                        }
                        events.push(e);
                    }
                    e => {
                        if !matches!(e, Event::Message(_) | Event::Published { .. }) {
                            let id = self.session.config().client_id.to_string();
                            trace(&id, format_args!("{e:?}"));
                        }
                        events.push(e)
                    }
                }
            }
            if !busy {
                return;
            }
        }
    }

    /// Runs the session for at most `wait` (less when a deadline comes first): one read, the
    /// timers, and everything that follows from them.
    pub(crate) fn turn(&mut self, wait: Duration, events: &mut Vec<Event>) {
        self.flush(events);
        let start = clock();
        let deadline = self.session.poll_timeout();
        let until = deadline.map_or(start + wait, |d| d.min(start + wait));
        let left = until
            .saturating_duration_since(start)
            .max(Duration::from_millis(1));
        match self.stream.as_mut() {
            Some(s) => {
                let _ = s.set_read_timeout(Some(left));
                match s.read(&mut self.buf) {
                    Ok(0) => self.closed(),
                    Ok(n) => self.session.handle_input(clock(), &self.buf[..n]),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => self.closed(),
                }
            }
            None => std::thread::sleep(left),
        }
        if deadline.is_some_and(|d| clock() >= d) {
            self.session.handle_timeout(clock());
        }
        self.flush(events);
    }

    /// QoS 2 publishes the server has received (PUBREC), waiting for PUBCOMP.
    pub(crate) fn released(&self) -> Vec<PacketId> {
        self.session
            .session()
            .outgoing
            .into_iter()
            .filter_map(|o| match o {
                Outgoing::PubRel(id) => Some(id),
                Outgoing::Publish(_) => None,
            })
            .collect()
    }

    /// Sends DISCONNECT (normal) and closes.
    pub(crate) fn disconnect(&mut self) {
        let _ = self
            .session
            .disconnect(clock(), tinymqtt::codec::Disconnect::default());
        let mut events = Vec::new();
        self.flush(&mut events);
        if let Some(s) = self.stream.take() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}
