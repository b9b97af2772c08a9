//! CONNECT: the first packet a client sends.

use bytes::Bytes;

use super::error::{DecodeError, EncodeError};
use super::primitives::{not_in, Reader, Sink};
use super::properties::{check_binary, ConnectProperties, Properties, WillProperties};
use super::PacketType;
use crate::types::{ByteStr, ProtocolVersion, QoS, TopicName};

const T: PacketType = PacketType::Connect;

/// CONNECT: asks the server for a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The protocol version, from the protocol name and level.
    pub protocol: ProtocolVersion,
    /// Clean Session (3.1.x) or Clean Start (5.0).
    pub clean_start: bool,
    /// Keep-alive in seconds; 0 turns it off.
    pub keep_alive: u16,
    /// The client identifier; empty asks the server to assign one (3.1.1 and 5.0).
    pub client_id: ByteStr,
    /// The will message.
    pub will: Option<Will>,
    /// The user name.
    pub username: Option<ByteStr>,
    /// The password (binary data).
    pub password: Option<Bytes>,
    /// MQTT 5 properties.
    pub properties: ConnectProperties,
}

impl Connect {
    /// A CONNECT with a client id and defaults elsewhere (clean start, keep-alive 60 s).
    pub fn new(protocol: ProtocolVersion, client_id: ByteStr) -> Connect {
        Connect {
            protocol,
            clean_start: true,
            keep_alive: 60,
            client_id,
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        }
    }
}

/// The will message that the server publishes when the connection ends abnormally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Where the will is published.
    pub topic: TopicName,
    /// The will payload (binary data, at most 65,535 bytes).
    pub payload: Bytes,
    /// The QoS it is published with.
    pub qos: QoS,
    /// Whether it is retained.
    pub retain: bool,
    /// MQTT 5 will properties.
    pub properties: WillProperties,
}

const FLAG_RESERVED: u8 = 0x01;
const FLAG_CLEAN: u8 = 0x02;
const FLAG_WILL: u8 = 0x04;
const FLAG_WILL_RETAIN: u8 = 0x20;
const FLAG_PASSWORD: u8 = 0x40;
const FLAG_USERNAME: u8 = 0x80;

fn read_protocol(r: &mut Reader<'_>) -> Result<ProtocolVersion, DecodeError> {
    let name = r.binary()?;
    let level = r.u8()?;
    match (&name[..], level) {
        (b"MQTT", 4) => Ok(ProtocolVersion::V3_1_1),
        (b"MQTT", 5) => Ok(ProtocolVersion::V5),
        (b"MQIsdp", 3) => Ok(ProtocolVersion::V3_1),
        (b"MQTT", _) | (b"MQIsdp", _) => Err(DecodeError::UnsupportedProtocolLevel(level)),
        _ => Err(DecodeError::InvalidProtocolName),
    }
}

impl Connect {
    /// Decodes the body; the version comes from the packet itself.
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Connect, DecodeError> {
        let protocol = read_protocol(r)?;
        // MQTT 5 forbids non-minimal variable byte integers; the fixed header was read with the
        // decoder's own version, everything after follows the CONNECT's.
        r.minimal = protocol.is_v5();
        let flags = r.u8()?;
        if flags & FLAG_RESERVED != 0 {
            return Err(DecodeError::InvalidConnectFlags("reserved flag is set"));
        }
        let will_qos = QoS::from_u8((flags >> 3) & 0x03).ok_or(DecodeError::InvalidQoS {
            field: "connect will qos",
        })?;
        let has_will = flags & FLAG_WILL != 0;
        let will_retain = flags & FLAG_WILL_RETAIN != 0;
        if !has_will && (will_qos != QoS::AtMostOnce || will_retain) {
            return Err(DecodeError::InvalidConnectFlags(
                "will qos or will retain set without a will",
            ));
        }
        let has_user = flags & FLAG_USERNAME != 0;
        let has_pass = flags & FLAG_PASSWORD != 0;
        if !protocol.is_v5() && has_pass && !has_user {
            return Err(DecodeError::InvalidConnectFlags(
                "password flag set without user name flag",
            ));
        }
        let keep_alive = r.u16()?;
        let properties = if protocol.is_v5() {
            ConnectProperties::read(r)?
        } else {
            ConnectProperties::default()
        };
        let client_id = r.string("client identifier")?;
        let will = if has_will {
            let properties = if protocol.is_v5() {
                WillProperties::read(r)?
            } else {
                WillProperties::default()
            };
            let topic = r.string("will topic")?;
            let topic = TopicName::from_byte_str(topic).map_err(|e| match e {
                crate::types::InvalidTopic::Topic(t) => DecodeError::InvalidTopicName(t),
                crate::types::InvalidTopic::String(error) => DecodeError::InvalidString {
                    field: "will topic",
                    error,
                },
            })?;
            let payload = r.binary()?;
            Some(Will {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = if has_user {
            Some(r.string("user name")?)
        } else {
            None
        };
        let password = if has_pass { Some(r.binary()?) } else { None };
        Ok(Connect {
            protocol,
            clean_start: flags & FLAG_CLEAN != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    pub(crate) fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        if self.protocol != version {
            return Err(EncodeError::VersionMismatch {
                packet: self.protocol,
                encoder: version,
            });
        }
        if !version.is_v5() {
            if !self.properties.is_empty() {
                return Err(not_in(version, "connect properties"));
            }
            if self.will.as_ref().is_some_and(|w| !w.properties.is_empty()) {
                return Err(not_in(version, "will properties"));
            }
            if self.password.is_some() && self.username.is_none() {
                return Err(not_in(version, "a password without a user name"));
            }
        }
        self.properties.check(T)?;
        if let Some(w) = &self.will {
            if w.topic.is_empty() {
                return Err(EncodeError::Invalid {
                    packet: T,
                    reason: "empty will topic",
                });
            }
            check_binary(Some(&w.payload), T, "will payload longer than 65535 bytes")?;
            w.properties.check(T)?;
        }
        check_binary(
            self.password.as_ref(),
            T,
            "password longer than 65535 bytes",
        )
    }

    pub(crate) fn write<S: Sink>(&self, s: &mut S) {
        let v = self.protocol;
        s.put_u16(v.protocol_name().len() as u16);
        s.put_slice(v.protocol_name().as_bytes());
        s.put_u8(v.level());
        let mut flags = 0;
        if self.clean_start {
            flags |= FLAG_CLEAN;
        }
        if let Some(w) = &self.will {
            flags |= FLAG_WILL | ((w.qos as u8) << 3);
            if w.retain {
                flags |= FLAG_WILL_RETAIN;
            }
        }
        if self.password.is_some() {
            flags |= FLAG_PASSWORD;
        }
        if self.username.is_some() {
            flags |= FLAG_USERNAME;
        }
        s.put_u8(flags);
        s.put_u16(self.keep_alive);
        if v.is_v5() {
            self.properties.write_with_len(s);
        }
        s.put_str(&self.client_id);
        if let Some(w) = &self.will {
            if v.is_v5() {
                w.properties.write_with_len(s);
            }
            s.put_str(w.topic.as_byte_str());
            s.put_binary(&w.payload);
        }
        if let Some(u) = &self.username {
            s.put_str(u);
        }
        if let Some(p) = &self.password {
            s.put_binary(p);
        }
    }
}
