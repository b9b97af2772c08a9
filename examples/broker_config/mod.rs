//! The broker's TOML config file: Mosquitto's names at the top level, checked whole before
//! the broker starts, every mistake reported as `FILE:LINE:COLUMN: reason`.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tinymqtt::broker::{AllowAll, Authenticator, Authorizer, Broker, BrokerConfig};
use tinymqtt::runtimes::access::{AccessFiles, AclFile, PasswordFile};
use tinymqtt::runtimes::driver::transport::{ListenerConfig, Protocol, ServerTls};
use tinymqtt::runtimes::{BrokerOptions, Fsync};
use toml::Spanned;

/// The largest packet MQTT can frame (the remaining length's maximum plus the fixed header).
const MQTT_MAX_PACKET: u32 = 268_435_455 + 5;

/// The config file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listeners: Option<Vec<Spanned<String>>>,
    /// `[[listener]]` tables: TLS and WebSocket listeners.
    listener: Option<Vec<Spanned<ListenerTable>>>,
    allow_anonymous: Option<bool>,
    use_username_as_clientid: Option<bool>,
    allow_takeover_by_other_user: Option<bool>,
    password_file: Option<Spanned<PathBuf>>,
    acl_file: Option<Spanned<PathBuf>>,
    max_connections: Option<Spanned<i64>>,
    max_queued_messages: Option<usize>,
    max_queued_bytes: Option<usize>,
    max_inflight_messages: Option<u16>,
    message_size_limit: Option<Spanned<u32>>,
    max_packet_size: Option<Spanned<u32>>,
    max_keepalive: Option<Spanned<u16>>,
    max_topic_alias: Option<u16>,
    persistence_location: Option<PathBuf>,
    persistence: Option<Spanned<toml::Value>>,
    fsync: Option<Spanned<String>>,
    autosave_interval: Option<Spanned<i64>>,
    sys_interval: Option<Spanned<u64>>,
    /// Where Prometheus scrapes `/metrics` (`HOST:PORT`); off without it.
    metrics_listener: Option<Spanned<String>>,
    /// Reason strings in refusals (MQTT 5); `false` sends none.
    reason_strings: Option<bool>,
    /// PUBACK / PUBREC 0x10 when a publish matched no subscription (MQTT 5).
    no_matching_subscribers: Option<bool>,
    memory_limit: Option<usize>,
    persistent_client_expiration: Option<Spanned<toml::Value>>,
    #[serde(default)]
    limits: Limits,
}

/// A `[[listener]]` table, with mosquitto.conf's names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenerTable {
    /// `HOST:PORT`.
    bind: Spanned<String>,
    /// `"mqtt"` (the default) or `"websockets"`.
    protocol: Option<Spanned<String>>,
    certfile: Option<Spanned<PathBuf>>,
    keyfile: Option<Spanned<PathBuf>>,
    cafile: Option<Spanned<PathBuf>>,
    require_certificate: Option<Spanned<bool>>,
    use_identity_as_username: Option<Spanned<bool>>,
}

/// The `[limits]` table: what Mosquitto has no name for.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Limits {
    receive_maximum: Option<Spanned<u16>>,
    max_client_id_len: Option<usize>,
    max_subscriptions_per_client: Option<usize>,
    connect_timeout_secs: Option<Spanned<u64>>,
    max_outbound_bytes: Option<usize>,
    max_retained_messages: Option<usize>,
    max_retained_bytes: Option<usize>,
    max_sessions: Option<usize>,
    max_subscribe_filters: Option<usize>,
    max_connect_size: Option<Spanned<u32>>,
}

/// The longest duration a setting may name, in seconds (ten years): a deadline this far
/// away still fits any clock.
const MAX_SECS: u64 = 10 * 365 * 24 * 3600;

/// A number of seconds no longer than [`MAX_SECS`].
fn seconds(v: &Spanned<u64>, name: &str) -> Result<Duration, (Option<Range<usize>>, String)> {
    match *v.get_ref() {
        n if n <= MAX_SECS => Ok(Duration::from_secs(n)),
        _ => Err(bad(
            v,
            &format!("{name} is at most {MAX_SECS} seconds (ten years)"),
        )),
    }
}

/// Mosquitto's `persistent_client_expiration`: a number of seconds, or a count with a unit
/// (`h`, `d`, `w`, `m` for 30 days, `y` for 365 days), as in `"14d"`.
fn expiration(v: &Spanned<toml::Value>) -> Result<u32, (Option<Range<usize>>, String)> {
    let why = "persistent_client_expiration is seconds or a count with h, d, w, m or y (\"14d\")";
    let secs = match v.get_ref() {
        toml::Value::Integer(n) => u64::try_from(*n).ok(),
        toml::Value::String(text) => {
            let (count, unit) = text.split_at(text.len().saturating_sub(1));
            let unit = match unit {
                "h" => Some(3600),
                "d" => Some(86_400),
                "w" => Some(7 * 86_400),
                "m" => Some(30 * 86_400),
                "y" => Some(365 * 86_400),
                _ => None,
            };
            count
                .parse::<u64>()
                .ok()
                .zip(unit)
                .and_then(|(n, u)| n.checked_mul(u))
        }
        _ => None,
    };
    let secs = secs.filter(|&s| s >= 1).ok_or_else(|| bad(v, why))?;
    u32::try_from(secs)
        .ok()
        .filter(|&s| u64::from(s) <= MAX_SECS)
        .ok_or_else(|| bad(v, "persistent_client_expiration is at most ten years"))
}

/// Everything the broker is started with.
pub(crate) struct Settings {
    /// The core broker's settings.
    pub(crate) config: BrokerConfig,
    /// The runtime's settings.
    pub(crate) options: BrokerOptions,
    /// The listeners, if the file names them (`listeners` and `[[listener]]`).
    pub(crate) listeners: Option<Vec<ListenerConfig>>,
    /// Checks CONNECT credentials.
    pub(crate) authenticator: Arc<dyn Authenticator>,
    /// Checks publishes and subscriptions.
    pub(crate) authorizer: Arc<dyn Authorizer>,
    /// Where the broker keeps its state across restarts (`persistence_location`, or
    /// `persistence = "DIR"`).
    pub(crate) persistence_location: Option<PathBuf>,
    /// How often `fsync = "interval"` syncs (`autosave_interval`).
    pub(crate) autosave_interval: Duration,
    /// What was loaded, for the logs and `--check-config`.
    pub(crate) summary: Vec<String>,
    /// What is allowed but probably not meant, for the logs (`warn`) and `--check-config`.
    pub(crate) warnings: Vec<String>,
    /// The password and ACL files, for `reload` (SIGHUP).
    pub(crate) access: Option<Arc<AccessFiles>>,
    /// Where Prometheus scrapes `/metrics` (`metrics_listener`).
    pub(crate) metrics_listener: Option<std::net::SocketAddr>,
}

impl Settings {
    /// The defaults, as without a config file.
    pub(crate) fn defaults() -> Settings {
        Settings {
            config: BrokerConfig::default(),
            options: BrokerOptions::default(),
            listeners: None,
            authenticator: Arc::new(AllowAll),
            authorizer: Arc::new(AllowAll),
            persistence_location: None,
            autosave_interval: Fsync::DEFAULT_INTERVAL,
            summary: Vec::new(),
            warnings: Vec::new(),
            access: None,
            metrics_listener: None,
        }
    }

    /// Sets the store's fsync policy (the file's `fsync`, or `--fsync`) and the
    /// acknowledgements it needs: `interval` syncs every `autosave_interval`.
    pub(crate) fn set_fsync(&mut self, interval: bool) {
        let fsync = if interval {
            Fsync::Interval(self.autosave_interval)
        } else {
            Fsync::Always
        };
        self.options.fsync = fsync;
        self.config.durable_acks = fsync.durable_acks();
    }

    /// Reads the config file at `path`, and the password and ACL files it names (relative
    /// paths are relative to the config file's folder).
    pub(crate) fn load(path: &Path) -> Result<Settings, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Settings::parse(&text, base).map_err(|(span, reason)| match span {
            Some(span) => {
                let (line, col) = line_col(&text, span.start);
                format!("{}:{line}:{col}: {reason}", path.display())
            }
            None => format!("{}: {reason}", path.display()),
        })
    }

    /// The broker these settings describe.
    pub(crate) fn broker(&self) -> Broker {
        Broker::with_auth(
            self.config.clone(),
            self.authenticator.clone(),
            self.authorizer.clone(),
        )
    }

    /// Parses `text`; an error carries the span it is about, if any.
    fn parse(text: &str, base: &Path) -> Result<Settings, (Option<Range<usize>>, String)> {
        let file: FileConfig =
            toml::from_str(text).map_err(|e| (e.span(), e.message().to_owned()))?;
        let mut s = Settings::defaults();
        let c = &mut s.config;
        let unlimited = |v: usize| if v == 0 { usize::MAX } else { v };
        // As in Mosquitto 2.0: with a password file, anonymous clients are refused unless the
        // file says otherwise.
        c.allow_anonymous = file.allow_anonymous.unwrap_or(file.password_file.is_none());
        if let Some(v) = file.use_username_as_clientid {
            c.use_username_as_clientid = v;
        }
        if let Some(v) = file.allow_takeover_by_other_user {
            c.allow_takeover_by_other_user = v;
        }
        if let Some(v) = file.max_queued_messages {
            c.max_queued_messages = unlimited(v);
        }
        if let Some(v) = file.max_queued_bytes {
            c.max_queued_bytes = unlimited(v);
        }
        if let Some(v) = file.max_inflight_messages {
            c.max_inflight_v3 = if v == 0 { u16::MAX } else { v };
        }
        if let Some(v) = &file.max_connections {
            c.max_connections = match *v.get_ref() {
                -1 => None,
                n if n >= 0 => Some(n as usize),
                _ => return Err(bad(v, "max_connections is -1 (no limit) or a count")),
            };
        }
        // Both keys bound the whole packet; with both, the smaller wins. 0 is no limit.
        let mut size: Option<u32> = None;
        for v in [&file.max_packet_size, &file.message_size_limit]
            .into_iter()
            .flatten()
        {
            let n = match *v.get_ref() {
                0 => MQTT_MAX_PACKET,
                n if n < 2 => return Err(bad(v, "a packet size below 2 bytes admits no packet")),
                n => n,
            };
            size = Some(size.map_or(n, |m| m.min(n)));
        }
        if let Some(n) = size {
            c.max_packet_size = n;
        }
        if let Some(v) = &file.max_keepalive {
            if *v.get_ref() == 0 {
                return Err(bad(v, "max_keepalive must be at least 1"));
            }
            c.max_keep_alive = *v.get_ref();
        }
        if let Some(v) = file.max_topic_alias {
            c.topic_alias_maximum = v;
        }
        if let Some(v) = &file.sys_interval {
            let d = seconds(v, "sys_interval")?;
            c.sys_interval = (!d.is_zero()).then_some(d);
        }
        if let Some(v) = file.memory_limit {
            c.memory_limit = unlimited(v);
        }
        if let Some(v) = &file.persistent_client_expiration {
            c.persistent_session_expiry = Some(expiration(v)?);
        }
        if let Some(on) = file.reason_strings {
            c.reason_strings = on;
        }
        if let Some(on) = file.no_matching_subscribers {
            c.no_matching_subscribers = on;
        }
        let l = &file.limits;
        if let Some(v) = &l.receive_maximum {
            if *v.get_ref() == 0 {
                return Err(bad(v, "receive_maximum must be at least 1"));
            }
            c.receive_maximum = *v.get_ref();
        }
        if let Some(v) = l.max_client_id_len {
            c.max_client_id_len = v;
        }
        if let Some(v) = l.max_subscriptions_per_client {
            c.max_subscriptions_per_client = v;
        }
        if let Some(v) = &l.connect_timeout_secs {
            c.connect_timeout = seconds(v, "connect_timeout_secs")?;
        }
        if let Some(v) = l.max_retained_messages {
            c.max_retained_messages = unlimited(v);
        }
        if let Some(v) = l.max_retained_bytes {
            c.max_retained_bytes = unlimited(v);
        }
        if let Some(v) = l.max_sessions {
            c.max_sessions = unlimited(v);
        }
        if let Some(v) = l.max_subscribe_filters {
            c.max_subscribe_filters = unlimited(v);
        }
        if let Some(v) = &l.max_connect_size {
            c.max_connect_size = match *v.get_ref() {
                0 => MQTT_MAX_PACKET,
                n if n < 2 => return Err(bad(v, "a packet size below 2 bytes admits no packet")),
                n => n,
            };
        }
        if let Some(b) = l.max_outbound_bytes {
            s.options.max_outbound_bytes = b;
        }
        if let Some(v) = &file.metrics_listener {
            let addr = v.get_ref().parse().map_err(|e| {
                bad(
                    v,
                    &format!("metrics_listener {:?}: {e} (HOST:PORT)", v.get_ref()),
                )
            })?;
            s.summary.push(format!("metrics on http://{addr}/metrics"));
            s.metrics_listener = Some(addr);
        }
        if let Some(list) = &file.listeners {
            let addrs = list
                .iter()
                .map(|l| {
                    l.get_ref()
                        .parse()
                        .map_err(|e| bad(l, &format!("listener {:?}: {e}", l.get_ref())))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if addrs.is_empty() {
                return Err((None, "listeners is empty".into()));
            }
            s.listeners = Some(addrs.into_iter().map(ListenerConfig::plain).collect());
        }
        for t in file.listener.iter().flatten() {
            let l = listener(t.get_ref(), base)?;
            s.summary.push(describe(&l));
            s.listeners.get_or_insert_with(Vec::new).push(l);
        }
        // Each file is checked on its own first, so that a mistake names the key.
        let password_file = match &file.password_file {
            Some(p) => {
                let path = base.join(p.get_ref());
                let f = PasswordFile::load(&path).map_err(|e| bad(p, &e.to_string()))?;
                s.summary.push(format!(
                    "password_file {}: {} users",
                    path.display(),
                    f.len()
                ));
                Some(path)
            }
            None => None,
        };
        let acl_file = match &file.acl_file {
            Some(p) => {
                let path = base.join(p.get_ref());
                AclFile::load(&path).map_err(|e| bad(p, &e.to_string()))?;
                s.summary.push(format!("acl_file {}", path.display()));
                Some(path)
            }
            None => None,
        };
        if password_file.is_some() || acl_file.is_some() {
            let files = AccessFiles::load(password_file.as_deref(), acl_file.as_deref())
                .map_err(|e| (None, e.to_string()))?;
            let files = Arc::new(files);
            if password_file.is_some() {
                s.authenticator = files.clone();
            }
            if acl_file.is_some() {
                s.authorizer = files.clone();
            }
            s.access = Some(files);
        }
        s.summary.push(format!(
            "anonymous clients {}",
            if s.config.allow_anonymous {
                "allowed"
            } else {
                "refused"
            }
        ));
        if file.acl_file.is_some() && file.password_file.is_none() {
            s.warnings.push(
                "acl_file without password_file: user names are not checked, so any client can \
                 claim any user section of the ACL"
                    .into(),
            );
        }
        s.persistence_location = persistence(&file)?.map(|p| base.join(p));
        let interval = match &file.fsync {
            None => false,
            Some(v) => match v.get_ref().as_str() {
                "always" => false,
                "interval" => true,
                _ => return Err(bad(v, "fsync is \"always\" or \"interval\"")),
            },
        };
        if let Some(v) = &file.autosave_interval {
            if !interval {
                return Err(bad(v, "autosave_interval needs fsync = \"interval\""));
            }
            let secs = u64::try_from(*v.get_ref())
                .ok()
                .filter(|&n| (1..=MAX_SECS).contains(&n))
                .ok_or_else(|| {
                    bad(
                        v,
                        "autosave_interval is a number of seconds, from 1 to ten years",
                    )
                })?;
            s.autosave_interval = Duration::from_secs(secs);
        }
        s.set_fsync(interval);
        if let Some(dir) = &s.persistence_location {
            s.summary.push(match s.options.fsync {
                Fsync::Interval(d) => format!(
                    "persistence in {}: fsync interval, a sync every {} s",
                    dir.display(),
                    d.as_secs()
                ),
                _ => format!("persistence in {}: fsync always", dir.display()),
            });
        }
        Ok(s)
    }
}

/// A `[[listener]]` table, checked: its certificate files are read now, so that a missing,
/// unreadable or mismatched file is reported with its name and the reason.
fn listener(
    t: &ListenerTable,
    base: &Path,
) -> Result<ListenerConfig, (Option<Range<usize>>, String)> {
    use std::net::ToSocketAddrs;
    let bind = t
        .bind
        .get_ref()
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| bad(&t.bind, "bind is HOST:PORT"))?;
    let protocol = match t.protocol.as_ref().map(|p| (p, p.get_ref().as_str())) {
        None | Some((_, "mqtt")) => Protocol::Mqtt,
        Some((_, "websockets")) => Protocol::WebSockets,
        Some((p, _)) => return Err(bad(p, "protocol is \"mqtt\" or \"websockets\"")),
    };
    let path = |p: &Option<Spanned<PathBuf>>| p.as_ref().map(|p| base.join(p.get_ref()));
    let require = t.require_certificate.as_ref().is_some_and(|v| *v.get_ref());
    let identity = t
        .use_identity_as_username
        .as_ref()
        .is_some_and(|v| *v.get_ref());
    let tls = match (path(&t.certfile), path(&t.keyfile)) {
        (Some(certfile), Some(keyfile)) => Some(ServerTls {
            certfile,
            keyfile,
            cafile: path(&t.cafile),
            require_certificate: require,
        }),
        (None, None) => None,
        (Some(_), None) => return Err(bad(&t.bind, "certfile needs a keyfile")),
        (None, Some(_)) => return Err(bad(&t.bind, "keyfile needs a certfile")),
    };
    if tls.as_ref().is_none_or(|t| t.cafile.is_none())
        && (require || identity || t.cafile.is_some())
    {
        return Err(bad(
            &t.bind,
            "cafile, require_certificate and use_identity_as_username need TLS with a cafile",
        ));
    }
    let config = ListenerConfig {
        bind,
        protocol,
        tls,
        use_identity_as_username: identity,
    };
    config
        .acceptor()
        .map_err(|e| bad(&t.bind, &format!("listener {bind}: {e}")))?;
    Ok(config)
}

/// One line about a listener, for the logs and `--check-config`.
fn describe(l: &ListenerConfig) -> String {
    let protocol = match l.protocol {
        Protocol::WebSockets => "websockets",
        _ => "mqtt",
    };
    let tls = match &l.tls {
        None => String::new(),
        Some(t) if t.require_certificate => " over TLS (client certificates required)".into(),
        Some(t) if t.cafile.is_some() => " over TLS (client certificates checked)".into(),
        Some(_) => " over TLS".into(),
    };
    let identity = if l.use_identity_as_username {
        ", certificate name as user name"
    } else {
        ""
    };
    format!("listener {}: {protocol}{tls}{identity}", l.bind)
}

/// The store folder the file names: `persistence = "DIR"`, or Mosquitto's
/// `persistence_location` (with `persistence = true`, or alone); `persistence = false` keeps
/// everything in memory.
fn persistence(file: &FileConfig) -> Result<Option<PathBuf>, (Option<Range<usize>>, String)> {
    let location = file.persistence_location.clone();
    let Some(v) = &file.persistence else {
        return Ok(location);
    };
    match v.get_ref() {
        toml::Value::Boolean(false) => Ok(None),
        toml::Value::Boolean(true) if location.is_some() => Ok(location),
        toml::Value::Boolean(true) => Err(bad(
            v,
            "persistence = true needs persistence_location (or write persistence = \"DIR\")",
        )),
        toml::Value::String(_) if location.is_some() => Err(bad(
            v,
            "persistence and persistence_location both name the store folder: keep one",
        )),
        toml::Value::String(dir) => Ok(Some(PathBuf::from(dir))),
        _ => Err(bad(v, "persistence is a folder (\"DIR\") or true / false")),
    }
}

/// An error about the value at `v`'s span.
fn bad<T>(v: &Spanned<T>, reason: &str) -> (Option<Range<usize>>, String) {
    (Some(v.span()), reason.to_owned())
}

/// The 1-based line and column of byte `at` in `text`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
