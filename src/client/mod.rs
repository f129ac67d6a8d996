//! The client: a REPL that sends queries to one servent and collects the answers that
//! servents send back on connections of their own.
//!
//! [`command`], [`window`], [`show`] and [`tree`] are pure; [`Client`] does the I/O: a
//! reply listener driven by `mio`, so answers arriving together from many servents are
//! all read, and the link to the servent. [`terminal`] is the client at a terminal:
//! line editing, typeahead, the terminal's modes, the waiting indicator, Ctrl-C.

pub mod command;
pub mod lang;
pub mod show;
pub mod terminal;
pub mod tree;
pub mod window;

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufRead, Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use crate::os_error::plain;
use crate::protocol::{self, Frame, Text};
pub use command::Command;
pub use lang::{Lang, Mistake, Unexpected};
pub use terminal::Indicator;
pub use window::{AnswerWindow, Verdict};

/// How long the client waits for answers by default (PROTOCOL.md: 4 s after the command
/// or after the last answer).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(4);

const LISTENER: Token = Token(0);
/// The Ctrl-C pipe ([`Client::stop_waits_on`]).
const INTERRUPT: Token = Token(1);
/// The connection to the servent, watched while waiting: a servent never writes to its
/// clients, so readable means it has closed. Reply connections count up from 3.
const SERVENT: Token = Token(2);

/// Why the client stopped or could not start.
#[derive(Debug)]
pub enum ClientError {
    Listen {
        port: u16,
        source: io::Error,
    },
    Connect {
        addr: SocketAddrV4,
        source: io::Error,
    },
    ServentClosed(SocketAddrV4),
    Io(io::Error),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Listen { port, source } => {
                write!(
                    f,
                    "cannot open the reply listener on port {port}: {}",
                    plain(source)
                )
            }
            ClientError::Connect { addr, source } => {
                write!(f, "cannot connect to servent {addr}: {}", plain(source))
            }
            ClientError::ServentClosed(addr) => write!(f, "servent {addr} closed the connection"),
            ClientError::Io(e) => f.write_str(&plain(e)),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> ClientError {
        ClientError::Io(e)
    }
}

/// A starting sequence number that a restarted client is unlikely to repeat.
pub fn random_seq() -> u32 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish() as u32
}

/// One reply connection being read.
struct Reply {
    stream: mio::net::TcpStream,
    peer: SocketAddr,
    buf: Vec<u8>,
}

/// Where the client's commands come from: a pipe or file, or a terminal with line
/// editing (the binary's `Terminal`).
pub trait LineSource {
    /// The next line (its `\n`, if kept, is ignored by the parser); `None` at the end
    /// of input.
    fn next_line(&mut self) -> io::Result<Option<String>>;
}

/// Lines read from any `BufRead` (invalid UTF-8 shown lossily), with no prompt.
pub struct Lines<R>(pub R);

impl<R: BufRead> LineSource for Lines<R> {
    fn next_line(&mut self) -> io::Result<Option<String>> {
        let mut line = Vec::new();
        if self.0.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        Ok(Some(String::from_utf8_lossy(&line).into_owned()))
    }
}

/// A connected client.
pub struct Client {
    servent: TcpStream,
    /// `servent`, registered with `poll` ([`SERVENT`]).
    _servent_watch: mio::net::TcpStream,
    servent_addr: SocketAddrV4,
    poll: Poll,
    listener: TcpListener,
    reply_port: u16,
    replies: HashMap<Token, Reply>,
    next_token: usize,
    next_seq: u32,
    timeout: Duration,
    /// Draw each `T`'s answers as a tree once its window closes (`--tree`).
    draw_trees: bool,
    /// Print answers' values as the bytes came (`--raw`), not escaped.
    raw: bool,
    /// The language of what the client says to its user.
    lang: Lang,
    /// Shown while a window is open (at a terminal).
    indicator: Option<Indicator>,
    /// Readable when a signal asks to stop waiting (Ctrl-C at a terminal).
    interrupt: Option<mio::net::UnixStream>,
}

impl Client {
    /// Opens the reply listener on all interfaces (`reply_port` 0: any free port),
    /// connects to the servent and introduces itself with ID.
    pub fn connect(
        servent_addr: SocketAddrV4,
        reply_port: u16,
        timeout: Duration,
        first_seq: u32,
    ) -> Result<Client, ClientError> {
        let listen_error = |source| ClientError::Listen {
            port: reply_port,
            source,
        };
        let std_listener =
            std::net::TcpListener::bind(("0.0.0.0", reply_port)).map_err(listen_error)?;
        std_listener.set_nonblocking(true).map_err(listen_error)?;
        let mut listener = TcpListener::from_std(std_listener);
        let reply_port = listener.local_addr()?.port();
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;

        let connect_error = |source| ClientError::Connect {
            addr: servent_addr,
            source,
        };
        let mut servent =
            TcpStream::connect_timeout(&SocketAddr::V4(servent_addr), Duration::from_secs(5))
                .map_err(connect_error)?;
        servent.set_nodelay(true).map_err(connect_error)?;
        servent
            .write_all(&Frame::Id { port: reply_port }.to_bytes())
            .map_err(connect_error)?;
        // A second descriptor of the same connection, for the poll only: reads and
        // writes stay on the blocking `servent`.
        let mut servent_watch = mio::net::TcpStream::from_std(servent.try_clone()?);
        poll.registry()
            .register(&mut servent_watch, SERVENT, Interest::READABLE)?;
        Ok(Client {
            servent,
            _servent_watch: servent_watch,
            servent_addr,
            poll,
            listener,
            reply_port,
            replies: HashMap::new(),
            next_token: 3,
            next_seq: first_seq,
            timeout,
            draw_trees: false,
            raw: false,
            lang: Lang::default(),
            indicator: None,
            interrupt: None,
        })
    }

    /// Prints answers' values as the bytes came, control characters and all, rather
    /// than escaped ([`show`]).
    pub fn print_raw(&mut self, on: bool) {
        self.raw = on;
    }

    /// Says everything to its user (not the answers) in `lang`.
    pub fn set_lang(&mut self, lang: Lang) {
        self.lang = lang;
    }

    /// Shows `indicator` while waiting for answers.
    pub fn show_waiting(&mut self, indicator: Indicator) {
        self.indicator = Some(indicator);
    }

    /// Makes one of `signals` (SIGINT: Ctrl-C) end the wait for answers rather than the
    /// process. A signal that comes between waits is forgotten when the next command is
    /// sent.
    pub fn stop_waits_on(&mut self, signals: &[i32]) -> io::Result<()> {
        let (reader, writer) = StdUnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        for &signal in signals {
            signal_hook::low_level::pipe::register(signal, writer.try_clone()?)?;
        }
        let mut reader = mio::net::UnixStream::from_std(reader);
        self.poll
            .registry()
            .register(&mut reader, INTERRUPT, Interest::READABLE)?;
        self.interrupt = Some(reader);
        Ok(())
    }

    /// Empties the signal pipe; whether it held anything.
    fn take_interrupt(&mut self) -> bool {
        let Some(pipe) = &mut self.interrupt else {
            return false;
        };
        let mut any = false;
        let mut buf = [0u8; 64];
        loop {
            match pipe.read(&mut buf) {
                Ok(n) if n > 0 => any = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => return any,
            }
        }
    }

    /// After each `T`, also draw its answers as the tree of the overlay they reached.
    pub fn draw_topology_trees(&mut self, on: bool) {
        self.draw_trees = on;
    }

    pub fn reply_port(&self) -> u16 {
        self.reply_port
    }

    /// Reads commands until `Q` or end of input. Answers go to `out` as
    /// `VALUE IP:PORT`; warnings and errors to `err`.
    pub fn run(
        &mut self,
        input: &mut impl LineSource,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> Result<(), ClientError> {
        loop {
            out.flush()?;
            let Some(line) = input.next_line()? else {
                return Ok(());
            };
            let request = match command::parse(&line) {
                Command::Quit => return Ok(()),
                Command::Nothing => continue,
                Command::Help => {
                    writeln!(err, "{}", self.lang.help())?;
                    continue;
                }
                Command::Invalid(why) => {
                    writeln!(err, "{}", self.lang.mistake(&why))?;
                    continue;
                }
                Command::Lookup(key) => Request::Key(key),
                Command::Topology => Request::Topology,
            };
            let topology = matches!(request, Request::Topology);
            self.take_interrupt();
            let seq = self.send(request)?;
            let answers = self.collect_answers(seq, out, err)?;
            if topology && self.draw_trees && !answers.is_empty() {
                let answers = match self.raw {
                    true => answers,
                    false => answers.iter().map(|a| show::escape(a)).collect(),
                };
                write!(out, "{}", tree::draw(&answers))?;
            }
        }
    }

    /// Sends one request with a fresh sequence number.
    fn send(&mut self, request: Request) -> Result<u32, ClientError> {
        self.check_servent_alive()?;
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let frame = match request {
            Request::Key(key) => Frame::KeyReq { seq, key },
            Request::Topology => Frame::TopoReq { seq },
        };
        self.servent
            .write_all(&frame.to_bytes())
            .map_err(|_| ClientError::ServentClosed(self.servent_addr))?;
        Ok(seq)
    }

    /// A servent never writes to its clients, so readable means it has gone.
    fn check_servent_alive(&mut self) -> Result<(), ClientError> {
        self.servent.set_nonblocking(true)?;
        let mut probe = [0u8; 512];
        let state = loop {
            match self.servent.read(&mut probe) {
                Ok(0) => break Err(ClientError::ServentClosed(self.servent_addr)),
                Ok(_) => continue, // not in the protocol: ignore it
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break Err(ClientError::ServentClosed(self.servent_addr)),
            }
        };
        self.servent.set_nonblocking(false)?;
        state
    }

    /// Prints the answers to `seq` as they come, until the window closes or a signal
    /// stops the wait; returns their values.
    fn collect_answers(
        &mut self,
        seq: u32,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> Result<Vec<String>, ClientError> {
        let mut values = Vec::new();
        let mut window = AnswerWindow::open(seq, self.timeout, Instant::now());
        let mut events = Events::with_capacity(256);
        let mut indicator = self.indicator.take();
        if let Some(indicator) = &mut indicator {
            indicator.start();
        }
        let outcome = (|| {
            let mut stopped = false;
            while !stopped {
                let now = Instant::now();
                if window.is_over(now) {
                    break;
                }
                if let Some(indicator) = &mut indicator {
                    indicator.resume();
                }
                match self.poll.poll(
                    &mut events,
                    Some(window.deadline().saturating_duration_since(now)),
                ) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.into()),
                }
                let mut screen = Screen {
                    out: &mut *out,
                    err: &mut *err,
                    indicator: indicator.as_mut(),
                    raw: self.raw,
                    lang: self.lang,
                };
                for event in events.iter() {
                    let tokens = match event.token() {
                        INTERRUPT => {
                            stopped = self.take_interrupt();
                            continue;
                        }
                        // Its answers may be on their way, but the next command could
                        // not be sent: say so now rather than after the wait.
                        SERVENT => {
                            self.check_servent_alive()?;
                            continue;
                        }
                        LISTENER => self.accept_replies(&mut screen)?,
                        token => vec![token],
                    };
                    for token in tokens {
                        if let Some(message) = self.read_reply(token) {
                            values.extend(report(message, &mut window, &mut screen)?);
                        }
                    }
                }
            }
            if let Some(indicator) = &mut indicator {
                indicator.stop();
            }
            if stopped {
                writeln!(err, "{}", self.lang.stopped_waiting())?;
            } else if window.answers() == 0 {
                writeln!(err, "{}", self.lang.no_answer())?;
            }
            Ok(values)
        })();
        if let Some(mut indicator) = indicator {
            indicator.stop();
            self.indicator = Some(indicator);
        }
        outcome
    }

    /// Accepts every waiting reply connection. Returns their tokens, to be read at once:
    /// their data may have arrived before they were registered.
    fn accept_replies(&mut self, screen: &mut Screen<'_>) -> Result<Vec<Token>, ClientError> {
        let mut accepted = Vec::new();
        loop {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    let token = Token(self.next_token);
                    self.next_token += 1;
                    self.poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE)?;
                    self.replies.insert(
                        token,
                        Reply {
                            stream,
                            peer,
                            buf: Vec::new(),
                        },
                    );
                    accepted.push(token);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(accepted),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    screen.note(&screen.lang.accept_failed(&e))?;
                    return Ok(accepted);
                }
            }
        }
    }

    /// Reads a reply connection. Once it holds a whole frame, or cannot, the connection
    /// is closed and what it brought is returned.
    fn read_reply(&mut self, token: Token) -> Option<Message> {
        let reply = self.replies.get_mut(&token)?;
        let mut chunk = [0u8; 1024];
        let outcome = loop {
            match protocol::decode(&reply.buf) {
                Ok(Some((frame, _))) => break Some(Ok(frame)),
                Err(e) => break Some(Err(format!("not a frame ({e})"))),
                Ok(None) => {}
            }
            match reply.stream.read(&mut chunk) {
                Ok(0) if reply.buf.is_empty() => {
                    break Some(Err("closed without a message".into()))
                }
                Ok(0) => {
                    break Some(Err(format!(
                        "closed after {} bytes, mid-frame",
                        reply.buf.len()
                    )))
                }
                Ok(n) => reply.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Some(Err(e.to_string())),
            }
        };
        let outcome = outcome?;
        let mut reply = self.replies.remove(&token)?;
        let _ = self.poll.registry().deregister(&mut reply.stream);
        Some(Message {
            from: reply.peer,
            content: outcome,
        })
    }
}

enum Request {
    Key(Text),
    Topology,
}

/// What one reply connection brought.
struct Message {
    from: SocketAddr,
    content: Result<Frame, String>,
}

/// Where the lines of a wait go: answers to `out`, notes to `err`, both above the
/// waiting indicator (hidden before a line, shown again when the wait goes on).
struct Screen<'a> {
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    indicator: Option<&'a mut Indicator>,
    raw: bool,
    lang: Lang,
}

impl Screen<'_> {
    fn hide_indicator(&mut self) {
        if let Some(indicator) = &mut self.indicator {
            indicator.pause();
        }
    }

    fn answer(&mut self, value: &Text, from: SocketAddr) -> io::Result<()> {
        self.hide_indicator();
        show::answer(&mut self.out, value, from, self.raw)?;
        self.out.flush()
    }

    fn note(&mut self, note: &str) -> io::Result<()> {
        self.hide_indicator();
        writeln!(self.err, "{note}")
    }
}

fn report(
    message: Message,
    window: &mut AnswerWindow,
    screen: &mut Screen<'_>,
) -> io::Result<Option<String>> {
    let unexpected = match message.content {
        Ok(Frame::Resp { seq, value }) => match window.on_response(seq, Instant::now()) {
            Verdict::Answer => {
                screen.answer(&value, message.from)?;
                return Ok(Some(value.to_lossy().into_owned()));
            }
            Verdict::WrongSeq => Unexpected::WrongSeq {
                seq,
                expected: window.seq(),
            },
        },
        Ok(other) => Unexpected::NotResp(other.name()),
        Err(why) => Unexpected::Broken(why),
    };
    screen.note(&screen.lang.unexpected(message.from, &unexpected))?;
    Ok(None)
}
