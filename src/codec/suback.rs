//! SUBACK: one reason code per requested filter.

use super::error::{DecodeError, EncodeError};
use super::primitives::not_in;
use super::primitives::{Reader, Sink};
use super::properties::{AckProperties, Properties};
use super::PacketType;
use crate::types::{PacketId, ProtocolVersion, ReasonCode};

/// SUBACK: the outcome of each filter of a SUBSCRIBE, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// The SUBSCRIBE this answers.
    pub packet_id: PacketId,
    /// MQTT 5 properties.
    pub properties: AckProperties,
    /// Granted QoS (0x00-0x02) or a failure, one per filter.
    pub reason_codes: Vec<ReasonCode>,
}

/// UNSUBACK: the outcome of each filter of an UNSUBSCRIBE (MQTT 5); empty in 3.1.x.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// The UNSUBSCRIBE this answers.
    pub packet_id: PacketId,
    /// MQTT 5 properties.
    pub properties: AckProperties,
    /// One per filter in MQTT 5; none before.
    pub reason_codes: Vec<ReasonCode>,
}

pub(crate) fn valid_suback(rc: ReasonCode, v: ProtocolVersion) -> bool {
    use ReasonCode::*;
    if !v.is_v5() {
        return matches!(rc, Success | GrantedQoS1 | GrantedQoS2 | UnspecifiedError);
    }
    matches!(
        rc,
        Success
            | GrantedQoS1
            | GrantedQoS2
            | UnspecifiedError
            | ImplementationSpecificError
            | NotAuthorized
            | TopicFilterInvalid
            | PacketIdentifierInUse
            | QuotaExceeded
            | SharedSubscriptionsNotSupported
            | SubscriptionIdentifiersNotSupported
            | WildcardSubscriptionsNotSupported
    )
}

pub(crate) fn valid_unsuback(rc: ReasonCode) -> bool {
    use ReasonCode::*;
    matches!(
        rc,
        Success
            | NoSubscriptionExisted
            | UnspecifiedError
            | ImplementationSpecificError
            | NotAuthorized
            | TopicFilterInvalid
            | PacketIdentifierInUse
    )
}

/// Reads the shared head and the reason codes of SUBACK and UNSUBACK.
fn read_acks(
    r: &mut Reader<'_>,
    v: ProtocolVersion,
    t: PacketType,
    valid: impl Fn(ReasonCode) -> bool,
) -> Result<(PacketId, AckProperties, Vec<ReasonCode>), DecodeError> {
    let packet_id = PacketId::new(r.u16()?).ok_or(DecodeError::ZeroPacketId(t))?;
    let properties = if v.is_v5() {
        AckProperties::read(r)?
    } else {
        AckProperties::default()
    };
    let mut codes = Vec::new();
    let carries_codes = t == PacketType::SubAck || v.is_v5();
    if carries_codes {
        while !r.is_empty() {
            let code = r.u8()?;
            let rc = ReasonCode::from_u8(code)
                .filter(|rc| valid(*rc))
                .ok_or(DecodeError::InvalidReasonCode { packet: t, code })?;
            codes.push(rc);
        }
        if codes.is_empty() {
            return Err(DecodeError::NoReasonCodes(t));
        }
    }
    Ok((packet_id, properties, codes))
}

fn check_acks(
    v: ProtocolVersion,
    t: PacketType,
    properties: &AckProperties,
    codes: &[ReasonCode],
    valid: impl Fn(ReasonCode) -> bool,
) -> Result<(), EncodeError> {
    if !v.is_v5() && !properties.is_empty() {
        return Err(not_in(v, "acknowledgement properties"));
    }
    if t == PacketType::UnsubAck && !v.is_v5() {
        if !codes.is_empty() {
            return Err(not_in(v, "unsuback reason codes"));
        }
        return Ok(());
    }
    if codes.is_empty() {
        return Err(EncodeError::Invalid {
            packet: t,
            reason: "no reason code",
        });
    }
    match codes.iter().find(|rc| !valid(**rc)) {
        Some(code) => Err(EncodeError::InvalidReasonCode {
            packet: t,
            code: *code,
        }),
        None => Ok(()),
    }
}

fn write_acks<S: Sink>(
    s: &mut S,
    v: ProtocolVersion,
    id: PacketId,
    properties: &AckProperties,
    codes: &[ReasonCode],
) {
    s.put_u16(id.get());
    if v.is_v5() {
        properties.write_with_len(s);
    }
    for rc in codes {
        s.put_u8(rc.as_u8());
    }
}

impl SubAck {
    pub(crate) fn read(r: &mut Reader<'_>, v: ProtocolVersion) -> Result<SubAck, DecodeError> {
        let (packet_id, properties, reason_codes) =
            read_acks(r, v, PacketType::SubAck, |rc| valid_suback(rc, v))?;
        Ok(SubAck {
            packet_id,
            properties,
            reason_codes,
        })
    }

    pub(crate) fn check(&self, v: ProtocolVersion) -> Result<(), EncodeError> {
        check_acks(
            v,
            PacketType::SubAck,
            &self.properties,
            &self.reason_codes,
            |rc| valid_suback(rc, v),
        )
    }

    pub(crate) fn write<S: Sink>(&self, s: &mut S, v: ProtocolVersion) {
        write_acks(s, v, self.packet_id, &self.properties, &self.reason_codes);
    }
}

impl UnsubAck {
    pub(crate) fn read(r: &mut Reader<'_>, v: ProtocolVersion) -> Result<UnsubAck, DecodeError> {
        let (packet_id, properties, reason_codes) =
            read_acks(r, v, PacketType::UnsubAck, valid_unsuback)?;
        Ok(UnsubAck {
            packet_id,
            properties,
            reason_codes,
        })
    }

    pub(crate) fn check(&self, v: ProtocolVersion) -> Result<(), EncodeError> {
        check_acks(
            v,
            PacketType::UnsubAck,
            &self.properties,
            &self.reason_codes,
            valid_unsuback,
        )
    }

    pub(crate) fn write<S: Sink>(&self, s: &mut S, v: ProtocolVersion) {
        write_acks(s, v, self.packet_id, &self.properties, &self.reason_codes);
    }
}
