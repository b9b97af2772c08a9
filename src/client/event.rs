//! What the client reports, and the session state it can export.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

use crate::codec::{
    AckProperties, Auth, ConnAckProperties, DisconnectProperties, Publish, Subscription,
};
use crate::error::CloseReason;
use crate::types::{ByteStr, PacketId, ReasonCode};

/// Something the application should know; drained with
/// [`ClientSession::poll_event`](super::ClientSession::poll_event).
///
/// The runtime clients (`tinymqtt::runtimes::<runtime>::Client`) report these through their
/// `Events`, having done the sans-IO part themselves: they write what the session transmits, close
/// and reopen transports and reconnect as
/// [`ClientConfig::reconnect`](super::ClientConfig::reconnect) says, so they never report
/// [`Event::ReconnectDue`]. The acknowledgements of their own calls ([`Event::Published`], and the
/// SUBACK/UNSUBACK of `subscribe`/`unsubscribe`) complete those calls instead of arriving here. The
/// instructions on each variant are for the sans-IO [`ClientSession`](super::ClientSession).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The first connection was accepted.
    Connected {
        /// Whether the server had a session for this client.
        session_present: bool,
        /// The server's CONNACK properties (MQTT 5).
        properties: Box<ConnAckProperties>,
    },
    /// A later connection was accepted; `lost` is what the previous one left unfinished that
    /// will not complete.
    Reconnected {
        /// Whether the server resumed the session (unacked publishes were then resent).
        session_present: bool,
        /// The server's CONNACK properties (MQTT 5).
        properties: Box<ConnAckProperties>,
        /// What will not complete.
        lost: Lost,
    },
    /// A message arrived.
    Message(Message),
    /// A QoS 1 or 2 publish finished: PUBACK, PUBCOMP, or a PUBREC with an error code.
    Published {
        /// The identifier `publish` returned.
        packet_id: PacketId,
        /// The server's reason code (Success in 3.1.x).
        reason_code: ReasonCode,
        /// The acknowledgement's properties.
        properties: AckProperties,
    },
    /// The server answered a SUBSCRIBE.
    Subscribed {
        /// The identifier `subscribe` returned.
        packet_id: PacketId,
        /// One per filter: the granted QoS or a failure.
        reason_codes: Vec<ReasonCode>,
        /// SUBACK properties.
        properties: AckProperties,
    },
    /// The server answered an UNSUBSCRIBE.
    Unsubscribed {
        /// The identifier `unsubscribe` returned.
        packet_id: PacketId,
        /// One per filter (MQTT 5; empty in 3.1.x).
        reason_codes: Vec<ReasonCode>,
        /// UNSUBACK properties.
        properties: AckProperties,
    },
    /// The server sent AUTH (MQTT 5 enhanced authentication); answer with `ClientSession::auth`
    /// (the runtime clients have `auth` too, or answer through a `ConnectOptions::with_auth`
    /// handler).
    Auth(Auth),
    /// The connection ended. Sans-IO: send what `poll_transmit` still yields, then close the
    /// transport (a runtime client has done so, and reconnects if configured to).
    Disconnected {
        /// Who ended it and why.
        reason: CloseReason,
        /// The server's DISCONNECT properties, if it sent one.
        properties: Box<DisconnectProperties>,
    },
    /// The backoff delay has passed: open a new transport and call `ClientSession::connect`
    /// (sans-IO only: the runtime clients reconnect themselves).
    ReconnectDue,
    /// With manual acks, the last [`AckToken`] of a message was dropped without
    /// `ClientSession::ack` while the session still waited for it: the message stays unacknowledged
    /// (it holds a slot of the receive window, and the acknowledgements of the messages after
    /// it wait for it: [MQTT-4.6.0-2]), so delivery will stall. Reported at the next
    /// `poll_event` after the drop.
    AckTokenDropped {
        /// The packet identifier of the message.
        packet_id: PacketId,
    },
}

/// A received application message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The PUBLISH, with the topic filled in when the server used a topic alias.
    pub publish: Publish,
    /// With manual acks, the token to pass to `ClientSession::ack` (QoS 1 and 2 only).
    pub ack: Option<AckToken>,
}

/// Identifies a received message to acknowledge with `ClientSession::ack`.
///
/// Clones name the same message. Dropping the last one without acknowledging the message,
/// while the session still waits for it, is reported as [`Event::AckTokenDropped`]: the
/// message would otherwise stall delivery silently.
#[derive(Debug, Clone)]
pub struct AckToken {
    pub(crate) connection: u64,
    pub(crate) seq: u64,
    pub(crate) packet_id: PacketId,
    /// Shared with the session's entry for the message while it waits.
    pub(crate) watch: Arc<AckWatch>,
}

impl AckToken {
    /// The packet identifier of the message.
    pub fn packet_id(&self) -> PacketId {
        self.packet_id
    }
}

impl PartialEq for AckToken {
    fn eq(&self, other: &Self) -> bool {
        (self.connection, self.seq, self.packet_id)
            == (other.connection, other.seq, other.packet_id)
    }
}

impl Eq for AckToken {}

impl std::hash::Hash for AckToken {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.connection, self.seq, self.packet_id).hash(state);
    }
}

impl Drop for AckToken {
    fn drop(&mut self) {
        // Two references left: this token and the session's entry, which waits for the ack.
        // (The session drops its entry when the connection ends: a stale token is no loss.)
        if Arc::strong_count(&self.watch) == 2 && self.watch.mark(AckWatch::LIVE, AckWatch::DROPPED)
        {
            self.watch.session.store(true, Ordering::Release);
        }
    }
}

/// What a message's tokens and the session's entry for it share.
#[derive(Debug)]
pub(crate) struct AckWatch {
    state: AtomicU8,
    /// The session's flag: some token was dropped unacknowledged.
    session: Arc<AtomicBool>,
}

impl AckWatch {
    pub(crate) const LIVE: u8 = 0;
    pub(crate) const ACKED: u8 = 1;
    pub(crate) const DROPPED: u8 = 2;
    pub(crate) const REPORTED: u8 = 3;

    /// A watch for a new message of the session whose flag is `session`.
    pub(crate) fn new(session: Arc<AtomicBool>) -> Arc<AckWatch> {
        Arc::new(AckWatch {
            state: AtomicU8::new(Self::LIVE),
            session,
        })
    }

    /// Moves from `from` to `to`; false if the state was not `from`.
    pub(crate) fn mark(&self, from: u8, to: u8) -> bool {
        self.state
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// What a reconnect reports as unfinished for good.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lost {
    /// QoS 1/2 publishes the server never acknowledged; the new session does not know them.
    pub publishes: Vec<Publish>,
    /// QoS 2 publishes the server had received (PUBREC) whose handshake could not complete.
    pub released: Vec<PacketId>,
    /// SUBSCRIBE requests that got no SUBACK.
    pub subscribes: Vec<PacketId>,
    /// UNSUBSCRIBE requests that got no UNSUBACK.
    pub unsubscribes: Vec<PacketId>,
}

impl Lost {
    /// Whether nothing was lost.
    pub fn is_empty(&self) -> bool {
        self.publishes.is_empty()
            && self.released.is_empty()
            && self.subscribes.is_empty()
            && self.unsubscribes.is_empty()
    }
}

/// An unfinished outgoing flow, in the order it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A QoS 1/2 PUBLISH waiting for PUBACK or PUBREC.
    Publish(Box<Publish>),
    /// A QoS 2 flow waiting for PUBCOMP after PUBREL.
    PubRel(PacketId),
}

/// The client's session state, exported to survive a process restart (a durable outbox).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionState {
    /// The client identifier in use (the server's assigned one, if it assigned one).
    pub client_id: ByteStr,
    /// Unfinished outgoing QoS 1/2 flows, oldest first.
    pub outgoing: Vec<Outgoing>,
    /// Received QoS 2 packet identifiers waiting for PUBREL (never delivered twice).
    pub incoming_qos2: Vec<PacketId>,
    /// Acknowledged subscriptions, with their subscription identifiers.
    pub subscriptions: Vec<(Subscription, Option<NonZeroU32>)>,
}
