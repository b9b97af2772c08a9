//! CONNECT validation, authentication (plain and MQTT 5 enhanced, with re-authentication),
//! and the CONNACK of a [`ServerConnection`].

use std::num::{NonZeroU16, NonZeroU32};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::close::Close;
use super::{is_sys, ConnEvent, ServerConnection, State, Timer};
use crate::broker::auth::{AuthExchange, AuthStep, CredentialCheck};
use crate::broker::mail::{ConnectRequest, Handover, OutFlow, ToRouter};
use crate::codec::{
    valid_connack, Auth, AuthProperties, ConnAck, Connect, Encoder, Packet, MAX_PACKET_SIZE,
};
use crate::error::{ConnectionError, ProtocolViolation};
use crate::types::{ByteStr, ProtocolVersion, QoS, ReasonCode};

/// A CONNECT waiting for a deferred credentials check.
pub(super) struct Checking {
    pub(super) connect: Connect,
    /// Until [`ServerConnection::poll_credentials`] hands it out.
    pub(super) check: Option<CredentialCheck>,
}

/// The enhanced authentication of a connection whose CONNECT named a method.
pub(super) struct AuthState {
    /// The method of the CONNECT; every AUTH must repeat it ([MQTT-4.12.0-5]).
    pub(super) method: ByteStr,
    /// The exchange running now, if one is (at CONNECT, or a re-authentication).
    pub(super) exchange: Option<Box<dyn AuthExchange>>,
    /// The CONNECT waiting for its exchange to finish.
    pub(super) pending_connect: Option<Box<Connect>>,
    /// Authentication data for the CONNACK.
    pub(super) data: Option<Bytes>,
}

impl ServerConnection {
    /// Refuses the CONNECT: CONNACK with `code` (the 3.1.x return code for it) and a reason
    /// string for MQTT 5 clients, then close.
    pub(super) fn refuse(&mut self, code: ReasonCode) {
        self.refuse_with(code, None);
    }

    fn refuse_with(&mut self, code: ReasonCode, server_reference: Option<ByteStr>) {
        // A refusal is an error code whatever the authenticator returned.
        let code = if !code.is_error() {
            ReasonCode::NotAuthorized
        } else if self.protocol.is_v5() {
            if valid_connack(code) {
                code
            } else {
                ReasonCode::NotAuthorized
            }
        } else {
            v3_refusal(code)
        };
        self.denied(
            crate::broker::DeniedAction::Connect(code),
            code.description(),
        );
        let mut ack = ConnAck::accepted(false);
        ack.reason_code = code;
        if self.protocol.is_v5() {
            // Always allowed on CONNACK ([MQTT-3.1.2-29]); dropped if it does not fit
            // ([MQTT-3.2.2-19]).
            if self.config.reason_strings {
                ack.properties.reason_string = ByteStr::try_from(code.description()).ok();
            }
            ack.properties.server_reference = server_reference;
        }
        self.state = State::New;
        self.refused = Some(code);
        self.send(&ack.into());
        self.close(
            Close::fault(code, ConnectionError::Refused(code))
                .without_disconnect()
                .will(false),
        );
    }

    pub(super) fn on_connect(&mut self, c: Connect) {
        self.protocol = c.protocol;
        self.decoder.version = c.protocol;
        self.encoder = Encoder::new(c.protocol);
        // The client's limit applies to CONNACK too ([MQTT-3.1.2-24]).
        self.encoder.max_packet_size = c
            .properties
            .maximum_packet_size
            .map_or(MAX_PACKET_SIZE, NonZeroU32::get);
        self.problem_info = c.properties.request_problem_information != Some(false);
        self.response_info = c.properties.request_response_information == Some(true);
        let v5 = c.protocol.is_v5();
        // Until now these held what the connection was given: the identifier it assigns to a
        // client that sends none, and the transport's peer identity (no room spent on them).
        let assigned = std::mem::take(&mut self.client_id);
        let peer_identity = self.username.take();
        // What the client claims, for a refusal's report until the identity is settled (a
        // slice of the CONNECT: a refusal ends the connection, and every other way replaces it
        // with a copy of its own below).
        self.client_id = c.client_id.clone();
        self.username = c
            .username
            .as_ref()
            .map(|u| ByteStr::from_checked(Bytes::copy_from_slice(u.as_bytes())));
        if let Some(r) = self.config.redirect.clone() {
            let code = if r.permanent {
                ReasonCode::ServerMoved
            } else {
                ReasonCode::UseAnotherServer
            };
            return self.refuse_with(code, Some(r.server_reference));
        }
        // Copies of their own: slices of the CONNECT would keep the whole packet (password,
        // will payload) alive as long as the connection and its session.
        let own = |s: &ByteStr| ByteStr::from_checked(Bytes::copy_from_slice(s.as_bytes()));
        // The transport authenticated the peer: its identity is the user name.
        let identity_is_user = peer_identity.is_some() || self.config.use_identity_as_username;
        if identity_is_user {
            match peer_identity {
                Some(id) => self.username = Some(id),
                None => return self.refuse(ReasonCode::NotAuthorized),
            }
        }
        let mut client_id = c.client_id.clone();
        if self.config.use_username_as_clientid {
            match &self.username {
                Some(u) => client_id = u.clone(),
                None => return self.refuse(ReasonCode::NotAuthorized),
            }
        }
        if client_id.len() > self.config.max_client_id_len {
            return self.refuse(ReasonCode::ClientIdentifierNotValid);
        }
        if client_id.is_empty() {
            // [MQTT-3.1.3-8]: 3.1.1 refuses an empty id with a persistent session; 3.1 always.
            if c.protocol == ProtocolVersion::V3_1 || (!v5 && !c.clean_start) {
                return self.refuse(ReasonCode::ClientIdentifierNotValid);
            }
            // Random (from the router's source), so that no client can guess another's.
            client_id = assigned;
            self.assigned_id = true;
        }
        self.client_id = own(&client_id);
        if let Some(method) = c.properties.authentication_method.clone() {
            let exchange =
                self.authenticator
                    .start_auth(&self.client_id, self.username.as_ref(), &method);
            let Some(mut exchange) = exchange else {
                // [MQTT-4.12.0-1]: a method the broker does not support.
                return self.refuse(ReasonCode::BadAuthenticationMethod);
            };
            let step = exchange.step(c.properties.authentication_data.as_ref());
            self.auth = Some(Box::new(AuthState {
                method,
                exchange: Some(exchange),
                pending_connect: Some(Box::new(c)),
                data: None,
            }));
            return self.auth_step(step);
        }
        if identity_is_user {
            return self.finish_connect(c);
        }
        if c.username.is_none() && !self.config.allow_anonymous {
            return self.refuse(ReasonCode::NotAuthorized);
        }
        if self.authenticator.defers() {
            // Checked away from here: the driver runs it and answers `handle_credentials`.
            let check = CredentialCheck {
                client_id: self.client_id.clone(),
                username: self.username.clone(),
                password: c.password.clone(),
                authenticator: self.authenticator.clone(),
            };
            self.checking = Some(Box::new(Checking {
                connect: c,
                check: Some(check),
            }));
            self.state = State::Checking;
            return;
        }
        if let Err(code) = self.authenticator.authenticate(
            &self.client_id,
            c.username.as_ref(),
            c.password.as_ref(),
        ) {
            return self.refuse(code);
        }
        self.finish_connect(c);
    }

    /// Acts on what the authenticator decided, during the connect or a re-authentication.
    fn auth_step(&mut self, step: AuthStep) {
        let Some(method) = self.auth.as_ref().map(|a| a.method.clone()) else {
            return;
        };
        let connecting = self.state != State::Connected;
        match step {
            AuthStep::Continue(data) => {
                // [MQTT-4.12.0-2]: AUTH 0x18 with the same method ([MQTT-4.12.0-5]).
                self.send_auth(ReasonCode::ContinueAuthentication, method, Some(data));
                if connecting {
                    self.state = State::Authenticating;
                }
            }
            AuthStep::Success(data) => {
                if let Some(a) = &mut self.auth {
                    a.exchange = None;
                }
                if connecting {
                    let pending = self.auth.as_mut().and_then(|a| {
                        a.data = data;
                        a.pending_connect.take()
                    });
                    if let Some(c) = pending {
                        self.finish_connect(*c);
                    }
                } else {
                    self.send_auth(ReasonCode::Success, method, data);
                }
            }
            AuthStep::Failure(code) => {
                if connecting {
                    // [MQTT-4.12.0-4]: refused at any point, CONNACK then close.
                    self.refuse(code);
                } else {
                    // [MQTT-4.12.1-2]: a failed re-authentication ends the connection.
                    let code = code.for_disconnect();
                    let code = if code.is_error() {
                        code
                    } else {
                        ReasonCode::NotAuthorized
                    };
                    self.close(Close::fault(code, ConnectionError::Refused(code)));
                }
            }
        }
    }

    fn send_auth(&mut self, reason_code: ReasonCode, method: ByteStr, data: Option<Bytes>) {
        let auth = Auth {
            reason_code,
            properties: AuthProperties {
                authentication_method: Some(method),
                authentication_data: data,
                ..AuthProperties::default()
            },
        };
        self.send(&Packet::Auth(auth));
    }

    /// An AUTH from the client: the next step of the connect's exchange, or a
    /// re-authentication after CONNACK.
    pub(super) fn on_auth(&mut self, a: Auth) {
        let Some(state) = &mut self.auth else {
            // [MQTT-4.12.0-7]: no method in CONNECT, no AUTH.
            return self.violation(ProtocolViolation::AuthWithoutMethod);
        };
        if a.properties.authentication_method.as_ref() != Some(&state.method) {
            // [MQTT-4.12.0-5] / [MQTT-4.12.1-1]: the method of the CONNECT, always.
            return self.violation(ProtocolViolation::AuthMethodChanged);
        }
        let data = a.properties.authentication_data.as_ref();
        let step = match (a.reason_code, &mut state.exchange) {
            // [MQTT-4.12.0-3]: the client answers AUTH 0x18 with AUTH 0x18.
            (ReasonCode::ContinueAuthentication, Some(exchange)) => exchange.step(data),
            (ReasonCode::ReAuthenticate, None) if self.state == State::Connected => {
                let exchange = self.authenticator.start_auth(
                    &self.client_id,
                    self.username.as_ref(),
                    &state.method,
                );
                match exchange {
                    Some(mut exchange) => {
                        let step = exchange.step(data);
                        state.exchange = Some(exchange);
                        step
                    }
                    None => AuthStep::Failure(ReasonCode::NotAuthorized),
                }
            }
            _ => return self.violation(ProtocolViolation::AuthOutOfSequence),
        };
        self.auth_step(step);
    }

    /// The rest of CONNECT once the client is authenticated: the will, keep-alive, windows,
    /// and the session asked of the router.
    pub(super) fn finish_connect(&mut self, c: Connect) {
        let v5 = c.protocol.is_v5();
        if let Some(w) = &c.will {
            let sys = is_sys(w.topic.as_bytes());
            if sys
                || !self
                    .authorizer
                    .can_publish(&self.client_id, self.username.as_ref(), &w.topic)
            {
                return self.refuse(ReasonCode::NotAuthorized);
            }
            if !self.topic_within_limits(w.topic.as_bytes()) {
                return self.refuse(ReasonCode::TopicNameInvalid);
            }
            if w.qos > self.config.maximum_qos {
                return self.refuse(ReasonCode::QoSNotSupported);
            }
            if w.retain && !self.config.retain_available {
                return self.refuse(ReasonCode::RetainNotSupported);
            }
        }
        let mut keep_alive = c.keep_alive;
        if v5 {
            if let Some(k) = self.config.server_keep_alive {
                keep_alive = k;
            } else if keep_alive > self.config.max_keep_alive
                || keep_alive == 0 && self.config.max_keep_alive < u16::MAX
            {
                keep_alive = self.config.max_keep_alive;
            }
        }
        // [MQTT-3.1.2-24]: one and a half times the keep-alive.
        self.keep_alive = Duration::from_millis(u64::from(keep_alive) * 1500);
        self.server_keep_alive = (v5 && keep_alive != c.keep_alive).then_some(keep_alive);
        let session_expiry = if v5 {
            match c.properties.session_expiry_interval.unwrap_or(0) {
                // A session that would never expire ends after this, if set.
                u32::MAX => self.config.persistent_session_expiry.unwrap_or(u32::MAX),
                e => e,
            }
        } else if c.clean_start {
            0
        } else {
            self.config.persistent_session_expiry.unwrap_or(u32::MAX)
        };
        self.session_expiry = session_expiry;
        self.clean_start = c.clean_start;
        let window = if v5 {
            c.properties
                .receive_maximum
                .map_or(u16::MAX, NonZeroU16::get)
        } else {
            self.config.max_inflight_v3
        };
        self.window = usize::from(window.max(1));
        if v5 {
            // [MQTT-3.1.2-26]/[MQTT-3.1.2-27]: never above the client's maximum, none if 0.
            let client_max = c.properties.topic_alias_maximum.unwrap_or(0);
            self.alias_out_max = client_max.min(self.config.outbound_topic_aliases);
        }
        self.state = State::Connecting;
        self.to_router
            .push_back(ToRouter::Connect(Box::new(ConnectRequest {
                client_id: self.client_id.clone(),
                username: self.username.clone(),
                protocol: c.protocol,
                clean_start: c.clean_start,
                session_expiry,
                will: c.will,
                window,
            })));
    }

    /// The router refused the session (too many connections).
    pub(super) fn router_refused(&mut self, code: ReasonCode) {
        if self.state == State::Connecting {
            self.refuse(code);
        }
    }

    pub(super) fn accepted(&mut self, now: Instant, session_present: bool, handover: Handover) {
        if self.state != State::Connecting {
            return;
        }
        // MQTT 3.1's CONNACK has no session present flag.
        let flag = session_present && self.protocol != ProtocolVersion::V3_1;
        let mut ack = ConnAck::accepted(flag);
        if self.protocol.is_v5() {
            let p = &mut ack.properties;
            let cfg = &self.config;
            p.receive_maximum = NonZeroU16::new(cfg.receive_maximum);
            // No property without a limit: its absence means none ([MQTT-3.2.2-23]).
            p.maximum_packet_size =
                NonZeroU32::new(cfg.max_packet_size).filter(|m| m.get() < MAX_PACKET_SIZE);
            p.topic_alias_maximum = Some(cfg.topic_alias_maximum);
            if cfg.maximum_qos < QoS::ExactlyOnce {
                p.maximum_qos = Some(cfg.maximum_qos);
            }
            if !cfg.retain_available {
                p.retain_available = Some(false);
            }
            if self.assigned_id {
                p.assigned_client_identifier = Some(self.client_id.clone());
            }
            p.server_keep_alive = self.server_keep_alive;
            // [MQTT-3.1.2-28]: only when asked for.
            if self.response_info {
                p.response_information = cfg.response_information.clone();
            }
            // [MQTT-4.12.0-5]: a successful CONNACK repeats the method; [MQTT-4.12.0-6]: and
            // has none when the CONNECT had none.
            if let Some(a) = &mut self.auth {
                p.authentication_method = Some(a.method.clone());
                p.authentication_data = a.data.take();
            }
        }
        let sent = self.send(&ack.into());
        self.let_go = true;
        // Identifiers of an earlier connection wait for their PUBREL afresh, from now.
        for &id in handover.incoming_qos2.iter() {
            self.await_rel(now, id, None);
        }
        self.replayable = handover.completed;
        if !sent {
            // Even the accepting CONNACK is above the client's maximum packet size: the
            // session goes back to the router untouched and the connection ends.
            for (id, flow) in handover.outbound {
                self.track(id, flow);
            }
            return self.close(
                Close::violation(ProtocolViolation::ConnAckTooLarge)
                    .without_disconnect()
                    .will(false),
            );
        }
        self.state = State::Connected;
        self.decoder.max_packet_size = self.config.max_packet_size;
        self.timers.stop(Timer::Connect);
        self.deadline_moved = true;
        self.arm_keep_alive(now);
        self.events.push_back(ConnEvent::Connected(session_present));
        // [MQTT-4.4.0-1]: resend unacknowledged PUBLISH (DUP) and PUBREL in their order, within
        // the client's receive maximum ([MQTT-3.3.4-9]); the rest as acknowledgements free it.
        // Every flow before this one still open holds a window slot.
        for (id, flow) in handover.outbound {
            let publish = matches!(flow, OutFlow::Publish(_));
            let held = self.outbound.len();
            self.track(id, flow);
            if self.resend_backlog.is_empty() && !(publish && held >= self.window) {
                self.resend(id);
            } else {
                self.resend_backlog.push_back(id);
            }
        }
        self.process_input(now);
    }

    /// Whether a topic name or filter is within the configured length and depth.
    ///
    /// On the bytes (a level separator is one ASCII byte): every inbound PUBLISH asks, and
    /// the `&str` of a topic costs a UTF-8 check.
    pub(super) fn topic_within_limits(&self, topic: &[u8]) -> bool {
        topic.len() <= self.config.max_topic_len
            && topic.iter().filter(|&&b| b == b'/').count() < self.config.max_topic_levels
    }
}

/// A refusal in MQTT 3.1.x terms: the return code for it, else server unavailable for
/// limits and redirection, else not authorized.
fn v3_refusal(code: ReasonCode) -> ReasonCode {
    match code {
        ReasonCode::BadUserNameOrPassword
        | ReasonCode::ClientIdentifierNotValid
        | ReasonCode::ServerUnavailable
        | ReasonCode::UnsupportedProtocolVersion => code,
        ReasonCode::QuotaExceeded
        | ReasonCode::ServerBusy
        | ReasonCode::UseAnotherServer
        | ReasonCode::ServerMoved
        | ReasonCode::ConnectionRateExceeded => ReasonCode::ServerUnavailable,
        _ => ReasonCode::NotAuthorized,
    }
}
