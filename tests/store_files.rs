//! Key-value files a real servent is started with: one that starts with a byte-order
//! mark, a large one, and a FIFO that delivers only after a while. Each test ends with
//! a normal query answered promptly.

mod common;

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// How soon an answer must come to count as prompt (it takes well under a millisecond
/// on loopback; this leaves room for a busy machine).
const PROMPT: Duration = Duration::from_secs(3);

/// Asks `node` for `key` over raw sockets, as a client does: the value and how long it
/// took, or `None` if no answer came within `PROMPT`.
fn query(node: &Node, seq: u32, key: &str) -> Option<(String, Duration)> {
    match raw_query(node.port(), seq, key, PROMPT) {
        Ok((value, _, took)) => Some((value, took)),
        Err(e) if e.starts_with("no answer within") => None,
        Err(e) => panic!("asking for {key:?}: {e}"),
    }
}

/// `node` answers `key` with `value`, promptly.
fn answers(node: &Node, seq: u32, key: &str, value: &str) {
    let answer = query(node, seq, key);
    let Some((got, took)) = answer else {
        panic!(
            "no answer for {key:?} within {PROMPT:?}; servent log:\n{}",
            node.log()
        )
    };
    assert_eq!(got, value, "the value of {key:?}");
    assert!(took < PROMPT, "{key:?} took {took:?}");
}

/// The store every test ends by asking for: `? k` → `v`.
fn normal_query(node: &Node) {
    answers(node, 999, "k", "v");
}

/// A servent on any port with `file` as its key-value file, logging at `info`.
fn start(dir: &TempDir, tag: &str, file: &Path) -> Node {
    let mut command = Command::new(SERVENT);
    command.env("RUST_LOG", "info").arg("0").arg(file);
    start_node(command, dir, tag)
}

#[test]
fn a_byte_order_mark_is_dropped_with_a_warning() {
    let dir = TempDir::new("store-bom");
    let file = dir.file("bom.kv", "\u{feff}first 1\nk v\n\u{feff}inner 2\n");
    let node = start(&dir, "bom", &file);
    answers(&node, 1, "first", "1");
    assert_eq!(query(&node, 2, "\u{feff}first"), None);
    // Only the file's first bytes are a byte-order mark.
    answers(&node, 3, "\u{feff}inner", "2");
    let log = node.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("byte-order mark"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("WARN"), "{log}");
    assert!(warnings[0].contains(&file.display().to_string()), "{log}");
    normal_query(&node);
}

#[test]
fn a_large_file_costs_under_three_times_its_size() {
    const KEYS: usize = 200_000;
    let dir = TempDir::new("store-large");
    // The same servent binary with a one-line file: what the process costs without a
    // store, to tell the store's share of the large one's memory.
    let small = start(&dir, "small", &dir.file("small.kv", "k v\n"));
    normal_query(&small);
    let mut contents = String::with_capacity(KEYS * 24);
    for n in 1..=KEYS {
        contents.push_str(&format!("key{n:07} value-{n}-{}\n", n % 97));
    }
    contents.push_str("k v\n");
    let file = dir.file("large.kv", &contents);
    let size_kib = contents.len() as u64 / 1024;
    let started = Instant::now();
    let node = start(&dir, "large", &file);
    eprintln!(
        "{KEYS} keys ({size_kib} KiB) loaded and listening in {:?}",
        started.elapsed()
    );
    answers(&node, 1, "key0199998", "value-199998-81");
    answers(&node, 2, "key0000001", "value-1-1");
    assert_eq!(query(&node, 3, "key0200001"), None);
    let log = node.log();
    assert!(log.contains(&format!("{} keys from", KEYS + 1)), "{log}");

    let base = small.peak_rss_kib().expect("VmHWM");
    let peak = node.peak_rss_kib().expect("VmHWM");
    let resident = node.rss_kib().expect("VmRSS");
    eprintln!(
        "servent with the large file: peak {peak} KiB, resident {resident} KiB; \
         with a one-line file: peak {base} KiB"
    );
    assert!(
        peak.saturating_sub(base) < 3 * size_kib,
        "peak {peak} KiB, {base} KiB of it the servent alone, for a {size_kib} KiB file"
    );
    normal_query(&node);
}

#[test]
fn a_fifo_that_delivers_late_is_reported_once_then_served() {
    let dir = TempDir::new("store-fifo");
    let path = dir.0.join("keys.fifo");
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo only reads the NUL-terminated path it is given.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);

    // The servent prints `listening on` only once the file is loaded: start_node waits
    // for it while this thread watches the log, then writes the file.
    let log_path = dir.0.join("fifo.log");
    let writer_path = path.clone();
    let writer = std::thread::spawn(move || {
        let start = Instant::now();
        let warned = loop {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if log.contains("still loading") {
                break Some(start.elapsed());
            }
            if start.elapsed() > Duration::from_secs(20) {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Opened without blocking, so a servent that never opened it fails the test
        // rather than hanging it.
        let mut fifo = loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&writer_path)
            {
                Ok(f) => break f,
                Err(e) if start.elapsed() < Duration::from_secs(30) => {
                    eprintln!("opening the FIFO: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("nobody reads the FIFO: {e}"),
            }
        };
        fifo.write_all(b"late 1\nk v\n").unwrap();
        warned
    });
    let mut command = Command::new(SERVENT);
    command.env("RUST_LOG", "info").arg("0").arg(&path);
    let node = start_node(command, &dir, "fifo");
    let warned = writer.join().unwrap();
    let log = node.log();
    let Some(after) = warned else {
        panic!("no warning in 20 s; log:\n{log}")
    };
    assert!(after < Duration::from_secs(10), "warned after {after:?}");
    assert!(after > Duration::from_secs(2), "warned after {after:?}");
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("still loading"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("WARN"), "{log}");
    assert!(warnings[0].contains(&path.display().to_string()), "{log}");
    answers(&node, 1, "late", "1");
    normal_query(&node);
}
