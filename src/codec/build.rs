//! Constructors and conversions for the packets an application builds: no struct literals
//! in the common path.

use bytes::Bytes;

use super::{
    Auth, Disconnect, Packet, Publish, PublishProperties, SubAck, Subscribe, SubscribeProperties,
    Subscription, UnsubAck, Unsubscribe, UnsubscribeProperties, Will, WillProperties,
};
use crate::types::{PacketId, QoS, TopicFilter, TopicName};

impl Publish {
    /// This message at `qos` (a QoS 1/2 message needs a packet id on the wire: the client
    /// session assigns one; with the codec alone, see [`Publish::with_packet_id`]).
    ///
    /// ```
    /// use tinymqtt::codec::Publish;
    /// use tinymqtt::{QoS, TopicName};
    ///
    /// let p = Publish::new(TopicName::new("a/b")?, "hello")
    ///     .with_qos(QoS::AtLeastOnce)
    ///     .with_retain(true);
    /// assert_eq!((p.qos, p.retain), (QoS::AtLeastOnce, true));
    /// # Ok::<(), tinymqtt::InvalidTopic>(())
    /// ```
    pub fn with_qos(mut self, qos: QoS) -> Publish {
        self.qos = qos;
        self
    }

    /// This message with the retain flag set as given.
    pub fn with_retain(mut self, retain: bool) -> Publish {
        self.retain = retain;
        self
    }

    /// This message with `packet_id` (for QoS 1/2 when encoding with the codec alone).
    pub fn with_packet_id(mut self, packet_id: PacketId) -> Publish {
        self.packet_id = Some(packet_id);
        self
    }

    /// This message with these MQTT 5 properties.
    pub fn with_properties(mut self, properties: PublishProperties) -> Publish {
        self.properties = properties;
        self
    }
}

impl Will {
    /// A QoS 0, not retained will with no properties.
    ///
    /// ```
    /// use tinymqtt::codec::Will;
    /// use tinymqtt::{QoS, TopicName};
    ///
    /// let will = Will::new(TopicName::new("status/dev7")?, "offline").with_qos(QoS::AtLeastOnce);
    /// # Ok::<(), tinymqtt::InvalidTopic>(())
    /// ```
    pub fn new(topic: TopicName, payload: impl Into<Bytes>) -> Will {
        Will {
            topic,
            payload: payload.into(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: WillProperties::default(),
        }
    }

    /// This will at `qos`.
    pub fn with_qos(mut self, qos: QoS) -> Will {
        self.qos = qos;
        self
    }

    /// This will with the retain flag set as given.
    pub fn with_retain(mut self, retain: bool) -> Will {
        self.retain = retain;
        self
    }

    /// This will with these MQTT 5 properties.
    pub fn with_properties(mut self, properties: WillProperties) -> Will {
        self.properties = properties;
        self
    }
}

impl Subscribe {
    /// A SUBSCRIBE with `packet_id`, these filters and no properties.
    pub fn new(packet_id: PacketId, filters: Vec<Subscription>) -> Subscribe {
        Subscribe {
            packet_id,
            properties: SubscribeProperties::default(),
            filters,
        }
    }
}

impl Unsubscribe {
    /// An UNSUBSCRIBE with `packet_id`, these filters and no properties.
    pub fn new(packet_id: PacketId, filters: Vec<TopicFilter>) -> Unsubscribe {
        Unsubscribe {
            packet_id,
            properties: UnsubscribeProperties::default(),
            filters,
        }
    }
}

impl From<(TopicFilter, QoS)> for Subscription {
    fn from((filter, qos): (TopicFilter, QoS)) -> Subscription {
        Subscription::new(filter, qos)
    }
}

macro_rules! into_packet {
    ($($t:ident),*) => {$(
        impl From<$t> for Packet {
            fn from(p: $t) -> Packet {
                Packet::$t(p)
            }
        }
    )*};
}

into_packet!(Subscribe, SubAck, Unsubscribe, UnsubAck, Disconnect, Auth);
