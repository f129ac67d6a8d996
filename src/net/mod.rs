//! The servent's network driver: one single-threaded `mio` loop over the listener,
//! neighbour links, client connections and outgoing answer connections.
//!
//! The loop never blocks: connects are non-blocking and confirmed on writability,
//! every connection buffers its output, and timers (neighbour re-dials, answer
//! deadlines) set the poll timeout. All protocol decisions are the [`Servent`]'s; this
//! module only moves bytes and turns its [`Action`]s into socket operations.

pub mod sockets;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::protocol::{self, Frame};
use crate::servent::{Action, Direction, LinkId, Servent};

pub use sockets::{listen, resolve_v4, BindError};

const LISTENER: Token = Token(0);

/// Limits and timings of the driver.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long an answer connection may take to connect and deliver its RESP.
    pub answer_timeout: Duration,
    /// After the RESP is out, how long to wait for the client to close first (so the
    /// client, not us, holds the TIME_WAIT and our port can answer it again at once).
    pub answer_linger: Duration,
    /// Output a peer may leave unread before its connection is dropped.
    pub outbox_limit: usize,
    /// First delay before re-dialling a neighbour; doubles up to `redial_max`.
    pub redial_min: Duration,
    pub redial_max: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            answer_timeout: Duration::from_secs(3),
            answer_linger: Duration::from_secs(2),
            outbox_limit: 4 << 20,
            redial_min: Duration::from_millis(100),
            redial_max: Duration::from_secs(5),
        }
    }
}

/// A neighbour named on the command line, which we keep connected.
#[derive(Debug)]
struct Neighbour {
    addr: SocketAddrV4,
    /// The connection dialling or linked to it, if any.
    conn: Option<Token>,
    backoff: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnswerPhase {
    Connecting,
    Sending,
    /// RESP flushed; waiting for the client to close its end.
    Lingering,
}

#[derive(Debug)]
enum Kind {
    /// A protocol link (neighbour or client); its frames go to the servent.
    Link { neighbour: Option<usize> },
    /// A connect to a neighbour in progress.
    Dialling { neighbour: usize },
    /// A one-RESP connection to a client's reply address.
    Answer {
        to: SocketAddrV4,
        phase: AnswerPhase,
        from_listen_port: bool,
        deadline: Instant,
    },
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    kind: Kind,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Redial(usize),
    AnswerDeadline(Token),
}

/// Everything one servent process runs.
pub struct Driver {
    poll: Poll,
    listener: TcpListener,
    listen_port: u16,
    servent: Servent,
    options: Options,
    conns: HashMap<Token, Conn>,
    /// Tokens only grow: a late event can never reach the wrong connection.
    next_token: usize,
    neighbours: Vec<Neighbour>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    read_buf: Box<[u8]>,
    /// One flood encoded once, then copied into each neighbour's outbox.
    frame_buf: Vec<u8>,
}

fn link_of(token: Token) -> LinkId {
    token.0 as LinkId
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
        let neighbours = neighbours
            .into_iter()
            .map(|addr| Neighbour {
                addr,
                conn: None,
                backoff: options.redial_min,
            })
            .collect();
        Ok(Driver {
            poll,
            listener,
            listen_port,
            servent,
            options,
            conns: HashMap::new(),
            next_token: 1,
            neighbours,
            timers: BinaryHeap::new(),
            read_buf: vec![0; 64 * 1024].into_boxed_slice(),
            frame_buf: Vec::with_capacity(protocol::MAX_FRAME),
        })
    }

    pub fn servent(&self) -> &Servent {
        &self.servent
    }

    /// Runs the loop until `poll` itself fails.
    pub fn run(&mut self) -> io::Result<()> {
        for index in 0..self.neighbours.len() {
            self.dial(index);
        }
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self
                .timers
                .peek()
                .map(|Reverse((at, _))| at.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                self.dispatch(event);
            }
            self.fire_timers(Instant::now());
        }
    }

    fn fresh_token(&mut self) -> Token {
        let token = Token(self.next_token);
        self.next_token += 1;
        token
    }

    fn dispatch(&mut self, event: &Event) {
        let token = event.token();
        if token == LISTENER {
            self.accept_all();
            return;
        }
        let Some(conn) = self.conns.get(&token) else {
            return; // already closed: a stale event
        };
        match conn.kind {
            Kind::Link { .. } => {
                if event.is_writable() {
                    self.flush(token);
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.read_link(token);
                }
            }
            Kind::Dialling { neighbour } => self.finish_dial(token, neighbour),
            Kind::Answer { .. } => self.drive_answer(token),
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    self.add_link(stream, peer, Direction::Inbound, None);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    error!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn add_link(
        &mut self,
        mut stream: TcpStream,
        peer: SocketAddr,
        direction: Direction,
        neighbour: Option<usize>,
    ) -> Option<Token> {
        let local = match stream.local_addr() {
            Ok(local) => local,
            Err(e) => {
                warn!("connection with {peer} dropped: {e}");
                return None;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            debug!("TCP_NODELAY on {peer}: {e}");
        }
        let token = self.fresh_token();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!("connection with {peer} dropped: cannot register: {e}");
            return None;
        }
        self.conns.insert(
            token,
            Conn {
                stream,
                kind: Kind::Link { neighbour },
                inbuf: Vec::new(),
                outbuf: Vec::new(),
            },
        );
        self.servent
            .handle_link_up(link_of(token), direction, local, peer);
        if direction == Direction::Outbound {
            Frame::Id { port: 0 }.encode(&mut self.conns.get_mut(&token)?.outbuf);
            self.flush(token);
        }
        self.conns.contains_key(&token).then_some(token)
    }

    /// Reads a link until the socket is drained, handing each whole frame to the servent.
    fn read_link(&mut self, token: Token) {
        loop {
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
                    self.close(token, &reason);
                    return;
                }
                Ok(n) => {
                    conn.inbuf.extend_from_slice(&self.read_buf[..n]);
                    if !self.decode_link(token) {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.close(token, &format!("read error: {e}"));
                    return;
                }
            }
        }
    }

    /// Decodes and handles every whole frame in a link's input. Returns false if the
    /// link was closed.
    fn decode_link(&mut self, token: Token) -> bool {
        let now = Instant::now();
        let mut used = 0;
        loop {
            let Some(conn) = self.conns.get_mut(&token) else {
                return false;
            };
            match protocol::decode(&conn.inbuf[used..]) {
                Ok(Some((frame, n))) => {
                    used += n;
                    self.servent.handle_frame(link_of(token), frame, now);
                    self.run_actions();
                }
                Ok(None) => {
                    conn.inbuf.drain(..used);
                    return true;
                }
                Err(e) => {
                    self.servent.note_protocol_error();
                    self.close(token, &format!("protocol error: {e}"));
                    return false;
                }
            }
        }
    }

    /// Carries out everything the servent has decided.
    fn run_actions(&mut self) {
        while let Some(action) = self.servent.poll_action() {
            match action {
                Action::Flood { except, frame } => {
                    self.frame_buf.clear();
                    frame.encode(&mut self.frame_buf);
                    let targets: Vec<LinkId> = self
                        .servent
                        .neighbours()
                        .iter()
                        .copied()
                        .filter(|&n| Some(n) != except)
                        .collect();
                    for link in targets {
                        let token = Token(link as usize);
                        if let Some(conn) = self.conns.get_mut(&token) {
                            debug!("link {link}: sending {frame:?}");
                            conn.outbuf.extend_from_slice(&self.frame_buf);
                            self.flush(token);
                        }
                    }
                }
                Action::Answer { to, frame } => self.start_answer(to, frame),
                Action::Close { link, reason } => self.close(Token(link as usize), &reason),
            }
        }
    }

    /// Writes as much of a connection's outbox as the socket takes.
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
        match result {
            Err(e) => self.close(token, &format!("write error: {e}")),
            Ok(()) if pending > self.options.outbox_limit => self.close(
                token,
                &format!("peer is not reading: {pending} bytes waiting, over the limit"),
            ),
            Ok(()) => {}
        }
    }

    fn close(&mut self, token: Token, reason: &str) {
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        match conn.kind {
            Kind::Link { neighbour } => {
                let peer = conn
                    .stream
                    .peer_addr()
                    .map(|p| p.to_string())
                    .unwrap_or_else(|_| "peer".into());
                if reason == "closed by peer" {
                    debug!("link {}: {peer} {reason}", token.0);
                } else {
                    info!("link {}: closing connection with {peer}: {reason}", token.0);
                }
                self.servent.handle_link_down(link_of(token));
                if let Some(index) = neighbour {
                    self.neighbour_lost(index);
                }
            }
            Kind::Dialling { neighbour } => {
                debug!("dial {} failed: {reason}", self.neighbours[neighbour].addr);
                self.neighbour_lost(neighbour);
            }
            Kind::Answer { to, phase, .. } => {
                if phase == AnswerPhase::Lingering {
                    debug!("answer to {to}: done ({reason})");
                } else {
                    warn!("answer to {to} lost: {reason}");
                }
            }
        }
    }

    fn neighbour_lost(&mut self, index: usize) {
        let neighbour = &mut self.neighbours[index];
        neighbour.conn = None;
        let delay = neighbour.backoff;
        neighbour.backoff = (delay * 2).min(self.options.redial_max);
        debug!("neighbour {}: re-dialling in {:?}", neighbour.addr, delay);
        self.timers
            .push(Reverse((Instant::now() + delay, Timer::Redial(index))));
    }

    fn dial(&mut self, index: usize) {
        let addr = self.neighbours[index].addr;
        match sockets::connect_from(addr, None) {
            Ok(mut stream) => {
                let token = self.fresh_token();
                if let Err(e) = self.poll.registry().register(
                    &mut stream,
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    warn!("dial {addr}: cannot register: {e}");
                    self.neighbour_lost(index);
                    return;
                }
                debug!("dialling neighbour {addr}");
                self.neighbours[index].conn = Some(token);
                self.conns.insert(
                    token,
                    Conn {
                        stream,
                        kind: Kind::Dialling { neighbour: index },
                        inbuf: Vec::new(),
                        outbuf: Vec::new(),
                    },
                );
            }
            Err(e) => {
                debug!("dial {addr} failed: {e}");
                self.neighbour_lost(index);
            }
        }
    }

    fn finish_dial(&mut self, token: Token, index: usize) {
        let Some(conn) = self.conns.get(&token) else {
            return;
        };
        match sockets::connect_finished(&conn.stream) {
            Ok(false) => {}
            Ok(true) => {
                let mut conn = self.conns.remove(&token).unwrap();
                let _ = self.poll.registry().deregister(&mut conn.stream);
                let addr = self.neighbours[index].addr;
                self.neighbours[index].backoff = self.options.redial_min;
                // The link gets a fresh token, so no event of the dial reaches it.
                let link = self.add_link(
                    conn.stream,
                    SocketAddr::V4(addr),
                    Direction::Outbound,
                    Some(index),
                );
                match link {
                    Some(link) => self.neighbours[index].conn = Some(link),
                    None => self.neighbour_lost(index),
                }
            }
            Err(e) => self.close(token, &e.to_string()),
        }
    }

    fn start_answer(&mut self, to: SocketAddrV4, frame: Frame) {
        let mut outbuf = Vec::with_capacity(frame.encoded_len());
        frame.encode(&mut outbuf);
        self.open_answer(to, outbuf, true);
    }

    /// Opens an answer connection, from our listening port when possible so the client
    /// sees our address; from an ephemeral port when that port cannot be used.
    fn open_answer(&mut self, to: SocketAddrV4, outbuf: Vec<u8>, from_listen_port: bool) {
        let source = from_listen_port.then_some(self.listen_port);
        let mut stream = match sockets::connect_from(to, source) {
            Ok(stream) => stream,
            Err(e) if from_listen_port => {
                debug!(
                    "answer to {to}: cannot use port {} ({e}), using an ephemeral port",
                    self.listen_port
                );
                return self.open_answer(to, outbuf, false);
            }
            Err(e) => {
                warn!("answer to {to} lost: connect failed: {e}");
                return;
            }
        };
        let token = self.fresh_token();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!("answer to {to} lost: cannot register: {e}");
            return;
        }
        let deadline = Instant::now() + self.options.answer_timeout;
        self.timers
            .push(Reverse((deadline, Timer::AnswerDeadline(token))));
        self.conns.insert(
            token,
            Conn {
                stream,
                kind: Kind::Answer {
                    to,
                    phase: AnswerPhase::Connecting,
                    from_listen_port,
                    deadline,
                },
                inbuf: Vec::new(),
                outbuf,
            },
        );
    }

    fn drive_answer(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let Kind::Answer {
            to,
            phase,
            from_listen_port,
            ..
        } = conn.kind
        else {
            return;
        };
        if phase == AnswerPhase::Connecting {
            match sockets::connect_finished(&conn.stream) {
                Ok(false) => return,
                Ok(true) => {
                    debug!("answer to {to}: connected");
                    set_answer_phase(conn, AnswerPhase::Sending);
                }
                Err(e) if from_listen_port && is_address_clash(&e) => {
                    let conn = self.conns.remove(&token).unwrap();
                    debug!("answer to {to}: port clash ({e}), retrying from an ephemeral port");
                    return self.open_answer(to, conn.outbuf, false);
                }
                Err(e) => return self.close(token, &format!("connect failed: {e}")),
            }
        }
        if matches!(current_phase(conn), Some(AnswerPhase::Sending)) {
            self.flush(token);
            let Some(conn) = self.conns.get_mut(&token) else {
                return;
            };
            if !conn.outbuf.is_empty() {
                return;
            }
            debug!("answer to {to}: RESP sent");
            set_answer_phase(conn, AnswerPhase::Lingering);
            let deadline = Instant::now() + self.options.answer_linger;
            if let Kind::Answer { deadline: d, .. } = &mut conn.kind {
                *d = deadline;
            }
            self.timers
                .push(Reverse((deadline, Timer::AnswerDeadline(token))));
        }
        // Lingering: anything the client sends is ignored; its close ends the answer.
        loop {
            let Some(conn) = self.conns.get_mut(&token) else {
                return;
            };
            match conn.stream.read(&mut self.read_buf) {
                Ok(0) => return self.close(token, "client closed"),
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.close(token, &format!("read error: {e}")),
            }
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
                Timer::AnswerDeadline(token) => {
                    let expired = matches!(
                        self.conns.get(&token),
                        Some(Conn { kind: Kind::Answer { deadline, .. }, .. }) if *deadline <= now
                    );
                    if expired {
                        let reason = match self.conns.get(&token).and_then(current_phase) {
                            Some(AnswerPhase::Lingering) => "client did not close; closing",
                            _ => "timed out",
                        };
                        self.close(token, reason);
                    }
                }
            }
        }
    }
}

fn current_phase(conn: &Conn) -> Option<AnswerPhase> {
    match conn.kind {
        Kind::Answer { phase, .. } => Some(phase),
        _ => None,
    }
}

fn set_answer_phase(conn: &mut Conn, new: AnswerPhase) {
    if let Kind::Answer { phase, .. } = &mut conn.kind {
        *phase = new;
    }
}

/// Errors that mean our listening port cannot be the source of this connection.
fn is_address_clash(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::AddrInUse | io::ErrorKind::AddrNotAvailable
    )
}
