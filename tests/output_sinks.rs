//! Real processes writing into output nobody takes: a servent whose stderr is a pipe
//! nobody reads keeps answering (its log lines are dropped, counted and the count
//! logged once the pipe drains), a servent whose stdout or stderr has no reader any
//! more keeps serving, and `client ... | head -1` or `flood-view ... | head -1` end
//! quietly. Each servent case ends with a normal query answered promptly.

mod common;

use std::io::{self, BufRead, BufReader, PipeReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use tp3kv::protocol::Frame;

const FLOOD_VIEW: &str = env!("CARGO_BIN_EXE_flood-view");

/// How long a normal query may take, even while the servent's stderr is blocked.
const PROMPT: Duration = Duration::from_secs(1);

/// A process killed at drop.
struct Proc(Child);

impl Proc {
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return Some(status);
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill only sends a signal to our own child's pid.
        assert_eq!(unsafe { libc::kill(self.0.id() as libc::pid_t, signal) }, 0);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port that was free a moment ago: a servent whose stdout is closed cannot say
/// which port it took.
fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A pipe whose read end is already closed: writing to it fails with EPIPE.
fn closed_pipe() -> io::PipeWriter {
    let (reader, writer) = io::pipe().unwrap();
    drop(reader);
    writer
}

/// Bytes written into `pipe` and not yet read.
fn unread(pipe: &PipeReader) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int, the count of unread bytes, into `n`.
    assert_eq!(
        unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut n) },
        0
    );
    n as usize
}

/// Waits until whoever writes into `pipe` is blocked: what it holds (most of its 64
/// KiB) stops growing.
fn wait_full(pipe: &PipeReader) {
    let mut last = 0;
    wait_for("the pipe to fill", || {
        std::thread::sleep(Duration::from_millis(100));
        let now = unread(pipe);
        let full = now == last && now >= 32 * 1024;
        last = now;
        full
    });
}

/// Starts a servent on `port` with RUST_LOG=debug and the stdout and stderr given;
/// waits until it accepts connections.
fn start_servent(
    dir: &TempDir,
    port: u16,
    store: &str,
    stdout: impl Into<Stdio>,
    stderr: impl Into<Stdio>,
) -> Proc {
    let file = dir.file("s.kv", store);
    let mut servent = Proc(
        Command::new(SERVENT)
            .env("RUST_LOG", "debug")
            .arg(port.to_string())
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn servent"),
    );
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = servent.0.try_wait().unwrap() {
            panic!("the servent ended at start: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the servent never listened on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    servent
}

/// Asserts that a normal query for `k` is answered `v` within [`PROMPT`]; returns how
/// long it took.
fn answered_promptly(port: u16, when: &str) -> Duration {
    let (value, _, took) = raw_query(port, 7, "k", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{when}: the query failed: {e}"));
    assert_eq!(value, "v");
    assert!(took < PROMPT, "{when}: the answer took {took:?}");
    took
}

/// Makes the servent log a few lines per connection (accepted, ID, client, gone, at
/// debug level) `connections` times. Returns how long that took.
fn chatter(port: u16, connections: usize) -> Duration {
    let id = Frame::Id { port: 9 }.to_bytes();
    let start = Instant::now();
    for i in 0..connections {
        let to = SocketAddr::from(([127, 0, 0, 1], port));
        let mut link = TcpStream::connect_timeout(&to, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connection {i}: {e} after {:?}", start.elapsed()));
        link.write_all(&id).unwrap();
    }
    start.elapsed()
}

/// Reads `pipe` in a thread until it shows `what` (or ends); returns what it read.
fn read_until(pipe: PipeReader, what: &'static str, limit: Duration) -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut text = String::new();
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            text.push_str(&line);
            line.clear();
            if text.contains(what) {
                break;
            }
        }
        let _ = tx.send(text);
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("no {what:?} read within {limit:?}"))
}

#[test]
fn a_servent_whose_stderr_nobody_reads_still_answers_and_counts_what_it_dropped() {
    let _heavy = heavy();
    let dir = TempDir::new("sinks-unread");
    let port = free_port();
    let (stderr, stderr_writer) = io::pipe().unwrap();
    let servent = start_servent(&dir, port, "k v\n", Stdio::null(), stderr_writer);
    answered_promptly(port, "at start");

    // Some hundreds of KB of debug lines: far more than the pipe (64 KiB) and the
    // servent's buffer (256 KiB) hold.
    let took = chatter(port, 2000);
    wait_full(&stderr);
    let full = unread(&stderr);
    // (The first waits behind the 2000 connections still in the accept queue.)
    let first = answered_promptly(port, "with stderr blocked");
    let second = answered_promptly(port, "with stderr still blocked");
    eprintln!(
        "2000 logged connections in {took:?}; {full} bytes unread in the pipe; \
         queries answered in {first:?} and {second:?}"
    );

    // Read at last: the lines it had queued, then how many it dropped.
    let text = read_until(stderr, "log lines dropped", Duration::from_secs(20));
    let notice = text
        .lines()
        .find(|l| l.contains("log lines dropped"))
        .unwrap();
    assert!(
        notice.contains(&format!("servent:{port} WARN ")),
        "{notice}"
    );
    let dropped: u64 = notice
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap();
    assert!(dropped > 0, "{notice}");
    eprintln!("{notice}");
    answered_promptly(port, "after stderr drained");
    drop(servent);
}

#[test]
fn a_servent_whose_stderr_nobody_reads_still_exits_on_sigterm() {
    let _heavy = heavy();
    let dir = TempDir::new("sinks-exit");
    let port = free_port();
    let (stderr, stderr_writer) = io::pipe().unwrap();
    let mut servent = start_servent(&dir, port, "k v\n", Stdio::null(), stderr_writer);
    chatter(port, 2000);
    wait_full(&stderr);
    answered_promptly(port, "with stderr blocked");
    let start = Instant::now();
    servent.signal(libc::SIGTERM);
    let status = servent.wait_exit(Duration::from_secs(10));
    let took = start.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?} after {took:?}"
    );
    eprintln!("exited {took:?} after SIGTERM with stderr blocked");
    drop(stderr);
}

#[test]
fn a_servent_whose_stdout_is_closed_serves() {
    let dir = TempDir::new("sinks-stdout");
    let port = free_port();
    let log = dir.0.join("s.log");
    let mut servent = start_servent(
        &dir,
        port,
        "k v\n",
        closed_pipe(),
        std::fs::File::create(&log).unwrap(),
    );
    answered_promptly(port, "with stdout closed");
    assert!(servent.0.try_wait().unwrap().is_none());
    servent.signal(libc::SIGTERM);
    let status = servent.wait_exit(Duration::from_secs(10));
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}: {log}");
    assert!(log.contains("(not printed: stdout: Broken pipe"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_servent_whose_stdout_and_stderr_are_closed_serves() {
    let dir = TempDir::new("sinks-both");
    let port = free_port();
    let mut servent = start_servent(&dir, port, "k v\n", closed_pipe(), closed_pipe());
    chatter(port, 100);
    answered_promptly(port, "with stdout and stderr closed");
    servent.signal(libc::SIGTERM);
    let status = servent.wait_exit(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[test]
fn a_client_whose_reader_went_away_ends_quietly() {
    let dir = TempDir::new("sinks-client");
    let s1 = servent(&dir, "s1", "k v\n", &[]);
    // `client ... | head -1`: two answers, the reader gone after the first.
    let mut client = Proc(
        client_command()
            .args(["--timeout", "0.5"])
            .arg(s1.local())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    client
        .0
        .stdin
        .take()
        .unwrap()
        .write_all(b"? k\n? k\n? k\n")
        .unwrap();
    let mut stdout = BufReader::new(client.0.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first.trim(), format!("v {}", s1.local()));
    drop(stdout);
    let status = client.wait_exit(Duration::from_secs(20));
    let mut stderr = String::new();
    client
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}: {stderr}");
    assert_eq!(stderr, "");
    a_client_gets_its_answer(&s1);
}

/// The servent is unharmed: a normal client still gets its answer.
fn a_client_gets_its_answer(s1: &Node) {
    let run = client(s1, "? k\n");
    assert_eq!(run.lines(), [format!("v {}", s1.local())], "{run:?}");
}

#[test]
fn flood_view_into_a_closed_pipe_ends_quietly() {
    let dir = TempDir::new("sinks-flood-view");
    let trace = dir.0.join("s1.jsonl");
    let s1 = servent_with(
        &dir,
        "s1",
        "k v\n",
        &[],
        &["--trace", trace.to_str().unwrap()],
    );
    a_client_gets_its_answer(&s1);
    wait_for("the RESP in the trace", || {
        std::fs::read_to_string(&trace).is_ok_and(|t| t.contains("\"answered\""))
    });
    for dot in [false, true] {
        let out = flood_view_into_closed_pipe(&trace, dot);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    }
}

fn flood_view_into_closed_pipe(trace: &Path, dot: bool) -> std::process::Output {
    let mut command = Command::new(FLOOD_VIEW);
    if dot {
        command.arg("--dot");
    }
    command
        .arg(trace)
        .stdin(Stdio::null())
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// A `RUST_LOG` that would log nothing (a misspelt level, a name that is no module) is
/// said in one line, and the servent logs at the default level instead of in silence.
#[test]
fn a_filter_that_would_log_nothing_is_said_and_the_default_used() {
    let dir = TempDir::new("sinks-bad-filter");
    for (tag, spec, why) in [
        ("misspelt", "servent=dbug", "\"dbug\" is not a level"),
        ("unknown", "bogus", "\"bogus\" is neither a level"),
    ] {
        let node = servent_at(&dir, tag, 0, "k v\n", &[], &[], spec);
        let warning = format!("servent: warning: RUST_LOG=\"{spec}\" ignored: {why}");
        wait_for("the warning and an INFO line", || {
            let log = node.log();
            log.contains(&warning) && log.contains(" INFO ")
        });
        let log = node.log();
        assert_eq!(log.matches("RUST_LOG=").count(), 1, "{log}");
        assert!(!log.contains("invalid logging spec"), "{log}");
        assert!(!log.contains(" DEBUG "), "{log}");
    }
}
