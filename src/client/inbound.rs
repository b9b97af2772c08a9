//! What the client does with each packet from the server.

use std::num::NonZeroU16;
use std::time::Instant;

use crate::codec::{
    ConnAck, Disconnect, Packet, PubAck, Publish, SubAck, Subscribe, Subscription, UnsubAck,
};
use crate::error::{CloseReason, ConnectionError, Initiator, ProtocolViolation};
use crate::types::{PacketId, ProtocolVersion, QoS, ReasonCode};

use super::event::{AckToken, AckWatch, Event, Lost, Message};
use super::outgoing::Flow;
use super::{ClientSession, ClientState, PendingAck, ServerLimits, Timer};
use ProtocolViolation::*;

impl ClientSession {
    pub(super) fn handle_packet(&mut self, now: Instant, packet: Packet) {
        match (self.state, packet) {
            (ClientState::Connecting, Packet::ConnAck(c)) => self.on_connack(now, *c),
            (_, Packet::Auth(a)) => self.events.push_back(Event::Auth(a)),
            (ClientState::Connected, Packet::Publish(p)) => self.on_publish(now, p),
            (ClientState::Connected, Packet::PubAck(a)) => self.on_puback(now, a),
            (ClientState::Connected, Packet::PubRec(a)) => self.on_pubrec(now, a),
            (ClientState::Connected, Packet::PubRel(a)) => self.on_pubrel(now, a),
            (ClientState::Connected, Packet::PubComp(a)) => self.on_pubcomp(now, a),
            (ClientState::Connected, Packet::SubAck(a)) => self.on_suback(now, a),
            (ClientState::Connected, Packet::UnsubAck(a)) => self.on_unsuback(now, a),
            (ClientState::Connected, Packet::PingResp) => {}
            // [MQTT-3.14.0-1]: only after an accepting CONNACK, and only in MQTT 5.
            (ClientState::Connected, Packet::Disconnect(d)) if self.config.protocol.is_v5() => {
                self.on_disconnect(now, d)
            }
            (_, Packet::Disconnect(_)) => self.violation(now, UnexpectedDisconnect),
            (ClientState::Connecting, _) => self.violation(now, PacketBeforeConnAck),
            (_, Packet::ConnAck(_)) => self.violation(now, SecondConnAck),
            (_, _) => self.violation(now, ClientOnlyPacket),
        }
    }

    /// Closes the connection for a rule the server broke, with that rule's reason code.
    pub(super) fn violation(&mut self, now: Instant, rule: ProtocolViolation) {
        self.fail(now, ConnectionError::Violation(rule), rule.reason_code());
    }

    fn on_connack(&mut self, now: Instant, mut c: ConnAck) {
        if self.config.protocol == ProtocolVersion::V3_1 && !self.sent_clean_start {
            // MQTT 3.1's CONNACK has no session present flag: with clean session 0 the server
            // keeps the session, so it is taken as present and unacked flows are resent.
            c.session_present = true;
        }
        if c.reason_code.is_error() {
            let reason = CloseReason {
                initiator: Initiator::Remote,
                reason_code: c.reason_code,
                error: Some(ConnectionError::Refused(c.reason_code)),
            };
            self.closed(now, reason, Default::default(), true);
            return;
        }
        if c.session_present && self.sent_clean_start {
            // [MQTT-3.2.2-2]: a clean start never resumes a session.
            self.state = ClientState::Connected;
            self.violation(now, SessionPresentAfterCleanStart);
            return;
        }
        self.state = ClientState::Connected;
        self.timers.stop(Timer::ConnAck);
        self.attempt = 0;
        self.apply_connack(&c);

        let mut lost = Lost::default();
        for (id, flow) in self.flows.drain_requests() {
            match flow {
                Flow::Subscribe(..) => lost.subscribes.push(id),
                Flow::Unsubscribe(_) => lost.unsubscribes.push(id),
                _ => {}
            }
        }
        if c.session_present {
            // [MQTT-4.4.0-1]: resend unacknowledged PUBLISH (DUP) and PUBREL, in order; the
            // PUBLISHes only as far as the new connection's send quota allows, the rest as
            // acknowledgements free it.
            let order: Vec<PacketId> = self
                .flows
                .in_order()
                .filter(|(_, flow)| matches!(flow, Flow::Publish(_) | Flow::PubRel))
                .map(|(id, _)| id)
                .collect();
            self.resend_backlog.extend(order);
            if !self.pump_resends(now) {
                return;
            }
        } else {
            // [MQTT-4.1.0-2]: no session on the server, so none here either.
            for (id, flow) in self.flows.drain() {
                match flow {
                    Flow::Publish(p) => lost.publishes.push(p),
                    Flow::PubRel => lost.released.push(id),
                    _ => {}
                }
            }
            self.incoming_qos2.clear();
            if self.config.resubscribe {
                self.resubscribe(now);
            }
        }
        if let Some(last) = self.last_sent {
            if !self.keep_alive.is_zero() {
                self.timers.set(Timer::KeepAlive, last + self.keep_alive);
            }
        }
        let properties = Box::new(c.properties);
        let event = if self.ever_connected {
            Event::Reconnected {
                session_present: c.session_present,
                properties,
                lost,
            }
        } else {
            Event::Connected {
                session_present: c.session_present,
                properties,
            }
        };
        self.ever_connected = true;
        self.events.push_back(event);
    }

    /// Takes in what the server's CONNACK allows.
    fn apply_connack(&mut self, c: &ConnAck) {
        let p = &c.properties;
        let d = ServerLimits::default();
        self.server = ServerLimits {
            // The send quota: the server's Receive Maximum, or less if the configuration says.
            receive_maximum: p
                .receive_maximum
                .map_or(d.receive_maximum, NonZeroU16::get)
                .min(self.config.max_inflight.map_or(u16::MAX, NonZeroU16::get)),
            maximum_qos: p.maximum_qos.unwrap_or(d.maximum_qos),
            retain_available: p.retain_available.unwrap_or(true),
            topic_alias_maximum: p.topic_alias_maximum.unwrap_or(0),
            wildcards: p.wildcard_subscription_available.unwrap_or(true),
            subscription_ids: p.subscription_identifiers_available.unwrap_or(true),
            shared: p.shared_subscription_available.unwrap_or(true),
        };
        self.encoder.max_packet_size = p
            .maximum_packet_size
            .map_or(crate::codec::MAX_PACKET_SIZE, |m| m.get());
        if let Some(id) = &p.assigned_client_identifier {
            self.client_id = id.clone();
        }
        let keep_alive = p.server_keep_alive.unwrap_or(self.config.keep_alive);
        self.keep_alive = std::time::Duration::from_secs(u64::from(keep_alive));
        self.aliases_out.clear();
        self.aliases_in.clear();
    }

    /// Sends SUBSCRIBE for every acknowledged subscription, one per subscription identifier.
    fn resubscribe(&mut self, now: Instant) {
        let mut groups: Vec<(Option<std::num::NonZeroU32>, Vec<Subscription>)> = Vec::new();
        for (filter, (options, id)) in &self.subscriptions {
            let sub = Subscription {
                filter: filter.clone(),
                options: *options,
            };
            match groups
                .iter_mut()
                .find(|(g, subs)| g == id && subs.len() < 64)
            {
                Some((_, subs)) => subs.push(sub),
                None => groups.push((*id, vec![sub])),
            }
        }
        for (sub_id, filters) in groups {
            let Some(packet_id) = self.flows.next_free_id() else {
                return;
            };
            let properties = crate::codec::SubscribeProperties {
                subscription_identifier: sub_id,
                ..Default::default()
            };
            let packet = Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                filters,
            });
            if !self.send_control(now, &packet) {
                return;
            }
            if let Packet::Subscribe(s) = packet {
                self.flows
                    .insert(packet_id, Flow::Subscribe(s.filters, s.properties));
            }
        }
    }

    fn on_publish(&mut self, now: Instant, mut p: Publish) {
        if let Some(alias) = p.properties.topic_alias {
            let max = self.config.properties.topic_alias_maximum.unwrap_or(0);
            if alias.get() > max {
                // [MQTT-3.1.2-26]: above the maximum this client announced.
                return self.violation(now, TopicAliasAboveMaximum);
            }
            if p.topic.is_empty() {
                match self.aliases_in.get(&alias.get()) {
                    Some(t) => p.topic = t.clone(),
                    None => return self.violation(now, UnknownTopicAlias),
                }
            } else {
                self.aliases_in.insert(alias.get(), p.topic.clone());
            }
        }
        let Some(id) = p.packet_id else {
            self.deliver(p, None);
            return;
        };
        if p.qos == QoS::ExactlyOnce && self.incoming_qos2.contains(&id) {
            // [MQTT-4.3.3-10] (5.0): already received; answer again, don't deliver twice.
            self.send_control(now, &Packet::PubRec(PubAck::new(id)));
            return;
        }
        if self.pending_acks.iter().any(|a| a.packet_id == id) {
            // Redelivery of a message the application holds and has not acknowledged yet.
            return;
        }
        if self.config.protocol.is_v5() {
            let max = self
                .config
                .properties
                .receive_maximum
                .map_or(u16::MAX, NonZeroU16::get);
            if self.pending_acks.len() + self.incoming_qos2.len() >= usize::from(max) {
                // [MQTT-3.3.4-9]: more than the Receive Maximum this client announced.
                return self.violation(now, ReceiveMaximumExceeded);
            }
        }
        let qos = p.qos;
        if self.config.manual_acks {
            let seq = self.ack_seq;
            self.ack_seq += 1;
            let watch = AckWatch::new(self.acks_dropped.clone());
            self.pending_acks.push_back(PendingAck {
                seq,
                packet_id: id,
                qos,
                acked: false,
                watch: watch.clone(),
            });
            let token = AckToken {
                connection: self.connection,
                seq,
                packet_id: id,
                watch,
            };
            self.deliver(p, Some(token));
        } else {
            self.deliver(p, None);
            self.send_ack(now, id, qos);
        }
    }

    fn deliver(&mut self, publish: Publish, ack: Option<AckToken>) {
        self.events
            .push_back(Event::Message(Message { publish, ack }));
    }

    /// Resends a resumed session's flows in order: a PUBLISH only while the send quota allows
    /// (a PUBREL behind it waits too, to keep the order); false if the connection failed.
    pub(super) fn pump_resends(&mut self, now: Instant) -> bool {
        while let Some(&id) = self.resend_backlog.front() {
            let packet = match self.flows.get(id) {
                Some(Flow::Publish(p)) => {
                    if self.on_wire.len() >= usize::from(self.server.receive_maximum) {
                        return true;
                    }
                    let mut p = p.clone();
                    p.dup = true;
                    self.on_wire.insert(id);
                    Packet::Publish(p)
                }
                Some(Flow::PubRel) => Packet::PubRel(PubAck::new(id)),
                _ => {
                    self.resend_backlog.pop_front();
                    continue;
                }
            };
            self.resend_backlog.pop_front();
            if !self.send_control(now, &packet) {
                return false;
            }
        }
        true
    }

    fn published(&mut self, now: Instant, id: PacketId, a: PubAck) {
        self.flows.remove(id);
        self.on_wire.remove(&id);
        self.pump_resends(now);
        self.events.push_back(Event::Published {
            packet_id: id,
            reason_code: a.reason_code,
            properties: a.properties,
        });
    }

    fn on_puback(&mut self, now: Instant, a: PubAck) {
        let id = a.packet_id;
        match self.flows.get(id) {
            Some(Flow::Publish(p)) if p.qos == QoS::AtLeastOnce => self.published(now, id, a),
            _ => self.violation(now, UnexpectedPubAck),
        }
    }

    fn on_pubrec(&mut self, now: Instant, a: PubAck) {
        let id = a.packet_id;
        match self.flows.get(id) {
            Some(Flow::Publish(p)) if p.qos == QoS::ExactlyOnce => {
                if a.reason_code.is_error() {
                    // The flow ends here ([MQTT-4.3.3-4]).
                    self.published(now, id, a);
                } else {
                    self.flows.release(id);
                    self.send_control(now, &Packet::PubRel(PubAck::new(id)));
                }
            }
            Some(Flow::PubRel) => {
                self.send_control(now, &Packet::PubRel(PubAck::new(id)));
            }
            _ if self.config.protocol.is_v5() => {
                let mut rel = PubAck::new(id);
                rel.reason_code = ReasonCode::PacketIdentifierNotFound;
                self.send_control(now, &Packet::PubRel(rel));
            }
            _ => self.violation(now, UnexpectedPubRec),
        }
    }

    fn on_pubrel(&mut self, now: Instant, a: PubAck) {
        let id = a.packet_id;
        let mut comp = PubAck::new(id);
        if !self.incoming_qos2.remove(&id) && self.config.protocol.is_v5() {
            comp.reason_code = ReasonCode::PacketIdentifierNotFound;
        }
        self.send_control(now, &Packet::PubComp(comp));
    }

    fn on_pubcomp(&mut self, now: Instant, a: PubAck) {
        let id = a.packet_id;
        match self.flows.get(id) {
            Some(Flow::PubRel) => self.published(now, id, a),
            _ => self.violation(now, UnexpectedPubComp),
        }
    }

    fn on_suback(&mut self, now: Instant, a: SubAck) {
        let id = a.packet_id;
        let count = match self.flows.get(id) {
            Some(Flow::Subscribe(subs, _)) => subs.len(),
            _ => return self.violation(now, UnexpectedSubAck),
        };
        if a.reason_codes.len() != count {
            return self.violation(now, SubAckCountMismatch);
        }
        if let Some(Flow::Subscribe(subs, props)) = self.flows.remove(id) {
            for (sub, rc) in subs.into_iter().zip(&a.reason_codes) {
                let granted = match rc {
                    ReasonCode::Success => QoS::AtMostOnce,
                    ReasonCode::GrantedQoS1 => QoS::AtLeastOnce,
                    ReasonCode::GrantedQoS2 => QoS::ExactlyOnce,
                    _ => continue,
                };
                let mut options = sub.options;
                options.qos = options.qos.min(granted);
                self.subscriptions
                    .insert(sub.filter, (options, props.subscription_identifier));
            }
        }
        self.events.push_back(Event::Subscribed {
            packet_id: id,
            reason_codes: a.reason_codes,
            properties: a.properties,
        });
    }

    fn on_unsuback(&mut self, now: Instant, a: UnsubAck) {
        let id = a.packet_id;
        let v5 = self.config.protocol.is_v5();
        match self.flows.get(id) {
            Some(Flow::Unsubscribe(filters)) if !v5 || filters.len() == a.reason_codes.len() => {}
            Some(Flow::Unsubscribe(_)) => return self.violation(now, UnsubAckCountMismatch),
            _ => return self.violation(now, UnexpectedUnsubAck),
        }
        if let Some(Flow::Unsubscribe(filters)) = self.flows.remove(id) {
            for (i, filter) in filters.iter().enumerate() {
                let gone = !v5
                    || matches!(
                        a.reason_codes.get(i),
                        Some(ReasonCode::Success | ReasonCode::NoSubscriptionExisted)
                    );
                if gone {
                    self.subscriptions.remove(filter);
                }
            }
        }
        self.events.push_back(Event::Unsubscribed {
            packet_id: id,
            reason_codes: a.reason_codes,
            properties: a.properties,
        });
    }

    fn on_disconnect(&mut self, now: Instant, d: Disconnect) {
        let code = d.reason_code;
        let reason = CloseReason {
            initiator: Initiator::Remote,
            reason_code: code,
            error: code
                .is_error()
                .then_some(ConnectionError::Disconnected(code)),
        };
        self.closed(now, reason, d.properties, true);
    }
}
