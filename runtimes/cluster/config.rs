//! A node's place in a cluster: the NATS servers, its name, the subject prefix, the cap
//! on what waits for NATS.

/// Why a [`ClusterConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterConfigError {
    /// No NATS server.
    #[error("cluster: nats names no server")]
    NoServer,
    /// A NATS URL that does not parse.
    #[error("cluster: {url:?} is not a NATS URL: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// The NATS client's reason.
        reason: String,
    },
    /// An empty node id, or one with `.`, `*`, `>`, `/`, `\`, white space or control
    /// characters (it names the node's JetStream consumer and travels in a NATS header).
    #[error("cluster: node_id must be non-empty, without '.', '*', '>', '/', '\\' or spaces")]
    NodeId,
    /// A prefix that is not one NATS subject token and stream name (empty, or with `.`,
    /// `*`, `>`, `/`, `\`, white space or control characters).
    #[error(
        "cluster: prefix must be one NATS subject token (no '.', '*', '>', '/', '\\' or spaces)"
    )]
    Prefix,
    /// `max_pending` is 0.
    #[error("cluster: max_pending must be at least 1")]
    MaxPending,
}

/// A node's place in a cluster: where its NATS servers are and its name among the nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// The NATS servers' URLs (`nats://host:4222`, `tls://...`; credentials as NATS takes
    /// them in the URL): one is enough, the client learns the others from it.
    pub nats: Vec<String>,
    /// This node's name, unique in the cluster: the origin header of what it publishes.
    pub node_id: String,
    /// The first subject token of everything the cluster publishes (one per cluster sharing
    /// a NATS system).
    pub prefix: String,
    /// Messages and interest changes the router may have handed the link and NATS not yet
    /// taken (while NATS is unreachable, say). Past it a QoS 0 message is dropped and
    /// counted; a QoS 1/2 message and an interest change are kept (publishers' windows bound
    /// the first, the subscription limits the second).
    pub max_pending: usize,
}

impl ClusterConfig {
    /// The default prefix.
    pub const DEFAULT_PREFIX: &'static str = "tinymqtt";

    /// A node named `node_id` on the NATS servers `nats`, with the default prefix and
    /// 10,000 pending messages.
    pub fn new(nats: Vec<String>, node_id: impl Into<String>) -> ClusterConfig {
        ClusterConfig {
            nats,
            node_id: node_id.into(),
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            max_pending: 10_000,
        }
    }

    /// Checks what the link will need: at least one URL, each a NATS URL; a node id and a
    /// prefix fit for NATS.
    pub fn check(&self) -> Result<(), ClusterConfigError> {
        if self.nats.is_empty() {
            return Err(ClusterConfigError::NoServer);
        }
        for url in &self.nats {
            if let Err(e) = url.parse::<async_nats::ServerAddr>() {
                return Err(ClusterConfigError::Url {
                    url: url.clone(),
                    reason: e.to_string(),
                });
            }
        }
        // One NATS token, fit for a stream or consumer name too.
        let token = |s: &str| {
            !s.is_empty()
                && !s.chars().any(|c| {
                    c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\')
                })
        };
        if !token(&self.node_id) {
            return Err(ClusterConfigError::NodeId);
        }
        if !token(&self.prefix) {
            return Err(ClusterConfigError::Prefix);
        }
        if self.max_pending == 0 {
            return Err(ClusterConfigError::MaxPending);
        }
        Ok(())
    }

    /// Sets [`ClusterConfig::prefix`].
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> ClusterConfig {
        self.prefix = prefix.into();
        self
    }

    /// Sets [`ClusterConfig::max_pending`].
    pub fn with_max_pending(mut self, max_pending: usize) -> ClusterConfig {
        self.max_pending = max_pending;
        self
    }
}
