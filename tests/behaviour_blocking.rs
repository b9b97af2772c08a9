//! The behaviour suite on the blocking runtime (std::net and threads).

mod rt {
    use std::net::SocketAddr;
    use std::sync::mpsc;
    use std::thread::JoinHandle;
    use std::time::Duration;

    use tinymqtt::broker::BrokerConfig;
    use tinymqtt::broker::Router as Core;
    use tinymqtt::client::{ClientConfig, Event};
    use tinymqtt::codec::{Publish, Subscription};
    use tinymqtt::runtimes::blocking::{Client as Handle, Events, Server};
    use tinymqtt::runtimes::{Ack, BrokerHandle, BrokerOptions, Error, SubAck};
    use tinymqtt::TopicFilter;

    pub(crate) struct Broker {
        pub(crate) addr: SocketAddr,
        stop: BrokerHandle,
        done: JoinHandle<()>,
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
        let server = Server::bind_with(core, options, &["127.0.0.1:0".parse().unwrap()])?;
        let addr = server.local_addrs()[0];
        let stop = server.handle();
        let done = std::thread::spawn(move || server.run());
        Ok(Broker { addr, stop, done })
    }

    /// A broker around `core` (built with its authenticator and authorizer).
    pub(crate) fn broker_core(core: Core, options: BrokerOptions) -> Broker {
        let server = Server::bind_with(core, options, &["127.0.0.1:0".parse().unwrap()]).unwrap();
        let addr = server.local_addrs()[0];
        let stop = server.handle();
        let done = std::thread::spawn(move || server.run());
        Broker { addr, stop, done }
    }

    impl Broker {
        pub(crate) fn stats(&self) -> tinymqtt::broker::BrokerStats {
            self.stop.stats_blocking().unwrap()
        }

        pub(crate) fn shutdown(self) {
            self.stop.shutdown();
            self.done.join().unwrap();
        }
    }

    pub(crate) struct Client {
        handle: Handle,
        events: Result<mpsc::Receiver<Event>, Events>,
    }

    /// A client whose events are only read when the test asks for them.
    pub(crate) fn connect_unread(addr: SocketAddr, config: ClientConfig) -> Result<Client, Error> {
        let (handle, events) = Handle::connect(addr, config)?;
        Ok(Client {
            handle,
            events: Err(events),
        })
    }

    pub(crate) fn connect(addr: SocketAddr, config: ClientConfig) -> Result<Client, Error> {
        connect_with(addr, config, tinymqtt::runtimes::ConnectOptions::new())
    }

    pub(crate) fn connect_with(
        addr: SocketAddr,
        config: ClientConfig,
        options: tinymqtt::runtimes::ConnectOptions,
    ) -> Result<Client, Error> {
        let (handle, events) = Handle::connect_with(addr, config, options)?;
        // The events iterator on a thread, so waits can time out.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let events: Events = events;
            for e in events {
                if tx.send(e).is_err() {
                    return;
                }
            }
        });
        Ok(Client {
            handle,
            events: Ok(rx),
        })
    }

    impl Client {
        pub(crate) fn publish(&self, p: Publish) -> Result<Ack, Error> {
            self.handle.publish(p)?.wait()
        }

        pub(crate) fn publish_many(&self, ps: Vec<Publish>) -> Vec<Ack> {
            let pending: Vec<_> = ps
                .into_iter()
                .map(|p| self.handle.publish(p).unwrap())
                .collect();
            pending.into_iter().map(|p| p.wait().unwrap()).collect()
        }

        /// Publishes each without waiting for its acknowledgement; the first error ends it.
        pub(crate) fn publish_all(&self, ps: Vec<Publish>) -> Result<usize, Error> {
            let mut pending = Vec::new();
            for p in ps {
                pending.push(self.handle.publish(p)?);
            }
            Ok(pending.len())
        }

        pub(crate) fn subscribe(&self, s: Vec<Subscription>) -> Result<SubAck, Error> {
            self.handle.subscribe(s)
        }

        pub(crate) fn unsubscribe(&self, f: Vec<TopicFilter>) -> Result<SubAck, Error> {
            self.handle.unsubscribe(f)
        }

        pub(crate) fn next_event(&self, wait: Duration) -> Option<Event> {
            match &self.events {
                Ok(rx) => rx.recv_timeout(wait).ok(),
                Err(events) => events.recv_timeout(wait),
            }
        }

        pub(crate) fn ack(&self, token: tinymqtt::client::AckToken) -> Result<(), Error> {
            self.handle.ack(token)
        }

        /// Publishes; the packet id the `Pending` told before its acknowledgement, and the ack.
        #[allow(clippy::disallowed_methods)] // real sockets run on real time
        pub(crate) fn publish_telling_id(
            &self,
            p: Publish,
        ) -> Result<(Option<tinymqtt::PacketId>, Ack), Error> {
            let qos = p.qos;
            let pending = self.handle.publish(p)?;
            // The session thread takes the publish after the call returns: the id shows up
            // then, before (or at the latest with) its acknowledgement.
            let end = std::time::Instant::now() + Duration::from_secs(5);
            while qos != tinymqtt::QoS::AtMostOnce
                && pending.packet_id().is_none()
                && std::time::Instant::now() < end
            {
                std::thread::yield_now();
            }
            let id = pending.packet_id();
            Ok((id, pending.wait()?))
        }

        pub(crate) fn auth(&self, auth: tinymqtt::codec::Auth) -> Result<(), Error> {
            self.handle.auth(auth)
        }

        pub(crate) fn session_state(&self) -> tinymqtt::client::SessionState {
            self.handle.session_state().unwrap()
        }

        pub(crate) fn disconnect(self) {
            self.handle.disconnect().unwrap();
        }
    }
}

#[path = "behaviour/mod.rs"]
mod behaviour;
#[path = "support/interop.rs"]
mod peers;
