//! The `tokio` runtime adapter (drivers arrive with the runtime issue).
