//! Attacks on a real servent process, each ending with "and a normal query is still
//! answered": hostile bytes, role violations, an inflated TTL, idle and surplus
//! connections, unreachable and stalled reply addresses, a neighbour that never reads,
//! neighbours that die, restart or start late, three million queries, and signals.
//!
//! The heavy tests take the `heavy()` lock so they do not starve each other.

mod common;

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};

use std::time::{Duration, Instant};

use common::*;
use socket2::{Domain, Protocol, Socket, Type};
use tp3kv::protocol::{decode, Flood, Frame, Text};

/// Every servent attacked here holds `k`, so a normal query is `? k` → `v IP:PORT`.
const STORE: &str = "k v\n";

/// A generous limit for anything that should happen "soon".
const LIMIT: Duration = Duration::from_secs(20);

fn text(s: &str) -> Text {
    Text::try_from(s).unwrap()
}

fn key_flood(ttl: u16, seq: u32, client: SocketAddrV4, key: &str) -> Frame {
    Frame::KeyFlood(Flood {
        ttl,
        seq,
        client,
        text: text(key),
    })
}

/// Our client asks `node` for `k`; exactly `node` answers `v`.
fn normal_query(node: &Node) {
    let run = client(node, "? k\n");
    assert!(run.success, "{run:?}");
    assert_eq!(
        run.lines(),
        [format!("v {}", node.local())],
        "{run:?}\nservent log:\n{}",
        node.log()
    );
}

/// A reply listener on loopback, as a client has.
struct Replies(TcpListener);

impl Replies {
    fn new() -> Replies {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Replies(listener)
    }

    fn addr(&self) -> SocketAddrV4 {
        match self.0.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(a) => panic!("{a}"),
        }
    }

    /// The next RESP within `limit`: its seq, value and the connection's source address.
    fn next(&self, limit: Duration) -> Option<(u32, String, SocketAddr)> {
        let start = Instant::now();
        let (mut stream, from) = loop {
            match self.0.accept() {
                Ok(accepted) => break accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if start.elapsed() > limit {
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            if let Some((frame, _)) = decode(&buf).unwrap() {
                let Frame::Resp { seq, value } = frame else {
                    panic!("not a RESP from {from}: {frame:?}")
                };
                return Some((seq, value.to_lossy().into_owned(), from));
            }
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "{from} closed before a whole RESP: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A hand-made client: sends ID(reply port) and a KEYREQ for `key`, and returns the
/// value, who answered, and how long the answer took.
fn ask(node: &Node, key: &str) -> (String, SocketAddr, Duration) {
    let replies = Replies::new();
    let start = Instant::now();
    let mut link = TcpStream::connect(node.local()).unwrap();
    let mut bytes = Frame::Id {
        port: replies.addr().port(),
    }
    .to_bytes();
    Frame::KeyReq {
        seq: 1,
        key: text(key),
    }
    .encode(&mut bytes);
    link.write_all(&bytes).unwrap();
    let Some((seq, value, from)) = replies.next(LIMIT) else {
        panic!(
            "no answer to {key:?} from {} within {LIMIT:?}; log:\n{}",
            node.local(),
            node.log()
        )
    };
    assert_eq!(seq, 1);
    (value, from, start.elapsed())
}

/// Whether the servent closed `stream` (EOF or reset) within `limit`. Our side stays
/// open for writing throughout.
fn closed_by_peer(stream: &mut TcpStream, limit: Duration) -> bool {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) =>
            {
                return true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn assert_closed(stream: &mut TcpStream, node: &Node) {
    assert!(
        closed_by_peer(stream, LIMIT),
        "the servent did not close the connection; log:\n{}",
        node.log()
    );
}

fn wait_log(node: &Node, needle: &str) {
    let start = Instant::now();
    while !node.log().contains(needle) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {needle:?} in the log of {}:\n{}",
            node.local(),
            node.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port nobody listens on (for now).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `servent:PORT: exiting: ...` line.
fn summary(log: &str) -> Option<&str> {
    log.lines()
        .find(|l| l.starts_with("servent:") && l.contains(": exiting: "))
}

/// The number after `name ` in a summary line.
fn counter(summary: &str, name: &str) -> u64 {
    let at = summary
        .find(&format!("{name} "))
        .unwrap_or_else(|| panic!("no {name:?} in {summary:?}"));
    summary[at + name.len() + 1..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Asks `node` for its counters (SIGUSR1) and returns the line it logs.
fn counters_now(node: &Node) -> String {
    let before = node.log().matches(" counters: ").count();
    node.signal(libc::SIGUSR1);
    wait_for("a counters line", || {
        node.log().matches(" counters: ").count() > before
    });
    let log = node.log();
    log.lines()
        .rev()
        .find(|l| l.contains(" counters: "))
        .unwrap()
        .to_string()
}

/// Stops `node` with `signal` and returns its summary line, checking it exited 0.
fn stop(node: &mut Node, signal: i32) -> String {
    node.signal(signal);
    let status = node.wait_exit(LIMIT).expect("servent did not exit");
    let log = node.log();
    assert!(status.success(), "exit status {status:?}; log:\n{log}");
    summary(&log)
        .unwrap_or_else(|| panic!("no summary line:\n{log}"))
        .to_string()
}

// ---------------------------------------------------------------------------------
// 1. Hostile bytes and role violations
// ---------------------------------------------------------------------------------

/// Sends `bytes` on a new connection to `s`, and checks that the servent closes that
/// connection (we keep our side open), logs `reason` for it, and still answers others.
fn closed_for(s: &Node, bytes: &[u8], reason: &str) {
    let mut conn = TcpStream::connect(s.local()).unwrap();
    conn.write_all(bytes).unwrap();
    assert_closed(&mut conn, s);
    wait_log(
        s,
        &format!(
            "closing connection with {}: {reason}",
            conn.local_addr().unwrap()
        ),
    );
    normal_query(s);
}

#[test]
fn garbage_bytes_close_the_connection() {
    let dir = TempDir::new("def-garbage");
    let s = servent(&dir, "s", STORE, &[]);
    // "GE" is type 0x4745, shown with its bytes as text.
    closed_for(
        &s,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\xff\xfe\x00\x01\x02",
        "protocol error: unknown frame type 0x4745 (\"GE\"): not a tp3kv servent or client?",
    );
}

#[test]
fn unknown_frame_type_closes_the_connection() {
    let dir = TempDir::new("def-type");
    let s = servent(&dir, "s", STORE, &[]);
    let mut bytes = Frame::Id { port: 0 }.to_bytes();
    bytes.extend_from_slice(&[0x00, 0x0a, 0, 0, 0, 1]);
    closed_for(
        &s,
        &bytes,
        "protocol error: unknown frame type 0x000a: not a tp3kv servent or client?",
    );
}

#[test]
fn length_401_closes_before_any_body_is_sent() {
    let dir = TempDir::new("def-401");
    let s = servent(&dir, "s", STORE, &[]);
    let replies = Replies::new();
    let mut conn = TcpStream::connect(s.local()).unwrap();
    let mut bytes = Frame::Id {
        port: replies.addr().port(),
    }
    .to_bytes();
    // KEYREQ seq 1, len 401: the header alone, not one byte of the key.
    bytes.extend_from_slice(&[0x00, 0x05, 0, 0, 0, 1, 0x01, 0x91]);
    conn.write_all(&bytes).unwrap();
    // We keep our write side open: the close must come from the servent.
    assert_closed(&mut conn, &s);
    wait_log(
        &s,
        &format!(
            "closing connection with {}: protocol error: frame type 5 says length 401, \
             over the limit of 400",
            conn.local_addr().unwrap()
        ),
    );
    assert!(replies.next(Duration::ZERO).is_none());
    normal_query(&s);
}

#[test]
fn a_frame_before_id_closes_the_connection() {
    let dir = TempDir::new("def-noid");
    let s = servent(&dir, "s", STORE, &[]);
    let mut conn = TcpStream::connect(s.local()).unwrap();
    let request = Frame::KeyReq {
        seq: 3,
        key: text("k"),
    };
    conn.write_all(&request.to_bytes()).unwrap();
    assert_closed(&mut conn, &s);
    wait_log(
        &s,
        "closing: KEYREQ is not allowed from a connection that has not sent ID",
    );
    assert!(!s.log().contains("found, answering"), "{}", s.log());
    normal_query(&s);
}

#[test]
fn a_client_sending_keyflood_is_closed_and_not_obeyed() {
    let dir = TempDir::new("def-clientflood");
    let s = servent(&dir, "s", STORE, &[]);
    let replies = Replies::new();
    let mut conn = TcpStream::connect(s.local()).unwrap();
    // A client (ID port > 0) posing as a servent, with a query the servent would
    // answer: no answer may go to the address inside the flood.
    let mut bytes = Frame::Id {
        port: replies.addr().port(),
    }
    .to_bytes();
    key_flood(3, 42, replies.addr(), "k").encode(&mut bytes);
    conn.write_all(&bytes).unwrap();
    wait_log(&s, "closing: KEYFLOOD is not allowed from a client");
    assert_closed(&mut conn, &s);
    if let Some(answer) = replies.next(Duration::from_secs(1)) {
        panic!("the servent obeyed the flood: {answer:?}\n{}", s.log());
    }
    normal_query(&s);
}

/// A fake neighbour claims TTL 65535 (one public implementation wraps a TTL of 0 to
/// 65535): the first servent answers but treats the TTL as spent, so B, C, D and E
/// behind it never hear of the query; it is logged and counted as an anomaly.
#[test]
fn ttl_65535_from_a_fake_neighbour_is_treated_as_spent() {
    let dir = TempDir::new("def-ttl");
    let e = servent(&dir, "e", "all a5\n", &[]);
    let d = servent(&dir, "d", "all a4\n", &[&e]);
    let c = servent(&dir, "c", "all a3\n", &[&d]);
    let b = servent(&dir, "b", "all a2\n", &[&c]);
    let a = servent(&dir, "a", "k v\nall a1\n", &[&b]);
    for (node, links) in [(&a, 1), (&b, 2), (&c, 2), (&d, 2), (&e, 1)] {
        wait_links(node, links);
    }
    let replies = Replies::new();
    let mut fake = TcpStream::connect(a.local()).unwrap();
    let mut bytes = Frame::Id { port: 0 }.to_bytes();
    key_flood(65535, 77, replies.addr(), "all").encode(&mut bytes);
    fake.write_all(&bytes).unwrap();

    let (seq, value, from) = replies.next(LIMIT).expect("A's answer");
    assert_eq!((seq, value.as_str()), (77, "a1"));
    assert_eq!(from.to_string(), a.local());
    if let Some(extra) = replies.next(Duration::from_secs(1)) {
        panic!("a second answer: {extra:?}");
    }
    wait_log(&a, "TTL 65535 is above the protocol's 3");
    assert!(a.log().contains("TTL 0, not forwarded"), "{}", a.log());
    for node in [&b, &c, &d, &e] {
        assert!(!node.log().contains("seq: 77"), "{}", node.log());
    }
    a.signal(libc::SIGUSR1);
    wait_log(&a, "(TTL above 3: 1)");
    normal_query(&a);
}

/// A topology flood whose info ends in whitespace (a peer's sloppy formatting): the
/// whitespace is trimmed before the servent adds its own address, so the answers have
/// one space between entries.
#[test]
fn trailing_whitespace_in_a_topology_info_is_trimmed() {
    let dir = TempDir::new("def-topo-ws");
    let b = servent(&dir, "b", "other value\n", &[]);
    let a = servent(&dir, "a", STORE, &[&b]);
    wait_links(&a, 1);
    wait_links(&b, 1);
    let replies = Replies::new();
    let mut fake = TcpStream::connect(a.local()).unwrap();
    let mut bytes = Frame::Id { port: 0 }.to_bytes();
    Frame::TopoFlood(Flood {
        ttl: 1,
        seq: 78,
        client: replies.addr(),
        text: text("10.9.9.9:5000 \t\r\n"),
    })
    .encode(&mut bytes);
    fake.write_all(&bytes).unwrap();
    let mut answers: Vec<String> = (0..2)
        .map(|_| replies.next(LIMIT).expect("two answers").1)
        .collect();
    answers.sort();
    let mut expected = vec![
        format!("10.9.9.9:5000 {}", a.local()),
        format!("10.9.9.9:5000 {} {}", a.local(), b.local()),
    ];
    expected.sort();
    assert_eq!(answers, expected);
    normal_query(&a);
}

// ---------------------------------------------------------------------------------
// 2. Idle and surplus connections
// ---------------------------------------------------------------------------------

#[test]
fn idle_connections_are_closed_after_the_id_timeout() {
    const IDLE: usize = 1500;
    let _heavy = heavy();
    raise_own_fd_limit(IDLE as u64 + 256);
    let dir = TempDir::new("def-idle");
    let s = servent_at(&dir, "s", 0, STORE, &[], &["--id-timeout", "1"], "info");
    let started = Instant::now();
    let mut idle: Vec<TcpStream> = (0..IDLE)
        .map(|i| {
            TcpStream::connect(s.local())
                .unwrap_or_else(|e| panic!("connection {i}: {e}\n{}", s.log()))
        })
        .collect();
    let opened = started.elapsed();
    // While they are open, a query is answered.
    let (value, from, took) = ask(&s, "k");
    assert_eq!((value.as_str(), from.to_string()), ("v", s.local()));
    println!("{IDLE} idle connections opened in {opened:?}; a query took {took:?}");
    // Then the servent closes every one of them.
    for (i, stream) in idle.iter_mut().enumerate() {
        assert!(
            closed_by_peer(stream, LIMIT),
            "idle connection {i} still open"
        );
    }
    // The first ones are logged; then the lines are rate-limited (any peer can make
    // them repeat), and what was held back is counted in the log soon after.
    wait_log(
        &s,
        "more lines of connections closed not logged (too many too fast)",
    );
    let log = s.log();
    assert!(log.contains(&format!(
        "closing connection with {}: no ID within 1s",
        idle[0].local_addr().unwrap()
    )));
    let logged = log.matches("no ID within 1s").count();
    assert!((20..IDLE / 2).contains(&logged), "{logged} lines logged");
    drop(idle);
    normal_query(&s);
}

#[test]
fn connections_past_the_cap_are_closed_at_once() {
    const CAP: usize = 20;
    const OPENED: usize = 50;
    let dir = TempDir::new("def-cap");
    let mut s = servent_at(
        &dir,
        "s",
        0,
        STORE,
        &[],
        &["--max-connections", "20", "--id-timeout", "60"],
        "debug",
    );
    let mut conns: Vec<TcpStream> = (0..OPENED)
        .map(|_| TcpStream::connect(s.local()).unwrap())
        .collect();
    // The surplus is closed at once (the ID timeout is a minute away); the first 20
    // stay open.
    let mut closed = vec![false; OPENED];
    wait_for("the surplus connections closed", || {
        for (i, conn) in conns.iter_mut().enumerate() {
            if !closed[i] {
                closed[i] = closed_by_peer(conn, Duration::from_millis(1));
            }
        }
        closed.iter().filter(|&&c| c).count() >= OPENED - CAP
    });
    std::thread::sleep(Duration::from_millis(200));
    for (i, conn) in conns.iter_mut().enumerate() {
        if !closed[i] {
            closed[i] = closed_by_peer(conn, Duration::from_millis(1));
        }
    }
    assert_eq!(
        closed.iter().filter(|&&c| c).count(),
        OPENED - CAP,
        "{closed:?}"
    );
    assert!(
        closed[..CAP].iter().all(|&c| !c) && closed[CAP..].iter().all(|&c| c),
        "the first {CAP} should be the ones kept: {closed:?}"
    );
    wait_log(&s, "refused: 20 connections open, the limit");
    // At the cap, one more (a would-be client) is closed too.
    let mut one_more = TcpStream::connect(s.local()).unwrap();
    assert_closed(&mut one_more, &s);

    // Some close; then a normal query gets in.
    let mut kept: Vec<TcpStream> = conns
        .into_iter()
        .zip(&closed)
        .filter(|(_, &c)| !c)
        .map(|(conn, _)| conn)
        .collect();
    drop(kept.drain(..CAP / 2));
    wait_for("the servent to see 10 connections close", || {
        s.log().matches(" closed by peer").count() >= CAP / 2
    });
    normal_query(&s);
    let line = stop(&mut s, libc::SIGTERM);
    assert_eq!(
        counter(&line, "connections accepted"),
        CAP as u64 + 1,
        "{line}"
    );
    assert_eq!(
        counter(&line, "(refused"),
        (OPENED - CAP) as u64 + 1,
        "{line}"
    );
    drop(kept);
}

// ---------------------------------------------------------------------------------
// 3, 4. Reply addresses that are closed or never accept
// ---------------------------------------------------------------------------------

#[test]
fn an_answer_to_a_closed_reply_port_is_lost_and_nothing_else() {
    let dir = TempDir::new("def-closedreply");
    let s = servent(&dir, "s", STORE, &[]);
    let port = free_port();
    let mut conn = TcpStream::connect(s.local()).unwrap();
    let mut bytes = Frame::Id { port }.to_bytes();
    Frame::KeyReq {
        seq: 5,
        key: text("k"),
    }
    .encode(&mut bytes);
    conn.write_all(&bytes).unwrap();
    // Refused: tried again after 5, 25, 125 and 625 ms (a late listener would have had
    // it), then given up.
    wait_log(
        &s,
        &format!("answer to 127.0.0.1:{port} lost: connection refused (5 tries)"),
    );
    assert_eq!(
        s.log()
            .matches(&format!("answer to 127.0.0.1:{port}: connection refused"))
            .count(),
        5,
        "{}",
        s.log()
    );
    normal_query(&s);
    // The misled client's own link is still fine.
    assert!(!closed_by_peer(&mut conn, Duration::from_millis(100)));
}

#[test]
fn an_answer_to_a_reply_port_that_never_accepts_times_out() {
    let dir = TempDir::new("def-stalledreply");
    let s = servent_at(
        &dir,
        "s",
        0,
        STORE,
        &[],
        &["--answer-timeout", "1"],
        "debug",
    );
    let (_listener, stalled, _fillers) = stalled_listener();
    let mut conn = TcpStream::connect(s.local()).unwrap();
    let mut bytes = Frame::Id {
        port: stalled.port(),
    }
    .to_bytes();
    Frame::KeyReq {
        seq: 6,
        key: text("k"),
    }
    .encode(&mut bytes);
    conn.write_all(&bytes).unwrap();
    wait_log(
        &s,
        &format!("query {stalled}#6: key \"k\" found, answering"),
    );
    // Meanwhile, another client is answered.
    let (value, from, during) = ask(&s, "k");
    assert_eq!((value.as_str(), from.to_string()), ("v", s.local()));
    let lost = format!("answer to {stalled} lost: timed out");
    let still_pending = !s.log().contains(&lost);
    wait_log(&s, &lost);
    // And afterwards.
    let (value, from, after) = ask(&s, "k");
    assert_eq!((value.as_str(), from.to_string()), ("v", s.local()));
    println!(
        "answered in {during:?} while the stalled answer was {}pending, {after:?} after",
        if still_pending { "" } else { "no longer " }
    );
    assert!(during < Duration::from_secs(5) && after < Duration::from_secs(5));
    normal_query(&s);
}

// ---------------------------------------------------------------------------------
// 4b. Many neighbours that never read: the budget of all outboxes together
// ---------------------------------------------------------------------------------

/// A neighbour with a tiny receive buffer that says ID(0) and never reads.
fn stuck_neighbour(servent: &Node) -> TcpStream {
    let stuck = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    stuck.set_recv_buffer_size(4096).unwrap();
    stuck
        .connect(&SocketAddr::from(servent.addr).into())
        .unwrap();
    let mut stuck = TcpStream::from(stuck);
    stuck.write_all(&Frame::Id { port: 0 }.to_bytes()).unwrap();
    stuck
}

/// A neighbour that reads and discards whatever comes, to pour floods in through.
fn injector(servent: &Node) -> TcpStream {
    let mut injector = TcpStream::connect(servent.addr).unwrap();
    injector
        .write_all(&Frame::Id { port: 0 }.to_bytes())
        .unwrap();
    let mut drain = injector.try_clone().unwrap();
    std::thread::spawn(move || io::copy(&mut drain, &mut io::sink()));
    injector
}

/// `count` distinct KEYFLOODs of 396-byte keys nobody holds, from seq `first`.
fn big_floods(first: u32, count: u32) -> Vec<u8> {
    let nobody = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9);
    let mut bytes = Vec::new();
    for seq in first..first + count {
        key_flood(3, seq, nobody, &format!("{seq:0396}")).encode(&mut bytes);
    }
    bytes
}

/// 150 neighbours that never read, while 396-byte floods pass: each outbox stays under
/// its own cap, but together they pass `--max-buffered`, and the peers with the most
/// waiting are dropped; the servent's memory stays near the budget.
#[test]
fn neighbours_that_never_read_cannot_take_more_than_the_buffer_budget() {
    const STUCK: usize = 150;
    const BUDGET: u64 = 8 << 20;
    let _heavy = heavy();
    raise_own_fd_limit(STUCK as u64 + 256);
    let dir = TempDir::new("def-budget");
    let budget = BUDGET.to_string();
    let a = servent_at(
        &dir,
        "a",
        0,
        STORE,
        &[],
        &["--max-buffered", &budget],
        "info",
    );
    let stuck: Vec<TcpStream> = (0..STUCK).map(|_| stuck_neighbour(&a)).collect();
    let mut injector = injector(&a);
    // Not from the log: lines about peers coming and going are rate-limited.
    wait_for("every link open, in the counters", || {
        counter(&counters_now(&a), "links open") == STUCK as u64 + 1
    });
    let idle = a.rss_kib().expect("A's VmRSS");

    let mut seq = 0;
    let started = Instant::now();
    while !a.log().contains("(--max-buffered)") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no peer dropped over the budget after {seq} floods; log:\n{}",
            a.log()
        );
        injector.write_all(&big_floods(seq, 500)).unwrap();
        seq += 500;
        std::thread::sleep(Duration::from_millis(20));
    }
    // And more, so every stuck peer would pass the budget many times over.
    injector.write_all(&big_floods(seq, 2000)).unwrap();
    normal_query(&a);
    let peak = a.peak_rss_kib().expect("A's VmHWM");
    let log = a.log();
    let dropped = counter(&counters_now(&a), "over the buffer budget:");
    println!(
        "{seq} floods into A with {STUCK} neighbours that never read: {dropped} dropped over \
         the budget; RSS idle {:.1} MiB, peak {:.1} MiB (budget {} MiB)",
        idle as f64 / 1024.0,
        peak as f64 / 1024.0,
        BUDGET >> 20
    );
    assert!(
        peak < idle + (BUDGET >> 10) + 8 * 1024,
        "peak RSS {peak} KiB, idle {idle} KiB, budget {} KiB",
        BUDGET >> 10
    );
    assert!(
        log.contains("the most of any peer, while all peers together leave"),
        "{log}"
    );
    drop(stuck);
}

/// A neighbour whose output has not moved for `--stall-timeout` is dropped, though it
/// is far under every size limit.
#[test]
fn a_neighbour_whose_output_stalls_is_dropped() {
    let dir = TempDir::new("def-stall");
    let a = servent_at(
        &dir,
        "a",
        0,
        STORE,
        &[],
        &["--stall-timeout", "1", "--max-outbox", "67108864"],
        "info",
    );
    let stuck = stuck_neighbour(&a);
    let stuck_addr = stuck.local_addr().unwrap();
    let mut injector = injector(&a);
    wait_links(&a, 2);
    // About 8 MiB: more than the kernel holds for a peer that never reads (a send
    // buffer may grow to 4 MiB), far under the outbox limit set above.
    injector.write_all(&big_floods(0, 20_000)).unwrap();
    wait_log(
        &a,
        &format!(
            "closing connection with {stuck_addr}: peer is not reading: none of its output \
             taken for 1s (--stall-timeout)"
        ),
    );
    assert!(!a.log().contains("over the limit of"), "{}", a.log());
    normal_query(&a);
    drop(stuck);
}

// ---------------------------------------------------------------------------------
// 5. A neighbour that never reads
// ---------------------------------------------------------------------------------

#[test]
fn a_neighbour_that_never_reads_is_dropped() {
    const FLOODS: u32 = 60_000;
    let _heavy = heavy();
    let dir = TempDir::new("def-slow");
    let mut b = servent_at(&dir, "b", 0, "bkey bval\n", &[], &[], "info");
    let mut a = servent_at(
        &dir,
        "a",
        0,
        STORE,
        &[b.local()],
        &["--max-outbox", "262144"],
        "info",
    );
    wait_links(&a, 1);

    // The stuck neighbour: a tiny receive buffer, and it never reads.
    let stuck = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    stuck.set_recv_buffer_size(4096).unwrap();
    stuck.connect(&SocketAddr::from(a.addr).into()).unwrap();
    let stuck_addr = stuck.local_addr().unwrap().as_socket().unwrap();
    let mut stuck = TcpStream::from(stuck);
    stuck.write_all(&Frame::Id { port: 0 }.to_bytes()).unwrap();

    // The injector: a neighbour too, so it reads (and discards) whatever comes.
    let mut injector = TcpStream::connect(a.addr).unwrap();
    injector
        .write_all(&Frame::Id { port: 0 }.to_bytes())
        .unwrap();
    let mut drain = injector.try_clone().unwrap();
    std::thread::spawn(move || io::copy(&mut drain, &mut io::sink()));
    wait_links(&a, 3);

    let nobody = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9);
    let started = Instant::now();
    let mut batch = Vec::new();
    for seq in 0..FLOODS {
        key_flood(3, seq, nobody, &format!("{seq:0100}")).encode(&mut batch);
        if batch.len() >= 1 << 20 {
            if let Err(e) = injector.write_all(&batch) {
                panic!("injecting: {e}; A's log:\n{}", a.log());
            }
            batch.clear();
        }
    }
    // Last, a query only B can answer: its answer means B has had all the floods.
    let replies = Replies::new();
    key_flood(3, FLOODS, replies.addr(), "bkey").encode(&mut batch);
    injector.write_all(&batch).unwrap();
    let mut answer = None;
    while answer.is_none() && started.elapsed() < Duration::from_secs(60) {
        // Dropping the stuck peer must not take A down.
        assert!(!a.has_exited(), "A died; its log:\n{}", a.log());
        answer = replies.next(Duration::from_millis(100));
    }
    let took = started.elapsed();
    let Some((_, value, from)) = answer else {
        panic!("B never answered; A:\n{}\nB:\n{}", a.log(), b.log())
    };
    assert_eq!((value.as_str(), from.to_string()), ("bval", b.local()));

    let log = a.log();
    assert!(
        log.contains(&format!(
            "closing connection with {stuck_addr}: peer is not reading: "
        )) && log.contains("over the limit of 262144"),
        "{log}"
    );
    assert_eq!(log.matches("peer is not reading").count(), 1, "{log}");
    let rss = a.rss_kib().expect("A's VmRSS");
    println!(
        "{FLOODS} floods through A in {took:?}; A's RSS {:.1} MiB",
        rss as f64 / 1024.0
    );
    assert!(rss < 64 * 1024, "A's RSS is {rss} KiB");
    normal_query(&a);

    let line = stop(&mut b, libc::SIGTERM);
    assert!(
        counter(&line, "frames in") > u64::from(FLOODS),
        "B missed floods: {line}"
    );
    let line = stop(&mut a, libc::SIGTERM);
    assert_eq!(counter(&line, "slow peers dropped"), 1, "{line}");
    drop(stuck);
}

// ---------------------------------------------------------------------------------
// 6, 7. Neighbours that die, restart, or start late
// ---------------------------------------------------------------------------------

#[test]
fn a_neighbour_killed_and_restarted_is_dialled_again() {
    let dir = TempDir::new("def-restart");
    let mut b = servent_at(&dir, "b1", 0, "bkey bval1\n", &[], &[], "debug");
    let port = b.port();
    let a = servent(&dir, "a", STORE, &[&b]);
    wait_links(&a, 1);
    assert_eq!(ask(&a, "bkey").0, "bval1");

    b.signal(libc::SIGKILL);
    b.wait_exit(LIMIT).expect("B did not die");
    wait_log(&a, &format!("neighbour 127.0.0.1:{port} gone"));
    wait_log(&a, &format!("neighbour 127.0.0.1:{port}: re-dialling in"));
    wait_log(&a, &format!("dial 127.0.0.1:{port} failed"));

    let b2 = servent_at(&dir, "b2", port, "bkey bval2\n", &[], &[], "debug");
    assert_eq!(b2.port(), port);
    wait_for("A to connect to B again", || {
        a.log().matches("connected to neighbour").count() >= 2
    });
    let (value, from, _) = ask(&a, "bkey");
    assert_eq!((value.as_str(), from.to_string()), ("bval2", b2.local()));
    normal_query(&a);
}

#[test]
fn a_servent_started_before_its_neighbour() {
    let dir = TempDir::new("def-late");
    let port = free_port();
    let a = servent_at(
        &dir,
        "a",
        0,
        STORE,
        &[format!("127.0.0.1:{port}")],
        &[],
        "debug",
    );
    wait_for("A to try B at least twice", || {
        a.log()
            .matches(&format!("dial 127.0.0.1:{port} failed"))
            .count()
            >= 2
    });
    let b = servent_at(&dir, "b", port, "bkey bval\n", &[], &[], "debug");
    wait_links(&a, 1);
    let run = client(&a, "? bkey\n");
    assert!(run.success, "{run:?}");
    assert_eq!(run.lines(), [format!("bval {}", b.local())], "{run:?}");
    normal_query(&a);
}

// ---------------------------------------------------------------------------------
// 8. Three million queries
// ---------------------------------------------------------------------------------

#[test]
fn three_million_queries_in_bounded_memory() {
    const QUERIES: u32 = 3_000_000;
    const BATCH: u32 = 100_000;
    let _heavy = heavy();
    let dir = TempDir::new("def-3m");
    let mut s = servent_at(&dir, "s", 0, STORE, &[], &[], "warn");
    let mut fake = TcpStream::connect(s.addr).unwrap();
    fake.write_all(&Frame::Id { port: 0 }.to_bytes()).unwrap();

    // One encoded flood, its seq (bytes 4..8) patched for each copy.
    let nobody = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9);
    let template = key_flood(0, 0, nobody, "nobody-has-this").to_bytes();
    let size = template.len();
    let mut batch = Vec::with_capacity(size * BATCH as usize);
    let started = Instant::now();
    for first in (0..QUERIES).step_by(BATCH as usize) {
        batch.clear();
        for seq in first..first + BATCH {
            let at = batch.len();
            batch.extend_from_slice(&template);
            batch[at + 4..at + 8].copy_from_slice(&seq.to_be_bytes());
        }
        fake.write_all(&batch).unwrap();
    }
    // Frames on one link are handled in order: the answer to this one means all of
    // the above were handled.
    let replies = Replies::new();
    fake.write_all(&key_flood(0, QUERIES, replies.addr(), "k").to_bytes())
        .unwrap();
    let answer = replies.next(Duration::from_secs(120));
    let took = started.elapsed();
    let Some((seq, value, _)) = answer else {
        panic!("the marker was never answered; log:\n{}", s.log())
    };
    assert_eq!((seq, value.as_str()), (QUERIES, "v"));
    let rss = s.rss_kib().expect("VmRSS");
    println!(
        "{QUERIES} queries ({} MB) in {took:?}: {:.0} frames/s; RSS after: {:.1} MiB",
        QUERIES as usize * size / 1_000_000,
        f64::from(QUERIES) / took.as_secs_f64(),
        rss as f64 / 1024.0
    );
    assert!(rss < 64 * 1024, "RSS {rss} KiB after {QUERIES} queries");
    normal_query(&s);

    let line = stop(&mut s, libc::SIGTERM);
    println!("{line}");
    assert!(counter(&line, "frames in") >= u64::from(QUERIES), "{line}");
    assert_eq!(counter(&line, "protocol errors"), 0, "{line}");
}

// ---------------------------------------------------------------------------------
// 9. Signals
// ---------------------------------------------------------------------------------

#[test]
fn sigint_and_sigterm_exit_cleanly_with_a_summary() {
    let dir = TempDir::new("def-signals");
    for (tag, signal) in [("int", libc::SIGINT), ("term", libc::SIGTERM)] {
        let mut s = servent(&dir, tag, STORE, &[]);
        normal_query(&s);
        let line = stop(&mut s, signal);
        assert_eq!(
            line,
            format!(
                "servent:{}: exiting: frames in 2, frames out 0, answers sent 1 (lost 0), \
             duplicates dropped 0, protocol errors 0, connections accepted 1 (refused 0), \
             slow peers dropped 0",
                s.port()
            ),
            "{tag}"
        );
        assert_eq!(s.log().matches(": exiting: ").count(), 1);
    }
}
