//! The outbound side of a [`ServerConnection`]: deliveries from the router, outbound topic
//! aliases, the QoS 1/2 flows towards the client and their resends.

use std::num::NonZeroU16;
use std::time::Instant;

use super::{ServerConnection, State};
use crate::broker::mail::{Delivery, OutFlow, ToRouter};
use crate::codec::{Packet, PubAck, Publish};
use crate::types::{PacketId, QoS, ReasonCode, TopicName};

impl ServerConnection {
    /// Sends a tracked flow again: PUBLISH with DUP, or PUBREL.
    pub(super) fn resend(&mut self, id: PacketId) {
        let packet = match self
            .outbound_ids
            .get(&id)
            .and_then(|s| self.outbound.get(s))
        {
            Some((_, OutFlow::Publish(d))) => {
                let mut p = d.publish.clone();
                p.packet_id = Some(id);
                p.dup = true;
                Packet::Publish(p)
            }
            Some((_, OutFlow::Released { .. })) => Packet::PubRel(PubAck::new(id)),
            None => return,
        };
        self.send(&packet);
    }

    /// An outbound flow finished: its window slot goes to the next held-back resend, or back
    /// to the router.
    pub(super) fn flow_done(&mut self) {
        while let Some(id) = self.resend_backlog.pop_front() {
            let publish = matches!(
                self.outbound_ids
                    .get(&id)
                    .and_then(|s| self.outbound.get(s)),
                Some((_, OutFlow::Publish(_)))
            );
            self.resend(id);
            if publish {
                return; // the freed slot is used again
            }
        }
        self.to_router.push_back(ToRouter::Credit);
    }

    pub(super) fn track(&mut self, id: PacketId, flow: OutFlow) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.outbound.insert(seq, (id, flow));
        self.outbound_ids.insert(id, seq);
        self.next_id = id.get();
    }

    pub(super) fn untrack(&mut self, id: PacketId) -> Option<OutFlow> {
        let seq = self.outbound_ids.remove(&id)?;
        self.outbound.remove(&seq).map(|(_, f)| f)
    }

    pub(super) fn next_packet_id(&self) -> Option<PacketId> {
        let mut id = self.next_id;
        for _ in 0..u16::MAX {
            id = if id == u16::MAX { 1 } else { id + 1 };
            let pid = PacketId::new(id)?;
            if !self.outbound_ids.contains_key(&pid) {
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

    pub(super) fn deliver(&mut self, now: Instant, d: Delivery) {
        let qos0 = d.publish.qos == QoS::AtMostOnce;
        let credit = |c: &mut Self| {
            if !qos0 {
                c.delivered(&d);
                c.to_router.push_back(ToRouter::Credit);
            }
        };
        if self.state != State::Connected {
            // Too late to send: a QoS 1/2 message goes back to the session (and stays in the
            // store, if stored).
            if !qos0 {
                self.to_router.push_back(ToRouter::Returned(d));
            }
            return;
        }
        if !self
            .authorizer
            .can_receive(&self.client_id, self.username.as_ref(), &d.publish.topic)
        {
            return credit(self);
        }
        let mut p = d.publish.clone();
        if let Some(at) = d.expires_at {
            // [MQTT-3.3.2-6]: forward the remaining lifetime; drop what has expired.
            let Some(left) = at.checked_duration_since(now).filter(|l| !l.is_zero()) else {
                return credit(self);
            };
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            p.properties.message_expiry_interval = Some(secs.min(u64::from(u32::MAX)) as u32);
        }
        if !self.protocol.is_v5() {
            p.properties = Default::default();
        }
        let id = if qos0 {
            None
        } else {
            // The router's pick is durable with the message; another is taken only when a flow
            // of this connection still uses it.
            let picked = d.packet_id.filter(|id| !self.outbound_ids.contains_key(id));
            let Some(id) = picked.or_else(|| self.next_packet_id()) else {
                return credit(self);
            };
            p.packet_id = Some(id);
            Some(id)
        };
        if !self.encode_publish(p) {
            // Larger than the client's maximum packet size: discarded ([MQTT-3.1.2-25]).
            return credit(self);
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
            if let Some(&a) = self.aliases_out.get(&p.topic) {
                p.properties.topic_alias = Some(a);
                p.topic = TopicName::empty();
            } else if self.aliases_out.len() < usize::from(self.alias_out_max) {
                let next = u16::try_from(self.aliases_out.len() + 1).ok();
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
            self.aliases_out.insert(topic, a);
        }
        true
    }

    pub(super) fn on_puback(&mut self, a: PubAck) {
        match self
            .outbound_ids
            .get(&a.packet_id)
            .and_then(|s| self.outbound.get(s))
        {
            Some((_, OutFlow::Publish(d))) if d.publish.qos == QoS::AtLeastOnce => {
                if let Some(OutFlow::Publish(d)) = self.untrack(a.packet_id) {
                    self.delivered(&d);
                }
                self.flow_done();
            }
            _ => self.protocol_error("puback for no qos 1 publish in flight"),
        }
    }

    pub(super) fn on_pubrec(&mut self, a: PubAck) {
        let id = a.packet_id;
        match self
            .outbound_ids
            .get(&id)
            .and_then(|s| self.outbound.get(s))
        {
            Some((_, OutFlow::Publish(d))) if d.publish.qos == QoS::ExactlyOnce => {
                let seq = d.stored;
                if a.reason_code.is_error() {
                    if let Some(OutFlow::Publish(d)) = self.untrack(id) {
                        self.delivered(&d);
                    }
                    self.flow_done();
                    return;
                }
                if let Some(entry) = self
                    .outbound_ids
                    .get(&id)
                    .and_then(|s| self.outbound.get_mut(s))
                {
                    entry.1 = OutFlow::Released {
                        stored: seq.is_some(),
                    };
                }
                // Without a stored message the router needs no word, only a ticket to keep
                // the PUBREL in line if acknowledgements are held.
                let mail = seq.map(|seq| ToRouter::Received { seq, packet_id: id });
                self.reply(Packet::PubRel(PubAck::new(id)), mail);
            }
            Some((_, OutFlow::Released { .. })) => {
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
        let known = self.incoming_qos2.remove(&id);
        if !known && self.protocol.is_v5() {
            comp.reason_code = ReasonCode::PacketIdentifierNotFound;
        }
        let stored = known && self.stored_session;
        let mail = stored.then_some(ToRouter::Released { packet_id: id });
        self.reply(Packet::PubComp(comp), mail);
    }

    pub(super) fn on_pubcomp(&mut self, a: PubAck) {
        match self
            .outbound_ids
            .get(&a.packet_id)
            .and_then(|s| self.outbound.get(s))
        {
            Some((_, OutFlow::Released { stored })) => {
                if *stored {
                    let packet_id = a.packet_id;
                    self.to_router.push_back(ToRouter::Completed { packet_id });
                }
                self.untrack(a.packet_id);
                self.flow_done();
            }
            _ => self.protocol_error("pubcomp for no pubrel in flight"),
        }
    }
}
