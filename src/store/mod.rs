//! The servent's key-value file: parsing (pure, over bytes or a stream) and lookups.
//!
//! Format (docs/PROTOCOL.md): one entry per line; the key is the first whitespace-delimited
//! word, the value the rest of the line with surrounding whitespace trimmed. Lines
//! starting with `#` (after any indentation) and blank lines are ignored; a later
//! duplicate key wins. Bytes need not be UTF-8: they are kept as they are and only
//! shown lossily. A UTF-8 byte-order mark at the very start of the file is not part of
//! the first key: it is dropped.
//!
//! The store is compact. Entries are spread over shards by their key's hash (keyed
//! per process: peers choose the keys looked up). Each shard is one byte arena of
//! records (the key's length, the value's length, the key, the value) and an
//! open-addressing index over groups of 8 slots: a tag byte per slot (0 if free, else 7
//! bits of the key's hash) and, per group, where its records start in the arena, which
//! holds them in slot order. A lookup reads its key's group of tags and, for a tag that
//! is the key's, walks the group's records from that start to the slot. Tags and starts
//! take a byte and a half a slot, little enough to stay in the caches: a key held costs
//! one read of the arena, most keys not held none.
//!
//! A file is parsed as it is read, a chunk at a time, each line into its shard (no line
//! is ever allocated). While loading, a shard's index holds each slot's record offset
//! and its arena the records in file order; once the file is read, shard after shard,
//! the live records are copied to an arena in slot order and the loading one dropped.
//! So memory stays near the file's size, plus 5 bytes a slot while loading and 1.5
//! after: never the file twice.

use std::fmt;
use std::hash::BuildHasher;
use std::io::{self, Read};
use std::path::Path;

use log::warn;

mod index;

use crate::hashing::FoldHashSeeds;
use crate::protocol::{Text, MAX_TEXT};
use index::{shard_of, Building, Shard};

/// The UTF-8 byte-order mark some editors write at the start of a text file.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Bytes read from a file at a time.
const CHUNK: usize = 64 * 1024;

/// File bytes a shard is meant for: a regular file gets one shard for each (rounded to
/// a power of two), so that the copy each one makes once loaded is small.
const SHARD_BYTES: usize = 256 * 1024;
const MAX_SHARDS: usize = 1024;
/// Shards for a file of unknown size (a pipe).
const UNKNOWN_SIZE_SHARDS: usize = 64;

/// A loaded key-value file.
#[derive(Default, Clone)]
pub struct Store {
    /// A power of two of them (none in an empty `Store::default()`).
    shards: Vec<Shard>,
    len: usize,
    /// Looked up for every query that passes; peers choose the keys, so hashed with
    /// per-process seeds.
    seeds: FoldHashSeeds,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("keys", &self.len)
            .field("shards", &self.shards.len())
            .field("heap_bytes", &self.heap_bytes())
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
    /// The keys and values of one shard, up to `line`, are over the 4 GiB it can
    /// address.
    TooLarge {
        line: usize,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io(e) => f.write_str(&crate::os_error::plain(e)),
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
                "line {line}: over 4 GiB of keys and values in one shard, more than it holds"
            ),
        }
    }
}

impl std::error::Error for StoreError {}

fn is_space(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\x0b' | b'\x0c')
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
        // A regular file's size sets the shards' number and room; a pipe's is unknown.
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
        let mut loader = Loader::new(usize::try_from(size_hint).unwrap_or(usize::MAX));
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
        if self.shards.is_empty() || key.len() > MAX_TEXT {
            return None;
        }
        let hash = self.seeds.hash_one(key);
        self.shards[shard_of(hash, self.shards.len())].get(key, hash)
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
        self.shards.iter().flat_map(Shard::entries)
    }

    /// Bytes of memory the store holds: its arenas and their indexes.
    pub fn heap_bytes(&self) -> usize {
        self.shards.iter().map(Shard::heap_bytes).sum::<usize>()
            + self.shards.capacity() * std::mem::size_of::<Shard>()
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

/// The parser: bytes in, in pieces of any size; each line's key and value gathered in
/// one buffer (only their first `MAX_TEXT` bytes: a longer one is an error once its
/// length is known, at the end of its line), then added to their shard.
struct Loader {
    shards: Vec<Building>,
    seeds: FoldHashSeeds,
    /// The current line's key, then its value.
    line_bytes: Vec<u8>,
    state: State,
    /// The current line, 1-based.
    line: usize,
    key_len: usize,
    /// The value's bytes so far, trailing whitespace included.
    value_len: usize,
    /// The value's bytes up to its last non-space one.
    value_end: usize,
}

impl Loader {
    /// `size_hint`: the bytes to come, if known (else 0).
    fn new(size_hint: usize) -> Loader {
        let shards = match size_hint {
            0 => UNKNOWN_SIZE_SHARDS,
            size => (size / SHARD_BYTES).next_power_of_two().min(MAX_SHARDS),
        };
        // Room for a shard's share, and some: keys spread evenly but not exactly.
        let room = match size_hint {
            0 => 0,
            size => (size / shards).saturating_add(size / shards / 16 + 1024),
        };
        Loader {
            shards: (0..shards).map(|_| Building::with_room(room)).collect(),
            seeds: FoldHashSeeds::default(),
            line_bytes: Vec::with_capacity(2 * MAX_TEXT),
            state: State::LineStart,
            line: 1,
            key_len: 0,
            value_len: 0,
            value_end: 0,
        }
    }

    /// Appends the part of `bytes` that keeps a text of `already` bytes within
    /// `MAX_TEXT`.
    fn copy(&mut self, bytes: &[u8], already: usize) {
        let room = MAX_TEXT.saturating_sub(already).min(bytes.len());
        self.line_bytes.extend_from_slice(&bytes[..room]);
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
                            self.line_bytes.clear();
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

    /// At a line's end (or the file's) after a key: the entry is checked and added.
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
        let (key, rest) = self.line_bytes.split_at(self.key_len);
        let value = &rest[..self.value_end];
        let hash = self.seeds.hash_one(key);
        let shard = shard_of(hash, self.shards.len());
        self.shards[shard].insert(key, value, hash, &self.seeds, line)
    }

    /// At the end of the input (a last line without a newline counts too): each shard
    /// in turn copies its live records out and drops its loading arena.
    fn finish(mut self) -> Result<Store, StoreError> {
        if matches!(self.state, State::Key | State::AfterKey | State::Value) {
            self.end_entry()?;
        }
        let len = self.shards.iter().map(|shard| shard.len).sum();
        let shards = self.shards.into_iter().map(Building::freeze).collect();
        Ok(Store {
            shards,
            len,
            seeds: self.seeds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::index::{over_load, GROUP, SHORT_LEN};
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

    fn arena_bytes(store: &Store) -> usize {
        store.shards.iter().map(|s| s.arena.len()).sum()
    }

    /// The bytes the records of `store`'s entries take: lengths, key and value.
    fn record_bytes(store: &Store) -> usize {
        let len = |n: usize| if n < SHORT_LEN { 1 } else { 2 };
        store
            .iter()
            .map(|(k, v)| len(k.len()) + len(v.len()) + k.len() + v.len())
            .sum()
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
        // Only the last value of each key is left, with no room to spare.
        assert_eq!(arena_bytes(&store), record_bytes(&store));
        let capacity: usize = store.shards.iter().map(|s| s.arena.capacity()).sum();
        assert_eq!(capacity, record_bytes(&store));
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
        assert!(store.shards.len() > 1, "{store:?}");
        for shard in &store.shards {
            let taken = shard.tags.iter().filter(|&&t| t != 0).count();
            assert!(!over_load(taken, shard.tags.len()));
            assert_eq!(shard.starts.len(), shard.tags.len() / GROUP);
        }
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
        // The arenas hold the records only: two bytes of lengths where the file had a
        // space and a newline.
        assert_eq!(arena_bytes(&store), record_bytes(&store));
        assert_eq!(arena_bytes(&store), file.len());
        assert_eq!(store.iter().count(), n);
    }

    #[test]
    fn a_full_small_index_wraps_around_its_end() {
        // 11 keys in 2 groups of 8, under many seeds: a full last group sends keys to
        // the first, and every group's records are walked.
        let file: String = (0..11).map(|i| format!("k{i} v{i}\n")).collect();
        for _ in 0..500 {
            let store = Store::parse(file.as_bytes()).unwrap();
            assert_eq!(store.shards.len(), 1);
            assert_eq!(store.shards[0].tags.len(), 16);
            for i in 0..11 {
                assert_eq!(value(&store, &format!("k{i}")).unwrap(), format!("v{i}"));
                assert_eq!(store.get(format!("k{}", i + 11).as_bytes()), None);
            }
        }
    }

    #[test]
    fn lengths_of_one_and_two_bytes_are_walked_over() {
        // Keys and values of every length class, many to a group, in a few shards.
        let mut file = String::new();
        let mut expected = Vec::new();
        for i in 0..3000usize {
            let key = format!("{i}-{}", "k".repeat(i * 7 % 390));
            let value = "v".repeat(i * 13 % 401);
            file.push_str(&format!("{key} {value}\n"));
            expected.push((key, value));
        }
        let store = Store::parse(file.as_bytes()).unwrap();
        assert!(store.shards.len() > 1, "{store:?}");
        for (key, value) in &expected {
            assert_eq!(store.get(key.as_bytes()), Some(value.as_bytes()), "{key}");
        }
        assert_eq!(store.get(b"3000-"), None);
        assert_eq!(arena_bytes(&store), record_bytes(&store));
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
