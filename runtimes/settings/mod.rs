//! The broker's settings file: TOML with mosquitto.conf's names, checked whole before the
//! broker starts.
//!
//! [`Settings::from_toml`] parses and checks the text; [`Settings::load`] reads a file, takes
//! relative paths as relative to its folder and reads the password, ACL and certificate files
//! it names, so that every mistake is found before the broker binds. Each mistake is a
//! [`SettingsError`] naming the key and the reason ([`Invalid`]), shown as
//! `FILE:LINE:COLUMN: reason`. What the settings make: [`Settings::config`] (the core's
//! [`BrokerConfig`]), [`Settings::options`] (the runtime's [`BrokerOptions`]),
//! [`Settings::listeners`] and, from the password and ACL files, the authenticator and
//! authorizer of [`Settings::broker`].
//!
//! Every key is optional:
//!
//! ```toml
//! listeners = ["127.0.0.1:1883", "127.0.0.1:1884"]
//! allow_anonymous = false          # the default with a password_file (true without)
//! use_username_as_clientid = false # the user name is the client id (no user name: refused)
//! allow_takeover_by_other_user = false # another user may take a session over (Mosquitto)
//! password_file = "passwd"         # mosquitto_passwd's format
//! acl_file = "acl"                 # Mosquitto's acl_file format
//! max_connections = -1             # -1: no limit
//! max_queued_messages = 1000       # per session; 0: no limit
//! max_queued_bytes = 67108864      # per session; 0: no limit
//! max_inflight_messages = 100      # towards 3.1.x clients; 0: no limit
//! message_size_limit = 1048576     # the largest packet; 0: MQTT's maximum
//! max_packet_size = 1048576        # the same; with both, the smaller wins
//! max_keepalive = 65535
//! max_topic_alias = 10
//! sys_interval = 10                # seconds; 0 turns $SYS off
//! metrics_listener = "127.0.0.1:9090" # Prometheus GET /metrics here (off without it)
//! memory_limit = 0                 # bytes the broker may hold; 0: no limit
//! persistent_client_expiration = "14d" # seconds, or a count with h, d, w, m (30 d) or y
//! reason_strings = true            # reason strings in MQTT 5 refusals
//! no_matching_subscribers = true   # PUBACK/PUBREC 0x10 when nobody subscribed (MQTT 5)
//! persistence_location = "data"    # where state is kept across restarts
//!                                  # (or persistence = "data"; persistence = false: off)
//! fsync = "always"                 # "always": acknowledge only what is synced to disk;
//!                                  # "interval": acknowledge at once, sync periodically
//! autosave_interval = 1            # seconds between syncs with fsync = "interval"
//!
//! [[listener]]                     # one table per listener, beside `listeners`
//! bind = "0.0.0.0:8883"
//! protocol = "mqtt"                # or "websockets"
//! certfile = "server.pem"          # TLS when certfile + keyfile are given
//! keyfile = "server.key"
//! cafile = "ca.pem"                # client certificates are checked against it
//! require_certificate = false
//! use_identity_as_username = false # the certificate's CN becomes the user name
//!
//! [limits]                         # what mosquitto.conf has no name for
//! receive_maximum = 100
//! max_client_id_len = 65535
//! max_subscriptions_per_client = 10000
//! connect_timeout_secs = 10
//! await_rel_timeout_secs = 300     # a QoS 2 packet id waits this long for its PUBREL
//! max_outbound_bytes = 8388608     # a connection queued more is closed as too slow
//! max_retained_messages = 0        # 0: no limit
//! max_retained_bytes = 0
//! max_sessions = 0
//! max_subscribe_filters = 0
//! max_connect_size = 0             # the largest CONNECT before it is accepted; 0: MQTT's
//!
//! [cluster]                        # a node of a cluster over NATS (the `cluster` feature)
//! nats = ["nats://127.0.0.1:4222"] # one or more NATS servers (JetStream on)
//! node_id = "a"                    # unique per node
//! prefix = "tinymqtt"              # the cluster's first subject token
//! max_pending = 10000              # messages waiting for NATS; past it QoS 0 is dropped
//! ```
//!
//! ```
//! use tinymqtt::runtimes::settings::{Invalid, Settings, SettingsError};
//!
//! let s = Settings::from_toml("max_keepalive = 60\n[limits]\nreceive_maximum = 10\n")?;
//! assert_eq!(s.config.max_keep_alive, 60);
//! assert_eq!(s.config.receive_maximum, 10);
//!
//! let e = Settings::from_toml("max_keepalive = 0\n").unwrap_err();
//! assert!(matches!(
//!     e,
//!     SettingsError::Invalid { key: "max_keepalive", reason: Invalid::Zero, .. }
//! ));
//! assert_eq!(e.to_string(), "max_keepalive must be at least 1");
//! # Ok::<(), SettingsError>(())
//! ```

mod error;
mod file;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use error::{Invalid, SettingsError};

use crate::broker::{AllowAll, Authenticator, Authorizer, Broker, BrokerConfig, Router};
use crate::runtimes::access::{AccessFiles, AclFile, PasswordFile};
use crate::runtimes::driver::transport::{ListenerConfig, Protocol};
use crate::runtimes::{BrokerOptions, Fsync};

/// The longest duration a setting may name, in seconds (ten years): a deadline this far
/// away still fits any clock.
pub const MAX_SECS: u64 = 10 * 365 * 24 * 3600;

/// Everything a broker is started with, read from a settings file (see the
/// [module](self) for the keys).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// The core broker's settings.
    pub config: BrokerConfig,
    /// The runtime's settings (the store folder and its fsync policy among them).
    pub options: BrokerOptions,
    /// The listeners, if the file names any (`listeners`, then each `[[listener]]`).
    pub listeners: Option<Vec<ListenerConfig>>,
    /// Mosquitto's password file: checks CONNECT credentials.
    pub password_file: Option<PathBuf>,
    /// Mosquitto's ACL file: checks publishes and subscriptions.
    pub acl_file: Option<PathBuf>,
    /// How often `fsync = "interval"` syncs (`autosave_interval`).
    pub autosave_interval: Duration,
    /// The password and ACL files, once [`Settings::load_files`] read them.
    access: Option<Arc<AccessFiles>>,
    /// Where the values whose files are read later are in the text.
    spans: file::Spans,
}

impl Default for Settings {
    /// The settings of an empty file.
    fn default() -> Settings {
        Settings {
            config: BrokerConfig::default(),
            options: BrokerOptions::default(),
            listeners: None,
            password_file: None,
            acl_file: None,
            autosave_interval: Fsync::DEFAULT_INTERVAL,
            access: None,
            spans: file::Spans::default(),
        }
    }
}

impl Settings {
    /// Parses and checks a settings file's text. No file is read: paths stay as written
    /// (see [`Settings::load`]).
    pub fn from_toml(text: &str) -> Result<Settings, SettingsError> {
        file::parse(text)
    }

    /// Reads the settings file at `path`, takes the paths in it as relative to its folder,
    /// and reads the files it names ([`Settings::load_files`]). Errors are
    /// [`SettingsError::At`] the file, with the line and column of the value.
    pub fn load(path: &Path) -> Result<Settings, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let located = |e: SettingsError| e.at(path, &text);
        let mut s = Settings::from_toml(&text).map_err(located)?;
        s.relative_to(path.parent().unwrap_or(Path::new(".")));
        s.load_files().map_err(located)?;
        Ok(s)
    }

    /// Takes every relative path (password and ACL files, the store folder, certificates) as
    /// relative to `base`.
    pub fn relative_to(&mut self, base: &Path) {
        for p in [
            &mut self.password_file,
            &mut self.acl_file,
            &mut self.options.persistence,
        ]
        .into_iter()
        .flatten()
        {
            *p = base.join(&*p);
        }
        #[cfg(feature = "tls")]
        for tls in self
            .listeners
            .iter_mut()
            .flatten()
            .filter_map(|l| l.tls.as_mut())
        {
            tls.certfile = base.join(&tls.certfile);
            tls.keyfile = base.join(&tls.keyfile);
            if let Some(ca) = &mut tls.cafile {
                *ca = base.join(&*ca);
            }
        }
    }

    /// Reads the password and ACL files and each listener's certificates, so that a missing,
    /// unreadable or mismatched file is an error naming its key now rather than at bind.
    pub fn load_files(&mut self) -> Result<(), SettingsError> {
        let spans = &self.spans;
        // Each file on its own first, so that a mistake names its key.
        if let Some(path) = &self.password_file {
            PasswordFile::load(path).map_err(|source| SettingsError::Access {
                key: "password_file",
                span: spans.password_file.clone(),
                source,
            })?;
        }
        if let Some(path) = &self.acl_file {
            AclFile::load(path).map_err(|source| SettingsError::Access {
                key: "acl_file",
                span: spans.acl_file.clone(),
                source,
            })?;
        }
        for (i, l) in self.listeners.iter().flatten().enumerate() {
            l.acceptor().map_err(|source| SettingsError::Listener {
                bind: l.bind,
                span: spans.listeners.get(i).cloned().flatten(),
                source,
            })?;
        }
        self.access = match (&self.password_file, &self.acl_file) {
            (None, None) => None,
            (pw, acl) => {
                let files = AccessFiles::load(pw.as_deref(), acl.as_deref()).map_err(|source| {
                    SettingsError::Access {
                        key: if pw.is_some() {
                            "password_file"
                        } else {
                            "acl_file"
                        },
                        span: None,
                        source,
                    }
                })?;
                Some(Arc::new(files))
            }
        };
        Ok(())
    }

    /// The password and ACL files as [`Settings::load_files`] read them, to
    /// [reload](AccessFiles::reload) while the broker runs.
    pub fn access(&self) -> Option<&Arc<AccessFiles>> {
        self.access.as_ref()
    }

    /// Checks CONNECT credentials: the password file, or everyone is let in (subject to
    /// `allow_anonymous`).
    pub fn authenticator(&self) -> Arc<dyn Authenticator> {
        match &self.access {
            Some(files) if self.password_file.is_some() => files.clone(),
            _ => Arc::new(AllowAll),
        }
    }

    /// Checks publishes and subscriptions: the ACL file, or everything is allowed.
    pub fn authorizer(&self) -> Arc<dyn Authorizer> {
        match &self.access {
            Some(files) if self.acl_file.is_some() => files.clone(),
            _ => Arc::new(AllowAll),
        }
    }

    /// The single-thread broker these settings describe, with their authenticator and
    /// authorizer.
    pub fn broker(&self) -> Broker {
        Broker::with_auth(self.config.clone(), self.authenticator(), self.authorizer())
    }

    /// The router these settings describe, with their authenticator and authorizer: what a
    /// runtime's `Server::bind_listeners` runs.
    pub fn router(&self) -> Router {
        Router::with_auth(self.config.clone(), self.authenticator(), self.authorizer())
    }

    /// Sets the store's fsync policy (the file's `fsync`): `interval` syncs every
    /// [`Settings::autosave_interval`] and acknowledges at once, otherwise acknowledgements
    /// wait for the sync ([`BrokerConfig::durable_acks`] follows).
    pub fn set_fsync(&mut self, interval: bool) {
        let fsync = if interval {
            Fsync::Interval(self.autosave_interval)
        } else {
            Fsync::Always
        };
        self.options.fsync = fsync;
        self.config.durable_acks = fsync.durable_acks();
    }

    /// One line per thing the settings set up, for logs (listeners, files, anonymous
    /// access, persistence).
    pub fn summary(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.listeners.iter().flatten().map(describe).collect();
        if let Some(path) = &self.password_file {
            let users = self.access.as_ref().map_or(0, |a| a.users());
            lines.push(format!("password_file {}: {users} users", path.display()));
        }
        if let Some(path) = &self.acl_file {
            lines.push(format!("acl_file {}", path.display()));
        }
        let anonymous = if self.config.allow_anonymous {
            "allowed"
        } else {
            "refused"
        };
        lines.push(format!("anonymous clients {anonymous}"));
        if let Some(addr) = &self.options.metrics_listener {
            lines.push(format!("metrics on http://{addr}/metrics"));
        }
        if let Some(dir) = &self.options.persistence {
            lines.push(match self.options.fsync {
                Fsync::Interval(d) => format!(
                    "persistence in {}: fsync interval, a sync every {} s",
                    dir.display(),
                    d.as_secs()
                ),
                _ => format!("persistence in {}: fsync always", dir.display()),
            });
        }
        #[cfg(feature = "cluster")]
        if let Some(c) = &self.options.cluster {
            lines.push(format!(
                "cluster node {:?} on NATS {} (prefix {})",
                c.node_id,
                c.nats.join(", "),
                c.prefix
            ));
        }
        lines
    }

    /// What is allowed but probably not meant, for logs.
    pub fn warnings(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.acl_file.is_some() && self.password_file.is_none() {
            lines.push(
                "acl_file without password_file: user names are not checked, so any client can \
                 claim any user section of the ACL"
                    .into(),
            );
        }
        lines
    }
}

/// One line about a listener.
fn describe(l: &ListenerConfig) -> String {
    let protocol = match l.protocol {
        Protocol::WebSockets => "websockets",
        _ => "mqtt",
    };
    #[cfg(feature = "tls")]
    let tls = match &l.tls {
        None => "",
        Some(t) if t.require_certificate => " over TLS (client certificates required)",
        Some(t) if t.cafile.is_some() => " over TLS (client certificates checked)",
        Some(_) => " over TLS",
    };
    #[cfg(not(feature = "tls"))]
    let tls = "";
    let identity = if l.use_identity_as_username {
        ", certificate name as user name"
    } else {
        ""
    };
    format!("listener {}: {protocol}{tls}{identity}", l.bind)
}
