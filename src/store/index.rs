//! The store's index: shards of an open-addressing table over groups of 8 tag bytes,
//! and the records in their arenas (see the module above for the layout). Pure.

use std::hash::BuildHasher;
use std::ops::Range;

use super::StoreError;
use crate::hashing::FoldHashSeeds;
use crate::protocol::MAX_TEXT;

/// Slots whose tags are read at once, as one word.
pub(super) const GROUP: usize = 8;
pub(super) const LOW_BITS: u64 = u64::from_ne_bytes([0x01; GROUP]);
pub(super) const HIGH_BITS: u64 = u64::from_ne_bytes([0x80; GROUP]);

/// A record's lengths take a byte each below this, else two.
pub(super) const SHORT_LEN: usize = 0x80;
const _: () = assert!(MAX_TEXT < SHORT_LEN << 8);

/// Hash bits: the low ones choose the group within a shard, bits 43 to 49 are the
/// tag, and from bit 50 up the shard.
pub(super) const SHARD_SHIFT: u32 = 50;

pub(super) fn tag_of(hash: u64) -> u8 {
    0x80 | (hash >> 43) as u8
}

pub(super) fn shard_of(hash: u64, shards: usize) -> usize {
    (hash >> SHARD_SHIFT) as usize & (shards - 1)
}

/// A shard's index grows (doubles) before it is fuller than 3/4.
pub(super) fn over_load(len: usize, slots: usize) -> bool {
    len * 4 >= slots * 3
}

/// Walks the groups of `tags` from the home of `hash`: `check` is called on each slot
/// whose tag is the key's, and the first it accepts is `Ok`; else the first free slot
/// is `Err`. Slots fill each group from its start and are never freed, so a key held
/// is always before the first free slot from its home, and every group's taken slots
/// come first. `tags` is a power of two of groups, never all taken.
///
/// The tags equal to the key's are the zero bytes of `group ^ pattern`: the classic
/// test, which may also flag a byte just past a true zero; `check` rules it out like
/// any other tag that is the key's by chance. A free slot is never flagged: its byte
/// of `group ^ pattern` has the high bit set.
#[inline]
pub(super) fn probe(
    tags: &[u8],
    hash: u64,
    mut check: impl FnMut(usize) -> bool,
) -> Result<usize, usize> {
    let groups = tags.len() / GROUP;
    let pattern = LOW_BITS * u64::from(tag_of(hash));
    let mut group = hash as usize & (groups - 1);
    loop {
        let start = group * GROUP;
        let word = &tags[start..start + GROUP];
        let word = u64::from_le_bytes(word.try_into().expect("a group of tags"));
        let x = word ^ pattern;
        let mut candidates = x.wrapping_sub(LOW_BITS) & !x & HIGH_BITS;
        while candidates != 0 {
            let slot = start + candidates.trailing_zeros() as usize / 8;
            if check(slot) {
                return Ok(slot);
            }
            candidates &= candidates - 1;
        }
        let free = !word & HIGH_BITS;
        if free != 0 {
            return Err(start + free.trailing_zeros() as usize / 8);
        }
        group = (group + 1) & (groups - 1);
    }
}

pub(super) fn push_len(arena: &mut Vec<u8>, len: usize) {
    if len < SHORT_LEN {
        arena.push(len as u8);
    } else {
        arena.extend_from_slice(&[0x80 | (len >> 8) as u8, len as u8]);
    }
}

/// A length written by `push_len` at `at`, and the bytes it took.
#[inline]
pub(super) fn read_len(arena: &[u8], at: usize) -> (usize, usize) {
    let first = arena[at];
    if first < 0x80 {
        (usize::from(first), 1)
    } else {
        (
            (usize::from(first & 0x7f) << 8) | usize::from(arena[at + 1]),
            2,
        )
    }
}

/// Where a record's key and value are in its arena.
#[derive(Debug, Clone, Copy)]
pub(super) struct Record {
    key: usize,
    key_len: usize,
    value_len: usize,
}

impl Record {
    #[inline]
    pub(super) fn at(arena: &[u8], at: usize) -> Record {
        let (key_len, a) = read_len(arena, at);
        let (value_len, b) = read_len(arena, at + a);
        Record {
            key: at + a + b,
            key_len,
            value_len,
        }
    }

    pub(super) fn key(&self) -> Range<usize> {
        self.key..self.key + self.key_len
    }

    pub(super) fn value(&self) -> Range<usize> {
        self.key + self.key_len..self.end()
    }

    pub(super) fn end(&self) -> usize {
        self.key + self.key_len + self.value_len
    }
}

/// A shard once loaded: records in slot order.
#[derive(Default, Clone)]
pub(super) struct Shard {
    /// A byte a slot: 0 if free, else `tag_of` its key's hash. Empty if the shard is.
    pub(super) tags: Vec<u8>,
    /// Where each group's records start in `arena`.
    pub(super) starts: Vec<u32>,
    /// The records of the taken slots, in slot order, and nothing else.
    pub(super) arena: Vec<u8>,
}

impl Shard {
    #[inline]
    pub(super) fn get(&self, key: &[u8], hash: u64) -> Option<&[u8]> {
        if self.tags.is_empty() {
            return None;
        }
        let mut found = None;
        let _ = probe(&self.tags, hash, |slot| {
            // The slots before this one in its group are all taken: their records
            // come first.
            let mut at = self.starts[slot / GROUP] as usize;
            for _ in 0..slot % GROUP {
                at = Record::at(&self.arena, at).end();
            }
            let record = Record::at(&self.arena, at);
            let same = record.key_len == key.len() && self.arena[record.key()] == *key;
            if same {
                found = Some(record);
            }
            same
        });
        found.map(|record| &self.arena[record.value()])
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.tags.capacity() + self.starts.capacity() * 4 + self.arena.capacity()
    }

    /// Every key and its value, in slot order.
    pub(super) fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let arena = &self.arena[..];
        let mut at = 0;
        std::iter::from_fn(move || {
            if at == arena.len() {
                return None;
            }
            let record = Record::at(arena, at);
            at = record.end();
            Some((&arena[record.key()], &arena[record.value()]))
        })
    }
}

/// A shard while the file loads: records in file order, replaced ones included.
#[derive(Default)]
pub(super) struct Building {
    tags: Vec<u8>,
    /// Each taken slot's record offset in `arena`.
    slots: Vec<u32>,
    arena: Vec<u8>,
    pub(super) len: usize,
    /// Bytes of the records slots point to.
    live: usize,
}

impl Building {
    /// An empty shard whose arena has room for `bytes` of records.
    pub(super) fn with_room(bytes: usize) -> Building {
        Building {
            arena: Vec::with_capacity(bytes),
            ..Building::default()
        }
    }

    /// As `probe`, for `key`; the index must have been started (`grow`).
    pub(super) fn find(&self, key: &[u8], hash: u64) -> Result<usize, usize> {
        probe(&self.tags, hash, |slot| {
            let record = Record::at(&self.arena, self.slots[slot] as usize);
            self.arena[record.key()] == *key
        })
    }

    /// Doubles the index (or starts it), placing every entry again.
    pub(super) fn grow(&mut self, seeds: &FoldHashSeeds) {
        let size = (self.slots.len() * 2).max(2 * GROUP);
        let old_tags = std::mem::replace(&mut self.tags, vec![0; size]);
        let old_slots = std::mem::replace(&mut self.slots, vec![0; size]);
        for (&tag, &at) in old_tags.iter().zip(&old_slots) {
            if tag == 0 {
                continue;
            }
            let key = &self.arena[Record::at(&self.arena, at as usize).key()];
            let hash = seeds.hash_one(key);
            let Err(free) = probe(&self.tags, hash, |_| false) else {
                unreachable!("a probe that accepts nothing ends at a free slot");
            };
            self.tags[free] = tag;
            self.slots[free] = at;
        }
    }

    /// Adds the entry of `line`; a key already held gets the new value.
    pub(super) fn insert(
        &mut self,
        key: &[u8],
        value: &[u8],
        hash: u64,
        seeds: &FoldHashSeeds,
        line: usize,
    ) -> Result<(), StoreError> {
        if over_load(self.len + 1, self.slots.len()) {
            self.grow(seeds);
        }
        let at = self.arena.len();
        if u32::try_from(at + 4 + key.len() + value.len()).is_err() {
            return Err(StoreError::TooLarge { line });
        }
        let found = self.find(key, hash);
        push_len(&mut self.arena, key.len());
        push_len(&mut self.arena, value.len());
        self.arena.extend_from_slice(key);
        self.arena.extend_from_slice(value);
        self.live += self.arena.len() - at;
        match found {
            Ok(slot) => {
                let old = self.slots[slot] as usize;
                self.live -= Record::at(&self.arena, old).end() - old;
                self.slots[slot] = at as u32;
            }
            Err(free) => {
                self.tags[free] = tag_of(hash);
                self.slots[free] = at as u32;
                self.len += 1;
            }
        }
        Ok(())
    }

    /// The live records, copied in slot order to an arena of their own; the loading
    /// arena and offsets go.
    pub(super) fn freeze(self) -> Shard {
        let mut arena = Vec::with_capacity(self.live);
        let groups = self.tags.len() / GROUP;
        let mut starts = Vec::with_capacity(groups + 1);
        for group in 0..groups {
            starts.push(arena.len() as u32);
            for slot in group * GROUP..(group + 1) * GROUP {
                if self.tags[slot] == 0 {
                    break;
                }
                let at = self.slots[slot] as usize;
                arena.extend_from_slice(&self.arena[at..Record::at(&self.arena, at).end()]);
            }
        }
        debug_assert_eq!(arena.len(), self.live);
        Shard {
            tags: self.tags,
            starts,
            arena,
        }
    }
}
