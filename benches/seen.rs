//! Microbenchmark of the seen cache alone: `cargo bench --bench seen`.
//!
//! A cache of the servent's default size (1 << 18 ids, 60 s) takes 3,000,000 distinct
//! ids, its clock stepping as a driver's would (one `now` per batch of 64 frames):
//! ns per insert while it fills (growth included), then once full (each insert evicts
//! the oldest), then per duplicate refused. Below capacity in a steady state: a 1 s
//! lifetime and a slower clock keep about 130,000 ids live, each insert expiring about
//! one. Ids come from one client counting its sequence numbers up (as in the flood
//! benchmark), or are random. Best of `SEEN_ROUNDS` (5) runs.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use tp3kv::servent::{QueryId, SeenCache};

const CAPACITY: usize = 1 << 18;
const INSERTS: usize = 3_000_000;
const BATCH: usize = 64;

fn one_client(n: usize) -> Vec<QueryId> {
    (0..n)
        .map(|i| QueryId {
            ip: Ipv4Addr::LOCALHOST,
            port: 41_001,
            seq: 0xFFF0_0000_u32.wrapping_add(i as u32),
        })
        .collect()
}

fn random(n: usize) -> Vec<QueryId> {
    let mut x = 0x9E37_79B9_7F4A_7C15_u64;
    (0..n)
        .map(|_| {
            // xorshift64; 2^64 - 1 distinct states, so no repeats in n.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            QueryId {
                ip: Ipv4Addr::from((x >> 32) as u32),
                port: (x >> 16) as u16,
                seq: x as u32 ^ (x >> 48) as u32,
            }
        })
        .collect()
}

/// Inserts every id, all new, stepping the clock by `step` each batch; ns per insert.
fn insert_all(cache: &mut SeenCache, ids: &[QueryId], now: &mut Instant, step: Duration) -> f64 {
    let start = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        if i % BATCH == 0 {
            *now += step;
        }
        assert!(black_box(cache.insert(*id, *now)));
    }
    start.elapsed().as_nanos() as f64 / ids.len() as f64
}

#[derive(Clone, Copy)]
struct Times {
    fill: f64,
    full: f64,
    duplicate: f64,
    expiring: f64,
}

fn run(ids: &[QueryId]) -> Times {
    let mut cache = SeenCache::new(Duration::from_secs(60), CAPACITY);
    let mut now = Instant::now();
    let step = Duration::from_micros(40);
    let (filling, rest) = ids.split_at(CAPACITY);
    let fill = insert_all(&mut cache, filling, &mut now, step);
    let full = insert_all(&mut cache, rest, &mut now, step);
    assert_eq!(cache.len(), CAPACITY);

    let recent = &ids[ids.len() - CAPACITY / 2..];
    let start = Instant::now();
    for id in recent {
        assert!(!black_box(cache.insert(*id, now)));
    }
    let duplicate = start.elapsed().as_nanos() as f64 / recent.len() as f64;

    // 64 ids every 500 µs for 1 s (and one tick): about 130,000 live.
    let mut cache = SeenCache::new(Duration::from_secs(1), CAPACITY);
    let step = Duration::from_micros(500);
    let warm = 3 * CAPACITY / 2;
    insert_all(&mut cache, &ids[..warm], &mut now, step);
    let expiring = insert_all(&mut cache, &ids[warm..], &mut now, step);
    assert!(cache.len() < CAPACITY);
    Times {
        fill,
        full,
        duplicate,
        expiring,
    }
}

fn main() {
    // `cargo bench -- flood` passes its section names to every bench: run only when
    // none is given, or `seen` is.
    let names: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !names.is_empty() && !names.iter().any(|n| n == "seen") {
        return;
    }
    let rounds = std::env::var("SEEN_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5_usize)
        .max(1);
    println!(
        "seen cache, capacity {CAPACITY}, {INSERTS} distinct ids, ns/insert, best of {rounds}"
    );
    println!(
        "{:>12} {:>9} {:>9} {:>10} {:>9}",
        "ids", "filling", "full", "duplicate", "expiring"
    );
    for (name, ids) in [
        ("one client", one_client(INSERTS)),
        ("random", random(INSERTS)),
    ] {
        let mut best = run(&ids);
        for _ in 1..rounds {
            let t = run(&ids);
            best.fill = best.fill.min(t.fill);
            best.full = best.full.min(t.full);
            best.duplicate = best.duplicate.min(t.duplicate);
            best.expiring = best.expiring.min(t.expiring);
        }
        println!(
            "{name:>12} {:>9.1} {:>9.1} {:>10.1} {:>9.1}",
            best.fill, best.full, best.duplicate, best.expiring
        );
    }
}
