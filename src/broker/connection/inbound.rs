//! The inbound PUBLISH path of a connection: topic aliases, limits, authorization and the
//! memory budget, the QoS 1/2 receive window, and the acknowledgements held until the router
//! says they may go.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::close::Close;
use super::{ServerConnection, State, Timer};
use crate::broker::budget::{content_weight, message_weight};
use crate::broker::mail::ToRouter;
use crate::broker::replay;
use crate::broker::DeniedAction;
use crate::codec::{Packet, PubAck, Publish};
use crate::error::ProtocolViolation;
use crate::types::{ByteStr, PacketId, QoS, ReasonCode};

impl ServerConnection {
    pub(super) fn on_publish(&mut self, now: Instant, mut p: Publish) {
        if !p.properties.subscription_identifiers.is_empty() {
            // [MQTT-3.3.4-6]: only servers send subscription identifiers.
            return self.violation(ProtocolViolation::SubscriptionIdentifierFromClient);
        }
        if let Some(alias) = p.properties.topic_alias.take() {
            if alias.get() > self.config.topic_alias_maximum {
                // [MQTT-3.2.2-17]: above the maximum the broker announced.
                return self.close(Close::violation(ProtocolViolation::TopicAliasAboveMaximum));
            }
            if p.topic.is_empty() {
                let known = self
                    .aliases
                    .as_ref()
                    .and_then(|a| a.inbound.get(&alias.get()));
                match known {
                    Some(t) => p.topic = t.clone(),
                    None => return self.violation(ProtocolViolation::UnknownTopicAlias),
                }
            } else {
                let a = self.aliases.get_or_insert_with(Default::default);
                a.inbound.insert(alias.get(), p.topic.clone());
            }
        }
        if !self.topic_within_limits(p.topic.as_bytes()) {
            return self.topic_over_limits(p);
        }
        if p.qos > self.config.maximum_qos {
            // [MQTT-3.2.2-11]
            return self.close(Close::violation(ProtocolViolation::QoSAboveMaximum));
        }
        if p.retain && !self.config.retain_available {
            // [MQTT-3.2.2-14]
            return self.close(Close::violation(ProtocolViolation::RetainNotAvailable));
        }
        // `$SYS` belongs to the broker, whatever the authorizer says (as in Mosquitto).
        let sys = super::is_sys(p.topic.as_bytes());
        let allowed = !sys
            && self
                .authorizer
                .can_publish(&self.client_id, self.username.as_ref(), &p.topic);
        if !allowed {
            let reason = if sys {
                "$SYS topics are the broker's"
            } else {
                "not authorized"
            };
            self.denied(DeniedAction::Publish(p.topic.clone()), reason);
        }
        // A message the memory budget has no room for is refused (0x97), like a forbidden one.
        let [budget, retained] = &*self.budget;
        let keeps = p.retain && !p.payload.is_empty();
        let over_budget = allowed
            && (!budget.has_room(message_weight(&p))
                || (keeps && !retained.has_room(content_weight(&p))));
        if over_budget {
            budget.count_refused();
        }
        let code = if over_budget {
            ReasonCode::QuotaExceeded
        } else if allowed {
            ReasonCode::Success
        } else {
            ReasonCode::NotAuthorized
        };
        let allowed = allowed && !over_budget;
        let code = if self.protocol.is_v5() {
            code
        } else {
            ReasonCode::Success // 3.1.x has no code: the message is dropped silently
        };
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => {
                if self.inbound_unacked() >= self.receive_limit() {
                    return self.receive_maximum_exceeded();
                }
                let ack = Packet::PubAck(self.ack(id, code));
                let mail = if allowed {
                    ToRouter::Publish(Arc::new(p), None)
                } else {
                    ToRouter::Denied {
                        held: true,
                        memory: over_budget,
                    }
                };
                self.reply(ack, Some(mail));
            }
            (QoS::ExactlyOnce, Some(id)) => {
                if self.incoming_qos2.contains(id) {
                    // [MQTT-4.3.3-10]: a duplicate; answer again, don't forward twice.
                    return self.reply(Packet::PubRec(PubAck::new(id)), Some(ToRouter::Hold));
                }
                let digest = replay::digest(&p);
                if self.replayable.as_mut().and_then(|r| r.take(id)) == Some(digest) {
                    // The released message again, after PUBREL: answered, not routed.
                    self.await_rel(now, id, Some(digest));
                    return self.reply(Packet::PubRec(PubAck::new(id)), Some(ToRouter::Hold));
                }
                if self.incoming_qos2.len() >= usize::from(self.config.receive_maximum)
                    || self.inbound_unacked() >= self.receive_limit()
                {
                    return self.receive_maximum_exceeded(); // [MQTT-3.3.4-9]
                }
                let rec = Packet::PubRec(self.ack(id, code));
                let mail = if allowed {
                    self.await_rel(now, id, Some(digest));
                    ToRouter::Publish(Arc::new(p), Some(digest))
                } else {
                    ToRouter::Denied {
                        held: true,
                        memory: over_budget,
                    }
                };
                self.reply(rec, Some(mail));
            }
            _ => {
                let mail = if allowed {
                    ToRouter::Publish(Arc::new(p), None)
                } else {
                    ToRouter::Denied {
                        held: false,
                        memory: over_budget,
                    }
                };
                self.mail(mail);
            }
        }
    }

    /// `id` waits for its PUBREL, for [`BrokerConfig::await_rel_timeout`] at most.
    ///
    /// [`BrokerConfig::await_rel_timeout`]: crate::broker::BrokerConfig::await_rel_timeout
    pub(super) fn await_rel(&mut self, now: Instant, id: PacketId, digest: Option<u64>) {
        let deadline = now.checked_add(self.config.await_rel_timeout);
        self.incoming_qos2.insert(id, deadline, digest);
        self.arm_await_rel();
    }

    /// Arms the PUBREL timer for the earliest identifier waiting, if any.
    pub(super) fn arm_await_rel(&mut self) {
        match self.incoming_qos2.next_deadline() {
            Some(at) if self.timers.get(Timer::AwaitRel) != Some(at) => {
                self.timers.set(Timer::AwaitRel, at);
                self.deadline_moved = true;
            }
            Some(_) => {}
            None => {
                if self.timers.get(Timer::AwaitRel).is_some() {
                    self.timers.stop(Timer::AwaitRel);
                    self.deadline_moved = true;
                }
            }
        }
    }

    /// Forgets the inbound QoS 2 identifiers whose PUBREL did not come in time: their
    /// messages were routed at PUBLISH, so only the identifiers go, and with them the
    /// receive-maximum slots they held. Each is remembered as released (with its message's
    /// digest, see `replay`), so a late PUBREL still gets a successful PUBCOMP and a late
    /// resend of the PUBLISH is answered without being routed again.
    pub(super) fn expire_awaiting_rel(&mut self, now: Instant) {
        for (id, digest) in self.incoming_qos2.take_expired(now) {
            if let Some(digest) = digest {
                let replayable = self.replayable.get_or_insert_with(Default::default);
                replayable.push(id, digest);
            }
            self.to_router
                .push_back(ToRouter::AwaitRelExpired { packet_id: id });
        }
        self.arm_await_rel();
    }

    /// Inbound QoS 1/2 messages the client has not had acknowledged yet: QoS 2 ones until
    /// PUBREL, and QoS 1 ones whose PUBACK is held.
    pub(super) fn inbound_unacked(&self) -> usize {
        self.incoming_qos2.len() + self.held.pubacks()
    }

    /// The receive maximum this broker announced; a 3.1.x client, which was told none, is
    /// held to the number of packet identifiers.
    pub(super) fn receive_limit(&self) -> usize {
        if self.protocol.is_v5() {
            usize::from(self.config.receive_maximum)
        } else {
            usize::from(u16::MAX)
        }
    }

    pub(super) fn receive_maximum_exceeded(&mut self) {
        self.close(Close::violation(ProtocolViolation::ReceiveMaximumExceeded));
    }

    /// Sends the `n` oldest held acknowledgements (the router's word came).
    pub(super) fn send_held(&mut self, n: u32) {
        for _ in 0..n {
            let Some(held) = self.held.pop() else {
                break;
            };
            if self.state == State::Connected {
                self.send(&held.into_packet());
            }
        }
    }

    /// Sends an acknowledgement and hands `mail` to the router. A PUBACK or PUBREC (and, with
    /// durable acks, a PUBREL or PUBCOMP) waits in line for the router's
    /// [`ToConnection::SendHeld`], which the mail asks for (a missing mail becomes
    /// [`ToRouter::Hold`]).
    pub(super) fn reply(&mut self, packet: Packet, mail: Option<ToRouter>) {
        let held = match packet {
            Packet::PubAck(a) => HeldAck::new(AckKind::Ack, a),
            Packet::PubRec(a) => HeldAck::new(AckKind::Rec, a),
            Packet::PubRel(a) if self.hold_flows => HeldAck::new(AckKind::Rel, a),
            Packet::PubComp(a) if self.hold_flows => HeldAck::new(AckKind::Comp, a),
            packet => {
                self.to_router.extend(mail);
                self.send(&packet);
                return;
            }
        };
        self.held.push(held);
        self.mail(mail.unwrap_or(ToRouter::Hold));
    }

    /// The router found no room to retain the PUBLISH with `id` and did not route it: its
    /// held PUBACK / PUBREC says 0x97 (MQTT 5; 3.1.x has no code), and its identifier waits
    /// for no PUBREL (an error PUBREC ends the flow; a 3.1.x PUBREL gets its PUBCOMP anyway).
    pub(super) fn retain_refused(&mut self, id: PacketId) {
        if self.incoming_qos2.remove(id) {
            self.arm_await_rel();
        }
        if self.protocol.is_v5() {
            let code = ReasonCode::QuotaExceeded;
            let reason = self.reason("retained messages are at their limit");
            self.held.refuse(id, code, reason);
        }
    }

    /// A PUBACK or PUBREC with `code`, and a reason string when it is an error.
    pub(super) fn ack(&self, id: PacketId, code: ReasonCode) -> PubAck {
        let mut ack = PubAck::new(id);
        ack.reason_code = code;
        if code.is_error() {
            ack.properties.reason_string = self.reason(code.description());
        }
        ack
    }

    /// A PUBLISH whose topic is longer or deeper than the broker accepts: MQTT 5 QoS 1/2 get
    /// PUBACK / PUBREC 0x90 and the connection goes on; QoS 0 is dropped; a 3.1.x client,
    /// which cannot be told, is disconnected.
    pub(super) fn topic_over_limits(&mut self, p: Publish) {
        if !self.protocol.is_v5() {
            return self
                .close(Close::violation(ProtocolViolation::TopicAboveLimits).without_disconnect());
        }
        let ack = p
            .packet_id
            .map(|id| self.ack(id, ReasonCode::TopicNameInvalid));
        match (p.qos, ack) {
            (QoS::AtLeastOnce, Some(ack)) => self.reply(Packet::PubAck(ack), None),
            (QoS::ExactlyOnce, Some(ack)) => self.reply(Packet::PubRec(ack), None),
            _ => {}
        }
    }
}

/// Acknowledgements waiting for the router's word, oldest first (each has one
/// [`ToConnection::SendHeld`](crate::broker::mail::ToConnection::SendHeld) coming), with the
/// count of PUBACKs among them: inbound QoS 1 messages not acknowledged yet, which count
/// against the receive maximum with the QoS 2 ones. Only its own methods change either.
#[derive(Debug, Default)]
pub(super) struct HeldAcks {
    queue: VecDeque<HeldAck>,
    pubacks: usize,
}

impl HeldAcks {
    /// Holds `held` behind the others.
    fn push(&mut self, held: HeldAck) {
        if held.kind == AckKind::Ack {
            self.pubacks += 1;
        }
        self.queue.push_back(held);
    }

    /// The oldest held acknowledgement, let go.
    fn pop(&mut self) -> Option<HeldAck> {
        let held = self.queue.pop_front()?;
        if held.kind == AckKind::Ack {
            self.pubacks -= 1;
        }
        Some(held)
    }

    /// Held PUBACKs.
    fn pubacks(&self) -> usize {
        self.pubacks
    }

    /// Forgets them all (the connection closed: the client resends those messages).
    pub(super) fn clear(&mut self) {
        self.queue.clear();
        self.pubacks = 0;
    }

    /// The held PUBACK / PUBREC of `id` refuses its message with `code` and `reason`.
    fn refuse(&mut self, id: PacketId, code: ReasonCode, reason: Option<ByteStr>) {
        let held = self
            .queue
            .iter_mut()
            .find(|h| matches!(h.kind, AckKind::Ack | AckKind::Rec) && h.ack.packet_id == id);
        if let Some(h) = held {
            h.ack.reason_code = code;
            h.ack.properties.reason_string = reason;
        }
    }

    /// The held PUBACK / PUBREC of `id`, if still a success, says no subscriber matched.
    pub(super) fn no_subscribers(&mut self, id: PacketId) {
        let held = self
            .queue
            .iter_mut()
            .find(|h| matches!(h.kind, AckKind::Ack | AckKind::Rec) && h.ack.packet_id == id);
        if let Some(h) = held.filter(|h| h.ack.reason_code == ReasonCode::Success) {
            h.ack.reason_code = ReasonCode::NoMatchingSubscribers;
        }
    }
}

/// Which acknowledgement a [`HeldAck`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckKind {
    /// PUBACK.
    Ack,
    /// PUBREC.
    Rec,
    /// PUBREL.
    Rel,
    /// PUBCOMP.
    Comp,
}

/// An acknowledgement waiting for the router's word: its kind and the acknowledgement
/// itself, a quarter of a [`Packet`] (one waits per QoS 1/2 message in flight).
#[derive(Debug)]
struct HeldAck {
    kind: AckKind,
    ack: PubAck,
}

impl HeldAck {
    fn new(kind: AckKind, ack: PubAck) -> HeldAck {
        HeldAck { kind, ack }
    }

    fn into_packet(self) -> Packet {
        match self.kind {
            AckKind::Ack => Packet::PubAck(self.ack),
            AckKind::Rec => Packet::PubRec(self.ack),
            AckKind::Rel => Packet::PubRel(self.ack),
            AckKind::Comp => Packet::PubComp(self.ack),
        }
    }
}
