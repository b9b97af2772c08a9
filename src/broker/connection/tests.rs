use std::time::Instant;

use bytes::BytesMut;

use crate::broker::{BrokerConfig, Router, ServerConnection};
use crate::codec::{Connect, Encoder, Packet};
use crate::{ByteStr, ProtocolVersion};

/// The tests' clock (it does not move: no deadline is involved).
#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}

/// Feeds `packet` to `conn`, takes its mail to `router` and the router's back, and
/// returns what the connection transmits.
fn exchange(router: &mut Router, conn: &mut ServerConnection, packet: Packet) -> Vec<u8> {
    let now = now();
    let mut bytes = BytesMut::new();
    Encoder::new(ProtocolVersion::V3_1_1)
        .encode(&packet, &mut bytes)
        .unwrap();
    conn.handle_input(now, &bytes);
    let mut out = Vec::new();
    loop {
        while let Some(b) = conn.poll_transmit() {
            out.extend_from_slice(&b);
        }
        let mut moved = false;
        while let Some(m) = conn.poll_mail() {
            router.handle_mail(now, m);
            moved = true;
        }
        while let Some(m) = router.poll_mail() {
            conn.handle_mail(now, m);
            moved = true;
        }
        if !moved {
            return out;
        }
    }
}

#[test]
fn an_idle_connection_keeps_no_buffer() {
    // What the CONNECT, the CONNACK, a PINGREQ and its PINGRESP left in the buffers would
    // stay with every idle connection.
    let mut router = Router::new(BrokerConfig::default());
    let mut conn = router.accept(now());
    let connect = Connect::new(ProtocolVersion::V3_1_1, ByteStr::from_static("idle"));
    let connack = exchange(&mut router, &mut conn, Packet::Connect(Box::new(connect)));
    assert_eq!(connack, [0x20, 2, 0, 0], "CONNACK accepted");
    assert_eq!((conn.inbuf.capacity(), conn.out.capacity()), (0, 0));
    let pingresp = exchange(&mut router, &mut conn, Packet::PingReq);
    assert_eq!(pingresp, [0xd0, 0]);
    assert_eq!((conn.inbuf.capacity(), conn.out.capacity()), (0, 0));
}

#[test]
fn sys_topics_are_told_on_their_bytes() {
    for t in ["$SYS", "$SYS/", "$SYS/broker/uptime"] {
        assert!(super::is_sys(t.as_bytes()), "{t}");
    }
    for t in ["", "$SY", "$SYSTEM", "$SYSx/a", "a/$SYS", "$sys/a", "SYS/a"] {
        assert!(!super::is_sys(t.as_bytes()), "{t}");
    }
}

#[test]
fn a_connection_stays_small() {
    // One per client, idle or not, inside its runtime task: rare parts (enhanced
    // authentication, topic aliases) are boxed.
    let size = size_of::<ServerConnection>();
    assert!(size <= 592, "ServerConnection is {size} bytes");
}
