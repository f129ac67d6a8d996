//! The servent's key-value file: parsing (pure, over bytes or a stream) and lookups.
//!
//! Format (PROTOCOL.md): one entry per line; the key is the first whitespace-delimited
//! word, the value the rest of the line with surrounding whitespace trimmed. Lines
//! starting with `#` (after any indentation) and blank lines are ignored; a later
//! duplicate key wins. Bytes need not be UTF-8: they are kept as they are and only
//! shown lossily. A UTF-8 byte-order mark at the very start of the file is not part of
//! the first key: it is dropped.
//!
//! The store is compact: every key and value is in one byte arena, back to back, and
//! an open-addressing index of 8-byte slots (and a tag byte each) points into it. A
//! file is parsed as it is read, a chunk at a time, straight into the arena (no line is
//! ever allocated), so loading a file costs at most its own size for the arena (less
//! its separators and comments), 12 to 24 bytes per key for the index, and half as
//! much again for a moment while the index grows; never the file twice.

use std::fmt;
use std::hash::BuildHasher;
use std::io::{self, Read};
use std::path::Path;

use log::warn;

use crate::hashing::FoldHashSeeds;
use crate::protocol::{Text, MAX_TEXT};

/// The UTF-8 byte-order mark some editors write at the start of a text file.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Bytes read from a file at a time.
const CHUNK: usize = 64 * 1024;

/// A slot packs an entry's arena offset (low 32 bits) and, above it, a 14-bit tag from
/// its key's hash, its key's length and its value's length (9 bits each). A key is
/// never empty, so a slot is 0 exactly when it is free.
const LEN_BITS: u32 = 9;
const LEN_MASK: u32 = (1 << LEN_BITS) - 1;
const TAG_SHIFT: u32 = 64 - (32 - 2 * LEN_BITS);
const _: () = assert!(MAX_TEXT <= LEN_MASK as usize);

/// The index grows (doubles) before it is fuller than 3/4: linear probing stays short.
fn over_load(len: usize, slots: usize) -> bool {
    len * 4 >= slots * 3
}

/// A loaded key-value file.
#[derive(Default, Clone)]
pub struct Store {
    /// Every entry's key then value, back to back.
    arena: Vec<u8>,
    /// The index: a power of two of slots (or none), linear probing.
    slots: Vec<u64>,
    /// A byte per slot: 0 if it is free, else 7 bits of its key's hash (and the high
    /// bit), then a copy of the first `GROUP`, so that `GROUP` tags can be read from any
    /// slot on. A lookup reads these first, a group at a time: an eighth of the slots'
    /// size, they stay in the caches, so most keys not held are told without reading a
    /// slot at all.
    tags: Vec<u8>,
    len: usize,
    /// Arena bytes no slot points to any more (values replaced by a later duplicate).
    dead: usize,
    /// Looked up for every query that passes; peers choose the keys, so hashed with
    /// per-process seeds.
    seeds: FoldHashSeeds,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("keys", &self.len)
            .field("arena_bytes", &self.arena.len())
            .field("slots", &self.slots.len())
            .field("dead_bytes", &self.dead)
            .finish()
    }
}

/// Why a key-value file cannot be loaded. `line` is 1-based.
#[derive(Debug)]
pub enum StoreError {
    Io(std::io::Error),
    KeyTooLong {
        line: usize,
        len: usize,
    },
    ValueTooLong {
        line: usize,
        len: usize,
    },
    /// The keys and values up to `line` are over the 4 GiB a store can address.
    TooLarge {
        line: usize,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io(e) => write!(f, "{e}"),
            StoreError::KeyTooLong { line, len } => {
                write!(
                    f,
                    "line {line}: key is {len} bytes, over the limit of {MAX_TEXT}"
                )
            }
            StoreError::ValueTooLong { line, len } => {
                write!(
                    f,
                    "line {line}: value is {len} bytes, over the limit of {MAX_TEXT}"
                )
            }
            StoreError::TooLarge { line } => write!(
                f,
                "line {line}: over 4 GiB of keys and values, more than a store holds"
            ),
        }
    }
}

impl std::error::Error for StoreError {}

fn is_space(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\x0b' | b'\x0c')
}

fn offset_of(slot: u64) -> usize {
    slot as u32 as usize
}

fn key_len_of(slot: u64) -> usize {
    ((slot >> (32 + LEN_BITS)) as u32 & LEN_MASK) as usize
}

fn value_len_of(slot: u64) -> usize {
    ((slot >> 32) as u32 & LEN_MASK) as usize
}

/// Tags read at once, as one word.
const GROUP: usize = 8;
const LOW_BITS: u64 = u64::from_ne_bytes([0x01; GROUP]);
const HIGH_BITS: u64 = u64::from_ne_bytes([0x80; GROUP]);

fn tag_of(hash: u64) -> u8 {
    0x80 | (hash >> 43) as u8
}

/// The bits of a slot that a lookup compares next: more of the hash, and the key's
/// length.
fn probe_bits(hash: u64, key_len: usize) -> u64 {
    (hash >> TAG_SHIFT << TAG_SHIFT) | ((key_len as u64) << (32 + LEN_BITS))
}

const PROBE_MASK: u64 = !((1 << (32 + LEN_BITS)) - 1);

fn pack(offset: usize, hash: u64, key_len: usize, value_len: usize) -> u64 {
    probe_bits(hash, key_len) | ((value_len as u64) << 32) | offset as u64
}

impl Store {
    /// Parses a key-value file's contents. A leading byte-order mark is dropped.
    pub fn parse(contents: &[u8]) -> Result<Store, StoreError> {
        let mut loader = Loader::new(contents.len());
        loader.feed(contents.strip_prefix(BOM).unwrap_or(contents))?;
        loader.finish()
    }

    /// Reads and parses a key-value file, a chunk at a time. A leading byte-order mark
    /// is dropped with a warning naming the file.
    pub fn load(path: &Path) -> Result<Store, StoreError> {
        let file = std::fs::File::open(path).map_err(StoreError::Io)?;
        // A regular file's size bounds the arena: reserved at once, it never moves. A
        // pipe's is unknown (0), so the arena grows as it fills.
        let size = match file.metadata() {
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        };
        let (store, bom) = Store::read(file, size)?;
        if bom {
            warn!(
                "{}: starts with a UTF-8 byte-order mark; ignored (not part of the first key)",
                path.display()
            );
        }
        Ok(store)
    }

    /// Parses a key-value file from `reader`, a chunk at a time; `size_hint` is its size
    /// if known (else 0). Also says whether a byte-order mark was dropped.
    pub fn read(mut reader: impl Read, size_hint: u64) -> Result<(Store, bool), StoreError> {
        let hint = usize::try_from(size_hint.min(u64::from(u32::MAX))).unwrap_or(0);
        let mut loader = Loader::new(hint);
        let mut buf = vec![0u8; CHUNK];
        // Enough of the start to tell a byte-order mark: a pipe may give less at a time.
        let mut head = 0;
        let mut open = true;
        while open && head < BOM.len() {
            let n = read_some(&mut reader, &mut buf[head..])?;
            open = n > 0;
            head += n;
        }
        let bom = buf[..head].starts_with(BOM);
        loader.feed(&buf[if bom { BOM.len() } else { 0 }..head])?;
        while open {
            let n = read_some(&mut reader, &mut buf)?;
            open = n > 0;
            loader.feed(&buf[..n])?;
        }
        Ok((loader.finish()?, bom))
    }

    /// The value of `key`, if the store holds it.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        // An empty key is never held (no slot has a key length of 0): no need to ask.
        if self.slots.is_empty() || key.len() > MAX_TEXT {
            return None;
        }
        let slot = self.slots[self.find(key, self.seeds.hash_one(key)).ok()?];
        let at = offset_of(slot) + key.len();
        Some(&self.arena[at..at + value_len_of(slot)])
    }

    /// The value of `key` as a [`Text`], ready for a RESP.
    #[inline]
    pub fn get_text(&self, key: &[u8]) -> Option<Text> {
        self.get(key)
            .map(|value| Text::new(value).expect("a stored value is at most MAX_TEXT bytes"))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every key and its value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.slots.iter().filter(|&&s| s != 0).map(|&s| {
            let (at, k) = (offset_of(s), key_len_of(s));
            (
                &self.arena[at..at + k],
                &self.arena[at + k..at + k + value_len_of(s)],
            )
        })
    }

    /// Bytes of memory the store holds: its arena and its index.
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity()
            + self.slots.capacity() * std::mem::size_of::<u64>()
            + self.tags.capacity()
    }

    /// The slot holding `key` (`Ok`), or the free slot where it would go (`Err`). The
    /// index has at least one free slot; `key` is 1 to `MAX_TEXT` bytes.
    ///
    /// Linear probing, `GROUP` tags at a time: in each group, the bytes equal to the
    /// key's tag are candidates, and the first free byte ends the search. A key held is
    /// always before the first free slot from its home; a candidate past it is another
    /// key, told apart by the comparison like any other.
    #[inline]
    fn find(&self, key: &[u8], hash: u64) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let tags = LOW_BITS * u64::from(tag_of(hash));
        let mut pos = hash as usize & mask;
        loop {
            let group = &self.tags[pos..pos + GROUP];
            let group = u64::from_le_bytes(group.try_into().expect("GROUP bytes"));
            // Bytes equal to the tag: zero bytes of `x` (the classic test; a byte just
            // past a true match may show too, which the comparison rules out).
            let x = group ^ tags;
            let mut candidates = x.wrapping_sub(LOW_BITS) & !x & HIGH_BITS;
            while candidates != 0 {
                let i = (pos + candidates.trailing_zeros() as usize / 8) & mask;
                let slot = self.slots[i];
                let at = offset_of(slot);
                if slot & PROBE_MASK == probe_bits(hash, key.len())
                    && &self.arena[at..at + key.len()] == key
                {
                    return Ok(i);
                }
                candidates &= candidates - 1;
            }
            let free = !group & HIGH_BITS;
            if free != 0 {
                return Err((pos + free.trailing_zeros() as usize / 8) & mask);
            }
            pos = (pos + GROUP) & mask;
        }
    }

    /// Marks slot `i` taken by a key of this hash.
    fn set_tag(&mut self, i: usize, hash: u64) {
        self.tags[i] = tag_of(hash);
        if i < GROUP {
            let n = self.slots.len();
            self.tags[n + i] = tag_of(hash);
        }
    }

    /// Doubles the index (or starts it), placing every entry again.
    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(16);
        let old = std::mem::replace(&mut self.slots, vec![0; size]);
        self.tags = vec![0; size + GROUP];
        for slot in old.into_iter().filter(|&s| s != 0) {
            let at = offset_of(slot);
            let key = &self.arena[at..at + key_len_of(slot)];
            let hash = self.seeds.hash_one(key);
            let Err(free) = self.find(key, hash) else {
                unreachable!("keys in the index are distinct");
            };
            self.slots[free] = slot;
            self.set_tag(free, hash);
        }
    }

    /// Indexes the entry whose key then value were just written at the arena's end,
    /// from `at`. A key already held gets the new value.
    fn commit(&mut self, at: usize, key_len: usize, value_len: usize) {
        if over_load(self.len + 1, self.slots.len()) {
            self.grow();
        }
        let key = &self.arena[at..at + key_len];
        let hash = self.seeds.hash_one(key);
        match self.find(key, hash) {
            Err(free) => {
                self.slots[free] = pack(at, hash, key_len, value_len);
                self.set_tag(free, hash);
                self.len += 1;
            }
            Ok(i) => {
                let old = self.slots[i];
                let (old_at, old_value_len) = (offset_of(old), value_len_of(old));
                if value_len <= old_value_len {
                    // The new value fits where the old one was: the entry stays put.
                    let value = at + key_len;
                    self.arena
                        .copy_within(value..value + value_len, old_at + key_len);
                    self.arena.truncate(at);
                    self.dead += old_value_len - value_len;
                    self.slots[i] = pack(old_at, hash, key_len, value_len);
                } else {
                    self.dead += key_len + old_value_len;
                    self.slots[i] = pack(at, hash, key_len, value_len);
                }
            }
        }
    }

    /// Once loaded: if over half the arena is values replaced by later duplicates, the
    /// live entries are copied to an arena of their own; the arena gives back what it
    /// reserved beyond its end.
    fn settle(&mut self) {
        if self.dead * 2 > self.arena.len() {
            let mut arena = Vec::with_capacity(self.arena.len() - self.dead);
            for slot in self.slots.iter_mut().filter(|s| **s != 0) {
                let at = offset_of(*slot);
                let end = at + key_len_of(*slot) + value_len_of(*slot);
                let new_at = arena.len();
                arena.extend_from_slice(&self.arena[at..end]);
                *slot = (*slot & !u64::from(u32::MAX)) | new_at as u64;
            }
            self.arena = arena;
            self.dead = 0;
        }
        self.arena.shrink_to_fit();
    }
}

fn read_some(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize, StoreError> {
    loop {
        match reader.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StoreError::Io(e)),
        }
    }
}

/// Where the parser is within a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the line's first non-space byte.
    LineStart,
    /// In a `#` line: skipped to its end.
    Comment,
    Key,
    /// Between the key and the value.
    AfterKey,
    Value,
}

/// The parser: bytes in, in pieces of any size, straight into the store's arena. Only
/// the first `MAX_TEXT` bytes of a key or value are copied (a longer one is an error
/// once its length is known, at the end of its line), so the arena never holds more
/// than the bytes read.
struct Loader {
    store: Store,
    state: State,
    /// The current line, 1-based.
    line: usize,
    /// Where the current entry starts in the arena.
    start: usize,
    key_len: usize,
    /// The value's bytes so far, trailing whitespace included.
    value_len: usize,
    /// The value's bytes up to its last non-space one.
    value_end: usize,
}

impl Loader {
    /// `size_hint`: the bytes to come, if known (else 0).
    fn new(size_hint: usize) -> Loader {
        let mut store = Store::default();
        store.arena.reserve_exact(size_hint);
        Loader {
            store,
            state: State::LineStart,
            line: 1,
            start: 0,
            key_len: 0,
            value_len: 0,
            value_end: 0,
        }
    }

    /// Appends the part of `bytes` that keeps a text of `already` bytes within
    /// `MAX_TEXT`.
    fn copy(&mut self, bytes: &[u8], already: usize) {
        let room = MAX_TEXT.saturating_sub(already).min(bytes.len());
        self.store.arena.extend_from_slice(&bytes[..room]);
    }

    fn feed(&mut self, mut bytes: &[u8]) -> Result<(), StoreError> {
        while !bytes.is_empty() {
            match self.state {
                State::LineStart => {
                    let skip = bytes.iter().position(|b| !is_space(b));
                    bytes = &bytes[skip.unwrap_or(bytes.len())..];
                    match bytes.first() {
                        None => {}
                        Some(b'\n') => {
                            bytes = &bytes[1..];
                            self.line += 1;
                        }
                        Some(b'#') => self.state = State::Comment,
                        Some(_) => {
                            self.state = State::Key;
                            self.start = self.store.arena.len();
                            self.key_len = 0;
                            self.value_len = 0;
                            self.value_end = 0;
                        }
                    }
                }
                State::Comment => match bytes.iter().position(|&b| b == b'\n') {
                    Some(end) => {
                        bytes = &bytes[end + 1..];
                        self.line += 1;
                        self.state = State::LineStart;
                    }
                    None => bytes = &[],
                },
                State::Key => {
                    let end = bytes
                        .iter()
                        .position(|b| *b == b'\n' || is_space(b))
                        .unwrap_or(bytes.len());
                    self.copy(&bytes[..end], self.key_len);
                    self.key_len += end;
                    bytes = &bytes[end..];
                    if !bytes.is_empty() {
                        self.state = State::AfterKey;
                    }
                }
                State::AfterKey => {
                    let skip = bytes.iter().position(|b| !is_space(b));
                    bytes = &bytes[skip.unwrap_or(bytes.len())..];
                    match bytes.first() {
                        None => {}
                        Some(b'\n') => {
                            bytes = &bytes[1..];
                            self.end_entry()?;
                        }
                        Some(_) => self.state = State::Value,
                    }
                }
                State::Value => {
                    let end = bytes
                        .iter()
                        .position(|&b| b == b'\n')
                        .unwrap_or(bytes.len());
                    let part = &bytes[..end];
                    if let Some(last) = part.iter().rposition(|b| !is_space(b)) {
                        self.value_end = self.value_len + last + 1;
                    }
                    self.copy(part, self.value_len);
                    self.value_len += end;
                    bytes = &bytes[end..];
                    if !bytes.is_empty() {
                        bytes = &bytes[1..];
                        self.end_entry()?;
                    }
                }
            }
        }
        Ok(())
    }

    /// At a line's end (or the file's) after a key: the entry is checked and indexed.
    fn end_entry(&mut self) -> Result<(), StoreError> {
        let line = self.line;
        self.line += 1;
        self.state = State::LineStart;
        if self.key_len > MAX_TEXT {
            return Err(StoreError::KeyTooLong {
                line,
                len: self.key_len,
            });
        }
        if self.value_end > MAX_TEXT {
            return Err(StoreError::ValueTooLong {
                line,
                len: self.value_end,
            });
        }
        let end = self.start + self.key_len + self.value_end;
        if end > u32::MAX as usize {
            return Err(StoreError::TooLarge { line });
        }
        self.store.arena.truncate(end);
        self.store.commit(self.start, self.key_len, self.value_end);
        Ok(())
    }

    /// At the end of the input: a last line without a newline counts too.
    fn finish(mut self) -> Result<Store, StoreError> {
        if matches!(self.state, State::Key | State::AfterKey | State::Value) {
            self.end_entry()?;
        }
        self.store.settle();
        Ok(self.store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value<'a>(store: &'a Store, key: &str) -> Option<std::borrow::Cow<'a, str>> {
        store.get(key.as_bytes()).map(String::from_utf8_lossy)
    }

    /// Gives its bytes `step` at a time, and an `Interrupted` error before each read.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
        interrupt: bool,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = self.step.min(buf.len()).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    fn read_in_steps(contents: &[u8], step: usize) -> Result<(Store, bool), StoreError> {
        let reader = Trickle {
            bytes: contents,
            step,
            interrupt: false,
        };
        Store::read(reader, 0)
    }

    fn sorted(store: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut entries: Vec<_> = store
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        entries.sort();
        entries
    }

    #[test]
    fn protocol_md_example() {
        let store =
            Store::parse(b"# comment\nhttp 80/tcp   # World Wide Web HTTP\nssh  22/tcp\n").unwrap();
        assert_eq!(store.len(), 2);
        assert_eq!(
            value(&store, "http").as_deref(),
            Some("80/tcp   # World Wide Web HTTP")
        );
        assert_eq!(value(&store, "ssh").as_deref(), Some("22/tcp"));
        assert_eq!(value(&store, "#"), None);
    }

    #[test]
    fn blank_lines_tabs_crlf_duplicates_and_empty_values() {
        let store = Store::parse(b"\n  \t\r\na\t1\r\nb\nc   x y  \t\na 2\n   # indented comment\n")
            .unwrap();
        assert_eq!(value(&store, "a").as_deref(), Some("2"));
        assert_eq!(value(&store, "b").as_deref(), Some(""));
        assert_eq!(value(&store, "c").as_deref(), Some("x y"));
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn comments_only_after_indentation_and_a_last_line_without_newline() {
        let store = Store::parse(b"#a 1\n\t # b 2\nc #3\nd\t\x0b4 # x \x0c\r\ne").unwrap();
        assert_eq!(value(&store, "#a"), None);
        assert_eq!(value(&store, "b"), None);
        assert_eq!(value(&store, "c").as_deref(), Some("#3"));
        assert_eq!(value(&store, "d").as_deref(), Some("4 # x"));
        assert_eq!(value(&store, "e").as_deref(), Some(""));
        assert_eq!(store.len(), 3);
        assert!(Store::parse(b"").unwrap().is_empty());
        assert!(Store::parse(b"# only\n\n  ").unwrap().is_empty());
        assert_eq!(Store::parse(b"").unwrap().get(b"x"), None);
    }

    #[test]
    fn later_duplicates_win_whether_their_value_is_shorter_or_longer() {
        let store =
            Store::parse(b"k long-value\nj 1\nk v\nk much-longer-value\nk \nj 2\n").unwrap();
        assert_eq!(value(&store, "k").as_deref(), Some(""));
        assert_eq!(value(&store, "j").as_deref(), Some("2"));
        assert_eq!(store.len(), 2);
        let store = Store::parse(b"k short\nk a-longer-one\nk mid\n").unwrap();
        assert_eq!(value(&store, "k").as_deref(), Some("mid"));
    }

    #[test]
    fn many_duplicates_leave_a_compact_arena() {
        let mut file = String::new();
        for round in 0..100 {
            for k in 0..100 {
                file.push_str(&format!("key{k} {}\n", "v".repeat(round + k % 7)));
            }
        }
        let store = Store::parse(file.as_bytes()).unwrap();
        assert_eq!(store.len(), 100);
        for k in 0..100 {
            assert_eq!(
                value(&store, &format!("key{k}")).unwrap(),
                "v".repeat(99 + k % 7)
            );
        }
        let live: usize = store.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert_eq!(store.arena.len(), live);
        assert!(store.arena.capacity() < 2 * live, "{:?}", store);
    }

    #[test]
    fn byte_order_mark_is_dropped_only_at_the_start() {
        let store = Store::parse(b"\xEF\xBB\xBFk v\n\xEF\xBB\xBFj w\n").unwrap();
        assert_eq!(value(&store, "k").as_deref(), Some("v"));
        assert_eq!(value(&store, "\u{feff}k"), None);
        assert_eq!(value(&store, "\u{feff}j").as_deref(), Some("w"));
        let (store, bom) = read_in_steps(b"\xEF\xBB\xBFk v\n", 1).unwrap();
        assert!(bom);
        assert_eq!(value(&store, "k").as_deref(), Some("v"));
        let (store, bom) = read_in_steps(b"k v\n", 1).unwrap();
        assert!(!bom);
        assert_eq!(value(&store, "k").as_deref(), Some("v"));
        for short in [&b""[..], b"\xEF", b"\xEF\xBB", b"\xEF\xBB\xBF", b"ab"] {
            let (store, bom) = read_in_steps(short, 1).unwrap();
            assert_eq!(bom, short == BOM);
            let keys = usize::from(!short.is_empty() && short != BOM);
            assert_eq!(store.len(), keys, "{short:?}");
        }
    }

    #[test]
    fn non_utf8_bytes_are_kept() {
        let store = Store::parse(b"k\xff \xfe\xfd\n").unwrap();
        assert_eq!(store.get(b"k\xff").unwrap(), b"\xfe\xfd");
        assert_eq!(store.get_text(b"k\xff").unwrap().as_bytes(), b"\xfe\xfd");
        assert_eq!(value(&store, "k\u{fffd}"), None);
    }

    #[test]
    fn oversized_entries_name_their_line() {
        let long = "v".repeat(MAX_TEXT + 1);
        let err = Store::parse(format!("a 1\nb {long}\n").as_bytes()).unwrap_err();
        assert!(matches!(
            err,
            StoreError::ValueTooLong { line: 2, len: 401 }
        ));
        assert_eq!(
            err.to_string(),
            "line 2: value is 401 bytes, over the limit of 400"
        );
        let err = Store::parse(format!("{long} 1\n").as_bytes()).unwrap_err();
        assert!(matches!(err, StoreError::KeyTooLong { line: 1, len: 401 }));
        let exact = "v".repeat(MAX_TEXT);
        let store = Store::parse(format!("{exact} {exact}\n").as_bytes()).unwrap();
        assert_eq!(value(&store, &exact).as_deref(), Some(exact.as_str()));
        assert_eq!(store.get(format!("{exact}v").as_bytes()), None);
    }

    #[test]
    fn oversized_lengths_are_counted_whole_and_trailing_space_is_not() {
        let key = "k".repeat(5000);
        let err = Store::parse(format!("# c\n\n{key} v\n").as_bytes()).unwrap_err();
        assert!(matches!(err, StoreError::KeyTooLong { line: 3, len: 5000 }));
        let long = format!("{} {}", "v".repeat(300), "w".repeat(700));
        let err = Store::parse(format!("k {long}   \n").as_bytes()).unwrap_err();
        assert!(matches!(
            err,
            StoreError::ValueTooLong { line: 1, len: 1001 }
        ));
        // 400 bytes of value, then any amount of trailing whitespace.
        let exact = "v".repeat(MAX_TEXT);
        let spaces = " \t".repeat(3000);
        let store = Store::parse(format!("k {exact}{spaces}\r\nj 1").as_bytes()).unwrap();
        assert_eq!(value(&store, "k").as_deref(), Some(exact.as_str()));
        assert_eq!(value(&store, "j").as_deref(), Some("1"));
        // Interior whitespace counts.
        let err = Store::parse(format!("k v{spaces}w\n").as_bytes()).unwrap_err();
        assert!(matches!(
            err,
            StoreError::ValueTooLong { line: 1, len: 6002 }
        ));
    }

    #[test]
    fn read_in_any_pieces_is_the_same_as_parse() {
        let mut file = b"# header\n\n  \t\r\na\t1\r\nb\nc   x y  \t\na 2\n   # indented\n".to_vec();
        file.extend_from_slice(b"k\xff \xfe\xfd\n#x\nlast  value with  spaces \t");
        let whole = sorted(&Store::parse(&file).unwrap());
        assert_eq!(whole.len(), 5);
        for step in [1, 2, 3, 5, 7, 64, 1 << 20] {
            let (store, bom) = read_in_steps(&file, step).unwrap();
            assert!(!bom);
            assert_eq!(sorted(&store), whole, "in pieces of {step}");
        }
        let long = format!("a 1\nb {}\n", "v".repeat(MAX_TEXT + 1));
        for step in [1, 3, 1 << 20] {
            let err = read_in_steps(long.as_bytes(), step).unwrap_err();
            assert!(matches!(
                err,
                StoreError::ValueTooLong { line: 2, len: 401 }
            ));
        }
    }

    #[test]
    fn many_keys_grow_the_index_and_misses_are_not_found() {
        let n = 50_000;
        let mut file = String::new();
        for i in 0..n {
            file.push_str(&format!("key{i} value-{i}\n"));
        }
        let store = Store::parse(file.as_bytes()).unwrap();
        assert_eq!(store.len(), n);
        assert!(!over_load(store.len(), store.slots.len()));
        for i in 0..n {
            assert_eq!(
                value(&store, &format!("key{i}")).unwrap(),
                format!("value-{i}")
            );
            assert_eq!(store.get(format!("key{}", i + n).as_bytes()), None);
            assert_eq!(store.get(format!("kex{i}").as_bytes()), None);
        }
        assert_eq!(store.get(b""), None);
        assert_eq!(store.get("k".repeat(MAX_TEXT + 1).as_bytes()), None);
        // The arena holds keys and values only, no separators.
        let live: usize = store.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert_eq!(store.arena.len(), live);
        assert_eq!(live, file.len() - 2 * n);
    }

    #[test]
    fn a_full_small_index_wraps_around_its_end() {
        // 11 keys in 16 slots, under many seeds: probes run past the last slot to the
        // first, through the copied tags.
        let file: String = (0..11).map(|i| format!("k{i} v{i}\n")).collect();
        for _ in 0..500 {
            let store = Store::parse(file.as_bytes()).unwrap();
            assert_eq!(store.slots.len(), 16);
            let n = store.slots.len();
            assert_eq!(store.tags[..GROUP], store.tags[n..]);
            for i in 0..11 {
                assert_eq!(value(&store, &format!("k{i}")).unwrap(), format!("v{i}"));
                assert_eq!(store.get(format!("k{}", i + 11).as_bytes()), None);
            }
        }
    }

    #[test]
    fn load_reads_a_file() {
        let dir = std::env::temp_dir().join(format!("tp3kv-store-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.kv");
        std::fs::write(&path, b"\xEF\xBB\xBFa 1\nb 2\n").unwrap();
        let store = Store::load(&path).unwrap();
        assert_eq!(value(&store, "a").as_deref(), Some("1"));
        assert_eq!(value(&store, "b").as_deref(), Some("2"));
        let missing = Store::load(&dir.join("missing.kv")).unwrap_err();
        assert!(matches!(missing, StoreError::Io(_)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
