//! The client driver: the session's waiters and drain order (`ClientCore`, in `core.rs`), the
//! options a runtime client starts with (`options.rs`), and the async client: its handles
//! (`handle.rs`) and the task that drives its connection (`task.rs`).

use crate::client::SessionState;
use crate::codec::{
    Auth, Disconnect, Publish, SubscribeProperties, Subscription, UnsubscribeProperties,
};
use crate::runtimes::driver::{answer, Ack, Error, Reply, SubAck};
use crate::TopicFilter;

mod core;
#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
mod handle;
mod options;
#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
mod shared;
#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
mod task;

#[cfg(feature = "blocking")]
pub(crate) use self::core::ClientCore;
#[cfg(any(feature = "tokio", feature = "smol", feature = "async-std"))]
pub use handle::Client;
pub use options::{AuthHandler, ConnectOptions};

/// What a client handle asks its driver to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// Publish, answering with the acknowledgement.
    Publish(Publish, Reply<Ack>),
    /// Subscribe, answering with the SUBACK.
    Subscribe(Vec<Subscription>, SubscribeProperties, Reply<SubAck>),
    /// Unsubscribe, answering with the UNSUBACK.
    Unsubscribe(Vec<TopicFilter>, UnsubscribeProperties, Reply<SubAck>),
    /// Disconnect cleanly and stop, answering once the transport is closed.
    Disconnect(Disconnect, Option<Reply<()>>),
    /// Send AUTH (enhanced authentication), answering at once (the blocking runtime's way).
    #[cfg_attr(not(feature = "blocking"), allow(dead_code))]
    Auth(Auth, Reply<()>),
    /// Export the session state, answering at once (the blocking runtime's way).
    #[cfg_attr(not(feature = "blocking"), allow(dead_code))]
    Session(Reply<SessionState>),
}

/// Answers a command that cannot be carried out.
pub(crate) fn fail(command: Command, error: Error) {
    match command {
        Command::Publish(_, r) => answer(r, Err(error)),
        Command::Subscribe(_, _, r) | Command::Unsubscribe(_, _, r) => answer(r, Err(error)),
        Command::Disconnect(_, Some(r)) => answer(r, Ok(())),
        Command::Disconnect(_, None) => {}
        Command::Auth(_, r) => answer(r, Err(error)),
        Command::Session(r) => answer(r, Err(error)),
    }
}
