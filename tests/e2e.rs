//! The real binaries, on ephemeral ports: the seed's diamond and line of 6, topology
//! queries, unknown keys, a misbehaving servent answering the client, the assignment's
//! command line, and start-up errors.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::*;
use tp3kv::protocol::{decode, Frame, Text};

/// s1–{s2,s3}–s4, as `topologia1.sh` builds it. Returns the nodes in order.
fn diamond(dir: &TempDir) -> Vec<Node> {
    let s4 = servent(dir, "s4", "far FAR\nall a4\n", &[]);
    let s2 = servent(dir, "s2", "all a2\n", &[&s4]);
    let s3 = servent(dir, "s3", "all a3\n", &[&s4]);
    let s1 = servent(dir, "s1", "all a1\n", &[&s2, &s3]);
    wait_links(&s1, 2);
    wait_links(&s4, 2);
    vec![s1, s2, s3, s4]
}

/// "VALUE IP:PORT" lines, sorted.
fn sorted(lines: Vec<&str>) -> Vec<String> {
    let mut lines: Vec<String> = lines.into_iter().map(String::from).collect();
    lines.sort();
    lines
}

#[test]
fn diamond_far_key_is_answered_once_by_the_far_servent() {
    let dir = TempDir::new("diamond");
    let nodes = diamond(&dir);
    let run = client(&nodes[0], "? far\n");
    assert!(run.success, "{run:?}");
    assert_eq!(
        run.lines(),
        [format!("FAR {}", nodes[3].local())],
        "{run:?}"
    );
    // Five copies travel the diamond's four links and three servents handle one each,
    // so exactly two are dropped as duplicates, whichever way the copies race (s4 hears
    // the query twice, unless s3 gets s4's copy first and s1 drops s3's echo instead).
    let duplicates = || {
        nodes
            .iter()
            .map(|n| n.log().matches("dropped: duplicate").count())
            .sum::<usize>()
    };
    wait_for("two duplicate drops", || duplicates() == 2);
    assert_eq!(
        nodes[3]
            .log()
            .matches("key \"far\" found, answering")
            .count(),
        1
    );
}

#[test]
fn diamond_every_holder_answers_and_topology_lists_paths() {
    let dir = TempDir::new("diamond-all");
    let nodes = diamond(&dir);
    let run = client(&nodes[0], "? all\nT\n");
    assert!(run.success, "{run:?}");
    let lines = sorted(run.lines());
    let (values, topology): (Vec<String>, Vec<String>) =
        lines.into_iter().partition(|l| l.starts_with('a'));
    let expected: Vec<String> = (0..4)
        .map(|i| format!("a{} {}", i + 1, nodes[i].local()))
        .collect();
    assert_eq!(values, expected);
    // Four topology answers; each names the path from s1 and ends with its sender.
    assert_eq!(topology.len(), 4, "{run:?}");
    let (s1, s4) = (nodes[0].local(), nodes[3].local());
    assert!(topology.contains(&format!("{s1} {s1}")), "{topology:?}");
    for line in &topology {
        let words: Vec<&str> = line.split(' ').collect();
        assert_eq!(words[0], s1, "{line}");
        assert_eq!(words[words.len() - 2], *words.last().unwrap(), "{line}");
    }
    let via = |mid: &Node| format!("{s1} {} {s4} {s4}", mid.local());
    assert!(
        topology.contains(&via(&nodes[1])) || topology.contains(&via(&nodes[2])),
        "{topology:?}"
    );
}

#[test]
fn line_of_6_reaches_five() {
    let dir = TempDir::new("line");
    let mut nodes: Vec<Node> = Vec::new();
    for i in (0..6).rev() {
        let store = format!("k{} v{}\nall a{}\n", i + 1, i + 1, i + 1);
        let neighbours: Vec<&Node> = nodes.last().into_iter().collect();
        let node = servent(&dir, &format!("s{}", i + 1), &store, &neighbours);
        nodes.push(node);
    }
    nodes.reverse();
    for node in &nodes[..5] {
        wait_links(node, 1);
    }
    wait_links(&nodes[1], 2);
    let run = client(&nodes[0], "? k5\n? k6\n? all\nT\n");
    assert!(run.success, "{run:?}");
    let lines = run.lines();
    assert_eq!(lines[0], format!("v5 {}", nodes[4].local()), "{run:?}");
    assert_eq!(
        run.stderr.matches("no answer received").count(),
        1,
        "{run:?}"
    );
    let all: Vec<&&str> = lines.iter().filter(|l| l.starts_with("a")).collect();
    assert_eq!(all.len(), 5, "{run:?}");
    let topology: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains(' ') && l.starts_with("127."))
        .collect();
    assert_eq!(topology.len(), 5, "{run:?}");
    let full: Vec<String> = nodes[..5].iter().map(Node::local).collect();
    let longest = format!("{} {}", full.join(" "), nodes[4].local());
    assert!(topology.iter().any(|l| **l == longest), "{topology:?}");
    // s5 got TTL 0 and kept it; s6 never heard a thing.
    assert!(nodes[4].log().contains("TTL 0, not forwarded"));
    assert!(!nodes[5].log().contains("KeyFlood"), "{}", nodes[5].log());
    assert!(!nodes[5].log().contains("TopoFlood"));
}

#[test]
fn unknown_key_unknown_command_and_end_of_input() {
    let dir = TempDir::new("unknown");
    let s1 = servent(&dir, "s1", "k v\n", &[]);
    // No Q: end of input quits, exit 0.
    let run = client(&s1, "? nothing\nhello\n\n? k\n");
    assert!(run.success, "{run:?}");
    assert_eq!(run.lines(), [format!("v {}", s1.local())]);
    assert_eq!(
        run.stderr.matches("no answer received").count(),
        1,
        "{run:?}"
    );
    assert_eq!(run.stderr.matches("unknown command").count(), 1, "{run:?}");
    // Q quits at once: the lookup after it is never sent.
    let run = client(&s1, "Q\n? k\n");
    assert!(run.success && run.stdout.is_empty(), "{run:?}");
}

#[test]
fn the_assignments_client_command_line() {
    let dir = TempDir::new("legacy");
    let s1 = servent(&dir, "s1", "k v\n", &[]);
    // Pick a free port for the reply listener, then hand it to the client.
    let port = TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = client_command();
    command
        .args(["--timeout", CLIENT_TIMEOUT])
        .arg(port.to_string())
        .arg(s1.local());
    let run = run_process(command, "? k\n", Duration::from_secs(30));
    assert!(run.success, "{run:?}");
    assert_eq!(run.lines(), [format!("v {}", s1.local())]);
    assert!(
        s1.log()
            .contains(&format!("answers go to 127.0.0.1:{port}")),
        "{}",
        s1.log()
    );
}

/// Plays a servent that answers a client's query badly, then well.
#[test]
fn client_discards_wrong_seq_and_wrong_type_but_keeps_waiting() {
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = fake.local_addr().unwrap();
    let mut command = client_command();
    command.args(["--timeout", "2"]).arg(addr.to_string());
    let client =
        std::thread::spawn(move || run_process(command, "? key\n", Duration::from_secs(30)));

    let (mut link, peer) = fake.accept().unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    let frames = loop {
        let n = link.read(&mut chunk).unwrap();
        assert!(n > 0, "client closed early");
        buf.extend_from_slice(&chunk[..n]);
        let (frames, _, err) = tp3kv::protocol::decode_all(&buf);
        assert_eq!(err, None);
        if frames.len() == 2 {
            break frames;
        }
    };
    let Frame::Id { port } = frames[0] else {
        panic!("{frames:?}")
    };
    let Frame::KeyReq { seq, ref key } = frames[1] else {
        panic!("{frames:?}")
    };
    assert_eq!(key.as_bytes(), b"key");
    let reply_to = (peer.ip(), port);
    let send = |frame: Frame| {
        let mut s = TcpStream::connect(reply_to).unwrap();
        s.write_all(&frame.to_bytes()).unwrap();
        s.local_addr().unwrap()
    };
    let wrong_seq = send(Frame::Resp {
        seq: seq.wrapping_add(1),
        value: Text::try_from("stale").unwrap(),
    });
    let wrong_type = send(Frame::TopoReq { seq });
    // Garbage, then a RESP sent in two pieces.
    let mut garbage = TcpStream::connect(reply_to).unwrap();
    garbage.write_all(&[0xde, 0xad, 0xbe, 0xef]).unwrap();
    let good = Frame::Resp {
        seq,
        value: Text::try_from("fresh").unwrap(),
    }
    .to_bytes();
    let mut s = TcpStream::connect(reply_to).unwrap();
    s.write_all(&good[..3]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(&good[3..]).unwrap();
    let good_from = s.local_addr().unwrap();

    let run = client.join().unwrap();
    assert!(run.success, "{run:?}");
    assert_eq!(run.lines(), [format!("fresh {good_from}")], "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("unexpected message from {wrong_seq}")),
        "{run:?}"
    );
    assert!(
        run.stderr
            .contains(&format!("unexpected message from {wrong_type}")),
        "{run:?}"
    );
    assert_eq!(
        run.stderr.matches("unexpected message").count(),
        3,
        "{run:?}"
    );
    assert!(!run.stderr.contains("no answer received"), "{run:?}");
    drop(link);
}

#[test]
fn each_answer_restarts_the_wait() {
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = fake.local_addr().unwrap();
    let mut command = client_command();
    command.args(["--timeout", "1.5"]).arg(addr.to_string());
    let client =
        std::thread::spawn(move || run_process(command, "? key\n", Duration::from_secs(30)));
    let (mut link, peer) = fake.accept().unwrap();
    let mut buf = vec![0u8; 4 + 8 + 3];
    link.read_exact(&mut buf).unwrap();
    let Some((Frame::Id { port }, 4)) = decode(&buf).unwrap() else {
        panic!()
    };
    let Some((Frame::KeyReq { seq, .. }, _)) = decode(&buf[4..]).unwrap() else {
        panic!()
    };
    // Answers 1 s apart: the third comes 3 s after the command, well past 1.5 s, but
    // never 1.5 s after the one before it.
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(1000));
        let mut s = TcpStream::connect((peer.ip(), port)).unwrap();
        let value = Text::try_from(format!("v{i}").as_str()).unwrap();
        s.write_all(&Frame::Resp { seq, value }.to_bytes()).unwrap();
    }
    let run = client.join().unwrap();
    let values: Vec<&str> = run
        .lines()
        .iter()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(values, ["v0", "v1", "v2"], "{run:?}");
}

/// Runs a binary expecting a start-up failure: non-zero exit and one clear line.
fn fails(binary: &str, args: &[&str], expected: &str) {
    let out = Command::new(binary).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(
        stderr.contains(expected),
        "{args:?}: {stderr:?} lacks {expected:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn start_up_errors_are_one_clear_line() {
    let dir = TempDir::new("errors");
    let good = dir.file("good.kv", "k v\n");
    let good = good.to_str().unwrap();
    let long = dir.file("long.kv", &format!("ok 1\n\nbig {}\n", "v".repeat(401)));
    fails(
        SERVENT,
        &["0", "/nonexistent/file.kv"],
        "cannot load /nonexistent/file.kv",
    );
    fails(
        SERVENT,
        &["0", long.to_str().unwrap()],
        "line 3: value is 401 bytes",
    );
    fails(SERVENT, &["70000", good], "70000");
    fails(
        SERVENT,
        &["0", good, "nonsense"],
        "bad address \"nonsense\"",
    );
    fails(
        SERVENT,
        &["0", good, "127.0.0.1:0"],
        "bad port 0: expected a number from 1 to 65535",
    );
    // A port in use is refused, even though answers share the listening port.
    let s1 = servent(&dir, "s1", "k v\n", &[]);
    fails(SERVENT, &[&s1.port().to_string(), good], "already in use");
    fails(CLIENT, &["127.0.0.1"], "expected ip:port");
    fails(CLIENT, &["x", "127.0.0.1:1"], "bad local port");
    fails(
        CLIENT,
        &["--timeout", "0", "127.0.0.1:1"],
        "expected a positive number of seconds",
    );
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    fails(CLIENT, &[&closed.to_string()], "cannot connect to servent");
}

#[test]
fn client_reports_a_servent_that_went_away() {
    let dir = TempDir::new("gone");
    let mut s1 = servent(&dir, "s1", "k v\n", &[]);
    let mut command = client_command();
    command.args(["--timeout", "0.5"]).arg(s1.local());
    let child = command
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut stdin = child.0.stdin.take().unwrap();
    writeln!(stdin, "? k").unwrap();
    wait_for("the client's query", || {
        s1.log().contains("found, answering")
    });
    s1.kill();
    std::thread::sleep(Duration::from_millis(700));
    // The client may have seen the close already, while waiting, and be gone.
    let _ = writeln!(stdin, "? k");
    drop(stdin);
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.0.wait().unwrap();
    assert!(!status.success());
    assert!(stderr.contains("closed the connection"), "{stderr}");
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn hostile_bytes_close_only_their_connection() {
    let dir = TempDir::new("hostile");
    let s1 = servent(&dir, "s1", "k v\n", &[]);
    let attacks: [&[u8]; 4] = [
        // Unknown type.
        &[0x00, 0x03, 0x00, 0x00],
        // A client ID, then a KEYREQ whose length says 401.
        &[0x00, 0x04, 0x9c, 0x40, 0x00, 0x05, 0, 0, 0, 1, 0x01, 0x91],
        // KEYREQ before ID.
        &[0x00, 0x05, 0, 0, 0, 1, 0, 1, b'k'],
        // Half a header, then EOF.
        &[0x00],
    ];
    for bytes in attacks {
        let mut s = TcpStream::connect(s1.local()).unwrap();
        s.write_all(bytes).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let _ = s.read(&mut [0u8; 16]);
    }
    wait_for("the protocol errors in the log", || {
        let log = s1.log();
        log.contains("unknown frame type 0x0003")
            && log.contains("over the limit of 400")
            && log.contains("KEYREQ is not allowed")
    });
    let run = client(&s1, "? k\n");
    assert_eq!(run.lines(), [format!("v {}", s1.local())], "{run:?}");
}

/// A dual-stack servent (`--listen-ip ::`): IPv4 clients work as ever, named by IPv4
/// addresses; an IPv6 client is refused with a log line, since the wire format has no
/// room for its reply address, and nothing is flooded on its behalf.
#[test]
fn dual_stack_serves_ipv4_and_refuses_ipv6_clients() {
    let dir = TempDir::new("dual");
    let s1 = servent_with(&dir, "s1", "k v\n", &[], &["--listen-ip", "::"]);
    let run = client(&s1, "? k\nT\n");
    assert!(run.success, "{run:?}");
    assert_eq!(
        run.lines(),
        [format!("v {}", s1.local()), format!("{0} {0}", s1.local())],
        "{run:?}"
    );
    let mut v6 = TcpStream::connect(("::1", s1.port())).expect("IPv6 loopback");
    let mut bytes = Frame::Id { port: 40000 }.to_bytes();
    Frame::KeyReq {
        seq: 1,
        key: Text::try_from("k").unwrap(),
    }
    .encode(&mut bytes);
    v6.write_all(&bytes).unwrap();
    wait_for("the IPv6 refusal", || {
        s1.log()
            .contains("is on IPv6, which the wire format cannot carry")
    });
    v6.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(
        v6.read(&mut [0u8; 8]).unwrap_or(0),
        0,
        "the servent closes it"
    );
    assert!(!s1.log().contains("[::1]:40000"), "no answer aimed at it");
}

/// Many users behind one reply address, each with a query outstanding: the first answer
/// leaves from the servent's port and holds that port pair; the others come from other
/// ports, a few at a time (`--answers-per-address`), and the servent closes each one
/// itself after its RESP, whether or not we close.
#[test]
fn answers_to_one_reply_address_all_arrive_and_the_servent_closes_them() {
    const USERS: u32 = 8;
    let dir = TempDir::new("parallel");
    let s1 = servent(&dir, "s1", "k v\n", &[]);
    let replies = TcpListener::bind("127.0.0.1:0").unwrap();
    let reply_port = replies.local_addr().unwrap().port();
    let mut links = Vec::new();
    for seq in 0..USERS {
        let mut link = TcpStream::connect(s1.local()).unwrap();
        link.write_all(&Frame::Id { port: reply_port }.to_bytes())
            .unwrap();
        let key = Text::try_from("k").unwrap();
        link.write_all(&Frame::KeyReq { seq, key }.to_bytes())
            .unwrap();
        links.push(link);
    }
    // Accept every answer and read it to its end, closing none of them.
    let mut held = Vec::new();
    let mut seqs = Vec::new();
    for _ in 0..USERS {
        let (mut stream, from) = replies.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = Vec::new();
        stream
            .read_to_end(&mut buf)
            .unwrap_or_else(|e| panic!("reading the answer from {from} to its end: {e}"));
        match decode(&buf) {
            Ok(Some((Frame::Resp { seq, value }, used))) => {
                assert_eq!(value.as_bytes(), b"v");
                assert_eq!(used, buf.len(), "one RESP and nothing else from {from}");
                seqs.push(seq);
            }
            other => panic!("expected one RESP from {from}, got {other:?} in {buf:?}"),
        }
        held.push((stream, from));
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (0..USERS).collect::<Vec<_>>());
    let from_its_port = held.iter().filter(|(_, f)| f.port() == s1.port()).count();
    assert!(from_its_port >= 1, "none from the servent's port: {held:?}");
    drop(held);
    let run = client(&s1, "? k\n");
    assert_eq!(run.lines(), [format!("v {}", s1.local())], "{run:?}");
}

/// `kill -USR1` makes a running servent log its counters, and it goes on serving. In
/// the diamond, after one far lookup: s1 took one ID and one KEYREQ from the client and
/// sent two KEYFLOODs; the far servent answered once; the network dropped exactly two
/// duplicates, wherever the race put them.
#[test]
fn sigusr1_logs_the_counters() {
    let dir = TempDir::new("usr1");
    let nodes = diamond(&dir);
    let run = client(&nodes[0], "? far\n");
    assert_eq!(
        run.lines(),
        [format!("FAR {}", nodes[3].local())],
        "{run:?}"
    );
    let counters = |node: &Node| -> String {
        node.signal(libc::SIGUSR1);
        let mut line = String::new();
        wait_for("the counters line", || {
            line = node
                .log()
                .lines()
                .find(|l| l.contains(" counters: "))
                .unwrap_or_default()
                .to_string();
            !line.is_empty()
        });
        line
    };
    let lines: Vec<String> = nodes.iter().map(counters).collect();
    // s1 gets a KEYFLOOD back only if s3 took s4's copy before s1's (see above).
    let s1_counts = |echoes: u32| {
        format!("in ID 1, KEYREQ 1, TOPOREQ 0, KEYFLOOD {echoes}, TOPOFLOOD 0, RESP 0; out KEYFLOOD 2, TOPOFLOOD 0, RESP 0")
    };
    assert!(
        lines[0].contains(&s1_counts(0)) || lines[0].contains(&s1_counts(1)),
        "{}",
        lines[0]
    );
    assert!(
        lines[3].contains("RESP 1 (lost 0, waiting 0)"),
        "{}",
        lines[3]
    );
    let duplicates: u64 = lines
        .iter()
        .map(|l| {
            let rest = &l[l.find("duplicate ").expect("a duplicate count") + "duplicate ".len()..];
            rest[..rest.find(',').unwrap()].parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(duplicates, 2, "{lines:#?}");
    // Still serving.
    let run = client(&nodes[0], "? all\n");
    assert_eq!(run.lines().len(), 4, "{run:?}");
}

/// `client --tree`: after the answers to `T`, the overlay they reached, drawn as the
/// tree the flood took: s1 at the root, s2 and s3 below it, s4 below one of them.
#[test]
fn client_tree_draws_the_topology() {
    let dir = TempDir::new("tree");
    let nodes = diamond(&dir);
    let mut command = client_command();
    command
        .args(["--timeout", CLIENT_TIMEOUT, "--tree"])
        .arg(nodes[0].local());
    let run = run_process(command, "T\n", Duration::from_secs(30));
    let lines = run.lines();
    let [s1, s2, s3, s4] = [0, 1, 2, 3].map(|i| nodes[i].local());
    let tree: Vec<&str> = lines.iter().skip(4).copied().collect();
    assert_eq!(
        tree.len(),
        4,
        "four answers, then a four-line tree: {run:?}"
    );
    assert_eq!(tree[0], s1, "{run:?}");
    let (first, second) = if tree[1].ends_with(&s2) {
        (&s2, &s3)
    } else {
        (&s3, &s2)
    };
    let s4_under_first = [
        format!("├── {first}"),
        format!("│   └── {s4}"),
        format!("└── {second}"),
    ];
    let s4_under_second = [
        format!("├── {first}"),
        format!("└── {second}"),
        format!("    └── {s4}"),
    ];
    // Legal under load: s1>s2>s4>s3 beats s1>s3, and the tree is a chain.
    let chain = [
        format!("└── {first}"),
        format!("    └── {s4}"),
        format!("        └── {second}"),
    ];
    assert!(
        tree[1..] == s4_under_first || tree[1..] == s4_under_second || tree[1..] == chain,
        "{run:?}"
    );
}
