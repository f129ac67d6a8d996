//! Load test of a real `servent`: sustained closed-loop key lookups, measured from the
//! client side.
//!
//! ```sh
//! cargo bench --bench load                                # 1, 16, 64 clients, 10 s each
//! LOAD_SECS=5 LOAD_CLIENTS=1,8,256 cargo bench --bench load
//! cargo bench --bench load -- --neighbours                # a line of 3 servents
//! ```
//!
//! # What it measures
//!
//! One servent (built in release by `cargo bench`, run with `RUST_LOG=warn` in a temporary
//! directory, on a port the system picks) holds a key-value file of `LOAD_KEYS` keys
//! (default 1000). A load generator speaking the protocol drives it with `C` virtual
//! clients, for each `C` of `LOAD_CLIENTS` (default `1,16,64`):
//!
//! - each virtual client has its own TCP connection to the servent (`ID(reply port)`
//!   first) and exactly one query outstanding: when the RESP for its KEYREQ arrives it
//!   sends the next one (closed loop), for a random key;
//! - all virtual clients share ONE reply listener, so they share one reply address, as
//!   many users behind one client would; their sequence numbers come from disjoint ranges
//!   (`seq = client_index << n_bits | n`), so `(ip, port, seq)` never repeats in the run;
//! - every reply connection the servent opens is accepted, exactly one RESP is read from
//!   it, and we close it (the servent waits for us to close first, so the TIME_WAIT of
//!   every answer lands on our side of loopback);
//! - each RESP is matched to its query by seq and its value checked against the key's.
//!
//! Each level runs a 1 s warm-up (`LOAD_WARMUP_SECS`), then `LOAD_SECS` (default 10) of
//! measurement, then stops sending and waits up to 5 s for the answers still owed. It
//! reports answers per second and the p50/p99/max latency (KEYREQ written → its RESP
//! decoded) of the answers that arrived in the measured window, the CPU time the
//! servent(s) and the generator used in that window (100% = one core), and the share of
//! answers that came from the servent's own listening port (the others came from an
//! ephemeral port: the servent falls back to one when the `(its port, our reply port)`
//! pair is still busy with an earlier answer).
//!
//! It fails (exit status 1, saying why) if any query was not answered within 5 s
//! ("lost"), answered twice ("dup"), answered with a wrong value, or if anything else
//! went wrong on the wire; and if the servent's own exit summary counts a lost answer.
//! The servent's exit summary line (it is stopped with SIGTERM at the end) and any
//! warnings it logged are printed after the table.
//!
//! `--neighbours` runs a line `s1 – s2 – s3` instead: the clients talk to `s1`, only `s3`
//! holds the keys, so every query is flooded two hops and answered from the far end.
//!
//! Other knobs: `LOAD_KEYS` (default 1000), `LOAD_SERVENT_ARGS` (extra servent flags,
//! e.g. `--max-answers 1024`). Run without `--bench` (as `cargo test --benches` does), the
//! default is a smoke run: 0.2 s warm-up and 1 s per level.
//!
//! The generator is one single-threaded `mio` loop over non-blocking sockets, so on a
//! two-core machine the servent has a core to itself; the CPU columns show which side
//! was the bottleneck. Linux only (`/proc` for the servent's CPU time).

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{
    Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener as StdListener, TcpStream as StdStream,
};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};
use tp3kv::protocol::{decode, Frame, Text};

/// The servent binary `cargo bench` built (in release: benches use the `bench` profile,
/// which inherits `release`).
const SERVENT: &str = env!("CARGO_BIN_EXE_servent");

/// A query not answered within this long is counted lost (and its client moves on).
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// After a level, how long we wait for the answers still owed.
const DRAIN: Duration = Duration::from_secs(5);
/// Longest poll wait, so timeouts and the level's end are noticed promptly.
const TICK: Duration = Duration::from_millis(20);
/// Backlog of the reply listener (the kernel caps it at `net.core.somaxconn`).
const REPLY_BACKLOG: i32 = 4096;

/// The reply listener's token; virtual clients are `Token(index)`, reply connections
/// `Token(REPLY_BASE + n)`.
const LISTENER: Token = Token(usize::MAX);
const REPLY_BASE: usize = 1 << 40;

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("load: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What to run, from the environment and the command line.
struct Settings {
    levels: Vec<usize>,
    secs: Duration,
    warmup: Duration,
    keys: usize,
    neighbours: bool,
    servent_args: Vec<String>,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let secs = |name: &str, default: f64| -> Result<Duration, String> {
            let value = match std::env::var(name) {
                Ok(text) => text
                    .trim()
                    .parse::<f64>()
                    .map_err(|e| format!("{name}={text:?}: {e}"))?,
                Err(_) => default,
            };
            Duration::try_from_secs_f64(value).map_err(|e| format!("{name}: {e}"))
        };
        let levels = match std::env::var("LOAD_CLIENTS") {
            Ok(text) => text
                .split(',')
                .map(|c| match c.trim().parse::<usize>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(format!(
                        "LOAD_CLIENTS={text:?}: expected counts like 1,16,64"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Err(_) => vec![1, 16, 64],
        };
        // Every client of the run gets its own seq range: at least 16 bits of queries each.
        if levels.iter().sum::<usize>() > 1 << 16 {
            return Err("LOAD_CLIENTS: at most 65536 clients in all".into());
        }
        let keys = match std::env::var("LOAD_KEYS") {
            Ok(text) => match text.trim().parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("LOAD_KEYS={text:?}: expected a positive count")),
            },
            Err(_) => 1000,
        };
        let mut neighbours = false;
        let mut benching = false;
        for arg in std::env::args().skip(1) {
            match arg.as_str() {
                "--neighbours" => neighbours = true,
                "--bench" => benching = true, // what `cargo bench` passes to every bench
                other => return Err(format!("unknown argument {other:?} (known: --neighbours)")),
            }
        }
        // Without `--bench` (`cargo test --benches`), a short smoke run by default.
        let secs_default = if benching { 10.0 } else { 1.0 };
        let measured = secs("LOAD_SECS", secs_default)?;
        if measured.is_zero() {
            return Err("LOAD_SECS must be above 0".into());
        }
        Ok(Settings {
            levels,
            secs: measured,
            warmup: secs("LOAD_WARMUP_SECS", if benching { 1.0 } else { 0.2 })?,
            keys,
            neighbours,
            servent_args: std::env::var("LOAD_SERVENT_ARGS")
                .map(|a| a.split_whitespace().map(String::from).collect())
                .unwrap_or_default(),
        })
    }
}

/// Returns whether every check passed.
fn run() -> Result<bool, String> {
    let settings = Settings::from_env()?;
    let dir = TempDir::new()?;
    let keys = KeySet::new(settings.keys);
    let store = dir.write("keys.kv", &keys.kv_file())?;

    // The servents, started far end first so that each one's neighbour is already up.
    let mut servents = Vec::new();
    if settings.neighbours {
        let decoys = |tag: &str| {
            (0..100)
                .map(|i| format!("{tag}-only-{i} not what the clients ask for\n"))
                .collect::<String>()
        };
        let s3 = ServentProcess::start("s3", &dir.0, &store, &[], &settings.servent_args)?;
        let s2_kv = dir.write("s2.kv", &decoys("s2"))?;
        let s2 = ServentProcess::start("s2", &dir.0, &s2_kv, &[s3.addr], &settings.servent_args)?;
        let s1_kv = dir.write("s1.kv", &decoys("s1"))?;
        let s1 = ServentProcess::start("s1", &dir.0, &s1_kv, &[s2.addr], &settings.servent_args)?;
        servents.extend([s1, s2, s3]);
    } else {
        servents.push(ServentProcess::start(
            "servent",
            &dir.0,
            &store,
            &[],
            &settings.servent_args,
        )?);
    }
    let entry = servents[0].addr;
    let answerer = servents.last().unwrap().addr;
    // Also waits for the neighbour links: the probe is answered only once they are up.
    probe(entry, &keys, Duration::from_secs(10))?;

    println!(
        "load: {SERVENT}\n      {} servent{}{}, {} keys; per level: {:?} warm-up, {:?} measured, \
         answers owed waited for {:?}",
        servents.len(),
        if servents.len() > 1 {
            "s in a line"
        } else {
            ""
        },
        if servents.len() > 1 {
            ", clients on s1, keys on s3"
        } else {
            ""
        },
        settings.keys,
        settings.warmup,
        settings.secs,
        DRAIN,
    );
    let total_clients = settings.levels.iter().sum();
    let mut generator = Generator::new(entry, answerer.port(), keys, total_clients)?;
    let cpu_label = if servents.len() > 1 {
        "CPU s1/s2/s3"
    } else {
        "CPU servent"
    };
    println!();
    println!(
        "{:>7} {:>10} {:>8} {:>8} {:>8} {:>5} {:>4} {:>6} {:>13} {:>13} {:>13}",
        "clients",
        "answers/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "lost",
        "dup",
        "errors",
        "from its port",
        cpu_label,
        "CPU generator"
    );
    let mut reports = Vec::new();
    for &clients in &settings.levels {
        let report = generator.run_level(clients, &settings, &servents)?;
        report.print_row();
        reports.push(report);
    }
    drop(generator);

    // Stop the servents and collect what they say about the run.
    println!();
    let mut servent_lost = 0;
    let mut clean_exits = true;
    let several = servents.len() > 1;
    for servent in servents {
        let name = servent.name.clone();
        let outcome = servent.stop()?;
        println!(
            "{}{}",
            if several {
                format!("{name}: ")
            } else {
                String::new()
            },
            outcome
                .summary
                .as_deref()
                .unwrap_or("(no exit summary line)")
        );
        servent_lost += outcome
            .summary
            .as_deref()
            .and_then(lost_in_summary)
            .unwrap_or(0);
        if !outcome.status_ok || outcome.summary.is_none() {
            clean_exits = false;
            println!(
                "{name}: did not exit cleanly on SIGTERM ({})",
                outcome.status
            );
        }
        if !outcome.warnings.is_empty() {
            println!("{name}: {} warning line(s) logged:", outcome.warnings.len());
            for line in outcome.warnings.iter().take(20) {
                println!("    {line}");
            }
            if outcome.warnings.len() > 20 {
                println!("    ...");
            }
        }
    }

    let mut problems = Vec::new();
    for report in &reports {
        problems.extend(report.problems());
    }
    if servent_lost > 0 {
        problems.push(format!(
            "the servents' summaries count {servent_lost} lost answer(s)"
        ));
    }
    if !clean_exits {
        problems.push("a servent did not exit cleanly".into());
    }
    println!();
    if problems.is_empty() {
        println!("load: PASS: every query answered exactly once, with the right value");
        Ok(true)
    } else {
        for problem in &problems {
            println!("load: FAIL: {problem}");
        }
        Ok(false)
    }
}

/// `N` in the summary's `answers sent X (lost N)`.
fn lost_in_summary(summary: &str) -> Option<u64> {
    let rest = &summary[summary.find("(lost ")? + "(lost ".len()..];
    rest[..rest.find(')')?].parse().ok()
}

/// The keys the clients ask for, and the value each must come back with.
struct KeySet {
    keys: Vec<Text>,
    values: Vec<Vec<u8>>,
}

impl KeySet {
    fn new(count: usize) -> KeySet {
        let keys = (0..count)
            .map(|i| Text::new(format!("key{i:05}")).unwrap())
            .collect();
        // Values of varied length (19 to 82 bytes), each naming its key, with no
        // trailing whitespace (the file format trims it).
        let values = (0..count)
            .map(|i| format!("value of key{i:05}:{}", "x".repeat(i % 64)).into_bytes())
            .collect();
        KeySet { keys, values }
    }

    fn kv_file(&self) -> String {
        let mut text = String::from("# load-test keys\n");
        for (key, value) in self.keys.iter().zip(&self.values) {
            text.push_str(&format!("{key} {}\n", String::from_utf8_lossy(value)));
        }
        text
    }
}

/// Asks `entry` for a key until the right answer comes back: the servent(s) are up and
/// linked. A sanity check of the whole path before any load.
fn probe(entry: SocketAddrV4, keys: &KeySet, within: Duration) -> Result<(), String> {
    let fail = |what: &str, e: io::Error| format!("probe of {entry}: {what}: {e}");
    let listener = StdListener::bind("127.0.0.1:0").map_err(|e| fail("bind", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| fail("listener", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| fail("listener", e))?
        .port();
    let mut link = StdStream::connect(entry).map_err(|e| fail("connect", e))?;
    link.write_all(&Frame::Id { port }.to_bytes())
        .map_err(|e| fail("send ID", e))?;
    let deadline = Instant::now() + within;
    for seq in 0.. {
        if Instant::now() > deadline {
            return Err(format!(
                "probe of {entry}: no answer to a lookup within {within:?}"
            ));
        }
        let key = keys.keys[0].clone();
        link.write_all(&Frame::KeyReq { seq, key }.to_bytes())
            .map_err(|e| fail("send KEYREQ", e))?;
        let retry = Instant::now() + Duration::from_millis(200);
        while Instant::now() < retry {
            match listener.accept() {
                Ok((stream, _)) => {
                    if let Some(Frame::Resp { value, .. }) = read_one_frame(stream) {
                        if value.as_bytes() == keys.values[0] {
                            return Ok(());
                        }
                        return Err(format!(
                            "probe of {entry}: wrong value {value:?} for {}",
                            keys.keys[0]
                        ));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => return Err(fail("accept", e)),
            }
        }
    }
    unreachable!()
}

/// Reads one frame from a blocking stream (1 s at most), then closes it.
fn read_one_frame(mut stream: StdStream) -> Option<Frame> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Ok(Some((frame, _))) = decode(&buf) {
            return Some(frame);
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One query in flight.
struct Pending {
    n: u32,
    key: usize,
    sent: Instant,
}

/// A virtual client: its connection to the servent and its one outstanding query.
struct VClient {
    /// `None` once closed (its level is over, or the servent closed it).
    stream: Option<TcpStream>,
    outbuf: Vec<u8>,
    /// The `n` of the next query (its seq is `index << n_bits | n`).
    next_n: u32,
    pending: Option<Pending>,
    /// Queries given up on (lost); an answer for one of them is late, not a duplicate.
    gave_up: HashSet<u32>,
}

/// A reply connection the servent opened to us, until its RESP is read.
struct Reply {
    stream: TcpStream,
    from: SocketAddr,
    buf: Vec<u8>,
}

/// What happened during one level (warm-up, measurement and drain).
#[derive(Default)]
struct Tally {
    sent: u64,
    /// Latency of each right answer received in the measured window, in microseconds.
    latencies_us: Vec<u64>,
    lost: u64,
    /// Answers to queries already counted lost.
    late: u64,
    duplicates: u64,
    wrong_values: u64,
    /// A RESP whose seq we never sent, a frame that is not a RESP, or bytes after it.
    unexpected: u64,
    /// Reply connections that closed or broke before a whole RESP.
    broken_replies: u64,
    accept_errors: u64,
    /// Client connections the servent closed, or that failed.
    client_links_lost: u64,
    from_servent_port: u64,
    from_other_port: u64,
}

/// The load generator: virtual clients, the shared reply listener, one `mio` loop.
struct Generator {
    poll: Poll,
    events: Option<Events>,
    listener: TcpListener,
    reply_port: u16,
    entry: SocketAddrV4,
    /// The listening port of the servent that answers (an answer from any other port
    /// was sent from an ephemeral port).
    answer_port: u16,
    keys: KeySet,
    clients: Vec<VClient>,
    /// The clients of the level running now.
    active: Range<usize>,
    replies: HashMap<Token, Reply>,
    next_reply: usize,
    n_bits: u32,
    /// Whether an answered client sends its next query.
    sending: bool,
    /// Whether answers count towards throughput and latency.
    measuring: bool,
    tally: Tally,
    rng: u64,
    read_buf: Box<[u8]>,
}

impl Generator {
    fn new(
        entry: SocketAddrV4,
        answer_port: u16,
        keys: KeySet,
        total_clients: usize,
    ) -> Result<Generator, String> {
        let io_err =
            |what: &'static str| move |e: io::Error| format!("reply listener: {what}: {e}");
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
            .map_err(io_err("socket"))?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        socket.bind(&addr.into()).map_err(io_err("bind"))?;
        socket.listen(REPLY_BACKLOG).map_err(io_err("listen"))?;
        socket
            .set_nonblocking(true)
            .map_err(io_err("nonblocking"))?;
        let mut listener = TcpListener::from_std(socket.into());
        let reply_port = listener.local_addr().map_err(io_err("address"))?.port();
        let poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(io_err("register"))?;
        // Enough high bits to tell every client of the run apart; the rest count queries.
        let index_bits = usize::BITS - total_clients.saturating_sub(1).leading_zeros();
        Ok(Generator {
            poll,
            events: Some(Events::with_capacity(1024)),
            listener,
            reply_port,
            entry,
            answer_port,
            keys,
            clients: Vec::new(),
            active: 0..0,
            replies: HashMap::new(),
            next_reply: REPLY_BASE,
            n_bits: 32 - index_bits,
            sending: false,
            measuring: false,
            tally: Tally::default(),
            rng: 0x9E37_79B9_7F4A_7C15,
            read_buf: vec![0; 4096].into_boxed_slice(),
        })
    }

    /// Runs one level of `clients` virtual clients: warm-up, measurement, drain.
    fn run_level(
        &mut self,
        clients: usize,
        settings: &Settings,
        servents: &[ServentProcess],
    ) -> Result<LevelReport, String> {
        self.tally = Tally::default();
        let first = self.clients.len();
        for _ in 0..clients {
            self.add_client()?;
        }
        self.active = first..first + clients;
        self.sending = true;
        for index in self.active.clone() {
            self.send_next(index);
        }
        self.run_until(Instant::now() + settings.warmup)?;

        self.tally.latencies_us.clear();
        let servent_cpu0: Vec<Duration> = servents.iter().map(|s| s.cpu_time()).collect();
        let own_cpu0 = own_cpu_time();
        let start = Instant::now();
        self.measuring = true;
        self.run_until(start + settings.secs)?;
        self.measuring = false;
        let elapsed = start.elapsed();
        let servent_cpu: Vec<f64> = servents
            .iter()
            .zip(servent_cpu0)
            .map(|(s, before)| share(s.cpu_time().saturating_sub(before), elapsed))
            .collect();
        let own_cpu = share(own_cpu_time().saturating_sub(own_cpu0), elapsed);

        // Stop, and wait for what is still owed (and for reply connections in progress).
        self.sending = false;
        let drain_end = Instant::now() + DRAIN;
        while Instant::now() < drain_end && (self.active_pending() > 0 || !self.replies.is_empty())
        {
            self.turn(TICK)?;
        }
        for index in self.active.clone() {
            let client = &mut self.clients[index];
            if let Some(pending) = client.pending.take() {
                self.tally.lost += 1;
                client.gave_up.insert(pending.n);
            }
            client.stream = None;
        }
        let mut tally = std::mem::take(&mut self.tally);
        tally.latencies_us.sort_unstable();
        Ok(LevelReport {
            clients,
            elapsed,
            tally,
            servent_cpu,
            own_cpu,
        })
    }

    fn active_pending(&self) -> usize {
        self.clients[self.active.clone()]
            .iter()
            .filter(|c| c.pending.is_some())
            .count()
    }

    /// Connects a new virtual client to the servent and introduces it with its ID.
    fn add_client(&mut self) -> Result<(), String> {
        let fail = |e: io::Error| format!("client connection to {}: {e}", self.entry);
        let std_stream = StdStream::connect(self.entry).map_err(fail)?;
        std_stream.set_nodelay(true).map_err(fail)?;
        std_stream.set_nonblocking(true).map_err(fail)?;
        let mut stream = TcpStream::from_std(std_stream);
        let index = self.clients.len();
        self.poll
            .registry()
            .register(
                &mut stream,
                Token(index),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(fail)?;
        self.clients.push(VClient {
            stream: Some(stream),
            outbuf: Frame::Id {
                port: self.reply_port,
            }
            .to_bytes(),
            next_n: 0,
            pending: None,
            gave_up: HashSet::new(),
        });
        Ok(())
    }

    fn run_until(&mut self, end: Instant) -> Result<(), String> {
        loop {
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            self.turn((end - now).min(TICK))?;
        }
    }

    /// One poll and everything it reported, then the query timeouts.
    fn turn(&mut self, timeout: Duration) -> Result<(), String> {
        let mut events = self.events.take().expect("events are put back every turn");
        let polled = self.poll.poll(&mut events, Some(timeout));
        if let Err(e) = polled {
            self.events = Some(events);
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(format!("poll: {e}"));
        }
        for event in events.iter() {
            match event.token() {
                LISTENER => self.accept_replies(),
                token if token.0 >= REPLY_BASE => self.read_reply(token),
                Token(index) => {
                    if event.is_writable() {
                        self.flush(index);
                    }
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        self.read_client(index);
                    }
                }
            }
        }
        self.events = Some(events);
        self.expire(Instant::now());
        Ok(())
    }

    /// Sends client `index` its next query, for a random key.
    fn send_next(&mut self, index: usize) {
        let key = (self.random() % self.keys.keys.len() as u64) as usize;
        let client = &mut self.clients[index];
        let n = client.next_n;
        assert!(
            u64::from(n) >> self.n_bits == 0,
            "virtual client {index} ran out of sequence numbers ({n} queries)"
        );
        client.next_n += 1;
        // At most 32 bits in all: `n_bits` were chosen so that every index fits.
        let seq = ((index as u64) << self.n_bits | u64::from(n)) as u32;
        Frame::KeyReq {
            seq,
            key: self.keys.keys[key].clone(),
        }
        .encode(&mut client.outbuf);
        client.pending = Some(Pending {
            n,
            key,
            sent: Instant::now(),
        });
        self.tally.sent += 1;
        self.flush(index);
    }

    /// Writes what the socket takes of a client's output; the rest waits for writability.
    fn flush(&mut self, index: usize) {
        let client = &mut self.clients[index];
        let Some(stream) = client.stream.as_mut() else {
            return;
        };
        let mut written = 0;
        while written < client.outbuf.len() {
            match stream.write(&client.outbuf[written..]) {
                Ok(0) => return self.client_lost(index),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.client_lost(index),
            }
        }
        client.outbuf.drain(..written);
    }

    /// The servent never writes on a client's connection: anything read is unexpected,
    /// and end of stream means the servent dropped the client.
    fn read_client(&mut self, index: usize) {
        loop {
            let Some(stream) = self.clients[index].stream.as_mut() else {
                return;
            };
            match stream.read(&mut self.read_buf) {
                Ok(0) => return self.client_lost(index),
                Ok(_) => self.tally.unexpected += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.client_lost(index),
            }
        }
    }

    fn client_lost(&mut self, index: usize) {
        // Its outstanding query, if any, will be counted lost by its timeout.
        if self.clients[index].stream.take().is_some() {
            self.tally.client_links_lost += 1;
        }
    }

    fn accept_replies(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, from)) => {
                    let token = Token(self.next_reply);
                    self.next_reply += 1;
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE)
                        .is_err()
                    {
                        self.tally.accept_errors += 1;
                        continue;
                    }
                    self.replies.insert(
                        token,
                        Reply {
                            stream,
                            from,
                            buf: Vec::new(),
                        },
                    );
                    // The RESP is usually there already.
                    self.read_reply(token);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.tally.accept_errors += 1;
                    return;
                }
            }
        }
    }

    /// Reads a reply connection until its RESP is whole, then closes it (dropping a
    /// `mio` stream closes the descriptor, which also takes it out of the epoll set).
    fn read_reply(&mut self, token: Token) {
        loop {
            let Some(reply) = self.replies.get_mut(&token) else {
                return;
            };
            match reply.stream.read(&mut self.read_buf) {
                Ok(0) => {
                    self.replies.remove(&token);
                    self.tally.broken_replies += 1;
                    return;
                }
                Ok(n) => {
                    reply.buf.extend_from_slice(&self.read_buf[..n]);
                    match decode(&reply.buf) {
                        Ok(None) => {}
                        Ok(Some((frame, used))) => {
                            let reply = self.replies.remove(&token).unwrap();
                            drop(reply.stream);
                            if used < reply.buf.len() {
                                self.tally.unexpected += 1;
                            }
                            return self.answer(frame, reply.from);
                        }
                        Err(_) => {
                            self.replies.remove(&token);
                            self.tally.unexpected += 1;
                            return;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.replies.remove(&token);
                    self.tally.broken_replies += 1;
                    return;
                }
            }
        }
    }

    /// Matches an answer to its query; the client then sends its next one.
    fn answer(&mut self, frame: Frame, from: SocketAddr) {
        let received = Instant::now();
        let Frame::Resp { seq, value } = frame else {
            self.tally.unexpected += 1;
            return;
        };
        if from.port() == self.answer_port {
            self.tally.from_servent_port += 1;
        } else {
            self.tally.from_other_port += 1;
        }
        let index = (u64::from(seq) >> self.n_bits) as usize;
        let n = (u64::from(seq) & ((1u64 << self.n_bits) - 1)) as u32;
        let Some(client) = self.clients.get_mut(index) else {
            self.tally.unexpected += 1;
            return;
        };
        match &client.pending {
            Some(pending) if pending.n == n => {
                if value.as_bytes() != self.keys.values[pending.key] {
                    self.tally.wrong_values += 1;
                }
                if self.measuring {
                    let latency = received.duration_since(pending.sent);
                    self.tally.latencies_us.push(latency.as_micros() as u64);
                }
                client.pending = None;
                if self.sending && client.stream.is_some() {
                    self.send_next(index);
                }
            }
            _ if client.gave_up.remove(&n) => self.tally.late += 1,
            _ if n < client.next_n => self.tally.duplicates += 1,
            _ => self.tally.unexpected += 1,
        }
    }

    /// Counts as lost every active query older than [`QUERY_TIMEOUT`]; its client moves
    /// on to the next one.
    fn expire(&mut self, now: Instant) {
        for index in self.active.clone() {
            let client = &mut self.clients[index];
            let Some(pending) = &client.pending else {
                continue;
            };
            if now.duration_since(pending.sent) < QUERY_TIMEOUT {
                continue;
            }
            client.gave_up.insert(pending.n);
            client.pending = None;
            self.tally.lost += 1;
            if self.sending && client.stream.is_some() {
                self.send_next(index);
            }
        }
    }

    /// xorshift64: cheap, deterministic key choice.
    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }
}

/// One row of the table.
struct LevelReport {
    clients: usize,
    elapsed: Duration,
    tally: Tally,
    /// CPU used in the measured window, per servent, as a share of one core.
    servent_cpu: Vec<f64>,
    own_cpu: f64,
}

impl LevelReport {
    fn errors(&self) -> u64 {
        let t = &self.tally;
        t.wrong_values
            + t.unexpected
            + t.broken_replies
            + t.accept_errors
            + t.client_links_lost
            + t.late
    }

    fn print_row(&self) {
        let t = &self.tally;
        let answered = t.latencies_us.len();
        let rate = answered as f64 / self.elapsed.as_secs_f64();
        let ms = |q: f64| match answered {
            0 => "-".to_string(),
            _ => {
                let at = ((answered as f64 * q).ceil() as usize).clamp(1, answered) - 1;
                format!("{:.3}", t.latencies_us[at] as f64 / 1000.0)
            }
        };
        let answers = t.from_servent_port + t.from_other_port;
        let from_port = if answers == 0 {
            "-".to_string()
        } else {
            format!(
                "{:.1}%",
                100.0 * t.from_servent_port as f64 / answers as f64
            )
        };
        let cpu = self
            .servent_cpu
            .iter()
            .map(|c| format!("{:.0}", c * 100.0))
            .collect::<Vec<_>>()
            .join("/")
            + "%";
        println!(
            "{:>7} {:>10.0} {:>8} {:>8} {:>8} {:>5} {:>4} {:>6} {:>13} {:>13} {:>12.0}%",
            self.clients,
            rate,
            ms(0.5),
            ms(0.99),
            ms(1.0),
            t.lost,
            t.duplicates,
            self.errors(),
            from_port,
            cpu,
            self.own_cpu * 100.0
        );
    }

    /// What went wrong in this level, one line each.
    fn problems(&self) -> Vec<String> {
        let t = &self.tally;
        let c = self.clients;
        [
            (t.lost, "queries lost (no answer within 5 s)"),
            (t.duplicates, "duplicate answers"),
            (t.late, "answers after their query was counted lost"),
            (t.wrong_values, "answers with a wrong value"),
            (t.unexpected, "unexpected frames or bytes"),
            (t.broken_replies, "reply connections closed before a RESP"),
            (t.accept_errors, "reply connections we failed to accept"),
            (
                t.client_links_lost,
                "client connections the servent dropped",
            ),
        ]
        .into_iter()
        .filter(|(count, _)| *count > 0)
        .map(|(count, what)| format!("{c} clients: {count} {what}"))
        .collect()
    }
}

fn share(cpu: Duration, wall: Duration) -> f64 {
    cpu.as_secs_f64() / wall.as_secs_f64()
}

/// User + system CPU time this process has used.
fn own_cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// A scratch directory, removed at drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        let path = std::env::temp_dir().join(format!("tp3kv-load-{}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(TempDir(path))
    }

    fn write(&self, name: &str, contents: &str) -> Result<PathBuf, String> {
        let path = self.0.join(name);
        std::fs::write(&path, contents).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running servent, killed at drop if it was not stopped (a panic included).
struct ServentProcess {
    name: String,
    child: Child,
    /// Kept open so the servent never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
    addr: SocketAddrV4,
    log: PathBuf,
    stopped: bool,
}

/// How a servent ended.
struct Outcome {
    status: String,
    status_ok: bool,
    summary: Option<String>,
    warnings: Vec<String>,
}

impl ServentProcess {
    fn start(
        name: &str,
        dir: &Path,
        kv: &Path,
        neighbours: &[SocketAddrV4],
        flags: &[String],
    ) -> Result<ServentProcess, String> {
        let log = dir.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut child = Command::new(SERVENT)
            .args(flags)
            .arg("0")
            .arg(kv)
            .args(neighbours.iter().map(|n| n.to_string()))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {SERVENT}: {e}"))?;
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut servent = ServentProcess {
            name: name.to_string(),
            child,
            _stdout: stdout,
            addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
            log,
            stopped: false,
        };
        let mut line = String::new();
        let _ = servent._stdout.read_line(&mut line);
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|addr| addr.rsplit_once(':'))
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .ok_or_else(|| {
                let log = std::fs::read_to_string(&servent.log).unwrap_or_default();
                format!("{name} did not start: stdout {line:?}, stderr {log:?}")
            })?;
        servent.addr.set_port(port);
        Ok(servent)
    }

    /// User + system CPU time the servent has used, from `/proc/PID/stat`.
    fn cpu_time(&self) -> Duration {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())) else {
            return Duration::ZERO;
        };
        // Fields after the parenthesised command name start at field 3 (state);
        // utime and stime are fields 14 and 15, in clock ticks.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return Duration::ZERO;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        let (Some(user), Some(system)) = (ticks(11), ticks(12)) else {
            return Duration::ZERO;
        };
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Duration::from_secs_f64((user + system) as f64 / hz)
    }

    /// Stops the servent with SIGTERM (it should exit 0 with its summary line) and reads
    /// its log.
    fn stop(mut self) -> Result<Outcome, String> {
        self.stopped = true;
        // SAFETY: kill only sends a signal, to our own child, which has not been reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
                Err(e) => return Err(format!("{}: wait: {e}", self.name)),
            }
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        Ok(Outcome {
            status: match status {
                Some(status) => status.to_string(),
                None => "still running 10 s after SIGTERM; killed".into(),
            },
            status_ok: status.is_some_and(|s| s.success()),
            summary: log
                .lines()
                .find(|l| l.starts_with("servent: exiting:"))
                .map(String::from),
            warnings: log
                .lines()
                .filter(|l| !l.starts_with("servent: exiting:"))
                .map(String::from)
                .collect(),
        })
    }
}

impl Drop for ServentProcess {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
