//! `BrokerHandle`: controls a running broker from outside.

use crate::broker::{BrokerStats, ConnId};
use crate::client::{AckToken, ClientConfig, Event};
use crate::codec::{Publish, Subscription};
use crate::runtimes::driver::{reply_channel, Error, Reply};
use crate::PacketId;

/// Controls a running broker: its statistics, its graceful shutdown, and the application's
/// requests (publish into it, list and kick clients, remove sessions: see `admin`); clones
/// control the same broker.
#[derive(Debug, Clone)]
pub struct BrokerHandle {
    pub(crate) tx: async_channel::Sender<Control>,
}

/// What a [`BrokerHandle`] asks the router; closing the channel is the shutdown.
#[derive(Debug)]
pub(crate) enum Control {
    /// Answer with the counters.
    Stats(Reply<BrokerStats>),
    /// A request of the application (publish, list, kick, remove): answered by the router
    /// once it answers (see `admin`). Boxed: a publish is large, and rare next to stats.
    Admin(
        Box<crate::broker::AdminRequest>,
        Reply<crate::broker::AdminReply>,
    ),
    /// A link's call (a new link's connect without a connection yet).
    Link(Option<ConnId>, LinkCall, Reply<LinkAnswer>),
}

/// What a link asks of its session (see `link`).
#[derive(Debug)]
pub(crate) enum LinkCall {
    Connect(Box<ClientConfig>),
    Subscribe(Vec<Subscription>),
    Publish(Box<Publish>),
    Ack(AckToken),
    Disconnect,
}

/// What the router task answers a link's call with.
#[derive(Debug)]
pub(crate) enum LinkAnswer {
    Started(ConnId, async_channel::Receiver<Event>),
    Done(Option<PacketId>),
}

impl BrokerHandle {
    /// A handle and the router's end of it.
    pub(crate) fn new() -> (BrokerHandle, async_channel::Receiver<Control>) {
        let (tx, rx) = async_channel::bounded(16);
        (BrokerHandle { tx }, rx)
    }

    /// Starts the graceful shutdown: DISCONNECT 0x8B to MQTT 5 clients, no wills, then the
    /// broker's `run` returns.
    pub fn shutdown(&self) {
        self.tx.close();
    }

    /// Whether the shutdown was triggered.
    pub fn is_shut_down(&self) -> bool {
        self.tx.is_closed()
    }

    /// The broker's counters (connections, sessions, subscriptions, retained, messages).
    pub async fn stats(&self) -> Result<BrokerStats, Error> {
        let (tx, rx) = reply_channel();
        self.tx
            .send(Control::Stats(tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.recv().await.unwrap_or(Err(Error::Stopped))
    }

    /// The broker's counters, blocking the thread.
    pub fn stats_blocking(&self) -> Result<BrokerStats, Error> {
        let (tx, rx) = reply_channel();
        self.tx
            .send_blocking(Control::Stats(tx))
            .map_err(|_| Error::Stopped)?;
        rx.recv_blocking().unwrap_or(Err(Error::Stopped))
    }
}
