//! `cargo bench`: the servent against the limit of the machine it runs on.
//!
//! ```sh
//! cargo bench                                   # every section, full length
//! cargo bench -- answers flood                  # some sections
//! PERF_SECS=3 PERF_CLIENTS=1,16 cargo bench -- answers
//! ```
//!
//! Real servents, built in release (`cargo bench` uses the `bench` profile, which
//! inherits `release`), run with `RUST_LOG=warn` on ports the system picks, in a
//! temporary directory. Absolute numbers on shared machines drift, so each figure is
//! printed beside a baseline measured in the same run (`baseline.rs`: this binary re-run
//! as a minimal answerer or a raw relay, doing no protocol work beyond the least any
//! implementation must do), and the ratio is what the targets are about.
//!
//! Sections, in the order they run (given on the command line or not):
//! - `flood`: frames/s one servent forwards from one neighbour to two others, and the
//!   raw relay's bytes as frames/s, in 5 rounds (the median counts); the servent's RSS
//!   idle and after the million distinct queries of the first round (`flood.rs`);
//! - `scale`: 200 servents in a random graph of degree 4: start-up time, memory per
//!   servent, and the answers to a topology query; then the query again with every
//!   servent started with `--full-reach`, which must reach every servent within 4 hops,
//!   and the TOPOFLOODs that costs beside the first run's (`scale.rs`, `topology.rs`);
//! - `line`: lookup latency across a line of 5 servents, answered by the far end, and
//!   across 4 raw relays to the minimal answerer (`answers.rs`);
//! - `answers`: answers/s and latency at 1, 16 and 64 concurrent clients, servent and
//!   minimal answerer, each client with its own reply address, for two kinds of client:
//!   `close` (reads one RESP per reply connection, then closes) and `eof` (reads until the
//!   other end closes; its answer is whole only then). Then the p99 latency of 16 clients
//!   of a fresh servent, alone and beside a hostile reply address that never reads its
//!   answers (`answers.rs`, with the load generator in `loadgen.rs` and the hostile
//!   address in `hostile.rs`). Targets: at 16 clients, answers/s ≥ 0.9× the answerer's for
//!   both kinds, none lost; with the hostile address, p99 ≤ 2× the p99 without it.
//!
//! Correctness is checked all along (every query answered exactly once with the right
//! value, every flood forwarded exactly once, clean servent exits): a failure there
//! exits 1. Targets missed are reported in the final table; they fail the run only with
//! `PERF_STRICT=1`.
//!
//! Knobs: `PERF_SECS` (measured seconds per level, default 10), `PERF_WARMUP_SECS` (1),
//! `PERF_CLIENTS` (1,16,64), `PERF_KEYS` (1000), `PERF_FLOODS` (1000000),
//! `PERF_FLOOD_ROUNDS` (5),
//! `PERF_SCALE` (200 servents), `PERF_SERVENT_ARGS` (extra servent flags), `PERF_WRAP` (a
//! command each servent runs under, e.g. `valgrind --tool=callgrind`). Run without
//! `--bench` (`cargo test --bench perf`, as `scripts/test.sh` does), every section is a
//! short smoke run.

mod answers;
mod baseline;
mod flood;
mod hostile;
mod loadgen;
mod procs;
mod scale;
mod topology;

use std::process::ExitCode;
use std::time::Duration;

use loadgen::Timing;
use procs::TempDir;

/// In the order they run: those that open many connections last, since every answer
/// leaves a TIME_WAIT behind for a minute, and 300,000 of them slow loopback for
/// whatever runs next (flood forwarding by a tenth, measured).
const SECTIONS: [&str; 4] = ["flood", "scale", "line", "answers"];

fn main() -> ExitCode {
    if let Some(code) = baseline::run_if_child() {
        return code;
    }
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("perf: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What to run, from the environment and the command line.
pub struct Settings {
    pub sections: Vec<String>,
    pub timing: Timing,
    pub levels: Vec<usize>,
    pub keys: usize,
    pub floods: usize,
    pub flood_rounds: usize,
    pub scale: usize,
    pub strict: bool,
    /// Run without `--bench`: a short run that checks correctness, not speed.
    pub smoke: bool,
    pub servent_args: Vec<String>,
}

fn env_parse<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse::<T>()
            .map_err(|e| format!("{name}={text:?}: {e}")),
        Err(_) => Ok(default),
    }
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let mut sections = Vec::new();
        let mut benching = false;
        let mut elsewhere = false;
        for arg in std::env::args().skip(1) {
            match arg.as_str() {
                "--bench" => benching = true, // what `cargo bench` passes to every bench
                name if SECTIONS.contains(&name) => sections.push(name.to_string()),
                // The other benches' names, which `cargo bench -- seen` passes here too.
                "seen" | "store" => elsewhere = true,
                other => {
                    return Err(format!(
                        "unknown argument {other:?} (sections: {})",
                        SECTIONS.join(", ")
                    ))
                }
            }
        }
        if sections.is_empty() && !elsewhere {
            sections = SECTIONS.iter().map(|s| s.to_string()).collect();
        }
        sections.sort_by_key(|name| SECTIONS.iter().position(|s| s == name));
        sections.dedup();
        let secs = |name: &str, default: f64| -> Result<Duration, String> {
            Duration::try_from_secs_f64(env_parse(name, default)?)
                .map_err(|e| format!("{name}: {e}"))
        };
        // Without `--bench` (`cargo test --bench perf`), a short smoke run by default.
        let timing = Timing {
            warmup: secs("PERF_WARMUP_SECS", if benching { 1.0 } else { 0.2 })?,
            secs: secs("PERF_SECS", if benching { 10.0 } else { 1.0 })?,
        };
        if timing.secs.is_zero() {
            return Err("PERF_SECS must be above 0".into());
        }
        let levels = match std::env::var("PERF_CLIENTS") {
            Ok(text) => text
                .split(',')
                .map(|c| match c.trim().parse::<usize>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(format!(
                        "PERF_CLIENTS={text:?}: expected counts like 1,16,64"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Err(_) => vec![1, 16, 64],
        };
        // Every client of the run gets its own seq range: at least 16 bits of queries each.
        if answers::clients_per_generator(&levels) > 1 << 16 {
            return Err(
                "PERF_CLIENTS: at most 32768 clients in all (each level runs once per kind)".into(),
            );
        }
        let positive = |name: &str, default: usize| -> Result<usize, String> {
            match env_parse(name, default)? {
                0 => Err(format!("{name} must be above 0")),
                n => Ok(n),
            }
        };
        Ok(Settings {
            sections,
            timing,
            levels,
            keys: positive("PERF_KEYS", 1000)?,
            floods: positive("PERF_FLOODS", if benching { 1_000_000 } else { 20_000 })?,
            flood_rounds: positive("PERF_FLOOD_ROUNDS", if benching { 5 } else { 1 })?,
            scale: positive("PERF_SCALE", if benching { 200 } else { 20 })?,
            strict: env_parse("PERF_STRICT", 0u8)? != 0,
            smoke: !benching,
            servent_args: std::env::var("PERF_SERVENT_ARGS")
                .map(|a| a.split_whitespace().map(String::from).collect())
                .unwrap_or_default(),
        })
    }
}

/// What the sections found: correctness problems, and the figures for the final table.
#[derive(Default)]
pub struct Report {
    pub problems: Vec<String>,
    pub figures: Vec<Figure>,
}

/// One line of the final table.
pub struct Figure {
    what: String,
    servent: String,
    baseline: String,
    ratio: String,
    target: String,
    met: Option<bool>,
}

impl Figure {
    /// A figure beside its baseline. `target`: the ratio it must reach, and whether
    /// higher is better (a rate) or lower is (a latency).
    pub fn ratio(
        what: String,
        ours: f64,
        base: f64,
        unit: &str,
        target: Option<(f64, bool)>,
    ) -> Figure {
        let ratio = ours / base;
        let (target, met) = match target {
            Some((t, true)) => (format!("≥ {t}"), Some(ratio >= t)),
            Some((t, false)) => (format!("≤ {t}"), Some(ratio <= t)),
            None => (String::new(), None),
        };
        Figure {
            what,
            servent: format_value(ours, unit),
            baseline: format_value(base, unit),
            ratio: format_ratio(ratio),
            target,
            met,
        }
    }

    /// A figure with no baseline; `limit`, if any, is the value it must stay under.
    pub fn absolute(what: String, value: f64, unit: &str, limit: Option<f64>) -> Figure {
        Figure {
            what,
            servent: format_value(value, unit),
            baseline: String::new(),
            ratio: String::new(),
            target: limit.map_or(String::new(), |l| format!("< {}", format_value(l, unit))),
            met: limit.map(|l| value < l),
        }
    }
}

/// A ratio in a 6-character column: two decimals, none from 100 up.
pub fn format_ratio(ratio: f64) -> String {
    if ratio >= 100.0 {
        format!("{ratio:.0}")
    } else {
        format!("{ratio:.2}")
    }
}

fn format_value(value: f64, unit: &str) -> String {
    if value >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}{unit}")
    } else if value >= 1.0 {
        format!("{value:.2}{unit}")
    } else {
        format!("{value:.3}{unit}")
    }
}

/// Returns whether the run passed.
fn run() -> Result<bool, String> {
    let settings = Settings::from_env()?;
    if settings.sections.is_empty() {
        return Ok(true); // only another bench was asked for
    }
    // The hostile reply address holds some 2400 connections open: more than a lab
    // user's usual soft limit of 1024 open files, so take what the hard limit allows.
    tp3kv::net::raise_fd_limit(u64::MAX)
        .map_err(|e| format!("cannot raise the open-file limit: {e}"))?;
    let dir = TempDir::new()?;
    let mut report = Report::default();
    println!("perf: {}", procs::SERVENT);
    if settings.smoke {
        println!(
            "perf: smoke run (no --bench): short levels, small counts, maybe a debug build; \
             the checks hold, the figures mean little"
        );
    }
    for section in &settings.sections {
        println!();
        match section.as_str() {
            "answers" => answers::run(&settings, &dir, &mut report)?,
            "line" => answers::run_line(&settings, &dir, &mut report)?,
            "flood" => flood::run(&settings, &dir, &mut report)?,
            "scale" => scale::run(&settings, &dir, &mut report)?,
            _ => unreachable!("sections are checked when parsed"),
        }
    }

    println!();
    println!(
        "{:<44} {:>14} {:>14} {:>6} {:>9}  result",
        "figure", "servent", "baseline", "ratio", "target"
    );
    let mut missed = 0;
    for f in &report.figures {
        let result = match f.met {
            Some(true) => "met",
            Some(false) => {
                missed += 1;
                "MISSED"
            }
            None => "",
        };
        println!(
            "{:<44} {:>14} {:>14} {:>6} {:>9}  {result}",
            f.what, f.servent, f.baseline, f.ratio, f.target
        );
    }
    println!();
    for problem in &report.problems {
        println!("perf: FAIL: {problem}");
    }
    if missed > 0 {
        println!("perf: {missed} target(s) missed");
    }
    let passed = report.problems.is_empty() && !(settings.strict && missed > 0);
    if passed {
        println!("perf: PASS: every query answered exactly once, every check held");
    }
    Ok(passed)
}
