//! The client API as a user writes it: manual acknowledgements, and the patterns that must not
//! hang (every wait is bounded, so a regression fails instead of hanging).

use std::num::NonZeroU16;

use super::*;

/// A v5 subscriber with manual acks that lets the server have `window` messages in flight.
fn manual_subscriber(b: &rt::Broker, window: u16) -> rt::Client {
    let mut c = config(ProtocolVersion::V5, "manual");
    c.manual_acks = true;
    c.properties.receive_maximum = NonZeroU16::new(window);
    let s = rt::connect(b.addr, c).unwrap();
    s.subscribe(sub("m/#", QoS::AtLeastOnce)).unwrap();
    s
}

/// The next message with its token, skipping other events; panics after `WAIT`.
fn next_with_token(c: &rt::Client) -> (Publish, Option<tinymqtt::client::AckToken>) {
    let end = clock() + WAIT;
    loop {
        match c.next_event(end.saturating_duration_since(clock())) {
            Some(Event::Message(m)) => return (m.publish.clone(), m.ack.clone()),
            Some(_) => continue,
            None => panic!("no message within {WAIT:?}"),
        }
    }
}

#[test]
fn manual_acks_let_every_message_through_a_small_window() {
    let b = broker();
    let s = manual_subscriber(&b, 4);
    let p = rt::connect(b.addr, config(ProtocolVersion::V5, "pub")).unwrap();
    let acks = p.publish_many(
        (0..40)
            .map(|_| msg("m/x", "m", QoS::AtLeastOnce, false))
            .collect(),
    );
    assert_eq!(acks.len(), 40);
    // Ten times the window: without acknowledgements the server stops after four.
    for i in 0..40 {
        let (got, token) = next_with_token(&s);
        assert_eq!(got.qos, QoS::AtLeastOnce, "message {i}");
        s.ack(token.expect("a manual-ack token for QoS 1")).unwrap();
    }
    no_message(&s, Duration::from_millis(100));
    p.disconnect();
    s.disconnect();
    b.shutdown();
}

#[test]
fn a_token_dropped_unacknowledged_is_reported() {
    let b = broker();
    let s = manual_subscriber(&b, 4);
    let p = rt::connect(b.addr, config(ProtocolVersion::V5, "pub")).unwrap();
    p.publish(msg("m/x", "first", QoS::AtLeastOnce, false))
        .unwrap();
    let (_, token) = next_with_token(&s);
    let id = token.as_ref().expect("token").packet_id();
    drop(token);
    // The report comes with the session's next input.
    p.publish(msg("m/x", "second", QoS::AtLeastOnce, false))
        .unwrap();
    let end = clock() + WAIT;
    loop {
        match s.next_event(end.saturating_duration_since(clock())) {
            Some(Event::AckTokenDropped { packet_id }) => {
                assert_eq!(packet_id, id);
                break;
            }
            Some(_) => continue,
            None => panic!("no AckTokenDropped within {WAIT:?}"),
        }
    }
    p.disconnect();
    s.disconnect();
    b.shutdown();
}

/// Reads every event that arrives within `quiet` of the last; returns the messages.
fn drain_messages(c: &rt::Client, quiet: Duration) -> usize {
    let mut n = 0;
    while let Some(e) = c.next_event(quiet) {
        if matches!(e, Event::Message(_)) {
            n += 1;
        }
    }
    n
}

/// More QoS 1 messages to itself than the event and command queues hold, then reading: the
/// publishing call fails with `EventsUnread` instead of waiting forever for acknowledgements
/// its own unread events hold up; the events are still there, and the client works on.
#[test]
fn publishing_to_itself_beyond_the_queues_before_reading_fails_instead_of_hanging() {
    let b = broker();
    let c = rt::connect_unread(b.addr, config(ProtocolVersion::V5, "self")).unwrap();
    c.subscribe(sub("me/#", QoS::AtLeastOnce)).unwrap();
    let started = clock();
    let sent = c.publish_all(
        (0..600)
            .map(|_| msg("me/x", "m", QoS::AtLeastOnce, false))
            .collect(),
    );
    assert!(
        matches!(sent, Err(Error::EventsUnread)),
        "publishing must fail, not hang: {sent:?}"
    );
    assert!(clock() - started < tinymqtt::runtimes::driver::EVENTS_STALL + WAIT);
    assert!(drain_messages(&c, Duration::from_millis(300)) >= 256);
    // Nothing is stuck: the next publish completes.
    c.publish(msg("other", "m", QoS::AtLeastOnce, false))
        .unwrap();
    c.disconnect();
    b.shutdown();
}

/// The same with each acknowledgement awaited in turn: the wait fails instead of hanging.
#[test]
fn awaiting_each_ack_to_itself_without_reading_fails_instead_of_hanging() {
    let b = broker();
    let c = rt::connect_unread(b.addr, config(ProtocolVersion::V5, "self-wait")).unwrap();
    c.subscribe(sub("me/#", QoS::AtLeastOnce)).unwrap();
    let mut outcome = Ok(());
    for _ in 0..600 {
        if let Err(e) = c.publish(msg("me/x", "m", QoS::AtLeastOnce, false)) {
            outcome = Err(e);
            break;
        }
    }
    assert!(
        matches!(outcome, Err(Error::EventsUnread)),
        "waiting must fail, not hang: {outcome:?}"
    );
    assert!(drain_messages(&c, Duration::from_millis(300)) >= 256);
    c.publish(msg("other", "m", QoS::AtLeastOnce, false))
        .unwrap();
    c.disconnect();
    b.shutdown();
}

/// The pattern that works: events read while publishing (here by the client's own reader
/// between publishes, as a task reading them concurrently would).
#[test]
fn publishing_to_itself_while_reading_delivers_everything() {
    let b = broker();
    let c = rt::connect(b.addr, config(ProtocolVersion::V5, "self-read")).unwrap();
    c.subscribe(sub("me/#", QoS::AtLeastOnce)).unwrap();
    let mut got = 0;
    for _ in 0..6 {
        let acks = c.publish_many(
            (0..100)
                .map(|_| msg("me/x", "m", QoS::AtLeastOnce, false))
                .collect(),
        );
        assert!(acks.iter().all(|a| a.reason_code == ReasonCode::Success));
        got += drain_messages(&c, Duration::from_millis(100));
    }
    assert_eq!(got, 600);
    c.disconnect();
    b.shutdown();
}

/// A refusal is an error, so `?` stops at it: a PUBACK with an error reason code, and a SUBACK
/// refusing a filter (here both for a topic deeper than the broker's `max_topic_levels`).
#[test]
fn a_refused_publish_or_subscription_is_an_error() {
    let b = rt::broker(
        BrokerConfig::default()
            .with_max_topic_levels(3)
            .with_sys_interval(None),
    );
    let c = rt::connect(b.addr, config(ProtocolVersion::V5, "refused")).unwrap();
    match c.publish(msg("a/b/c/d", "deep", QoS::AtLeastOnce, false)) {
        Err(Error::PublishRefused(ack)) => {
            assert_eq!(ack.reason_code, ReasonCode::TopicNameInvalid);
            assert!(ack.packet_id.is_some());
        }
        other => panic!("a refused publish must be an error: {other:?}"),
    }
    let mut filters = sub("ok/#", QoS::AtLeastOnce);
    filters.extend(sub("a/b/c/d", QoS::AtLeastOnce));
    match c.subscribe(filters) {
        Err(Error::SubscribeRefused(ack)) => {
            assert_eq!(ack.reason_codes[0], ReasonCode::GrantedQoS1);
            assert!(ack.reason_codes[1].is_error(), "{ack:?}");
        }
        other => panic!("a refused filter must be an error: {other:?}"),
    }
    // "No subscription existed" (0x11) is an answer, not a refusal.
    let gone = c
        .unsubscribe(vec![TopicFilter::new("a/b/c/d").unwrap()])
        .unwrap();
    assert_eq!(gone.reason_codes, vec![ReasonCode::NoSubscriptionExisted]);
    // What was granted works.
    c.publish(msg("ok/1", "fine", QoS::AtLeastOnce, false))
        .unwrap();
    assert_eq!(&next_message(&c).payload[..], b"fine");
    c.disconnect();
    b.shutdown();
}

/// A QoS 1 publish tells its packet id before its acknowledgement arrives.
#[test]
fn a_pending_publish_tells_its_packet_id_before_completion() {
    let b = broker();
    let c = rt::connect(b.addr, config(ProtocolVersion::V5, "ids")).unwrap();
    let (id, ack) = c
        .publish_telling_id(msg("ids/x", "m", QoS::AtLeastOnce, false))
        .unwrap();
    assert!(id.is_some(), "the id is known before the PUBACK");
    assert_eq!(id, ack.packet_id);
    let (id, ack) = c
        .publish_telling_id(msg("ids/x", "m", QoS::AtMostOnce, false))
        .unwrap();
    assert_eq!((id, ack.packet_id), (None, None));
    c.disconnect();
    b.shutdown();
}

/// The session exported from one client resumes in another: its subscriptions come back.
#[test]
fn an_exported_session_is_restored_by_a_new_client() {
    let b = broker();
    let first = rt::connect(b.addr, config(ProtocolVersion::V5, "outbox")).unwrap();
    first.subscribe(sub("keep/#", QoS::AtLeastOnce)).unwrap();
    let state = first.session_state();
    assert_eq!(state.subscriptions.len(), 1, "{state:?}");
    first.disconnect();
    // A clean start: the broker has no session, so the restored one re-subscribes.
    let options = tinymqtt::runtimes::ConnectOptions::new().with_session(state);
    let again = rt::connect_with(b.addr, config(ProtocolVersion::V5, "other-id"), options).unwrap();
    let p = rt::connect(b.addr, config(ProtocolVersion::V5, "pub")).unwrap();
    // The SUBACK of the re-subscription arrives as an event; wait for it before publishing.
    let end = clock() + WAIT;
    loop {
        match again.next_event(end.saturating_duration_since(clock())) {
            Some(Event::Subscribed { reason_codes, .. }) => {
                assert_eq!(reason_codes, vec![ReasonCode::GrantedQoS1]);
                break;
            }
            Some(_) => continue,
            None => panic!("no re-subscription within {WAIT:?}"),
        }
    }
    p.publish(msg("keep/1", "kept", QoS::AtLeastOnce, false))
        .unwrap();
    assert_eq!(&next_message(&again).payload[..], b"kept");
    p.disconnect();
    again.disconnect();
    b.shutdown();
}

/// An authenticator that asks for "secret" in a second step of method "demo".
struct ChallengeAuth;

struct Challenge;

impl tinymqtt::broker::AuthExchange for Challenge {
    fn step(&mut self, data: Option<&Bytes>) -> tinymqtt::broker::AuthStep {
        use tinymqtt::broker::AuthStep;
        match data.map(|d| &d[..]) {
            None | Some(b"hello") => AuthStep::Continue(Bytes::from_static(b"password?")),
            Some(b"secret") => AuthStep::Success(None),
            Some(_) => AuthStep::Failure(ReasonCode::NotAuthorized),
        }
    }
}

impl tinymqtt::broker::Authenticator for ChallengeAuth {
    fn authenticate(
        &self,
        _: &ByteStr,
        _: Option<&ByteStr>,
        _: Option<&Bytes>,
    ) -> Result<(), ReasonCode> {
        Err(ReasonCode::NotAuthorized)
    }

    fn start_auth(
        &self,
        _: &ByteStr,
        _: Option<&ByteStr>,
        method: &ByteStr,
    ) -> Option<Box<dyn tinymqtt::broker::AuthExchange>> {
        (method.as_str() == "demo").then(|| Box::new(Challenge) as _)
    }
}

/// The answer to a "password?" challenge.
fn answer(challenge: &tinymqtt::codec::Auth) -> Option<tinymqtt::codec::Auth> {
    let asked = challenge.properties.authentication_data.as_deref() == Some(b"password?");
    let mut auth = tinymqtt::codec::Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        ..Default::default()
    };
    auth.properties.authentication_method = Some(ByteStr::from_static("demo"));
    auth.properties.authentication_data = Some(Bytes::from_static(b"secret"));
    asked.then_some(auth)
}

/// MQTT 5 enhanced authentication through a runtime client: the CONNECT's challenge is
/// answered by the handler in `ConnectOptions`, and a re-authentication started with `auth`.
#[test]
fn enhanced_authentication_completes_through_a_runtime_client() {
    let core = tinymqtt::broker::Router::with_auth(
        BrokerConfig::default().with_sys_interval(None),
        Arc::new(ChallengeAuth),
        Arc::new(tinymqtt::broker::AllowAll),
    );
    let b = rt::broker_core(core, BrokerOptions::default());
    let mut c = config(ProtocolVersion::V5, "authed");
    c.properties.authentication_method = Some(ByteStr::from_static("demo"));
    // Without a handler no one can answer the challenge: connect fails at once.
    match rt::connect(b.addr, c.clone()) {
        Err(Error::AuthUnanswered(a)) => {
            assert_eq!(a.reason_code, ReasonCode::ContinueAuthentication);
            assert_eq!(
                a.properties.authentication_data.as_deref(),
                Some(&b"password?"[..])
            );
        }
        Err(e) => panic!("an unanswerable challenge must fail connect with AuthUnanswered: {e}"),
        Ok(_) => panic!("an unanswerable challenge must fail connect"),
    }
    let options = tinymqtt::runtimes::ConnectOptions::new().with_auth(answer);
    let client = rt::connect_with(b.addr, c, options).unwrap();
    // Re-authentication: the client starts it, the handler answers the challenge.
    let mut again = tinymqtt::codec::Auth {
        reason_code: ReasonCode::ReAuthenticate,
        ..Default::default()
    };
    again.properties.authentication_method = Some(ByteStr::from_static("demo"));
    again.properties.authentication_data = Some(Bytes::from_static(b"hello"));
    client.auth(again).unwrap();
    let end = clock() + WAIT;
    loop {
        match client.next_event(end.saturating_duration_since(clock())) {
            Some(Event::Auth(a)) => {
                assert_eq!(a.reason_code, ReasonCode::Success, "{a:?}");
                break;
            }
            Some(Event::Disconnected { reason, .. }) => {
                panic!("re-authentication failed: {reason:?}")
            }
            Some(_) => continue,
            None => panic!("no AUTH success within {WAIT:?}"),
        }
    }
    client.disconnect();
    b.shutdown();
}
