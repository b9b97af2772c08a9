//! TLS and WebSocket with real peers on 127.0.0.1, certificates made by the test (rcgen):
//! our client on every runtime against Debian's mosquitto with TLS listeners (one requiring a
//! client certificate); mosquitto_pub/mosquitto_sub, paho-mqtt and MQTT.js against the example
//! broker's `[[listener]]` tables (TLS, mutual TLS, WebSocket, WebSocket over TLS); its
//! `--check-config` on unusable certificate files; `reload` of the certificates.
//!
//! Debian's mosquitto 2.0.11 is built with WebSocket support but cannot open a WebSocket
//! listener (it exits with "Unable to start any listening sockets"), so our WebSocket client
//! is tested against our broker, and our WebSocket listener against paho-mqtt and MQTT.js.
//!
//! `make test` installs the peers (apt: mosquitto, mosquitto-clients, nodejs, npm; pip:
//! paho-mqtt; npm: mqtt into tests/interop/node_modules); a missing peer fails the test.

// Real processes run on real time.
#![allow(clippy::disallowed_methods)]

#[path = "support/interop.rs"]
mod peers;
#[path = "support/pki.rs"]
mod pki;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use peers::{example, free_port, line_buffered, run, run_ok, wait_for_port, Peer};
use pki::Pki;
use tinymqtt::client::{ClientConfig, Event};
use tinymqtt::codec::{Publish, Subscription};
use tinymqtt::runtimes::driver::transport::{Endpoint, Roots, TlsOptions};
use tinymqtt::runtimes::Error;
use tinymqtt::{ByteStr, ProtocolVersion, QoS, TopicFilter, TopicName};

/// Debian's mosquitto with a TLS listener and one that requires a client certificate.
struct Mosquitto {
    tls: u16,
    mtls: u16,
    _peer: Peer,
}

fn mosquitto(pki: &Pki) -> Mosquitto {
    let (tls, mtls) = (free_port(), free_port());
    let p = |n: &str| pki.path(n).display().to_string();
    let conf = pki.path("mosquitto.conf");
    let mut f = std::fs::File::create(&conf).unwrap();
    for (port, require) in [(tls, false), (mtls, true)] {
        writeln!(
            f,
            "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {require}",
            p("ca.pem"),
            p("server.pem"),
            p("server.key")
        )
        .unwrap();
    }
    writeln!(
        f,
        "allow_anonymous true\npersistence false\nlog_dest stderr"
    )
    .unwrap();
    drop(f);
    let peer = Peer::spawn("mosquitto", &["-c", conf.to_str().unwrap()]);
    wait_for_port(tls);
    wait_for_port(mtls);
    Mosquitto {
        tls,
        mtls,
        _peer: peer,
    }
}

fn config(id: &str) -> ClientConfig {
    let mut c = ClientConfig::new(ProtocolVersion::V3_1_1, ByteStr::try_from(id).unwrap());
    c.reconnect = None;
    c.connect_timeout = Duration::from_secs(5);
    c
}

fn trusting(pki: &Pki) -> TlsOptions {
    TlsOptions::new()
        .roots(Roots::None)
        .ca_file(pki.path("ca.pem"))
}

/// Subscribes and publishes to itself at QoS 1 (the commands of an async client work from
/// any executor).
macro_rules! echo {
    ($client:expr, $events:expr, $id:expr) => {{
        let topic = format!("t/{}", $id);
        let f = TopicFilter::new(&topic).unwrap();
        futures_lite::future::block_on(
            $client.subscribe(vec![Subscription::new(f, QoS::AtLeastOnce)]),
        )
        .unwrap();
        let mut p = Publish::new(TopicName::new(&topic).unwrap(), "through mosquitto");
        p.qos = QoS::AtLeastOnce;
        let pending = futures_lite::future::block_on($client.publish(p)).unwrap();
        futures_lite::future::block_on(pending.ack()).unwrap();
        let got = loop {
            match futures_lite::future::block_on($events.recv()).expect("events end") {
                Event::Message(m) => break m.publish,
                _ => continue,
            }
        };
        assert_eq!(&got.payload[..], b"through mosquitto");
        futures_lite::future::block_on($client.disconnect()).unwrap();
    }};
}

#[test]
fn our_client_on_every_runtime_against_mosquitto_over_tls_and_mutual_tls() {
    use tinymqtt::runtimes::{async_std, blocking, smol, tokio};
    let pki = pki::make("mosquitto");
    let m = mosquitto(&pki);
    let mutual = trusting(&pki).client_auth(pki.path("client.pem"), pki.path("client.key"));
    for (port, options, kind) in [(m.tls, trusting(&pki), "tls"), (m.mtls, mutual, "mtls")] {
        let url = format!("mqtts://localhost:{port}");
        let e = || Endpoint::parse(&url).unwrap().tls(options.clone());
        let rt = ::tokio::runtime::Runtime::new().unwrap();
        let (c, ev) = rt
            .block_on(tokio::Client::connect_to(
                e(),
                config(&format!("tokio-{kind}")),
            ))
            .unwrap();
        echo!(c, ev, format!("tokio-{kind}"));
        let (c, ev) = ::smol::block_on(smol::Client::connect_to(
            e(),
            config(&format!("smol-{kind}")),
        ))
        .unwrap();
        echo!(c, ev, format!("smol-{kind}"));
        let (c, ev) = ::async_std::task::block_on(async_std::Client::connect_to(
            e(),
            config(&format!("astd-{kind}")),
        ))
        .unwrap();
        echo!(c, ev, format!("astd-{kind}"));
        let (c, ev) = blocking::Client::connect_to(e(), config(&format!("blk-{kind}"))).unwrap();
        let id = format!("blk-{kind}");
        let topic = format!("t/{id}");
        let f = TopicFilter::new(&topic).unwrap();
        c.subscribe(vec![Subscription::new(f, QoS::AtLeastOnce)])
            .unwrap();
        let mut p = Publish::new(TopicName::new(&topic).unwrap(), "through mosquitto");
        p.qos = QoS::AtLeastOnce;
        c.publish(p).unwrap().wait().unwrap();
        assert!(ev.into_iter().any(|e| matches!(e, Event::Message(_))));
        c.disconnect().unwrap();
    }
    // Mosquitto refuses a client without a certificate where one is required, and our
    // client says it was the TLS handshake.
    let url = format!("mqtts://localhost:{}", m.mtls);
    let e = Endpoint::parse(&url).unwrap().tls(trusting(&pki));
    match blocking::Client::connect_to(e, config("no-cert")) {
        Err(Error::Transport(t)) => assert!(t.to_string().contains("tls"), "{t}"),
        other => panic!("connected or failed otherwise: {other:?}"),
    }
    // And a client that trusts another CA refuses mosquitto's certificate, by name.
    let other = TlsOptions::new()
        .roots(Roots::None)
        .ca_file(pki.path("other-ca.pem"));
    let e = Endpoint::parse(&format!("mqtts://localhost:{}", m.tls))
        .unwrap()
        .tls(other);
    match blocking::Client::connect_to(e, config("other-ca")) {
        Err(e) => assert!(e.to_string().contains("UnknownIssuer"), "{e}"),
        Ok(_) => panic!("connected"),
    }
}

/// The example broker with four `[[listener]]` tables: TLS, mutual TLS, WebSocket, WebSocket
/// over TLS; its console on stdin.
struct Ours {
    tls: u16,
    mtls: u16,
    ws: u16,
    wss: u16,
    peer: Peer,
}

fn listener_tables(pki: &Pki, ports: [u16; 4], server: &str) -> String {
    let p = |n: &str| pki.path(n).display().to_string();
    let tls = format!(
        "certfile = {:?}\nkeyfile = {:?}\ncafile = {:?}\n",
        p(&format!("{server}.pem")),
        p(&format!("{server}.key")),
        p("ca.pem")
    );
    format!(
        "[[listener]]\nbind = \"127.0.0.1:{}\"\n{tls}\n\
         [[listener]]\nbind = \"127.0.0.1:{}\"\n{tls}require_certificate = true\n\n\
         [[listener]]\nbind = \"127.0.0.1:{}\"\nprotocol = \"websockets\"\n\n\
         [[listener]]\nbind = \"127.0.0.1:{}\"\nprotocol = \"websockets\"\n{tls}",
        ports[0], ports[1], ports[2], ports[3]
    )
}

fn ours(pki: &Pki) -> Ours {
    let ports = [free_port(), free_port(), free_port(), free_port()];
    let conf = pki.path("broker.toml");
    std::fs::write(&conf, listener_tables(pki, ports, "server")).unwrap();
    let peer = Peer::spawn_with_stdin(
        &example("broker"),
        &["--config", conf.to_str().unwrap(), "--log-level", "info"],
    );
    for p in ports {
        wait_for_port(p);
    }
    Ours {
        tls: ports[0],
        mtls: ports[1],
        ws: ports[2],
        wss: ports[3],
        peer,
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn mosquitto_clients_over_tls_and_mutual_tls_against_our_broker() {
    let pki = pki::make("mosq-clients");
    let b = ours(&pki);
    let (ca, cert, key) = (
        s(&pki.path("ca.pem")),
        s(&pki.path("client.pem")),
        s(&pki.path("client.key")),
    );
    for (port, extra) in [
        (b.tls, vec!["--cafile", &ca]),
        (
            b.mtls,
            vec!["--cafile", &ca, "--cert", &cert, "--key", &key],
        ),
    ] {
        let port = port.to_string();
        let mut args = vec![
            "-h",
            "localhost",
            "-p",
            &port,
            "-d",
            "-t",
            "tls/x",
            "-C",
            "1",
            "-F",
            "MSG %p",
        ];
        args.extend_from_slice(&extra);
        let sub = line_buffered("mosquitto_sub", &args);
        sub.line_where(|l| l.contains("SUBACK"));
        let mut pub_args = vec![
            "-h",
            "localhost",
            "-p",
            &port,
            "-t",
            "tls/x",
            "-q",
            "1",
            "-m",
            "secret",
        ];
        pub_args.extend_from_slice(&extra);
        run_ok("mosquitto_pub", &pub_args);
        assert_eq!(sub.line_where(|l| l.starts_with("MSG ")), "MSG secret");
        sub.wait_success();
    }
    // Without a client certificate where one is required: refused.
    let port = b.mtls.to_string();
    let (status, out) = run(
        "mosquitto_pub",
        &[
            "-h",
            "localhost",
            "-p",
            &port,
            "--cafile",
            &ca,
            "-t",
            "x",
            "-m",
            "y",
        ],
    );
    assert!(!status.success(), "{out}");
    // A plain client on the TLS port: refused, and the broker says why.
    let port = b.tls.to_string();
    let (status, _) = run(
        "mosquitto_pub",
        &["-h", "127.0.0.1", "-p", &port, "-t", "x", "-m", "y"],
    );
    assert!(!status.success());
    b.peer
        .line_where(|l| l.contains("transport refused") && l.contains("tls"));
}

/// `use_identity_as_username`: the certificate's common name (`device-7`) is the user name,
/// whatever the CONNECT says and with no password checked, even with a password file that
/// turns anonymous access off; the ACL file's rules for that name apply.
#[test]
fn a_client_certificate_names_the_user_on_an_identity_listener() {
    let pki = pki::make("identity");
    let p = |n: &str| pki.path(n).display().to_string();
    run_ok(
        "mosquitto_passwd",
        &["-c", "-b", &p("passwd"), "alice", "pw"],
    );
    std::fs::write(pki.path("acl"), "user device-7\ntopic readwrite dev/#\n").unwrap();
    let port = free_port();
    let conf = pki.path("identity.toml");
    std::fs::write(
        &conf,
        format!(
            "password_file = {:?}\nacl_file = {:?}\n[[listener]]\nbind = \"127.0.0.1:{port}\"\n\
             certfile = {:?}\nkeyfile = {:?}\ncafile = {:?}\nrequire_certificate = true\n\
             use_identity_as_username = true\n",
            p("passwd"),
            p("acl"),
            p("server.pem"),
            p("server.key"),
            p("ca.pem")
        ),
    )
    .unwrap();
    let broker = Peer::spawn_with_stdin(
        &example("broker"),
        &["--config", conf.to_str().unwrap(), "--log-level", "info"],
    );
    wait_for_port(port);
    let port = port.to_string();
    let (ca, cert, key) = (p("ca.pem"), p("client.pem"), p("client.key"));
    let tls = [
        "-h",
        "localhost",
        "-p",
        &port,
        "--cafile",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "-u",
        "mallory",
        "-P",
        "wrong",
    ];
    let mut sub_args = tls.to_vec();
    sub_args.extend_from_slice(&["-d", "-t", "dev/#", "-C", "1", "-F", "MSG %t %p"]);
    let sub = line_buffered("mosquitto_sub", &sub_args);
    sub.line_where(|l| l.contains("SUBACK"));
    let mut pub_args = tls.to_vec();
    pub_args.extend_from_slice(&["-t", "dev/x", "-q", "1", "-m", "named"]);
    run_ok("mosquitto_pub", &pub_args);
    assert_eq!(sub.line_where(|l| l.starts_with("MSG ")), "MSG dev/x named");
    sub.wait_success();
    drop(broker);
}

#[test]
fn paho_over_tls_websocket_and_websocket_over_tls_against_our_broker() {
    let pki = pki::make("paho");
    let b = ours(&pki);
    let ca = s(&pki.path("ca.pem"));
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/paho_transports.py"
    );
    for (mode, port) in [("tls", b.tls), ("ws", b.ws), ("wss", b.wss)] {
        let out = run_ok("python3", &[script, mode, &port.to_string(), &ca]);
        assert!(out.contains("OK"), "paho over {mode}: {out}");
    }
    let (cert, key) = (s(&pki.path("client.pem")), s(&pki.path("client.key")));
    let out = run_ok(
        "python3",
        &[script, "tls", &b.mtls.to_string(), &ca, &cert, &key],
    );
    assert!(out.contains("OK"), "paho over mutual TLS: {out}");
}

#[test]
fn mqtt_js_over_ws_and_wss_against_our_broker() {
    let pki = pki::make("mqttjs");
    let b = ours(&pki);
    let ca = s(&pki.path("ca.pem"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/mqttjs.js");
    let out = run_ok("node", &[script, &format!("ws://localhost:{}/mqtt", b.ws)]);
    assert!(out.contains("OK"), "MQTT.js over ws: {out}");
    let out = run_ok(
        "node",
        &[script, &format!("wss://localhost:{}/mqtt", b.wss), &ca],
    );
    assert!(out.contains("OK"), "MQTT.js over wss: {out}");
}

#[test]
fn check_config_names_unusable_certificate_files_and_why() {
    let pki = pki::make("check");
    let ports = [free_port(), free_port(), free_port(), free_port()];
    let good = pki.path("good.toml");
    std::fs::write(&good, listener_tables(&pki, ports, "server")).unwrap();
    let out = run_ok(&example("broker"), &["--check-config", &s(&good)]);
    assert!(
        out.contains("over TLS (client certificates required)"),
        "{out}"
    );
    assert!(out.contains("websockets over TLS"), "{out}");
    for (name, text, says) in [
        (
            "missing",
            listener_tables(&pki, ports, "missing"),
            "missing.pem",
        ),
        (
            "mismatched",
            listener_tables(&pki, ports, "server").replace("server.key", "client.key"),
            "do not go together",
        ),
        (
            "no-key",
            listener_tables(&pki, ports, "server").replace("server.key", "server.pem"),
            "no private key",
        ),
        (
            "protocol",
            format!(
                "[[listener]]\nbind = \"127.0.0.1:{}\"\nprotocol = \"http\"\n",
                ports[0]
            ),
            "protocol is",
        ),
    ] {
        let path = pki.path(&format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        let (status, out) = run(&example("broker"), &["--check-config", &s(&path)]);
        assert!(!status.success(), "{name}: {out}");
        assert!(
            out.contains(says) && out.contains(&format!("{name}.toml")),
            "{name}: {out}"
        );
    }
}

#[test]
fn reload_reads_the_certificates_again() {
    use tinymqtt::runtimes::blocking::Client;
    let pki = pki::make("reload");
    let b = ours(&pki);
    let url = format!("mqtts://localhost:{}", b.tls);
    let connect = || {
        Client::connect_to(
            Endpoint::parse(&url).unwrap().tls(trusting(&pki)),
            config("r"),
        )
    };
    let (c, _) = connect().unwrap();
    let mut peer = b.peer;
    // `status` counts the connections of each listener.
    peer.send_line("status");
    peer.line_where(|l| l == format!("listener 127.0.0.1:{}: 1 connections", b.tls));
    peer.line_where(|l| l == format!("listener 127.0.0.1:{}: 0 connections", b.ws));
    c.disconnect().unwrap();
    // The server's files now hold the expired certificate: after `reload`, new connections
    // get it (and refuse it).
    std::fs::copy(pki.path("expired.pem"), pki.path("server.pem")).unwrap();
    std::fs::copy(pki.path("expired.key"), pki.path("server.key")).unwrap();
    peer.send_line("reload");
    peer.line_where(|l| l.contains("read again"));
    let e = connect().unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
    // A key that does not match: every listener keeps what it had.
    std::fs::copy(pki.path("client.key"), pki.path("server.key")).unwrap();
    peer.send_line("reload");
    peer.line_where(|l| l.contains("kept as they were") && l.contains("server.key"));
    assert!(connect().unwrap_err().to_string().contains("expired"));
}

#[test]
fn example_programs_take_mosquittos_tls_flags_and_urls() {
    let pki = pki::make("examples");
    let b = ours(&pki);
    let (ca, cert, key) = (
        s(&pki.path("ca.pem")),
        s(&pki.path("client.pem")),
        s(&pki.path("client.key")),
    );
    let l = format!("mqtts://localhost:{}/ex/t", b.tls);
    let sub = line_buffered(
        &example("subscriber"),
        &[
            "-L",
            &l,
            "--cafile",
            &ca,
            "-C",
            "3",
            "-q",
            "1",
            "--log-level",
            "info",
        ],
    );
    sub.line_where(|l| l.contains("subscribed"));
    let wss = format!("wss://localhost:{}/mqtt", b.wss);
    run_ok(
        &example("publisher"),
        &[
            "--url", &wss, "--cafile", &ca, "-t", "ex/t", "-m", "one", "-q", "1",
        ],
    );
    let mtls = b.mtls.to_string();
    run_ok(
        &example("publisher"),
        &[
            "--host",
            "localhost",
            "-p",
            &mtls,
            "--cafile",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "-t",
            "ex/t",
            "-m",
            "two",
            "--runtime",
            "blocking",
        ],
    );
    let ws = format!("ws://localhost:{}/mqtt", b.ws);
    run_ok(
        &example("publisher"),
        &[
            "--url",
            &ws,
            "-t",
            "ex/t",
            "-m",
            "three",
            "--runtime",
            "smol",
        ],
    );
    for m in ["one", "two", "three"] {
        sub.line_where(|l| l == format!("ex/t {m}"));
    }
    sub.wait_success();
    // Without --cafile the built-in roots do not know the test CA: refused, and said why.
    let (status, out) = run(&example("publisher"), &["-L", &l, "-m", "x"]);
    assert!(!status.success());
    assert!(out.contains("UnknownIssuer"), "{out}");
}
