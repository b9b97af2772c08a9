//! Mail between connections and the router, tagged with a never-reused [`ConnId`].
//!
//! While a client is online its connection holds the session's in-flight outbound flows and
//! its received QoS 2 identifiers; when the connection closes it hands them back to the router
//! ([`Handover`]), which gives them to the next connection of the session.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use crate::broker::DropReason;
use crate::codec::{Publish, Subscription, Will};
use crate::types::{ByteStr, PacketId, ProtocolVersion, QoS, ReasonCode, TopicFilter};

/// Identifies a transport connection; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// A message on its way to one subscriber.
///
/// The message itself is shared by every delivery of it (one allocation per routed PUBLISH,
/// whatever the fan-out); what differs per subscriber sits beside it, so a delivery is small
/// and cheap to move through queues and mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// Topic, payload and properties as routed (no packet identifier, topic alias or
    /// subscription identifier; DUP clear).
    pub(crate) message: Arc<Publish>,
    /// The QoS to deliver with (the message's, at most the subscription's).
    pub(crate) qos: QoS,
    /// The retain flag to deliver with.
    pub(crate) retain: bool,
    /// The subscription identifiers that matched (MQTT 5).
    pub(crate) subscription_ids: Box<[NonZeroU32]>,
    /// When the message expires (MQTT 5 message expiry), if it does.
    pub(crate) expires_at: Option<Instant>,
    /// Its sequence number in the store while the store holds it (a QoS 1/2 message of a
    /// stored session, until its PUBACK or PUBREC; a queued QoS 0 one until it is sent).
    pub(crate) stored: Option<u64>,
    /// The packet identifier the router picked when it stored the message (the connection
    /// uses it unless it is taken there).
    pub(crate) packet_id: Option<PacketId>,
}

impl Delivery {
    /// A delivery of `publish` as it is (its QoS and retain flag), for restored messages.
    pub(crate) fn of(publish: Publish) -> Delivery {
        let (qos, retain) = (publish.qos, publish.retain);
        let mut message = publish;
        let subscription_ids =
            std::mem::take(&mut message.properties.subscription_identifiers).into_boxed_slice();
        message.dup = false;
        message.packet_id = None;
        message.properties.topic_alias = None;
        Delivery {
            message: Arc::new(message),
            qos,
            retain,
            subscription_ids,
            expires_at: None,
            stored: None,
            packet_id: None,
        }
    }

    /// The PUBLISH this delivers, without a packet identifier, built whole: for the store and
    /// the rare packets the fast encoder does not take.
    pub(crate) fn publish(&self) -> Publish {
        let mut p = Publish::clone(&self.message);
        p.qos = self.qos;
        p.retain = self.retain;
        p.properties.subscription_identifiers = self.subscription_ids.to_vec();
        p
    }

    /// The payload's size in bytes (what queue byte limits count).
    pub(crate) fn payload_len(&self) -> usize {
        self.message.payload.len()
    }

    /// Whether it is delivered at QoS 0.
    pub(crate) fn is_qos0(&self) -> bool {
        self.qos == QoS::AtMostOnce
    }
}

/// The most QoS 1/2 deliveries the router releases to a connection beyond its in-flight
/// window.
pub(crate) const MAX_PREFETCH: usize = 128;

/// How many QoS 1/2 deliveries the router may release to a connection beyond its in-flight
/// `window` (as many again, at most [`MAX_PREFETCH`]): they wait in the connection, which
/// sends the next one as soon as a flow ends instead of waiting a round trip through the
/// router for it. Its credit still goes to the router, which tops the prefetch up.
pub(crate) fn prefetch(window: usize) -> usize {
    window.min(MAX_PREFETCH)
}

/// An outbound QoS 1/2 flow not yet finished.
///
/// Kept unboxed on purpose: boxing the delivery would cost an allocation per outbound QoS 1/2
/// message to save the space of the short-lived `Released` state.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutFlow {
    /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Publish(Delivery),
    /// PUBREL sent, waiting for PUBCOMP; `stored` when the store holds the flow.
    Released {
        /// Whether the store holds the flow (its PUBCOMP is reported to the router).
        stored: bool,
    },
}

/// Session state that travels between the router and the connection serving the session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Handover {
    /// Outbound flows in the order they started, with their packet identifiers.
    pub(crate) outbound: Vec<(PacketId, OutFlow)>,
    /// Received QoS 2 identifiers answered with PUBREC, waiting for PUBREL.
    /// A boxed slice: the hand-over travels in mail, which stays small.
    pub(crate) incoming_qos2: Box<[PacketId]>,
    /// Router to connection only: the session's last inbound QoS 2 identifiers with their
    /// messages' digests, to tell a client's replay of a released PUBLISH (see `replay`).
    /// Boxed: most sessions have none, and the mail stays small. Between connections the
    /// router keeps the session's list here.
    pub(crate) completed: Option<Box<super::replay::Completed>>,
}

/// What a validated, authenticated CONNECT asks of the router.
#[derive(Debug, Clone)]
pub(crate) struct ConnectRequest {
    pub(crate) client_id: ByteStr,
    /// The authenticated user name: the session's owner.
    pub(crate) username: Option<ByteStr>,
    pub(crate) protocol: ProtocolVersion,
    pub(crate) clean_start: bool,
    /// Seconds; `u32::MAX` never expires.
    pub(crate) session_expiry: u32,
    pub(crate) will: Option<Will>,
    /// The in-flight window towards the client.
    pub(crate) window: u16,
}

/// Mail from a connection to the router, tagged with the connection it comes from.
#[derive(Debug, Clone)]
pub struct RouterMail {
    pub(crate) conn: ConnId,
    pub(crate) mail: ToRouter,
}

impl RouterMail {
    /// The connection the mail comes from.
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// For a validated, authenticated CONNECT: the client id (assigned, if the client sent
    /// none) and the session expiry it asks for (`u32::MAX`: never). A cluster claims the
    /// session before the router sees the CONNECT.
    pub fn connect_request(&self) -> Option<(&ByteStr, u32)> {
        match &self.mail {
            ToRouter::Connect(req) => Some((&req.client_id, req.session_expiry)),
            _ => None,
        }
    }
}

/// Mail from the router to one connection, tagged with the connection it is for.
#[derive(Debug, Clone)]
pub struct ConnectionMail {
    pub(crate) conn: ConnId,
    pub(crate) mail: ToConnection,
}

impl ConnectionMail {
    /// The connection the mail is for.
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// Whether it ends the connection (a takeover, a shutdown): a runtime reads what the
    /// client already sent before it hands this over, so a DISCONNECT the client sent first
    /// is applied first.
    pub fn ends_connection(&self) -> bool {
        matches!(self.mail, ToConnection::Disconnect(_))
    }

    /// Whether it closes the connection (a takeover, a refusal, a shutdown): a runtime acts
    /// on it even while the connection's socket write is blocked.
    pub fn closes(&self) -> bool {
        matches!(
            self.mail,
            ToConnection::Disconnect(_) | ToConnection::Refused(_)
        )
    }

    /// About how many bytes of memory it holds (its own size, plus a delivery's topic and
    /// payload), for byte caps on queues of mail.
    pub fn size(&self) -> usize {
        let own = size_of::<ConnectionMail>();
        match &self.mail {
            ToConnection::Deliver(d) => own + d.message.topic.len() + d.payload_len(),
            _ => own,
        }
    }
}

/// Connection to router.
#[derive(Debug, Clone)]
pub(crate) enum ToRouter {
    /// Boxed: rare, and large with a will.
    Connect(Box<ConnectRequest>),
    /// A PUBLISH from the client, authorized, alias resolved; at QoS 1/2 the connection
    /// holds its PUBACK / PUBREC until [`ToConnection::SendHeld`]. Shared already: the router
    /// hands it to every subscriber as it is, so the allocation is the one it needs anyway,
    /// and the mail stays small. A QoS 2 message comes with its digest (see `replay`),
    /// computed by the connection so the router does not read payloads.
    Publish(Arc<Publish>, Option<u64>),
    /// SUBSCRIBE, with the connection's verdict per filter (`Some` refuses it with that code).
    Subscribe {
        packet_id: PacketId,
        subscription_id: Option<NonZeroU32>,
        filters: Vec<(Subscription, Option<ReasonCode>)>,
    },
    Unsubscribe {
        packet_id: PacketId,
        filters: Vec<TopicFilter>,
    },
    /// Outbound QoS 1/2 flows finished (or were dropped): the window has room for this many
    /// more. Consecutive credits travel as one mail.
    Credit(u32),
    /// The flow of a stored message ended (PUBACK, a PUBREC with an error, or dropped): the
    /// store no longer needs it.
    Delivered { seq: u64 },
    /// A PUBREC for a stored outbound QoS 2 message: the store keeps the released flow
    /// instead of the message. With durable acks the connection holds its PUBREL for the
    /// ticket this logs (without, it holds nothing and no ticket comes).
    Received { seq: u64, packet_id: PacketId },
    /// A PUBCOMP for a stored released flow.
    Completed { packet_id: PacketId },
    /// A PUBREL for an inbound QoS 2 message of a stored session. With durable acks the
    /// connection holds its PUBCOMP for the ticket this logs (without, no ticket comes).
    Released { packet_id: PacketId },
    /// An inbound QoS 2 identifier waited for its PUBREL longer than
    /// [`BrokerConfig::await_rel_timeout`](super::BrokerConfig::await_rel_timeout) and was
    /// forgotten: counted, and the store forgets it too. No acknowledgement is held for it.
    AwaitRelExpired { packet_id: PacketId },
    /// A delivery that reached the connection after it closed, never sent: it goes back to
    /// the session (right after the connection's `Closed`).
    Returned(Delivery),
    /// The connection holds an acknowledgement that promises nothing new (a refusal, a
    /// duplicate): it goes out in order behind the others.
    Hold,
    /// A PUBLISH was refused (the authorizer, or `$SYS`): counted. `held`: its refusing
    /// PUBACK / PUBREC is held like any other acknowledgement (as [`ToRouter::Hold`]).
    /// `memory`: refused for the memory or retained budget (0x97), not by the authorizer.
    Denied { held: bool, memory: bool },
    /// A delivery the connection did not send (too large for the client, expired, or one the
    /// client may not read): counted, and taken back from the messages sent.
    Dropped {
        reason: DropReason,
        qos: QoS,
        bytes: u32,
    },
    /// The connection ended before it had a session; `refused`: the CONNACK code that
    /// refused its CONNECT (counted by the router).
    Gone { refused: Option<ReasonCode> },
    /// The connection is over.
    Closed {
        /// Publish the will (abnormal end, keep-alive timeout, takeover, DISCONNECT 0x04).
        will: bool,
        /// A session expiry set by DISCONNECT (MQTT 5).
        session_expiry: Option<u32>,
        handover: Handover,
    },
}

/// Router to connection.
///
/// Kept unboxed on purpose: `Deliver` is by far the most frequent mail, and boxing it would
/// cost an allocation per delivered message to shrink the rare acknowledgements.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub(crate) enum ToConnection {
    /// The session is ready: send CONNACK, then resend what `handover` holds.
    Accepted {
        session_present: bool,
        handover: Handover,
        /// Hold PUBREL and PUBCOMP until [`ToConnection::SendHeld`] too (durable acks with a
        /// store).
        hold_flows: bool,
        /// The store holds the session (its inbound QoS 2 flows are reported).
        stored: bool,
    },
    /// The oldest held acknowledgements (this many) may go: what it promises is done (routed,
    /// durable with a store, and the subscribers' queues had room).
    SendHeld(u32),
    /// A message to send (the router keeps within the connection's window).
    Deliver(Delivery),
    /// The client's QoS 1/2 PUBLISH with this packet identifier matched no subscription: its
    /// held PUBACK / PUBREC says 0x10 No matching subscribers (MQTT 5).
    NoSubscribers(PacketId),
    /// The client's retained QoS 1/2 PUBLISH with this packet identifier found no room in the
    /// retained store, and was neither retained nor routed: its held PUBACK / PUBREC says 0x97
    /// Quota exceeded (MQTT 5), and no PUBREL is awaited for it.
    RetainRefused(PacketId),
    SubAck {
        packet_id: PacketId,
        codes: Vec<ReasonCode>,
    },
    UnsubAck {
        packet_id: PacketId,
        codes: Vec<ReasonCode>,
    },
    /// The session is refused (too many connections): CONNACK with this code, then close.
    Refused(ReasonCode),
    /// Close with this reason (session taken over, server shutting down).
    Disconnect(ReasonCode),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_copy_of_a_message_shares_its_user_properties() {
        // What each non-plain delivery and each stored copy is built from: a clone whose user
        // properties are the message's own bytes, not a copy of them.
        let mut p = Publish::new(crate::types::TopicName::from_static("t"), &b"x"[..]);
        let pair = (ByteStr::from_static("k"), ByteStr::from_static("v"));
        p.properties.user_properties = vec![pair; 1000].into();
        p.qos = QoS::AtLeastOnce;
        let d = Delivery::of(p);
        let copy = d.publish();
        let (mine, theirs) = (
            d.message.properties.user_properties.as_wire(),
            copy.properties.user_properties.as_wire(),
        );
        assert_eq!(mine.len(), 7000);
        assert_eq!(mine.as_ptr(), theirs.as_ptr(), "deep-cloned");
    }

    #[test]
    fn mail_stays_a_few_words() {
        // Every delivery moves through a session queue, the outbox, a batch, the connection's
        // post and its flows: the message is shared, what moves is small.
        assert!(size_of::<Delivery>() <= 64, "{}", size_of::<Delivery>());
        assert!(
            size_of::<ToConnection>() <= 64,
            "{}",
            size_of::<ToConnection>()
        );
        assert!(size_of::<ToRouter>() <= 72, "{}", size_of::<ToRouter>());
        assert!(size_of::<OutFlow>() <= 64, "{}", size_of::<OutFlow>());
    }
}
