//! The codec: the specification's vectors, every validation rule, and round trips.

mod errors;
mod roundtrip;
mod vectors;
