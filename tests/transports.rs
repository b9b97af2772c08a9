//! TLS, WebSocket and host names end to end on 127.0.0.1: our client on every runtime against
//! our broker's listeners (mqtts://, ws://, wss://, mutual TLS), and every bad case (wrong CA,
//! expired certificate, wrong host name, missing client certificate, plain client on a TLS
//! port, junk on a WebSocket port). Certificates are made by the test (rcgen).

// Real sockets run on real time.
#![allow(clippy::disallowed_methods)]

use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tinymqtt::broker::{BrokerConfig, Router as Core};
use tinymqtt::client::{ClientConfig, Event};
use tinymqtt::codec::{Publish, Subscription};
use tinymqtt::runtimes::driver::transport::{
    Endpoint, ListenerConfig, Protocol, Roots, ServerTls, TlsOptions, TransportError,
};
use tinymqtt::runtimes::driver::{Client, Runtime};
use tinymqtt::runtimes::{BrokerHandle, BrokerOptions, Error, Events};
use tinymqtt::{ByteStr, ProtocolVersion, QoS, TopicFilter, TopicName};

#[path = "support/pki.rs"]
mod pki;

use pki::Pki;

const WAIT: Duration = Duration::from_secs(10);

/// Our broker (tokio) with a TLS, a mutual-TLS, a WebSocket and a WebSocket-over-TLS listener.
struct Brokers {
    mqtts: u16,
    mtls: u16,
    ws: u16,
    wss: u16,
    plain: u16,
    stop: BrokerHandle,
    /// What `on_transport_error` heard.
    errors: Arc<Mutex<Vec<String>>>,
    _rt: tokio::runtime::Runtime,
}

impl Drop for Brokers {
    fn drop(&mut self) {
        self.stop.shutdown();
    }
}

fn tls(pki: &Pki, server: &str, require: bool) -> Option<ServerTls> {
    Some(ServerTls {
        certfile: pki.path(&format!("{server}.pem")),
        keyfile: pki.path(&format!("{server}.key")),
        cafile: Some(pki.path("ca.pem")),
        require_certificate: require,
    })
}

fn listeners(pki: &Pki, server: &str) -> Vec<ListenerConfig> {
    let any = "127.0.0.1:0".parse().unwrap();
    let plain = ListenerConfig::plain(any);
    vec![
        ListenerConfig {
            tls: tls(pki, server, false),
            ..plain.clone()
        },
        ListenerConfig {
            tls: tls(pki, server, true),
            ..plain.clone()
        },
        ListenerConfig {
            protocol: Protocol::WebSockets,
            ..plain.clone()
        },
        ListenerConfig {
            protocol: Protocol::WebSockets,
            tls: tls(pki, server, false),
            ..plain.clone()
        },
        plain,
    ]
}

fn brokers(pki: &Pki, server: &str) -> Brokers {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let heard = errors.clone();
    let options = BrokerOptions::default().with_on_transport_error(Some(Arc::new(
        move |e: &TransportError| heard.lock().unwrap().push(e.to_string()),
    )));
    let configs = listeners(pki, server);
    let server = rt
        .block_on(tinymqtt::runtimes::tokio::Server::bind_listeners(
            Core::new(BrokerConfig::default()),
            options,
            &configs,
        ))
        .unwrap();
    let ports: Vec<u16> = server.local_addrs().iter().map(SocketAddr::port).collect();
    let stop = server.handle();
    rt.spawn(server.run());
    Brokers {
        mqtts: ports[0],
        mtls: ports[1],
        ws: ports[2],
        wss: ports[3],
        plain: ports[4],
        stop,
        errors,
        _rt: rt,
    }
}

fn config(id: &str) -> ClientConfig {
    let mut c = ClientConfig::new(ProtocolVersion::V5, ByteStr::try_from(id).unwrap());
    c.reconnect = None;
    c.connect_timeout = Duration::from_secs(5);
    c
}

fn trusting(pki: &Pki) -> TlsOptions {
    TlsOptions::new()
        .roots(Roots::None)
        .ca_file(pki.path("ca.pem"))
}

fn endpoint(url: &str, options: TlsOptions) -> Endpoint {
    Endpoint::parse(url).unwrap().tls(options)
}

/// The first message event, within [`WAIT`].
async fn message<R: Runtime>(events: &Events) -> Publish {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let next = futures_lite::future::or(async { events.recv().await.map(Some) }, async {
            R::sleep_until(deadline).await;
            Some(None)
        });
        match next.await.flatten() {
            Some(Event::Message(m)) => return m.publish,
            Some(_) => continue,
            None => panic!("no message within {WAIT:?}"),
        }
    }
}

/// Subscribes and publishes to itself over `endpoint`: QoS 1 both ways.
async fn echo<R: Runtime>(endpoint: Endpoint, id: &str) {
    let (client, events) = Client::<R>::connect_to(endpoint, config(id)).await.unwrap();
    let topic = format!("t/{id}");
    let filter = TopicFilter::new(&topic).unwrap();
    let ack = client
        .subscribe(vec![Subscription::new(filter, QoS::AtLeastOnce)])
        .await
        .unwrap();
    assert_eq!(ack.reason_codes.len(), 1);
    let mut p = Publish::new(TopicName::new(&topic).unwrap(), vec![7u8; 3000]);
    p.qos = QoS::AtLeastOnce;
    client.publish(p).await.unwrap().ack().await.unwrap();
    let got = message::<R>(&events).await;
    assert_eq!(&*got.topic, topic.as_str());
    assert_eq!(got.payload.len(), 3000);
    client.disconnect().await.unwrap();
}

/// Every transport with `R`'s client.
async fn every_transport<R: Runtime>(b: &Brokers, pki: &Pki, name: &str) {
    let localhost =
        |scheme: &str, port: u16, path: &str| format!("{scheme}://localhost:{port}{path}");
    echo::<R>(
        endpoint(&localhost("mqtts", b.mqtts, ""), trusting(pki)),
        &format!("{name}-tls"),
    )
    .await;
    let mutual = trusting(pki).client_auth(pki.path("client.pem"), pki.path("client.key"));
    echo::<R>(
        endpoint(&localhost("mqtts", b.mtls, ""), mutual),
        &format!("{name}-mtls"),
    )
    .await;
    echo::<R>(
        endpoint(&localhost("ws", b.ws, "/mqtt"), TlsOptions::new()),
        &format!("{name}-ws"),
    )
    .await;
    echo::<R>(
        endpoint(&localhost("wss", b.wss, "/mqtt"), trusting(pki)),
        &format!("{name}-wss"),
    )
    .await;
}

fn block_on_tokio<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn tokio_client_over_tls_mutual_tls_ws_and_wss_by_host_name() {
    let pki = pki::make("rt-tokio");
    let b = brokers(&pki, "server");
    block_on_tokio(every_transport::<tinymqtt::runtimes::tokio::Tokio>(
        &b, &pki, "tokio",
    ));
}

#[test]
fn smol_client_over_tls_mutual_tls_ws_and_wss_by_host_name() {
    let pki = pki::make("rt-smol");
    let b = brokers(&pki, "server");
    smol::block_on(every_transport::<tinymqtt::runtimes::smol::Smol>(
        &b, &pki, "smol",
    ));
}

#[test]
fn async_std_client_over_tls_mutual_tls_ws_and_wss_by_host_name() {
    let pki = pki::make("rt-async-std");
    let b = brokers(&pki, "server");
    async_std::task::block_on(every_transport::<tinymqtt::runtimes::async_std::AsyncStd>(
        &b, &pki, "astd",
    ));
}

#[test]
fn blocking_client_over_tls_mutual_tls_ws_and_wss_by_host_name() {
    use tinymqtt::runtimes::blocking::Client as Blocking;
    let pki = pki::make("rt-blocking");
    let b = brokers(&pki, "server");
    let mutual = trusting(&pki).client_auth(pki.path("client.pem"), pki.path("client.key"));
    for (i, (url, options)) in [
        (format!("mqtts://localhost:{}", b.mqtts), trusting(&pki)),
        (format!("mqtts://localhost:{}", b.mtls), mutual),
        (format!("ws://localhost:{}/mqtt", b.ws), TlsOptions::new()),
        (format!("wss://localhost:{}/mqtt", b.wss), trusting(&pki)),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("blocking-{i}");
        let (client, events) = Blocking::connect_to(endpoint(&url, options), config(&id)).unwrap();
        let topic = format!("t/{id}");
        let filter = TopicFilter::new(&topic).unwrap();
        client
            .subscribe(vec![Subscription::new(filter, QoS::AtLeastOnce)])
            .unwrap();
        let mut p = Publish::new(TopicName::new(&topic).unwrap(), "over the wire");
        p.qos = QoS::AtLeastOnce;
        client.publish(p).unwrap().wait().unwrap();
        let got = events
            .filter_map(|e| match e {
                Event::Message(m) => Some(m.publish),
                _ => None,
            })
            .next()
            .unwrap();
        assert_eq!(&got.payload[..], b"over the wire", "{url}");
        client.disconnect().unwrap();
    }
}

#[test]
fn the_blocking_broker_serves_tls_and_websocket_too() {
    use tinymqtt::runtimes::blocking::{Client as Blocking, Server};
    let pki = pki::make("blocking-broker");
    let server = Server::bind_listeners(
        Core::new(BrokerConfig::default()),
        BrokerOptions::default(),
        &listeners(&pki, "server"),
    )
    .unwrap();
    let ports: Vec<u16> = server.local_addrs().iter().map(SocketAddr::port).collect();
    let stop = server.handle();
    let served = std::thread::spawn(move || server.run());
    for url in [
        format!("mqtts://localhost:{}", ports[0]),
        format!("wss://127.0.0.1:{}/mqtt", ports[3]),
    ] {
        let (client, events) =
            Blocking::connect_to(endpoint(&url, trusting(&pki)), config("bb")).unwrap();
        let filter = TopicFilter::new("bb").unwrap();
        client
            .subscribe(vec![Subscription::new(filter, QoS::AtMostOnce)])
            .unwrap();
        // QoS 0: the Pending completes at once.
        let _sent = client
            .publish(Publish::new(TopicName::new("bb").unwrap(), "x"))
            .unwrap();
        assert!(
            events.into_iter().any(|e| matches!(e, Event::Message(_))),
            "{url}"
        );
        client.disconnect().unwrap();
    }
    // A plain client on the TLS port is refused without disturbing the broker.
    let mut s = TcpStream::connect(("127.0.0.1", ports[0])).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04abcd")
        .unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(
        rest.is_empty() || rest[0] == 0x15,
        "a TLS alert or nothing: {rest:?}"
    );
    stop.shutdown();
    served.join().unwrap();
}

/// The error of a first connect that must fail.
fn refused(url: &str, options: TlsOptions) -> Error {
    use tinymqtt::runtimes::blocking::Client as Blocking;
    match Blocking::connect_to(endpoint(url, options), config("refused")) {
        Ok(_) => panic!("{url} connected"),
        Err(e) => e,
    }
}

#[test]
fn rejected_certificates_name_their_reason() {
    let pki = pki::make("bad");
    let good = brokers(&pki, "server");
    let url = format!("mqtts://localhost:{}", good.mqtts);
    let other = TlsOptions::new()
        .roots(Roots::None)
        .ca_file(pki.path("other-ca.pem"));
    let e = refused(&url, other);
    assert!(
        matches!(e, Error::Transport(TransportError::Tls(_)))
            && e.to_string().contains("UnknownIssuer"),
        "{e}"
    );
    // Mozilla's roots do not know a private CA either.
    let e = refused(&url, TlsOptions::new());
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    // A client certificate missing where one is required: the server's alert.
    let e = refused(&format!("mqtts://localhost:{}", good.mtls), trusting(&pki));
    assert!(matches!(e, Error::Transport(_)), "{e}");
    assert!(
        e.to_string().contains("CertificateRequired") || e.to_string().contains("alert"),
        "{e}"
    );
    let expired = brokers(&pki, "expired");
    let e = refused(
        &format!("mqtts://localhost:{}", expired.mqtts),
        trusting(&pki),
    );
    assert!(e.to_string().contains("expired"), "{e}");
    let wrong = brokers(&pki, "wrong-name");
    let e = refused(
        &format!("mqtts://localhost:{}", wrong.mqtts),
        trusting(&pki),
    );
    assert!(e.to_string().contains("not valid for name"), "{e}");
    // Only the explicit, dangerous switch lets such a broker in.
    let skip = TlsOptions::new().dangerous_skip_verification();
    block_on_tokio(echo::<tinymqtt::runtimes::tokio::Tokio>(
        endpoint(&format!("mqtts://localhost:{}", wrong.mqtts), skip),
        "skip",
    ));
    // The brokers logged each refusal.
    let heard = good.errors.lock().unwrap().join("\n");
    assert!(heard.contains("tls"), "{heard}");
}

#[test]
fn connect_failures_say_why() {
    let e = refused("mqtt://no-such-host.invalid:1883", TlsOptions::new());
    assert!(
        matches!(e, Error::Transport(TransportError::Resolve { .. })),
        "{e}"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = refused(&format!("mqtt://127.0.0.1:{port}"), TlsOptions::new());
    assert!(
        matches!(e, Error::Transport(TransportError::Connect { .. })),
        "{e}"
    );
}

#[test]
fn junk_on_the_websocket_port_is_refused_and_others_go_on() {
    let pki = pki::make("junk");
    let b = brokers(&pki, "server");
    for junk in [
        &b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04abcd"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /mqtt HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", b.ws)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(junk).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
    let heard = b.errors.lock().unwrap().join("\n");
    assert!(heard.contains("without the mqtt subprotocol"), "{heard}");
    // HTTP on the plain MQTT port: not a CONNECT, the connection is closed without an answer.
    let mut s = TcpStream::connect(("127.0.0.1", b.plain)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(answer.is_empty(), "{answer:?}");
    // The broker still serves.
    block_on_tokio(echo::<tinymqtt::runtimes::tokio::Tokio>(
        endpoint(&format!("ws://localhost:{}", b.ws), TlsOptions::new()),
        "after-junk",
    ));
}

#[test]
fn a_stalled_tls_handshake_is_cut_off_by_the_connect_timeout() {
    let pki = pki::make("stall");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let config = BrokerConfig::default().with_connect_timeout(Duration::from_millis(300));
    let configs = [ListenerConfig {
        tls: tls(&pki, "server", false),
        ..ListenerConfig::plain("127.0.0.1:0".parse().unwrap())
    }];
    let server = rt
        .block_on(tinymqtt::runtimes::tokio::Server::bind_listeners(
            Core::new(config),
            BrokerOptions::default(),
            &configs,
        ))
        .unwrap();
    let port = server.local_addrs()[0].port();
    let stop = server.handle();
    rt.spawn(server.run());
    // The first bytes of a TLS record, then nothing.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(&[0x16, 0x03, 0x01, 0x02]).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
    stop.shutdown();
}

#[test]
fn each_failed_reconnect_keeps_its_real_cause() {
    use tinymqtt::client::Backoff;
    use tinymqtt::runtimes::tokio::{Client as TokioClient, Server};
    let pki = pki::make("reconnect");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bind = |server: &str, addr: SocketAddr| {
        let configs = [ListenerConfig {
            tls: tls(&pki, server, false),
            ..ListenerConfig::plain(addr)
        }];
        let b = rt
            .block_on(Server::bind_listeners(
                Core::new(BrokerConfig::default()),
                BrokerOptions::default(),
                &configs,
            ))
            .unwrap();
        let (addr, stop) = (b.local_addrs()[0], b.handle());
        rt.spawn(b.run());
        (addr, stop)
    };
    let (addr, stop) = bind("server", "127.0.0.1:0".parse().unwrap());
    let mut c = config("reconnecting");
    c.reconnect = Some(Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(100),
        jitter_percent: 0,
        seed: 1,
    });
    let url = format!("mqtts://localhost:{}", addr.port());
    let (client, events) = rt
        .block_on(TokioClient::connect_to(endpoint(&url, trusting(&pki)), c))
        .unwrap();
    // The broker goes; one with an expired certificate takes its port.
    stop.shutdown();
    let closed = rt.block_on(async {
        loop {
            match events.recv().await {
                Some(Event::Disconnected { .. }) => return true,
                Some(_) => continue,
                None => return false,
            }
        }
    });
    assert!(closed);
    std::thread::sleep(Duration::from_millis(300));
    let (_, stop2) = bind("expired", addr);
    // The next attempts fail in the TLS handshake, and say so.
    let deadline = std::time::Instant::now() + WAIT;
    let cause = loop {
        match client.take_transport_error() {
            Some(TransportError::Tls(e)) => break e.to_string(),
            _ if std::time::Instant::now() > deadline => panic!("no TLS cause within {WAIT:?}"),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    assert!(cause.contains("expired"), "{cause}");
    stop2.shutdown();
    drop(client);
}
