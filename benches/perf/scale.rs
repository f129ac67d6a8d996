//! Scale: `PERF_SCALE` servents (200 under `cargo bench`) on this machine, linked as a
//! random graph of degree 4. Measured: how long they take to start and link up, their
//! memory each, and what a topology query from servent 0 brings back.
//!
//! - The graph is a random 4-regular simple graph from the configuration model: every
//!   servent gets 4 stubs, the stubs are shuffled and paired, and a pairing with a self
//!   loop or a duplicate edge is thrown away and drawn again. The RNG is a xorshift with
//!   a fixed seed, so every run builds the same graph.
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

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener as StdListener, TcpStream};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};
use tp3kv::protocol::{decode, Frame, INITIAL_TTL};

use crate::loadgen::KeySet;
use crate::procs::{Process, TempDir};
use crate::{Figure, Report, Settings};

/// Every servent's number of neighbours.
const DEGREE: usize = 4;
/// The xorshift seed: the same graph every run.
const SEED: u64 = 0x7e3_2019_5eed_0001;
/// Pairings drawn before giving up on a simple graph. One in about 40 is simple for
/// large graphs (e^-15/4), one in about 80 for the smallest (5 servents: K5).
const MAX_PAIRINGS: usize = 100_000;
/// Keys in the file every servent loads.
const KEYS: usize = 10;
/// How often the logs are read while waiting for the links, and how long at most.
const LINK_POLL: Duration = Duration::from_millis(20);
const LINK_TIMEOUT: Duration = Duration::from_secs(60);
/// Wait between the last link up and reading memory.
const SETTLE: Duration = Duration::from_millis(500);
/// The topology query ends this long after the last answer (or the query, if none)...
const QUIET: Duration = Duration::from_secs(2);
/// ...or this long after the query, whichever comes first.
const ANSWER_CAP: Duration = Duration::from_secs(30);
/// The seq of our TOPOREQ.
const TOPO_SEQ: u32 = 0x5ca1_e000;
/// A path names at most this many servents: the first sends TTL 3, and a servent that
/// receives TTL 0 answers but forwards no more (docs/PROTOCOL.md: at most 5 servents).
const MAX_PATH: usize = INITIAL_TTL as usize + 2;
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
    let mut rng = XorShift(SEED);
    let (graph, pairings) = Graph::random_regular(n, DEGREE, &mut rng)?;
    let links = graph.edges();
    let components = graph.components();
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

    // Held in a Vec from the first: any early return kills every one started.
    let mut servents: Vec<Process> = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let neighbours: Vec<SocketAddrV4> = graph.lower(i).map(|j| servents[j].addr).collect();
        servents.push(Process::servent_logging(
            &format!("scale-{i}"),
            &dir.0,
            &kv,
            &neighbours,
            &settings.servent_args,
            "info",
        )?);
    }
    let spawned = start.elapsed();
    let linked = wait_links(&servents, &graph, start)?;
    report.problems.extend(check_dials(&servents, &graph));

    std::thread::sleep(SETTLE);
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

    let topo = Topology::ask(servents[0].addr, TOPO_SEQ)?;
    let addrs: HashMap<String, usize> = servents
        .iter()
        .enumerate()
        .map(|(i, s)| (s.addr.to_string(), i))
        .collect();
    let check = topo.check(&graph, &addrs);

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
    println!(
        "topology from servent 0: {} answers of {} servents within {} hops, the last {} after \
         the TOPOREQ{}",
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
    report.figures.push(Figure::absolute(
        format!("scale: T answers, of {} in reach", check.within_reach),
        check.answers as f64,
        "",
        None,
    ));
    push_capped(&mut report.problems, "scale: topology", check.problems);
    println!();
    report.problems.extend(stop_quietly(servents)?);
    Ok(())
}

/// Pushes the first `PROBLEM_CAP` of `found`, then a count of the rest.
fn push_capped(problems: &mut Vec<String>, what: &str, found: Vec<String>) {
    let total = found.len();
    problems.extend(found.into_iter().take(PROBLEM_CAP));
    if total > PROBLEM_CAP {
        problems.push(format!(
            "{what}: {} more problem(s) like these",
            total - PROBLEM_CAP
        ));
    }
}

/// xorshift64: small, fast, and the same sequence everywhere.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (the modulo bias is negligible for the small `n` used here).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// An undirected simple graph as sorted adjacency lists.
struct Graph {
    adj: Vec<Vec<usize>>,
}

impl Graph {
    /// A random `degree`-regular simple graph on `n` nodes, and the number of pairings
    /// drawn to get it.
    fn random_regular(
        n: usize,
        degree: usize,
        rng: &mut XorShift,
    ) -> Result<(Graph, usize), String> {
        if !(n * degree).is_multiple_of(2) || n <= degree {
            return Err(format!("no {degree}-regular simple graph on {n} nodes"));
        }
        let mut stubs: Vec<usize> = (0..n * degree).map(|s| s / degree).collect();
        'pairing: for pairing in 1..=MAX_PAIRINGS {
            for i in (1..stubs.len()).rev() {
                stubs.swap(i, rng.below(i + 1));
            }
            let mut adj = vec![Vec::with_capacity(degree); n];
            for pair in stubs.chunks_exact(2) {
                let (a, b) = (pair[0], pair[1]);
                if a == b || adj[a].contains(&b) {
                    continue 'pairing;
                }
                adj[a].push(b);
                adj[b].push(a);
            }
            for list in &mut adj {
                list.sort_unstable();
            }
            return Ok((Graph { adj }, pairing));
        }
        Err(format!(
            "no simple {degree}-regular graph on {n} nodes in {MAX_PAIRINGS} pairings"
        ))
    }

    fn edges(&self) -> usize {
        self.adj.iter().map(Vec::len).sum::<usize>() / 2
    }

    /// `i`'s neighbours started before it: the ones it dials.
    fn lower(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.adj[i].iter().copied().filter(move |&j| j < i)
    }

    fn adjacent(&self, a: usize, b: usize) -> bool {
        self.adj[a].binary_search(&b).is_ok()
    }

    /// Hops from `from` to every node (`None`: unreachable).
    fn distances(&self, from: usize) -> Vec<Option<usize>> {
        let mut dist = vec![None; self.adj.len()];
        dist[from] = Some(0);
        let mut queue = VecDeque::from([from]);
        while let Some(a) = queue.pop_front() {
            let d = dist[a].expect("queued nodes have a distance");
            for &b in &self.adj[a] {
                if dist[b].is_none() {
                    dist[b] = Some(d + 1);
                    queue.push_back(b);
                }
            }
        }
        dist
    }

    fn components(&self) -> usize {
        let mut seen = vec![false; self.adj.len()];
        let mut count = 0;
        for start in 0..self.adj.len() {
            if seen[start] {
                continue;
            }
            count += 1;
            for (i, d) in self.distances(start).iter().enumerate() {
                if d.is_some() {
                    seen[i] = true;
                }
            }
        }
        count
    }
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
    let links = graph.edges();
    // Expected (dialled, accepted) per servent, and what its log said last time.
    let expected: Vec<(usize, usize)> = (0..servents.len())
        .map(|i| {
            let lower = graph.lower(i).count();
            (lower, graph.adj[i].len() - lower)
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
        let mut lower: Vec<String> = graph
            .lower(i)
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
        let higher = graph.adj[i].len() - lower.len();
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

/// One answer to the topology query.
struct Answer {
    at: Instant,
    seq: u32,
    value: String,
}

/// What came back for one TOPOREQ.
struct Topology {
    sent: Instant,
    answers: Vec<Answer>,
    /// Reply connections that brought something other than one RESP.
    problems: Vec<String>,
    /// Whether collection stopped at `ANSWER_CAP` rather than after `QUIET`.
    capped: bool,
}

fn fail(what: &'static str) -> impl Fn(io::Error) -> String {
    move |e| format!("scale: topology query: {what}: {e}")
}

/// A reply connection being read.
struct Reply {
    stream: mio::net::TcpStream,
    peer: SocketAddr,
    buf: Vec<u8>,
}

impl Topology {
    /// Connects to `entry` as a client, sends `TOPOREQ(seq)`, and collects answers until
    /// `QUIET` passes without one (`ANSWER_CAP` at most).
    fn ask(entry: SocketAddrV4, seq: u32) -> Result<Topology, String> {
        const LISTENER: Token = Token(usize::MAX);
        let socket =
            Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(fail("socket"))?;
        socket
            .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
            .map_err(fail("bind"))?;
        socket.listen(1024).map_err(fail("listen"))?;
        socket.set_nonblocking(true).map_err(fail("listener"))?;
        let listener = StdListener::from(socket);
        let port = listener.local_addr().map_err(fail("listener"))?.port();
        let mut listener = mio::net::TcpListener::from_std(listener);
        let mut poll = Poll::new().map_err(fail("poll"))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(fail("register"))?;

        let mut client = TcpStream::connect(entry).map_err(fail("connect"))?;
        client.set_nodelay(true).map_err(fail("connect"))?;
        let mut request = Frame::Id { port }.to_bytes();
        Frame::TopoReq { seq }.encode(&mut request);
        client.write_all(&request).map_err(fail("send"))?;
        let sent = Instant::now();

        let mut topo = Topology {
            sent,
            answers: Vec::new(),
            problems: Vec::new(),
            capped: false,
        };
        let mut replies: HashMap<Token, Reply> = HashMap::new();
        let mut next_token = 0usize;
        let mut events = Events::with_capacity(256);
        let mut chunk = [0u8; 1024];
        loop {
            let now = Instant::now();
            let quiet_end = topo.answers.last().map_or(sent, |a| a.at) + QUIET;
            let cap_end = sent + ANSWER_CAP;
            if now >= quiet_end.min(cap_end) {
                topo.capped = cap_end < quiet_end;
                break;
            }
            let wait = (quiet_end.min(cap_end) - now).min(Duration::from_millis(100));
            match poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(fail("poll")(e)),
            }
            for event in &events {
                if event.token() == LISTENER {
                    loop {
                        match listener.accept() {
                            Ok((mut stream, peer)) => {
                                let token = Token(next_token);
                                next_token += 1;
                                poll.registry()
                                    .register(&mut stream, token, Interest::READABLE)
                                    .map_err(fail("register"))?;
                                replies.insert(
                                    token,
                                    Reply {
                                        stream,
                                        peer,
                                        buf: Vec::new(),
                                    },
                                );
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(fail("accept")(e)),
                        }
                    }
                    continue;
                }
                let Some(reply) = replies.get_mut(&event.token()) else {
                    continue;
                };
                // Read until a whole frame, the end, or nothing more for now.
                let done = loop {
                    match decode(&reply.buf) {
                        Ok(Some((Frame::Resp { seq, value }, _))) => {
                            topo.answers.push(Answer {
                                at: Instant::now(),
                                seq,
                                value: value.to_lossy().into_owned(),
                            });
                            break true;
                        }
                        Ok(Some((other, _))) => {
                            topo.problems.push(format!(
                                "{} sent {} instead of RESP",
                                reply.peer,
                                other.name()
                            ));
                            break true;
                        }
                        Err(e) => {
                            topo.problems
                                .push(format!("{} sent a bad frame: {e}", reply.peer));
                            break true;
                        }
                        Ok(None) => {}
                    }
                    match reply.stream.read(&mut chunk) {
                        Ok(0) => {
                            topo.problems.push(format!(
                                "{} closed its reply connection after {} byte(s), before \
                                 a whole RESP",
                                reply.peer,
                                reply.buf.len()
                            ));
                            break true;
                        }
                        Ok(n) => reply.buf.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            topo.problems
                                .push(format!("reply connection from {}: {e}", reply.peer));
                            break true;
                        }
                    }
                };
                if done {
                    // One RESP per connection: we close it (dropping it).
                    replies.remove(&event.token());
                }
            }
        }
        for reply in replies.values() {
            topo.problems.push(format!(
                "{} left its reply connection open with {} byte(s) and no whole RESP",
                reply.peer,
                reply.buf.len()
            ));
        }
        drop(client);
        Ok(topo)
    }

    fn last_after(&self) -> Option<Duration> {
        self.answers.last().map(|a| a.at.duration_since(self.sent))
    }

    /// Checks every answer against the graph (`addrs`: each servent's `ip:port`).
    fn check(&self, graph: &Graph, addrs: &HashMap<String, usize>) -> TopoCheck {
        let dist = graph.distances(0);
        let hops = MAX_PATH - 1;
        let in_reach: Vec<usize> = (0..graph.adj.len())
            .filter(|&i| dist[i].is_some_and(|d| d <= hops))
            .collect();
        let mut problems = self.problems.clone();
        // Path length (servents) of each answerer's path, by answerer.
        let mut answered: HashMap<usize, usize> = HashMap::new();
        for answer in &self.answers {
            if answer.seq != TOPO_SEQ {
                problems.push(format!(
                    "RESP with seq {:#x}, ours is {TOPO_SEQ:#x}: {:?}",
                    answer.seq, answer.value
                ));
                continue;
            }
            let path: Option<Vec<usize>> = answer
                .value
                .split(' ')
                .map(|element| addrs.get(element).copied())
                .collect();
            let Some(path) = path else {
                problems.push(format!(
                    "path {:?} names an address that is no servent's",
                    answer.value
                ));
                continue;
            };
            let Some(&last) = path.last() else {
                problems.push("an empty path".to_string());
                continue;
            };
            if path[0] != 0 {
                problems.push(format!(
                    "path {:?} starts at servent {}, not 0",
                    answer.value, path[0]
                ));
            }
            if path.len() > MAX_PATH {
                problems.push(format!(
                    "path {:?} names {} servents, over the {MAX_PATH} a TTL of {INITIAL_TTL} \
                     allows",
                    answer.value,
                    path.len()
                ));
            }
            if let Some(pair) = path.windows(2).find(|p| !graph.adjacent(p[0], p[1])) {
                problems.push(format!(
                    "path {:?}: servents {} and {} are not neighbours",
                    answer.value, pair[0], pair[1]
                ));
            }
            if path.iter().collect::<HashSet<_>>().len() != path.len() {
                problems.push(format!("path {:?} visits a servent twice", answer.value));
            }
            if answered.insert(last, path.len()).is_some() {
                problems.push(format!("servent {last} answered twice"));
            }
        }
        let answers = self.answers.len();
        let within_reach = in_reach.len();
        if answers == 0 {
            problems.push("no answer at all to the TOPOREQ".into());
        } else if answers > within_reach {
            problems.push(format!(
                "{answers} answers, but only {within_reach} servents within {hops} hops"
            ));
        }
        // X may fall short of Y without anything wrong: a servent handles the first copy
        // of a flood that reaches it, even one that came the long way round with less TTL
        // left, and drops the later copies, so a servent 3 hops away may end up with TTL
        // 0 and never forward to a neighbour 4 hops away that no other copy reaches.
        // But a servent that got the query with TTL left forwards it to every neighbour
        // but the one it came from, and each of those answers (first copy or not): a
        // neighbour of such a servent missing from the answers is a flood or an answer
        // lost, not a detour.
        let mut lost = Vec::new();
        for (&k, &len) in &answered {
            if len < MAX_PATH {
                lost.extend(
                    graph.adj[k]
                        .iter()
                        .filter(|m| !answered.contains_key(m))
                        .map(|m| {
                            format!(
                                "servent {k} got the query {} hop(s) out, with TTL to spare, \
                             but its neighbour {m} never answered",
                                len - 1
                            )
                        }),
                );
            }
        }
        problems.extend(lost);
        let missed: Vec<usize> = in_reach
            .iter()
            .copied()
            .filter(|i| !answered.contains_key(i))
            .collect();
        let detours = answered
            .iter()
            .filter(|(&i, &len)| dist[i].is_some_and(|d| len > d + 1))
            .count();
        TopoCheck {
            answers,
            within_reach,
            missed_by_distance: (0..=hops)
                .map(|d| missed.iter().filter(|&&i| dist[i] == Some(d)).count())
                .collect(),
            reach_by_distance: (0..=hops)
                .map(|d| in_reach.iter().filter(|&&i| dist[i] == Some(d)).count())
                .collect(),
            detours,
            problems,
        }
    }
}

/// The topology answers against the graph.
struct TopoCheck {
    /// X: answers received.
    answers: usize,
    /// Y: servents within 4 hops of servent 0 (itself included).
    within_reach: usize,
    /// Servents at each distance 0..=4 from servent 0, and how many of them never answered.
    reach_by_distance: Vec<usize>,
    missed_by_distance: Vec<usize>,
    /// Answers whose path was longer than the shortest to their servent.
    detours: usize,
    problems: Vec<String>,
}

impl TopoCheck {
    fn print_reach(&self) {
        let by_distance: Vec<String> = self
            .reach_by_distance
            .iter()
            .zip(&self.missed_by_distance)
            .enumerate()
            .map(|(d, (all, missed))| format!("{d}: {}/{all}", all - missed))
            .collect();
        println!(
            "  answered/servents by distance from servent 0: {}; {} answer(s) came by a \
             longer path than the shortest",
            by_distance.join(", "),
            self.detours
        );
    }
}

/// The level of a servent log line (`MILLIS servent:PORT LEVEL message`), if it is one.
fn log_level(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace();
    let _millis = words.next()?;
    words.next()?.strip_prefix("servent:")?;
    words.next()
}

/// Stops every servent (SIGTERM to all first, so they wind down together), checks each
/// exited cleanly with its summary line and lost no answer, and prints one line for all
/// of them and at most `WARNINGS_SHOWN` of the warnings they logged.
fn stop_quietly(servents: Vec<Process>) -> Result<Vec<String>, String> {
    let total = servents.len();
    for servent in &servents {
        // SAFETY: kill only sends a signal, to our own child, which has not been reaped.
        unsafe { libc::kill(servent.pid() as libc::pid_t, libc::SIGTERM) };
    }
    let mut problems = Vec::new();
    let mut clean = 0;
    let mut warnings = Vec::new();
    for servent in servents {
        let name = servent.name.clone();
        let outcome = servent.stop()?;
        if outcome.clean() {
            clean += 1;
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
    Ok(capped)
}
