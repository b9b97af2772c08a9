//! DISCONNECT and AUTH: a reason code and properties, both optional on the wire.

use super::error::{DecodeError, EncodeError};
use super::primitives::not_in;
use super::primitives::{Reader, Sink};
use super::properties::{AuthProperties, DisconnectProperties, Properties};
use super::PacketType;
use crate::types::{ProtocolVersion, ReasonCode};

/// DISCONNECT: the last packet of a connection, from either side.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// Why (MQTT 5; always Normal disconnection in 3.1.x).
    pub reason_code: ReasonCode,
    /// MQTT 5 properties.
    pub properties: DisconnectProperties,
}

impl Disconnect {
    /// A DISCONNECT with `reason_code` and no properties.
    pub fn new(reason_code: ReasonCode) -> Disconnect {
        Disconnect {
            reason_code,
            properties: DisconnectProperties::default(),
        }
    }
}

/// AUTH: one step of MQTT 5 enhanced authentication.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// Success, Continue authentication or Re-authenticate.
    pub reason_code: ReasonCode,
    /// Method, data, reason string, user properties.
    pub properties: AuthProperties,
}

/// Whether DISCONNECT may carry `rc` (the table lives with the reason codes).
fn valid_disconnect(rc: ReasonCode) -> bool {
    rc.allowed_in_disconnect()
}

pub(crate) fn valid_auth(rc: ReasonCode) -> bool {
    matches!(
        rc,
        ReasonCode::Success | ReasonCode::ContinueAuthentication | ReasonCode::ReAuthenticate
    )
}

/// Reads the optional reason code and properties; both are absent in a zero-length body.
fn read_tail<P>(
    r: &mut Reader<'_>,
    t: PacketType,
    valid: fn(ReasonCode) -> bool,
    read_props: fn(&mut Reader<'_>) -> Result<P, DecodeError>,
) -> Result<(ReasonCode, P), DecodeError>
where
    P: Properties,
{
    if r.is_empty() {
        return Ok((ReasonCode::Success, P::default()));
    }
    let code = r.u8()?;
    let rc = ReasonCode::from_u8(code)
        .filter(|rc| valid(*rc))
        .ok_or(DecodeError::InvalidReasonCode { packet: t, code })?;
    let props = if r.is_empty() {
        P::default()
    } else {
        read_props(r)?
    };
    Ok((rc, props))
}

fn write_tail<S: Sink, P: Properties>(s: &mut S, rc: ReasonCode, props: &P) {
    let has_props = !props.is_empty();
    if has_props || rc != ReasonCode::Success {
        s.put_u8(rc.as_u8());
        if has_props {
            props.write_with_len(s);
        }
    }
}

impl Disconnect {
    pub(crate) fn read(r: &mut Reader<'_>, v: ProtocolVersion) -> Result<Disconnect, DecodeError> {
        if !v.is_v5() {
            return Ok(Disconnect::default());
        }
        let (reason_code, properties) = read_tail(
            r,
            PacketType::Disconnect,
            valid_disconnect,
            DisconnectProperties::read,
        )?;
        Ok(Disconnect {
            reason_code,
            properties,
        })
    }

    pub(crate) fn check(&self, v: ProtocolVersion) -> Result<(), EncodeError> {
        if !valid_disconnect(self.reason_code) {
            return Err(EncodeError::InvalidReasonCode {
                packet: PacketType::Disconnect,
                code: self.reason_code,
            });
        }
        if !v.is_v5() && (self.reason_code != ReasonCode::Success || !self.properties.is_empty()) {
            return Err(not_in(v, "a disconnect reason code or properties"));
        }
        Ok(())
    }

    pub(crate) fn write<S: Sink>(&self, s: &mut S, v: ProtocolVersion) {
        if v.is_v5() {
            write_tail(s, self.reason_code, &self.properties);
        }
    }
}

impl Auth {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Auth, DecodeError> {
        let (reason_code, properties) =
            read_tail(r, PacketType::Auth, valid_auth, AuthProperties::read)?;
        Ok(Auth {
            reason_code,
            properties,
        })
    }

    pub(crate) fn check(&self, v: ProtocolVersion) -> Result<(), EncodeError> {
        if !v.is_v5() {
            return Err(not_in(v, "auth"));
        }
        if !valid_auth(self.reason_code) {
            return Err(EncodeError::InvalidReasonCode {
                packet: PacketType::Auth,
                code: self.reason_code,
            });
        }
        self.properties.check(PacketType::Auth)
    }

    pub(crate) fn write<S: Sink>(&self, s: &mut S) {
        write_tail(s, self.reason_code, &self.properties);
    }
}
