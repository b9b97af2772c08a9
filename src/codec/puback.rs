//! PUBACK, PUBREC, PUBREL and PUBCOMP: the QoS 1 and QoS 2 handshakes.

use super::error::{DecodeError, EncodeError};
use super::primitives::not_in;
use super::primitives::{Reader, Sink};
use super::properties::{AckProperties, Properties};
use super::PacketType;
use crate::types::{PacketId, ProtocolVersion, ReasonCode};

/// The shape shared by PUBACK, PUBREC, PUBREL and PUBCOMP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubAck {
    /// The PUBLISH this answers.
    pub packet_id: PacketId,
    /// The outcome (MQTT 5; always Success in 3.1.x).
    pub reason_code: ReasonCode,
    /// MQTT 5 properties.
    pub properties: AckProperties,
}

/// PUBREC: QoS 2, step 2 (same shape as [`PubAck`]).
pub type PubRec = PubAck;
/// PUBREL: QoS 2, step 3 (same shape as [`PubAck`]).
pub type PubRel = PubAck;
/// PUBCOMP: QoS 2, step 4 (same shape as [`PubAck`]).
pub type PubComp = PubAck;

impl PubAck {
    /// A successful acknowledgement of `packet_id` without properties.
    pub fn new(packet_id: PacketId) -> PubAck {
        PubAck {
            packet_id,
            reason_code: ReasonCode::Success,
            properties: AckProperties::default(),
        }
    }
}

/// Whether `rc` is allowed in a packet of type `t` (PUBACK, PUBREC, PUBREL or PUBCOMP).
pub(crate) fn valid_code(t: PacketType, rc: ReasonCode) -> bool {
    use ReasonCode::*;
    match t {
        PacketType::PubAck | PacketType::PubRec => matches!(
            rc,
            Success
                | NoMatchingSubscribers
                | UnspecifiedError
                | ImplementationSpecificError
                | NotAuthorized
                | TopicNameInvalid
                | PacketIdentifierInUse
                | QuotaExceeded
                | PayloadFormatInvalid
        ),
        _ => matches!(rc, Success | PacketIdentifierNotFound),
    }
}

impl PubAck {
    pub(crate) fn read(
        r: &mut Reader<'_>,
        v: ProtocolVersion,
        t: PacketType,
    ) -> Result<PubAck, DecodeError> {
        let packet_id = PacketId::new(r.u16()?).ok_or(DecodeError::ZeroPacketId(t))?;
        let mut ack = PubAck::new(packet_id);
        if v.is_v5() && !r.is_empty() {
            let code = r.u8()?;
            ack.reason_code = ReasonCode::from_u8(code)
                .filter(|rc| valid_code(t, *rc))
                .ok_or(DecodeError::InvalidReasonCode { packet: t, code })?;
            if !r.is_empty() {
                ack.properties = AckProperties::read(r)?;
            }
        }
        Ok(ack)
    }

    pub(crate) fn check(&self, v: ProtocolVersion, t: PacketType) -> Result<(), EncodeError> {
        if !valid_code(t, self.reason_code) {
            return Err(EncodeError::InvalidReasonCode {
                packet: t,
                code: self.reason_code,
            });
        }
        if !v.is_v5() {
            if self.reason_code != ReasonCode::Success {
                return Err(not_in(v, "a reason code in an acknowledgement"));
            }
            if !self.properties.is_empty() {
                return Err(not_in(v, "acknowledgement properties"));
            }
        }
        Ok(())
    }

    pub(crate) fn write<S: Sink>(&self, s: &mut S, v: ProtocolVersion) {
        s.put_u16(self.packet_id.get());
        // MQTT 5 short forms: the reason code and property length may be left out.
        let props = !self.properties.is_empty();
        if v.is_v5() && (props || self.reason_code != ReasonCode::Success) {
            s.put_u8(self.reason_code.as_u8());
            if props {
                self.properties.write_with_len(s);
            }
        }
    }
}
