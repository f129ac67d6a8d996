//! Interoperability with an independent implementation of the protocol.
//!
//! `tests/interop/tp3ref.py` was written from the protocol specification alone (of which
//! `docs/PROTOCOL.md` is our account), without the Rust sources. These tests run real
//! processes of both implementations on loopback (every port chosen by the system) and
//! prove that:
//!
//! - the reference client, sending whole frames or one byte at a time, gets the right
//!   answers from a network of our servents (far key once, topology from all four,
//!   a warning for an unknown key);
//! - our client gets the right answers from a network of reference servents that write
//!   every RESP and flood one byte at a time;
//! - mixed networks work: floods cross from ours to theirs and back with the seed's TTL
//!   arithmetic (a line of six reaches exactly five servents), and in a diamond the far
//!   servent answers once, whichever implementation it is, with exactly the two
//!   duplicate drops that reliable flooding implies;
//! - both implementations agree on the shared wire vectors (the reference's selftest
//!   over `tests/data/wire-vectors.json`);
//! - our servent closes connections that send hostile bytes (unknown type, a length
//!   over 400, a frame before ID, a truncated frame), stays up, and decodes a KEYREQ
//!   that arrives one byte per TCP segment, answering with the exact RESP bytes.
//!
//! python3 is required: without it these tests fail, they do not skip.

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    client, reference, reference_client, reference_servent, servent, wait_for, wait_links,
    ClientRun, Node, TempDir,
};

/// Fails the test (loudly, never a skip) if python3 cannot run.
fn require_python() {
    match Command::new("python3").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "python3 --version failed ({}): the interop tests need python3 to run \
             tests/interop/tp3ref.py",
            out.status
        ),
        Err(e) => panic!(
            "python3 not found ({e}): the interop tests need python3 to run \
             tests/interop/tp3ref.py"
        ),
    }
}

/// Which implementation a servent is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Ours,
    Ref,
    /// The reference servent writing every frame one byte at a time.
    RefBytewise,
}

use Kind::{Ours, Ref, RefBytewise};

fn start(dir: &TempDir, kind: Kind, tag: &str, store: &str, neighbours: &[&Node]) -> Node {
    match kind {
        Ours => servent(dir, tag, store, neighbours),
        Ref => reference_servent(dir, tag, store, neighbours, false),
        RefBytewise => reference_servent(dir, tag, store, neighbours, true),
    }
}

/// Neighbour links a reference servent has up: those it dialled (logged once its ID(0)
/// is sent) and those it accepted whose peer said ID(0).
fn reference_links(log: &str) -> usize {
    log.matches("send ID port=0 to").count() + log.matches("recv ID port=0 from").count()
}

fn wait_reference_links(node: &Node, count: usize) {
    wait_for(
        &format!("{count} neighbour links on reference {}", node.local()),
        || reference_links(&node.log()) >= count,
    );
}

fn wait_node_links(kind: Kind, node: &Node, count: usize) {
    match kind {
        Ours => wait_links(node, count),
        Ref | RefBytewise => wait_reference_links(node, count),
    }
}

/// A line s1–s2–…–sn; each servent dials the next, so every flood from s1 arrives on a
/// connection its receiver accepted (on its listening port).
fn line(dir: &TempDir, kinds: &[Kind], stores: &[&str]) -> Vec<Node> {
    assert_eq!(kinds.len(), stores.len());
    let n = kinds.len();
    let mut reversed: Vec<Node> = Vec::new();
    for i in (0..n).rev() {
        let next: Vec<&Node> = reversed.last().into_iter().collect();
        let node = start(dir, kinds[i], &format!("s{}", i + 1), stores[i], &next);
        reversed.push(node);
    }
    reversed.reverse();
    let nodes = reversed;
    for (i, node) in nodes.iter().enumerate() {
        let degree = if i == 0 || i == n - 1 { 1 } else { 2 };
        wait_node_links(kinds[i], node, degree);
    }
    nodes
}

/// A diamond s1–{s2,s3}–s4: s2 and s3 dial s4, s1 dials s2 and s3.
fn diamond(dir: &TempDir, kinds: [Kind; 4], stores: [&str; 4]) -> Vec<Node> {
    let s4 = start(dir, kinds[3], "s4", stores[3], &[]);
    let s2 = start(dir, kinds[1], "s2", stores[1], &[&s4]);
    let s3 = start(dir, kinds[2], "s3", stores[2], &[&s4]);
    let s1 = start(dir, kinds[0], "s1", stores[0], &[&s2, &s3]);
    let nodes = vec![s1, s2, s3, s4];
    for (kind, node) in kinds.iter().zip(&nodes) {
        wait_node_links(*kind, node, 2);
    }
    nodes
}

/// One printed answer: `VALUE IP:PORT`.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    value: String,
    from: SocketAddrV4,
}

fn answers(run: &ClientRun) -> Vec<Answer> {
    run.stdout
        .lines()
        .map(|line| {
            let (value, from) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("answer without a source address: {line:?}\n{run:?}"));
            let from = from
                .parse()
                .unwrap_or_else(|_| panic!("bad source address in {line:?}\n{run:?}"));
            Answer {
                value: value.to_string(),
                from,
            }
        })
        .collect()
}

/// Topology answers are lists of `ip:port`; every other answer is a stored value.
fn is_topology(answer: &Answer) -> bool {
    answer.value.starts_with("127.0.0.1:")
}

/// The stored-value answers, sorted by value.
fn key_answers(all: &[Answer]) -> Vec<Answer> {
    let mut keys: Vec<Answer> = all.iter().filter(|a| !is_topology(a)).cloned().collect();
    keys.sort_by(|a, b| a.value.cmp(&b.value));
    keys
}

/// The topology answers' values, sorted (shortest path first, then lexically).
fn topology_values(all: &[Answer]) -> Vec<String> {
    let mut topo: Vec<String> = all
        .iter()
        .filter(|a| is_topology(a))
        .map(|a| a.value.clone())
        .collect();
    topo.sort_by(|a, b| (a.len(), a).cmp(&(b.len(), b)));
    topo
}

/// Checks the four topology answers of a diamond `p[0]`–{`p[1]`,`p[2]`}–`p[3]`: each is
/// a path of links from s1 without repeats, and each servent ends exactly one. The
/// copies race, so s3 (or s2) may be reached through s4 rather than from s1 directly.
fn assert_diamond_paths(topo: &[String], p: &[String], context: &str) {
    let linked = |a: &str, b: &str| {
        let (i, j) = (
            p.iter().position(|x| x == a).unwrap(),
            p.iter().position(|x| x == b).unwrap(),
        );
        matches!((i.min(j), i.max(j)), (0, 1) | (0, 2) | (1, 3) | (2, 3))
    };
    let mut ends: Vec<&str> = Vec::new();
    for t in topo {
        let path: Vec<&str> = t.split(' ').collect();
        assert_eq!(path[0], p[0], "{t:?} must start at s1: {context}");
        assert!(
            path.iter().all(|hop| p.contains(&hop.to_string())),
            "{t:?}: {context}"
        );
        assert!(
            path.windows(2).all(|w| linked(w[0], w[1])),
            "{t:?} is not a path: {context}"
        );
        let mut unique = path.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            path.len(),
            "{t:?} repeats a servent: {context}"
        );
        ends.push(path.last().unwrap());
    }
    ends.sort_unstable();
    let mut all: Vec<&str> = p.iter().map(String::as_str).collect();
    all.sort_unstable();
    assert_eq!(ends, all, "each servent answers once: {context}");
}

fn no_answer_count(run: &ClientRun) -> usize {
    run.stderr.matches("no answer received").count()
}

/// Duplicate drops logged by a servent of either kind.
fn duplicate_drops(node: &Node) -> usize {
    let log = node.log();
    log.matches("dropped: duplicate").count() + log.matches("already seen").count()
}

/// Whether a servent's log shows any query or flood at all.
fn heard_any_query(kind: Kind, node: &Node) -> bool {
    let log = node.log();
    match kind {
        Ours => log.contains("query ") || log.contains("KeyFlood") || log.contains("TopoFlood"),
        Ref | RefBytewise => log.contains("KEYFLOOD") || log.contains("TOPOFLOOD"),
    }
}

const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// The address a node's answers come from when it is one of ours.
trait LoopbackAddr {
    fn addr_on_loopback(&self) -> SocketAddrV4;
}

impl LoopbackAddr for Node {
    fn addr_on_loopback(&self) -> SocketAddrV4 {
        SocketAddrV4::new(LOCALHOST, self.port())
    }
}

// ------------------------------------------------------------ reference client → ours

fn reference_client_against_our_diamond(bytewise: bool) {
    require_python();
    let dir = TempDir::new("interop-refclient");
    let nodes = diamond(
        &dir,
        [Ours; 4],
        [
            "near value-near-s1\n",
            "mid value-mid-s2\n",
            "mid value-mid-s3\n",
            "# the far node\nfar value-far-s4\n",
        ],
    );
    let run = reference_client(&nodes[0], "? far\nT\n? missing\nQ\n", bytewise);
    assert!(run.success, "reference client failed: {run:?}");
    let all = answers(&run);

    // Our servents answer from their listening port.
    assert_eq!(
        key_answers(&all),
        vec![Answer {
            value: "value-far-s4".into(),
            from: nodes[3].addr_on_loopback(),
        }],
        "far key must be answered exactly once, by s4: {run:?}"
    );

    let p: Vec<String> = nodes.iter().map(|n| n.local()).collect();
    let topo = topology_values(&all);
    assert_eq!(topo.len(), 4, "T must be answered by all four: {run:?}");
    assert_diamond_paths(&topo, &p, &format!("{run:?}"));
    // Each topology answer comes from the servent that ends the path.
    for answer in all.iter().filter(|a| is_topology(a)) {
        let last = answer.value.rsplit(' ').next().unwrap();
        assert_eq!(answer.from.to_string(), last, "{run:?}");
    }

    assert_eq!(
        no_answer_count(&run),
        1,
        "only the unknown key goes unanswered: {run:?}"
    );
}

#[test]
fn reference_client_against_our_diamond_whole_frames() {
    reference_client_against_our_diamond(false);
}

#[test]
fn reference_client_against_our_diamond_one_byte_at_a_time() {
    reference_client_against_our_diamond(true);
}

// ---------------------------------------------------------- our client → reference

#[test]
fn our_client_against_reference_diamond_bytewise() {
    require_python();
    let dir = TempDir::new("interop-refdiamond");
    let nodes = diamond(
        &dir,
        [RefBytewise; 4],
        [
            "shared shared-s1\n",
            "shared shared-s2\n",
            "shared shared-s3\n",
            "far far-s4\nshared shared-s4\n",
        ],
    );
    let run = client(&nodes[0], "? far\n? shared\nT\nQ\n");
    assert!(run.success, "our client failed: {run:?}");
    assert_eq!(no_answer_count(&run), 0, "{run:?}");
    assert!(!run.stderr.contains("unexpected message"), "{run:?}");
    let all = answers(&run);

    // The reference answers from ephemeral ports: check the values and the IP.
    let keys = key_answers(&all);
    let values: Vec<&str> = keys.iter().map(|a| a.value.as_str()).collect();
    assert_eq!(
        values,
        ["far-s4", "shared-s1", "shared-s2", "shared-s3", "shared-s4"],
        "far key once, and every holder of the shared key once: {run:?}"
    );
    assert!(keys.iter().all(|a| *a.from.ip() == LOCALHOST), "{run:?}");

    let topo = topology_values(&all);
    assert_eq!(topo.len(), 4, "T must be answered by all four: {run:?}");
    // Usually 1, 2, 2, 3; when s4's copy reaches s3 before s1's own, s3's path is
    // s1 s2 s4 s3.
    let lengths: Vec<usize> = topo.iter().map(|t| t.split(' ').count()).collect();
    assert!(
        lengths == [1, 2, 2, 3] || lengths == [1, 2, 3, 4],
        "{run:?}"
    );
    for t in &topo {
        let path: Vec<&str> = t.split(' ').collect();
        // s1 names itself by the address our client dialled.
        assert_eq!(path[0], nodes[0].local(), "{run:?}");
        for hop in path {
            let hop: SocketAddrV4 = hop.parse().unwrap_or_else(|_| panic!("{t:?}"));
            assert_eq!(*hop.ip(), LOCALHOST, "{run:?}");
        }
    }
}

// ------------------------------------------------------------------ mixed networks

const LINE_STORES: [&str; 6] = [
    "# s1\n",
    "# s2\n",
    "# s3\n",
    "# s4\n",
    "five value-five-s5\n",
    "six value-six-s6\n",
];

/// Checks a line of six after `? five`, `? six`, `T` from a client on s1.
fn check_line(kinds: &[Kind], nodes: &[Node], run: &ClientRun) {
    assert!(run.success, "client failed: {run:?}");
    let all = answers(run);
    let keys = key_answers(&all);
    assert_eq!(keys.len(), 1, "only s5's key is answered: {run:?}");
    assert_eq!(keys[0].value, "value-five-s5", "{run:?}");
    if kinds[4] == Ours {
        assert_eq!(keys[0].from, nodes[4].addr_on_loopback(), "{run:?}");
    } else {
        assert_eq!(*keys[0].from.ip(), LOCALHOST, "{run:?}");
    }
    assert_eq!(
        no_answer_count(run),
        1,
        "the key only s6 holds gets no answer: {run:?}"
    );

    // Every flood arrives on a link its receiver accepted, so each servent, ours or
    // theirs, names itself by its listening port: the paths are exact.
    let p: Vec<String> = nodes.iter().map(|n| n.local()).collect();
    let expected: Vec<String> = (1..=5).map(|k| p[..k].join(" ")).collect();
    assert_eq!(
        topology_values(&all),
        expected,
        "T reaches s1..s5, not s6: {run:?}"
    );

    // s6 never heard of any of the three queries.
    assert!(
        !heard_any_query(kinds[5], &nodes[5]),
        "s6 must not receive floods; its log:\n{}",
        nodes[5].log()
    );
    if kinds[4] == Ours {
        assert!(
            nodes[4].log().contains("TTL 0, not forwarded"),
            "s5 received TTL 0; its log:\n{}",
            nodes[4].log()
        );
    }
}

#[test]
fn mixed_line_ours_first_with_our_client() {
    require_python();
    let dir = TempDir::new("interop-line-ours");
    let kinds = [Ours, Ref, Ours, Ref, Ours, Ref];
    let nodes = line(&dir, &kinds, &LINE_STORES);
    let run = client(&nodes[0], "? five\n? six\nT\nQ\n");
    check_line(&kinds, &nodes, &run);
}

#[test]
fn mixed_line_reference_first_with_reference_client() {
    require_python();
    let dir = TempDir::new("interop-line-ref");
    let kinds = [Ref, Ours, Ref, Ours, Ref, Ours];
    let nodes = line(&dir, &kinds, &LINE_STORES);
    let run = reference_client(&nodes[0], "? five\n? six\nT\nQ\n", false);
    check_line(&kinds, &nodes, &run);
}

/// In a diamond every servent handles the query once: s1 sends 2 floods, s2, s3 and s4
/// forward 1 each, 3 are first arrivals, so exactly 2 are dropped as duplicates.
fn check_mixed_diamond(kinds: [Kind; 4], our_client: bool) {
    require_python();
    let dir = TempDir::new("interop-mixed-diamond");
    let nodes = diamond(
        &dir,
        kinds,
        ["# s1\n", "# s2\n", "# s3\n", "far value-far-s4\n"],
    );
    let input = "? far\nQ\n";
    let run = if our_client {
        client(&nodes[0], input)
    } else {
        reference_client(&nodes[0], input, false)
    };
    assert!(run.success, "client failed: {run:?}");
    let all = answers(&run);
    assert_eq!(all.len(), 1, "s4 answers exactly once: {run:?}");
    assert_eq!(all[0].value, "value-far-s4", "{run:?}");
    if kinds[3] == Ours {
        assert_eq!(all[0].from, nodes[3].addr_on_loopback(), "{run:?}");
    } else {
        assert_eq!(*all[0].from.ip(), LOCALHOST, "{run:?}");
    }
    let total = || nodes.iter().map(duplicate_drops).sum::<usize>();
    wait_for("two duplicate drops in the diamond", || total() >= 2);
    let logs: Vec<String> = nodes.iter().map(|n| n.log()).collect();
    assert_eq!(total(), 2, "exactly two duplicate drops; logs:\n{logs:#?}");
}

#[test]
fn mixed_diamond_ours_to_reference_far_node() {
    check_mixed_diamond([Ours, Ours, Ref, Ref], true);
}

#[test]
fn mixed_diamond_reference_to_ours_far_node() {
    check_mixed_diamond([Ref, Ref, Ours, Ours], false);
}

// -------------------------------------------------------------------- wire vectors

#[test]
fn reference_selftest_on_wire_vectors() {
    require_python();
    let vectors = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/wire-vectors.json");
    assert!(std::path::Path::new(vectors).is_file(), "missing {vectors}");
    let out = reference(&["selftest", vectors])
        .output()
        .expect("run tp3ref.py selftest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim() == "selftest ok",
        "selftest failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

// -------------------------------------------------------------------- hostile bytes

/// Sends hex pieces with tp3ref.py send-raw (50 ms apart, TCP_NODELAY) and waits for it.
fn send_raw(servent: &Node, pieces: &[String]) {
    let local = servent.local();
    let mut args = vec!["send-raw", local.as_str()];
    args.extend(pieces.iter().map(String::as_str));
    let out = reference(&args).output().expect("run tp3ref.py send-raw");
    assert!(
        out.status.success(),
        "send-raw failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Each byte as its own piece.
fn hex_bytes(bytes: &[u8]) -> Vec<String> {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn id(port: u16) -> Vec<u8> {
    let mut v = vec![0, 4];
    v.extend_from_slice(&port.to_be_bytes());
    v
}

fn keyreq(seq: u32, key: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 5];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&(key.len() as u16).to_be_bytes());
    v.extend_from_slice(key);
    v
}

fn resp(seq: u32, value: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 9];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&(value.len() as u16).to_be_bytes());
    v.extend_from_slice(value);
    v
}

/// Log lines of `node` that close a connection, as `closing connection with …: reason`.
fn closes(node: &Node) -> Vec<String> {
    node.log()
        .lines()
        .filter(|l| l.contains("closing connection with"))
        .map(str::to_string)
        .collect()
}

/// Sends `pieces` and waits for one more close in the log, returning its line.
fn expect_close(node: &Node, pieces: &[String]) -> String {
    let before = closes(node).len();
    send_raw(node, pieces);
    wait_for("the servent to log a close", || closes(node).len() > before);
    let all = closes(node);
    assert_eq!(all.len(), before + 1, "one close per connection: {all:#?}");
    all[before].clone()
}

#[test]
fn hostile_bytes_from_reference_send_raw() {
    require_python();
    let dir = TempDir::new("interop-hostile");
    let mut node = servent(&dir, "s1", "abc value-abc\n", &[]);

    // An unknown type (99) after a neighbour's ID: cannot be skipped, so closed.
    let line = expect_close(&node, &[hex(&id(0)), "00630000000000000000".into()]);
    assert!(line.contains("protocol error"), "{line}\n{}", node.log());

    // A KEYREQ header announcing 401 bytes: refused from the header, before any body.
    let mut header = vec![0, 5, 0, 0, 0, 1];
    header.extend_from_slice(&401u16.to_be_bytes());
    let line = expect_close(&node, &[hex(&id(9)), hex(&header)]);
    assert!(line.contains("protocol error"), "{line}\n{}", node.log());

    // A well-formed KEYREQ before any ID.
    let log_before = node.log().len();
    let line = expect_close(&node, &[hex(&keyreq(1, b"abc"))]);
    let new_log = node.log()[log_before..].to_string();
    assert!(
        new_log.contains("closing:") && new_log.contains("not sent ID"),
        "{line}\n{new_log}"
    );
    assert!(!new_log.contains("found, answering"), "{new_log}");

    // A lone byte, then the connection ends.
    let line = expect_close(&node, &["00".into()]);
    assert!(line.contains("middle of a frame"), "{line}\n{}", node.log());

    assert!(!node.has_exited(), "servent died:\n{}", node.log());

    // A client ID, then a KEYREQ one byte per segment: answered with the exact RESP.
    let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let reply_port = listener.local_addr().unwrap().port();
    let seq = 0x0102_0304;
    let mut pieces = vec![hex(&id(reply_port))];
    pieces.extend(hex_bytes(&keyreq(seq, b"abc")));
    let local = node.local();
    let mut args = vec!["send-raw".to_string(), local];
    args.extend(pieces);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut sender = reference(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tp3ref.py send-raw");
    let start = Instant::now();
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "no RESP connection for the split KEYREQ; log:\n{}",
                    node.log()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    stream
        .read_to_end(&mut got)
        .expect("the servent sends one RESP and closes");
    assert_eq!(
        got,
        resp(seq, b"value-abc"),
        "RESP bytes for the split KEYREQ"
    );
    let status = sender.wait().unwrap();
    assert!(status.success(), "send-raw failed");

    // Still fine for an ordinary client.
    let run = client(&node, "? abc\nQ\n");
    assert_eq!(
        answers(&run),
        vec![Answer {
            value: "value-abc".into(),
            from: node.addr_on_loopback(),
        }],
        "{run:?}"
    );
    assert!(!node.has_exited(), "servent died:\n{}", node.log());
}
