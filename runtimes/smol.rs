//! The `smol` runtime adapter (drivers arrive with the runtime issue).
