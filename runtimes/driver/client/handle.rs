//! The async client's handles: they share the session's core with its driver task.

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::client::{AckToken, ClientConfig, SessionState};
use crate::codec::{
    Auth, Disconnect, Publish, SubscribeProperties, Subscription, UnsubscribeProperties,
};
use crate::runtimes::driver::client::core::ClientCore;
use crate::runtimes::driver::client::options::ConnectOptions;
use crate::runtimes::driver::client::shared::{Shared, State};
use crate::runtimes::driver::client::task::{run, Transport};
use crate::runtimes::driver::client::Command;
use crate::runtimes::driver::transport::{self, Endpoint, TransportError};
use crate::runtimes::driver::{now, reply_channel, Events, Pending, Runtime, CLIENT_EVENTS};
use crate::runtimes::driver::{Error, SubAck};
use crate::TopicFilter;

/// A handle to a running client (any async runtime); clones share the session.
///
/// The session's driver runs in a task of its own: it reconnects with the configured
/// backoff and ends on [`Client::disconnect`] or when every handle is dropped.
pub struct Client<R> {
    shared: Arc<Shared>,
    runtime: PhantomData<fn() -> R>,
}

impl<R> Clone for Client<R> {
    fn clone(&self) -> Self {
        self.shared.lock().handles += 1;
        Client {
            shared: self.shared.clone(),
            runtime: PhantomData,
        }
    }
}

impl<R> Drop for Client<R> {
    fn drop(&mut self) {
        let waker = {
            let mut st = self.shared.lock();
            st.handles -= 1;
            if st.handles == 0 {
                st.work()
            } else {
                None
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<R> std::fmt::Debug for Client<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl<R: Runtime> Client<R> {
    /// Connects to `addr` and runs the session in a task; returns once the server accepted
    /// the first connection (a refusal or a failure before CONNACK is an error).
    pub async fn connect(addr: SocketAddr, config: ClientConfig) -> Result<(Self, Events), Error> {
        Self::connect_with(addr, config, ConnectOptions::new()).await
    }

    /// Connects to `endpoint` (a URL such as `mqtts://broker.example.com`, parsed with
    /// [`Endpoint::parse`], or a socket address) and runs the session in a task; returns
    /// once the server accepted the first connection. A host name is resolved on every
    /// connect and reconnect; a failure names its cause ([`Error::Transport`]).
    pub async fn connect_to(
        endpoint: impl Into<Endpoint>,
        config: ClientConfig,
    ) -> Result<(Self, Events), Error> {
        Self::connect_with(endpoint, config, ConnectOptions::new()).await
    }

    /// [`Client::connect_to`], resuming an exported session and/or answering enhanced
    /// authentication's AUTH challenges as `options` say.
    pub async fn connect_with(
        endpoint: impl Into<Endpoint>,
        config: ClientConfig,
        options: ConnectOptions,
    ) -> Result<(Self, Events), Error> {
        let connector = endpoint.into().connector()?;
        let deadline = now() + config.connect_timeout;
        let (reader, writer, link) = transport::open::<R>(&connector, deadline).await?;
        let (ready_tx, ready_rx) = reply_channel();
        let (ev_tx, ev_rx) = async_channel::bounded(CLIENT_EVENTS);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                core: ClientCore::start(config, options, ready_tx),
                driver: None,
                work: false,
                unsent: 0,
                handles: 1,
                ended: false,
                transport_error: None,
                stalled: false,
            }),
            room: event_listener::Event::new(),
        });
        // The handle exists before the driver starts, so a failed connect that drops it
        // stops the driver like any last handle.
        let client = Client {
            shared: shared.clone(),
            runtime: PhantomData,
        };
        let transport = Transport {
            reader,
            writer,
            link,
        };
        R::spawn(run::<R>(connector, shared.clone(), ev_tx, transport));
        match ready_rx.recv().await.unwrap_or(Err(Error::Stopped)) {
            Ok(()) => Ok((client, Events::from_receiver(ev_rx))),
            // A TLS or WebSocket failure says why, not only that the transport closed.
            Err(e @ Error::ConnectFailed(_)) => Err(shared
                .lock()
                .transport_error
                .take()
                .map_or(e, Error::Transport)),
            Err(e) => Err(e),
        }
    }

    /// Why the last transport failed or could not be opened (the host name did not
    /// resolve, the connection was refused, a certificate was rejected, ...): the cause
    /// behind the latest `Disconnected` event that says the transport closed. Taken.
    pub fn take_transport_error(&self) -> Option<TransportError> {
        self.shared.lock().transport_error.take()
    }

    /// Publishes; the returned [`Pending`] completes with the acknowledgement.
    ///
    /// The message is encoded for the socket at once when the in-flight window has room,
    /// or else queued behind it (the driver sends it as acknowledgements free the window);
    /// waits while [`CLIENT_COMMANDS`] commands are queued.
    ///
    /// [`CLIENT_COMMANDS`]: crate::runtimes::driver::CLIENT_COMMANDS
    pub async fn publish(&self, publish: Publish) -> Result<Pending, Error> {
        let (tx, rx) = reply_channel();
        self.send(Command::Publish(publish, tx)).await?;
        Ok(Pending::from_receiver(rx))
    }

    /// Subscribes and waits for the SUBACK.
    pub async fn subscribe(&self, filters: Vec<Subscription>) -> Result<SubAck, Error> {
        self.subscribe_with(filters, SubscribeProperties::default())
            .await
    }

    /// Subscribes with MQTT 5 properties and waits for the SUBACK.
    pub async fn subscribe_with(
        &self,
        filters: Vec<Subscription>,
        properties: SubscribeProperties,
    ) -> Result<SubAck, Error> {
        let (tx, rx) = reply_channel();
        self.send(Command::Subscribe(filters, properties, tx))
            .await?;
        rx.recv().await.unwrap_or(Err(Error::Stopped))
    }

    /// Unsubscribes and waits for the UNSUBACK.
    pub async fn unsubscribe(&self, filters: Vec<TopicFilter>) -> Result<SubAck, Error> {
        let (tx, rx) = reply_channel();
        let props = UnsubscribeProperties::default();
        self.send(Command::Unsubscribe(filters, props, tx)).await?;
        rx.recv().await.unwrap_or(Err(Error::Stopped))
    }

    /// Acknowledges a message received with [`ClientConfig::manual_acks`]: its token is
    /// in [`Message::ack`](crate::client::Message::ack).
    ///
    /// Never waits (the acknowledgement leaves with the driver's next write), so it may be
    /// called from the loop that reads [`Events`]. Acknowledgements go out in the order the
    /// messages arrived ([MQTT-4.6.0-2]). A token of a connection that has since ended is
    /// refused with [`ClientError::UnknownAckToken`](crate::error::ClientError): the
    /// server sends the message again. Until a message is acknowledged it holds a slot of
    /// the receive window; a token dropped unacknowledged is reported as
    /// [`Event::AckTokenDropped`].
    ///
    /// [`Event::AckTokenDropped`]: crate::client::Event::AckTokenDropped
    pub fn ack(&self, token: AckToken) -> Result<(), Error> {
        let waker = {
            let mut st = self.shared.lock();
            if st.ended {
                return Err(Error::Stopped);
            }
            st.core.ack(now(), token)?;
            st.work()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Sends AUTH (MQTT 5): the answer to an [`Event::Auth`] challenge of enhanced
    /// authentication, or a re-authentication (reason code Re-authenticate). Never waits.
    ///
    /// [`Event::Auth`]: crate::client::Event::Auth
    pub fn auth(&self, auth: Auth) -> Result<(), Error> {
        let waker = {
            let mut st = self.shared.lock();
            if st.ended {
                return Err(Error::Stopped);
            }
            st.core.auth(now(), auth)?;
            st.work()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// The session's state now (unfinished QoS 1/2 flows, subscriptions, the client id),
    /// to resume it in another process with [`ConnectOptions::with_session`]: a durable
    /// outbox. Never waits.
    pub fn session_state(&self) -> SessionState {
        self.shared.lock().core.session_state()
    }

    /// Sends DISCONNECT (normal), closes the transport and stops the driver.
    pub async fn disconnect(&self) -> Result<(), Error> {
        self.disconnect_with(Disconnect::default()).await
    }

    /// Sends this DISCONNECT (MQTT 5 reason code and properties), closes and stops.
    pub async fn disconnect_with(&self, disconnect: Disconnect) -> Result<(), Error> {
        let (tx, rx) = reply_channel();
        self.send(Command::Disconnect(disconnect, Some(tx))).await?;
        rx.recv().await.unwrap_or(Ok(()))
    }

    /// Gives `command` to the core (carried out or queued), waiting while the queue is
    /// full; wakes the driver when there is something to send or report.
    async fn send(&self, command: Command) -> Result<(), Error> {
        let mut command = Some(command);
        loop {
            let listener = {
                let mut st = self.shared.lock();
                if st.ended {
                    return Err(Error::Stopped);
                }
                if st.full() && st.stalled {
                    return Err(Error::EventsUnread);
                }
                if !st.full() {
                    let queued = st.core.queued();
                    if let Some(c) = command.take() {
                        st.core.command(now(), c);
                    }
                    // One that only joined the queue waits for the driver's next turn.
                    let waker = if st.core.queued() > queued {
                        None
                    } else {
                        st.unsent += 1;
                        st.work()
                    };
                    drop(st);
                    if let Some(w) = waker {
                        w.wake();
                    }
                    return Ok(());
                }
                // Listening before the lock is released: the driver's notice cannot fall
                // between the check and the wait.
                self.shared.room.listen()
            };
            listener.await;
        }
    }
}
