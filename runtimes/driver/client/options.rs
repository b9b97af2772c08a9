//! What a runtime client starts with beyond its configuration.

use crate::client::{ClientConfig, ClientSession as Session, SessionState};
use crate::codec::Auth;

/// Answers the server's AUTH challenges (MQTT 5 enhanced authentication): given the server's
/// AUTH, the client's next AUTH, or `None` to leave it to the application (it then arrives as
/// [`Event::Auth`], to answer with the client's `auth`).
///
/// [`Event::Auth`]: crate::client::Event::Auth
pub type AuthHandler = Box<dyn FnMut(&Auth) -> Option<Auth> + Send>;

/// How a runtime client starts, beyond its [`ClientConfig`]: build it with
/// [`ConnectOptions::new`] and the `with_*` methods, and pass it to `connect_with`.
///
/// ```
/// use tinymqtt::client::SessionState;
/// use tinymqtt::codec::Auth;
/// use tinymqtt::runtimes::ConnectOptions;
///
/// let saved = SessionState::default(); // e.g. read back from disk
/// let options = ConnectOptions::new()
///     .with_session(saved)
///     .with_auth(|challenge: &Auth| Some(Auth::default()));
/// ```
#[non_exhaustive]
#[derive(Default)]
pub struct ConnectOptions {
    /// A session exported earlier (the client's `session_state`) to resume: its unfinished
    /// QoS 1/2 flows are resent once the server resumes the session.
    pub session: Option<SessionState>,
    /// Answers AUTH challenges, from the CONNECT's enhanced authentication on (the first
    /// connection completes inside `connect_with`, before the application could answer).
    pub auth: Option<AuthHandler>,
}

impl ConnectOptions {
    /// No session to resume, AUTH left to the application.
    pub fn new() -> ConnectOptions {
        ConnectOptions::default()
    }

    /// Resumes `session`.
    pub fn with_session(mut self, session: SessionState) -> ConnectOptions {
        self.session = Some(session);
        self
    }

    /// Answers AUTH challenges with `handler`.
    pub fn with_auth(
        mut self,
        handler: impl FnMut(&Auth) -> Option<Auth> + Send + 'static,
    ) -> ConnectOptions {
        self.auth = Some(Box::new(handler));
        self
    }

    /// The sans-IO session these options start from.
    pub(crate) fn session_for(&mut self, config: ClientConfig) -> Session {
        match self.session.take() {
            Some(s) => Session::with_session(config, s),
            None => Session::new(config),
        }
    }
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("session", &self.session)
            .field("auth", &self.auth.as_ref().map(|_| "handler"))
            .finish()
    }
}
