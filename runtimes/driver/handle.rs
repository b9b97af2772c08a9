//! `BrokerHandle`: controls a running broker from outside.

use crate::broker::BrokerStats;
use crate::runtimes::driver::{reply_channel, Error, Reply};

/// Controls a running broker: its statistics and its graceful shutdown; clones control the
/// same broker.
#[derive(Debug, Clone)]
pub struct BrokerHandle {
    pub(crate) tx: async_channel::Sender<Control>,
}

/// What a [`BrokerHandle`] asks the router; closing the channel is the shutdown.
#[derive(Debug)]
pub(crate) enum Control {
    /// Answer with the counters.
    Stats(Reply<BrokerStats>),
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
