//! A fast hasher for maps keyed by small identifiers ([`ConnId`](crate::broker::ConnId),
//! [`SessionId`](crate::broker::tree::SessionId), [`PacketId`](crate::PacketId)).
//!
//! The standard library's SipHash resists keys chosen to collide, at ~20 instructions per
//! integer; these identifiers are assigned by this crate (connections, sessions, outbound packet
//! identifiers) or bounded by a receive maximum (a client's QoS 2 packet identifiers), so a
//! multiply-and-rotate hash serves them at a fraction of the cost. Keys a peer picks freely
//! (client identifiers, topic levels) keep SipHash.
//! Crate-private: the runtimes use it through `crate::hash` too.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` keyed by identifiers, hashed with [`IdHasher`].
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// A `HashSet` of identifiers, hashed with [`IdHasher`].
pub(crate) type IdSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

/// Multiply-and-rotate hashing of integer keys (the FxHash scheme): every word is mixed in with
/// one rotate, one xor and one multiplication by an odd constant, which keeps sequential keys
/// in distinct buckets. Not for keys an adversary chooses without bound.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

/// An odd constant with well-spread bits (2^64 / the golden ratio).
const SEED: u64 = 0x9E37_79B9_7F4A_7C15;

impl IdHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for IdHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};

    fn hash<T: Hash>(t: T) -> u64 {
        BuildHasherDefault::<IdHasher>::default().hash_one(t)
    }

    #[test]
    fn sequential_keys_fill_distinct_buckets() {
        // The low bits pick a bucket: 1024 sequential ids land in 1024 distinct buckets of a
        // 1024-bucket table, and the top 7 bits (the table's tag) are not all alike.
        let mut buckets = HashSet::new();
        let mut tags = HashSet::new();
        for i in 0u64..1024 {
            let h = hash(i);
            buckets.insert(h & 1023);
            tags.insert(h >> 57);
        }
        assert_eq!(buckets.len(), 1024);
        assert!(tags.len() > 64, "only {} distinct tags", tags.len());
    }

    #[test]
    fn byte_writes_take_every_byte() {
        assert_ne!(hash(&b"abcdefgh1"[..]), hash(&b"abcdefgh2"[..]));
        assert_ne!(hash(&b"a"[..]), hash(&b"b"[..]));
    }

    #[test]
    fn maps_work() {
        let mut m: IdMap<u16, u16> = IdMap::default();
        for i in 0..1000 {
            m.insert(i, i * 2);
        }
        assert!((0..1000).all(|i| m[&i] == i * 2));
        let s: IdSet<u64> = (0..100).collect();
        assert!(s.contains(&99) && !s.contains(&100));
    }
}
