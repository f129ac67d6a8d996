//! The load generator of the `answers` and `line` sections. It speaks the protocol with
//! `C` virtual clients, each one like a real client:
//!
//! - each virtual client has its own reply listener (its own reply address), its own
//!   TCP connection to the servent (`ID(its reply port)` first) and exactly one query
//!   outstanding: when the answer to its KEYREQ is whole it sends the next one (closed
//!   loop), for a random key;
//! - sequence numbers come from disjoint ranges (`seq = client_index << n_bits | n`, every
//!   client of the run a different index), so `(ip, port, seq)` never repeats in a run;
//! - two kinds of client, each level run once per kind:
//!   - `close`: accepts a reply connection, reads exactly one RESP, closes it (the
//!     reference clients). The answer is whole when its RESP is;
//!   - `eof`: accepts, reads until the other end closes, then closes. The answer is
//!     whole only at that end of stream: its latency ends there, and only then does the
//!     client send its next query. A servent that lingers after its RESP shows here;
//! - each RESP is matched to its query by seq, its value checked against the key's, and
//!   it must come to the reply listener of the client that asked.
//!
//! A level is a warm-up, the measured window, then a drain: no new queries, and up to
//! 5 s for the answers still owed. Answers/s counts the answers whole within the window;
//! latency quantiles count those and the queries still open at its end (answered in the
//! drain, or lost: infinitely slow), so a query stuck across the window is not left out.
//! A query not answered within 5 s is lost; an answer twice, a wrong value, an answer at
//! the wrong reply address or any unexpected byte is an error.
//!
//! The generator is one single-threaded `mio` loop over non-blocking sockets.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpListener as StdListener, TcpStream as StdStream};
use std::ops::Range;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use tp3kv::protocol::{decode, Frame, Text};

use crate::hostile::{Hostile, HostileSummary};
use crate::procs::{own_cpu_time, share, Process};

/// A query not answered within this long is counted lost (and its client moves on).
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// After a level, how long we wait for the answers still owed.
const DRAIN: Duration = Duration::from_secs(5);
/// Longest poll wait, so timeouts and the level's end are noticed promptly.
const TICK: Duration = Duration::from_millis(20);
/// Longest poll wait while the hostile address is asking, so its stream stays steady.
const HOSTILE_TICK: Duration = Duration::from_millis(2);

/// Virtual clients are `Token(index)`, their reply listeners `Token(LISTENER_BASE +
/// index)`, reply connections `Token(REPLY_BASE + n)`.
const LISTENER_BASE: usize = 1 << 40;
const REPLY_BASE: usize = 1 << 41;

/// How long a level warms up, then is measured.
pub struct Timing {
    pub warmup: Duration,
    pub secs: Duration,
}

/// The parts of a level.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Nothing counts but correctness.
    WarmUp,
    /// Answers count towards answers/s and latency, losses towards latency.
    Window,
    /// No new queries; the answers to those still open count towards latency.
    Drain,
}

/// How a virtual client reads its reply connections.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// Reads exactly one RESP, then closes: the answer is whole with its RESP.
    Close,
    /// Reads until end of stream, then closes: the answer is whole at end of stream.
    Eof,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Close => "close",
            Kind::Eof => "eof",
        })
    }
}

pub const KINDS: [Kind; 2] = [Kind::Close, Kind::Eof];

/// The keys the clients ask for, and the value each must come back with.
#[derive(Clone)]
pub struct KeySet {
    keys: Vec<Text>,
    values: Vec<Vec<u8>>,
}

impl KeySet {
    pub fn new(count: usize) -> KeySet {
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

    /// The keys in turn, from the first again after the last.
    pub fn nth(&self, n: usize) -> Text {
        self.keys[n % self.keys.len()].clone()
    }

    pub fn kv_file(&self) -> String {
        let mut text = String::from("# load-test keys\n");
        for (key, value) in self.keys.iter().zip(&self.values) {
            text.push_str(&format!("{key} {}\n", String::from_utf8_lossy(value)));
        }
        text
    }
}

/// Asks `entry` for a key until the right answer comes back: the servent(s) are up and
/// linked. A sanity check of the whole path before any load.
pub fn probe(entry: SocketAddrV4, keys: &KeySet, within: Duration) -> Result<(), String> {
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

/// A virtual client: its reply listener, its connection to the servent and its one
/// outstanding query.
struct VClient {
    kind: Kind,
    /// `None` once closed (its level is over).
    listener: Option<TcpListener>,
    /// `None` once closed (its level is over, or the servent closed it).
    stream: Option<TcpStream>,
    outbuf: Vec<u8>,
    /// The `n` of the next query (its seq is `index << n_bits | n`).
    next_n: u32,
    pending: Option<Pending>,
    /// Queries given up on (lost); an answer for one of them is late, not a duplicate.
    gave_up: HashSet<u32>,
}

/// A reply connection the servent opened to a client, until its answer is whole.
struct Reply {
    stream: TcpStream,
    from: SocketAddr,
    /// The client whose reply listener accepted it.
    client: usize,
    kind: Kind,
    buf: Vec<u8>,
    /// `eof` clients: the RESP read, held until end of stream.
    resp: Option<Frame>,
}

/// What happened during one level (warm-up, measurement and drain).
#[derive(Default)]
struct Tally {
    sent: u64,
    /// Right answers whole in the measured window.
    answered_in_window: u64,
    /// Latency of each right answer whole in the measured window or the drain after it
    /// (to a query open at the window's end), in microseconds.
    latencies_us: Vec<u64>,
    lost: u64,
    /// Queries counted lost in the window or the drain: infinitely slow, in quantiles.
    lost_measured: u64,
    /// Answers to queries already counted lost.
    late: u64,
    duplicates: u64,
    wrong_values: u64,
    /// Answers that came to another client's reply address than the one that asked.
    misdirected: u64,
    /// A RESP whose seq we never sent, a frame that is not a RESP, or bytes after it.
    unexpected: u64,
    /// Reply connections that closed or broke before their answer was whole.
    broken_replies: u64,
    accept_errors: u64,
    /// Client connections the servent closed, or that failed.
    client_links_lost: u64,
    from_servent_port: u64,
    from_other_port: u64,
}

/// The load generator: virtual clients with their reply listeners, one `mio` loop.
pub struct Generator {
    poll: Poll,
    events: Option<Events>,
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
    /// Where the level is: what an answer or a loss counts towards.
    phase: Phase,
    hostile: Option<Hostile>,
    tally: Tally,
    rng: u64,
    read_buf: Box<[u8]>,
}

impl Generator {
    pub fn new(
        entry: SocketAddrV4,
        answer_port: u16,
        keys: KeySet,
        total_clients: usize,
    ) -> Result<Generator, String> {
        let poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
        // Enough high bits to tell every client of the run apart; the rest count queries.
        let index_bits = usize::BITS - total_clients.saturating_sub(1).leading_zeros();
        Ok(Generator {
            poll,
            events: Some(Events::with_capacity(1024)),
            entry,
            answer_port,
            keys,
            clients: Vec::new(),
            active: 0..0,
            replies: HashMap::new(),
            next_reply: REPLY_BASE,
            n_bits: 32 - index_bits,
            sending: false,
            phase: Phase::WarmUp,
            hostile: None,
            tally: Tally::default(),
            rng: 0x9E37_79B9_7F4A_7C15,
            read_buf: vec![0; 4096].into_boxed_slice(),
        })
    }

    /// Runs one level of `clients` virtual clients of `kind`: warm-up, measurement,
    /// drain; with `hostile`, a hostile reply address asking at that rate until the
    /// measurement ends.
    pub fn run_level(
        &mut self,
        clients: usize,
        kind: Kind,
        timing: &Timing,
        servents: &[&Process],
        hostile: Option<f64>,
    ) -> Result<LevelReport, String> {
        self.tally = Tally::default();
        self.phase = Phase::WarmUp;
        let first = self.clients.len();
        for _ in 0..clients {
            self.add_client(kind)?;
        }
        self.active = first..first + clients;
        if let Some(rate) = hostile {
            let until = Instant::now() + timing.warmup + timing.secs;
            self.hostile = Some(Hostile::start(self.entry, rate, until)?);
        }
        self.sending = true;
        for index in self.active.clone() {
            self.send_next(index);
        }
        self.run_until(Instant::now() + timing.warmup)?;

        self.tally.latencies_us.clear();
        self.tally.lost_measured = 0;
        let servent_cpu0: Vec<Duration> = servents.iter().map(|s| s.cpu_time()).collect();
        let own_cpu0 = own_cpu_time();
        let start = Instant::now();
        self.phase = Phase::Window;
        if let Some(hostile) = self.hostile.as_mut() {
            hostile.until = start + timing.secs;
        }
        self.run_until(start + timing.secs)?;
        self.phase = Phase::Drain;
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
            client.stream = None;
            client.listener = None;
            if let Some(pending) = client.pending.take() {
                client.gave_up.insert(pending.n);
                self.count_lost();
            }
        }
        let hostile = self.hostile.take().map(|h| h.summary());
        let mut tally = std::mem::take(&mut self.tally);
        tally.latencies_us.sort_unstable();
        Ok(LevelReport {
            clients,
            kind,
            elapsed,
            tally,
            servent_cpu,
            own_cpu,
            hostile,
        })
    }

    fn active_pending(&self) -> usize {
        self.clients[self.active.clone()]
            .iter()
            .filter(|c| c.pending.is_some())
            .count()
    }

    /// Opens a new virtual client's reply listener, connects it to the servent and
    /// introduces it with its ID.
    fn add_client(&mut self, kind: Kind) -> Result<(), String> {
        let index = self.clients.len();
        let fail = |what: &'static str| move |e: io::Error| format!("client {what}: {e}");
        let std_listener = StdListener::bind("127.0.0.1:0").map_err(fail("reply listener"))?;
        std_listener
            .set_nonblocking(true)
            .map_err(fail("reply listener"))?;
        let mut listener = TcpListener::from_std(std_listener);
        let reply_port = listener
            .local_addr()
            .map_err(fail("reply listener"))?
            .port();
        self.poll
            .registry()
            .register(
                &mut listener,
                Token(LISTENER_BASE + index),
                Interest::READABLE,
            )
            .map_err(fail("reply listener"))?;
        let std_stream = StdStream::connect(self.entry).map_err(fail("connection"))?;
        std_stream.set_nodelay(true).map_err(fail("connection"))?;
        std_stream
            .set_nonblocking(true)
            .map_err(fail("connection"))?;
        let mut stream = TcpStream::from_std(std_stream);
        self.poll
            .registry()
            .register(
                &mut stream,
                Token(index),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(fail("connection"))?;
        self.clients.push(VClient {
            kind,
            listener: Some(listener),
            stream: Some(stream),
            outbuf: Frame::Id { port: reply_port }.to_bytes(),
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

    /// One poll and everything it reported, then the query timeouts and the hostile
    /// address's turn.
    fn turn(&mut self, mut timeout: Duration) -> Result<(), String> {
        if self.hostile.is_some() {
            timeout = timeout.min(HOSTILE_TICK);
        }
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
                token if token.0 >= REPLY_BASE => self.read_reply(token),
                token if token.0 >= LISTENER_BASE => self.accept_replies(token.0 - LISTENER_BASE),
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
        let now = Instant::now();
        self.expire(now);
        if let Some(hostile) = self.hostile.as_mut() {
            hostile.turn(now, &self.keys);
        }
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

    /// Accepts the reply connections waiting at client `index`'s listener.
    fn accept_replies(&mut self, index: usize) {
        loop {
            let Some(client) = self.clients.get(index) else {
                return;
            };
            let Some(listener) = client.listener.as_ref() else {
                return;
            };
            let kind = client.kind;
            match listener.accept() {
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
                            client: index,
                            kind,
                            buf: Vec::new(),
                            resp: None,
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

    /// Reads a reply connection until its answer is whole, then closes it (dropping a
    /// `mio` stream closes the descriptor, which also takes it out of the epoll set):
    /// for a `close` client when its RESP is whole, for an `eof` client at end of stream.
    fn read_reply(&mut self, token: Token) {
        loop {
            let Some(reply) = self.replies.get_mut(&token) else {
                return;
            };
            match reply.stream.read(&mut self.read_buf) {
                Ok(0) => {
                    let reply = self.replies.remove(&token).unwrap();
                    match reply.resp {
                        // An `eof` client's answer is whole now.
                        Some(frame) => self.answer(frame, reply.from, reply.client),
                        None => self.tally.broken_replies += 1,
                    }
                    return;
                }
                Ok(_) if reply.resp.is_some() => {
                    // Bytes after the RESP.
                    self.replies.remove(&token);
                    self.tally.unexpected += 1;
                    return;
                }
                Ok(n) => {
                    reply.buf.extend_from_slice(&self.read_buf[..n]);
                    match decode(&reply.buf) {
                        Ok(None) => {}
                        Ok(Some((_, used))) if used < reply.buf.len() => {
                            // Bytes after the RESP.
                            self.replies.remove(&token);
                            self.tally.unexpected += 1;
                            return;
                        }
                        Ok(Some((frame, _))) if reply.kind == Kind::Eof => {
                            // Whole at end of stream: read on.
                            reply.resp = Some(frame);
                        }
                        Ok(Some((frame, _))) => {
                            let reply = self.replies.remove(&token).unwrap();
                            drop(reply.stream);
                            return self.answer(frame, reply.from, reply.client);
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

    /// Matches an answer, whole, that came to client `at`'s reply listener to its query;
    /// the client then sends its next one.
    fn answer(&mut self, frame: Frame, from: SocketAddr, at: usize) {
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
        if index != at {
            self.tally.misdirected += 1;
        }
        match &client.pending {
            Some(pending) if pending.n == n => {
                if value.as_bytes() != self.keys.values[pending.key] {
                    self.tally.wrong_values += 1;
                }
                if self.phase != Phase::WarmUp {
                    let latency = received.duration_since(pending.sent);
                    self.tally.latencies_us.push(latency.as_micros() as u64);
                }
                if self.phase == Phase::Window {
                    self.tally.answered_in_window += 1;
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

    /// Counts a query lost; in the window or the drain, it is an infinite latency.
    fn count_lost(&mut self) {
        self.tally.lost += 1;
        if self.phase != Phase::WarmUp {
            self.tally.lost_measured += 1;
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
            self.count_lost();
            if self.sending && self.clients[index].stream.is_some() {
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
pub struct LevelReport {
    clients: usize,
    kind: Kind,
    elapsed: Duration,
    tally: Tally,
    /// CPU used in the measured window, per servent, as a share of one core.
    servent_cpu: Vec<f64>,
    own_cpu: f64,
    pub hostile: Option<HostileSummary>,
}

impl LevelReport {
    /// Queries lost, and answers that came after their query was counted lost.
    pub fn lost_and_late(&self) -> (u64, u64) {
        (self.tally.lost, self.tally.late)
    }

    fn errors(&self) -> u64 {
        let t = &self.tally;
        t.wrong_values
            + t.misdirected
            + t.unexpected
            + t.broken_replies
            + t.accept_errors
            + t.client_links_lost
            + t.late
    }

    /// Right answers per second in the measured window.
    pub fn rate(&self) -> f64 {
        self.tally.answered_in_window as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile of latency, in milliseconds (`None` without answers or losses):
    /// infinite if it falls among the queries lost.
    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        let sorted = &self.tally.latencies_us;
        let count = sorted.len() + self.tally.lost_measured as usize;
        if count == 0 {
            return None;
        }
        let at = ((count as f64 * q).ceil() as usize).clamp(1, count) - 1;
        Some(
            sorted
                .get(at)
                .map_or(f64::INFINITY, |&us| us as f64 / 1000.0),
        )
    }

    pub fn print_header(cpu_label: &str) {
        println!(
            "{:>9} {:>7} {:>5} {:>10} {:>8} {:>8} {:>8} {:>5} {:>4} {:>6} {:>9} {:>13} {:>9}",
            "",
            "clients",
            "kind",
            "answers/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "lost",
            "dup",
            "errors",
            "from port",
            cpu_label,
            "CPU load"
        );
    }

    pub fn print_row(&self, label: &str) {
        let t = &self.tally;
        let ms = |q: f64| match self.latency_ms(q) {
            None => "-".to_string(),
            Some(ms) if ms.is_infinite() => "lost".to_string(),
            Some(ms) => format!("{ms:.3}"),
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
            "{:>9} {:>7} {:>5} {:>10.0} {:>8} {:>8} {:>8} {:>5} {:>4} {:>6} {:>9} {:>13} {:>8.0}%",
            label,
            self.clients,
            self.kind.to_string(),
            self.rate(),
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
    pub fn problems(&self) -> Vec<String> {
        let t = &self.tally;
        let mut problems = self.problems_but_losses();
        for (count, what) in [
            (t.lost, "queries lost (no answer within 5 s)"),
            (t.late, "answers after their query was counted lost"),
        ] {
            if count > 0 {
                problems.push(format!("{}: {count} {what}", self.who()));
            }
        }
        problems
    }

    /// What went wrong, but for queries lost and answers late.
    pub fn problems_but_losses(&self) -> Vec<String> {
        let t = &self.tally;
        [
            (t.duplicates, "duplicate answers"),
            (t.wrong_values, "answers with a wrong value"),
            (
                t.misdirected,
                "answers at another client's reply address than the one that asked",
            ),
            (t.unexpected, "unexpected frames or bytes"),
            (
                t.broken_replies,
                "reply connections closed or broken before their answer was whole",
            ),
            (t.accept_errors, "reply connections we failed to accept"),
            (
                t.client_links_lost,
                "client connections the servent dropped",
            ),
        ]
        .into_iter()
        .filter(|(count, _)| *count > 0)
        .map(|(count, what)| format!("{}: {count} {what}", self.who()))
        .collect()
    }

    fn who(&self) -> String {
        format!("{} {} clients", self.clients, self.kind)
    }
}
