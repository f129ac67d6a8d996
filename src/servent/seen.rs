//! The seen set: which queries this servent has already handled.
//!
//! Reliable flooding needs a query to be recognised for as long as copies of it can
//! still arrive, not forever. Entries expire after a lifetime and the set holds at
//! most `capacity` of them (the oldest go first), so memory plateaus under any load.
//! Time is a parameter: tests move a fake clock instead of sleeping.
//!
//! Memory is what bounds this structure under attack, so an entry is small: the 12-byte
//! id in the set, and the id with a 4-byte expiry (tenths of a second since the cache
//! was made, good for 13 years) in the queue.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// One query, named the same everywhere in the network: the client's reply address and
/// its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryId {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub seq: u32,
}

impl Hash for QueryId {
    /// Two words rather than field by field: with [`IdHasher`] that is two multiplies.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from(u32::from(self.ip)) << 32 | u64::from(self.seq));
        state.write_u16(self.port);
    }
}

/// Seeds for [`IdHasher`], random per process.
///
/// Every flood a servent forwards is inserted here, so SipHash (std's default) was a
/// quarter of the forwarding time. A multiply-fold hash is a few cycles; its seeds come
/// from std's random keys, so a neighbour choosing query ids cannot aim them at one
/// bucket without knowing them.
#[derive(Debug, Clone)]
pub struct IdHashSeeds {
    seed: u64,
    multiplier: u64,
}

impl Default for IdHashSeeds {
    fn default() -> IdHashSeeds {
        let random = RandomState::new();
        IdHashSeeds {
            seed: random.hash_one(0x5EED_u64),
            multiplier: random.hash_one(0xFAC7_u64) | 1,
        }
    }
}

impl BuildHasher for IdHashSeeds {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher {
            state: self.seed,
            multiplier: self.multiplier,
        }
    }
}

pub struct IdHasher {
    state: u64,
    multiplier: u64,
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, word: u64) {
        // The high and low halves of the 128-bit product, folded: every input bit
        // reaches every output bit.
        let product = u128::from(self.state ^ word) * u128::from(self.multiplier);
        self.state = (product as u64) ^ ((product >> 64) as u64);
    }

    fn write_u16(&mut self, word: u16) {
        self.write_u64(u64::from(word));
    }

    fn write_u32(&mut self, word: u32) {
        self.write_u64(u64::from(word));
    }

    fn finish(&self) -> u64 {
        self.state
    }
}

/// A set of recently seen queries, bounded by age and by size.
#[derive(Debug)]
pub struct SeenCache {
    /// Lifetime in ticks (tenths of a second), at least one.
    lifetime: u32,
    capacity: usize,
    /// Tick 0: when the cache was made (or first used, if `now` came earlier).
    epoch: Option<Instant>,
    members: HashSet<QueryId, IdHashSeeds>,
    /// Members in insertion order, with the tick each expires at. Insertions come with
    /// a clock that never goes back, so the front is always the next to expire.
    by_expiry: VecDeque<(u32, QueryId)>,
}

const TICK: Duration = Duration::from_millis(100);

impl SeenCache {
    pub fn new(lifetime: Duration, capacity: usize) -> SeenCache {
        let ticks = lifetime.as_millis().div_ceil(TICK.as_millis()).max(1);
        SeenCache {
            lifetime: u32::try_from(ticks).unwrap_or(u32::MAX),
            capacity: capacity.max(1),
            epoch: None,
            members: HashSet::default(),
            by_expiry: VecDeque::new(),
        }
    }

    fn tick(&mut self, now: Instant) -> u32 {
        let epoch = *self.epoch.get_or_insert(now);
        let ticks = now.saturating_duration_since(epoch).as_millis() / TICK.as_millis();
        u32::try_from(ticks).unwrap_or(u32::MAX)
    }

    /// Records `id` as seen at `now`. Returns false if it was already there.
    pub fn insert(&mut self, id: QueryId, now: Instant) -> bool {
        self.expire(now);
        if self.members.contains(&id) {
            return false;
        }
        while self.members.len() >= self.capacity {
            self.pop_oldest();
        }
        self.members.insert(id);
        // Ticks round `now` down; one more keeps the id for at least the whole lifetime.
        let expiry = self.tick(now).saturating_add(self.lifetime + 1);
        self.by_expiry.push_back((expiry, id));
        true
    }

    pub fn contains(&self, id: &QueryId) -> bool {
        self.members.contains(id)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Forgets every entry whose lifetime is over at `now`.
    pub fn expire(&mut self, now: Instant) {
        let now = self.tick(now);
        while matches!(self.by_expiry.front(), Some((expiry, _)) if *expiry <= now) {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, id)) = self.by_expiry.pop_front() {
            self.members.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u32) -> QueryId {
        QueryId {
            ip: Ipv4Addr::new(10, 0, 0, 1),
            port: 5000,
            seq,
        }
    }

    #[test]
    fn duplicates_are_refused_until_expiry() {
        let start = Instant::now();
        let mut seen = SeenCache::new(Duration::from_secs(60), 100);
        assert!(seen.insert(id(1), start));
        assert!(!seen.insert(id(1), start + Duration::from_secs(59)));
        assert!(!seen.insert(id(1), start + Duration::from_millis(60_050)));
        assert!(seen.insert(id(1), start + Duration::from_millis(60_100)));
    }

    #[test]
    fn short_lifetimes_still_expire() {
        let start = Instant::now();
        let mut seen = SeenCache::new(Duration::from_millis(1), 100);
        assert!(seen.insert(id(1), start));
        assert!(!seen.insert(id(1), start + Duration::from_millis(50)));
        assert!(seen.insert(id(1), start + Duration::from_millis(200)));
    }

    #[test]
    fn capacity_evicts_the_oldest() {
        let start = Instant::now();
        let mut seen = SeenCache::new(Duration::from_secs(60), 3);
        for seq in 0..5 {
            assert!(seen.insert(id(seq), start));
        }
        assert_eq!(seen.len(), 3);
        assert!(!seen.contains(&id(0)) && !seen.contains(&id(1)));
        assert!(seen.contains(&id(2)) && seen.contains(&id(4)));
    }

    #[test]
    fn same_seq_from_another_client_is_another_query() {
        let now = Instant::now();
        let mut seen = SeenCache::new(Duration::from_secs(60), 10);
        assert!(seen.insert(id(1), now));
        assert!(seen.insert(
            QueryId {
                port: 5001,
                ..id(1)
            },
            now
        ));
        assert!(seen.insert(
            QueryId {
                ip: Ipv4Addr::new(10, 0, 0, 2),
                ..id(1)
            },
            now
        ));
    }
}
