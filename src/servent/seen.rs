//! The seen set: which queries this servent has already handled.
//!
//! Reliable flooding needs a query to be recognised for as long as copies of it can
//! still arrive, not forever. Entries expire after a lifetime and the set holds at
//! most `capacity` of them (the oldest go first), so memory plateaus under any load.
//! Time is a parameter: tests move a fake clock instead of sleeping.
//!
//! Memory is what bounds this structure under attack, so an entry is small: the id
//! with a 4-byte expiry (tenths of a second since the cache was made, good for 13
//! years) and the best TTL seen (one byte, for `--full-reach`) in a 16-byte queue
//! entry, and an 8-byte slot pointing at it in an index never more than half full: 32
//! bytes an entry at the default capacity.

use std::hash::{BuildHasher, Hash, Hasher};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use crate::hashing::FoldHashSeeds;

/// One query, named the same everywhere in the network: the client's reply address and
/// its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryId {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub seq: u32,
}

impl QueryId {
    /// The query `seq` of the client whose reply address is `client`.
    pub fn new(client: SocketAddrV4, seq: u32) -> QueryId {
        QueryId {
            ip: *client.ip(),
            port: client.port(),
            seq,
        }
    }
}

/// `ip:port#seq`, as logs and traces name a query.
impl std::fmt::Display for QueryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}#{}", self.ip, self.port, self.seq)
    }
}

impl Hash for QueryId {
    /// Two words rather than field by field: with [`FoldHashSeeds`] that is two
    /// multiplies.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from(u32::from(self.ip)) << 32 | u64::from(self.seq));
        state.write_u16(self.port);
    }
}

/// A set of recently seen queries, bounded by age and by size.
///
/// Two arrays, no per-entry allocation:
///
/// - `ring`, the entries in insertion order: a circular buffer of 16-byte entries,
///   each the id's three fields (address 4 bytes, sequence number 4, port 2), the
///   expiry tick (4) and the best TTL a copy of the query came with (1), one byte of
///   padding left (see [`SeenCache::insert_ttl`]). The oldest is at `head`; it is the
///   first evicted when the cache is full and, since insertions come with a clock that
///   never goes back, the first to expire.
/// - `slots`, an open-addressing index over the ring: linear probing, a power-of-two
///   number of slots at least twice the ring's, so it is never more than half full.
///   A slot is 8 bytes: 32 bits of the id's hash (which place it, and filter probes)
///   and the entry's position in the ring plus one (0 marks an empty slot). A match is
///   always confirmed against the full id in the ring. Deletion shifts the following
///   entries back instead of leaving tombstones, so a cache that stays full, one in
///   and one out per insert, keeps short probe sequences forever. Homes come from
///   [`FoldHashSeeds`], keyed per process, so a neighbour cannot pick ids that pile up
///   in one run of slots.
///
/// That is 32 bytes an entry when `capacity` is a power of two (the default), at most
/// 48 otherwise. Both arrays grow by doubling up to `capacity` as entries arrive, so
/// an idle servent with a large capacity does not pay for it. At capacity an insert
/// costs about two cache misses: finding where the new id goes, and the oldest entry's
/// slot to free it.
#[derive(Debug)]
pub struct SeenCache {
    /// Lifetime in ticks (tenths of a second), at least one.
    lifetime: u32,
    /// At most [`MAX_CAPACITY`].
    capacity: usize,
    /// Tick 0: when the cache was made (or first used, if `now` came earlier).
    epoch: Option<Instant>,
    /// The tick of every instant in `[from, until)`, kept from the last computation:
    /// a driver passes the same `now` for a whole batch of frames.
    clock: Option<ClockCache>,
    hashes: FoldHashSeeds,
    /// Circular, `len` entries from `head`; its length is what is allocated so far.
    ring: Vec<Entry>,
    head: usize,
    len: usize,
    /// `hash << 32 | (position in ring + 1)`, or 0 for an empty slot.
    slots: Vec<u64>,
    /// `slots.len() - 1`.
    mask: usize,
}

/// What [`SeenCache::insert_ttl`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not there: now it is, with this TTL.
    New,
    /// There, with a lower best TTL, `was`: raised to the one offered.
    Raised { was: u8 },
    /// There, with a best TTL at least the one offered: unchanged.
    Kept { best: u8 },
}

/// The id's fields side by side rather than a [`QueryId`] (whose padding would leave no
/// room): 4 + 4 + 2 + 4 + 1 bytes, 16 with the padding.
#[derive(Debug, Clone, Copy)]
struct Entry {
    expiry: u32,
    ip: Ipv4Addr,
    seq: u32,
    port: u16,
    /// The highest TTL offered for the id ([`SeenCache::insert_ttl`]); `u8::MAX` for
    /// one [`SeenCache::insert`]ed, which nothing beats.
    best: u8,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 16);

impl Entry {
    fn id(&self) -> QueryId {
        QueryId {
            ip: self.ip,
            port: self.port,
            seq: self.seq,
        }
    }

    fn is(&self, id: &QueryId) -> bool {
        self.seq == id.seq && self.ip == id.ip && self.port == id.port
    }
}

#[derive(Debug, Clone, Copy)]
struct ClockCache {
    from: Instant,
    until: Instant,
    tick: u32,
}

const TICK: Duration = Duration::from_millis(100);
const TICK_NANOS: u32 = 100_000_000;
const TICKS_PER_SECOND: u64 = 10;
/// Ring positions and slot homes are 32-bit: at most 2^31 entries (64 GiB of them).
const MAX_CAPACITY: usize = 1 << 31;
/// The ring's first allocation.
const MIN_RING: usize = 16;
const EMPTY: u64 = 0;
const PLACEHOLDER: Entry = Entry {
    expiry: 0,
    ip: Ipv4Addr::UNSPECIFIED,
    seq: 0,
    port: 0,
    best: 0,
};

/// Where a probe for an id ended.
enum Probe {
    /// There, at this position in the ring.
    Found(usize),
    /// Not there; this empty slot is where it would go.
    Vacant(usize),
}

impl SeenCache {
    /// A cache remembering each id for `lifetime` (rounded up to whole tenths of a
    /// second), holding at most `capacity` of them (at least 1, and at most 2^31).
    pub fn new(lifetime: Duration, capacity: usize) -> SeenCache {
        let ticks = lifetime.as_millis().div_ceil(TICK.as_millis()).max(1);
        SeenCache {
            lifetime: u32::try_from(ticks).unwrap_or(u32::MAX),
            capacity: capacity.clamp(1, MAX_CAPACITY),
            epoch: None,
            clock: None,
            hashes: FoldHashSeeds::default(),
            ring: Vec::new(),
            head: 0,
            len: 0,
            slots: Vec::new(),
            mask: 0,
        }
    }

    fn tick(&mut self, now: Instant) -> u32 {
        match self.clock {
            Some(clock) if clock.from <= now && now < clock.until => clock.tick,
            _ => self.tick_uncached(now),
        }
    }

    #[cold]
    fn tick_uncached(&mut self, now: Instant) -> u32 {
        let epoch = *self.epoch.get_or_insert(now);
        let since = now.saturating_duration_since(epoch);
        // Whole seconds and the tenths in the rest: no 128-bit division.
        let ticks = since
            .as_secs()
            .saturating_mul(TICKS_PER_SECOND)
            .saturating_add(u64::from(since.subsec_nanos() / TICK_NANOS));
        let tick = u32::try_from(ticks).unwrap_or(u32::MAX);
        // The instants that round down to this same tick, if they can be named.
        self.clock = (tick < u32::MAX)
            .then(|| {
                let from = epoch.checked_add(TICK.checked_mul(tick)?)?;
                let until = from.checked_add(TICK)?;
                Some(ClockCache { from, until, tick })
            })
            .flatten();
        tick
    }

    /// Records `id` as seen at `now`. Returns false if it was already there.
    pub fn insert(&mut self, id: QueryId, now: Instant) -> bool {
        self.insert_with(id, u8::MAX, false, now) == Seen::New
    }

    /// Records `id` as seen at `now` with a copy of TTL `ttl`, keeping the highest TTL
    /// offered for it: what `--full-reach` needs to tell a copy that can go further
    /// than any before it. The cache only compares the numbers; the servent decides
    /// what they mean (a client's request as the highest of all, a TTL above the
    /// protocol's as none). An id added by [`SeenCache::insert`] is never raised.
    /// Raising a TTL does not move an id's expiry.
    pub fn insert_ttl(&mut self, id: QueryId, ttl: u8, now: Instant) -> Seen {
        self.insert_with(id, ttl, true, now)
    }

    /// The TTL an id was last recorded with, if it is there.
    pub fn best_ttl(&self, id: &QueryId) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        match self.probe(id, self.hash(id)) {
            Probe::Found(position) => Some(self.ring[position].best),
            Probe::Vacant(_) => None,
        }
    }

    /// Both inserts; `raise` is a constant in each, so [`SeenCache::insert`] carries no
    /// TTL code.
    #[inline(always)]
    fn insert_with(&mut self, id: QueryId, ttl: u8, raise: bool, now: Instant) -> Seen {
        let tick = self.tick(now);
        self.expire_tick(tick);
        let hash = self.hash(&id);
        let mut slot = match self.probe(&id, hash) {
            Probe::Found(position) => {
                let best = self.ring[position].best;
                if raise && ttl > best {
                    self.ring[position].best = ttl;
                    return Seen::Raised { was: best };
                }
                return Seen::Kept { best };
            }
            Probe::Vacant(slot) => slot,
        };
        if self.len == self.ring.len() {
            if self.len >= self.capacity {
                self.pop_oldest();
            } else {
                self.grow();
            }
            // Either may have moved entries across the slot found.
            slot = self.vacant_slot(hash);
        }
        let mut position = self.head + self.len;
        if position >= self.ring.len() {
            position -= self.ring.len();
        }
        // Ticks round `now` down; one more keeps the id for at least the whole lifetime.
        let expiry = tick.saturating_add(self.lifetime).saturating_add(1);
        self.ring[position] = Entry {
            expiry,
            ip: id.ip,
            seq: id.seq,
            port: id.port,
            best: ttl,
        };
        self.slots[slot] = slot_value(hash, position);
        self.len += 1;
        Seen::New
    }

    /// Reads the index slot where `id` would be looked up, and that of the entry the
    /// `nth` insert from now would evict if the cache is full, changing nothing.
    ///
    /// At capacity an insert is two cache misses, one after the other. A caller with a
    /// batch of ids in hand reads them all first: the misses then overlap (the loads
    /// are independent), and the inserts that follow find the slots cached. The
    /// result only keeps the loads from being optimised away.
    pub fn prefetch(&self, id: &QueryId, nth: usize) -> u64 {
        if self.slots.is_empty() {
            return 0;
        }
        prefetch_line(&self.slots[self.home(self.hash(id))]);
        if self.len >= self.capacity && nth < self.len {
            let mut position = self.head + nth;
            if position >= self.ring.len() {
                position -= self.ring.len();
            }
            prefetch_line(&self.slots[self.home(self.hash(&self.ring[position].id()))]);
        }
        0
    }

    pub fn contains(&self, id: &QueryId) -> bool {
        self.len > 0 && matches!(self.probe(id, self.hash(id)), Probe::Found(_))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every entry whose lifetime is over at `now`.
    pub fn expire(&mut self, now: Instant) {
        let tick = self.tick(now);
        self.expire_tick(tick);
    }

    /// An expiry of `u32::MAX` is never reached: the tick saturates there 13.6 years
    /// after the cache's first use, and from then on ids leave only by capacity,
    /// oldest first, rather than all at once on every insertion.
    fn expire_tick(&mut self, now: u32) {
        while self.len > 0 {
            let expiry = self.ring[self.head].expiry;
            if expiry > now || expiry == u32::MAX {
                break;
            }
            self.pop_oldest();
        }
    }

    /// Forgets every id. Kept allocations stay, for the next ids.
    pub fn clear(&mut self) {
        self.slots.fill(EMPTY);
        self.head = 0;
        self.len = 0;
    }

    fn hash(&self, id: &QueryId) -> u32 {
        self.hashes.hash_one(id) as u32
    }

    fn home(&self, hash: u32) -> usize {
        hash as usize & self.mask
    }

    /// Looks `id` up.
    fn probe(&self, id: &QueryId, hash: u32) -> Probe {
        if self.slots.is_empty() {
            return Probe::Vacant(0);
        }
        let mut slot = self.home(hash);
        loop {
            let value = self.slots[slot];
            if value == EMPTY {
                return Probe::Vacant(slot);
            }
            if (value >> 32) as u32 == hash && self.ring[position_of(value)].is(id) {
                return Probe::Found(position_of(value));
            }
            slot = (slot + 1) & self.mask;
        }
    }

    /// The first empty slot from `hash`'s home: where an id known to be absent goes.
    fn vacant_slot(&self, hash: u32) -> usize {
        let mut slot = self.home(hash);
        while self.slots[slot] != EMPTY {
            slot = (slot + 1) & self.mask;
        }
        slot
    }

    fn pop_oldest(&mut self) {
        if self.len == 0 {
            return;
        }
        let position = self.head;
        let hash = self.hash(&self.ring[position].id());
        let value = slot_value(hash, position);
        let mut slot = self.home(hash);
        while self.slots[slot] != value {
            slot = (slot + 1) & self.mask;
        }
        self.remove_slot(slot);
        self.head += 1;
        if self.head == self.ring.len() {
            self.head = 0;
        }
        self.len -= 1;
    }

    /// Empties `hole`, then moves each following entry of its run back into the hole if
    /// that is no further from the entry's home than where it is: every entry stays
    /// reachable from its home without crossing an empty slot.
    fn remove_slot(&mut self, mut hole: usize) {
        let mask = self.mask;
        let mut slot = (hole + 1) & mask;
        loop {
            let value = self.slots[slot];
            if value == EMPTY {
                break;
            }
            let home = self.home((value >> 32) as u32);
            // Distances going forward (wrapping) from home, and from the hole, to here.
            if slot.wrapping_sub(home) & mask >= slot.wrapping_sub(hole) & mask {
                self.slots[hole] = value;
                hole = slot;
            }
            slot = (slot + 1) & mask;
        }
        self.slots[hole] = EMPTY;
    }

    /// Doubles the ring (up to `capacity`) and rebuilds the index over it, the
    /// entries moved to the front in order.
    #[cold]
    fn grow(&mut self) {
        let size = (self.ring.len() * 2).max(MIN_RING).min(self.capacity);
        let mut ring = vec![PLACEHOLDER; size];
        for (offset, entry) in ring.iter_mut().enumerate().take(self.len) {
            let mut position = self.head + offset;
            if position >= self.ring.len() {
                position -= self.ring.len();
            }
            *entry = self.ring[position];
        }
        self.ring = ring;
        self.head = 0;
        let slots = (size * 2).next_power_of_two();
        self.slots = vec![EMPTY; slots];
        self.mask = slots - 1;
        for position in 0..self.len {
            let hash = self.hash(&self.ring[position].id());
            let slot = self.vacant_slot(hash);
            self.slots[slot] = slot_value(hash, position);
        }
    }
}

/// Asks the CPU to bring `value`'s cache line in, without waiting for it.
#[inline]
fn prefetch_line(value: &u64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing into the program, cannot fault,
    // and `value` is a live reference anyway. SSE, which it needs, is part of x86_64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (value as *const u64).cast(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    std::hint::black_box(*value);
}

fn slot_value(hash: u32, position: usize) -> u64 {
    u64::from(hash) << 32 | (position as u64 + 1)
}

fn position_of(value: u64) -> usize {
    (value as u32 - 1) as usize
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
    fn past_the_clock_s_13_years_ids_leave_by_capacity_not_all_at_once() {
        let start = Instant::now();
        let years = |y: u64| start + Duration::from_secs(y * 365 * 24 * 3600);
        let mut seen = SeenCache::new(Duration::from_secs(60), 2);
        assert!(seen.insert(id(0), start));
        assert!(seen.insert(id(1), years(14)));
        // The tick is saturated: the id stays, however much later.
        assert!(!seen.insert(id(1), years(14) + Duration::from_secs(1)));
        assert!(!seen.insert(id(1), years(20)));
        assert!(
            !seen.contains(&id(0)),
            "expired by time, before the saturation"
        );
        assert!(seen.insert(id(2), years(20)));
        assert!(seen.insert(id(3), years(20)));
        assert!(!seen.contains(&id(1)), "evicted by capacity, oldest first");
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn clear_forgets_every_id() {
        let start = Instant::now();
        let mut seen = SeenCache::new(Duration::from_secs(60), 100);
        for seq in 0..40 {
            assert!(seen.insert(id(seq), start));
        }
        seen.clear();
        assert!(seen.is_empty());
        assert!(!seen.contains(&id(7)));
        for seq in 0..40 {
            assert!(seen.insert(id(seq), start), "{seq}");
        }
        assert!(!seen.insert(id(7), start));
        assert_eq!(seen.len(), 40);
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
    fn prefetch_changes_nothing() {
        let start = Instant::now();
        let mut seen = SeenCache::new(Duration::from_secs(60), 4);
        assert_eq!(seen.prefetch(&id(1), 0), 0, "an empty cache reads nothing");
        for seq in 0..6 {
            assert!(seen.insert(id(seq), start));
            for nth in 0..8 {
                seen.prefetch(&id(seq), nth);
                seen.prefetch(&id(100 + seq), nth);
            }
        }
        assert_eq!(seen.len(), 4);
        assert!(!seen.contains(&id(1)) && seen.contains(&id(2)) && seen.contains(&id(5)));
        assert!(!seen.insert(id(5), start));
        assert!(seen.insert(id(1), start));
    }

    #[test]
    fn the_best_ttl_is_kept_and_only_raised() {
        let start = Instant::now();
        let mut seen = SeenCache::new(Duration::from_secs(60), 100);
        assert_eq!(seen.insert_ttl(id(1), 1, start), Seen::New);
        assert_eq!(seen.best_ttl(&id(1)), Some(1));
        assert_eq!(seen.insert_ttl(id(1), 1, start), Seen::Kept { best: 1 });
        assert_eq!(seen.insert_ttl(id(1), 0, start), Seen::Kept { best: 1 });
        assert_eq!(seen.insert_ttl(id(1), 3, start), Seen::Raised { was: 1 });
        assert_eq!(seen.insert_ttl(id(1), 2, start), Seen::Kept { best: 3 });
        assert!(!seen.insert(id(1), start), "a plain insert sees it too");
        assert_eq!(seen.best_ttl(&id(1)), Some(3), "and changes nothing");
        // A plain insert's id is never raised.
        assert!(seen.insert(id(2), start));
        assert_eq!(seen.insert_ttl(id(2), 254, start), Seen::Kept { best: 255 });
        assert_eq!(seen.best_ttl(&id(3)), None);
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn raising_a_ttl_does_not_extend_the_lifetime() {
        let start = Instant::now();
        let mut seen = SeenCache::new(Duration::from_secs(60), 100);
        assert_eq!(seen.insert_ttl(id(1), 0, start), Seen::New);
        let later = start + Duration::from_secs(59);
        assert_eq!(seen.insert_ttl(id(1), 2, later), Seen::Raised { was: 0 });
        let expired = start + Duration::from_millis(60_100);
        assert_eq!(seen.insert_ttl(id(1), 1, expired), Seen::New);
        assert_eq!(seen.best_ttl(&id(1)), Some(1));
    }

    #[test]
    fn best_ttls_survive_growth_wrapping_and_eviction() {
        let start = Instant::now();
        let mut seen = SeenCache::new(Duration::from_secs(60), 50);
        for seq in 0..200u32 {
            assert_eq!(seen.insert_ttl(id(seq), (seq % 4) as u8, start), Seen::New);
            if seq >= 10 {
                let old = seq - 10;
                assert_eq!(seen.best_ttl(&id(old)), Some((old % 4) as u8), "{old}");
            }
        }
        assert_eq!(seen.best_ttl(&id(149)), None, "evicted");
        assert_eq!(seen.best_ttl(&id(150)), Some(2));
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

    /// The cache as it was first written, a `HashSet` and a `VecDeque`: the contract,
    /// tick rounding included, without the open addressing.
    struct Model {
        lifetime: u32,
        capacity: usize,
        epoch: Option<Instant>,
        members: std::collections::HashSet<QueryId>,
        queue: std::collections::VecDeque<(u32, QueryId)>,
    }

    impl Model {
        fn new(lifetime: Duration, capacity: usize) -> Model {
            let ticks = lifetime.as_millis().div_ceil(TICK.as_millis()).max(1);
            Model {
                lifetime: u32::try_from(ticks).unwrap_or(u32::MAX),
                capacity: capacity.max(1),
                epoch: None,
                members: Default::default(),
                queue: Default::default(),
            }
        }

        fn tick(&mut self, now: Instant) -> u32 {
            let epoch = *self.epoch.get_or_insert(now);
            let ticks = now.saturating_duration_since(epoch).as_millis() / TICK.as_millis();
            u32::try_from(ticks).unwrap_or(u32::MAX)
        }

        fn expire(&mut self, now: Instant) {
            let now = self.tick(now);
            while matches!(self.queue.front(), Some((expiry, _)) if *expiry <= now && *expiry < u32::MAX)
            {
                self.pop_oldest();
            }
        }

        fn pop_oldest(&mut self) {
            if let Some((_, id)) = self.queue.pop_front() {
                self.members.remove(&id);
            }
        }

        fn insert(&mut self, id: QueryId, now: Instant) -> bool {
            self.expire(now);
            if self.members.contains(&id) {
                return false;
            }
            while self.members.len() >= self.capacity {
                self.pop_oldest();
            }
            self.members.insert(id);
            let expiry = self.tick(now).saturating_add(self.lifetime + 1);
            self.queue.push_back((expiry, id));
            true
        }
    }

    /// xorshift64: deterministic, and enough to scatter ids and clock steps.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Long random runs against [`Model`]: the index grows several times, the ring
    /// wraps, evictions shift runs of colliding slots back, and the clock jumps, stalls
    /// and sometimes steps back a little (the tick cache must not answer for those).
    #[test]
    fn agrees_with_the_simple_model() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for (capacity, lifetime_ms) in [
            (1, 1000),
            (2, 100),
            (3, 60_000),
            (7, 250),
            (16, 1000),
            (17, 60_000),
            (100, 2000),
            (1000, 500),
            (4096, 60_000),
            (5000, 3000),
        ] {
            let lifetime = Duration::from_millis(lifetime_ms);
            let mut cache = SeenCache::new(lifetime, capacity);
            let mut model = Model::new(lifetime, capacity);
            // Enough distinct ids to overflow the capacity, few enough to repeat.
            let pool = (capacity as u64 * 3).max(8);
            let id_of = |n: u64| QueryId {
                ip: Ipv4Addr::from(0x0A00_0000 | (n % 5) as u32),
                port: 5000 + (n % 3) as u16,
                seq: (n / 15) as u32,
            };
            let mut now = Instant::now() + Duration::from_secs(1);
            for _ in 0..30_000 {
                now = match rng.below(100) {
                    0..=59 => now,
                    60..=94 => now + Duration::from_millis(rng.below(150)),
                    95..=97 => now + Duration::from_millis(rng.below(5 * lifetime_ms)),
                    _ => now - Duration::from_millis(rng.below(120)),
                };
                let id = id_of(rng.below(pool));
                if rng.below(50) == 0 {
                    cache.expire(now);
                    model.expire(now);
                } else {
                    let new = cache.insert(id, now);
                    assert_eq!(new, model.insert(id, now), "{id:?} capacity {capacity}");
                }
                assert_eq!(cache.len(), model.members.len());
                assert_eq!(cache.is_empty(), model.members.is_empty());
                let probe = id_of(rng.below(pool));
                assert_eq!(cache.contains(&probe), model.members.contains(&probe));
            }
            for n in 0..pool {
                assert_eq!(cache.contains(&id_of(n)), model.members.contains(&id_of(n)));
            }
        }
    }
}
