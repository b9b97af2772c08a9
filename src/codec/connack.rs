//! CONNACK: the server's answer to CONNECT.

use super::error::{DecodeError, EncodeError};
use super::primitives::not_in;
use super::primitives::{Reader, Sink};
use super::properties::{ConnAckProperties, Properties};
use super::PacketType;
use crate::types::{ProtocolVersion, ReasonCode};

const T: PacketType = PacketType::ConnAck;

/// CONNACK: accepts or refuses a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Whether the server resumed a stored session (always false in MQTT 3.1).
    pub session_present: bool,
    /// The outcome; MQTT 3.1.x return codes 0-5 map onto [`ReasonCode`] (see
    /// [`ConnAck::return_code`]).
    pub reason_code: ReasonCode,
    /// MQTT 5 properties.
    pub properties: ConnAckProperties,
}

impl ConnAck {
    /// A successful CONNACK.
    pub fn accepted(session_present: bool) -> ConnAck {
        ConnAck {
            session_present,
            reason_code: ReasonCode::Success,
            properties: ConnAckProperties::default(),
        }
    }

    /// The MQTT 3.1.x return code for this CONNACK's reason code, if it has one.
    pub fn return_code(&self) -> Option<u8> {
        v3_return_code(self.reason_code)
    }
}

/// MQTT 3.1.x CONNACK return codes ([MQTT-3.2.3]) as reason codes.
const V3_CODES: [ReasonCode; 6] = [
    ReasonCode::Success,
    ReasonCode::UnsupportedProtocolVersion,
    ReasonCode::ClientIdentifierNotValid,
    ReasonCode::ServerUnavailable,
    ReasonCode::BadUserNameOrPassword,
    ReasonCode::NotAuthorized,
];

fn v3_return_code(rc: ReasonCode) -> Option<u8> {
    V3_CODES.iter().position(|c| *c == rc).map(|i| i as u8)
}

/// Reason codes a CONNACK may carry in MQTT 5.
pub(crate) fn valid_v5(rc: ReasonCode) -> bool {
    use ReasonCode::*;
    matches!(
        rc,
        Success
            | UnspecifiedError
            | MalformedPacket
            | ProtocolError
            | ImplementationSpecificError
            | UnsupportedProtocolVersion
            | ClientIdentifierNotValid
            | BadUserNameOrPassword
            | NotAuthorized
            | ServerUnavailable
            | ServerBusy
            | Banned
            | BadAuthenticationMethod
            | TopicNameInvalid
            | PacketTooLarge
            | QuotaExceeded
            | PayloadFormatInvalid
            | RetainNotSupported
            | QoSNotSupported
            | UseAnotherServer
            | ServerMoved
            | ConnectionRateExceeded
    )
}

impl ConnAck {
    pub(crate) fn read(r: &mut Reader<'_>, v: ProtocolVersion) -> Result<ConnAck, DecodeError> {
        let flags = r.u8()?;
        let allowed = if v == ProtocolVersion::V3_1 { 0 } else { 1 };
        if flags & !allowed != 0 {
            return Err(DecodeError::InvalidConnAckFlags("reserved bits are set"));
        }
        let session_present = flags & 1 != 0;
        let code = r.u8()?;
        let bad = DecodeError::InvalidReasonCode { packet: T, code };
        let reason_code = if v.is_v5() {
            ReasonCode::from_u8(code)
                .filter(|rc| valid_v5(*rc))
                .ok_or(bad)?
        } else {
            *V3_CODES.get(usize::from(code)).ok_or(bad)?
        };
        if session_present && reason_code != ReasonCode::Success {
            return Err(DecodeError::InvalidConnAckFlags(
                "session present with a refusing code",
            ));
        }
        let properties = if v.is_v5() {
            ConnAckProperties::read(r)?
        } else {
            ConnAckProperties::default()
        };
        Ok(ConnAck {
            session_present,
            reason_code,
            properties,
        })
    }

    pub(crate) fn check(&self, v: ProtocolVersion) -> Result<(), EncodeError> {
        let valid = if v.is_v5() {
            valid_v5(self.reason_code)
        } else {
            v3_return_code(self.reason_code).is_some()
        };
        if !valid {
            return Err(EncodeError::InvalidReasonCode {
                packet: T,
                code: self.reason_code,
            });
        }
        if self.session_present && self.reason_code != ReasonCode::Success {
            return Err(EncodeError::Invalid {
                packet: T,
                reason: "session present with a refusing code",
            });
        }
        if v == ProtocolVersion::V3_1 && self.session_present {
            return Err(not_in(v, "session present"));
        }
        if !v.is_v5() && !self.properties.is_empty() {
            return Err(not_in(v, "connack properties"));
        }
        self.properties.check(T)
    }

    pub(crate) fn write<S: Sink>(&self, s: &mut S, v: ProtocolVersion) {
        s.put_u8(u8::from(self.session_present));
        if v.is_v5() {
            s.put_u8(self.reason_code.as_u8());
            self.properties.write_with_len(s);
        } else {
            s.put_u8(self.return_code().unwrap_or(0));
        }
    }
}
