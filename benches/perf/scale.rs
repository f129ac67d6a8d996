//! Scale: `PERF_SCALE` servents (200 under `cargo bench`) on this machine, linked as a
//! random graph of degree 4. Measured: how long they take to start and link up, their
//! memory each, and what a topology query from servent 0 brings back; then all of it
//! again with every servent started with `--full-reach`.
//!
//! - The graph is a random 4-regular simple graph from the configuration model
//!   ([`Graph::random_regular`], the simulator's, with its xorshift [`Rng`]): every
//!   servent gets 4 stubs, the stubs are shuffled and paired, and a pairing with a self
//!   loop or a duplicate edge is thrown away and drawn again. The seed is fixed, so
//!   every run (and `tp3-sim` given the seed) builds the same graph.
//! - Servents start in index order, all on one small key-value file, each naming as
//!   neighbours only its lower-indexed graph neighbours (already running): every link
//!   is dialled exactly once, by its higher end. They log at `info`, so each link shows
//!   up twice: `connected to neighbour` at the end that dialled, `is a neighbour
//!   servent` at the end that accepted (once the `ID(0)` came). Start-up time runs from
//!   just before the first spawn until both counts reach the number of links.
//! - Memory, once start-up has settled: VmRSS (shared pages counted whole in every
//!   servent) and PSS (shared pages split between the processes mapping them) per
//!   servent.
//! - Topology: this process is a client of servent 0 and sends one TOPOREQ. Every
//!   servent the flood reaches answers on a new connection with the path the query
//!   took, servent 0 first. Each answer is checked against the graph.
//! - Full reach: the same, with servents started with `--full-reach`. Every servent
//!   within 4 hops must answer (a miss fails the bench), and the TOPOFLOODs it costs
//!   (the servents' `frames out` summed from their exit summaries: the query is the
//!   only flood) are printed beside the first run's.
//! - The simulator on the same graph: with full reach, `tp3-sim`'s network must reach
//!   exactly the servents that answered the real `--full-reach` run (a difference
//!   fails the bench); without, the range of reach its first-copy-wins races give over
//!   200 random latency draws is printed beside the real run's, which must fall inside
//!   it (under `cargo bench`; the smoke run only prints it).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use tp3kv::sim::latency::Latency;
use tp3kv::sim::network::{Network, QueryKind, Settings as SimSettings};
use tp3kv::sim::rng::Rng;
use tp3kv::sim::stats::Aggregate;
use tp3kv::sim::topology::{Graph, Node, UNREACHABLE};

use crate::loadgen::KeySet;
use crate::procs::{Process, TempDir};
use crate::topology::{Topology, ANSWER_CAP, MAX_PATH, TOPO_SEQ};
use crate::{Figure, Report, Settings};

/// Every servent's number of neighbours.
const DEGREE: usize = 4;
/// The xorshift seed: the same graph every run.
pub const SEED: u64 = 0x7e3_2019_5eed_0001;
/// Keys in the file every servent loads.
const KEYS: usize = 10;
/// How often the logs are read while waiting for the links, and how long at most.
const LINK_POLL: Duration = Duration::from_millis(20);
const LINK_TIMEOUT: Duration = Duration::from_secs(60);
/// Wait between the last link up and reading memory.
const SETTLE: Duration = Duration::from_millis(500);
/// Problems of one kind pushed to the report before the rest are only counted.
const PROBLEM_CAP: usize = 10;
/// Warning lines printed from the servents' logs.
const WARNINGS_SHOWN: usize = 5;

const DIALLED: &str = ": connected to neighbour ";
const ACCEPTED: &str = " is a neighbour servent";

pub fn run(settings: &Settings, dir: &TempDir, report: &mut Report) -> Result<(), String> {
    let n = settings.scale;
    if n <= DEGREE {
        return Err(format!(
            "scale: PERF_SCALE={n}: a graph of degree {DEGREE} needs at least {} servents",
            DEGREE + 1
        ));
    }
    let (graph, pairings) =
        Graph::random_regular(n, DEGREE, &mut Rng::new(SEED)).map_err(|e| format!("scale: {e}"))?;
    let links = graph.edge_count();
    let components = components(&graph);
    println!(
        "scale: {n} servents, random {DEGREE}-regular graph of {links} links (xorshift seed \
         {SEED:#x}, simple at pairing {pairings}{}), {KEYS} keys each",
        if components == 1 {
            ", connected".to_string()
        } else {
            format!(", {components} components")
        }
    );
    let kv = dir.write("scale-keys.kv", &KeySet::new(KEYS).kv_file())?;

    let plain = network(settings, dir, &kv, &graph, false, report)?;
    println!();
    println!("scale: again, every servent started with --full-reach");
    let full = network(settings, dir, &kv, &graph, true, report)?;
    let (y, hops) = (full.within_reach, MAX_PATH - 1);
    println!(
        "scale: topology answers {} of {y} without full reach, {} with; TOPOFLOODs sent {} \
         without, {} with ({:+} frames, {:.2}x; {} copies forwarded again)",
        plain.answers,
        full.answers,
        plain.frames_out,
        full.frames_out,
        full.frames_out as i64 - plain.frames_out as i64,
        full.frames_out as f64 / plain.frames_out.max(1) as f64,
        full.forwarded_again
    );
    simulated(&graph, &plain, &full, settings.smoke, report);
    if full.answers != y {
        report.problems.push(format!(
            "scale: with --full-reach, {} of the {y} servents within {hops} hops answered: \
             full reach must reach them all",
            full.answers
        ));
    }
    report.figures.push(Figure::absolute(
        format!("scale: T answers, --full-reach, of {y}"),
        full.answers as f64,
        "",
        None,
    ));
    report.figures.push(Figure::ratio(
        "scale: TOPOFLOODs, --full-reach vs without".into(),
        full.frames_out as f64,
        plain.frames_out.max(1) as f64,
        "",
        None,
    ));
    println!();
    Ok(())
}

/// What one network's topology query came to.
struct NetworkRun {
    answers: usize,
    /// Who answered, by index.
    answerers: BTreeSet<usize>,
    within_reach: usize,
    /// TOPOFLOODs all servents sent (their `frames out`: the query is the only flood).
    frames_out: u64,
    /// Copies passed on again, from the exit summaries (`--full-reach` only).
    forwarded_again: u64,
}

/// Starts a servent for each node of `graph` (with `--full-reach` if `full_reach`),
/// waits for every link, asks servent 0 for the topology, checks the answers, stops
/// them all. The first run (without) also measures start-up and memory.
fn network(
    settings: &Settings,
    dir: &TempDir,
    kv: &std::path::Path,
    graph: &Graph,
    full_reach: bool,
    report: &mut Report,
) -> Result<NetworkRun, String> {
    let n = graph.len();
    let mut flags = settings.servent_args.clone();
    if full_reach {
        flags.push("--full-reach".into());
    }
    let tag = if full_reach { "scale-full" } else { "scale" };
    // Held in a Vec from the first: any early return kills every one started.
    let mut servents: Vec<Process> = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let neighbours: Vec<SocketAddrV4> = lower(graph, i).map(|j| servents[j].addr).collect();
        servents.push(Process::servent_logging(
            &format!("{tag}-{i}"),
            &dir.0,
            kv,
            &neighbours,
            &flags,
            "info",
        )?);
    }
    let spawned = start.elapsed();
    let linked = wait_links(&servents, graph, start)?;
    report.problems.extend(check_dials(&servents, graph));

    if !full_reach {
        std::thread::sleep(SETTLE);
        memory(&servents, spawned, linked, report);
    }

    let topo = Topology::ask(servents[0].addr, TOPO_SEQ)?;
    let addrs: HashMap<String, usize> = servents
        .iter()
        .enumerate()
        .map(|(i, s)| (s.addr.to_string(), i))
        .collect();
    let check = topo.check(graph, &addrs);
    println!(
        "topology from servent 0{}: {} answers of {} servents within {} hops, the last {} \
         after the TOPOREQ{}",
        if full_reach { " (full reach)" } else { "" },
        check.answers,
        check.within_reach,
        MAX_PATH - 1,
        topo.last_after()
            .map_or("-".into(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3)),
        if topo.capped {
            format!(" (stopped at the {ANSWER_CAP:?} cap)")
        } else {
            String::new()
        }
    );
    check.print_reach();
    if !full_reach {
        report.figures.push(Figure::absolute(
            format!("scale: T answers, of {} in reach", check.within_reach),
            check.answers as f64,
            "",
            None,
        ));
    }
    let what = if full_reach {
        "scale: topology (full reach)"
    } else {
        "scale: topology"
    };
    push_capped(&mut report.problems, what, check.problems);
    let stopped = stop_quietly(servents)?;
    report.problems.extend(stopped.problems);
    Ok(NetworkRun {
        answers: check.answers,
        answerers: check.answerers,
        within_reach: check.within_reach,
        frames_out: stopped.frames_out,
        forwarded_again: stopped.forwarded_again,
    })
}

/// Latency draws the simulator runs the query under, first copy wins.
const SIM_DRAWS: u64 = 200;

/// The same topology query in the simulator, on the same graph: with full reach it
/// must reach exactly the servents the real `--full-reach` run did (the outcome does
/// not depend on timing); without, the real run's reach is set beside the range the
/// simulator's first-copy-wins races give over [`SIM_DRAWS`] random latencies.
fn simulated(
    graph: &Graph,
    plain: &NetworkRun,
    full: &NetworkRun,
    smoke: bool,
    report: &mut Report,
) {
    let ask = |full_reach: bool, latency: Latency, seed: u64| {
        let settings = SimSettings {
            full_reach,
            latency,
            ..SimSettings::default()
        };
        let mut net = Network::new(graph, &[], &settings, seed).expect("a graph of servents");
        net.record();
        let outcome = net.query(0, QueryKind::Topology);
        let reached: BTreeSet<usize> = net
            .detail()
            .expect("recording")
            .reached
            .iter()
            .map(|&n| n as usize)
            .collect();
        (outcome, reached)
    };
    let (outcome, reached) = ask(true, Latency::default(), 1);
    let agrees = reached == full.answerers;
    println!(
        "scale: tp3-sim on the same graph, full reach: {} servents reached, {} answers, {} \
         TOPOFLOODs ({} copies forwarded again); {}",
        outcome.reached,
        outcome.answers,
        outcome.frames,
        outcome.reforwarded,
        if agrees {
            "the same servents as the real run".to_string()
        } else {
            format!(
                "real only {:?}, simulated only {:?}",
                full.answerers.difference(&reached).collect::<Vec<_>>(),
                reached.difference(&full.answerers).collect::<Vec<_>>()
            )
        }
    );
    if !agrees {
        report.problems.push(
            "scale: with full reach, the simulator and the real servents reached different \
             servents"
                .into(),
        );
    }
    let latency: Latency = "exp:1ms".parse().expect("a latency");
    let (mut differ, mut again) = (0, 0);
    for seed in 0..SIM_DRAWS {
        let (outcome, reached) = ask(true, latency, seed);
        differ += u64::from(reached != full.answerers);
        again += outcome.reforwarded;
    }
    println!(
        "scale: tp3-sim, full reach, {SIM_DRAWS} draws of exp:1ms latencies: {differ} reached \
         other servents than the real run ({:.1} copies forwarded again on average)",
        again as f64 / SIM_DRAWS as f64
    );
    if differ > 0 {
        report.problems.push(format!(
            "scale: with full reach, {differ} of {SIM_DRAWS} simulated latency draws reached \
             other servents than the real run"
        ));
    }
    let reach: Vec<u64> = (0..SIM_DRAWS)
        .map(|seed| ask(false, latency, seed).0.reached)
        .collect();
    let least = reach.iter().copied().min().unwrap_or(0);
    let spread = Aggregate::of(reach.iter().map(|&r| r as f64));
    println!(
        "scale: tp3-sim, first copy wins, {SIM_DRAWS} draws of exp:1ms latencies: reach {least} \
         to {} (mean {:.1}, median {}, p90 {}); the real run: {}",
        spread.max, spread.mean, spread.p50, spread.p90, plain.answers
    );
    // Loopback's latencies are nearly equal, so the real run loses no more than the
    // simulator's random ones do. Checked under `cargo bench` only: in the smoke run's
    // small graph a single draw more or less decides the range.
    let real = plain.answers as f64;
    if !smoke && !(least as f64..=spread.max).contains(&real) {
        report.problems.push(format!(
            "scale: without full reach the real run reached {real}, outside the simulator's \
             {least} to {} for the same graph",
            spread.max
        ));
    }
}

/// Prints and reports start-up time and memory per servent.
fn memory(servents: &[Process], spawned: Duration, linked: Duration, report: &mut Report) {
    let n = servents.len();
    let rss: Option<Vec<u64>> = servents.iter().map(Process::rss_kib).collect();
    let pss: Option<Vec<u64>> = servents.iter().map(Process::pss_kib).collect();
    let mib = |kib: &[u64]| kib.iter().sum::<u64>() as f64 / 1024.0;
    let (rss_each, pss_each, pss_total) = match (&rss, &pss) {
        (Some(rss), Some(pss)) => (
            Some(mib(rss) / n as f64),
            Some(mib(pss) / n as f64),
            Some(mib(pss)),
        ),
        _ => {
            report
                .problems
                .push("scale: cannot read the servents' VmRSS or PSS from /proc".into());
            (None, None, None)
        }
    };
    let show = |v: Option<f64>, unit: &str| v.map_or("-".to_string(), |v| format!("{v:.2}{unit}"));
    println!(
        "{:>9} {:>10} {:>10} {:>13} {:>13} {:>11}",
        "", "spawned", "links up", "RSS/servent", "PSS/servent", "PSS total"
    );
    println!(
        "{:>9} {:>10} {:>10} {:>13} {:>13} {:>11}",
        "servents",
        format!("{:.2} s", spawned.as_secs_f64()),
        format!("{:.2} s", linked.as_secs_f64()),
        show(rss_each, " MiB"),
        show(pss_each, " MiB"),
        show(pss_total, " MiB"),
    );
    report.figures.push(Figure::absolute(
        format!("scale: start-up of {n} servents"),
        linked.as_secs_f64(),
        " s",
        None,
    ));
    if let (Some(rss_each), Some(pss_each)) = (rss_each, pss_each) {
        report.figures.push(Figure::absolute(
            "scale: RSS per servent".into(),
            rss_each,
            " MiB",
            None,
        ));
        report.figures.push(Figure::absolute(
            "scale: PSS per servent".into(),
            pss_each,
            " MiB",
            Some(4.0),
        ));
    }
}

/// Pushes the first `PROBLEM_CAP` of `found`, then a count of the rest.
pub(crate) fn push_capped(problems: &mut Vec<String>, what: &str, found: Vec<String>) {
    let total = found.len();
    problems.extend(found.into_iter().take(PROBLEM_CAP));
    if total > PROBLEM_CAP {
        problems.push(format!(
            "{what}: {} more problem(s) like these",
            total - PROBLEM_CAP
        ));
    }
}

/// `i`'s neighbours started before it: the ones it dials.
fn lower(graph: &Graph, i: usize) -> impl Iterator<Item = usize> + '_ {
    graph
        .neighbours(i as Node)
        .iter()
        .map(|&j| j as usize)
        .filter(move |&j| j < i)
}

/// Hops from `from` to every node (`None`: unreachable).
pub(crate) fn distances(graph: &Graph, from: usize) -> Vec<Option<usize>> {
    graph
        .distances(from as Node)
        .into_iter()
        .map(|d| (d != UNREACHABLE).then_some(d as usize))
        .collect()
}

fn components(graph: &Graph) -> usize {
    let mut seen = vec![false; graph.len()];
    let mut count = 0;
    for start in 0..graph.len() {
        if seen[start] {
            continue;
        }
        count += 1;
        for (i, d) in distances(graph, start).iter().enumerate() {
            if d.is_some() {
                seen[i] = true;
            }
        }
    }
    count
}

/// Links dialled and accepted, as the servents' logs tell.
fn count_links(log: &str) -> (usize, usize) {
    log.lines().fold((0, 0), |(d, a), line| {
        (
            d + usize::from(line.contains(DIALLED)),
            a + usize::from(line.contains(ACCEPTED)),
        )
    })
}

/// Reads the logs until every link of the graph is up at both ends; returns the time
/// from `start`.
fn wait_links(servents: &[Process], graph: &Graph, start: Instant) -> Result<Duration, String> {
    let links = graph.edge_count();
    // Expected (dialled, accepted) per servent, and what its log said last time.
    let expected: Vec<(usize, usize)> = (0..servents.len())
        .map(|i| {
            let lower = lower(graph, i).count();
            (lower, graph.neighbours(i as Node).len() - lower)
        })
        .collect();
    let mut seen = vec![(0, 0); servents.len()];
    loop {
        for (i, servent) in servents.iter().enumerate() {
            let (d, a) = seen[i];
            if d < expected[i].0 || a < expected[i].1 {
                seen[i] = count_links(&servent.log_text());
            }
        }
        let dialled: usize = seen.iter().map(|s| s.0).sum();
        let accepted: usize = seen.iter().map(|s| s.1).sum();
        let complete = seen
            .iter()
            .zip(&expected)
            .all(|(s, e)| s.0 >= e.0 && s.1 >= e.1);
        if complete {
            return Ok(start.elapsed());
        }
        if start.elapsed() > LINK_TIMEOUT {
            return Err(format!(
                "scale: after {LINK_TIMEOUT:?}, {} of {links} links are up (dialled {dialled}, \
                 accepted {accepted})",
                dialled.min(accepted)
            ));
        }
        std::thread::sleep(LINK_POLL);
    }
}

/// Each servent dialled exactly its lower neighbours, once each, and accepted exactly
/// as many links as it has higher neighbours.
fn check_dials(servents: &[Process], graph: &Graph) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, servent) in servents.iter().enumerate() {
        let log = servent.log_text();
        let mut dialled: Vec<String> = log
            .lines()
            .filter_map(|l| l.split_once(DIALLED))
            .map(|(_, peer)| peer.trim().to_string())
            .collect();
        dialled.sort();
        let mut lower: Vec<String> = lower(graph, i)
            .map(|j| servents[j].addr.to_string())
            .collect();
        lower.sort();
        if dialled != lower {
            problems.push(format!(
                "{}: dialled {dialled:?}, its lower neighbours are {lower:?}",
                servent.name
            ));
        }
        let accepted = count_links(&log).1;
        let higher = graph.neighbours(i as Node).len() - lower.len();
        if accepted != higher {
            problems.push(format!(
                "{}: {accepted} neighbour link(s) accepted, {higher} expected",
                servent.name
            ));
        }
    }
    let mut capped = Vec::new();
    push_capped(&mut capped, "scale: links", problems);
    capped
}

/// The level of a servent log line (`MILLIS servent:PORT LEVEL message`), if it is one.
fn log_level(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace();
    let _millis = words.next()?;
    words.next()?.strip_prefix("servent:")?;
    words.next()
}

/// Stops every servent (SIGTERM to all first, so they wind down together), checks each
/// exited cleanly with its summary line and lost no answer, prints one line for all
/// of them and at most `WARNINGS_SHOWN` of the warnings they logged, and sums their
/// flood counters.
fn stop_quietly(servents: Vec<Process>) -> Result<Stopped, String> {
    let total = servents.len();
    for servent in &servents {
        // SAFETY: kill only sends a signal, to our own child, which has not been reaped.
        unsafe { libc::kill(servent.pid() as libc::pid_t, libc::SIGTERM) };
    }
    let mut problems = Vec::new();
    let mut clean = 0;
    let mut warnings = Vec::new();
    let (mut frames_out, mut forwarded_again) = (0, 0);
    for servent in servents {
        let name = servent.name.clone();
        let outcome = servent.stop()?;
        if outcome.clean() {
            clean += 1;
        }
        if let Some(summary) = &outcome.summary {
            frames_out += summary_count(summary, "frames out").unwrap_or(0);
            forwarded_again += summary_count(summary, "forwarded again").unwrap_or(0);
        }
        problems.extend(outcome.problems(&name));
        // At info level every line is in `warnings`: keep those above info.
        warnings.extend(
            outcome
                .warnings
                .into_iter()
                .filter(|l| !matches!(log_level(l), Some("INFO" | "DEBUG" | "TRACE")))
                .map(|l| format!("{name}: {l}")),
        );
    }
    println!(
        "scale: {clean} of {total} servents exited cleanly; {} warning line(s) logged",
        warnings.len()
    );
    for line in warnings.iter().take(WARNINGS_SHOWN) {
        println!("    {line}");
    }
    if warnings.len() > WARNINGS_SHOWN {
        println!("    ...");
    }
    let mut capped = Vec::new();
    push_capped(&mut capped, "scale: exits", problems);
    Ok(Stopped {
        problems: capped,
        frames_out,
        forwarded_again,
    })
}

/// What the servents said as they stopped.
struct Stopped {
    problems: Vec<String>,
    /// Their `frames out`, summed.
    frames_out: u64,
    /// Their `forwarded again` (`--full-reach`), summed.
    forwarded_again: u64,
}

/// The number after `name ` in a servent's exit summary, if it says one.
fn summary_count(summary: &str, name: &str) -> Option<u64> {
    let at = summary.find(&format!(", {name} "))? + name.len() + 3;
    summary[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}
