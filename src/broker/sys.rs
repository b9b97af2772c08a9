//! `$SYS/broker/...` statistics, as Mosquitto publishes them: retained QoS 0 messages with
//! text payloads, at `sys_interval`.
//!
//! The names and meanings follow Mosquitto's manual (`mosquitto(8)`, BROKER STATUS), so its
//! dashboards and exporters read them unchanged. The load averages (`load/.../1min`, `5min`,
//! `15min`) are computed here from the counters at each round, never from a clock of their
//! own: the rate over the last interval, in events per minute, smoothed exponentially over
//! one, five and fifteen minutes (the way Unix load averages are), printed with two decimals.

use std::fmt::Write;
use std::time::Duration;

use bytes::Bytes;

use super::BrokerStats;
use crate::codec::Publish;
use crate::types::TopicName;

/// The counters that have a `load/` average, in the order of [`LOADS`].
fn load_counters(s: &BrokerStats) -> [u64; 9] {
    [
        s.connects,
        s.bytes_received,
        s.bytes_sent,
        s.messages_received,
        s.messages_sent,
        s.dropped_by.get(super::DropReason::QueueFull),
        s.messages_received,
        s.messages_sent,
        s.connections_total,
    ]
}

/// The `load/` topics under `$SYS/broker/load/`, one per entry of [`load_counters`].
const LOADS: [&str; 9] = [
    "connections",
    "bytes/received",
    "bytes/sent",
    "messages/received",
    "messages/sent",
    "publish/dropped",
    "publish/received",
    "publish/sent",
    "sockets",
];

/// The averaging windows, in seconds, and their topic suffixes.
const WINDOWS: [(f64, &str); 3] = [(60.0, "1min"), (300.0, "5min"), (900.0, "15min")];

/// The load averages, updated at each `$SYS` round from the counters' growth since the last.
#[derive(Debug, Clone, Default)]
pub(crate) struct Load {
    /// The counters and the uptime at the last round.
    last: Option<([u64; 9], Duration)>,
    /// Per counter, the averages over each window (events per minute).
    averages: [[f64; 3]; 9],
}

impl Load {
    /// Takes the counters of `stats` at `uptime` into the averages.
    pub(crate) fn update(&mut self, stats: &BrokerStats, uptime: Duration) {
        let now = load_counters(stats);
        let (before, then) = self.last.unwrap_or(([0; 9], Duration::ZERO));
        self.last = Some((now, uptime));
        let dt = uptime.saturating_sub(then).as_secs_f64();
        if dt <= 0.0 {
            return;
        }
        for (i, avg) in self.averages.iter_mut().enumerate() {
            let per_minute = now[i].saturating_sub(before[i]) as f64 * 60.0 / dt;
            for (a, (window, _)) in avg.iter_mut().zip(WINDOWS) {
                let keep = (-dt / window).exp();
                *a = per_minute + keep * (*a - per_minute);
            }
        }
    }

    /// The average of `LOADS[counter]` over `WINDOWS[window]`, in events per minute.
    pub(crate) fn get(&self, counter: usize, window: usize) -> f64 {
        self.averages[counter][window]
    }
}

/// The statistics messages for `stats` after `uptime`, with the load averages of `load` and
/// the open connections of each listener.
pub(crate) fn messages(
    stats: &BrokerStats,
    uptime: Duration,
    load: &Load,
    listeners: &[(String, usize)],
) -> Vec<Publish> {
    let s = stats;
    let mut out: Vec<(String, String)> = vec![
        (
            "version".into(),
            format!("tinymqtt {}", env!("CARGO_PKG_VERSION")),
        ),
        ("uptime".into(), format!("{} seconds", uptime.as_secs())),
        ("bytes/received".into(), s.bytes_received.to_string()),
        ("bytes/sent".into(), s.bytes_sent.to_string()),
        ("clients/connected".into(), s.sessions_online.to_string()),
        (
            "clients/disconnected".into(),
            s.sessions_offline().to_string(),
        ),
        ("clients/expired".into(), s.sessions_expired.to_string()),
        ("clients/maximum".into(), s.connections_maximum.to_string()),
        ("clients/total".into(), s.sessions.to_string()),
        ("heap/current".into(), s.memory_used.to_string()),
        ("messages/inflight".into(), s.inflight.to_string()),
        ("messages/received".into(), s.messages_received.to_string()),
        ("messages/sent".into(), s.messages_sent.to_string()),
        ("messages/stored".into(), s.stored_messages().to_string()),
        ("publish/messages/dropped".into(), s.dropped.to_string()),
        (
            "publish/messages/received".into(),
            s.messages_received.to_string(),
        ),
        ("publish/messages/sent".into(), s.messages_sent.to_string()),
        (
            "publish/bytes/received".into(),
            s.publish_received_bytes.total().to_string(),
        ),
        (
            "publish/bytes/sent".into(),
            s.publish_sent_bytes.total().to_string(),
        ),
        ("retained messages/count".into(), s.retained.to_string()),
        (
            "store/messages/count".into(),
            s.stored_messages().to_string(),
        ),
        ("store/messages/bytes".into(), s.stored_bytes().to_string()),
        ("subscriptions/count".into(), s.subscriptions.to_string()),
        (
            "shared_subscriptions/count".into(),
            s.shared_groups.to_string(),
        ),
    ];
    for (i, name) in LOADS.iter().enumerate() {
        for (w, (_, suffix)) in WINDOWS.iter().enumerate() {
            let mut value = String::new();
            let _ = write!(value, "{:.2}", load.get(i, w));
            out.push((format!("load/{name}/{suffix}"), value));
        }
    }
    for (name, n) in listeners {
        // A listener's name becomes one topic level: no separators or wildcards in it.
        let level: String = name
            .chars()
            .map(|c| if matches!(c, '/' | '+' | '#') { '_' } else { c })
            .collect();
        out.push((format!("listener/{level}/clients/connected"), n.to_string()));
    }
    out.into_iter()
        .filter_map(|(topic, value)| {
            let topic = TopicName::try_from(format!("$SYS/broker/{topic}").as_str()).ok()?;
            let mut p = Publish::new(topic, Bytes::from(value));
            p.retain = true;
            Some(p)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(msgs: &[Publish], topic: &str) -> Option<String> {
        msgs.iter()
            .find(|p| p.topic == topic)
            .map(|p| String::from_utf8(p.payload.to_vec()).unwrap())
    }

    #[test]
    fn statistics_are_retained_text_under_sys_broker() {
        let stats = BrokerStats {
            sessions: 5,
            sessions_online: 3,
            messages_received: 42,
            retained: 2,
            queued: 4,
            ..BrokerStats::default()
        };
        let listeners = [("127.0.0.1:1883".to_owned(), 2), ("ws/a#".to_owned(), 1)];
        let msgs = messages(
            &stats,
            Duration::from_secs(90),
            &Load::default(),
            &listeners,
        );
        let get = |t: &str| payload(&msgs, t);
        assert_eq!(get("$SYS/broker/clients/connected").as_deref(), Some("3"));
        assert_eq!(
            get("$SYS/broker/clients/disconnected").as_deref(),
            Some("2")
        );
        assert_eq!(get("$SYS/broker/messages/received").as_deref(), Some("42"));
        assert_eq!(
            get("$SYS/broker/store/messages/count").as_deref(),
            Some("6")
        );
        assert_eq!(get("$SYS/broker/uptime").as_deref(), Some("90 seconds"));
        assert_eq!(
            get("$SYS/broker/load/messages/received/15min").as_deref(),
            Some("0.00")
        );
        assert_eq!(
            get("$SYS/broker/listener/127.0.0.1:1883/clients/connected").as_deref(),
            Some("2")
        );
        assert_eq!(
            get("$SYS/broker/listener/ws_a_/clients/connected").as_deref(),
            Some("1")
        );
        assert!(msgs
            .iter()
            .all(|p| p.retain && p.topic.starts_with("$SYS/broker/")));
        // 24 plain topics, 9 loads of 3 windows, 2 listeners.
        assert_eq!(msgs.len(), 24 + 27 + 2);
    }

    #[test]
    fn load_averages_smooth_the_rate_per_minute_over_their_window() {
        let mut load = Load::default();
        // 60 PUBLISHes in the first minute: a rate of 60 per minute.
        let mut stats = BrokerStats {
            messages_received: 60,
            ..BrokerStats::default()
        };
        load.update(&stats, Duration::from_secs(60));
        let at = |l: &Load, w| format!("{:.2}", l.get(3, w));
        // 60 * (1 - e^-1), 60 * (1 - e^-1/5), 60 * (1 - e^-1/15).
        assert_eq!(at(&load, 0), "37.93");
        assert_eq!(at(&load, 1), "10.88");
        assert_eq!(at(&load, 2), "3.87");
        // A steady rate: every average closes in on it, the short one first.
        for minute in 2..=60 {
            stats.messages_received = 60 * minute;
            load.update(&stats, Duration::from_secs(60 * minute));
        }
        assert_eq!(at(&load, 0), "60.00");
        // 60 * (1 - e^-4) after an hour.
        assert_eq!(format!("{:.2}", load.get(3, 2)), "58.90");
        // Silence: the one-minute average falls fastest.
        load.update(&stats, Duration::from_secs(60 * 61));
        assert_eq!(at(&load, 0), "22.07");
        assert!(load.get(3, 1) > load.get(3, 0));
        // A round at the same instant changes nothing.
        load.update(&stats, Duration::from_secs(60 * 61));
        assert_eq!(at(&load, 0), "22.07");
    }
}
