//! Answers: closed-loop key lookups against one servent and against the minimal
//! answerer, measured from the client side by the load generator of `loadgen.rs`, for
//! two kinds of client (`close` and `eof`); the same generator also times the line of 5.
//!
//! The minimal answerer (`baseline.rs`) closes each answer connection as soon as its
//! RESP is written, as a servent must be able to; each figure is the servent's beside
//! the answerer's for the same clients and kind.
//!
//! Then the hostile address: a fresh servent, 16 `close` clients measured once alone and
//! once beside a hostile reply address, the other clients' p99 latency compared. The
//! hostile address is a client connection saying `ID(H)`, H a listener that accepts its
//! answer connections and never reads them (nor closes them, for 3 s), and asking at a
//! steady 2000 KEYREQ/s (keys the servent holds) through the warm-up and the measured
//! window. Its answers are not checked; the other clients' are, except that a loss among
//! them there is not an error but an infinite latency (a target missed).

use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Duration;

use crate::loadgen::{probe, Generator, KeySet, Kind, LevelReport, KINDS};
use crate::procs::{stop_all, stop_all_lossy, Process, TempDir};
use crate::{format_ratio, Figure, Report, Settings};

/// The hostile scenario: its clients, and its hostile address's KEYREQs per second.
const HOSTILE_CLIENTS: usize = 16;
const HOSTILE_RATE: f64 = 2000.0;

/// The clients a run of the `answers` section gives each of its generators at most:
/// every level once per kind. (The hostile scenario has its own generator.)
pub fn clients_per_generator(levels: &[usize]) -> usize {
    KINDS.len() * levels.iter().sum::<usize>()
}

/// One servent and the minimal answerer, kind by kind and level by level: the baseline
/// first, then the servent, with the same number of clients of the same kind. Then the
/// hostile address, against a fresh servent.
pub fn run(settings: &Settings, dir: &TempDir, report: &mut Report) -> Result<(), String> {
    let keys = KeySet::new(settings.keys);
    let store = dir.write("keys.kv", &keys.kv_file())?;
    let baseline = Process::baseline(
        "answerer",
        &dir.0,
        "answerer",
        &[store.display().to_string()],
    )?;
    let servent = Process::servent("servent", &dir.0, &store, &[], &settings.servent_args)?;
    probe(baseline.addr, &keys, Duration::from_secs(10))?;
    probe(servent.addr, &keys, Duration::from_secs(10))?;

    println!(
        "answers: one servent and the minimal answerer, {} keys; each client with its own \
         reply address; per level {:?} warm-up, {:?} measured",
        settings.keys, settings.timing.warmup, settings.timing.secs
    );
    let total_clients = clients_per_generator(&settings.levels);
    let mut base_gen = Generator::new(
        baseline.addr,
        baseline.addr.port(),
        keys.clone(),
        total_clients,
    )?;
    let mut serv_gen = Generator::new(
        servent.addr,
        servent.addr.port(),
        keys.clone(),
        total_clients,
    )?;
    LevelReport::print_header("CPU server");
    for kind in KINDS {
        for &clients in &settings.levels {
            let base = base_gen.run_level(clients, kind, &settings.timing, &[&baseline], None)?;
            base.print_row("baseline");
            let ours = serv_gen.run_level(clients, kind, &settings.timing, &[&servent], None)?;
            ours.print_row("servent");
            let rate_ratio = ours.rate() / base.rate();
            let p50_ratio = match (ours.latency_ms(0.5), base.latency_ms(0.5)) {
                (Some(o), Some(b)) => Some(o / b),
                _ => None,
            };
            println!(
                "{:>9} {:>7} {:>5} {:>10} {:>8}",
                "ratio",
                "",
                "",
                format_ratio(rate_ratio),
                p50_ratio.map_or("-".into(), format_ratio)
            );
            report.problems.extend(
                base.problems()
                    .into_iter()
                    .map(|p| format!("baseline: {p}")),
            );
            report.problems.extend(ours.problems());
            report.figures.push(Figure::ratio(
                format!("answers/s, {clients} client(s) ({kind})"),
                ours.rate(),
                base.rate(),
                "/s",
                (clients == 16).then_some((0.9, true)),
            ));
            if let (Some(o), Some(b)) = (ours.latency_ms(0.5), base.latency_ms(0.5)) {
                report.figures.push(Figure::ratio(
                    format!("p50 latency ms, {clients} client(s) ({kind})"),
                    o,
                    b,
                    " ms",
                    (clients == 1 && kind == Kind::Close).then_some((1.2, false)),
                ));
            }
        }
    }
    drop(base_gen);
    drop(serv_gen);
    println!();
    report.problems.extend(stop_all(vec![servent])?);
    drop(baseline);
    println!();
    run_hostile(settings, dir, &keys, &store, report)
}

/// 16 `close` clients of a fresh servent, alone and then beside a hostile reply address:
/// the other clients' p99 latency with it, against without it.
fn run_hostile(
    settings: &Settings,
    dir: &TempDir,
    keys: &KeySet,
    store: &Path,
    report: &mut Report,
) -> Result<(), String> {
    let servent = Process::servent(
        "servent-hostile",
        &dir.0,
        store,
        &[],
        &settings.servent_args,
    )?;
    probe(servent.addr, keys, Duration::from_secs(10))?;
    println!(
        "answers, hostile address: a fresh servent, {HOSTILE_CLIENTS} {} clients alone, then \
         beside a reply address that accepts its answers and never reads them, asked for at \
         {HOSTILE_RATE:.0} KEYREQ/s through warm-up and measurement",
        Kind::Close
    );
    let mut gen = Generator::new(
        servent.addr,
        servent.addr.port(),
        keys.clone(),
        2 * HOSTILE_CLIENTS,
    )?;
    LevelReport::print_header("CPU server");
    let quiet = gen.run_level(
        HOSTILE_CLIENTS,
        Kind::Close,
        &settings.timing,
        &[&servent],
        None,
    )?;
    quiet.print_row("alone");
    let hostile = gen.run_level(
        HOSTILE_CLIENTS,
        Kind::Close,
        &settings.timing,
        &[&servent],
        Some(HOSTILE_RATE),
    )?;
    hostile.print_row("hostile");
    if let Some(h) = &hostile.hostile {
        println!("{h}");
    }
    let p99 = |r: &LevelReport| r.latency_ms(0.99);
    if let (Some(o), Some(b)) = (p99(&hostile), p99(&quiet)) {
        println!(
            "{:>9} {:>7} {:>5} {:>10} {:>8} {:>8}",
            "ratio",
            "",
            "",
            "",
            "",
            format_ratio(o / b)
        );
    }
    report.problems.extend(
        quiet
            .problems()
            .into_iter()
            .map(|p| format!("hostile scenario, alone: {p}")),
    );
    // Under attack, a lost or late answer is slowness (an infinite latency: the target
    // is missed), not a broken answer.
    report.problems.extend(
        hostile
            .problems_but_losses()
            .into_iter()
            .map(|p| format!("hostile scenario: {p}")),
    );
    let (lost, late) = hostile.lost_and_late();
    if lost + late > 0 {
        println!(
            "hostile: the other clients lost {lost} queries, and {late} answers came after \
             their query was counted lost"
        );
    }
    if let (Some(o), Some(b)) = (p99(&hostile), p99(&quiet)) {
        report.figures.push(Figure::ratio(
            format!("p99 latency ms, {HOSTILE_CLIENTS} clients, hostile address"),
            o,
            b,
            " ms",
            Some((2.0, false)),
        ));
    }
    drop(gen);
    println!();
    // The hostile address's answers may be lost (the servent gives up on them): only a
    // clean exit is asked of it.
    report.problems.extend(stop_all_lossy(vec![servent])?);
    Ok(())
}

/// Times lookups across a line `s1 – … – s5` (keys only on `s5`, the client on `s1`)
/// and across four raw relays in front of the minimal answerer: one `close` client.
pub fn run_line(settings: &Settings, dir: &TempDir, report: &mut Report) -> Result<(), String> {
    const HOPS: usize = 5;
    let keys = KeySet::new(settings.keys);
    let store = dir.write("line-keys.kv", &keys.kv_file())?;
    let decoys = dir.write(
        "line-decoys.kv",
        &(0..100)
            .map(|i| format!("decoy-{i} not what the clients ask for\n"))
            .collect::<String>(),
    )?;
    // Far end first, so that each one's neighbour is already up.
    let mut servents: Vec<Process> = Vec::new();
    let mut relays: Vec<Process> = Vec::new();
    let answerer = Process::baseline(
        "line-answerer",
        &dir.0,
        "answerer",
        &[store.display().to_string()],
    )?;
    for i in (1..=HOPS).rev() {
        let kv = if i == HOPS { &store } else { &decoys };
        let next: Vec<SocketAddrV4> = servents.last().map(|s| s.addr).into_iter().collect();
        servents.push(Process::servent(
            &format!("s{i}"),
            &dir.0,
            kv,
            &next,
            &settings.servent_args,
        )?);
        if i < HOPS {
            let next = relays.last().map_or(answerer.addr, |r| r.addr);
            relays.push(Process::baseline(
                &format!("r{i}"),
                &dir.0,
                "relay",
                &[next.to_string()],
            )?);
        }
    }
    servents.reverse();
    relays.reverse();
    let (entry, far) = (servents[0].addr, servents[HOPS - 1].addr);
    // Answered only once every link of the line is up.
    probe(entry, &keys, Duration::from_secs(10))?;
    probe(relays[0].addr, &keys, Duration::from_secs(10))?;

    println!(
        "line: lookups across {HOPS} servents (one client on s1, keys on s{HOPS}), and across \
         {} raw relays to the minimal answerer; {:?} measured",
        HOPS - 1,
        settings.timing.secs
    );
    let mut base_gen = Generator::new(relays[0].addr, answerer.addr.port(), keys.clone(), 1)?;
    let mut serv_gen = Generator::new(entry, far.port(), keys, 1)?;
    LevelReport::print_header("CPU s1..s5");
    let all_relays: Vec<&Process> = relays.iter().chain([&answerer]).collect();
    let base = base_gen.run_level(1, Kind::Close, &settings.timing, &all_relays, None)?;
    base.print_row("baseline");
    let ours = serv_gen.run_level(
        1,
        Kind::Close,
        &settings.timing,
        &servents.iter().collect::<Vec<_>>(),
        None,
    )?;
    ours.print_row("servents");
    report.problems.extend(
        base.problems()
            .into_iter()
            .map(|p| format!("line baseline: {p}")),
    );
    report
        .problems
        .extend(ours.problems().into_iter().map(|p| format!("line: {p}")));
    for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
        if let (Some(o), Some(b)) = (ours.latency_ms(q), base.latency_ms(q)) {
            report.figures.push(Figure::ratio(
                format!("line of {HOPS}: {name} latency ms"),
                o,
                b,
                " ms",
                None,
            ));
        }
    }
    drop(base_gen);
    drop(serv_gen);
    println!();
    report.problems.extend(stop_all(servents)?);
    Ok(())
}
