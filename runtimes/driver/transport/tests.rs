//! The transport machines against each other over in-memory buffers, with certificates made
//! by the test (rcgen).

use std::future::Future;

use super::*;

/// Moves bytes between a client and a server link until neither has any to send; returns the
/// MQTT bytes each side received and whether each is still open. `chunk` cuts every transfer
/// into pieces of that size (1 = byte by byte).
fn pump(
    client: &mut Link,
    server: &mut Link,
    chunk: usize,
) -> Result<(Vec<u8>, Vec<u8>), TransportError> {
    let (mut to_client, mut to_server) = (Vec::new(), Vec::new());
    for _ in 0..64 {
        let c = client.take_wire();
        let s = server.take_wire();
        if c.is_empty() && s.is_empty() {
            return Ok((to_client, to_server));
        }
        for piece in c.chunks(chunk.max(1)) {
            server.input(piece, &mut to_server)?;
        }
        for piece in s.chunks(chunk.max(1)) {
            client.input(piece, &mut to_client)?;
        }
    }
    panic!("the links never went quiet");
}

#[test]
fn urls_name_scheme_host_port_and_path() {
    let e = Endpoint::parse("mqtts://broker.example.com").unwrap();
    assert_eq!(
        (e.scheme(), e.host(), e.port(), e.addr()),
        (Scheme::Mqtts, "broker.example.com", 8883, None)
    );
    let e = Endpoint::parse("ws://localhost:8080").unwrap();
    assert_eq!(
        (e.scheme(), e.port(), e.path.as_str()),
        (Scheme::Ws, 8080, "/mqtt")
    );
    let e = Endpoint::parse("wss://h/custom/path").unwrap();
    assert_eq!((e.port(), e.path.as_str()), (443, "/custom/path"));
    let e = Endpoint::parse("mqtt://[::1]:1884").unwrap();
    assert_eq!(e.addr(), Some("[::1]:1884".parse().unwrap()));
    assert_eq!(e.to_string(), "mqtt://[::1]:1884");
    let e = Endpoint::parse("tcp://127.0.0.1").unwrap();
    assert_eq!(e.addr(), Some("127.0.0.1:1883".parse().unwrap()));
    for bad in [
        "http://h",
        "h:1883",
        "mqtt://",
        "mqtt://user:pw@h",
        "mqtt://h:99999",
    ] {
        assert!(
            matches!(Endpoint::parse(bad), Err(TransportError::Url { .. })),
            "{bad} was taken"
        );
    }
}

#[test]
fn a_host_name_is_resolved_on_every_connect() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let connector = Endpoint::parse("mqtt://broker.example:1883")
        .unwrap()
        .connector()
        .unwrap();
    let asked = AtomicUsize::new(0);
    let mut got = Vec::new();
    for moved_to in ["10.0.0.1", "10.0.0.2"] {
        let resolve = |host: String, port: u16| {
            assert_eq!((host.as_str(), port), ("broker.example", 1883));
            asked.fetch_add(1, Ordering::Relaxed);
            let a: SocketAddr = format!("{moved_to}:{port}").parse().unwrap();
            std::future::ready(Ok(vec![a]))
        };
        let fut = std::pin::pin!(connector.addrs(resolve));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let std::task::Poll::Ready(addrs) = fut.poll(&mut cx) else {
            panic!("pending")
        };
        got.push(addrs.unwrap()[0]);
    }
    // Asked twice, and the broker that moved is found at its new address.
    assert_eq!(asked.load(Ordering::Relaxed), 2);
    assert_eq!(got[1], "10.0.0.2:1883".parse().unwrap());
    // An address needs no resolver at all.
    let direct = Endpoint::from("127.0.0.1:1".parse::<SocketAddr>().unwrap())
        .connector()
        .unwrap();
    let fut = std::pin::pin!(direct.addrs(|_, _| async { panic!("resolved an address") }));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(matches!(fut.poll(&mut cx), std::task::Poll::Ready(Ok(a)) if a.len() == 1));
}

#[cfg(feature = "websocket")]
mod websocket {
    use super::*;

    fn ws_pair() -> (Link, Link) {
        let client = Endpoint::parse("ws://localhost:8080/mqtt").unwrap();
        let client = client.connector().unwrap().link().unwrap().unwrap();
        let server = ListenerConfig {
            protocol: Protocol::WebSockets,
            ..ListenerConfig::plain("127.0.0.1:0".parse().unwrap())
        };
        let server = server.acceptor().unwrap().link().unwrap().unwrap();
        (client, server)
    }

    #[test]
    fn websocket_upgrade_then_packets_both_ways() {
        let (mut c, mut s) = ws_pair();
        assert!(c.is_handshaking() && s.is_handshaking());
        // Sent before the upgrade completes: held, then delivered.
        c.send(b"\x10\x02ab").unwrap();
        let (to_c, to_s) = pump(&mut c, &mut s, 7).unwrap();
        assert!(!c.is_handshaking() && !s.is_handshaking());
        assert_eq!(to_s, b"\x10\x02ab");
        assert!(to_c.is_empty());
        s.send(b"\x20\x02\x00\x00").unwrap();
        let (to_c, _) = pump(&mut c, &mut s, 1).unwrap();
        assert_eq!(to_c, b"\x20\x02\x00\x00");
    }

    #[test]
    fn a_packet_may_span_messages_and_a_message_hold_several() {
        let (mut c, mut s) = ws_pair();
        pump(&mut c, &mut s, 1024).unwrap();
        // One packet in three messages.
        for part in [&b"\x30\x05"[..], b"\x00\x01t", b"xy"] {
            c.send(part).unwrap();
        }
        // Two packets in one message.
        c.send(b"\xc0\x00\xc0\x00").unwrap();
        let (_, to_s) = pump(&mut c, &mut s, 3).unwrap();
        assert_eq!(to_s, b"\x30\x05\x00\x01txy\xc0\x00\xc0\x00");
    }

    #[test]
    fn the_server_picks_mqtt_and_accepts_mqttv31() {
        for (offered, chosen) in [("mqttv3.1", "mqttv3.1"), ("foo, mqtt", "mqtt")] {
            let mut s = ListenerConfig {
                protocol: Protocol::WebSockets,
                ..ListenerConfig::plain("127.0.0.1:0".parse().unwrap())
            }
            .acceptor()
            .unwrap()
            .link()
            .unwrap()
            .unwrap();
            let req = format!(
                "GET /mqtt HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Protocol: {offered}\r\n\r\n"
            );
            let mut app = Vec::new();
            assert!(s.input(req.as_bytes(), &mut app).unwrap());
            let answer = String::from_utf8(s.take_wire()).unwrap();
            assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
            assert!(
                answer.contains(&format!("sec-websocket-protocol: {chosen}\r\n")),
                "{answer}"
            );
        }
    }

    fn refused(request: &[u8]) -> (TransportError, String) {
        let (_, mut s) = ws_pair();
        let mut app = Vec::new();
        let e = s.input(request, &mut app).unwrap_err();
        assert!(app.is_empty());
        // Refused for good: nothing more is taken.
        assert!(!s.input(b"GET / HTTP/1.1\r\n\r\n", &mut app).unwrap());
        (e, String::from_utf8_lossy(&s.take_wire()).into_owned())
    }

    #[test]
    fn an_upgrade_without_the_mqtt_subprotocol_is_refused_with_400() {
        let (e, answer) = refused(
            b"GET /mqtt HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Protocol: chat\r\n\r\n",
        );
        assert!(
            e.to_string().contains("without the mqtt subprotocol"),
            "{e}"
        );
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }

    #[test]
    fn mqtt_on_a_websocket_port_is_refused() {
        // A CONNECT where an HTTP request belongs.
        let (e, answer) = refused(b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04abcd");
        assert!(matches!(e, TransportError::WebSocket(_)), "{e}");
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }

    #[test]
    fn a_plain_http_request_is_refused() {
        let (e, answer) = refused(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(matches!(e, TransportError::WebSocket(_)), "{e}");
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }

    #[test]
    fn an_endless_upgrade_request_is_cut_off() {
        let (_, mut s) = ws_pair();
        let mut app = Vec::new();
        let line = b"GET / HTTP/1.1\r\n";
        assert!(s.input(line, &mut app).unwrap());
        let mut failed = None;
        for _ in 0..1000 {
            if let Err(e) = s.input(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", &mut app) {
                failed = Some(e);
                break;
            }
        }
        // httparse gives up at its header count, or the size cap does: either way refused.
        assert!(failed.is_some());
    }

    #[test]
    fn a_text_frame_closes_the_connection() {
        // [MQTT-6.0.0-1]: binary frames only.
        let (mut c, mut s) = ws_pair();
        pump(&mut c, &mut s, 4096).unwrap();
        // A masked text frame "hi" from the client.
        let frame = [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
        let mut app = Vec::new();
        let e = s.input(&frame, &mut app).unwrap_err();
        assert!(e.to_string().contains("text frame"), "{e}");
    }

    #[test]
    fn a_close_frame_ends_the_stream() {
        let (mut c, mut s) = ws_pair();
        pump(&mut c, &mut s, 4096).unwrap();
        c.close();
        let wire = c.take_wire();
        let mut app = Vec::new();
        assert!(!s.input(&wire, &mut app).unwrap());
        assert!(app.is_empty());
    }

    #[test]
    fn garbage_after_the_upgrade_is_a_protocol_error() {
        let (mut c, mut s) = ws_pair();
        pump(&mut c, &mut s, 4096).unwrap();
        // An unmasked frame from a client, with reserved bits set.
        let mut app = Vec::new();
        assert!(s.input(&[0xff, 0x05, 1, 2, 3, 4, 5], &mut app).is_err());
    }
}

#[cfg(feature = "tls")]
#[path = "../../../tests/support/pki.rs"]
pub(crate) mod certs;

#[cfg(feature = "tls")]
mod tls {
    use super::certs::{make, Pki};
    use super::*;

    fn listener(pki: &Pki, server: &str, cafile: bool, require: bool) -> ListenerConfig {
        ListenerConfig {
            tls: Some(ServerTls {
                certfile: pki.path(&format!("{server}.pem")),
                keyfile: pki.path(&format!("{server}.key")),
                cafile: cafile.then(|| pki.path("ca.pem")),
                require_certificate: require,
            }),
            ..ListenerConfig::plain("127.0.0.1:0".parse().unwrap())
        }
    }

    fn client(url: &str, options: TlsOptions) -> Link {
        let e = Endpoint::parse(url).unwrap().tls(options);
        e.connector().unwrap().link().unwrap().unwrap()
    }

    fn trusting(pki: &Pki) -> TlsOptions {
        TlsOptions::new()
            .roots(Roots::None)
            .ca_file(pki.path("ca.pem"))
    }

    #[test]
    fn tls_handshake_then_data_both_ways() {
        let pki = make("hs");
        let mut s = listener(&pki, "server", false, false)
            .acceptor()
            .unwrap()
            .link()
            .unwrap()
            .unwrap();
        let mut c = client("mqtts://localhost", trusting(&pki));
        // The CONNECT waits inside rustls until the handshake completes.
        c.send(b"\x10\x02ab").unwrap();
        let (to_c, to_s) = pump(&mut c, &mut s, 1).unwrap();
        assert!(!c.is_handshaking() && !s.is_handshaking());
        assert_eq!(to_s, b"\x10\x02ab");
        assert!(to_c.is_empty());
        s.send(b"\x20\x02\x00\x00").unwrap();
        let (to_c, _) = pump(&mut c, &mut s, 100).unwrap();
        assert_eq!(to_c, b"\x20\x02\x00\x00");
        // No client certificate: no identity.
        assert_eq!(s.identity(), None);
        // close_notify ends the stream.
        c.close();
        let mut app = Vec::new();
        assert!(!s.input(&c.take_wire(), &mut app).unwrap());
    }

    #[test]
    fn mutual_tls_hands_the_client_certificate_name_over() {
        let pki = make("mtls");
        let mut s = listener(&pki, "server", true, true)
            .acceptor()
            .unwrap()
            .link()
            .unwrap()
            .unwrap();
        let options = trusting(&pki).client_auth(pki.path("client.pem"), pki.path("client.key"));
        let mut c = client("mqtts://127.0.0.1:8883", options);
        c.send(b"hello").unwrap();
        let (_, to_s) = pump(&mut c, &mut s, 512).unwrap();
        assert_eq!(to_s, b"hello");
        assert_eq!(s.identity().as_deref(), Some("device-7"));
    }

    /// Runs a handshake that must fail; returns the client's and the server's errors.
    fn failing(
        pki: &Pki,
        server: &str,
        require: bool,
        url: &str,
        options: TlsOptions,
    ) -> (String, String) {
        let mut s = listener(pki, server, true, require)
            .acceptor()
            .unwrap()
            .link()
            .unwrap()
            .unwrap();
        let mut c = client(url, options);
        let (mut ce, mut se) = (None, None);
        let (mut to_c, mut to_s) = (Vec::new(), Vec::new());
        for _ in 0..16 {
            let (cw, sw) = (c.take_wire(), s.take_wire());
            if cw.is_empty() && sw.is_empty() {
                break;
            }
            if let Err(e) = s.input(&cw, &mut to_s) {
                se.get_or_insert(e.to_string());
            }
            if let Err(e) = c.input(&sw, &mut to_c) {
                ce.get_or_insert(e.to_string());
            }
        }
        assert!(to_s.is_empty() && to_c.is_empty());
        (ce.unwrap_or_default(), se.unwrap_or_default())
    }

    #[test]
    fn a_certificate_from_an_unknown_ca_is_refused_by_name() {
        let pki = make("ca");
        let options = TlsOptions::new()
            .roots(Roots::None)
            .ca_file(pki.path("other-ca.pem"));
        let (c, s) = failing(&pki, "server", false, "mqtts://localhost", options);
        assert!(c.contains("UnknownIssuer"), "{c}");
        assert!(s.contains("alert"), "{s}");
    }

    #[test]
    fn an_expired_certificate_is_refused_by_name() {
        let pki = make("exp");
        let (c, _) = failing(&pki, "expired", false, "mqtts://localhost", trusting(&pki));
        assert!(c.contains("expired"), "{c}");
    }

    #[test]
    fn a_certificate_for_another_name_is_refused_by_name() {
        let pki = make("name");
        let (c, _) = failing(
            &pki,
            "wrong-name",
            false,
            "mqtts://localhost",
            trusting(&pki),
        );
        assert!(c.contains("not valid for name"), "{c}");
    }

    #[test]
    fn a_missing_client_certificate_is_refused_where_required() {
        let pki = make("req");
        let (_, s) = failing(&pki, "server", true, "mqtts://localhost", trusting(&pki));
        assert!(s.contains("peer sent no certificates"), "{s}");
    }

    #[test]
    fn skipping_verification_accepts_any_certificate() {
        let pki = make("skip");
        let mut s = listener(&pki, "wrong-name", false, false)
            .acceptor()
            .unwrap()
            .link()
            .unwrap()
            .unwrap();
        let mut c = client(
            "mqtts://localhost",
            TlsOptions::new().dangerous_skip_verification(),
        );
        c.send(b"x").unwrap();
        assert_eq!(pump(&mut c, &mut s, 4096).unwrap().1, b"x");
    }

    #[test]
    fn plain_mqtt_and_garbage_on_a_tls_port_are_refused() {
        let pki = make("plain");
        let acceptor = listener(&pki, "server", false, false).acceptor().unwrap();
        for junk in [
            &b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04abcd"[..],
            b"GET / HTTP/1.1\r\n\r\n",
            &[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5],
        ] {
            let mut s = acceptor.link().unwrap().unwrap();
            let mut app = Vec::new();
            let e = s.input(junk, &mut app).unwrap_err();
            assert!(matches!(e, TransportError::Tls(_)), "{e}");
            assert!(app.is_empty());
            // Refused for good.
            assert!(!s.input(junk, &mut app).unwrap());
        }
    }

    #[test]
    fn garbage_during_the_handshake_is_refused() {
        let pki = make("mid");
        let mut s = listener(&pki, "server", false, false)
            .acceptor()
            .unwrap()
            .link()
            .unwrap()
            .unwrap();
        let mut c = client("mqtts://localhost", trusting(&pki));
        let hello = c.take_wire();
        let mut app = Vec::new();
        assert!(s.input(&hello, &mut app).unwrap());
        assert!(s
            .input(&[0x17, 0x03, 0x03, 0x00, 0x03, 9, 9, 9], &mut app)
            .is_err());
    }

    #[test]
    fn unusable_files_are_named_with_the_reason() {
        let pki = make("files");
        let mut l = listener(&pki, "server", true, true);
        let tls = l.tls.as_mut().unwrap();
        tls.keyfile = pki.path("client.key");
        let e = l.acceptor().unwrap_err().to_string();
        assert!(e.contains("server.pem") && e.contains("client.key"), "{e}");
        let tls = l.tls.as_mut().unwrap();
        tls.keyfile = pki.path("missing.key");
        let e = l.acceptor().unwrap_err().to_string();
        assert!(e.contains("missing.key"), "{e}");
        let tls = l.tls.as_mut().unwrap();
        tls.keyfile = pki.path("server.pem");
        let e = l.acceptor().unwrap_err().to_string();
        assert!(
            e.contains("server.pem") && e.contains("no private key"),
            "{e}"
        );
        let e = Endpoint::parse("mqtts://h")
            .unwrap()
            .tls(TlsOptions::new().ca_file(pki.path("nope.pem")))
            .connector()
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope.pem"), "{e}");
    }

    #[cfg(feature = "websocket")]
    #[test]
    fn websocket_over_tls() {
        let pki = make("wss");
        let mut l = listener(&pki, "server", false, false);
        l.protocol = Protocol::WebSockets;
        let mut s = l.acceptor().unwrap().link().unwrap().unwrap();
        let mut c = client("wss://localhost:8081/mqtt", trusting(&pki));
        c.send(b"\x10\x02ab").unwrap();
        let (_, to_s) = pump(&mut c, &mut s, 5).unwrap();
        assert_eq!(to_s, b"\x10\x02ab");
        s.send(b"\x20\x02\x00\x00").unwrap();
        s.send(b"\xd0\x00").unwrap();
        let (to_c, _) = pump(&mut c, &mut s, 5).unwrap();
        assert_eq!(to_c, b"\x20\x02\x00\x00\xd0\x00");
    }
}

#[cfg(feature = "tls")]
mod identity {
    use bytes::BytesMut;

    use super::certs::make;
    use super::*;
    use crate::codec::{encode, Connect, Decoder, Packet};
    use crate::{ByteStr, ProtocolVersion};

    fn connect_bytes(v: ProtocolVersion, user: Option<&str>) -> Vec<u8> {
        let mut c = Connect::new(v, ByteStr::from_static("dev"));
        c.username = user.map(|u| ByteStr::try_from(u).unwrap());
        c.password = Some(bytes::Bytes::from_static(b"pw"));
        let mut b = BytesMut::new();
        encode(&Packet::Connect(Box::new(c)), v, &mut b).unwrap();
        b.to_vec()
    }

    fn server(pki: &certs::Pki, require: bool) -> Link {
        ListenerConfig {
            tls: Some(ServerTls {
                certfile: pki.path("server.pem"),
                keyfile: pki.path("server.key"),
                cafile: Some(pki.path("ca.pem")),
                require_certificate: require,
            }),
            use_identity_as_username: true,
            ..ListenerConfig::plain("127.0.0.1:0".parse().unwrap())
        }
        .acceptor()
        .unwrap()
        .link()
        .unwrap()
        .unwrap()
    }

    #[test]
    fn the_certificate_name_is_handed_over_once_before_the_connect() {
        let pki = make("identity");
        for v in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            let mut s = server(&pki, true);
            let options = TlsOptions::new()
                .roots(Roots::None)
                .ca_file(pki.path("ca.pem"))
                .client_auth(pki.path("client.pem"), pki.path("client.key"));
            let e = Endpoint::parse("mqtts://localhost").unwrap().tls(options);
            let mut c = e.connector().unwrap().link().unwrap().unwrap();
            // Nothing to hand over before the handshake.
            assert_eq!(s.take_identity(), None);
            // The CONNECT in two pieces, a PINGREQ behind it: the bytes pass unchanged.
            let connect = connect_bytes(v, Some("mallory"));
            c.send(&connect[..5]).unwrap();
            c.send(&connect[5..]).unwrap();
            c.send(b"\xc0\x00").unwrap();
            let (_, to_s) = pump(&mut c, &mut s, 300).unwrap();
            let mut buf = BytesMut::from(&to_s[..]);
            let Some(Packet::Connect(got)) = Decoder::new(v).decode(&mut buf).unwrap() else {
                panic!("no CONNECT");
            };
            assert_eq!(got.username.as_deref(), Some("mallory"));
            assert_eq!(&buf[..], b"\xc0\x00");
            assert_eq!(s.take_identity().as_deref(), Some("device-7"));
            assert_eq!(s.take_identity(), None, "handed over once");
        }
    }

    #[test]
    fn without_a_certificate_the_identity_listener_refuses() {
        let pki = make("identity-none");
        let mut s = server(&pki, false);
        let options = TlsOptions::new()
            .roots(Roots::None)
            .ca_file(pki.path("ca.pem"));
        let e = Endpoint::parse("mqtts://localhost").unwrap().tls(options);
        let mut c = e.connector().unwrap().link().unwrap().unwrap();
        c.send(&connect_bytes(ProtocolVersion::V5, Some("mallory")))
            .unwrap();
        let e = pump(&mut c, &mut s, 4096).unwrap_err();
        assert!(matches!(e, TransportError::Identity(_)), "{e}");
    }
}
