//! A message as it travels between nodes: the MQTT 5 PUBLISH as encoded (its properties
//! intact), under the subject of its topic, with the node it was published on in a header.
//!
//! The topic travels twice, in the subject (what NATS routes on) and in the PUBLISH; a
//! receiver takes the PUBLISH's and drops a message whose subject does not name the same
//! topic, whose body is not exactly one MQTT 5 PUBLISH, or that carries a packet identifier
//! or topic alias of its own: everything from NATS is checked like a client's packet.

use bytes::{Bytes, BytesMut};

use crate::broker::cluster::{subject_to_topic, topic_to_subject};
use crate::codec::{encode, Decoder, Packet, Publish};
use crate::{PacketId, ProtocolVersion, QoS};

/// The header naming the node a message was published on.
pub(crate) const ORIGIN: &str = "Tinymqtt-Origin";

/// Why a message from the cluster was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// The subject is not under the cluster's prefix, or not a topic's subject.
    Subject,
    /// The body is not one whole MQTT 5 PUBLISH.
    Body,
    /// The PUBLISH's topic is not the subject's.
    TopicMismatch,
}

/// The subject `message` travels under in the cluster `prefix`: `{prefix}.{subject}` at
/// QoS 0 (core NATS), `{prefix}.d.{subject}` at QoS 1/2 (the cluster's JetStream stream;
/// the mapping's root tokens are `t` and `s`, so `d` names no topic).
pub(crate) fn subject(prefix: &str, message: &Publish) -> String {
    let topic = topic_to_subject(&message.topic);
    match message.qos {
        QoS::AtMostOnce => format!("{prefix}.{topic}"),
        _ => format!("{prefix}.{DURABLE}.{topic}"),
    }
}

/// The token between the prefix and the subject of QoS 1/2 messages.
pub(crate) const DURABLE: &str = "d";

/// The body of `message`: its PUBLISH encoded for MQTT 5 (a QoS 1/2 message carries packet
/// identifier 1, which means nothing between nodes). `None` if it cannot be encoded (it was
/// decoded from a client, so it can).
pub(crate) fn encode_body(message: &Publish) -> Option<Bytes> {
    let mut p = message.clone();
    p.dup = false;
    p.properties.topic_alias = None;
    p.packet_id = (p.qos != QoS::AtMostOnce).then_some(PacketId::MIN);
    let mut buf = BytesMut::new();
    encode(&Packet::Publish(p), ProtocolVersion::V5, &mut buf).ok()?;
    Some(buf.freeze())
}

/// The message a node received under `subject` with `body`, checked: as routed (no packet
/// identifier, no topic alias, no subscription identifiers), or why it is dropped.
pub(crate) fn decode(
    prefix: &str,
    subject: &str,
    body: &[u8],
    max_packet_size: u32,
) -> Result<Publish, Malformed> {
    let rest = subject
        .strip_prefix(prefix)
        .and_then(|s| s.strip_prefix('.'))
        .ok_or(Malformed::Subject)?;
    let (durable, rest) = match rest.strip_prefix(DURABLE).and_then(|s| s.strip_prefix('.')) {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let topic = subject_to_topic(rest).map_err(|_| Malformed::Subject)?;
    let mut buf = BytesMut::from(body);
    let decoder = Decoder::new(ProtocolVersion::V5).with_max_packet_size(max_packet_size);
    let mut p = match decoder.decode(&mut buf) {
        Ok(Some(Packet::Publish(p))) if buf.is_empty() => p,
        _ => return Err(Malformed::Body),
    };
    if p.topic != topic || p.properties.topic_alias.is_some() {
        return Err(Malformed::TopicMismatch);
    }
    if durable == (p.qos == QoS::AtMostOnce) {
        // QoS 0 under the stream's subjects, or QoS 1/2 outside them.
        return Err(Malformed::Subject);
    }
    p.packet_id = None;
    p.dup = false;
    p.properties.subscription_identifiers = Vec::new();
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TopicName;

    fn message(topic: &str, qos: QoS) -> Publish {
        let mut p = Publish::new(TopicName::new(topic).unwrap(), "payload");
        p.qos = qos;
        p.retain = true;
        p.properties.content_type = Some(crate::ByteStr::from_static("text/plain"));
        p.properties.message_expiry_interval = Some(30);
        p
    }

    #[test]
    fn a_message_and_its_properties_cross_intact() {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let m = message("a b/c.d/é", qos);
            let s = subject("tinymqtt", &m);
            let expected = match qos {
                QoS::AtMostOnce => "tinymqtt.t.a%20b.c%2Ed.é",
                _ => "tinymqtt.d.t.a%20b.c%2Ed.é",
            };
            assert_eq!(s, expected);
            let body = encode_body(&m).unwrap();
            assert_eq!(decode("tinymqtt", &s, &body, 1 << 20), Ok(m));
        }
    }

    #[test]
    fn hostile_subjects_and_bodies_are_refused() {
        let m = message("a/b", QoS::AtLeastOnce);
        let body = encode_body(&m).unwrap();
        let cases: [(&str, &[u8], Malformed); 9] = [
            ("other.d.t.a.b", &body, Malformed::Subject),
            ("tinymqttx.d.t.a.b", &body, Malformed::Subject),
            ("tinymqtt.d.t.a.*", &body, Malformed::Subject),
            ("tinymqtt.d.t.a.c", &body, Malformed::TopicMismatch),
            ("tinymqtt.t.a.b", &body, Malformed::Subject),
            ("tinymqtt.d.d.t.a.b", &body, Malformed::Subject),
            ("tinymqtt.d.t.a.b", b"", Malformed::Body),
            ("tinymqtt.d.t.a.b", &body[..body.len() - 1], Malformed::Body),
            ("tinymqtt.d.t.a.b", &[0xC0, 0x00], Malformed::Body),
        ];
        for (subject, body, why) in cases {
            assert_eq!(
                decode("tinymqtt", subject, body, 1 << 20),
                Err(why),
                "{subject}"
            );
        }
        let mut twice = body.to_vec();
        twice.extend_from_slice(&body);
        assert_eq!(
            decode("tinymqtt", "tinymqtt.d.t.a.b", &twice, 1 << 20),
            Err(Malformed::Body)
        );
        let q0 = encode_body(&message("a/b", QoS::AtMostOnce)).unwrap();
        assert_eq!(
            decode("tinymqtt", "tinymqtt.d.t.a.b", &q0, 1 << 20),
            Err(Malformed::Subject),
            "QoS 0 is never in the stream"
        );
        assert_eq!(
            decode("tinymqtt", "tinymqtt.d.t.a.b", &body, 4),
            Err(Malformed::Body),
            "over the size limit"
        );
    }
}
