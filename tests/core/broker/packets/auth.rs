//! MQTT 5 enhanced authentication: the AUTH exchange at CONNECT, its failures, and
//! re-authentication after CONNACK (MQTT 5 section 4.12).

use std::sync::Arc;

use bytes::Bytes;
use tinymqtt::broker::{
    AllowAll, AuthExchange, AuthStep, Authenticator, Broker, BrokerConfig, BrokerEvent, ConnId,
};
use tinymqtt::codec::{Auth, AuthProperties, ConnAck, Connect, Packet};
use tinymqtt::error::ProtocolViolation;
use tinymqtt::{ByteStr, ReasonCode};

use crate::broker::packets::{refused, V311, V5};
use crate::sim::raw::{hex, Raw};
use crate::sim::{s, secs};

/// "CHALLENGE": the client opens with "hello", is sent "nonce" and must answer "signed";
/// "TOKEN": one step, the data must be "token". Plain CONNECTs are let in.
struct Challenge;

enum Step {
    Opening,
    Answer,
}

struct ChallengeExchange(Step);

impl AuthExchange for ChallengeExchange {
    fn step(&mut self, data: Option<&Bytes>) -> AuthStep {
        let data = data.map(|d| &d[..]);
        match (&self.0, data) {
            (Step::Opening, Some(b"hello")) => {
                self.0 = Step::Answer;
                AuthStep::Continue(Bytes::from_static(b"nonce"))
            }
            (Step::Answer, Some(b"signed")) => {
                AuthStep::Success(Some(Bytes::from_static(b"welcome")))
            }
            _ => AuthStep::Failure(ReasonCode::NotAuthorized),
        }
    }
}

struct TokenExchange;

impl AuthExchange for TokenExchange {
    fn step(&mut self, data: Option<&Bytes>) -> AuthStep {
        match data.map(|d| &d[..]) {
            Some(b"token") => AuthStep::Success(None),
            _ => AuthStep::Failure(ReasonCode::BadUserNameOrPassword),
        }
    }
}

impl Authenticator for Challenge {
    fn authenticate(
        &self,
        _: &ByteStr,
        _: Option<&ByteStr>,
        _: Option<&Bytes>,
    ) -> Result<(), ReasonCode> {
        Ok(())
    }

    fn start_auth(
        &self,
        _: &ByteStr,
        _: Option<&ByteStr>,
        method: &ByteStr,
    ) -> Option<Box<dyn AuthExchange>> {
        match method.as_str() {
            "CHALLENGE" => Some(Box::new(ChallengeExchange(Step::Opening))),
            "TOKEN" => Some(Box::new(TokenExchange)),
            _ => None,
        }
    }
}

/// A broker with the challenge authenticator; anonymous access is off, which enhanced
/// authentication does not need.
fn broker() -> Raw {
    let bc = BrokerConfig::default()
        .with_allow_anonymous(false)
        .with_connect_timeout(secs(10));
    Raw::with_broker(Broker::with_auth(
        bc,
        Arc::new(Challenge),
        Arc::new(AllowAll),
    ))
}

fn connect(method: &'static str, data: &'static [u8]) -> Connect {
    let mut c = Connect::new(V5, s("enh"));
    c.properties.authentication_method = Some(s(method));
    c.properties.authentication_data = Some(Bytes::from_static(data));
    c
}

fn auth(code: ReasonCode, method: &'static str, data: &'static [u8]) -> Packet {
    Packet::Auth(Auth {
        reason_code: code,
        properties: AuthProperties {
            authentication_method: Some(s(method)),
            authentication_data: Some(Bytes::from_static(data)),
            ..AuthProperties::default()
        },
    })
}

fn expect_auth(r: &mut Raw, c: ConnId) -> Auth {
    match r.expect_packet(c, V5) {
        Packet::Auth(a) => a,
        p => panic!("expected AUTH, got {p:?}"),
    }
}

/// A broker with one connection in the middle of a CHALLENGE exchange: CONNECT sent, the
/// broker's first AUTH 0x18 read.
fn mid_exchange() -> (Raw, ConnId) {
    let mut r = broker();
    let c = r.accept();
    r.send_packet(c, V5, connect("CHALLENGE", b"hello"));
    expect_auth(&mut r, c);
    (r, c)
}

fn connected(r: &mut Raw, c: ConnId) -> bool {
    r.events()
        .iter()
        .any(|e| matches!(e, BrokerEvent::Connected { conn, .. } if *conn == c))
}

/// Runs the CHALLENGE exchange to its CONNACK.
fn challenge(r: &mut Raw) -> (ConnId, ConnAck) {
    let c = r.accept();
    r.send_packet(c, V5, connect("CHALLENGE", b"hello"));
    let a = expect_auth(r, c);
    assert_eq!(a.reason_code, ReasonCode::ContinueAuthentication);
    assert_eq!(a.properties.authentication_method, Some(s("CHALLENGE")));
    assert_eq!(
        a.properties.authentication_data.as_deref(),
        Some(&b"nonce"[..])
    );
    assert!(!connected(r, c), "no CONNACK before the exchange ends");
    r.send_packet(
        c,
        V5,
        auth(ReasonCode::ContinueAuthentication, "CHALLENGE", b"signed"),
    );
    let ack = r.expect_connack(c, V5);
    (c, ack)
}

#[test]
fn mqtt_4_12_0_2_v5_continue_authentication_then_connack_with_method_and_data() {
    let mut r = broker();
    let (c, ack) = challenge(&mut r);
    assert_eq!(ack.reason_code, ReasonCode::Success);
    // [MQTT-4.12.0-5]: the successful CONNACK repeats the method.
    assert_eq!(ack.properties.authentication_method, Some(s("CHALLENGE")));
    assert_eq!(
        ack.properties.authentication_data.as_deref(),
        Some(&b"welcome"[..])
    );
    assert!(connected(&mut r, c));
    r.send(c, &hex("C0 00"));
    r.expect_bytes(c, &hex("D0 00"));
    r.expect_open(c);
}

#[test]
fn v5_one_step_enhanced_authentication_gets_connack_at_once() {
    let mut r = broker();
    let c = r.accept();
    r.send_packet(c, V5, connect("TOKEN", b"token"));
    let ack = r.expect_connack(c, V5);
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert_eq!(ack.properties.authentication_method, Some(s("TOKEN")));
    assert_eq!(ack.properties.authentication_data, None);
    assert_eq!(
        refused(&mut r, connect("TOKEN", b"wrong")),
        ReasonCode::BadUserNameOrPassword
    );
}

#[test]
fn mqtt_4_12_0_1_v5_method_the_authenticator_does_not_know_gets_0x8c() {
    let mut r = broker();
    assert_eq!(
        refused(&mut r, connect("KERBEROS", b"")),
        ReasonCode::BadAuthenticationMethod
    );
}

#[test]
fn mqtt_4_12_0_4_v5_authentication_refused_midway_gets_connack_and_close() {
    let (mut r, c) = mid_exchange();
    r.send_packet(
        c,
        V5,
        auth(ReasonCode::ContinueAuthentication, "CHALLENGE", b"forged"),
    );
    let ack = r.expect_connack(c, V5);
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    assert_eq!(ack.properties.authentication_method, None);
    r.expect_closed(c);
    assert!(!connected(&mut r, c));
}

#[test]
fn mqtt_4_12_0_3_v5_answer_other_than_continue_authentication_is_a_protocol_error() {
    let (mut r, c) = mid_exchange();
    r.send_packet(
        c,
        V5,
        auth(ReasonCode::ReAuthenticate, "CHALLENGE", b"signed"),
    );
    assert_eq!(
        r.expect_connack(c, V5).reason_code,
        ReasonCode::ProtocolError
    );
    r.expect_closed(c);
    r.expect_violation(c, ProtocolViolation::AuthOutOfSequence);
}

#[test]
fn mqtt_4_12_0_5_v5_auth_with_another_method_is_a_protocol_error() {
    let (mut r, c) = mid_exchange();
    r.send_packet(
        c,
        V5,
        auth(ReasonCode::ContinueAuthentication, "TOKEN", b"signed"),
    );
    assert_eq!(
        r.expect_connack(c, V5).reason_code,
        ReasonCode::ProtocolError
    );
    r.expect_closed(c);
    r.expect_violation(c, ProtocolViolation::AuthMethodChanged);
}

#[test]
fn mqtt_3_1_2_30_v5_packet_other_than_auth_before_connack_is_a_protocol_error() {
    let (mut r, c) = mid_exchange();
    r.send(c, &hex("C0 00"));
    assert_eq!(
        r.expect_connack(c, V5).reason_code,
        ReasonCode::ProtocolError
    );
    r.expect_closed(c);
    r.expect_violation(c, ProtocolViolation::NotAuthDuringAuthentication);
    r.expect_silence(c);
}

#[test]
fn v5_disconnect_during_authentication_closes_quietly() {
    let (mut r, c) = mid_exchange();
    r.send(c, &hex("E0 00"));
    r.expect_closed(c);
    r.expect_silence(c);
}

#[test]
fn connect_timeout_bounds_an_unfinished_authentication() {
    let (mut r, c) = mid_exchange();
    r.advance(secs(9));
    r.expect_open(c);
    r.advance(secs(1));
    r.expect_closed(c);
    r.expect_silence(c);
}

#[test]
fn mqtt_4_12_0_6_v5_connect_without_method_gets_no_method_in_connack() {
    let mut r = Raw::with_broker(Broker::with_auth(
        BrokerConfig::default(),
        Arc::new(Challenge),
        Arc::new(AllowAll),
    ));
    let (c, ack) = r.connect_with(Connect::new(V5, s("plain")));
    assert_eq!(ack.properties.authentication_method, None);
    assert_eq!(ack.properties.authentication_data, None);
    // [MQTT-4.12.0-7]: no AUTH from a client whose CONNECT had no method.
    r.send_packet(
        c,
        V5,
        auth(ReasonCode::ReAuthenticate, "CHALLENGE", b"hello"),
    );
    r.expect_disconnect(c, ReasonCode::ProtocolError);
}

#[test]
fn mqtt_4_12_1_1_v5_reauthentication_runs_the_exchange_again_and_ends_with_auth_0x00() {
    let mut r = broker();
    let (c, _) = challenge(&mut r);
    r.send_packet(
        c,
        V5,
        auth(ReasonCode::ReAuthenticate, "CHALLENGE", b"hello"),
    );
    let a = expect_auth(&mut r, c);
    assert_eq!(a.reason_code, ReasonCode::ContinueAuthentication);
    assert_eq!(
        a.properties.authentication_data.as_deref(),
        Some(&b"nonce"[..])
    );
    // Other packets keep flowing during a re-authentication.
    r.send(c, &hex("C0 00"));
    r.expect_bytes(c, &hex("D0 00"));
    r.send_packet(
        c,
        V5,
        auth(ReasonCode::ContinueAuthentication, "CHALLENGE", b"signed"),
    );
    let a = expect_auth(&mut r, c);
    assert_eq!(a.reason_code, ReasonCode::Success);
    assert_eq!(a.properties.authentication_method, Some(s("CHALLENGE")));
    assert_eq!(
        a.properties.authentication_data.as_deref(),
        Some(&b"welcome"[..])
    );
    r.expect_open(c);
}

#[test]
fn mqtt_4_12_1_1_v5_reauthentication_with_another_method_is_a_protocol_error() {
    let mut r = broker();
    let (c, _) = challenge(&mut r);
    r.send_packet(c, V5, auth(ReasonCode::ReAuthenticate, "TOKEN", b"token"));
    r.expect_disconnect(c, ReasonCode::ProtocolError);
    r.expect_violation(c, ProtocolViolation::AuthMethodChanged);
}

#[test]
fn v5_continue_authentication_without_a_reauthentication_is_a_protocol_error() {
    let mut r = broker();
    let (c, _) = challenge(&mut r);
    r.send_packet(
        c,
        V5,
        auth(ReasonCode::ContinueAuthentication, "CHALLENGE", b"signed"),
    );
    r.expect_disconnect(c, ReasonCode::ProtocolError);
    r.expect_violation(c, ProtocolViolation::AuthOutOfSequence);
}

#[test]
fn mqtt_4_12_1_2_v5_failed_reauthentication_gets_disconnect_0x87() {
    let mut r = broker();
    let (c, _) = challenge(&mut r);
    r.send_packet(
        c,
        V5,
        auth(ReasonCode::ReAuthenticate, "CHALLENGE", b"hello"),
    );
    expect_auth(&mut r, c);
    r.send_packet(
        c,
        V5,
        auth(ReasonCode::ContinueAuthentication, "CHALLENGE", b"forged"),
    );
    r.expect_disconnect(c, ReasonCode::NotAuthorized);
}

/// Refuses every plain CONNECT with the code in its password.
struct CodeInPassword;

impl Authenticator for CodeInPassword {
    fn authenticate(
        &self,
        _: &ByteStr,
        _: Option<&ByteStr>,
        password: Option<&Bytes>,
    ) -> Result<(), ReasonCode> {
        let code = password.and_then(|p| p.first().copied()).unwrap_or(0);
        Err(ReasonCode::from_u8(code).unwrap_or(ReasonCode::UnspecifiedError))
    }
}

#[test]
fn authenticator_refusals_map_to_codes_the_connack_can_carry() {
    let mut r = Raw::with_broker(Broker::with_auth(
        BrokerConfig::default(),
        Arc::new(CodeInPassword),
        Arc::new(AllowAll),
    ));
    for (v, code, expected) in [
        (V5, ReasonCode::ServerBusy, ReasonCode::ServerBusy),
        (V5, ReasonCode::Banned, ReasonCode::Banned),
        // Not a refusal, or not a CONNACK code: not authorized.
        (V5, ReasonCode::Success, ReasonCode::NotAuthorized),
        (V5, ReasonCode::GrantedQoS1, ReasonCode::NotAuthorized),
        (V5, ReasonCode::TopicAliasInvalid, ReasonCode::NotAuthorized),
        // 3.1.1 return codes 3, 4 and 5.
        (V311, ReasonCode::ServerBusy, ReasonCode::ServerUnavailable),
        (
            V311,
            ReasonCode::BadUserNameOrPassword,
            ReasonCode::BadUserNameOrPassword,
        ),
        (V311, ReasonCode::Banned, ReasonCode::NotAuthorized),
        (V311, ReasonCode::Success, ReasonCode::NotAuthorized),
    ] {
        let mut c = Connect::new(v, s("who"));
        c.username = Some(s("u"));
        c.password = Some(Bytes::copy_from_slice(&[code.as_u8()]));
        assert_eq!(refused(&mut r, c), expected, "{v:?} {code}");
    }
}

#[test]
fn v5_malformed_or_oversized_packet_during_authentication_gets_connack_0x81_or_0x95() {
    for (bytes, code) in [
        // AUTH with a reserved flag bit set.
        ("F1 00", ReasonCode::MalformedPacket),
        // A remaining length above the broker's maximum packet size.
        ("F0 FF FF FF 7F", ReasonCode::PacketTooLarge),
    ] {
        let (mut r, c) = mid_exchange();
        r.send(c, &hex(bytes));
        assert_eq!(r.expect_connack(c, V5).reason_code, code, "{bytes}");
        r.expect_closed(c);
    }
}
