//! Broker settings; the defaults are Mosquitto's where Mosquitto has one.

use std::time::Duration;

use crate::types::{ByteStr, QoS};

/// What the broker allows and how it queues.
///
/// Build it from [`BrokerConfig::default`] with the `with_*` setters (or set its public
/// fields): it is `#[non_exhaustive]`, so a field added later breaks no one.
///
/// ```compile_fail
/// use tinymqtt::broker::BrokerConfig;
///
/// let config = BrokerConfig { max_sessions: 10, ..BrokerConfig::default() }; // not from outside
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerConfig {
    /// The largest packet accepted from a client (announced in MQTT 5 CONNACK).
    pub max_packet_size: u32,
    /// How many QoS 1/2 publishes a client may have unacknowledged towards the broker.
    pub receive_maximum: u16,
    /// The highest QoS the broker accepts and delivers.
    pub maximum_qos: QoS,
    /// Whether retained messages are supported.
    pub retain_available: bool,
    /// The highest topic alias a client may use towards the broker.
    pub topic_alias_maximum: u16,
    /// Keep-alive the broker imposes on MQTT 5 clients (server keep alive), if any.
    pub server_keep_alive: Option<u16>,
    /// The largest keep-alive accepted from an MQTT 5 client; above it the broker answers with
    /// this value as server keep alive (Mosquitto's `max_keepalive`).
    pub max_keep_alive: u16,
    /// How long a new transport may take to send CONNECT.
    pub connect_timeout: Duration,
    /// The largest packet accepted before the client is authenticated (its CONNECT and AUTH
    /// packets), at most [`BrokerConfig::max_packet_size`]; a larger one closes the
    /// connection without a CONNACK, as soon as its fixed header is read. Until the session
    /// is accepted, about this much more is read behind the CONNECT
    /// ([`ServerConnection::wants_input`](crate::broker::ServerConnection::wants_input)).
    pub max_connect_size: u32,
    /// Whether clients without a user name are let in.
    pub allow_anonymous: bool,
    /// Whether a client may take over (or resume) a session that another user name owns:
    /// `false` (the default) refuses it with CONNACK 0x87 (3.1.x: return code 5, not
    /// authorized) and leaves the session and its connection alone. Mosquitto allows it.
    pub allow_takeover_by_other_user: bool,
    /// Use the user name as the client identifier, whatever the client sent; a client
    /// without a user name is refused with 0x87 (Mosquitto's `use_username_as_clientid`).
    pub use_username_as_clientid: bool,
    /// Every client must come with a transport's peer identity (a TLS client certificate's
    /// name, given to
    /// [`ServerConnection::set_peer_identity`](crate::broker::ServerConnection::set_peer_identity),
    /// which becomes its user name without a password check); a client without one is refused
    /// with 0x87. Mosquitto's `use_identity_as_username` for every listener at once: the
    /// runtimes' listeners set it one by one.
    pub use_identity_as_username: bool,
    /// The longest client identifier accepted, in bytes.
    pub max_client_id_len: usize,
    /// Subscriptions one session may hold.
    pub max_subscriptions_per_client: usize,
    /// Messages queued per session (offline, or beyond the in-flight window); see the
    /// [queue policy](crate::broker#queues) for what happens when it is full.
    pub max_queued_messages: usize,
    /// Bytes queued per session, counting whole messages (topic, properties and payload).
    pub max_queued_bytes: usize,
    /// The memory the broker's state may take, in bytes (Mosquitto's `memory_limit`):
    /// queued messages, retained messages, sessions and their subscriptions, each at its real
    /// size. At the limit, new PUBLISHes are refused (MQTT 5 QoS 1/2: PUBACK / PUBREC 0x97
    /// quota exceeded; otherwise dropped and counted) and so are new connections (CONNACK
    /// 0x97; 3.1.x: return code 3), while existing sessions keep being served.
    pub memory_limit: usize,
    /// Retained messages kept at once; a retained PUBLISH for a new topic beyond it is
    /// refused like one over [`BrokerConfig::max_retained_bytes`] (a message for a topic
    /// already retained replaces it, and an empty one clears it, as ever).
    pub max_retained_messages: usize,
    /// Bytes retained messages may take in all (whole messages); a retained PUBLISH that
    /// does not fit is refused like one over the memory budget: neither retained nor routed
    /// ([MQTT-3.3.1-5] asks to store what is routed), MQTT 5 QoS 1/2 answered with PUBACK /
    /// PUBREC 0x97 Quota exceeded, otherwise dropped; counted in
    /// [`BrokerStats::refused_over_limits`](crate::broker::BrokerStats::refused_over_limits).
    /// A will or `$SYS` message without room is published but not retained (counted too).
    pub max_retained_bytes: usize,
    /// Sessions kept at once, online or not; a CONNECT that would create one more is
    /// refused with CONNACK 0x97 (3.1.x: return code 3).
    pub max_sessions: usize,
    /// Topic filters one SUBSCRIBE may carry; a SUBSCRIBE with more closes the connection
    /// with DISCONNECT 0x97 (quota exceeded; 3.1.x: closed). Filters repeated within one
    /// SUBSCRIBE count once each time they appear, and are merged.
    pub max_subscribe_filters: usize,
    /// Queue QoS 0 messages for offline persistent sessions (Mosquitto's `queue_qos0_messages`).
    pub queue_qos0_offline: bool,
    /// Session expiry in seconds for sessions that would never expire: 3.1.x clients with
    /// clean session 0, and MQTT 5 clients asking for expiry 0xFFFFFFFF (never); `None`
    /// keeps them forever (Mosquitto's `persistent_client_expiration`).
    pub persistent_session_expiry: Option<u32>,
    /// In-flight window towards 3.1.x clients, which announce none (Mosquitto's
    /// `max_inflight_messages`): QoS 1/2 messages sent and not yet acknowledged. 100 by
    /// default where Mosquitto has 20, chosen by measurement (BENCHMARKS.md, "The in-flight
    /// window"): a subscriber gets at most this many messages per round trip.
    pub max_inflight_v3: u16,
    /// How often `$SYS/broker/...` statistics are published; `None` turns them off
    /// (Mosquitto's `sys_interval`).
    pub sys_interval: Option<Duration>,
    /// Connections with a session at once; one more is refused with CONNACK 0x97 (quota
    /// exceeded; 3.1.x: return code 3, server unavailable). `None` is no limit (Mosquitto's
    /// `max_connections -1`). A takeover of an online session does not count as one more.
    pub max_connections: Option<usize>,
    /// The longest topic name or filter accepted, in bytes: a longer PUBLISH gets PUBACK /
    /// PUBREC 0x90 (MQTT 5), a longer filter SUBACK 0x8F (3.1.x: 0x80).
    pub max_topic_len: usize,
    /// The most topic levels accepted in a topic name or filter (Mosquitto refuses more than
    /// 200 `/`); beyond it, the same codes as [`BrokerConfig::max_topic_len`].
    pub max_topic_levels: usize,
    /// Topic aliases the broker assigns towards an MQTT 5 client, at most the client's Topic
    /// Alias Maximum; 0 (the default, as in Mosquitto) sends none.
    pub outbound_topic_aliases: u16,
    /// Response Information sent in CONNACK to an MQTT 5 client that asks for it (Request
    /// Response Information 1); `None` sends none.
    pub response_information: Option<ByteStr>,
    /// Sends every client to another server: CONNACK 0x9C or 0x9D with a Server Reference
    /// (MQTT 5), return code 3 (3.1.x). `None` serves clients here.
    pub redirect: Option<Redirect>,
    /// How long a client's PUBACK / PUBREC may wait for room in a full online session's
    /// queue (see the [queue policy](crate::broker#queues)); then it goes out anyway and the
    /// queue fills up to twice its limits before it drops, so a subscriber that stops reading
    /// slows its publishers for this long at most.
    pub max_publisher_wait: Duration,
    /// How long an inbound QoS 2 packet identifier waits for the client's PUBREL after the
    /// broker's PUBREC (EMQX's `await_rel_timeout`); then it is forgotten and counted
    /// ([`BrokerStats::await_rel_expired`](crate::broker::BrokerStats::await_rel_expired)),
    /// giving back the receive-maximum slot it held. The message was routed at PUBLISH, so
    /// nothing is lost: a late PUBREL still gets a successful PUBCOMP, and a late resend of
    /// the same PUBLISH (same topic, payload, QoS and retain flag) is answered without being
    /// routed again.
    /// Identifiers handed over from an earlier connection of the session wait afresh from
    /// the new CONNACK.
    pub await_rel_timeout: Duration,
    /// With a store ([`Router::restore`](crate::broker::Router::restore)), send each PUBACK,
    /// PUBREC, PUBREL and PUBCOMP only once what it promises is durable (the store handed
    /// its [`StoreOp::Durable`](crate::broker::persist::StoreOp::Durable) ticket back): `fsync =
    /// always`. `false` acknowledges at once and leaves durability to the store's own pace
    /// (`fsync = interval`). No effect without a store. The runtimes' brokers derive it from
    /// their store's fsync policy (see [`Router::set_durable_acks`]).
    ///
    /// [`Router::set_durable_acks`]: crate::broker::Router::set_durable_acks
    pub durable_acks: bool,
    /// Answers an MQTT 5 publisher's QoS 1/2 PUBLISH that matched no subscription with
    /// PUBACK / PUBREC 0x10 No matching subscribers (a success code; Mosquitto and EMQX send
    /// it too) instead of 0x00, so a publisher can tell a mistyped topic. On by default.
    pub no_matching_subscribers: bool,
    /// Sends Reason Strings (MQTT 5) saying why something was refused. `false` keeps these
    /// internal details off the wire altogether. Even when on, none goes where the client
    /// asked for no problem information ([MQTT-3.1.2-29]) or where it would make the packet
    /// larger than the client accepts.
    pub reason_strings: bool,
    /// Makes this broker a node of a cluster: every message published here (by a client, a
    /// will or the application) is also handed to the other nodes, and the filters of this
    /// node's sessions are handed out as interest, both through
    /// [`Router::poll_remote`](crate::broker::Router::poll_remote); the other nodes' messages
    /// come in through [`Router::handle_remote`](crate::broker::Router::handle_remote). Off
    /// by default: a single broker does none of this work.
    pub cluster: bool,
}

/// Server redirection: where clients are sent instead of being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// The Server Reference sent to MQTT 5 clients (for example `"other.example:1883"`).
    pub server_reference: ByteStr,
    /// `true` answers 0x9D (server moved, use it from now on); `false` 0x9C (use another
    /// server, this time).
    pub permanent: bool,
}

/// The default `BrokerConfig::max_inflight_v3`, chosen by measurement
/// (`make bench-window`, BENCHMARKS.md): a 3.1.x subscriber gets at most this many QoS 1/2
/// messages per round trip. With Mosquitto's 20 a subscriber 25 ms away (50 ms round trip)
/// gets about 300 QoS 1 messages a second, and a 1,000 msg/s stream to it overflows its queue;
/// 100 carries 1,500 there and keeps that stream at 26 ms, and on loopback delivers 1.6 times
/// the messages per broker core. Past 100 loopback gains nothing while each slot keeps one more
/// message alive per lagging session. MQTT 5 clients announce their own window (Receive
/// Maximum).
const DEFAULT_MAX_INFLIGHT_V3: u16 = 100;

impl Default for BrokerConfig {
    fn default() -> BrokerConfig {
        BrokerConfig {
            max_packet_size: 1 << 20,
            receive_maximum: 100,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            topic_alias_maximum: 10,
            server_keep_alive: None,
            max_keep_alive: u16::MAX,
            connect_timeout: Duration::from_secs(10),
            max_connect_size: 64 << 10,
            allow_anonymous: true,
            allow_takeover_by_other_user: false,
            use_username_as_clientid: false,
            use_identity_as_username: false,
            max_client_id_len: 65_535,
            max_subscriptions_per_client: 10_000,
            max_queued_messages: 1_000,
            max_queued_bytes: 64 << 20,
            memory_limit: 1 << 30,
            max_retained_messages: 100_000,
            max_retained_bytes: 256 << 20,
            max_sessions: 100_000,
            max_subscribe_filters: 1_000,
            queue_qos0_offline: false,
            persistent_session_expiry: None,
            max_inflight_v3: DEFAULT_MAX_INFLIGHT_V3,
            sys_interval: Some(Duration::from_secs(10)),
            max_connections: None,
            max_topic_len: 65_535,
            max_topic_levels: 200,
            outbound_topic_aliases: 0,
            response_information: None,
            redirect: None,
            max_publisher_wait: Duration::from_secs(1),
            await_rel_timeout: Duration::from_secs(300),
            durable_acks: true,
            no_matching_subscribers: true,
            reason_strings: true,
            cluster: false,
        }
    }
}
