//! `$SYS/broker/...` statistics, as Mosquitto publishes them: retained QoS 0 messages with
//! decimal text payloads, at `sys_interval`.

use std::time::Duration;

use bytes::Bytes;

use super::BrokerStats;
use crate::codec::Publish;
use crate::types::TopicName;

/// The statistics messages for `stats` after `uptime`.
pub(crate) fn messages(stats: &BrokerStats, uptime: Duration) -> Vec<Publish> {
    let entries: [(&'static str, String); 12] = [
        (
            "$SYS/broker/version",
            format!("tinymqtt {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "$SYS/broker/uptime",
            format!("{} seconds", uptime.as_secs()),
        ),
        (
            "$SYS/broker/clients/connected",
            stats.connections.to_string(),
        ),
        ("$SYS/broker/clients/total", stats.sessions.to_string()),
        (
            "$SYS/broker/messages/received",
            stats.messages_received.to_string(),
        ),
        ("$SYS/broker/messages/sent", stats.messages_sent.to_string()),
        (
            "$SYS/broker/bytes/received",
            stats.bytes_received.to_string(),
        ),
        ("$SYS/broker/bytes/sent", stats.bytes_sent.to_string()),
        (
            "$SYS/broker/subscriptions/count",
            stats.subscriptions.to_string(),
        ),
        (
            "$SYS/broker/retained messages/count",
            stats.retained.to_string(),
        ),
        (
            "$SYS/broker/store/messages/dropped",
            stats.dropped.to_string(),
        ),
        ("$SYS/broker/heap/current", stats.memory_used.to_string()),
    ];
    entries
        .into_iter()
        .map(|(topic, value)| {
            let mut p = Publish::new(TopicName::from_static(topic), Bytes::from(value));
            p.retain = true;
            p
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_are_retained_text_under_sys_broker() {
        let stats = BrokerStats {
            connections: 3,
            messages_received: 42,
            ..BrokerStats::default()
        };
        let msgs = messages(&stats, Duration::from_secs(90));
        let get = |t: &str| {
            msgs.iter()
                .find(|p| p.topic == t)
                .map(|p| String::from_utf8(p.payload.to_vec()).unwrap())
        };
        assert_eq!(get("$SYS/broker/clients/connected").as_deref(), Some("3"));
        assert_eq!(get("$SYS/broker/messages/received").as_deref(), Some("42"));
        assert_eq!(get("$SYS/broker/uptime").as_deref(), Some("90 seconds"));
        assert!(msgs
            .iter()
            .all(|p| p.retain && p.topic.starts_with("$SYS/broker/")));
    }
}
