//! Links on the runtimes: a client in the broker's process, without a socket (see [`Link`]).

use std::time::Instant;

use super::handle::{BrokerHandle, Control, LinkAnswer, LinkCall};
#[cfg(feature = "blocking")]
use super::BlockingEvents;
#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
use super::Events;
use super::{reply_channel, Error};
use crate::broker::{BrokerEvent, ConnId, Router, ServerConnection, IN_PROCESS};
use crate::client::{AckToken, ClientConfig, ClientSession, Event};
use crate::codec::{Publish, SubscribeProperties, Subscription};
use crate::PacketId;

/// A link's session and its connection, in the router task.
pub(crate) struct Hosted {
    conn: ServerConnection,
    client: ClientSession,
    events: async_channel::Sender<Event>,
}

impl Hosted {
    /// A new link on `conn` (just accepted), connecting with `config`.
    pub(crate) fn start(
        now: Instant,
        router: &mut Router,
        conn: ServerConnection,
        mut config: ClientConfig,
        cap: usize,
    ) -> Result<(Hosted, async_channel::Receiver<Event>), Error> {
        config.reconnect = None;
        config.keep_alive = 0;
        let mut client = ClientSession::new(config);
        client.connect(now)?;
        router.set_listener(conn.id(), crate::ByteStr::from_static(IN_PROCESS));
        let (events, rx) = async_channel::bounded(cap.max(1));
        Ok((
            Hosted {
                conn,
                client,
                events,
            },
            rx,
        ))
    }

    /// Carries out `call` on the session.
    pub(crate) fn call(&mut self, now: Instant, call: LinkCall) -> Result<Option<PacketId>, Error> {
        let c = &mut self.client;
        match call {
            LinkCall::Connect(_) => Ok(None),
            LinkCall::Subscribe(filters) => c
                .subscribe(now, filters, SubscribeProperties::default())
                .map(Some)
                .map_err(Error::from),
            LinkCall::Publish(p) => c.publish(now, *p).map_err(Error::from),
            LinkCall::Ack(token) => c.ack(now, token).map(|()| None).map_err(Error::from),
            LinkCall::Disconnect => c
                .disconnect(now, Default::default())
                .map(|()| None)
                .map_err(Error::from),
        }
    }

    /// Hands `mail` to the link's connection.
    pub(crate) fn mail(&mut self, now: Instant, mail: crate::broker::ConnectionMail) {
        self.conn.handle_mail(now, mail);
    }

    /// The earliest deadline of the link.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.conn
            .poll_timeout()
            .into_iter()
            .chain(self.client.poll_timeout())
            .min()
    }

    /// Acts on the link's deadlines due at `now`.
    pub(crate) fn timeout(&mut self, now: Instant) {
        if self.conn.poll_timeout().is_some_and(|at| at <= now) {
            self.conn.handle_timeout(now);
        }
        if self.client.poll_timeout().is_some_and(|at| at <= now) {
            self.client.handle_timeout(now);
        }
    }

    /// Moves bytes between the session and its connection until both are quiet, the
    /// connection's mail to `router`, the session's events to the application. `false` once
    /// the link has ended (its connection closed): drop it.
    pub(crate) fn pump(&mut self, now: Instant, router: &mut Router) -> bool {
        loop {
            let mut moved = false;
            while let Some(b) = self.client.poll_transmit() {
                self.conn.handle_input(now, &b);
                moved = true;
            }
            while let Some(b) = self.conn.poll_transmit() {
                self.client.handle_input(now, &b);
                moved = true;
            }
            // A deferred credentials check runs inline: the router task has nowhere else.
            while let Some(check) = self.conn.poll_credentials() {
                self.conn.handle_credentials(now, check.run());
                moved = true;
            }
            while let Some(m) = self.conn.poll_mail() {
                router.handle_mail(now, m);
                moved = true;
            }
            while let Some(e) = self.conn.poll_event() {
                if let BrokerEvent::CloseTransport(_) = e {
                    self.client.handle_transport_closed(now);
                    self.conn.handle_transport_closed(now);
                    moved = true;
                }
            }
            while let Some(e) = self.client.poll_event() {
                if let Event::Disconnected { .. } = e {
                    self.conn.handle_transport_closed(now);
                    moved = true;
                }
                if self.events.try_send(e).is_err() && !self.events.is_closed() {
                    // Left unread past its cap: closed as too slow (its session stays).
                    self.client.handle_transport_closed(now);
                    self.conn.handle_transport_closed(now);
                    moved = true;
                }
            }
            if !moved {
                return !self.conn.is_closed();
            }
        }
    }

    /// The server is shutting down: the link ends (its last event says the transport
    /// closed); the router routes nothing more.
    pub(crate) fn shut_down(mut self, now: Instant) {
        self.conn.handle_transport_closed(now);
        self.client.handle_transport_closed(now);
        while let Some(e) = self.client.poll_event() {
            let _ = self.events.try_send(e);
        }
    }
}

/// A client in the broker's process, without a socket; clones drive the same link.
///
/// Its session and the broker's connection for it live in the router task (the router
/// thread on the blocking runtime), which moves their bytes by memory; calls are mail to the
/// router task, like the other requests of the [`BrokerHandle`], and its events come as a
/// stream. The broker serves it as any network client: the same session queue and its caps,
/// the same in-flight window, the same authorizer. Its events wait in a channel of
/// `BrokerOptions::max_outbound_batches` events; a link whose events are left unread past
/// that is closed as too slow, as a network connection whose mail backs up is (its session
/// stays, as its expiry says). A link does not reconnect and has no keep-alive.
#[derive(Debug, Clone)]
pub struct Link {
    handle: BrokerHandle,
    conn: ConnId,
}

impl BrokerHandle {
    /// Connects a link with `config` (its `reconnect` and `keep_alive` are turned off): the
    /// link, and its events (the CONNACK's outcome first).
    #[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
    pub async fn link(&self, config: ClientConfig) -> Result<(Link, Events), Error> {
        let (tx, rx) = reply_channel();
        let call = LinkCall::Connect(Box::new(config));
        self.tx
            .send(Control::Link(None, call, tx))
            .await
            .map_err(|_| Error::Stopped)?;
        let (conn, events) = match rx.recv().await.unwrap_or(Err(Error::Stopped))? {
            LinkAnswer::Started(conn, events) => (conn, events),
            LinkAnswer::Done(_) => return Err(Error::Stopped),
        };
        let link = Link {
            handle: self.clone(),
            conn,
        };
        Ok((link, Events::from_receiver(events)))
    }

    /// [`BrokerHandle::link`], blocking the thread.
    #[cfg(feature = "blocking")]
    pub fn link_blocking(&self, config: ClientConfig) -> Result<(Link, BlockingEvents), Error> {
        let (tx, rx) = reply_channel();
        let call = LinkCall::Connect(Box::new(config));
        self.tx
            .send_blocking(Control::Link(None, call, tx))
            .map_err(|_| Error::Stopped)?;
        match rx.recv_blocking().unwrap_or(Err(Error::Stopped))? {
            LinkAnswer::Started(conn, events) => Ok((
                Link {
                    handle: self.clone(),
                    conn,
                },
                BlockingEvents::from_receiver(events),
            )),
            LinkAnswer::Done(_) => Err(Error::Stopped),
        }
    }
}

impl Link {
    async fn call(&self, call: LinkCall) -> Result<Option<PacketId>, Error> {
        let (tx, rx) = reply_channel();
        self.handle
            .tx
            .send(Control::Link(Some(self.conn), call, tx))
            .await
            .map_err(|_| Error::Stopped)?;
        match rx.recv().await.unwrap_or(Err(Error::Stopped))? {
            LinkAnswer::Done(id) => Ok(id),
            LinkAnswer::Started(..) => Err(Error::Stopped),
        }
    }

    fn call_blocking(&self, call: LinkCall) -> Result<Option<PacketId>, Error> {
        let (tx, rx) = reply_channel();
        self.handle
            .tx
            .send_blocking(Control::Link(Some(self.conn), call, tx))
            .map_err(|_| Error::Stopped)?;
        match rx.recv_blocking().unwrap_or(Err(Error::Stopped))? {
            LinkAnswer::Done(id) => Ok(id),
            LinkAnswer::Started(..) => Err(Error::Stopped),
        }
    }

    /// Subscribes; its SUBACK arrives as `Event::Subscribed` with the returned identifier.
    pub async fn subscribe(&self, filters: Vec<Subscription>) -> Result<Option<PacketId>, Error> {
        self.call(LinkCall::Subscribe(filters)).await
    }

    /// [`Link::subscribe`], blocking the thread.
    pub fn subscribe_blocking(
        &self,
        filters: Vec<Subscription>,
    ) -> Result<Option<PacketId>, Error> {
        self.call_blocking(LinkCall::Subscribe(filters))
    }

    /// Publishes; a QoS 1/2 message's end arrives as `Event::Published` with the returned
    /// identifier (a full in-flight window is `ClientError::WindowFull`: wait for one).
    pub async fn publish(&self, publish: Publish) -> Result<Option<PacketId>, Error> {
        self.call(LinkCall::Publish(Box::new(publish))).await
    }

    /// [`Link::publish`], blocking the thread.
    pub fn publish_blocking(&self, publish: Publish) -> Result<Option<PacketId>, Error> {
        self.call_blocking(LinkCall::Publish(Box::new(publish)))
    }

    /// Acknowledges a message (with `manual_acks`).
    pub async fn ack(&self, token: AckToken) -> Result<(), Error> {
        self.call(LinkCall::Ack(token)).await.map(drop)
    }

    /// Disconnects (DISCONNECT 0x00: no will); its last event is `Event::Disconnected`.
    pub async fn disconnect(&self) -> Result<(), Error> {
        self.call(LinkCall::Disconnect).await.map(drop)
    }

    /// [`Link::disconnect`], blocking the thread.
    pub fn disconnect_blocking(&self) -> Result<(), Error> {
        self.call_blocking(LinkCall::Disconnect).map(drop)
    }
}
