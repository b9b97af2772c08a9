//! `BrokerOptions`' chainable setters.

use std::path::PathBuf;
use std::time::Duration;

use super::options::CheckCredentials;
use super::options::Fsync;
use crate::runtimes::driver::options::{BrokerOptions, EventHook, TransportHook};

/// Chainable setters, so that a field added later is not a breaking change for code that builds a
/// [`BrokerOptions`] from its default (`BrokerOptions::default().with_persistence(Some(dir))`).
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

    /// Sets [`BrokerOptions::check_threads`].
    pub fn with_check_threads(mut self, check_threads: usize) -> BrokerOptions {
        self.check_threads = check_threads;
        self
    }

    /// Sets [`BrokerOptions::max_pending_checks`].
    pub fn with_max_pending_checks(mut self, max_pending_checks: usize) -> BrokerOptions {
        self.max_pending_checks = max_pending_checks;
        self
    }

    /// Sets [`BrokerOptions::check_credentials`].
    pub fn with_check_credentials(
        mut self,
        check_credentials: Option<CheckCredentials>,
    ) -> BrokerOptions {
        self.check_credentials = check_credentials;
        self
    }

    /// Sets [`BrokerOptions::on_transport_error`].
    pub fn with_on_transport_error(
        mut self,
        on_transport_error: Option<TransportHook>,
    ) -> BrokerOptions {
        self.on_transport_error = on_transport_error;
        self
    }

    /// Sets [`BrokerOptions::metrics_listener`].
    pub fn with_metrics_listener(
        mut self,
        metrics_listener: Option<std::net::SocketAddr>,
    ) -> BrokerOptions {
        self.metrics_listener = metrics_listener;
        self
    }

    /// Sets [`BrokerOptions::cluster`].
    #[cfg(feature = "cluster")]
    pub fn with_cluster(
        mut self,
        cluster: Option<crate::runtimes::cluster::ClusterConfig>,
    ) -> BrokerOptions {
        self.cluster = cluster;
        self
    }
}
