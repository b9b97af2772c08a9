//! What is wrong with a settings file: the key, the reason, and where.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::runtimes::access::FileError;
use crate::runtimes::driver::transport::TransportError;

/// A settings file that cannot be used: each variant names the key it is about (where there
/// is one) and the byte range of its value in the text ([`SettingsError::span`]).
/// [`Settings::load`](super::Settings::load) wraps every error in [`SettingsError::At`], shown
/// as `FILE:LINE:COLUMN: reason`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The settings file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML, an unknown key, or a value of the wrong type (in the TOML parser's words).
    #[error("{message}")]
    Toml {
        /// What the parser says.
        message: String,
        /// Where, if the parser knows.
        span: Option<Range<usize>>,
    },
    /// A key's value is out of its range, or does not agree with another key.
    #[error("{key} {reason}")]
    Invalid {
        /// The key, as written in the file (`limits.receive_maximum`, `listener.bind`).
        key: &'static str,
        /// What is wrong with its value.
        reason: Invalid,
        /// Where its value is.
        span: Option<Range<usize>>,
    },
    /// The password or ACL file a key names cannot be read or parsed.
    #[error("{source}")]
    Access {
        /// `password_file` or `acl_file`.
        key: &'static str,
        /// Where the key's value is.
        span: Option<Range<usize>>,
        /// What is wrong with the file.
        source: FileError,
    },
    /// A `[[listener]]` cannot be used: its certificate files cannot be read or do not match,
    /// or it needs a cargo feature this build does not have.
    #[error("listener {bind}: {source}")]
    Listener {
        /// The listener's address.
        bind: SocketAddr,
        /// Where its `bind` is.
        span: Option<Range<usize>>,
        /// Why.
        source: TransportError,
    },
    /// An error in the settings file at `path`, at this line and column (from 1) when it is
    /// about a value.
    #[error("{}: {error}", At(path, *line_col))]
    At {
        /// The settings file.
        path: PathBuf,
        /// The line and column of the value, from 1.
        line_col: Option<(usize, usize)>,
        /// The error.
        error: Box<SettingsError>,
    },
}

/// What is wrong with a value; shown after the key's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Invalid {
    /// `max_connections` below -1.
    #[error("is -1 (no limit) or a count")]
    NotACount,
    /// A packet size of 1 byte, which admits no packet (0 means MQTT's maximum).
    #[error("below 2 bytes admits no packet")]
    PacketSizeTooSmall,
    /// 0 where the least is 1.
    #[error("must be at least 1")]
    Zero,
    /// A duration longer than ten years (a deadline this far away still fits any clock).
    #[error("is at most {} seconds (ten years)", super::MAX_SECS)]
    TooLong,
    /// `persistent_client_expiration` is neither seconds nor a count with a unit.
    #[error("is seconds or a count with h, d, w, m or y (\"14d\")")]
    Expiration,
    /// An address that does not parse as `IP:PORT` (`listeners`) or resolve (`bind`).
    #[error("{text:?} is not HOST:PORT")]
    Address {
        /// The address as written.
        text: String,
    },
    /// `listeners = []`.
    #[error("is empty")]
    Empty,
    /// `protocol` is neither `"mqtt"` nor `"websockets"`.
    #[error("is \"mqtt\" or \"websockets\"")]
    Protocol,
    /// `certfile` without `keyfile`, or the reverse.
    #[error("needs both certfile and keyfile")]
    CertificateWithoutKey,
    /// `cafile`, `require_certificate` or `use_identity_as_username` without TLS and a
    /// `cafile`.
    #[error("needs TLS with a cafile")]
    NeedsCaFile,
    /// A TLS key in a build without the `tls` feature.
    #[error("needs the cargo feature `tls`")]
    NeedsTls,
    /// `persistence = true` without `persistence_location`.
    #[error("= true needs persistence_location (or write persistence = \"DIR\")")]
    NoLocation,
    /// `persistence = "DIR"` and `persistence_location` both name the store folder.
    #[error("and persistence_location both name the store folder: keep one")]
    TwoLocations,
    /// `persistence` is neither a folder nor a boolean.
    #[error("is a folder (\"DIR\") or true / false")]
    PersistenceType,
    /// `fsync` is neither `"always"` nor `"interval"`.
    #[error("is \"always\" or \"interval\"")]
    Fsync,
    /// `autosave_interval` without `fsync = "interval"`.
    #[error("needs fsync = \"interval\"")]
    NeedsFsyncInterval,
    /// A `[cluster]` table in a build without the `cluster` feature.
    #[error("needs the cargo feature `cluster`")]
    NeedsCluster,
    /// A NATS server URL that does not parse.
    #[error("{text:?} is not a NATS URL: {reason}")]
    NatsUrl {
        /// The URL as written.
        text: String,
        /// The NATS client's reason.
        reason: String,
    },
    /// An empty `cluster.node_id`, or one that is not one NATS token (`.`, `*`, `>`, `/`,
    /// `\`, white space or control characters).
    #[error("must be one NATS token: non-empty, no '.', '*', '>', '/', '\\' or white space")]
    NodeId,
    /// A `cluster.prefix` that is not one NATS token.
    #[error("must be one NATS token: no '.', '*', '>', '/', '\\' or white space")]
    ClusterPrefix,
}

impl SettingsError {
    /// An invalid value of `key` at `span`.
    pub(super) fn invalid(key: &'static str, reason: Invalid, span: Range<usize>) -> Self {
        SettingsError::Invalid {
            key,
            reason,
            span: Some(span),
        }
    }

    /// The key the error is about, if it is about one.
    pub fn key(&self) -> Option<&'static str> {
        match self {
            SettingsError::Invalid { key, .. } | SettingsError::Access { key, .. } => Some(key),
            SettingsError::Listener { .. } => Some("listener.bind"),
            SettingsError::At { error, .. } => error.key(),
            SettingsError::Read { .. } | SettingsError::Toml { .. } => None,
        }
    }

    /// The byte range in the settings text the error is about, if any.
    pub fn span(&self) -> Option<Range<usize>> {
        match self {
            SettingsError::Toml { span, .. }
            | SettingsError::Invalid { span, .. }
            | SettingsError::Access { span, .. }
            | SettingsError::Listener { span, .. } => span.clone(),
            SettingsError::At { error, .. } => error.span(),
            SettingsError::Read { .. } => None,
        }
    }

    /// This error, located in the file at `path` whose text is `text`.
    pub(super) fn at(self, path: &Path, text: &str) -> SettingsError {
        let line_col = self.span().map(|s| line_col(text, s.start));
        SettingsError::At {
            path: path.to_path_buf(),
            line_col,
            error: Box::new(self),
        }
    }
}

/// Shows `path:line:column`, or `path` without a position.
struct At<'a>(&'a Path, Option<(usize, usize)>);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some((line, col)) => write!(f, "{}:{line}:{col}", self.0.display()),
            None => write!(f, "{}", self.0.display()),
        }
    }
}

/// The 1-based line and column of byte `at` in `text`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
