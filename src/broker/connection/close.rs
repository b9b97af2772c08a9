//! How a connection ends: once, with the right reason code, DISCONNECT when the peer may get
//! one, its session handed back to the router.

use super::{ConnEvent, ServerConnection, State};
use crate::broker::mail::{Handover, ToRouter};
use crate::codec::{valid_connack, ConnAck, DecodeError, Disconnect, Encoder, Packet};
use crate::error::{CloseReason, ConnectionError, Initiator, ProtocolViolation};
use crate::types::{ByteStr, PacketId, ProtocolVersion, ReasonCode};

/// How a connection ends, as one value: who ended it, the reason code, the fault (if any),
/// whether an MQTT 5 client is sent a DISCONNECT with that code (only ever once connected:
/// [MQTT-3.14.0-1]), and whether the session's will is published.
#[derive(Debug)]
pub(super) struct Close {
    initiator: Initiator,
    reason_code: ReasonCode,
    error: Option<ConnectionError>,
    disconnect: bool,
    will: bool,
}

impl Close {
    /// This side ends it for the peer's fault or a timeout: DISCONNECT with `code`, and the
    /// will goes out.
    pub(super) fn fault(code: ReasonCode, error: ConnectionError) -> Close {
        Close {
            initiator: Initiator::Local,
            reason_code: code,
            error: Some(error),
            disconnect: true,
            will: true,
        }
    }

    /// The peer broke rule `v`: DISCONNECT with its reason code, and the will goes out.
    pub(super) fn violation(v: ProtocolViolation) -> Close {
        Close::fault(v.reason_code(), ConnectionError::Violation(v))
    }

    /// This side ends it without a fault (a takeover, a shutdown): DISCONNECT with `code`, no
    /// will.
    pub(super) fn local(code: ReasonCode) -> Close {
        Close {
            initiator: Initiator::Local,
            reason_code: code,
            error: None,
            disconnect: true,
            will: false,
        }
    }

    /// The client ended it with a DISCONNECT carrying `code`: nothing is sent back, no will.
    pub(super) fn remote(code: ReasonCode, error: Option<ConnectionError>) -> Close {
        Close {
            initiator: Initiator::Remote,
            reason_code: code,
            error,
            disconnect: false,
            will: false,
        }
    }

    /// The transport ended without a DISCONNECT: the will goes out.
    pub(super) fn transport() -> Close {
        Close {
            initiator: Initiator::Transport,
            reason_code: ReasonCode::UnspecifiedError,
            error: Some(ConnectionError::TransportClosed),
            disconnect: false,
            will: true,
        }
    }

    /// No DISCONNECT (the client cannot be told, or already was in a CONNACK).
    pub(super) fn without_disconnect(mut self) -> Close {
        self.disconnect = false;
        self
    }

    /// Whether the will is published.
    pub(super) fn will(mut self, will: bool) -> Close {
        self.will = will;
        self
    }
}

impl ServerConnection {
    /// Closes a transport the broker has no room for, before anything is read from it.
    pub(crate) fn refuse_transport(&mut self) {
        self.refused = Some(ProtocolViolation::TooManyConnections.reason_code());
        self.close(
            Close::violation(ProtocolViolation::TooManyConnections)
                .without_disconnect()
                .will(false),
        );
    }

    pub(super) fn decode_error(&mut self, e: DecodeError) {
        let code = e.reason_code();
        let connack = self.state == State::New;
        if connack
            && matches!(
                e,
                DecodeError::UnsupportedProtocolLevel(_) | DecodeError::InvalidProtocolName
            )
        {
            // [MQTT-3.1.2-2]: CONNACK 0x01 / 0x84, then close. The client's version is unknown,
            // so answer in 3.1.1's format, which every version can read.
            self.encoder = Encoder::new(ProtocolVersion::V3_1_1);
            let mut ack = ConnAck::accepted(false);
            ack.reason_code = ReasonCode::UnsupportedProtocolVersion;
            self.refused = Some(ack.reason_code);
            self.send(&ack.into());
        }
        self.connack_if_authenticating(code);
        self.close(Close::fault(code, ConnectionError::Decode(e)));
    }

    /// A fault found during enhanced authentication: the CONNECT is known to be MQTT 5, so a
    /// CONNACK can say why (MQTT 5 section 4.13.1).
    pub(super) fn connack_if_authenticating(&mut self, code: ReasonCode) {
        if self.state == State::Authenticating {
            let mut ack = ConnAck::accepted(false);
            ack.reason_code = if valid_connack(code) {
                code
            } else {
                ReasonCode::ProtocolError
            };
            self.send(&ack.into());
        }
    }

    /// The client broke a rule: CONNACK during authentication, DISCONNECT once connected,
    /// with the rule's reason code, then close.
    pub(super) fn violation(&mut self, v: ProtocolViolation) {
        self.connack_if_authenticating(v.reason_code());
        self.close(Close::violation(v));
    }

    /// Ends the connection once: DISCONNECT (MQTT 5, once connected) when `close` says so,
    /// the session handed back to the router, the transport to be closed.
    pub(super) fn close(&mut self, close: Close) {
        let Close {
            initiator,
            reason_code,
            error,
            disconnect,
            will,
        } = close;
        if self.state == State::Closed {
            return;
        }
        // [MQTT-3.14.0-1]: never a DISCONNECT before an accepting CONNACK.
        let connected = self.state == State::Connected;
        if disconnect && self.protocol.is_v5() && connected {
            let code = reason_code;
            let mut d = Disconnect::new(code.for_disconnect());
            // Always allowed on DISCONNECT ([MQTT-3.1.2-29]); left out if it does not fit.
            let text = error
                .as_ref()
                .map_or(code.description().into(), |e| e.to_string());
            if self.config.reason_strings {
                d.properties.reason_string = ByteStr::try_from(text).ok();
            }
            self.send(&Packet::Disconnect(d));
        }
        let was_session = matches!(self.state, State::Connecting | State::Connected);
        self.state = State::Closed;
        // Held acknowledgements are never sent: the client resends those messages.
        self.held.clear();
        self.timers.stop_all();
        self.deadline_moved = true;
        if !was_session {
            let refused = self.refused;
            self.to_router.push_back(ToRouter::Gone { refused });
        } else {
            let mut incoming: Vec<PacketId> = self.incoming_qos2.take_all();
            incoming.sort();
            let handover = Handover {
                outbound: self.outbound.take_all(),
                incoming_qos2: incoming.into_boxed_slice(),
                completed: None,
            };
            self.to_router.push_back(ToRouter::Closed {
                will: will && self.will_on_close,
                session_expiry: self.session_expiry_update,
                handover,
            });
            // Released ahead and never sent: back to the session, right behind `Closed`.
            for d in std::mem::take(&mut self.pending) {
                if !d.is_qos0() {
                    self.to_router.push_back(ToRouter::Returned(d));
                }
            }
        }
        self.events.push_back(ConnEvent::Closed(CloseReason {
            initiator,
            reason_code,
            error,
        }));
        self.events.push_back(ConnEvent::CloseTransport);
    }

    pub(super) fn on_disconnect(&mut self, d: Disconnect) {
        if let Some(e) = d.properties.session_expiry_interval {
            if self.session_expiry == 0 && e != 0 {
                // [MQTT-3.14.2-2]
                return self.violation(ProtocolViolation::SessionExpiryAfterZero);
            }
            let cap = self.config.persistent_session_expiry;
            self.session_expiry_update = Some(match e {
                u32::MAX => cap.unwrap_or(e),
                e => e,
            });
        }
        // [MQTT-3.14.4-3]: a normal DISCONNECT discards the will; 0x04 keeps it.
        let will = d.reason_code == ReasonCode::DisconnectWithWillMessage;
        let error = d
            .reason_code
            .is_error()
            .then_some(ConnectionError::Disconnected(d.reason_code));
        self.close(Close::remote(d.reason_code, error).will(will));
    }
}
