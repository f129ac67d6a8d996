//! How answers reach clients, against a real servent process, with raw-socket peers
//! that behave unlike our client: one that reads until EOF, one that closes at once,
//! reply addresses that never read, never accept or have a full backlog, a reply
//! listener that opens late, and a servent held to 64 descriptors.
//!
//! The heavy tests (3000 hostile answers, the 100-query burst) take the `heavy()` lock
//! so they do not run at the same time.

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use socket2::Socket;
use tp3kv::protocol::{decode, Frame, Text};

/// The bound on anything that should be prompt: far above what a correct servent
/// needs even on a loaded machine, so a test fails instead of hanging.
const WAIT: Duration = Duration::from_secs(10);

/// `k1 v1` … `k<n> v<n>`, and `k v`: each query can name its own answer.
fn store(n: usize) -> String {
    let mut s = String::from("k v\n");
    for i in 1..=n {
        s.push_str(&format!("k{i} v{i}\n"));
    }
    s
}

fn key_req(seq: u32, key: &str) -> Frame {
    Frame::KeyReq {
        seq,
        key: Text::new(key).unwrap(),
    }
}

/// A reply listener on loopback. Accepts block in poll(2), so an answer connection is
/// taken the moment it arrives (no sleep-and-retry adding its own delay).
struct Inbox(TcpListener);

impl Inbox {
    fn new() -> Inbox {
        Inbox::on(0).unwrap()
    }

    fn on(port: u16) -> io::Result<Inbox> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        Ok(Inbox(listener))
    }

    fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }

    /// The next answer connection within `limit`, blocking.
    fn accept(&self, limit: Duration) -> Option<(TcpStream, SocketAddr)> {
        let deadline = Instant::now() + limit;
        loop {
            match self.0.accept() {
                Ok((stream, from)) => {
                    stream.set_nonblocking(false).unwrap();
                    return Some((stream, from));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("accept: {e}"),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            poll_readable(self.0.as_raw_fd(), left);
        }
    }
}

/// Waits until `fd` is readable or `limit` has passed.
fn poll_readable(fd: i32, limit: Duration) {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // Rounded up, so a sub-millisecond remainder still waits.
    let ms = (limit.as_micros().div_ceil(1000)).min(i32::MAX as u128) as i32;
    // SAFETY: poll reads and writes only the one pollfd passed to it.
    let rc = unsafe { libc::poll(&mut pollfd, 1, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        assert_eq!(e.kind(), io::ErrorKind::Interrupted, "poll: {e}");
    }
}

/// One read of `stream` that gives up at `deadline`: `Ok(Some(n))`, `n` bytes read (0:
/// the peer closed); `Ok(None)`, nothing yet (read again); `Err`, the deadline passed or
/// the read failed.
fn read_by(
    stream: &mut TcpStream,
    chunk: &mut [u8],
    deadline: Instant,
) -> Result<Option<usize>, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err("nothing more in time".into());
    }
    stream.set_read_timeout(Some(left)).unwrap();
    match stream.read(chunk) {
        Ok(n) => Ok(Some(n)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Reads one whole RESP from an answer connection within `limit`: (seq, value).
fn read_resp(stream: &mut TcpStream, limit: Duration) -> Result<(u32, String), String> {
    let deadline = Instant::now() + limit;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        match decode(&buf) {
            Ok(Some((Frame::Resp { seq, value }, used))) => {
                if used != buf.len() {
                    return Err(format!("bytes after the RESP: {:?}", &buf[used..]));
                }
                return Ok((seq, value.to_lossy().into_owned()));
            }
            Ok(Some((other, _))) => return Err(format!("not a RESP: {other:?}")),
            Ok(None) => {}
            Err(e) => return Err(format!("undecodable answer {buf:?}: {e}")),
        }
        match read_by(stream, &mut chunk, deadline) {
            Ok(Some(0)) => return Err(format!("closed before a whole RESP: {buf:?}")),
            Ok(Some(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(None) => {}
            Err(e) => {
                return Err(format!(
                    "{e} within {limit:?}, before a whole RESP: {buf:?}"
                ))
            }
        }
    }
}

/// Reads until the servent closes `stream`, within `limit`. Any byte is an error (one
/// RESP per connection, already read), and so is a reset: a client that reads until
/// EOF wants a clean close.
fn read_to_eof(stream: &mut TcpStream, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut chunk = [0u8; 512];
    loop {
        match read_by(stream, &mut chunk, deadline) {
            Ok(Some(0)) => return Ok(()),
            Ok(Some(n)) => return Err(format!("bytes after the RESP: {:?}", &chunk[..n])),
            Ok(None) => {}
            Err(e) => return Err(format!("{e} within {limit:?}, instead of a clean close")),
        }
    }
}

/// A hand-made client: its connection to the servent (ID already sent) and its reply
/// listener.
struct Client {
    link: TcpStream,
    inbox: Inbox,
}

impl Client {
    fn connect(node: &Node) -> Client {
        let inbox = Inbox::new();
        let mut link = TcpStream::connect(node.local()).unwrap();
        link.write_all(&Frame::Id { port: inbox.port() }.to_bytes())
            .unwrap();
        Client { link, inbox }
    }

    fn send(&mut self, seq: u32, key: &str) {
        self.link.write_all(&key_req(seq, key).to_bytes()).unwrap();
    }

    /// The next answer as a closing client takes it: one RESP, then closed at once.
    /// Returns (seq, value, the connection's source address).
    fn take_answer(&self, node: &Node, what: &str) -> (u32, String, SocketAddr) {
        let Some((mut stream, from)) = self.inbox.accept(WAIT) else {
            panic!("no answer to {what} within {WAIT:?}; log:\n{}", node.log())
        };
        let (seq, value) = read_resp(&mut stream, WAIT)
            .unwrap_or_else(|e| panic!("answer to {what} from {from}: {e}"));
        drop(stream);
        (seq, value, from)
    }
}

// ---------------------------------------------------------------------------------
// 1. The servent closes promptly; answers leave from its listening port
// ---------------------------------------------------------------------------------

/// A client that reads each answer connection until EOF, as many do, must not wait
/// for the servent's patience to run out (the old servent waited 2 s for the client
/// to close first).
#[test]
fn an_eof_reading_client_gets_eof_promptly_after_each_answer() {
    const PROMPT: Duration = Duration::from_millis(500);
    let dir = TempDir::new("ans-eof");
    let s = servent(&dir, "s", &store(3), &[]);
    let mut c = Client::connect(&s);
    let mut gaps = Vec::new();
    for seq in 1..=3u32 {
        let key = format!("k{seq}");
        c.send(seq, &key);
        let Some((mut stream, from)) = c.inbox.accept(WAIT) else {
            panic!("no answer to {key} within {WAIT:?}; log:\n{}", s.log())
        };
        let resp = read_resp(&mut stream, WAIT);
        let arrived = Instant::now();
        let resp = resp.unwrap_or_else(|e| panic!("answer {seq} from {from}: {e}"));
        assert_eq!(resp, (seq, format!("v{seq}")), "answer {seq} from {from}");
        // We never close: the close must come from the servent.
        let eof = read_to_eof(&mut stream, Duration::from_secs(5));
        let gap = arrived.elapsed();
        if let Err(e) = eof {
            panic!(
                "answer {seq} from {from}: {e} (after {gap:?}); log:\n{}",
                s.log()
            );
        }
        println!("answer {seq} from {from}: EOF {gap:?} after the RESP");
        gaps.push(gap);
    }
    assert!(
        gaps.iter().all(|&gap| gap < PROMPT),
        "EOF came {gaps:?} after the RESPs; each should be under {PROMPT:?}"
    );
}

/// A client that reads one RESP and closes at once gets answer after answer, each
/// from the servent's listening port, so it sees which servent answered.
#[test]
fn a_closing_client_gets_twenty_answers_from_the_listening_port() {
    const QUERIES: u32 = 20;
    let dir = TempDir::new("ans-close");
    let s = servent(&dir, "s", &store(QUERIES as usize), &[]);
    let mut c = Client::connect(&s);
    let mut sources = Vec::new();
    for seq in 1..=QUERIES {
        let key = format!("k{seq}");
        c.send(seq, &key);
        let Some((mut stream, from)) = c.inbox.accept(WAIT) else {
            panic!("no answer to {key} within {WAIT:?}; log:\n{}", s.log())
        };
        let resp = read_resp(&mut stream, WAIT)
            .unwrap_or_else(|e| panic!("answer {seq} from {from}: {e}"));
        // Closed at once (our FIN leaves now); then, before the next query, we see the
        // servent close its end too, so the next answer finds the connection over.
        stream.shutdown(Shutdown::Write).unwrap();
        assert_eq!(resp, (seq, format!("v{seq}")), "answer {seq} from {from}");
        if let Err(e) = read_to_eof(&mut stream, WAIT) {
            panic!(
                "answer {seq} from {from}: after our close, {e}; log:\n{}",
                s.log()
            );
        }
        sources.push(from.port());
    }
    println!(
        "{QUERIES} answers, from ports {sources:?}; the servent listens on {}",
        s.port()
    );
    assert!(
        sources.iter().all(|&port| port == s.port()),
        "answers came from ports {sources:?}, not all from the listening port {}; log:\n{}",
        s.port(),
        s.log()
    );
}

// ---------------------------------------------------------------------------------
// 2. A hostile reply address does not delay other clients' answers
// ---------------------------------------------------------------------------------

/// A reply address that takes answers badly.
#[derive(Debug, Clone, Copy)]
enum Hostile {
    /// Accepts every connection and never reads nor closes it.
    NeverReads,
    /// Listens with a backlog and never accepts.
    NeverAccepts,
    /// Its accept queue is already full: connects to it go unanswered.
    BacklogFull,
}

/// The hostile reply address, kept alive for the test.
enum HostileEnd {
    /// The thread accepting (and holding) connections; set the flag to stop it.
    Accepting(Arc<AtomicBool>, Option<JoinHandle<usize>>),
    /// Held only to keep them open.
    Listening { _socket: Socket },
    Stalled {
        _socket: Socket,
        _fillers: Vec<TcpStream>,
    },
}

impl HostileEnd {
    fn open(kind: Hostile) -> (HostileEnd, SocketAddrV4) {
        match kind {
            Hostile::NeverReads => {
                let inbox = Inbox::new();
                let addr = SocketAddrV4::new([127, 0, 0, 1].into(), inbox.port());
                let stop = Arc::new(AtomicBool::new(false));
                let stopped = stop.clone();
                let thread = std::thread::spawn(move || {
                    let mut held = Vec::new();
                    while !stopped.load(Ordering::Relaxed) {
                        if let Some((stream, _)) = inbox.accept(Duration::from_millis(50)) {
                            held.push(stream);
                        }
                    }
                    held.len()
                });
                (HostileEnd::Accepting(stop, Some(thread)), addr)
            }
            Hostile::NeverAccepts => {
                let (socket, addr) = loopback_listener(1024);
                (HostileEnd::Listening { _socket: socket }, addr)
            }
            Hostile::BacklogFull => {
                let (socket, addr, fillers) = stalled_listener();
                (
                    HostileEnd::Stalled {
                        _socket: socket,
                        _fillers: fillers,
                    },
                    addr,
                )
            }
        }
    }

    /// Stops accepting; returns how many connections were accepted, if any were.
    fn close(mut self) -> Option<usize> {
        match &mut self {
            HostileEnd::Accepting(stop, thread) => {
                stop.store(true, Ordering::Relaxed);
                thread.take().map(|t| t.join().unwrap())
            }
            _ => None,
        }
    }
}

impl Drop for HostileEnd {
    fn drop(&mut self) {
        if let HostileEnd::Accepting(stop, thread) = self {
            stop.store(true, Ordering::Relaxed);
            if let Some(thread) = thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// A hostile connection announces reply address H and asks 3000 times for a key the
/// servent holds; then a good client asks 5 times in a row. Its answers must come as
/// fast as if H did not exist: H gets a few connections at a time, not the servent.
fn answers_beside_a_hostile_reply_address(kind: Hostile) {
    const HOSTILE_QUERIES: u32 = 3000;
    const ASKS: u32 = 5;
    let _heavy = heavy();
    raise_own_fd_limit(u64::from(HOSTILE_QUERIES) + 512);
    let dir = TempDir::new("ans-hostile");
    let s = servent(&dir, "s", &store(ASKS as usize), &[]);
    let (hostile, h) = HostileEnd::open(kind);

    let mut burst = Frame::Id { port: h.port() }.to_bytes();
    for seq in 0..HOSTILE_QUERIES {
        key_req(seq, "k").encode(&mut burst);
    }
    let mut hostile_link = TcpStream::connect(s.local()).unwrap();
    hostile_link.write_all(&burst).unwrap();
    // The good client asks once the servent has handled the whole burst (it logs each
    // query at debug level; if that line ever changes, we go on after a while anyway).
    let last = format!("query {h}#{}: ", HOSTILE_QUERIES - 1);
    let started = Instant::now();
    while !s.log().contains(&last) && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let handled = s.log().contains(&last);

    let mut c = Client::connect(&s);
    let mut latencies = Vec::new();
    for seq in 1..=ASKS {
        let key = format!("k{seq}");
        let asked = Instant::now();
        c.send(seq, &key);
        let Some((mut stream, from)) = c.inbox.accept(WAIT) else {
            panic!(
                "{kind:?}: no answer to {key} within {WAIT:?} (earlier ones took {latencies:?}); \
                 log tail:\n{}",
                tail(&s.log(), 30)
            )
        };
        let resp = read_resp(&mut stream, WAIT)
            .unwrap_or_else(|e| panic!("{kind:?}: answer {seq} from {from}: {e}"));
        let took = asked.elapsed();
        drop(stream);
        assert_eq!(resp, (seq, format!("v{seq}")), "answer {seq} from {from}");
        latencies.push(took);
    }
    let accepted = hostile.close();
    let mut sorted = latencies.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    println!(
        "{kind:?}: {HOSTILE_QUERIES} answers aimed at {h} (burst seen handled: {handled}; \
         connections it accepted: {accepted:?}); the good client's {ASKS} answers took \
         {latencies:?}, median {median:?}"
    );
    assert!(
        median <= Duration::from_millis(100),
        "{kind:?}: median latency {median:?} over 100ms: {latencies:?}"
    );
    assert!(
        latencies.iter().all(|&t| t <= Duration::from_secs(1)),
        "{kind:?}: an answer took over 1s: {latencies:?}"
    );
    drop(hostile_link);
}

/// The last `n` lines of a log.
fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn answers_are_prompt_beside_3000_for_a_reply_address_that_never_reads() {
    answers_beside_a_hostile_reply_address(Hostile::NeverReads);
}

#[test]
fn answers_are_prompt_beside_3000_for_a_reply_address_that_never_accepts() {
    answers_beside_a_hostile_reply_address(Hostile::NeverAccepts);
}

#[test]
fn answers_are_prompt_beside_3000_for_a_reply_address_with_a_full_backlog() {
    answers_beside_a_hostile_reply_address(Hostile::BacklogFull);
}

// ---------------------------------------------------------------------------------
// 3. A reply listener that opens late
// ---------------------------------------------------------------------------------

/// The client sends ID(p) and its KEYREQ before anything listens on p, and opens its
/// listener 100 ms later: the servent's retries of the refused connect (5, 25, 125,
/// 625 ms) get the answer through.
#[test]
fn an_answer_reaches_a_reply_listener_opened_100ms_late() {
    let dir = TempDir::new("ans-late");
    let s = servent(&dir, "s", &store(1), &[]);
    // Reserve a port: bound and released at once, so nothing listens on it for now.
    let port = Inbox::new().port();
    let mut link = TcpStream::connect(s.local()).unwrap();
    let mut bytes = Frame::Id { port }.to_bytes();
    key_req(7, "k1").encode(&mut bytes);
    let asked = Instant::now();
    link.write_all(&bytes).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let inbox = Inbox::on(port).unwrap_or_else(|e| panic!("reopening port {port}: {e}"));
    let opened = asked.elapsed();
    let Some((mut stream, from)) = inbox.accept(Duration::from_secs(5)) else {
        panic!(
            "no answer within 5s of a listener opened {opened:?} after the query; log:\n{}",
            s.log()
        )
    };
    let resp = read_resp(&mut stream, WAIT).unwrap_or_else(|e| panic!("answer from {from}: {e}"));
    let took = asked.elapsed();
    println!("listener opened {opened:?} after the query; the answer came {took:?} after it");
    assert_eq!(resp, (7, "v1".to_string()), "answer from {from}");
    drop(link);
}

// ---------------------------------------------------------------------------------
// 4. Few descriptors
// ---------------------------------------------------------------------------------

/// Our servent's command with RLIMIT_NOFILE set to `limit` (soft and hard), as under
/// `ulimit -n`.
fn servent_command_with_fd_limit(store_file: &std::path::Path, limit: u64) -> Command {
    let mut command = Command::new(SERVENT);
    command.env("RUST_LOG", "info").arg("0").arg(store_file);
    // SAFETY: between fork and exec the closure calls only setrlimit, which is
    // async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            let rlimit = libc::rlimit {
                rlim_cur: limit as libc::rlim_t,
                rlim_max: limit as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

fn servent_with_fd_limit(dir: &TempDir, tag: &str, store: &str, limit: u64) -> Node {
    let file = dir.file(&format!("{tag}.kv"), store);
    start_node(servent_command_with_fd_limit(&file, limit), dir, tag)
}

/// A limit too small to run at all is one clear line and a non-zero exit, not a
/// servent that cannot serve.
#[test]
fn a_descriptor_limit_too_small_to_run_is_refused_in_one_line() {
    let dir = TempDir::new("ans-ulimit-tiny");
    let file = dir.file("s.kv", "k v\n");
    let output = servent_command_with_fd_limit(&file, 20)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "servent: error: only 20 file descriptors allowed (ulimit -n); \
         a servent needs at least 26"
    );
    assert!(output.stdout.is_empty(), "it never said it was listening");
}

/// Under `ulimit -n 64` the servent still serves 10 clients at once, and answers a
/// burst of 100 queries (10 from each, sent back to back) in full: every query gets
/// exactly its own answer.
#[test]
fn under_ulimit_64_ten_clients_are_served_and_a_100_query_burst_is_answered() {
    const CLIENTS: u32 = 10;
    const EACH: u32 = 10;
    let _heavy = heavy();
    let dir = TempDir::new("ans-ulimit");
    let mut s = servent_with_fd_limit(&dir, "s", &store((CLIENTS * EACH) as usize), 64);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", s.pid())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_default();
    assert_eq!(
        open_files.split_whitespace().collect::<Vec<_>>(),
        ["Max", "open", "files", "64", "64", "files"],
        "the limit did not take"
    );
    wait_for("the descriptor split in the log", || {
        s.log().contains(
            "descriptor limit 64: using 36 for links and clients, 12 for answer \
             connections, 16 kept for the rest",
        )
    });

    // Ten clients connect and stay connected; each is served.
    let mut clients: Vec<Client> = (0..CLIENTS).map(|_| Client::connect(&s)).collect();
    for c in clients.iter_mut() {
        c.send(1000, "k");
    }
    for (i, c) in clients.iter().enumerate() {
        let what = format!("client {i}'s first query");
        let (seq, value, _) = c.take_answer(&s, &what);
        assert_eq!((seq, value.as_str()), (1000, "v"), "{what}");
    }

    // The burst: each client sends 10 queries in one write, all before any answer is
    // taken; query j of client i asks for k<10i+j+1>.
    let expected = |i: u32, seq: u32| format!("v{}", i * EACH + seq + 1);
    let started = Instant::now();
    for (i, c) in clients.iter_mut().enumerate() {
        let mut bytes = Vec::new();
        for seq in 0..EACH {
            key_req(seq, &format!("k{}", i as u32 * EACH + seq + 1)).encode(&mut bytes);
        }
        c.link.write_all(&bytes).unwrap();
    }
    for (i, c) in clients.iter().enumerate() {
        let mut got = vec![false; EACH as usize];
        for n in 0..EACH {
            let what = format!(
                "client {i}'s burst (answer {} of {EACH}, got {got:?})",
                n + 1
            );
            assert!(!s.has_exited(), "the servent died; log:\n{}", s.log());
            let (seq, value, from) = c.take_answer(&s, &what);
            assert!(
                seq < EACH && !got[seq as usize],
                "{what}: unexpected seq {seq} from {from}"
            );
            assert_eq!(value, expected(i as u32, seq), "{what}: seq {seq}");
            got[seq as usize] = true;
        }
    }
    let took = started.elapsed();
    // And nothing more: no answer twice.
    std::thread::sleep(Duration::from_millis(300));
    for (i, c) in clients.iter().enumerate() {
        if let Some((_, from)) = c.inbox.accept(Duration::ZERO) {
            panic!("client {i}: an extra answer connection from {from}");
        }
    }
    println!(
        "under ulimit -n 64: {CLIENTS} clients served, {} burst answers in {took:?}",
        CLIENTS * EACH
    );
    assert!(!s.has_exited(), "the servent died; log:\n{}", s.log());
}
