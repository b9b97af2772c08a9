//! Events handed to a callback instead of read from a stream: the callback runs in a task of
//! its own on the async runtimes (a thread on the blocking one), one event at a time and in
//! order, and the next event is taken
//! only once the callback's future has finished. A slow callback therefore slows the client
//! down the way a slow reader of [`Events`] does: the event queue fills and the client stops
//! reading its socket (TCP backpressure to the broker); nothing is dropped.
//!
//! The callback may publish and acknowledge with a clone of the client it captured: `ack`
//! never waits, and `publish` returns once the message is queued (it waits only while both
//! the in-flight window and the command queue are full). Awaiting [`Pending::ack`](super::Pending::ack)
//! inside the callback is the one thing to avoid: the acknowledgement may sit behind the
//! very events the callback has not taken yet (spawn a task for that, or await it after the
//! callback returns).
//!
//! Prefer the stream ([`Events::recv`]) when the application already has a loop or a
//! `select!` of its own, or wants to await several things per event; prefer a callback when
//! each event is handled on its own (Paho's `on_message`).

#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
use std::future::Future;

#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
use super::{Client, Events, Runtime};
use crate::client::{Event, Message};

#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
impl<R: Runtime> Client<R> {
    /// Hands every event of `events` to `callback` in a task of its own, in order, one at a
    /// time (see the [module docs](self)); the task ends when the client has stopped and
    /// every event was handed over. Returns at once. Call it from within the runtime (it
    /// spawns a task, as `tokio::spawn` does).
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
        R::spawn(async move {
            while let Some(event) = events.recv().await {
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
        R::spawn(async move {
            while let Some(event) = events.recv().await {
                if let Event::Message(m) = event {
                    callback(m).await;
                }
            }
        });
    }
}

#[cfg(feature = "blocking")]
impl crate::runtimes::blocking::Client {
    /// Hands every event of `events` to `callback` on a thread of its own, in order, one at a
    /// time (see the [module docs](self)); the thread ends when the client has stopped and
    /// every event was handed over. The callback may publish (`Pending` tells how it ended
    /// without waiting: don't `wait` on it from the callback) and `ack` with a clone of the
    /// client.
    pub fn on_event(
        &self,
        events: super::BlockingEvents,
        mut callback: impl FnMut(Event) + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            for event in events {
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
        std::thread::spawn(move || {
            for event in events {
                if let Event::Message(m) = event {
                    callback(m);
                }
            }
        })
    }
}
