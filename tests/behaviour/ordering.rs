//! What one client sends on consecutive connections reaches the router in that order.

use super::*;

/// Connects with `connect` on a new socket; returns it and the CONNACK's session present flag.
fn connect_flag(addr: SocketAddr, connect: Connect) -> (TcpStream, bool) {
    let v = connect.protocol;
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = BytesMut::new();
    encode(&Packet::Connect(Box::new(connect)), v, &mut buf).unwrap();
    s.write_all(&buf).unwrap();
    let mut head = [0u8; 2];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x20, "CONNACK expected");
    let mut rest = vec![0u8; usize::from(head[1])];
    s.read_exact(&mut rest).unwrap();
    assert_eq!(rest[1], 0, "connection refused");
    (s, rest[0] & 1 == 1)
}

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
        let (mut s, _) = connect_flag(addr, first);
        let mut d = tinymqtt::codec::Disconnect::new(ReasonCode::Success);
        d.properties.session_expiry_interval = Some(0);
        let mut buf = BytesMut::new();
        encode(&Packet::Disconnect(d), ProtocolVersion::V5, &mut buf).unwrap();
        s.write_all(&buf).unwrap();
        drop(s);
        let mut again = Connect::new(ProtocolVersion::V5, id);
        again.clean_start = false;
        again.properties.session_expiry_interval = Some(3600);
        let (_s, present) = connect_flag(addr, again);
        assert!(
            !present,
            "round {round}: the reconnect found the ended session"
        );
    }
}
