//! The `async-std` runtime adapter, sharing smol's futures-io path (drivers arrive with the runtime issue).
