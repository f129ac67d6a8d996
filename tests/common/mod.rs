//! Helpers for tests that run real processes: servents on ephemeral ports, clients fed
//! by a script, and the independent Python implementation in `tests/interop/`.
//! Every process is killed when its handle is dropped, whether the test passed or not.

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};

use socket2::{Domain, Protocol, Socket, Type};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const SERVENT: &str = env!("CARGO_BIN_EXE_servent");
pub const CLIENT: &str = env!("CARGO_BIN_EXE_client");

/// The answer wait tests give the client: short, but far above loopback latency.
pub const CLIENT_TIMEOUT: &str = "1";

/// A scratch directory removed at drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "tp3kv-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// Writes a key-value file and returns its path.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running servent (ours or the reference one), killed at drop.
pub struct Node {
    child: Child,
    pub addr: SocketAddrV4,
    stderr_path: PathBuf,
}

impl Node {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Its address on loopback, as a neighbour or client would name it.
    pub fn local(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `command` (a servent) and waits for its `listening on IP:PORT` line.
pub fn start_node(mut command: Command, dir: &TempDir, tag: &str) -> Node {
    let stderr_path = dir.0.join(format!("{tag}.log"));
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn servent");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    // A dual-stack servent listens on [::]:PORT; only its port matters here.
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .map(|a| SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, a.port()));
    let Some(addr) = addr else {
        let _ = child.kill();
        let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        panic!("{tag} did not start: stdout {line:?}, log:\n{log}");
    };
    // Keep draining stdout so the servent never blocks on it.
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = stdout.read_to_end(&mut sink);
    });
    Node {
        child,
        addr,
        stderr_path,
    }
}

/// Starts our servent on an ephemeral port with the given store and neighbours.
pub fn servent(dir: &TempDir, tag: &str, store: &str, neighbours: &[&Node]) -> Node {
    servent_with(dir, tag, store, neighbours, &[])
}

/// As [`servent`], with extra command-line arguments before the positional ones.
pub fn servent_with(
    dir: &TempDir,
    tag: &str,
    store: &str,
    neighbours: &[&Node],
    extra: &[&str],
) -> Node {
    let file = dir.file(&format!("{tag}.kv"), store);
    let mut command = Command::new(SERVENT);
    command
        .env("RUST_LOG", "debug")
        .args(extra)
        .arg("0")
        .arg(&file);
    for n in neighbours {
        command.arg(n.local());
    }
    start_node(command, dir, tag)
}

/// What a client printed, and how it ended.
#[derive(Debug)]
pub struct ClientRun {
    pub stdout: String,
    pub stderr: String,
    pub success: bool,
}

impl ClientRun {
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// Runs a client process with `input` on its stdin, waiting at most `limit`.
pub fn run_process(command: Command, input: &str, limit: Duration) -> ClientRun {
    let finished = run_with_input(command, Some(input.to_string()), limit);
    let timed_out = finished.timed_out;
    let run = ClientRun {
        success: finished.code == Some(0),
        stdout: finished.stdout,
        stderr: finished.stderr,
    };
    assert!(
        !timed_out,
        "client did not finish within {limit:?}: {run:?}"
    );
    run
}

/// Our client against `servent`, commands from `input`.
pub fn client(servent: &Node, input: &str) -> ClientRun {
    let mut command = client_command();
    command
        .args(["--timeout", CLIENT_TIMEOUT])
        .arg(servent.local());
    run_process(command, input, Duration::from_secs(60))
}

/// Path of the independent Python implementation.
pub fn reference_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/tp3ref.py")
}

/// A `python3 tp3ref.py ...` command.
pub fn reference(args: &[&str]) -> Command {
    let mut command = Command::new("python3");
    command.arg("-u").arg(reference_script()).args(args);
    command
}

/// The reference servent on an ephemeral port.
pub fn reference_servent(
    dir: &TempDir,
    tag: &str,
    store: &str,
    neighbours: &[&Node],
    bytewise: bool,
) -> Node {
    let file = dir.file(&format!("{tag}.kv"), store);
    let mut command = reference(&["servent"]);
    if bytewise {
        command.arg("--bytewise");
    }
    command.arg("0").arg(&file);
    for n in neighbours {
        command.arg(n.local());
    }
    start_node(command, dir, tag)
}

/// The reference client against `servent`.
pub fn reference_client(servent: &Node, input: &str, bytewise: bool) -> ClientRun {
    let mut command = reference(&["client", "--timeout", CLIENT_TIMEOUT]);
    if bytewise {
        command.arg("--bytewise");
    }
    command.arg(servent.local());
    run_process(command, input, Duration::from_secs(60))
}

/// Waits until `condition` holds, polling; panics with `what` after a generous limit.
pub fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until one of our servents' logs shows `count` neighbour links come up (dialled
/// or accepted), so a query sent next reaches the whole topology.
pub fn wait_links(node: &Node, count: usize) {
    wait_for(
        &format!("{count} neighbour links on {}", node.local()),
        || {
            let log = node.log();
            log.matches("connected to neighbour").count()
                + log.matches("is a neighbour servent").count()
                >= count
        },
    );
}

/// As [`servent_with`], with everything chosen: the listening port (0: any), the
/// neighbours as `ip:port` text (they need not be running yet), and the `RUST_LOG`
/// level (heavy tests use `warn` or `info`; `debug` logs every frame).
pub fn servent_at(
    dir: &TempDir,
    tag: &str,
    port: u16,
    store: &str,
    neighbours: &[String],
    extra: &[&str],
    log_level: &str,
) -> Node {
    let file = dir.file(&format!("{tag}.kv"), store);
    let mut command = Command::new(SERVENT);
    command
        .env("RUST_LOG", log_level)
        .args(extra)
        .arg(port.to_string())
        .arg(&file)
        .args(neighbours);
    start_node(command, dir, tag)
}

impl Node {
    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill only sends a signal to our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed", self.child.id());
    }

    /// Waits up to `limit` for the process to exit, returning its status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its resident set size in KiB, from `/proc/<pid>/status` (Linux).
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_kib("VmRSS:")
    }

    /// The most it was ever resident, in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

/// Raises this test process's own soft descriptor limit to `wanted`.
pub fn raise_own_fd_limit(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    assert!(
        limit.rlim_cur >= wanted,
        "need {wanted} descriptors, the hard limit is {}",
        limit.rlim_max
    );
}

/// A listener whose accept queue is full, so further SYNs go unanswered.
pub fn stalled_listener() -> (Socket, SocketAddrV4, Vec<TcpStream>) {
    let (socket, addr) = loopback_listener(0);
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match TcpStream::connect_timeout(&SocketAddr::V4(addr), Duration::from_millis(300)) {
            Ok(s) => fillers.push(s),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return (socket, addr, fillers),
            Err(e) => panic!("filling the accept queue: {e}"),
        }
    }
    panic!("the accept queue of a backlog-0 listener never filled");
}

/// Serialises, within one test binary, the tests that push a lot of traffic or
/// descriptors, so they do not starve each other.
pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A listener on a free loopback port, with `backlog`, that nobody accepts on.
pub fn loopback_listener(backlog: i32) -> (Socket, SocketAddrV4) {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    socket.listen(backlog).unwrap();
    let addr = socket.local_addr().unwrap().as_socket_ipv4().unwrap();
    (socket, addr)
}

/// A lookup as a client makes it, over raw sockets: `ID(reply port)` and a KEYREQ for
/// `key` on one connection to the servent on loopback `port`, the RESP on a connection
/// to our own reply listener. Returns the value, the answer connection's source and how
/// long it took; an error says what went wrong (nothing within `limit` included).
pub fn raw_query(
    port: u16,
    seq: u32,
    key: &str,
    limit: Duration,
) -> Result<(String, SocketAddr, Duration), String> {
    let replies = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    replies.set_nonblocking(true).unwrap();
    let start = Instant::now();
    let mut link = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let mut bytes = tp3kv::protocol::Frame::Id {
        port: replies.local_addr().unwrap().port(),
    }
    .to_bytes();
    tp3kv::protocol::Frame::KeyReq {
        seq,
        key: tp3kv::protocol::Text::try_from(key).map_err(|e| e.to_string())?,
    }
    .encode(&mut bytes);
    link.write_all(&bytes).map_err(|e| e.to_string())?;
    let (mut answer, from) = loop {
        match replies.accept() {
            Ok(accepted) => break accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if start.elapsed() > limit {
                    return Err(format!("no answer within {limit:?}"));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    };
    answer.set_nonblocking(false).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        if let Some((frame, _)) = tp3kv::protocol::decode(&buf).map_err(|e| e.to_string())? {
            return match frame {
                tp3kv::protocol::Frame::Resp { seq: got, value } if got == seq => {
                    Ok((value.to_lossy().into_owned(), from, start.elapsed()))
                }
                other => Err(format!("not the RESP to seq {seq} from {from}: {other:?}")),
            };
        }
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(format!("no whole RESP from {from} within {limit:?}"));
        }
        answer.set_read_timeout(Some(left)).unwrap();
        match answer.read(&mut chunk) {
            Ok(0) => return Err(format!("{from} closed after {buf:?}")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("reading the RESP from {from}: {e}")),
        }
    }
}

/// How a process that should end by itself ended: its exit code (`None`: killed after
/// `limit`, or by a signal), stdout and stderr.
pub struct Finished {
    pub code: Option<i32>,
    /// Killed after `limit`.
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` with no input until it exits, or kills it after `limit`.
pub fn run_to_end(command: Command, limit: Duration) -> Finished {
    run_with_input(command, None, limit)
}

/// Runs `command` with `input` on its stdin (none: `/dev/null`), collecting its output,
/// until it exits or `limit` passes and it is killed.
fn run_with_input(mut command: Command, input: Option<String>, limit: Duration) -> Finished {
    let stdin = if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    let mut child = command
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let writer = input.map(|input| {
        let mut stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        })
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let (code, timed_out) = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break (status.code(), false);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break (None, true);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if let Some(writer) = writer {
        writer.join().unwrap();
    }
    Finished {
        code,
        timed_out,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

/// The variable that makes the tests needing root mandatory (CI sets it to 1): without
/// it, a user who is not root sees them skipped.
pub const REQUIRE_ROOT: &str = "TP3KV_REQUIRE_ROOT";

/// Whether `TP3KV_REQUIRE_ROOT=1`: a test that needs root fails rather than skips.
pub fn root_required() -> bool {
    std::env::var(REQUIRE_ROOT).is_ok_and(|v| v == "1")
}

/// Says, in one `SKIPPED: ...` line, that a test did not run and why. Straight to
/// stderr: the harness swallows `eprintln!` of tests that pass, and a skip nobody sees
/// reads as a pass.
pub fn skipped(why: std::fmt::Arguments) {
    let _ = writeln!(io::stderr(), "SKIPPED: {why}");
}

/// Our client, in English whatever the locale of the machine running the tests: they
/// read its notes (`no answer received`), which a Portuguese `LANG` would translate.
pub fn client_command() -> Command {
    let mut command = Command::new(CLIENT);
    command.env("LC_ALL", ENGLISH);
    command
}

/// A locale in which our client speaks English.
pub const ENGLISH: &str = "C.UTF-8";

/// Plays a servent of another implementation to one client: accepts it on `listener`
/// and reads its first two frames, which must be ID and KEYREQ. Returns the client's
/// connection, its reply port and the request's seq.
pub fn accept_client_request(listener: &std::net::TcpListener) -> (TcpStream, u16, u32) {
    use tp3kv::protocol::{self, Frame};
    let (mut link, _) = listener.accept().unwrap();
    link.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    while frames.len() < 2 {
        let mut chunk = [0u8; 512];
        let n = link.read(&mut chunk).expect("the client's frames");
        assert!(n > 0, "the client closed after {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
        let (decoded, used, error) = protocol::decode_all(&buf);
        assert!(error.is_none(), "{error:?}");
        frames.extend(decoded);
        buf.drain(..used);
    }
    let (Frame::Id { port }, Frame::KeyReq { seq, .. }) = (&frames[0], &frames[1]) else {
        panic!("expected ID then KEYREQ, got {frames:?}");
    };
    (link, *port, *seq)
}
