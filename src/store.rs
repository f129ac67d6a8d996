//! The servent's key-value file: parsing (pure, over bytes) and lookups.
//!
//! Format (PROTOCOL.md): one entry per line; the key is the first whitespace-delimited
//! word, the value the rest of the line with surrounding whitespace trimmed. Lines
//! starting with `#` (after any indentation) and blank lines are ignored; a later duplicate key wins. Bytes need
//! not be UTF-8: they are kept as they are and only shown lossily.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use crate::hashing::FoldHashSeeds;
use crate::protocol::{Text, MAX_TEXT};

/// A loaded key-value file.
#[derive(Debug, Default, Clone)]
pub struct Store {
    /// Looked up for every query that passes; peers choose the keys, so hashed with
    /// per-process seeds. Keys are `Text`s, so a short one is compared in the entry
    /// itself, with no pointer to follow.
    entries: HashMap<Text, Text, FoldHashSeeds>,
}

/// Why a key-value file cannot be loaded. `line` is 1-based.
#[derive(Debug)]
pub enum StoreError {
    Io(std::io::Error),
    KeyTooLong { line: usize, len: usize },
    ValueTooLong { line: usize, len: usize },
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
        }
    }
}

impl std::error::Error for StoreError {}

fn is_space(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\x0b' | b'\x0c')
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_space(first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_space(last) {
            break;
        }
        s = rest;
    }
    s
}

impl Store {
    /// Parses a key-value file's contents.
    pub fn parse(contents: &[u8]) -> Result<Store, StoreError> {
        let mut entries = HashMap::default();
        for (index, raw_line) in contents.split(|&b| b == b'\n').enumerate() {
            let line_number = index + 1;
            let line = trim(raw_line);
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            let key_end = line.iter().position(is_space).unwrap_or(line.len());
            let (key, rest) = line.split_at(key_end);
            let value = trim(rest);
            let key = Text::new(key).map_err(|e| StoreError::KeyTooLong {
                line: line_number,
                len: e.len,
            })?;
            let value = Text::new(value).map_err(|e| StoreError::ValueTooLong {
                line: line_number,
                len: e.len,
            })?;
            entries.insert(key, value);
        }
        Ok(Store { entries })
    }

    /// Reads and parses a key-value file.
    pub fn load(path: &Path) -> Result<Store, StoreError> {
        let contents = std::fs::read(path).map_err(StoreError::Io)?;
        Store::parse(&contents)
    }

    pub fn get(&self, key: &[u8]) -> Option<&Text> {
        self.entries.get(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value<'a>(store: &'a Store, key: &str) -> Option<std::borrow::Cow<'a, str>> {
        store.get(key.as_bytes()).map(|t| t.to_lossy())
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
    fn non_utf8_bytes_are_kept() {
        let store = Store::parse(b"k\xff \xfe\xfd\n").unwrap();
        assert_eq!(store.get(b"k\xff").unwrap().as_bytes(), b"\xfe\xfd");
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
        assert!(Store::parse(format!("{exact} {exact}\n").as_bytes()).is_ok());
    }
}
