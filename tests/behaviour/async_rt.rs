// The behaviour suite's `rt` shim for an async runtime, written once: `include!`d inside
// `mod rt` by `tests/behaviour_{tokio,smol,async_std}.rs`, each of which first defines
// `type Rt` (the runtime's driver binding) and `fn run<F: Future>(f: F) -> F::Output` (its
// `block_on`). Everything else here goes through the driver's `Runtime` trait.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::future;
use tinymqtt::broker::Router as Core;
use tinymqtt::broker::BrokerConfig;
use tinymqtt::client::{ClientConfig, Event};
use tinymqtt::codec::{Publish, Subscription};
use tinymqtt::runtimes::driver::{Client as Handle, Runtime, Server};
use tinymqtt::runtimes::{Ack, BrokerHandle, BrokerOptions, Error, Events, SubAck};
use tinymqtt::TopicFilter;

/// `f`, or `None` after `wait`.
async fn timeout<T>(wait: Duration, f: impl Future<Output = T>) -> Option<T> {
    #[allow(clippy::disallowed_methods)] // real sockets run on real time
    let deadline = std::time::Instant::now() + wait;
    future::or(async { Some(f.await) }, async {
        Rt::sleep_until(deadline).await;
        None
    })
    .await
}

/// Runs `f` to completion on the runtime; a test that waits longer than 10 s fails.
fn block_on<F: Future>(f: F) -> F::Output {
    run(timeout(Duration::from_secs(10), f)).expect("timed out")
}

pub(crate) struct Broker {
    pub(crate) addr: SocketAddr,
    stop: BrokerHandle,
    done: async_channel::Receiver<()>,
}

pub(crate) fn broker(config: BrokerConfig) -> Broker {
    broker_with(config, BrokerOptions::default())
}

pub(crate) fn broker_with(config: BrokerConfig, options: BrokerOptions) -> Broker {
    try_broker_with(config, options).unwrap()
}

/// A broker, or why it could not start (a store it cannot read, say).
pub(crate) fn try_broker_with(
    config: BrokerConfig,
    options: BrokerOptions,
) -> std::io::Result<Broker> {
    try_broker_core(Core::new(config), options)
}

/// A broker around this core (with its authenticator, say).
fn try_broker_core(core: Core, options: BrokerOptions) -> std::io::Result<Broker> {
    block_on(async {
        let server =
            Server::<Rt>::bind_with(core, options, &["127.0.0.1:0".parse().unwrap()]).await?;
        let addr = server.local_addrs()[0];
        let stop = server.handle();
        let (tx, done) = async_channel::bounded(1);
        Rt::spawn(async move {
            server.run().await;
            let _ = tx.send(()).await;
        });
        Ok(Broker { addr, stop, done })
    })
}

/// A broker around `core` (built with its authenticator and authorizer).
pub(crate) fn broker_core(core: Core, options: BrokerOptions) -> Broker {
    block_on(async {
        let server = Server::<Rt>::bind_with(core, options, &["127.0.0.1:0".parse().unwrap()])
            .await
            .unwrap();
        let addr = server.local_addrs()[0];
        let stop = server.handle();
        let (tx, done) = async_channel::bounded(1);
        Rt::spawn(async move {
            server.run().await;
            let _ = tx.send(()).await;
        });
        Broker { addr, stop, done }
    })
}

impl Broker {
    pub(crate) fn stats(&self) -> tinymqtt::broker::BrokerStats {
        self.stop.stats_blocking().unwrap()
    }

    /// Shuts the broker down and waits until its `run` returned.
    pub(crate) fn shutdown(self) {
        self.stop.shutdown();
        block_on(self.done.recv()).expect("the broker's run returned");
    }
}

pub(crate) struct Client {
    handle: Handle<Rt>,
    events: Events,
}

/// A client whose events are only read when the test asks for them.
pub(crate) fn connect_unread(addr: SocketAddr, config: ClientConfig) -> Result<Client, Error> {
    connect(addr, config)
}

pub(crate) fn connect(addr: SocketAddr, config: ClientConfig) -> Result<Client, Error> {
    connect_with(addr, config, tinymqtt::runtimes::ConnectOptions::new())
}

pub(crate) fn connect_with(
    addr: SocketAddr,
    config: ClientConfig,
    options: tinymqtt::runtimes::ConnectOptions,
) -> Result<Client, Error> {
    let (handle, events) = block_on(Handle::<Rt>::connect_with(addr, config, options))?;
    Ok(Client { handle, events })
}

impl Client {
    pub(crate) fn publish(&self, p: Publish) -> Result<Ack, Error> {
        block_on(async { self.handle.publish(p).await?.ack().await })
    }

    pub(crate) fn publish_many(&self, ps: Vec<Publish>) -> Vec<Ack> {
        block_on(async {
            let mut pending = Vec::new();
            for p in ps {
                pending.push(self.handle.publish(p).await.unwrap());
            }
            let mut acks = Vec::new();
            for p in pending {
                acks.push(p.ack().await.unwrap());
            }
            acks
        })
    }

    /// Publishes each without waiting for its acknowledgement; the first error ends it.
    pub(crate) fn publish_all(&self, ps: Vec<Publish>) -> Result<usize, Error> {
        block_on(async {
            let mut pending = Vec::new();
            for p in ps {
                pending.push(self.handle.publish(p).await?);
            }
            Ok(pending.len())
        })
    }

    pub(crate) fn subscribe(&self, s: Vec<Subscription>) -> Result<SubAck, Error> {
        block_on(self.handle.subscribe(s))
    }

    pub(crate) fn unsubscribe(&self, f: Vec<TopicFilter>) -> Result<SubAck, Error> {
        block_on(self.handle.unsubscribe(f))
    }

    pub(crate) fn next_event(&self, wait: Duration) -> Option<Event> {
        run(timeout(wait, self.events.recv())).flatten()
    }

    pub(crate) fn ack(&self, token: tinymqtt::client::AckToken) -> Result<(), Error> {
        self.handle.ack(token)
    }

    /// Publishes; the packet id the `Pending` told before its acknowledgement, and the ack.
    pub(crate) fn publish_telling_id(
        &self,
        p: Publish,
    ) -> Result<(Option<tinymqtt::PacketId>, Ack), Error> {
        block_on(async {
            let pending = self.handle.publish(p).await?;
            let id = pending.packet_id();
            Ok((id, pending.ack().await?))
        })
    }

    pub(crate) fn auth(&self, auth: tinymqtt::codec::Auth) -> Result<(), Error> {
        self.handle.auth(auth)
    }

    pub(crate) fn session_state(&self) -> tinymqtt::client::SessionState {
        self.handle.session_state()
    }

    pub(crate) fn disconnect(self) {
        block_on(self.handle.disconnect()).unwrap();
    }
}
