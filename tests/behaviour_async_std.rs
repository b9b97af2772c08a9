//! The behaviour suite on the async-std runtime.

mod rt {
    use std::future::Future;
    use std::net::SocketAddr;
    use std::time::Duration;

    use futures_lite::future;
    use tinymqtt::broker::Broker as Core;
    use tinymqtt::broker::BrokerConfig;
    use tinymqtt::client::{ClientConfig, Event};
    use tinymqtt::codec::{Publish, Subscription};
    use tinymqtt::runtimes::async_std::{Broker as Server, Client as Handle};
    use tinymqtt::runtimes::{Ack, BrokerHandle, BrokerOptions, Error, Events, SubAck};
    use tinymqtt::TopicFilter;

    /// `f`, or `None` after `wait`.
    async fn timeout<T>(wait: Duration, f: impl Future<Output = T>) -> Option<T> {
        future::or(async { Some(f.await) }, async {
            async_std::task::sleep(wait).await;
            None
        })
        .await
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        async_std::task::block_on(timeout(Duration::from_secs(10), f)).expect("timed out")
    }

    pub(crate) struct Broker {
        pub(crate) addr: SocketAddr,
        stop: BrokerHandle,
        done: async_std::task::JoinHandle<()>,
    }

    pub(crate) fn broker(config: BrokerConfig) -> Broker {
        broker_with(config, BrokerOptions::default())
    }

    pub(crate) fn broker_with(config: BrokerConfig, options: BrokerOptions) -> Broker {
        block_on(async {
            let server = Server::bind_with(
                Core::new(config),
                options,
                &["127.0.0.1:0".parse().unwrap()],
            )
            .await
            .unwrap();
            let addr = server.local_addrs()[0];
            let stop = server.handle();
            let done = async_std::task::spawn(server.run());
            Broker { addr, stop, done }
        })
    }

    impl Broker {
        pub(crate) fn stats(&self) -> tinymqtt::broker::BrokerStats {
            self.stop.stats_blocking().unwrap()
        }

        pub(crate) fn shutdown(self) {
            self.stop.shutdown();
            block_on(self.done);
        }
    }

    pub(crate) struct Client {
        handle: Handle,
        events: Events,
    }

    pub(crate) fn connect(addr: SocketAddr, config: ClientConfig) -> Result<Client, Error> {
        let (handle, events) = block_on(Handle::connect(addr, config))?;
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

        pub(crate) fn subscribe(&self, s: Vec<Subscription>) -> Result<SubAck, Error> {
            block_on(self.handle.subscribe(s))
        }

        pub(crate) fn unsubscribe(&self, f: Vec<TopicFilter>) -> Result<SubAck, Error> {
            block_on(self.handle.unsubscribe(f))
        }

        pub(crate) fn next_event(&self, wait: Duration) -> Option<Event> {
            async_std::task::block_on(timeout(wait, self.events.recv())).flatten()
        }

        pub(crate) fn disconnect(self) {
            block_on(self.handle.disconnect()).unwrap();
        }
    }
}

#[path = "behaviour/mod.rs"]
mod behaviour;
#[path = "support/interop.rs"]
mod peers;
