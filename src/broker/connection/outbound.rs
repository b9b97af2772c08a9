//! The outbound side of a [`ServerConnection`]: deliveries from the router, outbound topic
//! aliases, the QoS 1/2 flows towards the client and their resends.

use std::num::NonZeroU16;
use std::time::Instant;

use super::{ServerConnection, State};
use crate::broker::mail::{Delivery, OutFlow, ToRouter};
use crate::broker::DropReason;
use crate::codec::{Packet, PubAck, Publish};
use crate::error::ProtocolViolation;
use crate::types::{PacketId, QoS, ReasonCode, TopicName};

impl ServerConnection {
    /// Sends a tracked flow again: PUBLISH with DUP (and its full topic), or PUBREL. A
    /// PUBLISH larger than the client accepts now (it reconnected with a smaller Maximum
    /// Packet Size) is discarded as if acknowledged ([MQTT-3.1.2-25]) and its slot freed:
    /// `false` then.
    pub(super) fn resend(&mut self, id: PacketId) -> bool {
        match self.outbound.get(id) {
            Some(OutFlow::Publish(d)) => {
                let d = d.clone();
                if !self.encode_delivery(&d, Some(id), true, None, false) {
                    self.untrack(id);
                    self.delivered(&d);
                    self.credit();
                    return false;
                }
            }
            Some(OutFlow::Released { .. }) => {
                self.send(&Packet::PubRel(PubAck::new(id)));
            }
            None => {}
        }
        true
    }

    /// Encodes the PUBLISH of `d` with `packet_id` (QoS 1/2) and DUP: straight from the shared
    /// message when nothing of it changes on the way (no subscription identifier, no
    /// properties to send, no topic alias to assign), else built whole, with the remaining
    /// `expiry` (seconds) when given and a topic alias when `alias` lets one be used. `false`
    /// when it is larger than the client accepts.
    pub(super) fn encode_delivery(
        &mut self,
        d: &Delivery,
        packet_id: Option<PacketId>,
        dup: bool,
        expiry: Option<u32>,
        alias: bool,
    ) -> bool {
        let v5 = self.protocol.is_v5();
        let m = &d.message;
        let plain = d.subscription_ids.is_empty()
            && (!v5 || m.has_no_properties())
            && !(alias && self.alias_out_max > 0);
        if plain {
            let first = 0x30 | (u8::from(dup) << 3) | ((d.qos as u8) << 1) | u8::from(d.retain);
            let topic = m.topic.as_bytes();
            let out = &mut self.out;
            if self
                .encoder
                .encode_plain_publish(first, topic, packet_id, &m.payload, out)
                .is_some()
            {
                return true;
            }
        }
        let mut p = d.publish();
        p.packet_id = packet_id;
        p.dup = dup;
        if !v5 {
            p.properties = Default::default();
        } else if expiry.is_some() {
            p.properties.message_expiry_interval = expiry;
        }
        if alias {
            self.encode_publish(p)
        } else {
            self.encoder
                .encode(&Packet::Publish(p), &mut self.out)
                .is_ok()
        }
    }

    /// An outbound flow finished: its window slot goes to the next held-back resend, or back
    /// to the router.
    pub(super) fn flow_done(&mut self, now: Instant) {
        while let Some(id) = self.resend_backlog.pop_front() {
            let publish = matches!(self.outbound.get(id), Some(OutFlow::Publish(_)));
            if self.resend(id) && publish {
                return; // the freed slot is used again
            }
        }
        self.credit();
        self.send_pending(now);
    }

    /// One more slot of the window is free: told to the router, in the credit mail queued
    /// last if there is one (so a read full of PUBACKs makes one mail).
    pub(super) fn credit(&mut self) {
        match self.to_router.back_mut() {
            Some(ToRouter::Credit(n)) => *n += 1,
            _ => self.mail(ToRouter::Credit(1)),
        }
    }

    pub(super) fn track(&mut self, id: PacketId, flow: OutFlow) {
        self.outbound.push(id, flow);
        self.next_id = id.get();
    }

    pub(super) fn untrack(&mut self, id: PacketId) -> Option<OutFlow> {
        self.outbound.remove(id)
    }

    pub(super) fn next_packet_id(&self) -> Option<PacketId> {
        let mut id = self.next_id;
        for _ in 0..u16::MAX {
            id = if id == u16::MAX { 1 } else { id + 1 };
            let pid = PacketId::new(id)?;
            if !self.outbound.contains(pid) {
                return Some(pid);
            }
        }
        None
    }

    /// An outbound flow of `d` ended: the store lets go of a stored message.
    fn delivered(&mut self, d: &Delivery) {
        if let Some(seq) = d.stored {
            self.to_router.push_back(ToRouter::Delivered { seq });
        }
    }

    /// A delivery from the router: sent now if the window has room and nothing released
    /// before it waits, else it waits its turn.
    pub(super) fn deliver(&mut self, now: Instant, d: Delivery) {
        if self.state != State::Connected {
            // Too late to send: a QoS 1/2 message goes back to the session (and stays in the
            // store, if stored).
            if !d.is_qos0() {
                self.to_router.push_back(ToRouter::Returned(d));
            }
            return;
        }
        if self.pending.is_empty() && self.has_room(&d) {
            return self.send_delivery(now, d);
        }
        self.pending.push_back(d);
        self.send_pending(now);
    }

    /// Whether `d` may go out now: QoS 0 always, QoS 1/2 within the window and behind the
    /// handed-over flows still to resend.
    fn has_room(&self, d: &Delivery) -> bool {
        d.is_qos0() || (self.outbound.len() < self.window && self.resend_backlog.is_empty())
    }

    /// Sends the waiting deliveries, in order, while the window has room.
    pub(super) fn send_pending(&mut self, now: Instant) {
        while let Some(d) = self.pending.front() {
            if !self.has_room(d) {
                break;
            }
            if let Some(d) = self.pending.pop_front() {
                self.send_delivery(now, d);
            }
        }
        if self.pending.is_empty() && self.pending.capacity() > 64 {
            self.pending = std::collections::VecDeque::new();
        }
    }

    fn send_delivery(&mut self, now: Instant, d: Delivery) {
        let qos0 = d.is_qos0();
        let credit = |c: &mut Self, reason: Option<DropReason>| {
            if let Some(reason) = reason {
                let bytes = u32::try_from(d.payload_len()).unwrap_or(u32::MAX);
                let qos = d.qos;
                c.to_router
                    .push_back(ToRouter::Dropped { reason, qos, bytes });
            }
            if !qos0 {
                c.delivered(&d);
                c.credit();
            }
        };
        if !self
            .authorizer
            .can_receive(&self.client_id, self.username.as_ref(), &d.message.topic)
        {
            return credit(self, Some(DropReason::NotAuthorized));
        }
        let mut expiry = None;
        if let Some(at) = d.expires_at {
            // [MQTT-3.3.2-6]: forward the remaining lifetime; drop what has expired.
            let Some(left) = at.checked_duration_since(now).filter(|l| !l.is_zero()) else {
                return credit(self, Some(DropReason::Expired));
            };
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            expiry = Some(secs.min(u64::from(u32::MAX)) as u32);
        }
        let id = if qos0 {
            None
        } else {
            // The router's pick is durable with the message; another is taken only when a flow
            // of this connection still uses it.
            let picked = d.packet_id.filter(|id| !self.outbound.contains(*id));
            let Some(id) = picked.or_else(|| self.next_packet_id()) else {
                return credit(self, Some(DropReason::QueueFull));
            };
            Some(id)
        };
        if !self.encode_delivery(&d, id, false, expiry, true) {
            // Larger than the client's maximum packet size: discarded ([MQTT-3.1.2-25]).
            return credit(self, Some(DropReason::TooLarge));
        }
        if let Some(id) = id {
            self.track(id, OutFlow::Publish(d));
        }
    }

    /// Encodes an outbound PUBLISH, with a topic alias when the client allows them and the
    /// broker is configured to use them ([MQTT-3.1.2-26], [MQTT-3.1.2-27]): a topic seen
    /// before on this connection goes as its alias alone, a new one takes the next free alias
    /// with its name. Assignments are never replaced: once all are taken, other topics go
    /// unaliased. Resends (DUP) always carry the full topic.
    pub(super) fn encode_publish(&mut self, mut p: Publish) -> bool {
        let mut assigned = None;
        if self.alias_out_max > 0 {
            let aliases = &self.aliases.get_or_insert_with(Default::default).outbound;
            if let Some(&a) = aliases.get(&p.topic) {
                p.properties.topic_alias = Some(a);
                p.topic = TopicName::empty();
            } else if aliases.len() < usize::from(self.alias_out_max) {
                let next = u16::try_from(aliases.len() + 1).ok();
                if let Some(a) = next.and_then(NonZeroU16::new) {
                    p.properties.topic_alias = Some(a);
                    assigned = Some((p.topic.clone(), a));
                }
            }
        }
        if self
            .encoder
            .encode(&Packet::Publish(p), &mut self.out)
            .is_err()
        {
            return false;
        }
        if let Some((topic, a)) = assigned {
            // Only an alias the client has seen with its topic is used alone.
            if let Some(aliases) = &mut self.aliases {
                aliases.outbound.insert(topic, a);
            }
        }
        true
    }

    pub(super) fn on_puback(&mut self, now: Instant, a: PubAck) {
        match self.outbound.get(a.packet_id) {
            Some(OutFlow::Publish(d)) if d.qos == QoS::AtLeastOnce => {
                if let Some(OutFlow::Publish(d)) = self.untrack(a.packet_id) {
                    self.delivered(&d);
                }
                self.flow_done(now);
            }
            _ => self.violation(ProtocolViolation::UnexpectedPubAck),
        }
    }

    pub(super) fn on_pubrec(&mut self, now: Instant, a: PubAck) {
        let id = a.packet_id;
        match self.outbound.get(id) {
            Some(OutFlow::Publish(d)) if d.qos == QoS::ExactlyOnce => {
                let seq = d.stored;
                if a.reason_code.is_error() {
                    if let Some(OutFlow::Publish(d)) = self.untrack(id) {
                        self.delivered(&d);
                    }
                    self.flow_done(now);
                    return;
                }
                if let Some(flow) = self.outbound.get_mut(id) {
                    *flow = OutFlow::Released {
                        stored: seq.is_some(),
                    };
                }
                // Without a stored message the router needs no word, only a ticket to keep
                // the PUBREL in line if acknowledgements are held.
                let mail = seq.map(|seq| ToRouter::Received { seq, packet_id: id });
                self.reply(Packet::PubRel(PubAck::new(id)), mail);
            }
            Some(OutFlow::Released { .. }) => {
                self.reply(Packet::PubRel(PubAck::new(id)), None);
            }
            _ => {
                let mut rel = PubAck::new(id);
                if self.protocol.is_v5() {
                    rel.reason_code = ReasonCode::PacketIdentifierNotFound;
                }
                self.reply(Packet::PubRel(rel), None);
            }
        }
    }

    pub(super) fn on_pubrel(&mut self, a: PubAck) {
        let id = a.packet_id;
        let mut comp = PubAck::new(id);
        let known = self.incoming_qos2.remove(id);
        self.arm_await_rel();
        // A PUBREL again for one released on an earlier connection: known, and done.
        let done = !known && self.replayable.as_mut().is_some_and(|r| r.remove(id));
        if !known && !done && self.protocol.is_v5() {
            comp.reason_code = ReasonCode::PacketIdentifierNotFound;
        }
        let stored = known && self.stored_session;
        let mail = stored.then_some(ToRouter::Released { packet_id: id });
        self.reply(Packet::PubComp(comp), mail);
    }

    pub(super) fn on_pubcomp(&mut self, now: Instant, a: PubAck) {
        match self.outbound.get(a.packet_id) {
            Some(OutFlow::Released { stored }) => {
                if *stored {
                    let packet_id = a.packet_id;
                    self.to_router.push_back(ToRouter::Completed { packet_id });
                }
                self.untrack(a.packet_id);
                self.flow_done(now);
            }
            _ => self.violation(ProtocolViolation::UnexpectedPubComp),
        }
    }
}
