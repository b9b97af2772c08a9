//! MQTT 5 properties: one typed struct per packet family, so a property a packet may not carry
//! cannot be expressed, and decoding refuses it.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::Bytes;

use super::error::{DecodeError, EncodeError};
use super::primitives::{Counter, Reader, Sink, MAX_VAR_INT};
use super::property_id::PropertyId;
use super::PacketType;
use crate::types::{ByteStr, QoS, TopicName};

use super::user_properties::{UserProperties, UserProperty, WireCollector};

/// The payload format indicator of a PUBLISH or will.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PayloadFormat {
    /// 0: unspecified bytes.
    #[default]
    Unspecified,
    /// 1: UTF-8 encoded character data.
    Utf8,
}

/// One decoded property value.
enum Value {
    Byte(u8),
    U16(u16),
    U32(u32),
    VarInt(u32),
    Str(ByteStr),
    Bin(Bytes),
    Pair(ByteStr, ByteStr),
    /// Checked, and left where it lies (see `Prop::span`).
    Wire,
}

/// A property being read into a struct: its identifier and value, and where it lies in the
/// packet (its identifier included).
struct Prop {
    id: PropertyId,
    value: Value,
    packet: PacketType,
    span: (usize, usize),
}

impl Prop {
    fn not_allowed(&self) -> DecodeError {
        DecodeError::PropertyNotAllowed {
            property: self.id,
            packet: self.packet,
        }
    }

    fn invalid(&self) -> DecodeError {
        DecodeError::InvalidPropertyValue(self.id)
    }

    /// Stores a property that may appear at most once.
    fn once<T>(&self, slot: &mut Option<T>, v: T) -> Result<(), DecodeError> {
        if slot.is_some() {
            return Err(DecodeError::DuplicateProperty {
                property: self.id,
                packet: self.packet,
            });
        }
        *slot = Some(v);
        Ok(())
    }

    fn byte(&self) -> u8 {
        match self.value {
            Value::Byte(b) => b,
            _ => 0,
        }
    }

    fn bool(&self) -> Result<bool, DecodeError> {
        match self.byte() {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.invalid()),
        }
    }

    fn u16(&self) -> u16 {
        match self.value {
            Value::U16(v) => v,
            _ => 0,
        }
    }

    fn u32(&self) -> u32 {
        match self.value {
            Value::U32(v) | Value::VarInt(v) => v,
            _ => 0,
        }
    }

    fn nonzero_u16(&self) -> Result<NonZeroU16, DecodeError> {
        NonZeroU16::new(self.u16()).ok_or_else(|| self.invalid())
    }

    fn nonzero_u32(&self) -> Result<NonZeroU32, DecodeError> {
        NonZeroU32::new(self.u32()).ok_or_else(|| self.invalid())
    }

    fn take_str(self) -> ByteStr {
        match self.value {
            Value::Str(s) => s,
            _ => ByteStr::new(),
        }
    }

    fn take_bin(self) -> Bytes {
        match self.value {
            Value::Bin(b) => b,
            _ => Bytes::new(),
        }
    }

    fn payload_format(&self) -> Result<PayloadFormat, DecodeError> {
        Ok(if self.bool()? {
            PayloadFormat::Utf8
        } else {
            PayloadFormat::Unspecified
        })
    }

    fn topic(self) -> Result<TopicName, DecodeError> {
        let err = self.invalid();
        TopicName::from_byte_str(self.take_str()).map_err(|_| err)
    }
}

/// Reads a property length and the properties after it, handing each to `apply`.
fn read_properties(
    r: &mut Reader<'_>,
    apply: impl FnMut(Prop) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    read_properties_with(r, false, apply)
}

/// [`read_properties`], with user properties only checked (their value is `Value::Wire`:
/// the caller keeps their span of the packet) when `users_as_wire`.
fn read_properties_with(
    r: &mut Reader<'_>,
    users_as_wire: bool,
    mut apply: impl FnMut(Prop) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let len = r.var_int("property length")?;
    let mut p = r.sub(len as usize)?;
    while !p.is_empty() {
        let start = p.position();
        let raw = p.var_int("property identifier")?;
        let id = PropertyId::from_u32(raw).ok_or(DecodeError::UnknownProperty(raw))?;
        use PropertyId::*;
        let value = match id {
            PayloadFormatIndicator
            | RequestProblemInformation
            | RequestResponseInformation
            | MaximumQoS
            | RetainAvailable
            | WildcardSubscriptionAvailable
            | SubscriptionIdentifierAvailable
            | SharedSubscriptionAvailable => Value::Byte(p.u8()?),
            ServerKeepAlive | ReceiveMaximum | TopicAliasMaximum | TopicAlias => {
                Value::U16(p.u16()?)
            }
            MessageExpiryInterval
            | SessionExpiryInterval
            | WillDelayInterval
            | MaximumPacketSize => Value::U32(p.u32()?),
            SubscriptionIdentifier => Value::VarInt(p.var_int("subscription identifier")?),
            ContentType
            | ResponseTopic
            | AssignedClientIdentifier
            | AuthenticationMethod
            | ResponseInformation
            | ServerReference
            | ReasonString => Value::Str(p.string(id.name())?),
            CorrelationData | AuthenticationData => Value::Bin(p.binary()?),
            UserProperty if users_as_wire => {
                p.skip_string("user property name")?;
                p.skip_string("user property value")?;
                Value::Wire
            }
            UserProperty => {
                let k = p.string("user property name")?;
                Value::Pair(k, p.string("user property value")?)
            }
        };
        apply(Prop {
            id,
            value,
            packet: r.packet,
            span: (start, p.position()),
        })?;
    }
    Ok(())
}

// Writers: each writes one property when present.

fn w_byte<S: Sink>(s: &mut S, id: PropertyId, v: Option<u8>) {
    if let Some(v) = v {
        s.put_u8(id as u8);
        s.put_u8(v);
    }
}

fn w_bool<S: Sink>(s: &mut S, id: PropertyId, v: Option<bool>) {
    w_byte(s, id, v.map(u8::from));
}

fn w_u16<S: Sink>(s: &mut S, id: PropertyId, v: Option<u16>) {
    if let Some(v) = v {
        s.put_u8(id as u8);
        s.put_u16(v);
    }
}

fn w_u32<S: Sink>(s: &mut S, id: PropertyId, v: Option<u32>) {
    if let Some(v) = v {
        s.put_u8(id as u8);
        s.put_u32(v);
    }
}

fn w_str<S: Sink>(s: &mut S, id: PropertyId, v: Option<&ByteStr>) {
    if let Some(v) = v {
        s.put_u8(id as u8);
        s.put_str(v);
    }
}

fn w_bin<S: Sink>(s: &mut S, id: PropertyId, v: Option<&Bytes>) {
    if let Some(v) = v {
        s.put_u8(id as u8);
        s.put_binary(v);
    }
}

fn w_user<S: Sink>(s: &mut S, props: &[UserProperty]) {
    for (k, v) in props {
        s.put_u8(PropertyId::UserProperty as u8);
        s.put_str(k);
        s.put_str(v);
    }
}

fn w_user_wire<S: Sink>(s: &mut S, props: &UserProperties) {
    s.put_slice(props.as_wire());
}

fn w_sub_id<S: Sink>(s: &mut S, id: NonZeroU32) {
    s.put_u8(PropertyId::SubscriptionIdentifier as u8);
    s.put_var_int(id.get());
}

fn payload_format_byte(f: Option<PayloadFormat>) -> Option<u8> {
    f.map(|f| match f {
        PayloadFormat::Unspecified => 0,
        PayloadFormat::Utf8 => 1,
    })
}

/// Binary data carries a two-byte length.
pub(crate) fn check_binary(
    b: Option<&Bytes>,
    packet: PacketType,
    what: &'static str,
) -> Result<(), EncodeError> {
    match b {
        Some(b) if b.len() > usize::from(u16::MAX) => Err(EncodeError::Invalid {
            packet,
            reason: what,
        }),
        _ => Ok(()),
    }
}

fn check_sub_id(id: NonZeroU32, packet: PacketType) -> Result<(), EncodeError> {
    if id.get() > MAX_VAR_INT {
        return Err(EncodeError::Invalid {
            packet,
            reason: "subscription identifier above 268435455",
        });
    }
    Ok(())
}

/// A property set that can be written behind its length.
pub(crate) trait Properties: Default + PartialEq {
    /// Writes the properties, without the length.
    fn write<S: Sink>(&self, s: &mut S);

    /// Whether nothing is set (MQTT 3.1.x can carry only that).
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The length of the properties, without the length field.
    fn len(&self) -> usize {
        let mut c = Counter::default();
        self.write(&mut c);
        c.0
    }

    /// Writes the property length and the properties.
    fn write_with_len<S: Sink>(&self, s: &mut S) {
        s.put_var_int(self.len() as u32);
        self.write(s);
    }
}

/// Properties of CONNECT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectProperties {
    /// Seconds the session outlives the connection; `None` means 0.
    pub session_expiry_interval: Option<u32>,
    /// How many QoS 1/2 publishes the client accepts at once; `None` means 65,535.
    pub receive_maximum: Option<NonZeroU16>,
    /// The largest packet the client accepts; `None` means no limit beyond the protocol's.
    pub maximum_packet_size: Option<NonZeroU32>,
    /// The highest topic alias the client accepts; `None` means 0 (none).
    pub topic_alias_maximum: Option<u16>,
    /// Asks the server for response information in CONNACK.
    pub request_response_information: Option<bool>,
    /// Whether the server may send reason strings and user properties on errors.
    pub request_problem_information: Option<bool>,
    /// User properties.
    pub user_properties: Vec<UserProperty>,
    /// Enhanced authentication method.
    pub authentication_method: Option<ByteStr>,
    /// Enhanced authentication data (only with a method).
    pub authentication_data: Option<Bytes>,
}

impl ConnectProperties {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        read_properties(r, |prop| match prop.id {
            PropertyId::SessionExpiryInterval => {
                prop.once(&mut p.session_expiry_interval, prop.u32())
            }
            PropertyId::ReceiveMaximum => prop.once(&mut p.receive_maximum, prop.nonzero_u16()?),
            PropertyId::MaximumPacketSize => {
                prop.once(&mut p.maximum_packet_size, prop.nonzero_u32()?)
            }
            PropertyId::TopicAliasMaximum => prop.once(&mut p.topic_alias_maximum, prop.u16()),
            PropertyId::RequestResponseInformation => {
                prop.once(&mut p.request_response_information, prop.bool()?)
            }
            PropertyId::RequestProblemInformation => {
                prop.once(&mut p.request_problem_information, prop.bool()?)
            }
            PropertyId::AuthenticationMethod => once_str(&mut p.authentication_method, prop),
            PropertyId::AuthenticationData => once_bin(&mut p.authentication_data, prop),
            PropertyId::UserProperty => push_user(&mut p.user_properties, prop),
            _ => Err(prop.not_allowed()),
        })?;
        if p.authentication_data.is_some() && p.authentication_method.is_none() {
            return Err(DecodeError::InvalidPropertyValue(
                PropertyId::AuthenticationData,
            ));
        }
        Ok(p)
    }

    pub(crate) fn check(&self, packet: PacketType) -> Result<(), EncodeError> {
        check_binary(
            self.authentication_data.as_ref(),
            packet,
            "authentication data longer than 65535 bytes",
        )?;
        if self.authentication_data.is_some() && self.authentication_method.is_none() {
            return Err(EncodeError::Invalid {
                packet,
                reason: "authentication data without an authentication method",
            });
        }
        Ok(())
    }
}

fn push_user(list: &mut Vec<UserProperty>, prop: Prop) -> Result<(), DecodeError> {
    match prop.value {
        Value::Pair(k, v) => {
            list.push((k, v));
            Ok(())
        }
        _ => Err(prop.invalid()),
    }
}

/// Stores a string property that may appear at most once.
fn once_str(slot: &mut Option<ByteStr>, prop: Prop) -> Result<(), DecodeError> {
    if slot.is_some() {
        return prop.once(slot, ByteStr::new());
    }
    *slot = Some(prop.take_str());
    Ok(())
}

/// Stores a binary property that may appear at most once.
fn once_bin(slot: &mut Option<Bytes>, prop: Prop) -> Result<(), DecodeError> {
    if slot.is_some() {
        return prop.once(slot, Bytes::new());
    }
    *slot = Some(prop.take_bin());
    Ok(())
}

/// Stores a topic property that may appear at most once.
fn once_topic(slot: &mut Option<TopicName>, prop: Prop) -> Result<(), DecodeError> {
    if slot.is_some() {
        return prop.once(slot, TopicName::empty());
    }
    *slot = Some(prop.topic()?);
    Ok(())
}

impl Properties for ConnectProperties {
    fn write<S: Sink>(&self, s: &mut S) {
        use PropertyId::*;
        w_u32(s, SessionExpiryInterval, self.session_expiry_interval);
        w_u16(s, ReceiveMaximum, self.receive_maximum.map(NonZeroU16::get));
        w_u32(
            s,
            MaximumPacketSize,
            self.maximum_packet_size.map(NonZeroU32::get),
        );
        w_u16(s, TopicAliasMaximum, self.topic_alias_maximum);
        w_bool(
            s,
            RequestResponseInformation,
            self.request_response_information,
        );
        w_bool(
            s,
            RequestProblemInformation,
            self.request_problem_information,
        );
        w_str(s, AuthenticationMethod, self.authentication_method.as_ref());
        w_bin(s, AuthenticationData, self.authentication_data.as_ref());
        w_user(s, &self.user_properties);
    }
}

/// Properties of the will in CONNECT, which become the will PUBLISH's properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WillProperties {
    /// Seconds to wait after the connection ends before publishing the will.
    pub will_delay_interval: Option<u32>,
    /// Whether the payload is UTF-8.
    pub payload_format_indicator: Option<PayloadFormat>,
    /// Lifetime of the will message in seconds.
    pub message_expiry_interval: Option<u32>,
    /// Content type of the payload.
    pub content_type: Option<ByteStr>,
    /// Topic for a response.
    pub response_topic: Option<TopicName>,
    /// Correlation data for a response.
    pub correlation_data: Option<Bytes>,
    /// User properties, kept as received (they become the will message's).
    pub user_properties: UserProperties,
}

impl WillProperties {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        let frame = r.frame();
        let mut users = WireCollector::default();
        read_properties_with(r, true, |prop| match prop.id {
            PropertyId::WillDelayInterval => prop.once(&mut p.will_delay_interval, prop.u32()),
            PropertyId::PayloadFormatIndicator => {
                prop.once(&mut p.payload_format_indicator, prop.payload_format()?)
            }
            PropertyId::MessageExpiryInterval => {
                prop.once(&mut p.message_expiry_interval, prop.u32())
            }
            PropertyId::ContentType => once_str(&mut p.content_type, prop),
            PropertyId::ResponseTopic => once_topic(&mut p.response_topic, prop),
            PropertyId::CorrelationData => once_bin(&mut p.correlation_data, prop),
            PropertyId::UserProperty => {
                users.add(frame, prop.span.0, prop.span.1);
                Ok(())
            }
            _ => Err(prop.not_allowed()),
        })?;
        p.user_properties = users.finish(frame);
        Ok(p)
    }

    pub(crate) fn check(&self, packet: PacketType) -> Result<(), EncodeError> {
        check_response_topic(self.response_topic.as_ref(), packet)?;
        check_binary(
            self.correlation_data.as_ref(),
            packet,
            "correlation data longer than 65535 bytes",
        )
    }
}

/// A response topic is a topic name: the empty alias-only name is not one ([MQTT-3.3.2-13]).
fn check_response_topic(t: Option<&TopicName>, packet: PacketType) -> Result<(), EncodeError> {
    match t {
        Some(t) if t.is_empty() => Err(EncodeError::Invalid {
            packet,
            reason: "empty response topic",
        }),
        _ => Ok(()),
    }
}

impl Properties for WillProperties {
    fn write<S: Sink>(&self, s: &mut S) {
        use PropertyId::*;
        w_u32(s, WillDelayInterval, self.will_delay_interval);
        w_byte(
            s,
            PayloadFormatIndicator,
            payload_format_byte(self.payload_format_indicator),
        );
        w_u32(s, MessageExpiryInterval, self.message_expiry_interval);
        w_str(s, ContentType, self.content_type.as_ref());
        w_str(
            s,
            ResponseTopic,
            self.response_topic.as_ref().map(TopicName::as_byte_str),
        );
        w_bin(s, CorrelationData, self.correlation_data.as_ref());
        w_user_wire(s, &self.user_properties);
    }
}

/// Properties of CONNACK.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnAckProperties {
    /// The session expiry the server uses, if it differs from the client's.
    pub session_expiry_interval: Option<u32>,
    /// How many QoS 1/2 publishes the server accepts at once; `None` means 65,535.
    pub receive_maximum: Option<NonZeroU16>,
    /// The highest QoS the server supports: 0 or 1; `None` means 2.
    pub maximum_qos: Option<QoS>,
    /// Whether the server supports retained messages; `None` means yes.
    pub retain_available: Option<bool>,
    /// The largest packet the server accepts.
    pub maximum_packet_size: Option<NonZeroU32>,
    /// The client identifier the server assigned to an empty one.
    pub assigned_client_identifier: Option<ByteStr>,
    /// The highest topic alias the server accepts; `None` means 0.
    pub topic_alias_maximum: Option<u16>,
    /// Human-readable diagnostics.
    pub reason_string: Option<ByteStr>,
    /// User properties.
    pub user_properties: Vec<UserProperty>,
    /// Whether wildcard subscriptions are supported; `None` means yes.
    pub wildcard_subscription_available: Option<bool>,
    /// Whether subscription identifiers are supported; `None` means yes.
    pub subscription_identifiers_available: Option<bool>,
    /// Whether shared subscriptions are supported; `None` means yes.
    pub shared_subscription_available: Option<bool>,
    /// The keep-alive the client must use instead of its own.
    pub server_keep_alive: Option<u16>,
    /// The basis for response topics, when the client asked for it.
    pub response_information: Option<ByteStr>,
    /// Another server to use.
    pub server_reference: Option<ByteStr>,
    /// Enhanced authentication method.
    pub authentication_method: Option<ByteStr>,
    /// Enhanced authentication data.
    pub authentication_data: Option<Bytes>,
}

impl ConnAckProperties {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        read_properties(r, |prop| {
            use PropertyId::*;
            match prop.id {
                SessionExpiryInterval => prop.once(&mut p.session_expiry_interval, prop.u32()),
                ReceiveMaximum => prop.once(&mut p.receive_maximum, prop.nonzero_u16()?),
                MaximumQoS => {
                    let qos = match prop.byte() {
                        0 => QoS::AtMostOnce,
                        1 => QoS::AtLeastOnce,
                        _ => return Err(prop.invalid()),
                    };
                    prop.once(&mut p.maximum_qos, qos)
                }
                RetainAvailable => prop.once(&mut p.retain_available, prop.bool()?),
                MaximumPacketSize => prop.once(&mut p.maximum_packet_size, prop.nonzero_u32()?),
                AssignedClientIdentifier => once_str(&mut p.assigned_client_identifier, prop),
                TopicAliasMaximum => prop.once(&mut p.topic_alias_maximum, prop.u16()),
                ReasonString => once_str(&mut p.reason_string, prop),
                UserProperty => push_user(&mut p.user_properties, prop),
                WildcardSubscriptionAvailable => {
                    prop.once(&mut p.wildcard_subscription_available, prop.bool()?)
                }
                SubscriptionIdentifierAvailable => {
                    prop.once(&mut p.subscription_identifiers_available, prop.bool()?)
                }
                SharedSubscriptionAvailable => {
                    prop.once(&mut p.shared_subscription_available, prop.bool()?)
                }
                ServerKeepAlive => prop.once(&mut p.server_keep_alive, prop.u16()),
                ResponseInformation => once_str(&mut p.response_information, prop),
                ServerReference => once_str(&mut p.server_reference, prop),
                AuthenticationMethod => once_str(&mut p.authentication_method, prop),
                AuthenticationData => once_bin(&mut p.authentication_data, prop),
                _ => Err(prop.not_allowed()),
            }
        })?;
        Ok(p)
    }

    pub(crate) fn check(&self, packet: PacketType) -> Result<(), EncodeError> {
        if self.maximum_qos == Some(QoS::ExactlyOnce) {
            return Err(EncodeError::Invalid {
                packet,
                reason: "maximum qos can only be 0 or 1 (absent means 2)",
            });
        }
        check_binary(
            self.authentication_data.as_ref(),
            packet,
            "authentication data longer than 65535 bytes",
        )
    }
}

impl Properties for ConnAckProperties {
    fn write<S: Sink>(&self, s: &mut S) {
        use PropertyId::*;
        w_u32(s, SessionExpiryInterval, self.session_expiry_interval);
        w_u16(s, ReceiveMaximum, self.receive_maximum.map(NonZeroU16::get));
        w_byte(s, MaximumQoS, self.maximum_qos.map(|q| q as u8));
        w_bool(s, RetainAvailable, self.retain_available);
        w_u32(
            s,
            MaximumPacketSize,
            self.maximum_packet_size.map(NonZeroU32::get),
        );
        w_str(
            s,
            AssignedClientIdentifier,
            self.assigned_client_identifier.as_ref(),
        );
        w_u16(s, TopicAliasMaximum, self.topic_alias_maximum);
        w_str(s, ReasonString, self.reason_string.as_ref());
        w_bool(
            s,
            WildcardSubscriptionAvailable,
            self.wildcard_subscription_available,
        );
        w_bool(
            s,
            SubscriptionIdentifierAvailable,
            self.subscription_identifiers_available,
        );
        w_bool(
            s,
            SharedSubscriptionAvailable,
            self.shared_subscription_available,
        );
        w_u16(s, ServerKeepAlive, self.server_keep_alive);
        w_str(s, ResponseInformation, self.response_information.as_ref());
        w_str(s, ServerReference, self.server_reference.as_ref());
        w_str(s, AuthenticationMethod, self.authentication_method.as_ref());
        w_bin(s, AuthenticationData, self.authentication_data.as_ref());
        w_user(s, &self.user_properties);
    }
}

/// Properties of PUBLISH.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishProperties {
    /// Whether the payload is UTF-8.
    pub payload_format_indicator: Option<PayloadFormat>,
    /// Lifetime of the message in seconds.
    pub message_expiry_interval: Option<u32>,
    /// A topic alias standing for the topic name.
    pub topic_alias: Option<NonZeroU16>,
    /// Topic for a response.
    pub response_topic: Option<TopicName>,
    /// Correlation data for a response.
    pub correlation_data: Option<Bytes>,
    /// User properties, kept as received and shared by every copy of the message.
    pub user_properties: UserProperties,
    /// Identifiers of the subscriptions that matched (server to client only).
    pub subscription_identifiers: Vec<NonZeroU32>,
    /// Content type of the payload.
    pub content_type: Option<ByteStr>,
}

impl PublishProperties {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        let frame = r.frame();
        let mut users = WireCollector::default();
        read_properties_with(r, true, |prop| match prop.id {
            PropertyId::PayloadFormatIndicator => {
                prop.once(&mut p.payload_format_indicator, prop.payload_format()?)
            }
            PropertyId::MessageExpiryInterval => {
                prop.once(&mut p.message_expiry_interval, prop.u32())
            }
            PropertyId::TopicAlias => prop.once(&mut p.topic_alias, prop.nonzero_u16()?),
            PropertyId::ResponseTopic => once_topic(&mut p.response_topic, prop),
            PropertyId::CorrelationData => once_bin(&mut p.correlation_data, prop),
            PropertyId::UserProperty => {
                users.add(frame, prop.span.0, prop.span.1);
                Ok(())
            }
            PropertyId::SubscriptionIdentifier => {
                p.subscription_identifiers.push(prop.nonzero_u32()?);
                Ok(())
            }
            PropertyId::ContentType => once_str(&mut p.content_type, prop),
            _ => Err(prop.not_allowed()),
        })?;
        p.user_properties = users.finish(frame);
        Ok(p)
    }

    pub(crate) fn check(&self, packet: PacketType) -> Result<(), EncodeError> {
        for id in &self.subscription_identifiers {
            check_sub_id(*id, packet)?;
        }
        check_response_topic(self.response_topic.as_ref(), packet)?;
        check_binary(
            self.correlation_data.as_ref(),
            packet,
            "correlation data longer than 65535 bytes",
        )
    }
}

impl Properties for PublishProperties {
    // On every publish's path: look at the fields instead of building a default to compare.
    fn is_empty(&self) -> bool {
        self.payload_format_indicator.is_none()
            && self.message_expiry_interval.is_none()
            && self.topic_alias.is_none()
            && self.response_topic.is_none()
            && self.correlation_data.is_none()
            && self.user_properties.is_empty()
            && self.subscription_identifiers.is_empty()
            && self.content_type.is_none()
    }

    fn write<S: Sink>(&self, s: &mut S) {
        use PropertyId::*;
        w_byte(
            s,
            PayloadFormatIndicator,
            payload_format_byte(self.payload_format_indicator),
        );
        w_u32(s, MessageExpiryInterval, self.message_expiry_interval);
        w_u16(s, TopicAlias, self.topic_alias.map(NonZeroU16::get));
        w_str(
            s,
            ResponseTopic,
            self.response_topic.as_ref().map(TopicName::as_byte_str),
        );
        w_bin(s, CorrelationData, self.correlation_data.as_ref());
        for id in &self.subscription_identifiers {
            w_sub_id(s, *id);
        }
        w_str(s, ContentType, self.content_type.as_ref());
        w_user_wire(s, &self.user_properties);
    }
}

/// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckProperties {
    /// Human-readable diagnostics.
    pub reason_string: Option<ByteStr>,
    /// User properties.
    pub user_properties: Vec<UserProperty>,
}

impl AckProperties {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        read_properties(r, |prop| match prop.id {
            PropertyId::ReasonString => once_str(&mut p.reason_string, prop),
            PropertyId::UserProperty => push_user(&mut p.user_properties, prop),
            _ => Err(prop.not_allowed()),
        })?;
        Ok(p)
    }
}

impl Properties for AckProperties {
    fn is_empty(&self) -> bool {
        self.reason_string.is_none() && self.user_properties.is_empty()
    }

    fn write<S: Sink>(&self, s: &mut S) {
        w_str(s, PropertyId::ReasonString, self.reason_string.as_ref());
        w_user(s, &self.user_properties);
    }
}

/// Properties of SUBSCRIBE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeProperties {
    /// An identifier the server attaches to every PUBLISH this subscription matches.
    pub subscription_identifier: Option<NonZeroU32>,
    /// User properties.
    pub user_properties: Vec<UserProperty>,
}

impl SubscribeProperties {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        read_properties(r, |prop| match prop.id {
            PropertyId::SubscriptionIdentifier => {
                prop.once(&mut p.subscription_identifier, prop.nonzero_u32()?)
            }
            PropertyId::UserProperty => push_user(&mut p.user_properties, prop),
            _ => Err(prop.not_allowed()),
        })?;
        Ok(p)
    }

    pub(crate) fn check(&self, packet: PacketType) -> Result<(), EncodeError> {
        match self.subscription_identifier {
            Some(id) => check_sub_id(id, packet),
            None => Ok(()),
        }
    }
}

impl Properties for SubscribeProperties {
    fn write<S: Sink>(&self, s: &mut S) {
        if let Some(id) = self.subscription_identifier {
            w_sub_id(s, id);
        }
        w_user(s, &self.user_properties);
    }
}

/// Properties of UNSUBSCRIBE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnsubscribeProperties {
    /// User properties.
    pub user_properties: Vec<UserProperty>,
}

impl UnsubscribeProperties {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        read_properties(r, |prop| match prop.id {
            PropertyId::UserProperty => push_user(&mut p.user_properties, prop),
            _ => Err(prop.not_allowed()),
        })?;
        Ok(p)
    }
}

impl Properties for UnsubscribeProperties {
    fn write<S: Sink>(&self, s: &mut S) {
        w_user(s, &self.user_properties);
    }
}

/// Properties of DISCONNECT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisconnectProperties {
    /// A new session expiry (client to server only).
    pub session_expiry_interval: Option<u32>,
    /// Human-readable diagnostics.
    pub reason_string: Option<ByteStr>,
    /// User properties.
    pub user_properties: Vec<UserProperty>,
    /// Another server to use.
    pub server_reference: Option<ByteStr>,
}

impl DisconnectProperties {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        read_properties(r, |prop| match prop.id {
            PropertyId::SessionExpiryInterval => {
                prop.once(&mut p.session_expiry_interval, prop.u32())
            }
            PropertyId::ReasonString => once_str(&mut p.reason_string, prop),
            PropertyId::UserProperty => push_user(&mut p.user_properties, prop),
            PropertyId::ServerReference => once_str(&mut p.server_reference, prop),
            _ => Err(prop.not_allowed()),
        })?;
        Ok(p)
    }
}

impl Properties for DisconnectProperties {
    fn write<S: Sink>(&self, s: &mut S) {
        use PropertyId::*;
        w_u32(s, SessionExpiryInterval, self.session_expiry_interval);
        w_str(s, ReasonString, self.reason_string.as_ref());
        w_str(s, ServerReference, self.server_reference.as_ref());
        w_user(s, &self.user_properties);
    }
}

/// Properties of AUTH.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthProperties {
    /// Enhanced authentication method.
    pub authentication_method: Option<ByteStr>,
    /// Enhanced authentication data.
    pub authentication_data: Option<Bytes>,
    /// Human-readable diagnostics.
    pub reason_string: Option<ByteStr>,
    /// User properties.
    pub user_properties: Vec<UserProperty>,
}

impl AuthProperties {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        read_properties(r, |prop| match prop.id {
            PropertyId::AuthenticationMethod => once_str(&mut p.authentication_method, prop),
            PropertyId::AuthenticationData => once_bin(&mut p.authentication_data, prop),
            PropertyId::ReasonString => once_str(&mut p.reason_string, prop),
            PropertyId::UserProperty => push_user(&mut p.user_properties, prop),
            _ => Err(prop.not_allowed()),
        })?;
        Ok(p)
    }

    pub(crate) fn check(&self, packet: PacketType) -> Result<(), EncodeError> {
        check_binary(
            self.authentication_data.as_ref(),
            packet,
            "authentication data longer than 65535 bytes",
        )
    }
}

impl Properties for AuthProperties {
    fn write<S: Sink>(&self, s: &mut S) {
        use PropertyId::*;
        w_str(s, AuthenticationMethod, self.authentication_method.as_ref());
        w_bin(s, AuthenticationData, self.authentication_data.as_ref());
        w_str(s, ReasonString, self.reason_string.as_ref());
        w_user(s, &self.user_properties);
    }
}
