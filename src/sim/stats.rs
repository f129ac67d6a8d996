//! What a simulated query did, and the aggregates over many: mean and percentiles.

/// One query's outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryOutcome {
    pub seq: u32,
    /// The servent the client asked.
    pub origin: u32,
    /// Servents that handled at least one copy (the origin included).
    pub reached: u64,
    /// Answers sent to the client.
    pub answers: u64,
    /// Flood frames sent between servents (each one delivered).
    pub frames: u64,
    /// Copies dropped as duplicates.
    pub duplicates: u64,
    /// Copies handled but not passed on: TTL spent.
    pub ttl_spent: u64,
    /// Full reach: copies of a query already handled passed on again, because they
    /// came with more TTL. Each frame sent is a servent's first copy, a duplicate or
    /// one of these: `frames = reached - 1 + duplicates + reforwarded`.
    pub reforwarded: u64,
    /// Topology copies dropped because the path would pass the 400 bytes an info may
    /// hold (TTLs of about 24 hops and more). Such a copy is neither answered nor
    /// counted in the identity above.
    pub info_too_long: u64,
    /// Nanoseconds from the request to the last answer's arrival, if any came.
    pub last_answer: Option<u64>,
    /// Answers sent elsewhere than the client, and links a servent closed: both
    /// should stay 0.
    pub misdirected: u64,
    pub closes: u64,
}

/// Mean and percentiles of one measure over the queries.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Aggregate {
    /// How many values: queries, or for the answer time the queries answered.
    pub count: usize,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Aggregate {
    /// Nearest-rank percentiles; all zero for no values.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Aggregate {
        let mut values: Vec<f64> = values.into_iter().collect();
        if values.is_empty() {
            return Aggregate::default();
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let rank = |p: f64| values[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        Aggregate {
            count: n,
            mean: values.iter().sum::<f64>() / n as f64,
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: values[n - 1],
        }
    }

    /// `mean p50 p90 p99 max` values in order, for tables and CSV.
    pub fn values(&self) -> [f64; 5] {
        [self.mean, self.p50, self.p90, self.p99, self.max]
    }
}

/// The names of [`Aggregate::values`], in order.
pub const AGGREGATES: [&str; 5] = ["mean", "p50", "p90", "p99", "max"];

/// The aggregates of a run of queries.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    pub queries: usize,
    pub reached: Aggregate,
    pub answers: Aggregate,
    pub frames: Aggregate,
    pub duplicates: Aggregate,
    pub ttl_spent: Aggregate,
    pub reforwarded: Aggregate,
    pub info_too_long: Aggregate,
    /// In milliseconds, over the queries that had an answer (`count` of them).
    pub last_answer_ms: Aggregate,
}

impl Summary {
    pub fn of(outcomes: &[QueryOutcome]) -> Summary {
        let measure =
            |f: fn(&QueryOutcome) -> u64| Aggregate::of(outcomes.iter().map(|o| f(o) as f64));
        Summary {
            queries: outcomes.len(),
            reached: measure(|o| o.reached),
            answers: measure(|o| o.answers),
            frames: measure(|o| o.frames),
            duplicates: measure(|o| o.duplicates),
            ttl_spent: measure(|o| o.ttl_spent),
            reforwarded: measure(|o| o.reforwarded),
            info_too_long: measure(|o| o.info_too_long),
            last_answer_ms: Aggregate::of(
                outcomes
                    .iter()
                    .filter_map(|o| o.last_answer)
                    .map(|ns| ns as f64 / 1e6),
            ),
        }
    }
}

/// Memory a simulated servent takes, about: the `Servent`, its two links, its share
/// of the graph and of the network's bookkeeping (a million took 1.45 GiB).
pub const BYTES_PER_SERVENT: u64 = 1600;

/// The memory the system could give this process without swapping (MemAvailable),
/// in bytes, where Linux tells it.
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// This process's peak resident memory (VmHWM), in bytes, where Linux tells it.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let a = Aggregate::of((1..=100).map(f64::from));
        assert_eq!(a.count, 100);
        assert_eq!(a.mean, 50.5);
        assert_eq!((a.p50, a.p90, a.p99, a.max), (50.0, 90.0, 99.0, 100.0));
        let one = Aggregate::of([7.0]);
        assert_eq!(one.values(), [7.0; 5]);
        assert_eq!(Aggregate::of([]), Aggregate::default());
    }

    #[test]
    fn a_summary_times_only_the_answered_queries() {
        let outcomes = [
            QueryOutcome {
                reached: 3,
                last_answer: Some(2_000_000),
                ..QueryOutcome::default()
            },
            QueryOutcome {
                reached: 5,
                ..QueryOutcome::default()
            },
        ];
        let s = Summary::of(&outcomes);
        assert_eq!(s.queries, 2);
        assert_eq!(s.reached.mean, 4.0);
        assert_eq!(s.last_answer_ms.count, 1);
        assert_eq!(s.last_answer_ms.max, 2.0);
    }

    #[test]
    fn peak_rss_and_available_memory_are_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss().unwrap() > 0);
            assert!(available_memory().unwrap() > 0);
        }
    }
}
