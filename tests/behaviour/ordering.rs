//! What one client sends on consecutive connections reaches the router in that order.

use super::*;

#[test]
fn mqtt_3_1_4_3_a_disconnect_with_expiry_0_and_an_immediate_reconnect_find_no_session() {
    // The new CONNECT must not overtake the old connection's DISCONNECT on its way to the
    // router: the session ended with it, so the reconnect finds none ([MQTT-3.1.2-4] and
    // the DISCONNECT's Session Expiry Interval 0). Repeated: the race is a scheduling one.
    let b = broker();
    let addr = b.addr;
    for round in 0..40 {
        let id = ByteStr::try_from(format!("order-{round}")).unwrap();
        let mut first = Connect::new(ProtocolVersion::V5, id.clone());
        first.properties.session_expiry_interval = Some(3600);
        let (mut s, _) = raw_connect_flag(addr, first);
        let mut d = tinymqtt::codec::Disconnect::new(ReasonCode::Success);
        d.properties.session_expiry_interval = Some(0);
        let mut buf = BytesMut::new();
        encode(&Packet::Disconnect(d), ProtocolVersion::V5, &mut buf).unwrap();
        s.write_all(&buf).unwrap();
        drop(s);
        let mut again = Connect::new(ProtocolVersion::V5, id);
        again.clean_start = false;
        again.properties.session_expiry_interval = Some(3600);
        let (_s, present) = raw_connect_flag(addr, again);
        assert!(
            !present,
            "round {round}: the reconnect found the ended session"
        );
    }
}
