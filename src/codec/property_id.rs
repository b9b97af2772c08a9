//! MQTT 5 property identifiers: their bytes and names.

use std::fmt;

macro_rules! property_ids {
    ($( $(#[$doc:meta])* $name:ident = $value:literal, $text:literal; )*) => {
        /// An MQTT 5 property identifier.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        #[repr(u8)]
        pub enum PropertyId {
            $( $(#[$doc])* $name = $value, )*
        }

        impl PropertyId {
            /// The identifier for a byte, or `None` if the specification defines none.
            pub const fn from_u32(value: u32) -> Option<PropertyId> {
                match value {
                    $( $value => Some(PropertyId::$name), )*
                    _ => None,
                }
            }

            /// The specification's name.
            pub const fn name(self) -> &'static str {
                match self {
                    $( PropertyId::$name => $text, )*
                }
            }
        }
    };
}

property_ids! {
    /// 0x01, byte.
    PayloadFormatIndicator = 0x01, "payload format indicator";
    /// 0x02, four-byte integer.
    MessageExpiryInterval = 0x02, "message expiry interval";
    /// 0x03, UTF-8 string.
    ContentType = 0x03, "content type";
    /// 0x08, UTF-8 string.
    ResponseTopic = 0x08, "response topic";
    /// 0x09, binary data.
    CorrelationData = 0x09, "correlation data";
    /// 0x0B, variable byte integer.
    SubscriptionIdentifier = 0x0B, "subscription identifier";
    /// 0x11, four-byte integer.
    SessionExpiryInterval = 0x11, "session expiry interval";
    /// 0x12, UTF-8 string.
    AssignedClientIdentifier = 0x12, "assigned client identifier";
    /// 0x13, two-byte integer.
    ServerKeepAlive = 0x13, "server keep alive";
    /// 0x15, UTF-8 string.
    AuthenticationMethod = 0x15, "authentication method";
    /// 0x16, binary data.
    AuthenticationData = 0x16, "authentication data";
    /// 0x17, byte.
    RequestProblemInformation = 0x17, "request problem information";
    /// 0x18, four-byte integer.
    WillDelayInterval = 0x18, "will delay interval";
    /// 0x19, byte.
    RequestResponseInformation = 0x19, "request response information";
    /// 0x1A, UTF-8 string.
    ResponseInformation = 0x1A, "response information";
    /// 0x1C, UTF-8 string.
    ServerReference = 0x1C, "server reference";
    /// 0x1F, UTF-8 string.
    ReasonString = 0x1F, "reason string";
    /// 0x21, two-byte integer.
    ReceiveMaximum = 0x21, "receive maximum";
    /// 0x22, two-byte integer.
    TopicAliasMaximum = 0x22, "topic alias maximum";
    /// 0x23, two-byte integer.
    TopicAlias = 0x23, "topic alias";
    /// 0x24, byte.
    MaximumQoS = 0x24, "maximum qos";
    /// 0x25, byte.
    RetainAvailable = 0x25, "retain available";
    /// 0x26, UTF-8 string pair.
    UserProperty = 0x26, "user property";
    /// 0x27, four-byte integer.
    MaximumPacketSize = 0x27, "maximum packet size";
    /// 0x28, byte.
    WildcardSubscriptionAvailable = 0x28, "wildcard subscription available";
    /// 0x29, byte.
    SubscriptionIdentifierAvailable = 0x29, "subscription identifier available";
    /// 0x2A, byte.
    SharedSubscriptionAvailable = 0x2A, "shared subscription available";
}

impl fmt::Display for PropertyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
