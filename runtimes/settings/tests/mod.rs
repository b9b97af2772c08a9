//! Every key of the settings file; its errors are in `errors`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::runtimes::access::FileError;
use crate::runtimes::driver::transport::Protocol;

fn parse(text: &str) -> Settings {
    Settings::from_toml(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn error(text: &str) -> SettingsError {
    match Settings::from_toml(text) {
        Ok(_) => panic!("{text:?} was accepted"),
        Err(e) => e,
    }
}

/// The key and reason of an invalid value, and the text its span covers.
fn invalid(text: &str) -> (&'static str, Invalid, String) {
    match error(text) {
        SettingsError::Invalid { key, reason, span } => {
            let at = span.map_or(String::new(), |s| text[s].to_owned());
            (key, reason, at)
        }
        other => panic!("{text:?}: not an invalid value: {other:?}"),
    }
}

/// A folder of its own for a test's files.
fn scratch(name: &str) -> PathBuf {
    crate::runtimes::scratch_dir(&format!("settings-{name}"))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn an_empty_file_is_the_defaults() {
    let s = parse("");
    let d = BrokerConfig::default();
    assert_eq!(s.config.max_packet_size, d.max_packet_size);
    assert_eq!(s.config.max_keep_alive, d.max_keep_alive);
    assert!(s.config.allow_anonymous);
    assert!(s.listeners.is_none());
    assert!(s.password_file.is_none() && s.acl_file.is_none());
    assert_eq!(s.options.persistence, None);
    assert_eq!(s.options.fsync, Fsync::Always);
    assert!(s.config.durable_acks);
    assert_eq!(s.autosave_interval, Fsync::DEFAULT_INTERVAL);
    assert_eq!(s.summary(), vec!["anonymous clients allowed".to_owned()]);
    assert!(s.warnings().is_empty());
}

#[test]
fn every_top_level_key_sets_its_field() {
    let s = parse(
        "allow_anonymous = false\nuse_username_as_clientid = true\n\
         allow_takeover_by_other_user = true\nmax_connections = 7\nmax_queued_messages = 10\n\
         max_queued_bytes = 2000\nmax_inflight_messages = 5\nmax_packet_size = 4096\n\
         max_keepalive = 60\nmax_topic_alias = 3\nsys_interval = 15\nreason_strings = false\n\
         no_matching_subscribers = false\nmemory_limit = 1000000\n\
         persistent_client_expiration = 3600\n",
    );
    let c = &s.config;
    assert!(!c.allow_anonymous);
    assert!(c.use_username_as_clientid);
    assert!(c.allow_takeover_by_other_user);
    assert_eq!(c.max_connections, Some(7));
    assert_eq!(c.max_queued_messages, 10);
    assert_eq!(c.max_queued_bytes, 2000);
    assert_eq!(c.max_inflight_v3, 5);
    assert_eq!(c.max_packet_size, 4096);
    assert_eq!(c.max_keep_alive, 60);
    assert_eq!(c.topic_alias_maximum, 3);
    assert_eq!(c.sys_interval, Some(Duration::from_secs(15)));
    assert!(!c.reason_strings);
    assert!(!c.no_matching_subscribers);
    assert_eq!(c.memory_limit, 1_000_000);
    assert_eq!(c.persistent_session_expiry, Some(3600));
}

#[test]
fn zero_means_no_limit_where_mosquitto_says_so() {
    let s = parse(
        "max_connections = -1\nmax_queued_messages = 0\nmax_queued_bytes = 0\n\
         max_inflight_messages = 0\nmessage_size_limit = 0\nsys_interval = 0\nmemory_limit = 0\n\
         [limits]\nmax_retained_messages = 0\nmax_retained_bytes = 0\nmax_sessions = 0\n\
         max_subscribe_filters = 0\nmax_connect_size = 0\n",
    );
    let c = &s.config;
    assert_eq!(c.max_connections, None);
    assert_eq!(c.max_queued_messages, usize::MAX);
    assert_eq!(c.max_queued_bytes, usize::MAX);
    assert_eq!(c.max_inflight_v3, u16::MAX);
    assert_eq!(c.max_packet_size, 268_435_460);
    assert_eq!(c.sys_interval, None);
    assert_eq!(c.memory_limit, usize::MAX);
    assert_eq!(c.max_retained_messages, usize::MAX);
    assert_eq!(c.max_retained_bytes, usize::MAX);
    assert_eq!(c.max_sessions, usize::MAX);
    assert_eq!(c.max_subscribe_filters, usize::MAX);
    assert_eq!(c.max_connect_size, 268_435_460);
}

#[test]
fn the_smaller_of_the_two_packet_size_keys_wins() {
    for text in [
        "max_packet_size = 100\nmessage_size_limit = 200\n",
        "max_packet_size = 200\nmessage_size_limit = 100\n",
        "message_size_limit = 100\n",
    ] {
        assert_eq!(parse(text).config.max_packet_size, 100, "{text}");
    }
    assert_eq!(
        parse("max_packet_size = 0\nmessage_size_limit = 9\n")
            .config
            .max_packet_size,
        9
    );
}

#[test]
fn every_limits_key_sets_its_field() {
    let s = parse(
        "[limits]\nreceive_maximum = 10\nmax_client_id_len = 64\n\
         max_subscriptions_per_client = 5\nconnect_timeout_secs = 3\nmax_outbound_bytes = 1234\n\
         await_rel_timeout_secs = 30\n\
         max_retained_messages = 100\nmax_retained_bytes = 5000\nmax_sessions = 1000\n\
         max_subscribe_filters = 16\nmax_connect_size = 512\n",
    );
    let c = &s.config;
    assert_eq!(c.receive_maximum, 10);
    assert_eq!(c.max_client_id_len, 64);
    assert_eq!(c.max_subscriptions_per_client, 5);
    assert_eq!(c.connect_timeout, Duration::from_secs(3));
    assert_eq!(c.await_rel_timeout, Duration::from_secs(30));
    assert_eq!(s.options.max_outbound_bytes, 1234);
    assert_eq!(c.max_retained_messages, 100);
    assert_eq!(c.max_retained_bytes, 5000);
    assert_eq!(c.max_sessions, 1000);
    assert_eq!(c.max_subscribe_filters, 16);
    assert_eq!(c.max_connect_size, 512);
}

#[test]
fn a_password_file_turns_anonymous_access_off_unless_the_file_says_otherwise() {
    let s = parse("password_file = \"passwd\"\nacl_file = \"acl\"\n");
    assert!(!s.config.allow_anonymous);
    assert_eq!(s.password_file.as_deref(), Some(Path::new("passwd")));
    assert_eq!(s.acl_file.as_deref(), Some(Path::new("acl")));
    assert!(
        parse("password_file = \"p\"\nallow_anonymous = true\n")
            .config
            .allow_anonymous
    );
    assert!(!parse("allow_anonymous = false\n").config.allow_anonymous);
}

#[test]
fn persistent_client_expiration_takes_mosquittos_units() {
    for (text, secs) in [
        ("3600", 3600),
        ("\"2h\"", 7200),
        ("\"14d\"", 14 * 86_400),
        ("\"1w\"", 7 * 86_400),
        ("\"1m\"", 30 * 86_400),
        ("\"1y\"", 365 * 86_400),
    ] {
        let s = parse(&format!("persistent_client_expiration = {text}\n"));
        assert_eq!(s.config.persistent_session_expiry, Some(secs), "{text}");
    }
}

#[test]
fn listeners_and_listener_tables_are_listeners_in_order() {
    let s = parse(
        "listeners = [\"127.0.0.1:1883\", \"[::1]:1884\"]\n\
         [[listener]]\nbind = \"127.0.0.1:8080\"\nprotocol = \"websockets\"\n\
         [[listener]]\nbind = \"127.0.0.1:1885\"\nprotocol = \"mqtt\"\n",
    );
    let l = s.listeners.as_ref().unwrap();
    let binds: Vec<SocketAddr> = l.iter().map(|l| l.bind).collect();
    let expected = [
        "127.0.0.1:1883",
        "[::1]:1884",
        "127.0.0.1:8080",
        "127.0.0.1:1885",
    ];
    assert_eq!(binds, expected.map(addr));
    assert_eq!(l[2].protocol, Protocol::WebSockets);
    assert_eq!(l[3].protocol, Protocol::Mqtt);
    assert_eq!(s.summary()[2], "listener 127.0.0.1:8080: websockets");
    // A host name is resolved in a table.
    let s = parse("[[listener]]\nbind = \"localhost:1883\"\n");
    assert_eq!(s.listeners.unwrap()[0].bind.port(), 1883);
}

#[cfg(feature = "tls")]
#[test]
fn a_listener_with_certificates_speaks_tls() {
    let s = parse(
        "[[listener]]\nbind = \"127.0.0.1:8883\"\ncertfile = \"s.pem\"\nkeyfile = \"s.key\"\n\
         cafile = \"ca.pem\"\nrequire_certificate = true\nuse_identity_as_username = true\n",
    );
    let l = &s.listeners.as_ref().unwrap()[0];
    let tls = l.tls.as_ref().unwrap();
    assert_eq!(tls.certfile, Path::new("s.pem"));
    assert_eq!(tls.keyfile, Path::new("s.key"));
    assert_eq!(tls.cafile.as_deref(), Some(Path::new("ca.pem")));
    assert!(tls.require_certificate);
    assert!(l.use_identity_as_username);
    assert_eq!(
        s.summary()[0],
        "listener 127.0.0.1:8883: mqtt over TLS (client certificates required), certificate \
         name as user name"
    );
    let mut s = s;
    s.relative_to(Path::new("/etc/broker"));
    let tls = s.listeners.as_ref().unwrap()[0].tls.clone().unwrap();
    assert_eq!(tls.certfile, Path::new("/etc/broker/s.pem"));
    assert_eq!(tls.keyfile, Path::new("/etc/broker/s.key"));
    assert_eq!(tls.cafile.as_deref(), Some(Path::new("/etc/broker/ca.pem")));
}

#[test]
fn persistence_names_the_store_folder_and_fsync_its_policy() {
    let s = parse("persistence_location = \"data\"\n");
    assert_eq!(s.options.persistence.as_deref(), Some(Path::new("data")));
    let s = parse("persistence_location = \"data\"\npersistence = true\n");
    assert_eq!(s.options.persistence.as_deref(), Some(Path::new("data")));
    let s = parse("persistence_location = \"data\"\npersistence = false\n");
    assert_eq!(s.options.persistence, None);
    let s = parse("persistence = \"there\"\n");
    assert_eq!(s.options.persistence.as_deref(), Some(Path::new("there")));
    assert_eq!(
        s.summary().last().unwrap(),
        "persistence in there: fsync always"
    );

    let s = parse("persistence = \"d\"\nfsync = \"interval\"\nautosave_interval = 5\n");
    assert_eq!(s.options.fsync, Fsync::Interval(Duration::from_secs(5)));
    assert!(!s.config.durable_acks);
    assert_eq!(s.autosave_interval, Duration::from_secs(5));
    assert_eq!(
        s.summary().last().unwrap(),
        "persistence in d: fsync interval, a sync every 5 s"
    );
    let s = parse("fsync = \"interval\"\n");
    assert_eq!(s.options.fsync, Fsync::Interval(Fsync::DEFAULT_INTERVAL));
    let mut s = parse("fsync = \"always\"\n");
    assert_eq!(s.options.fsync, Fsync::Always);
    assert!(s.config.durable_acks);
    // The command line may override the file's policy.
    s.set_fsync(true);
    assert_eq!(s.options.fsync, Fsync::Interval(Fsync::DEFAULT_INTERVAL));
    assert!(!s.config.durable_acks);

    let mut s = parse("persistence = \"d\"\npassword_file = \"p\"\nacl_file = \"/abs/acl\"\n");
    s.relative_to(Path::new("/etc/broker"));
    assert_eq!(
        s.options.persistence.as_deref(),
        Some(Path::new("/etc/broker/d"))
    );
    assert_eq!(s.password_file.as_deref(), Some(Path::new("/etc/broker/p")));
    assert_eq!(s.acl_file.as_deref(), Some(Path::new("/abs/acl")));
}

mod errors;

mod cluster;
