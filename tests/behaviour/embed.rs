//! Embedding, on every runtime: a client's events handed to a callback (slow, publishing and
//! acknowledging from inside: nothing lost, no deadlock), the broker handle (publish into the
//! broker, list clients, subscriptions and offline sessions, kick, remove), and each failed
//! reconnect attempt saying why in its `Disconnected` event.

use super::*;
use tinymqtt::broker::AdminError;
use tinymqtt::runtimes::driver::transport::{Endpoint, TlsOptions, TransportError};

#[path = "../support/pki.rs"]
mod pki;

const V5: ProtocolVersion = ProtocolVersion::V5;

/// `n` messages read from `c` (skipping other events), their payloads in arrival order.
fn payloads(c: &rt::Client, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| String::from_utf8_lossy(&next_message(c).payload).into_owned())
        .collect()
}

/// Messages `0..n` on `in/<i % 4>`, with payload `i`.
fn numbered(n: usize, qos: QoS) -> Vec<Publish> {
    (0..n)
        .map(|i| {
            let mut p = Publish::new(
                TopicName::new(&format!("in/{}", i % 4)).unwrap(),
                Bytes::from(i.to_string()),
            );
            p.qos = qos;
            p
        })
        .collect()
}

/// Waits until the callback saw `n` messages (within `within`); its payloads and errors.
fn seen_all(seen: &rt::Seen, n: usize, within: Duration) -> (Vec<String>, Vec<String>) {
    let end = clock() + within;
    loop {
        let (payloads, errors) = {
            let s = seen.lock().unwrap();
            let p = s.0.iter().map(|b| String::from_utf8_lossy(b).into_owned());
            (p.collect::<Vec<_>>(), s.1.clone())
        };
        if payloads.len() >= n || clock() > end {
            return (payloads, errors);
        }
        pause(Duration::from_millis(10));
    }
}

fn expected(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

#[test]
fn a_slow_callback_that_publishes_and_acks_loses_nothing_and_never_deadlocks() {
    // More messages than the client's event queue holds, to a callback that takes a while
    // for each and publishes a reply and acknowledges from inside: the queue fills, the
    // client stops reading (backpressure), and everything still arrives, in order.
    const N: usize = 400;
    let b = broker();
    let mut c = config(V5, "callback");
    c.manual_acks = true;
    let cb = rt::connect_unread(b.addr, c).unwrap();
    cb.subscribe(sub("in/#", QoS::AtLeastOnce)).unwrap();
    let watcher = rt::connect(b.addr, config(V5, "watcher")).unwrap();
    watcher.subscribe(sub("reply/#", QoS::AtLeastOnce)).unwrap();
    let seen = cb.echo_by_callback(Duration::from_millis(2));
    let publisher = rt::connect(b.addr, config(V5, "publisher")).unwrap();
    assert_eq!(
        publisher
            .publish_all(numbered(N, QoS::AtLeastOnce))
            .unwrap(),
        N
    );

    let (got, errors) = seen_all(&seen, N, Duration::from_secs(20));
    assert!(
        errors.is_empty(),
        "calls from the callback failed: {errors:?}"
    );
    assert_eq!(got, expected(N), "every message, once, in order");
    assert_eq!(payloads(&watcher, N), expected(N), "every reply, in order");
    b.shutdown();
}

#[test]
fn a_slow_callback_loses_no_qos0_message_either() {
    const N: usize = 600;
    let b = broker();
    let cb = rt::connect_unread(b.addr, config(V5, "callback0")).unwrap();
    cb.subscribe(sub("in/#", QoS::AtMostOnce)).unwrap();
    let seen = cb.echo_by_callback(Duration::from_millis(1));
    let publisher = rt::connect(b.addr, config(V5, "publisher0")).unwrap();
    publisher.publish_many(numbered(N, QoS::AtMostOnce));
    let (got, errors) = seen_all(&seen, N, Duration::from_secs(20));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        got,
        expected(N),
        "a slow callback slows the client, it does not drop"
    );
    b.shutdown();
}

#[test]
fn a_callback_that_publishes_to_its_own_subscription_does_not_deadlock() {
    // The callback's replies come back to it (it is subscribed to `reply/#` too): its own
    // publishes fill the event queue it drains.
    const N: usize = 300;
    let b = broker();
    let cb = rt::connect_unread(b.addr, config(V5, "self")).unwrap();
    cb.subscribe(sub("in/#", QoS::AtLeastOnce)).unwrap();
    cb.subscribe(sub("reply/in/#", QoS::AtLeastOnce)).unwrap();
    let seen = cb.echo_by_callback(Duration::ZERO);
    let publisher = rt::connect(b.addr, config(V5, "feeder")).unwrap();
    assert_eq!(
        publisher
            .publish_all(numbered(N, QoS::AtLeastOnce))
            .unwrap(),
        N
    );
    // Each `in` message, and the reply to it (the replies to replies go to `reply/reply/..`,
    // which it does not hear).
    let (got, errors) = seen_all(&seen, 2 * N, Duration::from_secs(20));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(got.len(), 2 * N, "{got:?}");
    let mut sorted = got.clone();
    sorted.sort_by_key(|p| p.parse::<usize>().unwrap());
    let twice: Vec<String> = expected(N)
        .into_iter()
        .flat_map(|p| [p.clone(), p])
        .collect();
    assert_eq!(sorted, twice);
    b.shutdown();
}

#[test]
fn the_broker_handle_publishes_lists_kicks_and_removes() {
    let b = broker();
    let h = b.handle();
    let sub_client = rt::connect(b.addr, config(V5, "listener-1")).unwrap();
    sub_client
        .subscribe(sub("app/#", QoS::AtLeastOnce))
        .unwrap();

    // Publish into the broker: routed like a client's message, retained too.
    b.admin_publish(msg("app/state", "on", QoS::AtLeastOnce, true))
        .unwrap();
    let got = next_message(&sub_client);
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("app/state", &b"on"[..])
    );
    let late = rt::connect(b.addr, config(V5, "late")).unwrap();
    late.subscribe(sub("app/#", QoS::AtLeastOnce)).unwrap();
    let replayed = next_message(&late);
    assert!(replayed.retain && &replayed.payload[..] == b"on");
    assert!(matches!(
        h.publish_blocking(msg("$SYS/x", "no", QoS::AtMostOnce, false)),
        Err(Error::Admin(AdminError::SysTopic))
    ));

    // Who is connected, and what they subscribed to.
    let ids: Vec<String> = h
        .clients_blocking()
        .unwrap()
        .iter()
        .map(|c| c.client_id.to_string())
        .collect();
    assert_eq!(ids, ["late", "listener-1"]);
    let clients = h.clients_blocking().unwrap();
    assert!(clients
        .iter()
        .all(|c| c.protocol == V5 && c.listener.is_some()));
    let subs = h
        .subscriptions_blocking(ByteStr::from_static("listener-1"))
        .unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].filter.as_str(), "app/#");

    // Kick: DISCONNECT 0x98, and the session stays offline as its expiry says.
    let mut c = config(V5, "kept");
    c.properties.session_expiry_interval = Some(600);
    let kept = rt::connect(b.addr, c).unwrap();
    kept.subscribe(sub("k/#", QoS::AtLeastOnce)).unwrap();
    h.disconnect_client_blocking(ByteStr::from_static("kept"))
        .unwrap();
    assert_eq!(next_disconnect(&kept), ReasonCode::AdministrativeAction);
    let end = clock() + WAIT;
    let offline = loop {
        let list = h.offline_sessions_blocking().unwrap();
        if !list.is_empty() || clock() > end {
            break list;
        }
        pause(Duration::from_millis(10));
    };
    assert_eq!(offline.len(), 1);
    assert_eq!(
        (offline[0].client_id.as_str(), offline[0].subscriptions),
        ("kept", 1)
    );
    assert!(matches!(
        h.remove_session_blocking(ByteStr::from_static("late")),
        Err(Error::Admin(AdminError::Connected(_)))
    ));
    h.remove_session_blocking(ByteStr::from_static("kept"))
        .unwrap();
    assert!(h.offline_sessions_blocking().unwrap().is_empty());
    assert!(matches!(
        h.disconnect_client_blocking(ByteStr::from_static("kept")),
        Err(Error::Admin(AdminError::NoSuchSession(_)))
    ));
    b.shutdown();
}

/// The transport error a `Disconnected` event carries, if any.
fn cause(e: &Event) -> Option<String> {
    match e {
        Event::Disconnected {
            cause: Some(cause), ..
        } => {
            let t = cause
                .downcast_ref::<TransportError>()
                .expect("the runtime's TransportError");
            Some(format!("{t:?}"))
        }
        _ => None,
    }
}

/// The first `Disconnected` cause matching `want`, within `WAIT`.
fn disconnect_cause(c: &rt::Client, what: &str, want: impl Fn(&str) -> bool) -> String {
    let end = clock() + WAIT;
    let mut heard = Vec::new();
    while let Some(e) = c.next_event(end.saturating_duration_since(clock())) {
        if let Some(cause) = cause(&e) {
            if want(&cause) {
                return cause;
            }
            heard.push(cause);
        }
    }
    panic!("no disconnect caused by {what} within {WAIT:?}; heard {heard:?}")
}

fn reconnecting(id: &str) -> ClientConfig {
    let mut c = config(V5, id);
    c.reconnect = Some(Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(50),
        jitter_percent: 0,
        seed: 1,
    });
    c.connect_timeout = Duration::from_secs(2);
    c
}

#[test]
fn each_failed_reconnect_says_why_refused_or_an_untrusted_certificate() {
    let pki = pki::make("embed-cause");
    let first = rt::tls_broker(
        pki.path("server.pem"),
        pki.path("server.key"),
        "127.0.0.1:0".parse().unwrap(),
    );
    let addr = first.addr;
    let url = format!("mqtts://localhost:{}", addr.port());
    let trusting = TlsOptions::new()
        .roots(tinymqtt::runtimes::driver::transport::Roots::None)
        .ca_file(pki.path("ca.pem"));
    let endpoint = Endpoint::parse(&url).unwrap().tls(trusting);
    let c = rt::connect_to(endpoint, reconnecting("again")).unwrap();
    first.shutdown();

    // Nothing listens: each attempt's event says the connection was refused.
    let refused = disconnect_cause(&c, "a refused connection", |c| c.contains("Connect"));
    assert!(refused.contains("ConnectionRefused"), "{refused}");

    // A broker whose certificate no trusted CA signed takes the port: the TLS check says so.
    let own = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(pki.path("self.pem"), own.cert.pem()).unwrap();
    std::fs::write(pki.path("self.key"), own.signing_key.serialize_pem()).unwrap();
    let second = rt::tls_broker(pki.path("self.pem"), pki.path("self.key"), addr);
    let tls = disconnect_cause(&c, "an untrusted certificate", |c| c.contains("Tls"));
    assert!(tls.contains("UnknownIssuer"), "{tls}");
    second.shutdown();
}

#[test]
fn an_unresolvable_host_name_says_so() {
    let endpoint = Endpoint::parse("mqtt://nonexistent.invalid:1883").unwrap();
    match rt::connect_to(endpoint, reconnecting("nowhere")) {
        Err(Error::Transport(TransportError::Resolve { host, .. })) => {
            assert_eq!(host, "nonexistent.invalid")
        }
        Err(e) => panic!("not a resolver error: {e:?}"),
        Ok(_) => panic!("connected to nonexistent.invalid"),
    }
}

/// The next event of a link within `WAIT` that `f` picks.
fn link_event<T>(
    events: &tinymqtt::runtimes::BlockingEvents,
    what: &str,
    f: impl Fn(Event) -> Option<T>,
) -> T {
    let end = clock() + WAIT;
    while let Some(e) = events.recv_timeout(end.saturating_duration_since(clock())) {
        if let Some(t) = f(e) {
            return t;
        }
    }
    panic!("the link heard no {what} within {WAIT:?}")
}

#[test]
fn a_link_subscribes_publishes_and_receives_without_a_socket() {
    let b = broker();
    let h = b.handle();
    let (link, events) = h.link_blocking(config(V5, "in-app")).unwrap();
    link_event(&events, "connack", |e| {
        matches!(e, Event::Connected { .. }).then_some(())
    });
    link.subscribe_blocking(sub("dev/#", QoS::AtLeastOnce))
        .unwrap();
    link_event(&events, "suback", |e| {
        matches!(e, Event::Subscribed { .. }).then_some(())
    });

    // A network client's message and the application's own reach the link.
    let dev = rt::connect(b.addr, config(V5, "dev")).unwrap();
    dev.subscribe(sub("cmd/#", QoS::AtLeastOnce)).unwrap();
    dev.publish(msg("dev/1", "reading", QoS::AtLeastOnce, false))
        .unwrap();
    let payload = |e: Event| match e {
        Event::Message(m) => Some(String::from_utf8_lossy(&m.publish.payload).into_owned()),
        _ => None,
    };
    assert_eq!(link_event(&events, "a message", payload), "reading");
    b.admin_publish(msg("dev/2", "from-app", QoS::AtMostOnce, false))
        .unwrap();
    assert_eq!(link_event(&events, "a message", payload), "from-app");

    // The link publishes to the network client.
    link.publish_blocking(msg("cmd/1", "go", QoS::AtLeastOnce, false))
        .unwrap();
    let got = next_message(&dev);
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("cmd/1", &b"go"[..])
    );
    link_event(&events, "its publish's end", |e| {
        matches!(
            e,
            Event::Published {
                reason_code: ReasonCode::Success,
                ..
            }
        )
        .then_some(())
    });

    // Listed on the in-process listener, and kicked like anyone.
    let clients = h.clients_blocking().unwrap();
    let me = clients
        .iter()
        .find(|c| c.client_id.as_str() == "in-app")
        .unwrap();
    assert_eq!(me.listener.as_deref(), Some(tinymqtt::broker::IN_PROCESS));
    h.disconnect_client_blocking(ByteStr::from_static("in-app"))
        .unwrap();
    let code = link_event(&events, "its end", |e| match e {
        Event::Disconnected { reason, .. } => Some(reason.reason_code),
        _ => None,
    });
    assert_eq!(code, ReasonCode::AdministrativeAction);
    assert!(matches!(
        link.publish_blocking(msg("cmd/2", "x", QoS::AtMostOnce, false)),
        Err(Error::Stopped)
    ));
    b.shutdown();
}

#[test]
fn a_link_whose_events_go_unread_is_closed_as_too_slow() {
    let options = BrokerOptions::default().with_max_outbound_batches(8);
    let b = rt::broker_with(BrokerConfig::default().with_sys_interval(None), options);
    let h = b.handle();
    let mut c = config(V5, "sleepy");
    c.properties.session_expiry_interval = Some(600);
    let (link, events) = h.link_blocking(c).unwrap();
    link.subscribe_blocking(sub("t", QoS::AtMostOnce)).unwrap();
    for _ in 0..30 {
        b.admin_publish(msg("t", "x", QoS::AtMostOnce, false))
            .unwrap();
    }
    // What fit in its channel is still there, then the stream ends: the link is gone, its
    // session stays offline.
    let mut n = 0;
    while let Some(e) = events.recv_timeout(WAIT) {
        n += usize::from(matches!(e, Event::Message(_)));
    }
    assert!(n < 30, "{n} messages: the channel is bounded");
    assert!(matches!(
        link.publish_blocking(msg("t", "x", QoS::AtMostOnce, false)),
        Err(Error::Stopped)
    ));
    let offline = h.offline_sessions_blocking().unwrap();
    assert!(
        offline.iter().any(|s| s.client_id.as_str() == "sleepy"),
        "{offline:?}"
    );
    b.shutdown();
}
