//! The server side's decoder: the version comes from the CONNECT.

use bytes::BytesMut;

use super::{DecodeError, Decoder, Packet};
use crate::types::ProtocolVersion;

/// Decodes what a client sends: first a CONNECT (of any version), then every packet in the
/// version that CONNECT named.
///
/// A plain [`Decoder`] keeps the version it was made with, so a server that forgets to set it
/// from the CONNECT reads MQTT 5 packets as 3.1.1 ones (the properties length becomes part of
/// the payload). This one cannot be left behind: it switches itself.
///
/// ```
/// use bytes::BytesMut;
/// use tinymqtt::codec::{encode, Connect, Packet, Publish, ServerDecoder};
/// use tinymqtt::{ByteStr, ProtocolVersion, TopicName};
///
/// let v5 = ProtocolVersion::V5;
/// let mut wire = BytesMut::new();
/// encode(&Connect::new(v5, ByteStr::from_static("c1")).into(), v5, &mut wire)?;
/// encode(&Publish::new(TopicName::new("t")?, "hello").into(), v5, &mut wire)?;
///
/// let mut decoder = ServerDecoder::new();
/// assert!(matches!(decoder.decode(&mut wire)?, Some(Packet::Connect(_))));
/// assert_eq!(decoder.version(), Some(v5));
/// match decoder.decode(&mut wire)? {
///     Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], b"hello"),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerDecoder {
    decoder: Decoder,
    /// Set by the CONNECT.
    version: Option<ProtocolVersion>,
}

impl Default for ServerDecoder {
    fn default() -> Self {
        ServerDecoder::new()
    }
}

impl ServerDecoder {
    /// A decoder waiting for the CONNECT, with the protocol's own size limit.
    pub fn new() -> ServerDecoder {
        ServerDecoder {
            // CONNECT carries its own version; 3.1.1 framing until then (lenient about
            // non-minimal lengths, which only MQTT 5 forbids).
            decoder: Decoder::new(ProtocolVersion::V3_1_1),
            version: None,
        }
    }

    /// Sets the maximum packet size.
    pub fn with_max_packet_size(mut self, max: u32) -> ServerDecoder {
        self.decoder = self.decoder.with_max_packet_size(max);
        self
    }

    /// The version the CONNECT named; `None` until it arrived.
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// Takes the next whole packet off the front of `buf`, as [`Decoder::decode`].
    ///
    /// Before the CONNECT, any other packet is an error ([MQTT-3.1.0-1]:
    /// [`DecodeError::ExpectedConnect`]).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let packet = self.decoder.decode(buf)?;
        match (&packet, self.version) {
            (Some(Packet::Connect(c)), None) => {
                self.version = Some(c.protocol);
                self.decoder.version = c.protocol;
            }
            (Some(p), None) => return Err(DecodeError::ExpectedConnect(p.packet_type())),
            _ => {}
        }
        Ok(packet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode, Connect, Publish, Subscribe};
    use crate::types::{ByteStr, PacketId, QoS, TopicFilter, TopicName};

    fn wire(packets: &[Packet], v: ProtocolVersion) -> BytesMut {
        let mut b = BytesMut::new();
        for p in packets {
            encode(p, v, &mut b).unwrap();
        }
        b
    }

    #[test]
    fn mqtt_3_1_0_1_a_first_packet_other_than_connect_is_a_protocol_error() {
        let sub = Subscribe::new(
            PacketId::new(1).unwrap(),
            vec![(TopicFilter::new("a").unwrap(), QoS::AtMostOnce).into()],
        );
        let mut b = wire(&[sub.into()], ProtocolVersion::V3_1_1);
        let e = ServerDecoder::new().decode(&mut b).unwrap_err();
        assert_eq!(
            e,
            DecodeError::ExpectedConnect(crate::codec::PacketType::Subscribe)
        );
        assert_eq!(e.reason_code(), crate::ReasonCode::ProtocolError);
    }

    #[test]
    fn each_version_is_learned_from_its_connect() {
        for v in [
            ProtocolVersion::V3_1,
            ProtocolVersion::V3_1_1,
            ProtocolVersion::V5,
        ] {
            let p = Publish::new(TopicName::new("t").unwrap(), "x")
                .with_qos(QoS::AtLeastOnce)
                .with_packet_id(PacketId::new(7).unwrap());
            let connect = Connect::new(v, ByteStr::from_static("c"));
            let mut b = wire(&[connect.into(), p.clone().into()], v);
            let mut d = ServerDecoder::new();
            assert!(matches!(d.decode(&mut b), Ok(Some(Packet::Connect(_)))));
            assert_eq!(d.version(), Some(v));
            assert_eq!(d.decode(&mut b), Ok(Some(Packet::Publish(p))), "{v:?}");
        }
    }
}
