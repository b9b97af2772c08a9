//! The `blocking` runtime adapter (drivers arrive with the runtime issue).
