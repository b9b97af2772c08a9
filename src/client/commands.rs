//! The client's commands: publish, subscribe, unsubscribe, acknowledge, authenticate,
//! disconnect. Each returns `Err` only for the caller's own mistakes.

use std::num::NonZeroU16;
use std::time::Instant;

use crate::client::event::{self, AckToken};
use crate::client::outgoing::Flow;
use crate::client::{ClientSession, ClientState, Timer};
use crate::codec::{
    Auth, Disconnect, DisconnectProperties, Packet, Publish, Subscribe, SubscribeProperties,
    Subscription, Unsubscribe, UnsubscribeProperties,
};
use crate::error::{ClientError, CloseReason, Initiator, ServerFeature, V5Command};
use crate::topic::TopicError;
use crate::types::{InvalidTopic, PacketId, QoS, TopicFilter, TopicName};

impl ClientSession {
    /// Publishes a message; returns its packet identifier for QoS 1 and 2.
    ///
    /// The client sets the packet identifier, clears DUP and assigns a topic alias itself, and
    /// drops subscription identifiers, which only a server may send ([MQTT-3.3.4-6]).
    /// `Event::Published` with this identifier reports the end of a QoS 1/2 flow.
    pub fn publish(
        &mut self,
        now: Instant,
        mut publish: Publish,
    ) -> Result<Option<PacketId>, ClientError> {
        self.require_connected()?;
        if publish.topic.is_empty() {
            return Err(InvalidTopic::Topic(TopicError::Empty).into());
        }
        if publish.qos > self.server.maximum_qos {
            return Err(ClientError::QoSNotSupported {
                max: self.server.maximum_qos,
            });
        }
        if publish.retain && !self.server.retain_available {
            return Err(ClientError::RetainNotSupported);
        }
        publish.dup = false;
        publish.properties.topic_alias = None;
        publish.properties.subscription_identifiers.clear();
        publish.packet_id = None;
        if publish.qos != QoS::AtMostOnce {
            if !self.window_open() {
                return Err(ClientError::WindowFull(self.server.receive_maximum));
            }
            publish.packet_id = Some(
                self.flows
                    .next_free_id()
                    .ok_or(ClientError::PacketIdsExhausted)?,
            );
        }
        let id = publish.packet_id;
        let topic = publish.topic.clone();
        let alias = self.plan_alias(&topic);
        if let (Some(_), Some((_, true))) = (id, alias) {
            // Sent with the alias alone, but a resend on a new connection carries the whole
            // topic ([MQTT-3.3.2-7]): that form must fit the server's maximum packet size too.
            self.encoder
                .encoded_len(&Packet::Publish(publish.clone()))?;
        }
        if let Some((alias, known)) = alias {
            publish.properties.topic_alias = Some(alias);
            if known {
                publish.topic = TopicName::empty();
            }
        }
        let packet = Packet::Publish(publish);
        self.encoder.encode(&packet, &mut self.out)?;
        self.sent(now);
        if let Some((alias, false)) = alias {
            self.aliases_out.insert(topic.clone(), alias);
        }
        if let (Some(id), Packet::Publish(mut p)) = (id, packet) {
            self.on_wire.insert(id);
            // Stored with its full topic: a resend goes on a new connection, without aliases.
            p.topic = topic;
            p.properties.topic_alias = None;
            self.flows.insert(id, Flow::Publish(p));
        }
        Ok(id)
    }

    /// The alias for `topic`, and whether the server knows it already.
    fn plan_alias(&self, topic: &TopicName) -> Option<(NonZeroU16, bool)> {
        if !self.config.topic_aliases || self.server.topic_alias_maximum == 0 {
            return None;
        }
        if let Some(a) = self.aliases_out.get(topic) {
            return Some((*a, true));
        }
        let next = u16::try_from(self.aliases_out.len() + 1).ok()?;
        if next > self.server.topic_alias_maximum {
            return None;
        }
        NonZeroU16::new(next).map(|a| (a, false))
    }

    /// Subscribes; returns the packet identifier that `Event::Subscribed` will carry.
    pub fn subscribe(
        &mut self,
        now: Instant,
        filters: Vec<Subscription>,
        properties: SubscribeProperties,
    ) -> Result<PacketId, ClientError> {
        self.require_connected()?;
        if properties.subscription_identifier.is_some() && !self.server.subscription_ids {
            return Err(ClientError::FeatureNotSupported(
                ServerFeature::SubscriptionIdentifiers,
            ));
        }
        for s in &filters {
            let f = s.filter.as_str();
            if s.filter.shared().is_some() && !self.server.shared {
                return Err(ClientError::FeatureNotSupported(
                    ServerFeature::SharedSubscriptions,
                ));
            }
            if (f.contains('+') || f.contains('#')) && !self.server.wildcards {
                return Err(ClientError::FeatureNotSupported(
                    ServerFeature::WildcardSubscriptions,
                ));
            }
        }
        let packet_id = self
            .flows
            .next_free_id()
            .ok_or(ClientError::PacketIdsExhausted)?;
        let packet = Packet::Subscribe(Subscribe {
            packet_id,
            properties,
            filters,
        });
        self.encoder.encode(&packet, &mut self.out)?;
        self.sent(now);
        if let Packet::Subscribe(s) = packet {
            self.flows
                .insert(packet_id, Flow::Subscribe(s.filters, s.properties));
        }
        Ok(packet_id)
    }

    /// Unsubscribes; returns the packet identifier that `Event::Unsubscribed` will carry.
    pub fn unsubscribe(
        &mut self,
        now: Instant,
        filters: Vec<TopicFilter>,
        properties: UnsubscribeProperties,
    ) -> Result<PacketId, ClientError> {
        self.require_connected()?;
        let packet_id = self
            .flows
            .next_free_id()
            .ok_or(ClientError::PacketIdsExhausted)?;
        let packet = Packet::Unsubscribe(Unsubscribe {
            packet_id,
            properties,
            filters,
        });
        self.encoder.encode(&packet, &mut self.out)?;
        self.sent(now);
        if let Packet::Unsubscribe(u) = packet {
            self.flows.insert(packet_id, Flow::Unsubscribe(u.filters));
        }
        Ok(packet_id)
    }

    /// Acknowledges a message received with manual acks.
    ///
    /// Acknowledgements go out in the order the messages arrived ([MQTT-4.6.0-2]): one acked
    /// early waits for those before it.
    pub fn ack(&mut self, now: Instant, token: AckToken) -> Result<(), ClientError> {
        if token.connection != self.connection || self.state != ClientState::Connected {
            return Err(ClientError::UnknownAckToken);
        }
        let entry = self
            .pending_acks
            .iter_mut()
            .find(|a| a.seq == token.seq && !a.acked)
            .ok_or(ClientError::UnknownAckToken)?;
        entry.acked = true;
        entry
            .watch
            .mark(event::AckWatch::LIVE, event::AckWatch::ACKED);
        while self.pending_acks.front().is_some_and(|a| a.acked) {
            if let Some(a) = self.pending_acks.pop_front() {
                self.send_ack(now, a.packet_id, a.qos);
            }
        }
        Ok(())
    }

    /// Sends AUTH: the next step of MQTT 5 enhanced authentication, or a re-authentication.
    pub fn auth(&mut self, now: Instant, auth: Auth) -> Result<(), ClientError> {
        if !self.config.protocol.is_v5() {
            return Err(ClientError::NeedsV5(V5Command::Auth));
        }
        if !self.is_open() {
            return Err(ClientError::NotConnected);
        }
        self.encoder.encode(&Packet::Auth(auth), &mut self.out)?;
        self.sent(now);
        Ok(())
    }

    /// Ends the connection with DISCONNECT and stops reconnecting.
    ///
    /// Under 3.1.x `disconnect` must be `Disconnect::default()`.
    pub fn disconnect(&mut self, now: Instant, disconnect: Disconnect) -> Result<(), ClientError> {
        match self.state {
            ClientState::Idle => Err(ClientError::NotConnected),
            ClientState::Reconnecting => {
                self.timers.stop(Timer::Reconnect);
                self.state = ClientState::Idle;
                Ok(())
            }
            ClientState::Connecting => {
                let reason = CloseReason {
                    initiator: Initiator::Local,
                    reason_code: disconnect.reason_code,
                    error: None,
                };
                self.closed(now, reason, disconnect.properties, false);
                Ok(())
            }
            ClientState::Connected => {
                let code = disconnect.reason_code;
                let packet = Packet::Disconnect(disconnect);
                self.encoder.encode(&packet, &mut self.out)?;
                let props = match packet {
                    Packet::Disconnect(d) => d.properties,
                    _ => DisconnectProperties::default(),
                };
                let reason = CloseReason {
                    initiator: Initiator::Local,
                    reason_code: code,
                    error: None,
                };
                self.closed(now, reason, props, false);
                Ok(())
            }
        }
    }
}
