//! UNSUBSCRIBE: removes subscriptions.

use super::error::{DecodeError, EncodeError};
use super::primitives::not_in;
use super::primitives::{Reader, Sink};
use super::properties::{Properties, UnsubscribeProperties};
use super::subscribe::read_filter;
use super::PacketType;
use crate::types::{PacketId, ProtocolVersion, TopicFilter};

const T: PacketType = PacketType::Unsubscribe;

/// UNSUBSCRIBE: removes the subscriptions with these exact filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Identifies the request; UNSUBACK carries it back.
    pub packet_id: PacketId,
    /// MQTT 5 properties.
    pub properties: UnsubscribeProperties,
    /// At least one filter.
    pub filters: Vec<TopicFilter>,
}

impl Unsubscribe {
    pub(crate) fn read(r: &mut Reader<'_>, v: ProtocolVersion) -> Result<Unsubscribe, DecodeError> {
        let packet_id = PacketId::new(r.u16()?).ok_or(DecodeError::ZeroPacketId(T))?;
        let properties = if v.is_v5() {
            UnsubscribeProperties::read(r)?
        } else {
            UnsubscribeProperties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            filters.push(read_filter(r, "topic filter")?);
        }
        if filters.is_empty() {
            return Err(DecodeError::NoTopicFilters(T));
        }
        Ok(Unsubscribe {
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
        if !v.is_v5() && !self.properties.is_empty() {
            return Err(not_in(v, "unsubscribe properties"));
        }
        Ok(())
    }

    pub(crate) fn write<S: Sink>(&self, s: &mut S, v: ProtocolVersion) {
        s.put_u16(self.packet_id.get());
        if v.is_v5() {
            self.properties.write_with_len(s);
        }
        for f in &self.filters {
            s.put_str(f.as_byte_str());
        }
    }
}
