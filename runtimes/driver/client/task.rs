//! The async client's driver task: reads, writes, keeps time and reconnects.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use crate::client::Event;
use crate::runtimes::driver::client::core::ClientCore;
use crate::runtimes::driver::client::shared::{Shared, State};
use crate::runtimes::driver::transport::{self, Connector, Link, TransportError};
use crate::runtimes::driver::{now, wait, Reader, Runtime, Woke, Writer, EVENTS_STALL, READ_CHUNK};

/// One connection's socket; the driver reads and writes it itself.
pub(super) struct Transport<R: Runtime> {
    pub(super) reader: R::Reader,
    pub(super) writer: R::Writer,
    /// TLS and/or WebSocket between the socket and the session (`None`: plain TCP).
    pub(super) link: Option<Link>,
}

impl<R: Runtime> Transport<R> {
    /// Writes the session's bytes (through the link, if any) and what the link has to
    /// send.
    pub(super) async fn write(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        match &mut self.link {
            None => Ok(self.writer.write_all(bytes).await?),
            Some(link) => {
                if !bytes.is_empty() {
                    link.send(bytes)?;
                }
                let wire = link.take_wire();
                if !wire.is_empty() {
                    self.writer.write_all(&wire).await?;
                }
                Ok(())
            }
        }
    }

    /// Ends the transport cleanly (close frame, close_notify) and shuts the socket.
    pub(super) async fn close(&mut self) {
        if let Some(link) = &mut self.link {
            link.close();
            let wire = link.take_wire();
            let _ = self.writer.write_all(&wire).await;
        }
        self.writer.close().await;
    }
}

/// What woke the driver.
enum Wake {
    /// A read into the driver's buffer: this many bytes (0: the end of the stream), or
    /// the socket failed.
    Read(std::io::Result<usize>),
    /// A handle gave the core something to send or report, or the last handle went.
    Work,
    /// The session's deadline passed.
    Deadline,
}

/// The driver: the connection, what it reads into, and the core it shares with the
/// handles.
struct Driver<R: Runtime> {
    connector: Connector,
    shared: Arc<Shared>,
    events: async_channel::Sender<Event>,
    transport: Option<Transport<R>>,
    buf: Vec<u8>,
    /// The MQTT bytes a link took out of `buf`.
    app: Vec<u8>,
    /// Whether the last handle's departure was handed to the core.
    gone: bool,
}

impl<R: Runtime> Drop for Driver<R> {
    /// Ended or dropped with its runtime: later commands are refused, and every waiter
    /// hears [`Error::Stopped`] (or has its answer already).
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.ended = true;
        st.core.abandon();
        drop(st);
        self.shared.room.notify(usize::MAX);
    }
}

impl<R: Runtime> Driver<R> {
    /// Runs `f` on the core under the lock, and tells callers waiting for room when the
    /// command queue had been full and no longer is.
    fn with_core<T>(&self, f: impl FnOnce(&mut ClientCore) -> T) -> T {
        self.with_state(|st| f(&mut st.core))
    }

    /// [`Driver::with_core`] with the rest of the shared state.
    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut st = self.shared.lock();
        let full = st.full();
        let v = f(&mut st);
        let room = full && !st.full();
        drop(st);
        if room {
            self.shared.room.notify(usize::MAX);
        }
        v
    }

    /// Carries out what the core asks (write, events, close, reconnect) until it asks
    /// nothing more; everything encoded since the last write leaves in one write.
    async fn flush(&mut self) {
        loop {
            let out = self.with_state(|st| {
                st.unsent = 0;
                st.core.take_output()
            });
            if out.transmit.is_empty() && !out.close && !out.reconnect && out.events.is_empty() {
                return;
            }
            for bytes in &out.transmit {
                let Some(t) = self.transport.as_mut() else {
                    break;
                };
                if let Err(e) = t.write(bytes).await {
                    self.failed(e);
                }
            }
            for e in out.events {
                self.deliver(e).await;
            }
            if out.close {
                if let Some(mut t) = self.transport.take() {
                    t.close().await;
                }
            }
            if out.reconnect {
                let deadline = now() + self.with_core(|c| c.connect_timeout());
                match transport::open::<R>(&self.connector, deadline).await {
                    Ok((reader, writer, link)) => {
                        let mut t = Transport {
                            reader,
                            writer,
                            link,
                        };
                        // The link's first bytes (a TLS hello, an upgrade request).
                        match t.write(&[]).await {
                            Ok(()) => {
                                self.transport = Some(t);
                                self.with_core(|c| c.connect(now(), true));
                            }
                            Err(e) => {
                                self.shared.lock().transport_error = Some(e);
                                self.with_core(|c| c.connect(now(), false));
                            }
                        }
                    }
                    Err(e) => {
                        self.shared.lock().transport_error = Some(e);
                        self.with_core(|c| c.connect(now(), false));
                    }
                }
            }
        }
    }

    /// Puts `event` in the event queue, waiting while it is full; after [`EVENTS_STALL`]
    /// of waiting, the calls waiting on the client hear [`Error::EventsUnread`] (they
    /// could wait forever if they are what should read the events), and so does every
    /// call that would wait until the event is taken.
    async fn deliver(&mut self, event: Event) {
        // A dropped `Events` discards events.
        let event = match self.events.try_send(event) {
            Err(async_channel::TrySendError::Full(e)) => e,
            _ => return,
        };
        let mut send = pin!(self.events.send(event));
        let deadline = Some(now() + EVENTS_STALL);
        let timed = wait::<R, _, ()>(send.as_mut(), None::<std::future::Pending<()>>, deadline);
        if let Woke::First(_) = timed.await {
            return;
        }
        self.with_state(|st| {
            st.stalled = true;
            st.core.events_unread();
        });
        self.shared.room.notify(usize::MAX);
        let _ = send.await;
        self.with_state(|st| st.stalled = false);
    }

    /// Waits for the first of: a passed deadline, bytes from the socket (read into the
    /// driver's buffer), work from a handle (which the flush after any wake takes care of,
    /// so reading first starves nothing). Every source is cancel-safe.
    async fn next(&mut self) -> Wake {
        let deadline = self.shared.lock().core.deadline();
        let mut sleep = pin!(deadline.map(R::sleep_until));
        if self.buf.is_empty() {
            self.buf.resize(READ_CHUNK, 0);
        }
        let buf = &mut self.buf;
        let mut reader = self.transport.as_mut().map(|t| &mut t.reader);
        let shared = &self.shared;
        poll_fn(|cx| {
            if let Some(s) = sleep.as_mut().as_pin_mut() {
                if s.poll(cx).is_ready() {
                    return Poll::Ready(Wake::Deadline);
                }
            }
            if let Some(r) = reader.as_mut() {
                if let Poll::Ready(read) = r.poll_read(cx, buf) {
                    return Poll::Ready(Wake::Read(read));
                }
            }
            let mut st = shared.lock();
            if std::mem::take(&mut st.work) {
                return Poll::Ready(Wake::Work);
            }
            match &mut st.driver {
                Some(w) => w.clone_from(cx.waker()),
                None => st.driver = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// `n` bytes were read into the buffer (0: the stream ended).
    async fn read(&mut self, n: usize) {
        if n == 0 {
            self.transport = None;
            self.with_core(|c| c.transport_closed(now()));
            return;
        }
        let data = &self.buf[..n];
        let Some(link) = self.transport.as_mut().and_then(|t| t.link.as_mut()) else {
            // Acknowledgements free the window and queued commands go out at once, in
            // the same write as any other answer.
            self.with_core(|c| c.input(now(), data));
            return;
        };
        self.app.clear();
        let r = link.input(data, &mut self.app);
        // The link's answers (handshake, alert, pong) go out first.
        if let Some(t) = self.transport.as_mut() {
            if let Err(e) = t.write(&[]).await {
                return self.failed(e);
            }
        }
        match r {
            Ok(open) => {
                if !self.app.is_empty() {
                    let app = std::mem::take(&mut self.app);
                    self.with_core(|c| c.input(now(), &app));
                    self.app = app;
                }
                if !open {
                    self.transport = None;
                    self.with_core(|c| c.transport_closed(now()));
                }
            }
            Err(e) => self.failed(e),
        }
    }

    /// The transport failed: the session hears that it closed, and the cause is kept.
    fn failed(&mut self, e: TransportError) {
        self.shared.lock().transport_error = Some(e);
        self.transport = None;
        self.with_core(|c| c.transport_closed(now()));
    }
}

/// The driver loop: waits for bytes, work from a handle or the deadline, feeds the core,
/// and carries out the core's output (write, close, reconnect) until the core stops.
pub(super) async fn run<R: Runtime>(
    connector: Connector,
    shared: Arc<Shared>,
    events: async_channel::Sender<Event>,
    mut transport: Transport<R>,
) {
    // The link's first bytes (a TLS hello, an upgrade request).
    let opened = transport.write(&[]).await;
    let mut d = Driver::<R> {
        connector,
        shared,
        events,
        transport: Some(transport),
        buf: Vec::new(),
        app: Vec::new(),
        gone: false,
    };
    d.with_core(|c| c.connect(now(), true));
    if let Err(e) = opened {
        d.failed(e);
    }
    loop {
        d.flush().await;
        if let Some(reply) = d.with_core(ClientCore::take_stop) {
            if let Some(r) = reply {
                r.send(Ok(()));
            }
            return;
        }
        match d.next().await {
            Wake::Read(Ok(n)) => d.read(n).await,
            Wake::Read(Err(e)) => d.failed(e.into()),
            Wake::Work => {}
            Wake::Deadline => d.with_core(|c| c.timeout(now())),
        }
        if !d.gone && d.shared.lock().handles == 0 {
            d.gone = true;
            d.with_core(|c| c.handles_gone(now()));
        }
    }
}
