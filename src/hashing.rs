//! Hashing for the maps on the forwarding path, which SipHash (std's default) made a
//! large share of a servent's time.
//!
//! - [`IdMap`]: keys this process hands out itself (connection tokens, link ids). They
//!   are counters, never chosen by a peer, so a multiply spreads them well enough.
//! - [`FoldHashSeeds`]: keys a peer chooses (query ids, looked-up keys). A keyed
//!   multiply-fold: a few cycles a word, with seeds random per process, so a peer
//!   cannot aim its keys at one bucket without knowing them.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

/// A `HashMap` for keys that are our own counters.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<CounterHasher>>;

#[derive(Default)]
pub struct CounterHasher(u64);

impl Hasher for CounterHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(self.0 ^ u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: odd, so consecutive counters land in distinct buckets, and
        // the high bits (hashbrown's tags) vary too.
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`FoldHasher`]s with seeds random per process (from std's own random keys).
#[derive(Debug, Clone)]
pub struct FoldHashSeeds {
    seed: u64,
    multiplier: u64,
}

impl Default for FoldHashSeeds {
    fn default() -> FoldHashSeeds {
        let random = RandomState::new();
        FoldHashSeeds {
            seed: random.hash_one(0x5EED_u64),
            multiplier: random.hash_one(0xFAC7_u64) | 1,
        }
    }
}

impl BuildHasher for FoldHashSeeds {
    type Hasher = FoldHasher;
    fn build_hasher(&self) -> FoldHasher {
        FoldHasher {
            state: self.seed,
            multiplier: self.multiplier,
        }
    }
}

pub struct FoldHasher {
    state: u64,
    multiplier: u64,
}

impl Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.write_u64(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            let mut word = [0u8; 8];
            word[..tail.len()].copy_from_slice(tail);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, word: u64) {
        // The high and low halves of the 128-bit product, folded: every input bit
        // reaches every output bit.
        let product = u128::from(self.state ^ word) * u128::from(self.multiplier);
        self.state = (product as u64) ^ ((product >> 64) as u64);
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_spread_over_buckets_and_tags() {
        let hash = |n: u64| {
            let mut h = CounterHasher::default();
            h.write_u64(n);
            h.finish()
        };
        let low: std::collections::HashSet<u64> = (0..1024).map(|n| hash(n) & 1023).collect();
        let high: std::collections::HashSet<u64> = (0..1024).map(|n| hash(n) >> 57).collect();
        assert_eq!(low.len(), 1024, "distinct low bits for 1024 counters");
        assert_eq!(high.len(), 128, "every 7-bit tag used");
    }

    #[test]
    fn fold_hash_tells_keys_apart_and_depends_on_its_seeds() {
        let seeds = FoldHashSeeds::default();
        let keys: Vec<Vec<u8>> = (0..2000u32)
            .map(|n| format!("key{n}").into_bytes())
            .chain([
                vec![],
                vec![0],
                vec![0, 0],
                b"12345678".to_vec(),
                b"123456789".to_vec(),
            ])
            .collect();
        let hashes: std::collections::HashSet<u64> =
            keys.iter().map(|k| seeds.hash_one(k)).collect();
        assert_eq!(
            hashes.len(),
            keys.len(),
            "no collisions among {} keys",
            keys.len()
        );
        let other = FoldHashSeeds::default();
        assert_ne!(seeds.hash_one(b"key"), other.hash_one(b"key"));
    }
}
