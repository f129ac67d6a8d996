//! Maps keyed by ids this process hands out itself (connection tokens, link ids).
//!
//! They are looked up for every frame and every copy of it. Their keys are counters,
//! never chosen by a peer, so a multiply spreads them well enough; SipHash, std's
//! default (built against keys an attacker picks), was a measurable share of flood
//! forwarding.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

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
}
