//! Client configuration and the reconnect backoff.

use std::num::NonZeroU16;
use std::time::Duration;

use bytes::Bytes;

use crate::codec::{ConnectProperties, Will};
use crate::types::{ByteStr, ProtocolVersion};

/// Everything a [`ClientSession`](super::ClientSession) needs to connect and behave.
///
/// Build it with [`ClientConfig::new`] and the `with_*` setters (or set its public fields):
/// it is `#[non_exhaustive]`, so a field added later breaks no one.
///
/// ```compile_fail
/// use tinymqtt::client::ClientConfig;
/// use tinymqtt::{ByteStr, ProtocolVersion};
///
/// let base = ClientConfig::new(ProtocolVersion::V5, ByteStr::from_static("id"));
/// let config = ClientConfig { keep_alive: 30, ..base }; // a struct literal: not from outside
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The protocol version to speak.
    pub protocol: ProtocolVersion,
    /// The client identifier; empty asks the server to assign one (3.1.1 and 5.0).
    pub client_id: ByteStr,
    /// Clean Session (3.1.x) / Clean Start (5.0) on the first connection.
    ///
    /// Later connections resume the session when one can exist: under 3.1.x when this is false,
    /// under 5.0 when the session expiry interval is above zero.
    pub clean_start: bool,
    /// Keep-alive in seconds; 0 turns pings off. The server's keep-alive overrides it.
    pub keep_alive: u16,
    /// The user name.
    pub username: Option<ByteStr>,
    /// The password.
    pub password: Option<Bytes>,
    /// The will message.
    pub will: Option<Will>,
    /// MQTT 5 CONNECT properties. Receive maximum, maximum packet size and topic alias maximum
    /// here are also the limits the client enforces on what the server sends.
    pub properties: ConnectProperties,
    /// How long to wait for CONNACK.
    pub connect_timeout: Duration,
    /// How long to wait for PINGRESP (or any packet) after a PINGREQ; `None` means the
    /// keep-alive interval.
    pub ping_timeout: Option<Duration>,
    /// Reconnect automatically with this backoff; `None` stays disconnected.
    pub reconnect: Option<Backoff>,
    /// Re-subscribe the current subscriptions when a reconnect finds no session.
    pub resubscribe: bool,
    /// Received QoS 1/2 messages are acknowledged only by
    /// [`ClientSession::ack`](super::ClientSession::ack).
    pub manual_acks: bool,
    /// Assign outgoing topic aliases automatically, within the server's topic alias maximum.
    pub topic_aliases: bool,
    /// At most this many QoS 1/2 publishes unacknowledged at once, below the server's Receive
    /// Maximum; `None`: the server's limit alone (65,535 under 3.1.x).
    pub max_inflight: Option<NonZeroU16>,
}

impl ClientConfig {
    /// A configuration with the usual defaults: clean start, 60 s keep-alive, 10 s connect
    /// timeout, reconnect with [`Backoff::default`], re-subscribe, automatic acks and aliases.
    pub fn new(protocol: ProtocolVersion, client_id: ByteStr) -> ClientConfig {
        ClientConfig {
            protocol,
            client_id,
            clean_start: true,
            keep_alive: 60,
            username: None,
            password: None,
            will: None,
            properties: ConnectProperties::default(),
            connect_timeout: Duration::from_secs(10),
            ping_timeout: None,
            reconnect: Some(Backoff::default()),
            resubscribe: true,
            manual_acks: false,
            topic_aliases: true,
            max_inflight: None,
        }
    }
}

/// Exponential backoff with jitter between reconnect attempts.
///
/// Attempt `n` (from 0) waits `min(max, initial * 2^n)`, minus up to `jitter` of it chosen by a
/// pseudo-random generator seeded with `seed`, so a fleet of clients does not reconnect in step
/// and a test can predict every delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
    /// The share of each delay that may be taken off at random, in percent (0-100).
    pub jitter_percent: u8,
    /// Seed of the jitter generator.
    pub seed: u64,
}

impl Default for Backoff {
    /// 1 s doubling to 60 s, 20% jitter.
    fn default() -> Backoff {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            jitter_percent: 20,
            seed: 0x5EED,
        }
    }
}

impl Backoff {
    /// The delay before attempt `attempt`, advancing the generator state `rng`.
    pub fn delay(&self, attempt: u32, rng: &mut u64) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        let base = self.initial.saturating_mul(factor).min(self.max);
        let jitter = u64::from(self.jitter_percent.min(100));
        // Take off `jitter`% of the base, scaled by a uniform draw in [0, 1).
        let draw = splitmix64(rng) >> 11; // 53 random bits
        let cut_nanos = ((base.as_nanos() * u128::from(jitter) / 100) * u128::from(draw)) >> 53;
        base.saturating_sub(Duration::from_nanos(cut_nanos as u64))
    }
}

/// SplitMix64: small, fast and good enough for jitter.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_max_and_jitter_stays_in_bounds() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            jitter_percent: 0,
            seed: 1,
        };
        let mut rng = b.seed;
        let delays: Vec<u128> = (0..8).map(|n| b.delay(n, &mut rng).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1600, 2000, 2000, 2000]);

        let j = Backoff {
            jitter_percent: 50,
            ..b
        };
        let mut rng = j.seed;
        for n in 0..40 {
            let d = j.delay(n, &mut rng);
            let base = b.delay(n, &mut 0);
            assert!(d <= base && d * 2 >= base, "attempt {n}: {d:?} vs {base:?}");
        }
        // Same seed, same sequence.
        let (mut r1, mut r2) = (7, 7);
        for n in 0..10 {
            assert_eq!(j.delay(n, &mut r1), j.delay(n, &mut r2));
        }
        assert_eq!(b.delay(u32::MAX, &mut 0), b.max);
    }
}
