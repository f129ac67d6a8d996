//! The key-value store alone: `cargo bench --bench store`.
//!
//! Writes a file of 1,000,000 keys (`key0000001` ... `key1000000`, values of 10 to 15
//! bytes: about 23 MiB) to a temporary directory, then, in each of `STORE_ROUNDS` (3)
//! rounds, re-runs this binary as a child (`TP3KV_STORE_ROLE=load`) that loads it with
//! `Store::load`, as a servent does, and reports:
//!
//! - the load time;
//! - its memory: resident before loading (the process alone), and the peak (`VmHWM`) and
//!   resident (`VmRSS`) after, read from `/proc/self/status`; each also as a multiple
//!   of the file's size (the whole process, so a little over the store's own share);
//! - ns per lookup of keys it holds (hit) and of keys it does not (miss), each key
//!   drawn at random, so most lookups miss the caches as a servent's would.
//!
//! The best load and lookup times of the rounds count, and the highest memory. Every
//! lookup's outcome is checked (each hit found with its value's length, no miss found).
//! Run without `--bench` (`cargo test --bench store`), a smoke run of 20,000 keys.
//! `STORE_KEYS` sets the number of keys, `STORE_LOOKUPS` the lookups of each kind.

use std::hint::black_box;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use tp3kv::store::Store;

const ROLE: &str = "TP3KV_STORE_ROLE";
const KEY_LEN: usize = 10;

fn key(n: usize) -> String {
    format!("key{n:07}")
}

/// The value of key `n`: 10 to 15 bytes, all of them known from `n`.
fn value(n: usize) -> String {
    let mut v = format!("v{n}-");
    let len = 10 + n * 7 % 6;
    let mut x = n as u64 | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(char::from(b'a' + (x % 26) as u8));
    }
    v
}

/// Numbers in 1..=`n` (or `n+1..=2n` for misses) at random: `count` of them.
fn draws(n: usize, count: usize, miss: bool, seed: u64) -> Vec<usize> {
    let mut x = seed | 1;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            1 + (x % n as u64) as usize + if miss { n } else { 0 }
        })
        .collect()
}

fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// In the child: loads the file, then looks keys up; prints `name value` lines.
fn child(args: &[String]) -> Result<(), String> {
    let [path, keys, lookups] = args else {
        return Err("usage: FILE KEYS LOOKUPS".into());
    };
    let keys: usize = keys.parse().map_err(|e| format!("{keys}: {e}"))?;
    let lookups: usize = lookups.parse().map_err(|e| format!("{lookups}: {e}"))?;
    let base = proc_status_kib("VmRSS:");
    let start = Instant::now();
    let store = Store::load(Path::new(path)).map_err(|e| format!("{path}: {e}"))?;
    let load = start.elapsed();
    let peak = proc_status_kib("VmHWM:");
    let resident = proc_status_kib("VmRSS:");
    if store.len() != keys {
        return Err(format!("{} keys loaded, {keys} expected", store.len()));
    }
    for n in [1, keys / 2, keys] {
        let found = store.get(key(n).as_bytes()).map(|v| v.len());
        if found != Some(value(n).len()) {
            return Err(format!("key {n}: value of length {found:?}"));
        }
    }

    let mut times = Vec::new();
    for miss in [false, true] {
        let numbers = draws(keys, lookups, miss, if miss { 7 } else { 3 });
        let mut flat = Vec::with_capacity(lookups * KEY_LEN);
        for &n in &numbers {
            flat.extend_from_slice(key(n).as_bytes());
        }
        let lengths: Vec<usize> = numbers.iter().map(|&n| value(n).len()).collect();
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let start = Instant::now();
            let mut found = 0usize;
            let mut bytes = 0usize;
            for k in flat.chunks_exact(KEY_LEN) {
                if let Some(len) = black_box(&store).get(black_box(k)).map(|v| v.len()) {
                    found += 1;
                    bytes += len;
                }
            }
            let ns = start.elapsed().as_nanos() as f64 / lookups as f64;
            best = best.min(ns);
            let expected_bytes: usize = if miss { 0 } else { lengths.iter().sum() };
            let expected_found = if miss { 0 } else { lookups };
            if (found, bytes) != (expected_found, expected_bytes) {
                return Err(format!(
                    "{} lookups: {found} found with {bytes} value bytes, \
                     {expected_found} and {expected_bytes} expected",
                    if miss { "miss" } else { "hit" }
                ));
            }
        }
        times.push(best);
    }
    println!("load_ms {:.1}", load.as_secs_f64() * 1e3);
    println!("base_kib {base}");
    println!("peak_kib {peak}");
    println!("resident_kib {resident}");
    println!("hit_ns {:.1}", times[0]);
    println!("miss_ns {:.1}", times[1]);
    Ok(())
}

fn write_file(path: &Path, keys: usize) -> Result<u64, String> {
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = BufWriter::new(file);
    for n in 1..=keys {
        writeln!(out, "{} {}", key(n), value(n)).map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())?;
    Ok(std::fs::metadata(path).map_err(|e| e.to_string())?.len())
}

#[derive(Default, Clone, Copy)]
struct Round {
    load_ms: f64,
    base_kib: f64,
    peak_kib: f64,
    resident_kib: f64,
    hit_ns: f64,
    miss_ns: f64,
}

fn round(path: &Path, keys: usize, lookups: usize) -> Result<Round, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let output = Command::new(exe)
        .env(ROLE, "load")
        .arg(path)
        .arg(keys.to_string())
        .arg(lookups.to_string())
        .output()
        .map_err(|e| format!("child: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "child failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| -> Result<f64, String> {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("child printed no {name}: {stdout}"))
    };
    Ok(Round {
        load_ms: field("load_ms")?,
        base_kib: field("base_kib")?,
        peak_kib: field("peak_kib")?,
        resident_kib: field("resident_kib")?,
        hit_ns: field("hit_ns")?,
        miss_ns: field("miss_ns")?,
    })
}

fn env_usize(name: &str, default: usize) -> Result<usize, String> {
    match std::env::var(name) {
        Ok(text) => match text.trim().parse() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{name}={text:?}: expected a positive number")),
        },
        Err(_) => Ok(default),
    }
}

fn run(benching: bool) -> Result<(), String> {
    let keys = env_usize("STORE_KEYS", if benching { 1_000_000 } else { 20_000 })?;
    let lookups = env_usize("STORE_LOOKUPS", if benching { 2_000_000 } else { 20_000 })?;
    let rounds = env_usize("STORE_ROUNDS", if benching { 3 } else { 1 })?;
    if keys >= 5_000_000 {
        return Err("STORE_KEYS: below 5,000,000 (keys and misses have 7 digits)".into());
    }
    let dir = TempDir(std::env::temp_dir().join(format!("tp3kv-store-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).map_err(|e| format!("{}: {e}", dir.0.display()))?;
    let path = dir.0.join("keys.kv");
    let size = write_file(&path, keys)?;
    let mib = |kib: f64| kib / 1024.0;
    let file_kib = size as f64 / 1024.0;
    if !benching {
        println!("store: smoke run (no --bench): few keys, maybe a debug build");
    }
    println!(
        "store: {keys} keys, file {:.1} MiB, {lookups} lookups of each kind, {rounds} rounds",
        mib(file_kib)
    );
    println!(
        "{:>6} {:>8} {:>9} {:>9} {:>9} {:>10} {:>9} {:>7} {:>8}",
        "round",
        "load ms",
        "base MiB",
        "peak MiB",
        "peak/file",
        "resid MiB",
        "res/file",
        "hit ns",
        "miss ns"
    );
    let line = |name: &str, r: &Round| {
        println!(
            "{name:>6} {:>8.1} {:>9.1} {:>9.1} {:>9.2} {:>10.1} {:>9.2} {:>7.1} {:>8.1}",
            r.load_ms,
            mib(r.base_kib),
            mib(r.peak_kib),
            r.peak_kib / file_kib,
            mib(r.resident_kib),
            r.resident_kib / file_kib,
            r.hit_ns,
            r.miss_ns
        );
    };
    let mut best: Option<Round> = None;
    for i in 0..rounds {
        let r = round(&path, keys, lookups)?;
        line(&(i + 1).to_string(), &r);
        best = Some(match best {
            None => r,
            Some(b) => Round {
                load_ms: b.load_ms.min(r.load_ms),
                base_kib: b.base_kib.max(r.base_kib),
                peak_kib: b.peak_kib.max(r.peak_kib),
                resident_kib: b.resident_kib.max(r.resident_kib),
                hit_ns: b.hit_ns.min(r.hit_ns),
                miss_ns: b.miss_ns.min(r.miss_ns),
            },
        });
    }
    if let Some(b) = best {
        line("best", &b);
    }
    Ok(())
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() -> ExitCode {
    if std::env::var_os(ROLE).is_some() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        return match child(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("store child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // `cargo bench -- flood` passes its section names to every bench: run only when
    // none is given, or `store` is.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let names: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    if !names.is_empty() && !names.iter().any(|n| *n == "store") {
        return ExitCode::SUCCESS;
    }
    match run(args.iter().any(|a| a == "--bench")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("store: error: {e}");
            ExitCode::FAILURE
        }
    }
}
