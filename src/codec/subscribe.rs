//! SUBSCRIBE: topic filters with their options.

use super::error::{DecodeError, EncodeError};
use super::primitives::not_in;
use super::primitives::{Reader, Sink};
use super::properties::{Properties, SubscribeProperties};
use super::PacketType;
use crate::topic::validate_topic_filter_bytes;
use crate::types::{PacketId, ProtocolVersion, QoS, TopicFilter};

const T: PacketType = PacketType::Subscribe;

/// At most this many filters are allocated for before they are read (one allocation for a
/// typical SUBSCRIBE, a bounded one for a hostile length walk); beyond it the list grows.
const MAX_PREALLOCATED_FILTERS: usize = 64;

/// SUBSCRIBE: asks for messages matching one or more topic filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Identifies the request; SUBACK carries it back.
    pub packet_id: PacketId,
    /// MQTT 5 properties.
    pub properties: SubscribeProperties,
    /// At least one filter.
    pub filters: Vec<Subscription>,
}

/// One topic filter of a SUBSCRIBE and its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The filter.
    pub filter: TopicFilter,
    /// The options.
    pub options: SubscriptionOptions,
}

impl Subscription {
    /// A subscription at `qos` with the other options at their defaults.
    pub fn new(filter: TopicFilter, qos: QoS) -> Subscription {
        Subscription {
            filter,
            options: SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            },
        }
    }
}

/// The subscription options byte; only `qos` exists before MQTT 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionOptions {
    /// The highest QoS the server may deliver with.
    pub qos: QoS,
    /// Don't deliver the subscriber's own publishes back to it (not on shared subscriptions).
    pub no_local: bool,
    /// Keep the retain flag of forwarded messages as published.
    pub retain_as_published: bool,
    /// Whether retained messages are sent when subscribing.
    pub retain_handling: RetainHandling,
}

/// When retained messages are sent for a new subscription (MQTT 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetainHandling {
    /// 0: at subscribe time.
    #[default]
    SendAtSubscribe,
    /// 1: at subscribe time, only if the subscription did not exist.
    SendIfNew,
    /// 2: never.
    DoNotSend,
}

impl SubscriptionOptions {
    pub(crate) fn read(
        b: u8,
        v: ProtocolVersion,
        shared: bool,
    ) -> Result<SubscriptionOptions, DecodeError> {
        let reserved = if v.is_v5() { 0xC0 } else { 0xFC };
        if b & reserved != 0 {
            return Err(DecodeError::InvalidSubscriptionOptions(
                "reserved bits are set",
            ));
        }
        // MQTT 5 section 3.8.3.1: QoS 3 and retain handling 3 are protocol errors there.
        let qos = QoS::from_u8(b & 0x03).ok_or(if v.is_v5() {
            DecodeError::ForbiddenSubscriptionOptions("maximum qos 3")
        } else {
            DecodeError::InvalidQoS {
                field: "subscription options",
            }
        })?;
        let retain_handling = match (b >> 4) & 0x03 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => {
                return Err(DecodeError::ForbiddenSubscriptionOptions(
                    "retain handling 3",
                ))
            }
        };
        let no_local = b & 0x04 != 0;
        if no_local && shared {
            return Err(DecodeError::ForbiddenSubscriptionOptions(
                "no local on a shared subscription",
            ));
        }
        Ok(SubscriptionOptions {
            qos,
            no_local,
            retain_as_published: b & 0x08 != 0,
            retain_handling,
        })
    }

    pub(crate) fn byte(&self) -> u8 {
        let rh = match self.retain_handling {
            RetainHandling::SendAtSubscribe => 0,
            RetainHandling::SendIfNew => 1,
            RetainHandling::DoNotSend => 2,
        };
        self.qos as u8
            | (u8::from(self.no_local) << 2)
            | (u8::from(self.retain_as_published) << 3)
            | (rh << 4)
    }
}

/// Reads a topic filter, mapping its errors.
pub(crate) fn read_filter(
    r: &mut Reader<'_>,
    field: &'static str,
) -> Result<TopicFilter, DecodeError> {
    read_filter_shared(r, field).map(|(f, _)| f)
}

/// Reads a topic filter and whether it is a shared subscription, checking its UTF-8 once.
fn read_filter_shared(
    r: &mut Reader<'_>,
    field: &'static str,
) -> Result<(TopicFilter, bool), DecodeError> {
    let mut shared = false;
    let s = r.string_checked(field, |bytes| {
        validate_topic_filter_bytes(bytes).map_err(DecodeError::InvalidTopicFilter)?;
        // A valid filter under `$share/` has its group and filter: it is shared.
        shared = bytes.starts_with(b"$share/");
        Ok(())
    })?;
    Ok((TopicFilter::from_checked(s), shared))
}

impl Subscribe {
    pub(crate) fn read(r: &mut Reader<'_>, v: ProtocolVersion) -> Result<Subscribe, DecodeError> {
        let packet_id = PacketId::new(r.u16()?).ok_or(DecodeError::ZeroPacketId(T))?;
        let properties = if v.is_v5() {
            SubscribeProperties::read(r)?
        } else {
            SubscribeProperties::default()
        };
        let mut filters = Vec::with_capacity(r.count_binaries(1, MAX_PREALLOCATED_FILTERS));
        while !r.is_empty() {
            let (filter, shared) = read_filter_shared(r, "topic filter")?;
            let options = SubscriptionOptions::read(r.u8()?, v, shared)?;
            filters.push(Subscription { filter, options });
        }
        if filters.is_empty() {
            return Err(DecodeError::NoTopicFilters(T));
        }
        Ok(Subscribe {
            packet_id,
            properties,
            filters,
        })
    }

    pub(crate) fn check(&self, v: ProtocolVersion) -> Result<(), EncodeError> {
        if self.filters.is_empty() {
            return Err(EncodeError::Invalid {
                packet: T,
                reason: "no topic filter",
            });
        }
        for f in &self.filters {
            let o = f.options;
            if !v.is_v5()
                && (o.no_local
                    || o.retain_as_published
                    || o.retain_handling != RetainHandling::SendAtSubscribe)
            {
                return Err(not_in(v, "subscription options other than qos"));
            }
            if o.no_local && f.filter.shared().is_some() {
                return Err(EncodeError::Invalid {
                    packet: T,
                    reason: "no local on a shared subscription",
                });
            }
        }
        if !v.is_v5() && !self.properties.is_empty() {
            return Err(not_in(v, "subscribe properties"));
        }
        self.properties.check(T)
    }

    pub(crate) fn write<S: Sink>(&self, s: &mut S, v: ProtocolVersion) {
        s.put_u16(self.packet_id.get());
        if v.is_v5() {
            self.properties.write_with_len(s);
        }
        for f in &self.filters {
            s.put_str(f.filter.as_byte_str());
            s.put_u8(f.options.byte());
        }
    }
}
