//! The servent's network driver: one single-threaded `mio` loop over the listener,
//! neighbour links, client connections and outgoing answer connections.
//!
//! The loop never blocks: connects are non-blocking and confirmed on writability,
//! every connection buffers its output up to a cap, and timers (neighbour re-dials,
//! answer and ID deadlines) set the poll timeout. All protocol decisions are the
//! [`Servent`]'s; this module only moves bytes, turns its [`Action`]s into socket
//! operations, and defends the process: connection caps, descriptor exhaustion, slow
//! readers, unreachable reply addresses, and one peer hogging the loop.
//!
//! This file holds the loop, the dispatch of events, and the links (read, decode,
//! outbox, flush, close). Beside it: [`answers`] (every RESP on a connection of its
//! own: the scheduler, and each delivery), `dial` (outbound neighbours), `tracing`
//! (`--trace` events), [`budget`] (descriptors), [`sys`] (socket options, rlimits,
//! signals).

pub mod answers;
pub mod budget;
mod dial;
pub mod sys;
mod tracing;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, SocketAddrV4};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn, Level};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream, UnixStream};
use mio::{Events, Interest, Poll, Token};

use crate::hashing::IdMap;
use crate::protocol::{self, DecodeError, Frame, KeyFloodRef};
use crate::servent::{Action, Direction, LinkId, QueryId, Role, Servent};
use crate::throttle::Throttle;
use crate::trace::{Event as TraceEvent, EventKind, FrameFields, Tracer};
use answers::scheduler::Limits;
use answers::{AnswerOptions, Answers};

pub use sys::{listen, raise_fd_limit, resolve_v4, BindError};

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(usize::MAX);
const COUNTER_SIGNALS: Token = Token(usize::MAX - 1);

/// Reads one readiness event may do before the loop serves the others.
const READS_PER_TURN: usize = 16;
/// An outbox this full is written at once rather than at the end of the turn, so one
/// turn's reading cannot pile up more than this (times the fan-out) unwritten.
const FLUSH_AT: usize = 64 * 1024;
/// Frames delimited ahead of handling, so the seen set's cache misses overlap.
const BATCH: usize = 16;
/// While log lines are held back by a throttle, the loop wakes this often to count
/// them in the log (see `throttle`).
const LOG_TICK: Duration = Duration::from_millis(250);
/// An outbox emptied with more room than this gives its memory back, so what peers
/// once left unread does not stay resident. A busy link's outbox grows to `FLUSH_AT`
/// and a frame, which a doubling `Vec` holds in twice `FLUSH_AT`: that much is kept,
/// or every busy turn would allocate it anew.
const KEEP_CAPACITY: usize = 2 * FLUSH_AT;

/// Limits and timings of the driver. Each has a `servent` flag.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long an answer connection may take to connect and deliver its RESP.
    pub answer_timeout: Duration,
    /// Answer connections open at once; more wait in a queue (see [`answers`]).
    pub max_answers: usize,
    /// Answer connections open at once to one reply address.
    pub answers_per_address: usize,
    /// Answers waiting for their turn; past this the address with the most waiting
    /// loses its oldest (logged).
    pub answer_queue: usize,
    /// How long an answer may wait for its turn before it is given up.
    pub answer_max_wait: Duration,
    /// Output a peer may leave unread before its connection is dropped.
    pub outbox_limit: usize,
    /// Output all peers together may leave unread; past it, the peer with the most
    /// is dropped.
    pub max_buffered: usize,
    /// How long a peer's output may wait without any of it being taken before the
    /// peer is dropped.
    pub stall_timeout: Duration,
    /// Accepted connections open at once; past this, new ones are closed at once.
    pub max_connections: usize,
    /// How long an accepted connection may take to send its ID.
    pub id_timeout: Duration,
    /// First delay before re-dialling a neighbour; doubles up to `redial_max`.
    pub redial_min: Duration,
    pub redial_max: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            answer_timeout: Duration::from_secs(2),
            max_answers: 256,
            answers_per_address: 4,
            answer_queue: 16 * 1024,
            // A client waits 4 s after its command or its last answer.
            answer_max_wait: Duration::from_secs(4),
            outbox_limit: 1 << 20,
            max_buffered: 64 << 20,
            stall_timeout: Duration::from_secs(30),
            max_connections: 4096,
            id_timeout: Duration::from_secs(5),
            redial_min: Duration::from_millis(100),
            redial_max: Duration::from_secs(5),
        }
    }
}

/// What the driver did, beyond the servent's own counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Flood copies sent to neighbours, by type.
    pub keyfloods_out: u64,
    pub topofloods_out: u64,
    /// RESPs fully written, and answers given up.
    pub answers_sent: u64,
    pub answers_lost: u64,
    pub connections_accepted: u64,
    pub connections_refused: u64,
    /// Peers dropped for not reading: over their own outbox limit, over the budget of
    /// all outboxes, or stalled.
    pub slow_peers_dropped: u64,
    /// Of those, dropped as the largest backlog when all outboxes passed the budget.
    pub over_budget_dropped: u64,
    /// Of those, dropped because their output did not move for the stall timeout.
    pub stalled_dropped: u64,
}

/// A neighbour named on the command line, which we keep connected.
#[derive(Debug)]
struct Neighbour {
    addr: SocketAddrV4,
    /// The connection dialling or linked to it, if any.
    conn: Option<Token>,
    backoff: Duration,
    /// Since when it has been unreachable, once that was said in a warning: one
    /// warning per outage, and the link that ends it says so.
    unreachable_since: Option<Instant>,
    /// When its current link came up: the back-off starts again from `redial_min` only
    /// after a link that lasted (`dial::LASTING_LINK`), so a neighbour that accepts and
    /// closes at once is re-dialled (and logged) ever more slowly, not ten times a
    /// second.
    linked_at: Option<Instant>,
    /// Whether its last link lasted less than `dial::LASTING_LINK` (it hangs up, or is
    /// not a servent): its next link coming up is a debug line, not one a re-dial.
    flapping: bool,
}

#[derive(Debug)]
enum Kind {
    /// A protocol link (neighbour or client); its frames go to the servent.
    Link {
        neighbour: Option<usize>,
        inbound: bool,
    },
    /// A connect to a neighbour in progress.
    Dialling { neighbour: usize },
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    kind: Kind,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    /// Whether it is in `Driver::to_flush`.
    flush_queued: bool,
    /// When this connection's current wait (for ID, or connect) ends.
    deadline: Option<Instant>,
    /// Since when output has been waiting with none of it taken by the peer.
    stalled_since: Option<Instant>,
    /// Whether a `Timer::Stall` is pending for it (one at most, however often its
    /// output stalls and moves).
    stall_timer: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Redial(usize),
    Deadline(Token),
    /// Whether a link's output has moved since it stalled.
    Stall(Token),
}

impl Stats {
    /// Frames sent to neighbours: every flood copy.
    pub fn frames_out(&self) -> u64 {
        self.keyfloods_out + self.topofloods_out
    }
}

/// How far [`Driver::read_link`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// Until the socket says `WouldBlock`: after an event that reported the peer's
    /// close (no later edge would come for it), and for links served again next turn.
    UntilWouldBlock,
    /// Until a read returns less than asked: the socket was empty then, and anything
    /// that arrives later raises a new edge-triggered event. Saves the read that would
    /// only say `WouldBlock`, one syscall per frame batch, a quarter of a hop's.
    UntilShortRead,
}

/// Everything one servent process runs.
pub struct Driver {
    poll: Poll,
    listener: TcpListener,
    servent: Servent,
    options: Options,
    conns: IdMap<Token, Conn>,
    tokens: Tokens,
    neighbours: Vec<Neighbour>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    inbound: usize,
    answers: Answers,
    /// Links that stopped reading with data left, to be served again next turn.
    still_readable: Vec<Token>,
    /// A descriptor held in reserve: when accept fails for lack of descriptors, it is
    /// freed to accept and close the waiting connection, so the listener never stalls.
    spare_fd: Option<std::fs::File>,
    signals: Option<UnixStream>,
    counter_signals: Option<UnixStream>,
    stop: bool,
    read_buf: Box<[u8]>,
    /// One flood encoded once, then copied into each neighbour's outbox.
    frame_buf: Vec<u8>,
    flood_targets: Vec<LinkId>,
    /// Connections closed so far: a loop can tell whether its link may be gone.
    closes: u64,
    /// The `except` and neighbour-list version `flood_targets` was made for.
    flood_targets_for: Option<(Option<LinkId>, u64)>,
    /// Links with frames added to their outbox this turn, written at its end.
    to_flush: Vec<Token>,
    /// Bytes held by all outboxes (their capacity: what is resident).
    buffered: usize,
    stats: Stats,
    refused_log: Throttle,
    /// Links closed for a reason (a peer can make them repeat at will).
    close_log: Throttle,
    /// `Some` while `--trace` is on.
    tracer: Option<Tracer>,
}

fn link_of(token: Token) -> LinkId {
    token.0 as LinkId
}

fn spare_fd() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

impl Driver {
    pub fn new(
        listener: TcpListener,
        servent: Servent,
        neighbours: Vec<SocketAddrV4>,
        options: Options,
    ) -> io::Result<Driver> {
        let poll = Poll::new()?;
        let mut listener = listener;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let listen_port = listener.local_addr()?.port();
        let answers = Answers::new(
            AnswerOptions {
                limits: Limits {
                    max_open: options.max_answers,
                    per_address: options.answers_per_address,
                    max_waiting: options.answer_queue,
                    max_wait: options.answer_max_wait,
                },
                timeout: options.answer_timeout,
            },
            listen_port,
        );
        let neighbours = neighbours
            .into_iter()
            .map(|addr| Neighbour {
                addr,
                conn: None,
                backoff: options.redial_min,
                unreachable_since: None,
                linked_at: None,
                flapping: false,
            })
            .collect();
        Ok(Driver {
            poll,
            listener,
            servent,
            options,
            conns: HashMap::default(),
            tokens: Tokens(1),
            neighbours,
            timers: BinaryHeap::new(),
            inbound: 0,
            answers,
            still_readable: Vec::new(),
            spare_fd: spare_fd(),
            signals: None,
            counter_signals: None,
            stop: false,
            read_buf: vec![0; 64 * 1024].into_boxed_slice(),
            frame_buf: Vec::with_capacity(protocol::MAX_FRAME),
            flood_targets: Vec::new(),
            flood_targets_for: None,
            closes: 0,
            to_flush: Vec::new(),
            buffered: 0,
            stats: Stats::default(),
            refused_log: Throttle::new(Level::Warn, "connections refused"),
            close_log: Throttle::new(Level::Info, "connections closed"),
            tracer: None,
        })
    }

    /// Writes a trace event for every frame received, sent, answered or dropped.
    pub fn trace_to(&mut self, tracer: Tracer) {
        self.servent.report_verdicts();
        self.answers.trace();
        self.tracer = Some(tracer);
    }

    /// Makes `run` return when one of `signals` arrives.
    pub fn stop_on(&mut self, signals: &[i32]) -> io::Result<()> {
        self.signals = Some(self.signal_pipe(signals, SIGNALS)?);
        Ok(())
    }

    /// Logs [`Driver::counters`] (at info level) whenever one of `signals` arrives:
    /// `kill -USR1 <pid>` asks a running servent how it is doing.
    pub fn counters_on(&mut self, signals: &[i32]) -> io::Result<()> {
        self.counter_signals = Some(self.signal_pipe(signals, COUNTER_SIGNALS)?);
        Ok(())
    }

    /// A pipe that becomes readable (as `token`) when one of `signals` arrives. A
    /// signal this process was started with ignored stays ignored, as shells expect of
    /// background jobs.
    fn signal_pipe(&self, signals: &[i32], token: Token) -> io::Result<UnixStream> {
        let (reader, writer) = StdUnixStream::pair()?;
        reader.set_nonblocking(true)?;
        for &signal in signals {
            if !sys::is_ignored(signal)? {
                signal_hook::low_level::pipe::register(signal, writer.try_clone()?)?;
            }
        }
        let mut reader = UnixStream::from_std(reader);
        self.poll
            .registry()
            .register(&mut reader, token, Interest::READABLE)?;
        Ok(reader)
    }

    /// Everything counted so far, on one line: frames in by type and out by type,
    /// answers, drops by reason, connections.
    pub fn counters(&self) -> String {
        let c = self.servent.counters();
        let s = self.stats();
        let links = self
            .conns
            .values()
            .filter(|conn| matches!(conn.kind, Kind::Link { .. }))
            .count();
        format!(
            "in {}; out KEYFLOOD {}, TOPOFLOOD {}, RESP {} (lost {}, waiting {}); \
             dropped: duplicate {}, TTL spent {} (TTL above 3: {}), protocol error {}, \
             slow peer {} (over the buffer budget: {}, stalled: {}); \
             connections: accepted {} (refused {}), links open {}, answers open {}{}",
            c.received,
            s.keyfloods_out,
            s.topofloods_out,
            s.answers_sent,
            s.answers_lost,
            self.answers.waiting(),
            c.duplicates,
            c.ttl_spent,
            c.ttl_above_max,
            c.protocol_errors,
            s.slow_peers_dropped,
            s.over_budget_dropped,
            s.stalled_dropped,
            s.connections_accepted,
            s.connections_refused,
            links,
            self.answers.open(),
            self.full_reach_count(),
        )
    }

    pub fn servent(&self) -> &Servent {
        &self.servent
    }

    pub fn stats(&self) -> Stats {
        Stats {
            answers_sent: self.answers.sent(),
            answers_lost: self.answers.lost(),
            ..self.stats
        }
    }

    /// One line of counters, for the exit summary.
    pub fn summary(&self) -> String {
        let c = self.servent.counters();
        let s = self.stats();
        format!(
            "frames in {}, frames out {}, answers sent {} (lost {}), duplicates dropped {}, \
             protocol errors {}, connections accepted {} (refused {}), slow peers dropped {}{}",
            c.frames_in,
            s.frames_out(),
            s.answers_sent,
            s.answers_lost,
            c.duplicates,
            c.protocol_errors,
            s.connections_accepted,
            s.connections_refused,
            s.slow_peers_dropped,
            self.full_reach_count(),
        )
    }

    /// `, forwarded again N` under `--full-reach`, for the counter lines; else nothing.
    fn full_reach_count(&self) -> String {
        if self.servent.full_reach() {
            format!(", forwarded again {}", self.servent.counters().reforwarded)
        } else {
            String::new()
        }
    }

    /// Runs the loop until a signal registered with [`Driver::stop_on`] arrives, or
    /// `poll` itself fails.
    pub fn run(&mut self) -> io::Result<()> {
        for index in 0..self.neighbours.len() {
            self.dial(index);
        }
        let mut events = Events::with_capacity(1024);
        while !self.stop {
            let timeout = if self.still_readable.is_empty() {
                let timer = self.timers.peek().map(|Reverse((at, _))| *at);
                // Lines held back by a log throttle are counted in the log soon.
                let logs = self.logs_held_back().then(|| Instant::now() + LOG_TICK);
                [timer, self.answers.next_deadline(), logs]
                    .into_iter()
                    .flatten()
                    .min()
                    .map(|at| at.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            for event in events.iter() {
                self.dispatch(event, now);
            }
            for token in std::mem::take(&mut self.still_readable) {
                self.read_link(token, Drain::UntilWouldBlock);
            }
            let now = Instant::now();
            self.fire_timers(now);
            self.answers.handle_timeout(now);
            if self.logs_held_back() {
                self.tick_logs(now);
            }
            // Answers queued this turn, and slots freed, open now: the addresses take
            // their turns.
            self.answers
                .open_ready(self.poll.registry(), &mut self.tokens, now);
            // Last, so nothing added to an outbox this turn waits through the next poll.
            self.flush_queued();
            if self.buffered > self.options.max_buffered {
                self.shed_largest_backlogs();
            }
            if self.tracer.is_some() {
                for event in self.answers.take_events() {
                    self.record(event);
                }
            }
            self.flush_trace();
        }
        self.flush_trace();
        // Dropping them closes them (see `close`).
        self.conns.clear();
        Ok(())
    }

    /// Whether some log lines a peer made repeat were held back (see `throttle`).
    fn logs_held_back(&mut self) -> bool {
        self.refused_log.holds_back()
            || self.close_log.holds_back()
            || self.answers.logs_held_back()
            || self.servent.logs_held_back()
    }

    /// Logs how many lines each throttle held back, where that is due.
    #[cold]
    fn tick_logs(&mut self, now: Instant) {
        self.refused_log.tick(now);
        self.close_log.tick(now);
        self.answers.tick_logs(now);
        self.servent.tick_logs(now);
    }

    /// Gives a new connection a fresh token and registers it for both readiness kinds
    /// (edge-triggered, so a writable edge is never missed while output is queued).
    fn register(
        &mut self,
        mut stream: TcpStream,
        kind: Kind,
        outbuf: Vec<u8>,
    ) -> io::Result<Token> {
        let token = self.tokens.fresh();
        self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let conn = Conn {
            stream,
            kind,
            inbuf: Vec::new(),
            outbuf,
            flush_queued: false,
            deadline: None,
            stalled_since: None,
            stall_timer: false,
        };
        self.conns.insert(token, conn);
        Ok(token)
    }

    fn set_deadline(&mut self, token: Token, at: Instant) {
        if let Some(conn) = self.conns.get_mut(&token) {
            conn.deadline = Some(at);
            self.timers.push(Reverse((at, Timer::Deadline(token))));
        }
    }

    fn dispatch(&mut self, event: &Event, now: Instant) {
        let token = event.token();
        match token {
            LISTENER => return self.accept_all(),
            SIGNALS => {
                info!("signal received: shutting down");
                self.stop = true;
                return;
            }
            COUNTER_SIGNALS => {
                if let Some(pipe) = self.counter_signals.as_mut() {
                    // One byte per signal; several may have come since the last event.
                    while matches!(pipe.read(&mut [0u8; 64]), Ok(n) if n > 0) {}
                }
                info!("counters: {}", self.counters());
                return;
            }
            _ => {}
        }
        let Some(conn) = self.conns.get(&token) else {
            // An answer connection's, or a stale event of a connection already closed.
            let readable = event.is_readable() || event.is_read_closed() || event.is_error();
            return self.answers.handle_event(token, readable, now);
        };
        match conn.kind {
            Kind::Link { .. } => {
                if event.is_writable() {
                    self.flush(token);
                }
                if event.is_read_closed() || event.is_error() {
                    self.read_link(token, Drain::UntilWouldBlock);
                } else if event.is_readable() {
                    self.read_link(token, Drain::UntilShortRead);
                }
            }
            Kind::Dialling { neighbour } => self.finish_dial(token, neighbour),
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    if self.inbound >= self.options.max_connections {
                        self.stats.connections_refused += 1;
                        let limit = self.options.max_connections;
                        self.refused_log.log(
                            Instant::now(),
                            format_args!("connection from {peer} refused: {limit} connections open, the limit"),
                        );
                        drop(stream);
                        continue;
                    }
                    self.stats.connections_accepted += 1;
                    if let Some(token) = self.add_link(stream, peer, Direction::Inbound, None) {
                        self.set_deadline(token, Instant::now() + self.options.id_timeout);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if answers::is_out_of_descriptors(&e) => {
                    // Make room with the spare descriptor, take the waiting connection
                    // off the queue and close it; otherwise the listener stays readable
                    // forever and the loop spins.
                    self.stats.connections_refused += 1;
                    self.spare_fd = None;
                    let taken = self.listener.accept();
                    self.spare_fd = spare_fd();
                    self.refused_log.log(
                        Instant::now(),
                        format_args!("out of file descriptors ({e}): connection refused"),
                    );
                    if taken.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    error!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn add_link(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        direction: Direction,
        neighbour: Option<usize>,
    ) -> Option<Token> {
        let peer = sys::unmap(peer);
        let local = match stream.local_addr() {
            Ok(local) => sys::unmap(local),
            Err(e) => {
                warn!("connection with {peer} dropped: {e}");
                return None;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            debug!("TCP_NODELAY on {peer}: {e}");
        }
        let inbound = direction == Direction::Inbound;
        let kind = Kind::Link { neighbour, inbound };
        let token = match self.register(stream, kind, Vec::new()) {
            Ok(token) => token,
            Err(e) => {
                warn!("connection with {peer} dropped: cannot register: {e}");
                return None;
            }
        };
        if inbound {
            self.inbound += 1;
        }
        self.servent
            .handle_link_up(link_of(token), direction, local, peer);
        if direction == Direction::Outbound {
            let id = Frame::Id { port: 0 };
            let outbuf = &mut self.conns.get_mut(&token)?.outbuf;
            let before = outbuf.capacity();
            id.encode(outbuf);
            self.buffered += outbuf.capacity() - before;
            if self.tracer.is_some() {
                let event = TraceEvent {
                    frame: Some(FrameFields::of(&id)),
                    ..TraceEvent::new(EventKind::Sent).on(local, peer)
                };
                self.record(event);
            }
            self.flush(token);
        }
        self.conns.contains_key(&token).then_some(token)
    }

    /// Reads a link, handing each whole frame to the servent, until the socket is
    /// drained or this turn's share is used (then it is served again next turn).
    fn read_link(&mut self, token: Token, drain: Drain) {
        for _ in 0..READS_PER_TURN {
            let Some(conn) = self.conns.get_mut(&token) else {
                return;
            };
            match conn.stream.read(&mut self.read_buf) {
                Ok(0) => {
                    let reason = if conn.inbuf.is_empty() {
                        "closed by peer".to_string()
                    } else {
                        format!(
                            "closed by peer in the middle of a frame ({} bytes)",
                            conn.inbuf.len()
                        )
                    };
                    return self.close(token, &reason);
                }
                Ok(n) => {
                    if !self.take_bytes(token, n) {
                        return;
                    }
                    if drain == Drain::UntilShortRead && n < self.read_buf.len() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.close(token, &format!("read error: {e}")),
            }
        }
        self.still_readable.push(token);
    }

    /// Hands the whole frames among the `n` bytes just read into `read_buf` to the
    /// servent. Usually no partial frame was left from the last read, and they are
    /// decoded where they lie; only a frame cut by the end of a read is copied, into the
    /// link's `inbuf`. Returns false if the link was closed.
    fn take_bytes(&mut self, token: Token, n: usize) -> bool {
        let Some(conn) = self.conns.get_mut(&token) else {
            return false;
        };
        if conn.inbuf.is_empty() {
            let bytes = std::mem::take(&mut self.read_buf);
            let used = self.decode_frames(token, &bytes[..n]);
            let open = match (used, self.conns.get_mut(&token)) {
                (Some(used), Some(conn)) => {
                    conn.inbuf.extend_from_slice(&bytes[used..n]);
                    true
                }
                _ => false,
            };
            self.read_buf = bytes;
            open
        } else {
            conn.inbuf.extend_from_slice(&self.read_buf[..n]);
            let mut input = std::mem::take(&mut conn.inbuf);
            let used = self.decode_frames(token, &input);
            match (used, self.conns.get_mut(&token)) {
                (Some(used), Some(conn)) => {
                    input.drain(..used);
                    conn.inbuf = input;
                    true
                }
                _ => false,
            }
        }
    }

    /// Decodes and handles every whole frame in `bytes`. Returns how many bytes they
    /// took, or `None` if the link was closed (a protocol error, or by the servent).
    ///
    /// Frames are delimited from their headers [`BATCH`] at a time, and the seen-set
    /// lookups of the batch's KEYFLOODs are read ahead first ([`Servent::prefetch`]),
    /// so that their cache misses overlap. A KEYFLOOD then takes the fast path: the
    /// servent decides on it where it lies ([`Servent::handle_key_flood`]) and its
    /// bytes are passed on with the new TTL, with no frame built or re-encoded. Every
    /// other frame is decoded and handed to [`Servent::handle_frame`].
    fn decode_frames(&mut self, token: Token, bytes: &[u8]) -> Option<usize> {
        let now = Instant::now();
        let link = link_of(token);
        let mut used = 0;
        loop {
            // (type, end, the KEYFLOOD read in place if it is one) of each whole frame.
            let mut batch: [(u16, usize, Option<KeyFloodRef>); BATCH] = [(0, 0, None); BATCH];
            let mut count = 0;
            let mut end = used;
            let mut error = None;
            while count < BATCH {
                match protocol::frame_extent(&bytes[end..]) {
                    Ok(Some((kind, n))) => {
                        let flood = KeyFloodRef::parse(&bytes[end..end + n]);
                        end += n;
                        batch[count] = (kind, end, flood);
                        count += 1;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            let mut touched = 0;
            for (nth, (_, _, flood)) in batch[..count].iter().enumerate() {
                if let Some(flood) = flood {
                    touched ^= self
                        .servent
                        .prefetch(&QueryId::new(flood.client, flood.seq), nth);
                }
            }
            std::hint::black_box(touched);
            let closes = self.closes;
            for &(kind, end, flood) in &batch[..count] {
                let frame = &bytes[used..end];
                used = end;
                match flood {
                    Some(flood) => {
                        let ttl = self.servent.handle_key_flood(link, flood, now);
                        if self.tracer.is_some() {
                            self.trace_key_flood(link, frame);
                        }
                        self.run_actions();
                        if let Some(ttl) = ttl {
                            self.send_to_neighbours(Some(link), frame, Some(ttl));
                        }
                    }
                    _ => match protocol::decode(frame) {
                        Ok(Some((frame, _))) => self.handle_frame(link, frame, now),
                        // frame_extent has vouched for it; should decode ever disagree,
                        // the stream is treated as corrupt.
                        other => {
                            error = Some(match other {
                                Err(e) => e,
                                _ => DecodeError::UnknownType(kind),
                            });
                            break;
                        }
                    },
                }
                // Only a close can have taken the link away.
                if self.closes != closes && !self.conns.contains_key(&token) {
                    return None;
                }
            }
            if let Some(e) = error {
                self.servent.note_protocol_error();
                let reason = format!("protocol error: {e}");
                self.trace_drop(link, &reason);
                self.close(token, &reason);
                return None;
            }
            if count < BATCH {
                return Some(used);
            }
        }
    }

    /// The general path: any frame but a neighbour's KEYFLOOD. Out of line, so the fast
    /// path's loop stays small.
    #[inline(never)]
    fn handle_frame(&mut self, link: LinkId, frame: Frame, now: Instant) {
        let traced = self.tracer.is_some().then(|| FrameFields::of(&frame));
        self.servent.handle_frame(link, frame, now);
        if let Some(fields) = traced {
            self.trace_handled(link, fields);
        }
        self.run_actions();
    }

    /// Appends one encoded flood to the outbox of every neighbour but `except`,
    /// rewriting its TTL in each copy if `ttl` is given; the outboxes are written at
    /// the end of the turn, or at once past [`FLUSH_AT`].
    fn send_to_neighbours(&mut self, except: Option<LinkId>, frame: &[u8], ttl: Option<u16>) {
        // Sending may drop a neighbour (a write error, a full outbox), which changes the
        // servent's list: walk a copy, kept (and reused while the list and `except`
        // stay the same: floods from one link come in runs) to avoid rebuilding it.
        let mut targets = std::mem::take(&mut self.flood_targets);
        let key = (except, self.servent.neighbours_version());
        if self.flood_targets_for != Some(key) {
            targets.clear();
            targets.extend(
                self.servent
                    .neighbours()
                    .iter()
                    .filter(|&&n| Some(n) != except),
            );
            self.flood_targets_for = Some(key);
        }
        for &target in &targets {
            let token = Token(target as usize);
            let Some(conn) = self.conns.get_mut(&token) else {
                continue;
            };
            let (at, before) = (conn.outbuf.len(), conn.outbuf.capacity());
            conn.outbuf.extend_from_slice(frame);
            let grown = conn.outbuf.capacity() - before;
            if let Some(ttl) = ttl {
                protocol::set_flood_ttl(&mut conn.outbuf[at..], ttl);
            }
            debug!("link {target}: sending {}", Encoded(&conn.outbuf[at..]));
            if frame.get(..2) == Some(&protocol::TYPE_KEYFLOOD.to_be_bytes()[..]) {
                self.stats.keyfloods_out += 1;
            } else {
                self.stats.topofloods_out += 1;
            }
            if conn.outbuf.len() >= FLUSH_AT {
                self.flush(token);
            } else if !conn.flush_queued {
                conn.flush_queued = true;
                self.to_flush.push(token);
            }
            if grown > 0 {
                self.buffered += grown;
                // At once, not at the end of the turn: one turn's reading, copied to
                // every peer that stopped reading, could be many times the budget.
                if self.buffered > self.options.max_buffered {
                    self.shed_largest_backlogs();
                }
            }
        }
        if self.tracer.is_some() {
            self.trace_sent(&targets, frame, ttl);
        }
        self.flood_targets = targets;
    }

    /// Carries out everything the servent has decided.
    fn run_actions(&mut self) {
        while let Some(action) = self.servent.poll_action() {
            match action {
                Action::Flood { except, frame } => {
                    let mut encoded = std::mem::take(&mut self.frame_buf);
                    encoded.clear();
                    frame.encode(&mut encoded);
                    self.send_to_neighbours(except, &encoded, None);
                    self.frame_buf = encoded;
                }
                Action::Answer { to, frame } => {
                    if self.tracer.is_some() {
                        let fields = FrameFields::of(&frame);
                        self.record(TraceEvent {
                            link: Some(to.to_string()),
                            query: fields.answer_query(to),
                            frame: Some(fields),
                            ..TraceEvent::new(EventKind::Answered)
                        });
                    }
                    self.answers.submit(to, frame.to_bytes(), Instant::now())
                }
                Action::Close { link, reason } => {
                    let reason = format!("protocol error: {reason}");
                    self.trace_drop(link, &reason);
                    self.close(Token(link as usize), &reason)
                }
            }
        }
    }

    /// Writes the outboxes that frames were added to this turn: one `write` per link per
    /// turn, however many frames it carries.
    fn flush_queued(&mut self) {
        let mut tokens = std::mem::take(&mut self.to_flush);
        for &token in &tokens {
            if let Some(conn) = self.conns.get_mut(&token) {
                conn.flush_queued = false;
                self.flush(token);
            }
        }
        tokens.clear();
        self.to_flush = tokens;
    }

    /// Writes as much of a connection's outbox as the socket takes; drops a peer whose
    /// unread output passes the cap.
    fn flush(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let mut written = 0;
        let result = loop {
            if written == conn.outbuf.len() {
                break Ok(());
            }
            match conn.stream.write(&conn.outbuf[written..]) {
                Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
        };
        conn.outbuf.drain(..written);
        let pending = conn.outbuf.len();
        if pending == 0 {
            conn.stalled_since = None;
            if conn.outbuf.capacity() > KEEP_CAPACITY {
                self.buffered -= conn.outbuf.capacity();
                conn.outbuf = Vec::new();
            }
        } else if written > 0 || conn.stalled_since.is_none() {
            // Waiting, and either moving or newly stuck: the stall counts from now.
            let now = Instant::now();
            conn.stalled_since = Some(now);
            if !conn.stall_timer {
                conn.stall_timer = true;
                let at = now + self.options.stall_timeout;
                self.timers.push(Reverse((at, Timer::Stall(token))));
            }
        }
        match result {
            Err(e) => self.close(token, &format!("write error: {e}")),
            Ok(()) if pending > self.options.outbox_limit => {
                self.stats.slow_peers_dropped += 1;
                let reason = format!(
                    "peer is not reading: {pending} bytes waiting, over the limit of {}",
                    self.options.outbox_limit
                );
                self.trace_drop(link_of(token), &format!("slow peer: {reason}"));
                self.close(token, &reason)
            }
            Ok(()) => {}
        }
    }

    /// All outboxes together hold more than `--max-buffered`: the peers with the most
    /// waiting are dropped until they fit, however many peers stopped reading.
    #[cold]
    fn shed_largest_backlogs(&mut self) {
        // First the room kept by outboxes that are empty now.
        for conn in self.conns.values_mut() {
            if conn.outbuf.is_empty() && conn.outbuf.capacity() > 0 {
                self.buffered -= conn.outbuf.capacity();
                conn.outbuf = Vec::new();
            }
        }
        while self.buffered > self.options.max_buffered {
            let largest = self
                .conns
                .iter()
                .filter(|(_, conn)| !conn.outbuf.is_empty())
                .max_by_key(|(_, conn)| conn.outbuf.len())
                .map(|(&token, conn)| (token, conn.outbuf.len()));
            let Some((token, pending)) = largest else {
                return;
            };
            self.stats.slow_peers_dropped += 1;
            self.stats.over_budget_dropped += 1;
            let reason = format!(
                "peer is not reading: {pending} bytes waiting, the most of any peer, while \
                 all peers together leave {} unread, over the budget of {} (--max-buffered)",
                self.buffered, self.options.max_buffered
            );
            self.trace_drop(link_of(token), &format!("slow peer: {reason}"));
            self.close(token, &reason);
        }
    }

    /// A link's output stalled a while ago: dropped if none of it has moved since.
    fn check_stall(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        conn.stall_timer = false;
        let Some(since) = conn.stalled_since else {
            return; // all taken since
        };
        let until = since + self.options.stall_timeout;
        if until > now {
            // It moved since, and is waiting again: look again then.
            conn.stall_timer = true;
            self.timers.push(Reverse((until, Timer::Stall(token))));
            return;
        }
        self.stats.slow_peers_dropped += 1;
        self.stats.stalled_dropped += 1;
        let reason = format!(
            "peer is not reading: none of its output taken for {:?} (--stall-timeout)",
            self.options.stall_timeout
        );
        self.trace_drop(link_of(token), &format!("slow peer: {reason}"));
        self.close(token, &reason);
    }

    fn close(&mut self, token: Token, reason: &str) {
        // Dropping the stream closes it, which takes it out of the epoll set: no
        // deregister call (one syscall per answer).
        let Some(conn) = self.conns.remove(&token) else {
            return;
        };
        self.closes += 1;
        self.buffered -= conn.outbuf.capacity();
        match conn.kind {
            Kind::Link { neighbour, inbound } => {
                if inbound {
                    self.inbound -= 1;
                }
                let peer = conn
                    .stream
                    .peer_addr()
                    .map(|p| p.to_string())
                    .unwrap_or_else(|_| "peer".into());
                if reason == "closed by peer" {
                    debug!("link {}: {peer} {reason}", token.0);
                } else {
                    let line =
                        format_args!("link {}: closing connection with {peer}: {reason}", token.0);
                    self.close_log.log(Instant::now(), line);
                }
                self.servent.handle_link_down(link_of(token));
                if let Some(index) = neighbour {
                    self.neighbour_lost(index);
                }
            }
            Kind::Dialling { neighbour } => self.dial_failed(neighbour, reason),
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse((at, timer))) = self.timers.peek().copied() {
            if at > now {
                return;
            }
            self.timers.pop();
            match timer {
                Timer::Redial(index) => {
                    if self.neighbours[index].conn.is_none() {
                        self.dial(index);
                    }
                }
                Timer::Deadline(token) => self.deadline_passed(token, now),
                Timer::Stall(token) => self.check_stall(token, now),
            }
        }
    }

    fn deadline_passed(&mut self, token: Token, now: Instant) {
        let Some(conn) = self.conns.get(&token) else {
            return;
        };
        if conn.deadline.is_none_or(|d| d > now) {
            return; // a later deadline replaced this one
        }
        match conn.kind {
            Kind::Link { .. } => {
                if self.servent.role(link_of(token)) == Some(Role::Unidentified) {
                    let limit = self.options.id_timeout;
                    self.close(token, &format!("no ID within {limit:?}"));
                }
            }
            Kind::Dialling { .. } => self.close(token, "connect timed out"),
        }
    }
}

/// Hands out connection tokens. They only grow: a late event can never reach the
/// wrong connection.
#[derive(Debug)]
pub struct Tokens(usize);

impl Tokens {
    pub fn fresh(&mut self) -> Token {
        let token = Token(self.0);
        self.0 += 1;
        token
    }
}

/// An encoded frame, shown in logs as the frame it is, in the wire's words.
struct Encoded<'a>(&'a [u8]);

impl fmt::Display for Encoded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match protocol::decode(self.0) {
            Ok(Some((frame, _))) => write!(f, "{frame}"),
            _ => write!(f, "{} undecodable bytes", self.0.len()),
        }
    }
}
