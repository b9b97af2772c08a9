//! Problem information ([MQTT-3.1.2-29]): reason strings on acknowledgements only when the
//! client did not ask for none, and dropped from any packet they would make too large.

use super::ServerConnection;
use crate::codec::Packet;
use crate::types::ByteStr;

impl ServerConnection {
    /// A reason string for an acknowledgement, unless the client asked for no problem
    /// information ([MQTT-3.1.2-29]) or speaks 3.1.x.
    pub(super) fn reason(&self, text: &str) -> Option<ByteStr> {
        (self.problem_info && self.protocol.is_v5() && self.config.reason_strings)
            .then(|| ByteStr::try_from(text).ok())
            .flatten()
    }
}

/// `packet` without its reason string and user properties, if it had any to leave out.
pub(super) fn without_problem_info(packet: &Packet) -> Option<Packet> {
    let mut p = packet.clone();
    let (reason, users) = match &mut p {
        Packet::ConnAck(a) => (
            &mut a.properties.reason_string,
            &mut a.properties.user_properties,
        ),
        Packet::Disconnect(d) => (
            &mut d.properties.reason_string,
            &mut d.properties.user_properties,
        ),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => (
            &mut a.properties.reason_string,
            &mut a.properties.user_properties,
        ),
        Packet::SubAck(a) => (
            &mut a.properties.reason_string,
            &mut a.properties.user_properties,
        ),
        Packet::UnsubAck(a) => (
            &mut a.properties.reason_string,
            &mut a.properties.user_properties,
        ),
        _ => return None,
    };
    if reason.is_none() && users.is_empty() {
        return None;
    }
    *reason = None;
    users.clear();
    Some(p)
}
