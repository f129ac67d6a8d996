//! `tp3-sim --topology SPEC [--ttl LIST] ...`: the real servent state machine on a
//! simulated network of up to a million servents.
//!
//! Exit status: 0 on success, 1 on a runtime error (a topology that cannot be built,
//! a file that cannot be written), 2 on a usage error.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};

use tp3kv::servent::TtlRule;
use tp3kv::sim::latency::Latency;
use tp3kv::sim::network::{QueryKind, Settings};
use tp3kv::sim::plot;
use tp3kv::sim::report::{self, Row, CSV_HEADER};
use tp3kv::sim::rng::Rng;
use tp3kv::sim::run::{run, Experiment};
use tp3kv::sim::stats::{available_memory, peak_rss, BYTES_PER_SERVENT};
use tp3kv::sim::topology::Topology;
use tp3kv::{cli, os_error};

const BIN: &str = "tp3-sim";
/// The highest `--ttl`: a topology query's info is full long before.
const MAX_TTL: u16 = 100;

const AFTER_HELP: &str = "\
Topologies (SPEC): line:N, ring:N, grid:WxH, torus:WxH, regular:N:D (random D-regular),
er:N:MEANDEG (Erdős–Rényi), ba:N:M (Barabási–Albert, power-law degrees), ws:N:K:BETA
(Watts–Strogatz), file:PATH (an edge list). Several --topology values: a row each.

Each query: a client asks a random servent (KEYREQ for the one key, or TOPOREQ), and the
flood runs until no frame is in flight; then the next query. Servent i is 10.x.y.z:5000
(x.y.z = i + 1); every frame takes its link's latency (constant, uniform in a range, or
exponential), links deliver in order, and an answer takes one more latency to the client.

Table columns (one row per topology, TTL and rule; `+full` in the rule, as in seed+full
or 2019+full, is --full-reach):
reach (mean, then p50 p90 p99 max): servents that handled the query, the asked one
included; answers: mean answers per query; answered: queries with at least one answer;
frames (mean, p99): flood frames sent between servents; dups: copies dropped as
duplicates; again: copies passed on again by full reach (they came with more TTL);
ttl-spent: copies handled but not passed on; last-ms (mean, p99): time from
the request to the last answer, over the answered queries.

CSV (--csv FILE) columns: topology,servents,ttl,rule,full_reach,query,origin,reached,
answers,frames,duplicates,reforwarded,ttl_spent,info_too_long,last_answer_ms: a row per
query (query = its sequence number), then for each run the rows mean, p50, p90, p99 and
max in the query column. info_too_long: topology copies dropped because their path would
pass the 400 bytes an info holds (TTLs of about 24 and more); a note says when any were.

Examples:
  tp3-sim --topology regular:1000000:4 --queries 1000 --ttl 3
  tp3-sim --topology regular:10000:4 --topology ba:10000:2 --ttl 1..6 --full-reach both \\
          --csv runs.csv --svg runs.svg
  tp3-sim --topology file:bench.txt --kind topo --latency exp:1ms

Exit status: 0 on success, 1 on a runtime error, 2 on a usage error.";

/// Simulates the TP3 key-value network with the servent's own state machine.
///
/// Builds each topology, runs one real servent per node, places the key on a share of
/// them, and floods queries from random origins over a discrete-event clock. Prints a
/// table row per topology, TTL and rule, then the time taken and the peak memory.
#[derive(Parser, Debug)]
#[command(name = "tp3-sim", version, after_help = AFTER_HELP)]
struct Args {
    /// The network's shape (repeatable; see Topologies below).
    #[arg(long, value_name = "SPEC", required = true, num_args = 1..)]
    topology: Vec<Topology>,
    /// Queries per run, one after another.
    #[arg(long, value_name = "Q", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    queries: u64,
    /// The TTL queries start with (the protocol's is 3): one value, a list (1,2,4)
    /// or a range (1..6), a run each.
    #[arg(long, value_name = "LIST", default_value = "3", value_parser = parse_ttls)]
    ttl: TtlList,
    /// Seeds the graphs, the key's placement, the origins and the latencies.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Full reach: a copy with more TTL than the best seen goes on again. `both` runs
    /// each case without and with it.
    #[arg(long, value_name = "WHEN", num_args = 0..=1, default_value = "off",
          default_missing_value = "on")]
    full_reach: FullReach,
    /// When a TTL is spent: the seed's rule (4 hops at TTL 3), the 2019 rule
    /// (3 hops), or both, a run each.
    #[arg(long, value_name = "RULE", default_value = "seed")]
    ttl_rule: RuleChoice,
    /// A link's latency: constant (1ms), uniform in a range (1ms..5ms) or exponential
    /// with a mean (exp:1ms). Units: ns, us, ms, s.
    #[arg(long, value_name = "LATENCY", default_value = "1ms")]
    latency: Latency,
    /// What the clients ask: a key (KEYREQ) or the topology (TOPOREQ).
    #[arg(long, value_name = "KIND", default_value = "key")]
    kind: Kind,
    /// Every query from servent N (numbered from 0), not from random servents.
    #[arg(long, value_name = "N")]
    origin: Option<u32>,
    /// The share of servents holding the key (at least one if above 0).
    #[arg(long, value_name = "F", default_value_t = 0.01, value_parser = parse_fraction)]
    key_fraction: f64,
    /// Also write every query's outcome, and each run's aggregates, as CSV to FILE.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Also draw mean reach and frames against the TTL (a line per topology and
    /// rule) as SVG to FILE.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
}

#[derive(Debug, Clone)]
struct TtlList(Vec<u16>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FullReach {
    Off,
    On,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RuleChoice {
    Seed,
    #[value(name = "2019")]
    Y2019,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Key,
    Topo,
}

/// `3`, `1,2,4` or `1..6` (both ends included), each from 0 to [`MAX_TTL`].
fn parse_ttls(text: &str) -> Result<TtlList, String> {
    let one = |t: &str| -> Result<u16, String> {
        match t.trim().parse::<u16>() {
            Ok(ttl) if ttl <= MAX_TTL => Ok(ttl),
            _ => Err(format!(
                "bad TTL {t:?}: expected a number from 0 to {MAX_TTL}"
            )),
        }
    };
    let ttls: Vec<u16> = match text.split_once("..") {
        Some((low, high)) => {
            let (low, high) = (one(low)?, one(high)?);
            if low > high {
                return Err(format!("bad TTL range {text:?}: {low} is above {high}"));
            }
            (low..=high).collect()
        }
        None => text.split(',').map(one).collect::<Result<_, _>>()?,
    };
    Ok(TtlList(ttls))
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "bad fraction {text:?}: expected a number from 0 to 1"
        )),
    }
}

fn main() {
    let args: Args = cli::parse(BIN);
    if let Err(e) = simulate(&args) {
        // A bare I/O error is stdout's (files' errors name their file).
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::BrokenPipe {
                // Whoever read the table went away (`tp3-sim ... | head`): not an error.
                std::process::exit(0);
            }
            let what = format!("cannot write the table: {}", os_error::plain(io));
            cli::fail(BIN, cli::RUNTIME_ERROR, &what);
        }
        cli::fail(BIN, cli::RUNTIME_ERROR, &format!("{e:#}"));
    }
}

fn simulate(args: &Args) -> Result<()> {
    let rules: &[TtlRule] = match args.ttl_rule {
        RuleChoice::Seed => &[TtlRule::Seed],
        RuleChoice::Y2019 => &[TtlRule::Assignment2019],
        RuleChoice::Both => &[TtlRule::Seed, TtlRule::Assignment2019],
    };
    let full: &[bool] = match args.full_reach {
        FullReach::Off => &[false],
        FullReach::On => &[true],
        FullReach::Both => &[false, true],
    };
    let kind = match args.kind {
        Kind::Key => QueryKind::Key,
        Kind::Topo => QueryKind::Topology,
    };
    let mut csv = match &args.csv {
        Some(path) => {
            let file = File::create(path).map_err(cannot_write(path))?;
            let mut out = BufWriter::new(file);
            writeln!(out, "{CSV_HEADER}").map_err(cannot_write(path))?;
            Some((path, out))
        }
        None => None,
    };
    if let Some(path) = &args.svg {
        // Found unwritable now, not after the runs it would have plotted.
        File::create(path).map_err(cannot_write(path))?;
    }
    let mut stdout = io::stdout().lock();
    // Printed with the first row: a topology that cannot be built leaves only its error.
    let asked = match kind {
        QueryKind::Key => format!("KEYREQ, the key on {} of servents", args.key_fraction),
        QueryKind::Topology => "TOPOREQ".to_string(),
    };
    let mut header = Some(format!(
        "{} queries a run ({asked}), latency {}, seed {}",
        args.queries, args.latency, args.seed
    ));
    let (mut graphs, mut servents, mut queries) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut rows = Vec::new();
    for topology in &args.topology {
        if let Some(n) = topology.nodes() {
            fits_in_memory(topology, n)?;
        }
        let started = Instant::now();
        let graph = topology
            .build(&mut Rng::new(args.seed))
            .with_context(|| format!("cannot build {topology}"))?;
        graphs += started.elapsed();
        fits_in_memory(topology, graph.len())?;
        let beyond = |o: u32| o as usize >= graph.len() && !graph.is_empty();
        if let Some(origin) = args.origin.filter(|&o| beyond(o)) {
            // Wrong on the command line, though only the graph can tell. The runs of
            // the topologies before this one stay in the CSV.
            if let Some((path, out)) = csv.as_mut() {
                out.flush().map_err(cannot_write(path))?;
            }
            cli::fail(
                BIN,
                cli::USAGE_ERROR,
                &format!(
                    "--origin {origin}: {topology} has servents 0 to {}",
                    graph.len() - 1
                ),
            );
        }
        for &ttl in &args.ttl.0 {
            for &ttl_rule in rules {
                for &full_reach in full {
                    let experiment = Experiment {
                        settings: Settings {
                            ttl,
                            ttl_rule,
                            full_reach,
                            latency: args.latency,
                        },
                        kind,
                        queries: args.queries as usize,
                        key_fraction: args.key_fraction,
                        seed: args.seed,
                        origin: args.origin,
                    };
                    let result = run(&graph, &experiment)
                        .with_context(|| format!("cannot simulate {topology}"))?;
                    servents += result.build;
                    queries += result.simulate;
                    let row = Row {
                        topology: topology.to_string(),
                        servents: graph.len(),
                        ttl,
                        rule: ttl_rule,
                        full_reach,
                        result,
                    };
                    if let Some(header) = header.take() {
                        writeln!(stdout, "{header}\n{}", report::table_header())?;
                    }
                    writeln!(stdout, "{}", report::table_row(&row))?;
                    stdout.flush()?;
                    if let Some((path, out)) = csv.as_mut() {
                        report::write_csv(out, &row).map_err(cannot_write(path))?;
                    }
                    // The per-query outcomes are in the CSV now; the charts need the
                    // aggregates only.
                    rows.push(Row {
                        result: tp3kv::sim::run::RunResult {
                            outcomes: Vec::new(),
                            ..row.result
                        },
                        ..row
                    });
                }
            }
        }
    }
    if let Some((path, mut out)) = csv {
        out.flush().map_err(cannot_write(path))?;
    }
    if let Some(path) = &args.svg {
        plot::write_svg(path, &report::charts(&rows))?;
    }
    let cut_short = rows
        .iter()
        .filter(|r| r.result.summary.info_too_long.max > 0.0)
        .count();
    if cut_short > 0 {
        writeln!(
            stdout,
            "note: in {cut_short} run(s), topology paths grew past the 400 bytes an info may \
             hold and servents dropped those copies unanswered (info_too_long in the CSV)"
        )?;
    }
    let rss = peak_rss()
        .map(|b| format!("{:.0} MiB", b as f64 / (1 << 20) as f64))
        .unwrap_or_else(|| "unknown".into());
    writeln!(
        stdout,
        "time: graphs {:.2} s, servents {:.2} s, queries {:.2} s; peak RSS {rss}",
        graphs.as_secs_f64(),
        servents.as_secs_f64(),
        queries.as_secs_f64()
    )?;
    Ok(())
}

/// The error for a file that cannot be written, in plain words.
fn cannot_write(path: &Path) -> impl Fn(io::Error) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("cannot write {}: {}", path.display(), os_error::plain(&e))
}

/// An error, before anything is built, if `n` servents would not fit in the memory
/// the system has free: the machine would swap or the process be killed instead.
fn fits_in_memory(topology: &Topology, n: usize) -> Result<()> {
    let need = n as u64 * BYTES_PER_SERVENT;
    match available_memory() {
        Some(free) if need > free => anyhow::bail!(
            "cannot simulate {topology}: {n} servents need about {:.1} GiB, and {:.1} GiB \
             is free",
            need as f64 / GIB,
            free as f64 / GIB
        ),
        _ => Ok(()),
    }
}

const GIB: f64 = (1u64 << 30) as f64;
