//! The settings file as written, and its checks into [`Settings`].

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::{Invalid, SettingsError};
use super::{Settings, MAX_SECS};
use crate::runtimes::driver::transport::{ListenerConfig, Protocol};

/// The largest packet MQTT can frame (the remaining length's maximum plus the fixed header).
const MQTT_MAX_PACKET: u32 = 268_435_455 + 5;

/// The file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listeners: Option<Vec<Spanned<String>>>,
    /// `[[listener]]` tables: TLS and WebSocket listeners.
    listener: Option<Vec<ListenerTable>>,
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
    /// Where Prometheus scrapes `/metrics` (`IP:PORT`); off without it.
    metrics_listener: Option<Spanned<String>>,
    reason_strings: Option<bool>,
    no_matching_subscribers: Option<bool>,
    memory_limit: Option<usize>,
    persistent_client_expiration: Option<Spanned<toml::Value>>,
    #[serde(default)]
    limits: Limits,
    /// `[cluster]`: this broker as a node of a cluster over NATS.
    cluster: Option<ClusterTable>,
}

/// The `[cluster]` table (the `cluster` feature).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterTable {
    nats: Spanned<Vec<String>>,
    node_id: Spanned<String>,
    prefix: Option<Spanned<String>>,
    max_pending: Option<Spanned<usize>>,
}

/// A `[[listener]]` table, with mosquitto.conf's names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenerTable {
    bind: Spanned<String>,
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
    /// How long a QoS 2 packet identifier waits for its PUBREL (EMQX's `await_rel_timeout`).
    await_rel_timeout_secs: Option<Spanned<u64>>,
    max_outbound_bytes: Option<usize>,
    max_retained_messages: Option<usize>,
    max_retained_bytes: Option<usize>,
    max_sessions: Option<usize>,
    max_subscribe_filters: Option<usize>,
    max_connect_size: Option<Spanned<u32>>,
}

type Checked<T> = Result<T, SettingsError>;

/// An invalid value of `key`.
fn bad<T>(key: &'static str, v: &Spanned<T>, reason: Invalid) -> SettingsError {
    SettingsError::invalid(key, reason, v.span())
}

/// 0 means no limit.
fn unlimited(v: usize) -> usize {
    if v == 0 {
        usize::MAX
    } else {
        v
    }
}

/// A number of seconds no longer than [`MAX_SECS`].
fn seconds(key: &'static str, v: &Spanned<u64>) -> Checked<Duration> {
    match *v.get_ref() {
        n if n <= MAX_SECS => Ok(Duration::from_secs(n)),
        _ => Err(bad(key, v, Invalid::TooLong)),
    }
}

/// A packet size: at least 2 bytes, 0 for MQTT's maximum.
fn packet_size(key: &'static str, v: &Spanned<u32>) -> Checked<u32> {
    match *v.get_ref() {
        0 => Ok(MQTT_MAX_PACKET),
        n if n < 2 => Err(bad(key, v, Invalid::PacketSizeTooSmall)),
        n => Ok(n),
    }
}

/// At least 1.
fn nonzero<T: Copy + Default + PartialEq>(key: &'static str, v: &Spanned<T>) -> Checked<T> {
    if *v.get_ref() == T::default() {
        return Err(bad(key, v, Invalid::Zero));
    }
    Ok(*v.get_ref())
}

/// Mosquitto's `persistent_client_expiration`: a number of seconds, or a count with a unit
/// (`h`, `d`, `w`, `m` for 30 days, `y` for 365 days), as in `"14d"`.
fn expiration(v: &Spanned<toml::Value>) -> Checked<u32> {
    const KEY: &str = "persistent_client_expiration";
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
    let secs = secs
        .filter(|&s| s >= 1)
        .ok_or_else(|| bad(KEY, v, Invalid::Expiration))?;
    u32::try_from(secs)
        .ok()
        .filter(|&s| u64::from(s) <= MAX_SECS)
        .ok_or_else(|| bad(KEY, v, Invalid::TooLong))
}

/// Parses and checks `text` (no file is read).
pub(super) fn parse(text: &str) -> Checked<Settings> {
    let file: FileSettings = toml::from_str(text).map_err(|e| SettingsError::Toml {
        message: e.message().to_owned(),
        span: e.span(),
    })?;
    let mut s = Settings::default();
    let c = &mut s.config;
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
            n => Some(
                usize::try_from(n).map_err(|_| bad("max_connections", v, Invalid::NotACount))?,
            ),
        };
    }
    // Both keys bound the whole packet; with both, the smaller wins.
    let sizes = [
        ("max_packet_size", &file.max_packet_size),
        ("message_size_limit", &file.message_size_limit),
    ];
    let mut size: Option<u32> = None;
    for (key, v) in sizes {
        if let Some(v) = v {
            let n = packet_size(key, v)?;
            size = Some(size.map_or(n, |m| m.min(n)));
        }
    }
    if let Some(n) = size {
        c.max_packet_size = n;
    }
    if let Some(v) = &file.max_keepalive {
        c.max_keep_alive = nonzero("max_keepalive", v)?;
    }
    if let Some(v) = file.max_topic_alias {
        c.topic_alias_maximum = v;
    }
    if let Some(v) = &file.sys_interval {
        let d = seconds("sys_interval", v)?;
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
        c.receive_maximum = nonzero("limits.receive_maximum", v)?;
    }
    if let Some(v) = l.max_client_id_len {
        c.max_client_id_len = v;
    }
    if let Some(v) = l.max_subscriptions_per_client {
        c.max_subscriptions_per_client = v;
    }
    if let Some(v) = &l.connect_timeout_secs {
        c.connect_timeout = seconds("limits.connect_timeout_secs", v)?;
    }
    if let Some(v) = &l.await_rel_timeout_secs {
        let key = "limits.await_rel_timeout_secs";
        nonzero(key, v)?;
        c.await_rel_timeout = seconds(key, v)?;
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
        c.max_connect_size = packet_size("limits.max_connect_size", v)?;
    }
    if let Some(b) = l.max_outbound_bytes {
        s.options.max_outbound_bytes = b;
    }
    if let Some(v) = &file.metrics_listener {
        let addr = v.get_ref().parse().map_err(|_| {
            let text = v.get_ref().clone();
            bad("metrics_listener", v, Invalid::Address { text })
        })?;
        s.options.metrics_listener = Some(addr);
    }
    if let Some(list) = &file.listeners {
        let mut plain = Vec::with_capacity(list.len());
        for l in list {
            let bind = l.get_ref().parse().map_err(|_| {
                let text = l.get_ref().clone();
                bad("listeners", l, Invalid::Address { text })
            })?;
            plain.push(ListenerConfig::plain(bind));
            s.spans.listeners.push(Some(l.span()));
        }
        if plain.is_empty() {
            return Err(SettingsError::Invalid {
                key: "listeners",
                reason: Invalid::Empty,
                span: None,
            });
        }
        s.listeners = Some(plain);
    }
    for t in file.listener.iter().flatten() {
        let l = listener(t)?;
        s.listeners.get_or_insert_with(Vec::new).push(l);
        s.spans.listeners.push(Some(t.bind.span()));
    }
    if let Some(p) = &file.password_file {
        s.password_file = Some(p.get_ref().clone());
        s.spans.password_file = Some(p.span());
    }
    if let Some(p) = &file.acl_file {
        s.acl_file = Some(p.get_ref().clone());
        s.spans.acl_file = Some(p.span());
    }
    s.options.persistence = persistence(&file)?;
    let interval = match &file.fsync {
        None => false,
        Some(v) => match v.get_ref().as_str() {
            "always" => false,
            "interval" => true,
            _ => return Err(bad("fsync", v, Invalid::Fsync)),
        },
    };
    if let Some(v) = &file.autosave_interval {
        const KEY: &str = "autosave_interval";
        if !interval {
            return Err(bad(KEY, v, Invalid::NeedsFsyncInterval));
        }
        let secs = match u64::try_from(*v.get_ref()) {
            Ok(0) | Err(_) => return Err(bad(KEY, v, Invalid::Zero)),
            Ok(n) if n > MAX_SECS => return Err(bad(KEY, v, Invalid::TooLong)),
            Ok(n) => n,
        };
        s.autosave_interval = Duration::from_secs(secs);
    }
    s.set_fsync(interval);
    if let Some(t) = &file.cluster {
        cluster(&mut s, t)?;
    }
    Ok(s)
}

/// The `[cluster]` table: the node's NATS servers and name, checked.
#[cfg(feature = "cluster")]
fn cluster(s: &mut Settings, t: &ClusterTable) -> Checked<()> {
    use crate::runtimes::cluster::{ClusterConfig, ClusterConfigError};
    let mut c = ClusterConfig::new(t.nats.get_ref().clone(), t.node_id.get_ref().clone());
    if let Some(p) = &t.prefix {
        c.prefix = p.get_ref().clone();
    }
    if let Some(n) = &t.max_pending {
        c.max_pending = *n.get_ref();
    }
    c.check().map_err(|e| match e {
        ClusterConfigError::NoServer => bad("cluster.nats", &t.nats, Invalid::Empty),
        ClusterConfigError::Url { url, reason } => bad(
            "cluster.nats",
            &t.nats,
            Invalid::NatsUrl { text: url, reason },
        ),
        ClusterConfigError::NodeId => bad("cluster.node_id", &t.node_id, Invalid::NodeId),
        ClusterConfigError::Prefix => match &t.prefix {
            Some(p) => bad("cluster.prefix", p, Invalid::ClusterPrefix),
            None => bad("cluster.node_id", &t.node_id, Invalid::ClusterPrefix),
        },
        ClusterConfigError::MaxPending => match &t.max_pending {
            Some(n) => bad("cluster.max_pending", n, Invalid::Zero),
            None => bad("cluster.node_id", &t.node_id, Invalid::Zero),
        },
    })?;
    s.config.cluster = true;
    s.options.cluster = Some(c);
    Ok(())
}

/// The `[cluster]` table in a build without the `cluster` feature: refused.
#[cfg(not(feature = "cluster"))]
fn cluster(_: &mut Settings, t: &ClusterTable) -> Checked<()> {
    let _ = (&t.node_id, &t.prefix, &t.max_pending);
    Err(bad("cluster.nats", &t.nats, Invalid::NeedsCluster))
}

/// A `[[listener]]` table, checked as far as the text goes (its files are read by
/// [`Settings::load_files`]).
fn listener(t: &ListenerTable) -> Checked<ListenerConfig> {
    use std::net::ToSocketAddrs;
    let bind = t
        .bind
        .get_ref()
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            let text = t.bind.get_ref().clone();
            bad("listener.bind", &t.bind, Invalid::Address { text })
        })?;
    let protocol = match &t.protocol {
        None => Protocol::Mqtt,
        Some(p) => match p.get_ref().as_str() {
            "mqtt" => Protocol::Mqtt,
            "websockets" => Protocol::WebSockets,
            _ => return Err(bad("listener.protocol", p, Invalid::Protocol)),
        },
    };
    let flag = |v: &Option<Spanned<bool>>| v.as_ref().is_some_and(|v| *v.get_ref());
    let (require, identity) = (
        flag(&t.require_certificate),
        flag(&t.use_identity_as_username),
    );
    let mut config = ListenerConfig::plain(bind);
    config.protocol = protocol;
    config.use_identity_as_username = identity;
    let tls = match (&t.certfile, &t.keyfile) {
        (Some(certfile), Some(keyfile)) => Some((certfile, keyfile)),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            return Err(bad(
                "listener.certfile",
                &t.bind,
                Invalid::CertificateWithoutKey,
            ))
        }
    };
    if (tls.is_none() || t.cafile.is_none()) && (require || identity || t.cafile.is_some()) {
        return Err(bad("listener.cafile", &t.bind, Invalid::NeedsCaFile));
    }
    if let Some((certfile, keyfile)) = tls {
        #[cfg(feature = "tls")]
        {
            config.tls = Some(crate::runtimes::driver::transport::ServerTls {
                certfile: certfile.get_ref().clone(),
                keyfile: keyfile.get_ref().clone(),
                cafile: t.cafile.as_ref().map(|p| p.get_ref().clone()),
                require_certificate: require,
            });
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = keyfile;
            return Err(bad("listener.certfile", certfile, Invalid::NeedsTls));
        }
    }
    Ok(config)
}

/// The store folder the file names: `persistence = "DIR"`, or Mosquitto's
/// `persistence_location` (with `persistence = true`, or alone); `persistence = false` keeps
/// everything in memory.
fn persistence(file: &FileSettings) -> Checked<Option<PathBuf>> {
    const KEY: &str = "persistence";
    let location = file.persistence_location.clone();
    let Some(v) = &file.persistence else {
        return Ok(location);
    };
    match v.get_ref() {
        toml::Value::Boolean(false) => Ok(None),
        toml::Value::Boolean(true) if location.is_some() => Ok(location),
        toml::Value::Boolean(true) => Err(bad(KEY, v, Invalid::NoLocation)),
        toml::Value::String(_) if location.is_some() => Err(bad(KEY, v, Invalid::TwoLocations)),
        toml::Value::String(dir) => Ok(Some(PathBuf::from(dir))),
        _ => Err(bad(KEY, v, Invalid::PersistenceType)),
    }
}

/// The spans of the values whose files are read later, for their errors.
#[derive(Debug, Clone, Default)]
pub(super) struct Spans {
    pub(super) password_file: Option<Range<usize>>,
    pub(super) acl_file: Option<Range<usize>>,
    /// One per listener, in order.
    pub(super) listeners: Vec<Option<Range<usize>>>,
}
