//! `BrokerOptions`' chainable setters.

use std::path::PathBuf;
use std::time::Duration;

use super::broker::{BrokerOptions, EventHook};
use super::writer::Fsync;

/// Chainable setters, so that a field added later is not a breaking change for code
/// that builds a [`BrokerOptions`] from its default (`BrokerOptions::default().with_persistence(Some(dir))`).
/// ```
/// use std::time::Duration;
/// use tinymqtt::runtimes::BrokerOptions;
///
/// let options = BrokerOptions::default().with_shutdown_grace(Duration::from_secs(1));
/// assert_eq!(options.shutdown_grace, Duration::from_secs(1));
/// ```
impl BrokerOptions {
    /// Sets [`BrokerOptions::max_outbound_batches`].
    pub fn with_max_outbound_batches(mut self, max_outbound_batches: usize) -> BrokerOptions {
        self.max_outbound_batches = max_outbound_batches;
        self
    }

    /// Sets [`BrokerOptions::max_outbound_bytes`].
    pub fn with_max_outbound_bytes(mut self, max_outbound_bytes: usize) -> BrokerOptions {
        self.max_outbound_bytes = max_outbound_bytes;
        self
    }

    /// Sets [`BrokerOptions::shutdown_grace`].
    pub fn with_shutdown_grace(mut self, shutdown_grace: Duration) -> BrokerOptions {
        self.shutdown_grace = shutdown_grace;
        self
    }

    /// Sets [`BrokerOptions::on_event`].
    pub fn with_on_event(mut self, on_event: Option<EventHook>) -> BrokerOptions {
        self.on_event = on_event;
        self
    }

    /// Sets [`BrokerOptions::persistence`].
    pub fn with_persistence(mut self, persistence: Option<PathBuf>) -> BrokerOptions {
        self.persistence = persistence;
        self
    }

    /// Sets [`BrokerOptions::fsync`].
    pub fn with_fsync(mut self, fsync: Fsync) -> BrokerOptions {
        self.fsync = fsync;
        self
    }
}
