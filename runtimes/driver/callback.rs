//! Events handed to a callback instead of read from a stream: the callback runs in a task of
//! its own on the async runtimes (a thread on the blocking one), one event at a time and in
//! order (the next is handed over once the callback, or its future, has finished). A slow
//! callback slows the client down the way a slow reader of [`Events`] does:
//! once its backlog and the client's event queue are full, the client stops reading its
//! socket (TCP backpressure to the broker); nothing is dropped.
//!
//! The callback may publish and acknowledge with a clone of the client it captured, and
//! await `publish` (which waits only while the in-flight window and the command queue are
//! full): while the callback waits, its runner keeps taking events into a backlog of its own
//! (at most [`CALLBACK_EVENTS`]), so the client keeps reading its socket and the
//! acknowledgements behind those events arrive. Only a callback that waits on the client
//! while more than [`CLIENT_EVENTS`](super::CLIENT_EVENTS) + [`CALLBACK_EVENTS`] events are
//! ahead of what it waits for can stall; it then hears
//! [`Error::EventsUnread`](super::Error::EventsUnread) after
//! [`EVENTS_STALL`](super::EVENTS_STALL), it does not hang. Awaiting
//! [`Pending::ack`](super::Pending::ack) from the callback counts as such a wait: prefer to
//! let the acknowledgement complete on its own.
//!
//! Prefer the stream ([`Events::recv`]) when the application already has a loop or a
//! `select!` of its own, or wants to await several things per event; prefer a callback when
//! each event is handled on its own (Paho's `on_message`).

#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
use std::future::Future;

/// Events a callback's runner takes ahead while the callback runs (beyond the client's own
/// [`CLIENT_EVENTS`](super::CLIENT_EVENTS)); when both are full the client stops reading.
pub const CALLBACK_EVENTS: usize = 1024;

#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
use super::{Client, Events, Runtime};
use crate::client::{Event, Message};

#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
impl<R: Runtime> Client<R> {
    /// Hands every event of `events` to `callback` in a task of its own, in order, one at a
    /// time (see [the module](crate::runtimes::driver::callback)); the task ends when the
    /// client has stopped and every event was handed over. Returns at once. Call it from
    /// within the runtime (it spawns a task, as `tokio::spawn` does).
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// use tinymqtt::client::{ClientConfig, Event};
    /// use tinymqtt::codec::{Publish, Subscription};
    /// use tinymqtt::runtimes::tokio::Client;
    /// use tinymqtt::{ProtocolVersion, QoS, TopicFilter, TopicName};
    ///
    /// let config = ClientConfig::new(ProtocolVersion::V5, "echo".try_into()?);
    /// let (client, events) = Client::connect("127.0.0.1:1883".parse()?, config).await?;
    /// let replies = client.clone();
    /// client.on_message(events, move |m| {
    ///     let replies = replies.clone();
    ///     async move {
    ///         // Echo every request to `reply/...`: publishing from the callback is fine.
    ///         let topic = format!("reply/{}", m.publish.topic);
    ///         let echo = Publish::new(TopicName::new(&topic).unwrap(), m.publish.payload)
    ///             .with_qos(QoS::AtLeastOnce);
    ///         let _ = replies.publish(echo).await;
    ///     }
    /// });
    /// let requests = TopicFilter::new("request/#")?;
    /// client.subscribe(vec![Subscription::new(requests, QoS::AtLeastOnce)]).await?;
    /// # Ok(()) }
    /// ```
    pub fn on_event<F, Fut>(&self, events: Events, mut callback: F)
    where
        F: FnMut(Event) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let backlog = backlog::<R>(events);
        R::spawn(async move {
            while let Ok(event) = backlog.recv().await {
                callback(event).await;
            }
        });
    }

    /// [`Client::on_event`] for the messages only (the other events are let go): Paho's
    /// `on_message`. With manual acknowledgements, acknowledge each message's token from
    /// the callback ([`Client::ack`]).
    pub fn on_message<F, Fut>(&self, events: Events, mut callback: F)
    where
        F: FnMut(Message) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let backlog = backlog::<R>(events);
        R::spawn(async move {
            while let Ok(event) = backlog.recv().await {
                if let Event::Message(m) = event {
                    callback(m).await;
                }
            }
        });
    }
}

/// The events of `events`, taken ahead into a backlog of [`CALLBACK_EVENTS`] by a task of
/// their own while the callback runs.
#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
fn backlog<R: Runtime>(events: Events) -> async_channel::Receiver<Event> {
    let (tx, rx) = async_channel::bounded(CALLBACK_EVENTS);
    R::spawn(async move {
        while let Some(event) = events.recv().await {
            if tx.send(event).await.is_err() {
                return;
            }
        }
    });
    rx
}

#[cfg(feature = "blocking")]
impl crate::runtimes::blocking::Client {
    /// Hands every event of `events` to `callback` on a thread of its own, in order, one at a
    /// time (see [the module](crate::runtimes::driver::callback)); the thread ends when the
    /// client has stopped and every event was handed over. The callback may publish and
    /// `ack` with a clone of the client (a publish's `Pending::wait` from the callback is a
    /// wait on the client, see the module docs).
    pub fn on_event(
        &self,
        events: super::BlockingEvents,
        mut callback: impl FnMut(Event) + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        let backlog = blocking_backlog(events);
        std::thread::spawn(move || {
            for event in backlog {
                callback(event);
            }
        })
    }

    /// [`on_event`](crate::runtimes::blocking::Client::on_event) for the messages only (the
    /// other events are let go): Paho's `on_message`.
    pub fn on_message(
        &self,
        events: super::BlockingEvents,
        mut callback: impl FnMut(Message) + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        let backlog = blocking_backlog(events);
        std::thread::spawn(move || {
            for event in backlog {
                if let Event::Message(m) = event {
                    callback(m);
                }
            }
        })
    }
}

/// The events of `events`, taken ahead into a backlog of [`CALLBACK_EVENTS`] by a thread of
/// their own while the callback runs.
#[cfg(feature = "blocking")]
fn blocking_backlog(events: super::BlockingEvents) -> std::sync::mpsc::Receiver<Event> {
    let (tx, rx) = std::sync::mpsc::sync_channel(CALLBACK_EVENTS);
    std::thread::spawn(move || {
        for event in events {
            if tx.send(event).is_err() {
                return;
            }
        }
    });
    rx
}
