//! The deliberate defects of `tests/interop/tp3ref.py` (`--defect NAME`) really change
//! what goes on the wire or what the client prints.
//!
//! The conformance checker (`tp3-check`) is tested against each broken variant; these
//! tests make sure each variant is broken the way its name says, and that the same
//! exchange with the default reference behaves correctly. Each test plays the other
//! parts itself over raw sockets on loopback (a neighbour, a client, a servent), every
//! port chosen by the system, every process killed when the test ends. Waits for
//! something that must *not* happen are short (1–2 s) and only ever make a broken
//! variant look correct, never a correct one look broken.
//!
//! python3 is required: without it these tests fail, they do not skip.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{
    reference, run_process, servent, start_node, wait_for, ClientRun, Node, TempDir, CLIENT_TIMEOUT,
};

/// How long a test waits for something that must not come.
const QUIET: Duration = Duration::from_millis(1500);
/// How long it waits for something that must come.
const LIMIT: Duration = Duration::from_secs(20);

/// Every defect tp3ref.py knows, as `--list-defects` must list it.
const ALL_DEFECTS: [&str; 16] = [
    "little-endian-lengths",
    "signed-ports",
    "one-read-per-message",
    "exits-on-disconnect",
    "floods-back",
    "forgets-own-request",
    "decrement-first",
    "no-flood-when-found",
    "topology-no-space",
    "topology-trailing-space",
    "listen-address-in-topology",
    "localhost-in-floods",
    "late-listener",
    "ignore-wrong-seq",
    "answer-without-port",
    "seq-from-1",
];

// ------------------------------------------------------------------------ processes

/// The reference servent with `defects` switched on.
fn ref_servent(dir: &TempDir, tag: &str, store: &str, defects: &[&str]) -> Node {
    let file = dir.file(&format!("{tag}.kv"), store);
    let mut command = reference(&["servent"]);
    for d in defects {
        command.args(["--defect", d]);
    }
    command.arg("0").arg(&file);
    start_node(command, dir, tag)
}

/// The reference client with `defects`, against `servent` (`ip:port`), optionally on
/// a given reply port.
fn ref_client(servent: &str, local_port: Option<u16>, input: &str, defects: &[&str]) -> ClientRun {
    let mut command = reference(&["client", "--timeout", CLIENT_TIMEOUT]);
    for d in defects {
        command.args(["--defect", d]);
    }
    if let Some(port) = local_port {
        command.arg(port.to_string());
    }
    command.arg(servent);
    run_process(command, input, Duration::from_secs(60))
}

/// `recv ID` lines in a reference servent's log: one per connection that said who it is.
fn wait_ids(node: &Node, count: usize) {
    wait_for(&format!("{count} IDs received by {}", node.local()), || {
        node.log().matches("recv ID port=").count() >= count
    });
}

// --------------------------------------------------------------------------- frames

fn id(port: u16) -> Vec<u8> {
    let mut v = vec![0, 4];
    v.extend_from_slice(&port.to_be_bytes());
    v
}

fn with_text(code: u8, head: &[u8], text: &[u8]) -> Vec<u8> {
    let mut v = vec![0, code];
    v.extend_from_slice(head);
    v.extend_from_slice(&(text.len() as u16).to_be_bytes());
    v.extend_from_slice(text);
    v
}

fn keyreq(seq: u32, key: &[u8]) -> Vec<u8> {
    with_text(5, &seq.to_be_bytes(), key)
}

fn resp(seq: u32, value: &[u8]) -> Vec<u8> {
    with_text(9, &seq.to_be_bytes(), value)
}

/// KEYFLOOD (code 7) or TOPOFLOOD (code 8).
fn flood(code: u8, ttl: u16, seq: u32, ip: Ipv4Addr, port: u16, text: &[u8]) -> Vec<u8> {
    let mut head = ttl.to_be_bytes().to_vec();
    head.extend_from_slice(&seq.to_be_bytes());
    head.extend_from_slice(&ip.octets());
    head.extend_from_slice(&port.to_be_bytes());
    with_text(code, &head, text)
}

/// Reads one big-endian frame, or `None` if nothing came within `limit`.
fn read_frame(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut frame = vec![0u8; 2];
    match stream.read_exact(&mut frame) {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return None,
        Err(e) => panic!("reading a frame: {e}"),
    }
    let (fixed, len_at) = match frame[1] {
        4 => (4, None),
        5 | 9 => (8, Some(6)),
        6 => (6, None),
        7 | 8 => (16, Some(14)),
        t => panic!("unknown frame type {t}"),
    };
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    frame.resize(fixed, 0);
    stream.read_exact(&mut frame[2..]).unwrap();
    if let Some(at) = len_at {
        let n = u16::from_be_bytes([frame[at], frame[at + 1]]) as usize;
        frame.resize(fixed + n, 0);
        stream.read_exact(&mut frame[fixed..]).unwrap();
    }
    Some(frame)
}

// ------------------------------------------------------------- a raw neighbour/client

/// A connection to a servent that has said who it is (`ID(0)`: a neighbour).
fn connect(node: &Node, first: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", node.port())).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.write_all(first).unwrap();
    stream
}

/// A reply listener: where answers to a raw client arrive.
struct Replies(TcpListener);

impl Replies {
    fn new() -> Replies {
        Replies::on(0)
    }

    fn on(port: u16) -> Replies {
        let listener = TcpListener::bind(("0.0.0.0", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        Replies(listener)
    }

    fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }

    /// The bytes of the next answer connection (read to its end), if one comes in `limit`.
    fn next(&self, limit: Duration) -> Option<(Vec<u8>, SocketAddr)> {
        let start = Instant::now();
        let (mut stream, from) = loop {
            match self.0.accept() {
                Ok(accepted) => break accepted,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if start.elapsed() > limit {
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).unwrap();
        Some((bytes, from))
    }
}

/// A free port ≥ 32768 (where a signed 16-bit port turns negative).
fn high_port() -> u16 {
    for _ in 0..200 {
        let port = TcpListener::bind("0.0.0.0:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port >= 32768 {
            return port;
        }
    }
    (40000..60000)
        .find(|p| TcpListener::bind(("0.0.0.0", *p)).is_ok())
        .expect("a free port above 32767")
}

// ----------------------------------------------------------------- a fake servent

/// A servent played by the test for one client: it records the client's request seqs
/// and calls `respond(reply port, seq)` for each of `commands` requests.
struct FakeServent {
    addr: String,
    thread: JoinHandle<Vec<u32>>,
}

impl FakeServent {
    fn start(commands: usize, respond: impl Fn(u16, u32) + Send + 'static) -> FakeServent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let thread = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let id = read_frame(&mut stream, LIMIT).expect("the client's ID");
            assert_eq!(id[..2], [0, 4], "the client's first frame is ID: {id:02x?}");
            let reply_port = u16::from_be_bytes([id[2], id[3]]);
            let mut seqs = Vec::new();
            for _ in 0..commands {
                let req = read_frame(&mut stream, LIMIT).expect("a request");
                let seq = u32::from_be_bytes([req[2], req[3], req[4], req[5]]);
                seqs.push(seq);
                respond(reply_port, seq);
            }
            // Stay connected until the client quits: closing would end its wait.
            stream
                .set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            let _ = stream.read_to_end(&mut Vec::new());
            seqs
        });
        FakeServent { addr, thread }
    }

    fn seqs(self) -> Vec<u32> {
        self.thread.join().expect("fake servent thread")
    }
}

/// Connects to a client's reply port and writes `pieces`, `gap` apart.
fn answer_in_pieces(port: u16, pieces: &[&[u8]], gap: Duration) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(gap);
        }
        stream.write_all(piece).unwrap();
    }
}

// ------------------------------------------------------------------ the option itself

#[test]
fn list_defects_names_every_defect_and_bad_names_exit_2() {
    let out = reference(&["--list-defects"]).output().expect("python3");
    assert!(out.status.success(), "{out:?}");
    let listing = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = listing
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(names, ALL_DEFECTS, "{listing}");
    assert!(
        listing.lines().all(|l| l.split_whitespace().count() > 2),
        "each with a description: {listing}"
    );

    for args in [
        &["client", "--defect", "no-such-thing", "127.0.0.1:1"][..],
        &["servent", "--defect", "late-listener", "0", "kv"][..],
        &["client", "--defect", "floods-back", "127.0.0.1:1"][..],
        &["servent", "0", "kv", "--defect"][..],
    ] {
        let out = reference(args).output().expect("python3");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.starts_with("tp3ref.py: error: "), "{stderr}");
    }
    let out = reference(&["client", "--defect", "bogus", "127.0.0.1:1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        ALL_DEFECTS.iter().all(|d| stderr.contains(d)),
        "an unknown name lists the known ones: {stderr}"
    );
}

// ---------------------------------------------------------------- servent defects

/// Sends `ID(reply port)` and then `request` (raw bytes) to `node` in one write, as a
/// client; returns the bytes of the answer connection, if one comes within `limit`.
fn raw_lookup(node: &Node, request: &[u8], limit: Duration) -> Option<Vec<u8>> {
    let replies = Replies::new();
    let mut first = id(replies.port());
    first.extend_from_slice(request);
    let _client = connect(node, &first);
    replies.next(limit).map(|(bytes, _)| bytes)
}

#[test]
fn little_endian_lengths_servent_writes_and_reads_lengths_backwards() {
    let dir = TempDir::new("defect-le-servent");
    let good = ref_servent(&dir, "good", "k value-k\n", &[]);
    let bad = ref_servent(&dir, "bad", "k value-k\n", &["little-endian-lengths"]);
    assert_eq!(
        raw_lookup(&good, &keyreq(7, b"k"), LIMIT),
        Some(resp(7, b"value-k"))
    );
    // A KEYREQ with its length little-endian, as its own client would send it: answered
    // with the RESP length little-endian too (07 00, not 00 07).
    let le_request = [0, 5, 0, 0, 0, 7, 1, 0, b'k'];
    let mut le_resp = vec![0, 9, 0, 0, 0, 7, 7, 0];
    le_resp.extend_from_slice(b"value-k");
    assert_eq!(raw_lookup(&bad, &le_request, LIMIT), Some(le_resp));
    // A correct KEYREQ reads as a 256-byte key: no answer.
    assert_eq!(raw_lookup(&bad, &keyreq(7, b"k"), QUIET), None);
}

#[test]
fn signed_ports_servent_cannot_answer_a_reply_port_above_32767() {
    let dir = TempDir::new("defect-signed-servent");
    let good = ref_servent(&dir, "good", "k value-k\n", &[]);
    let bad = ref_servent(&dir, "bad", "k value-k\n", &["signed-ports"]);
    for (node, expect) in [(&good, true), (&bad, false)] {
        let replies = Replies::on(high_port());
        let mut first = id(replies.port());
        first.extend_from_slice(&keyreq(7, b"k"));
        let _client = connect(node, &first);
        let limit = if expect { LIMIT } else { QUIET };
        let got = replies.next(limit).map(|(bytes, _)| bytes);
        assert_eq!(
            got.is_some(),
            expect,
            "port {}:\n{}",
            replies.port(),
            node.log()
        );
    }
    wait_for("the failed answer in the log", || {
        bad.log().contains("failed")
    });
    let log = bad.log();
    assert!(
        log.contains("recv ID port=-"),
        "the port read negative:\n{log}"
    );
}

#[test]
fn one_read_per_message_servent_loses_coalesced_and_split_frames() {
    let dir = TempDir::new("defect-oneread-servent");
    let good = ref_servent(&dir, "good", "k value-k\n", &[]);
    let bad = ref_servent(&dir, "bad", "k value-k\n", &["one-read-per-message"]);
    for (node, expect) in [(&good, true), (&bad, false)] {
        let limit = if expect { LIMIT } else { QUIET };
        // ID and KEYREQ in one segment: the KEYREQ is lost.
        let coalesced = raw_lookup(node, &keyreq(7, b"k"), limit);
        assert_eq!(coalesced.is_some(), expect, "coalesced:\n{}", node.log());
        // ID alone, then the KEYREQ in two segments: each half is dropped.
        let replies = Replies::new();
        let ids = node.log().matches("recv ID port=").count();
        let mut client = connect(node, &id(replies.port()));
        wait_for("the ID", || {
            node.log().matches("recv ID port=").count() > ids
        });
        let request = keyreq(8, b"k");
        client.write_all(&request[..3]).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        client.write_all(&request[3..]).unwrap();
        let split = replies.next(limit).map(|(bytes, _)| bytes);
        assert_eq!(split.is_some(), expect, "split:\n{}", node.log());
    }
    assert!(
        bad.log().contains("ignored a short message"),
        "{}",
        bad.log()
    );
}

#[test]
fn exits_on_disconnect_servent_dies_when_a_client_or_neighbour_leaves() {
    let dir = TempDir::new("defect-exits");
    let mut good = ref_servent(&dir, "good", "k v\n", &[]);
    let mut by_client = ref_servent(&dir, "bad-client", "k v\n", &["exits-on-disconnect"]);
    let mut by_neighbour = ref_servent(&dir, "bad-neighbour", "k v\n", &["exits-on-disconnect"]);
    for (node, first) in [
        (&good, id(40000)),
        (&by_client, id(40000)),
        (&by_neighbour, id(0)),
    ] {
        let peer = connect(node, &first);
        wait_ids(node, 1);
        drop(peer);
    }
    assert!(
        by_client.wait_exit(LIMIT).is_some(),
        "exits when a client leaves:\n{}",
        by_client.log()
    );
    assert!(
        by_neighbour.wait_exit(LIMIT).is_some(),
        "exits when a neighbour leaves:\n{}",
        by_neighbour.log()
    );
    wait_for("the good one to see the close", || {
        good.log().contains("closed by peer")
    });
    assert!(good.wait_exit(QUIET).is_none(), "{}", good.log());
    // Still serving.
    assert_eq!(
        raw_lookup(&good, &keyreq(1, b"k"), LIMIT),
        Some(resp(1, b"v"))
    );
}

#[test]
fn floods_back_servent_returns_a_flood_to_its_sender() {
    let dir = TempDir::new("defect-floods-back");
    let good = ref_servent(&dir, "good", "", &[]);
    let bad = ref_servent(&dir, "bad", "", &["floods-back"]);
    let sent = flood(7, 2, 5, Ipv4Addr::LOCALHOST, 40000, b"x");
    for (node, expect) in [(&good, false), (&bad, true)] {
        let mut link = connect(node, &id(0));
        wait_ids(node, 1);
        link.write_all(&sent).unwrap();
        let back = read_frame(&mut link, if expect { LIMIT } else { QUIET });
        if expect {
            // The same flood, one hop further: TTL 1.
            assert_eq!(back, Some(flood(7, 1, 5, Ipv4Addr::LOCALHOST, 40000, b"x")));
        } else {
            assert_eq!(back, None, "{}", node.log());
        }
    }
}

/// A servent holding `k`, a raw neighbour and a raw client: the client asks for `k`,
/// the neighbour echoes the KEYFLOOD back (as a cycle would). Returns how many answers
/// the client got, waiting generously for `expected` and briefly for any more.
fn echo_own_request(node: &Node, expected: usize) -> usize {
    let mut link = connect(node, &id(0));
    wait_ids(node, 1);
    let replies = Replies::new();
    let mut first = id(replies.port());
    first.extend_from_slice(&keyreq(5, b"k"));
    let _client = connect(node, &first);
    let mut answers = usize::from(replies.next(LIMIT).is_some());
    let flooded = read_frame(&mut link, LIMIT).expect("the KEYFLOOD to the neighbour");
    let mut echo = flooded;
    echo[3] = 2; // the TTL one hop on
    link.write_all(&echo).unwrap();
    while replies
        .next(if answers < expected { LIMIT } else { QUIET })
        .is_some()
    {
        answers += 1;
    }
    answers
}

#[test]
fn forgets_own_request_servent_answers_the_echo_again() {
    let dir = TempDir::new("defect-forgets");
    let good = ref_servent(&dir, "good", "k v\n", &[]);
    let bad = ref_servent(&dir, "bad", "k v\n", &["forgets-own-request"]);
    assert_eq!(echo_own_request(&good, 1), 1, "{}", good.log());
    assert_eq!(echo_own_request(&bad, 2), 2, "{}", bad.log());
}

#[test]
fn no_flood_when_found_servent_keeps_a_held_key_to_itself() {
    let dir = TempDir::new("defect-noflood");
    let good = ref_servent(&dir, "good", "k v\n", &[]);
    let bad = ref_servent(&dir, "bad", "k v\n", &["no-flood-when-found"]);
    for (node, expect) in [(&good, true), (&bad, false)] {
        let mut link = connect(node, &id(0));
        wait_ids(node, 1);
        let answer = raw_lookup(node, &keyreq(3, b"k"), LIMIT);
        assert_eq!(answer, Some(resp(3, b"v")), "{}", node.log());
        let flooded = read_frame(&mut link, if expect { LIMIT } else { QUIET });
        assert_eq!(flooded.is_some(), expect, "{}", node.log());
        if let Some(f) = flooded {
            assert_eq!(f[..4], [0, 7, 0, 3], "KEYFLOOD TTL 3: {f:02x?}");
        }
    }
}

#[test]
fn decrement_first_servent_does_not_forward_ttl_1() {
    let dir = TempDir::new("defect-decrement");
    let good = ref_servent(&dir, "good", "", &[]);
    let bad = ref_servent(&dir, "bad", "", &["decrement-first"]);
    for (node, expect) in [(&good, true), (&bad, false)] {
        let mut a = connect(node, &id(0));
        let mut b = connect(node, &id(0));
        wait_ids(node, 2);
        a.write_all(&flood(7, 1, 9, Ipv4Addr::LOCALHOST, 40000, b"x"))
            .unwrap();
        let got = read_frame(&mut b, if expect { LIMIT } else { QUIET });
        if expect {
            // The seed's rule: TTL 1 is tested, then forwarded as 0.
            assert_eq!(got, Some(flood(7, 0, 9, Ipv4Addr::LOCALHOST, 40000, b"x")));
        } else {
            assert_eq!(got, None, "1 - 1 = 0: not forwarded\n{}", node.log());
        }
    }
}

/// The topology answer `node` gives to a TOPOFLOOD carrying `info`.
fn topology_answer(node: &Node, info: &[u8]) -> String {
    let replies = Replies::new();
    let mut link = connect(node, &id(0));
    wait_ids(node, 1);
    link.write_all(&flood(8, 0, 4, Ipv4Addr::LOCALHOST, replies.port(), info))
        .unwrap();
    let (bytes, _) = replies.next(LIMIT).expect("a topology answer");
    String::from_utf8_lossy(&bytes[8..]).into_owned()
}

#[test]
fn topology_defects_get_the_separator_or_the_address_wrong() {
    let dir = TempDir::new("defect-topology");
    let info = b"10.9.8.7:6543";
    for (i, (defects, expect)) in [
        (&[][..], "10.9.8.7:6543 127.0.0.1:{}"),
        (&["topology-no-space"][..], "10.9.8.7:6543127.0.0.1:{}"),
        (
            &["topology-trailing-space"][..],
            "10.9.8.7:6543 127.0.0.1:{} ",
        ),
        (
            &["listen-address-in-topology"][..],
            "10.9.8.7:6543 0.0.0.0:{}",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let node = ref_servent(&dir, &format!("s{i}"), "", defects);
        let expect = expect.replace("{}", &node.port().to_string());
        assert_eq!(topology_answer(&node, info), expect, "{defects:?}");
    }
}

#[test]
fn localhost_in_floods_servent_hides_the_clients_address() {
    let dir = TempDir::new("defect-localhost");
    let good = ref_servent(&dir, "good", "", &[]);
    let bad = ref_servent(&dir, "bad", "", &["localhost-in-floods"]);
    for (node, ip) in [(&good, [127, 0, 0, 2]), (&bad, [127, 0, 0, 1])] {
        let mut link = connect(node, &id(0));
        wait_ids(node, 1);
        // A client on another address of the loopback network: 127.0.0.2.
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into())
            .unwrap();
        socket
            .connect(&SocketAddr::from(([127, 0, 0, 1], node.port())).into())
            .unwrap();
        let mut client: TcpStream = socket.into();
        let mut first = id(40000);
        first.extend_from_slice(&keyreq(6, b"x"));
        client.write_all(&first).unwrap();
        let flooded = read_frame(&mut link, LIMIT).expect("the KEYFLOOD");
        assert_eq!(flooded[8..12], ip, "client IP in the flood: {flooded:02x?}");
    }
}

// ----------------------------------------------------------------- client defects

#[test]
fn little_endian_lengths_client_request_is_refused_by_our_servent() {
    let dir = TempDir::new("defect-le-client");
    let node = servent(&dir, "ours", "abc value-abc\n", &[]);
    let good = ref_client(&node.local(), None, "? abc\nQ\n", &[]);
    assert!(good.stdout.contains("value-abc"), "{good:?}");
    // 00 03 written as 03 00: a 768-byte key, over 400, so our servent closes.
    let bad = ref_client(
        &node.local(),
        None,
        "? abc\nQ\n",
        &["little-endian-lengths"],
    );
    assert!(!bad.stdout.contains("value-abc"), "{bad:?}");
    assert!(
        bad.stderr.contains("servent closed the connection"),
        "{bad:?}"
    );
}

#[test]
fn signed_ports_client_dies_on_a_reply_port_above_32767() {
    let dir = TempDir::new("defect-signed-client");
    let node = servent(&dir, "ours", "abc value-abc\n", &[]);
    let good = ref_client(&node.local(), Some(high_port()), "? abc\nQ\n", &[]);
    assert!(good.stdout.contains("value-abc"), "{good:?}");
    let port = high_port();
    let bad = ref_client(&node.local(), Some(port), "? abc\nQ\n", &["signed-ports"]);
    assert!(!bad.success && bad.stdout.is_empty(), "{bad:?}");
    assert!(
        bad.stderr.contains("format requires"),
        "struct.error: {bad:?}"
    );
}

#[test]
fn one_read_per_message_client_rejects_an_answer_in_two_segments() {
    for (defects, expect) in [(&[][..], true), (&["one-read-per-message"][..], false)] {
        let fake = FakeServent::start(1, move |port, seq| {
            let bytes = resp(seq, b"split-value");
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.set_nodelay(true).unwrap();
            stream.write_all(&bytes[..5]).unwrap();
            if expect {
                std::thread::sleep(Duration::from_millis(300));
            } else {
                // The defective client takes the first segment for a whole message and
                // closes: wait for that, however slow the machine, so that it cannot
                // see both segments in one read.
                stream.set_read_timeout(Some(LIMIT)).unwrap();
                let _ = stream.read(&mut [0u8; 16]);
            }
            let _ = stream.write_all(&bytes[5..]);
        });
        let run = ref_client(&fake.addr, None, "? k\nQ\n", defects);
        fake.seqs();
        assert_eq!(
            run.stdout.contains("split-value"),
            expect,
            "{defects:?}: {run:?}"
        );
        assert_eq!(
            run.stderr.contains("unexpected message from 127.0.0.1:"),
            !expect,
            "{run:?}"
        );
    }
}

#[test]
fn late_listener_client_misses_an_immediate_answer() {
    let dir = TempDir::new("defect-late");
    let node = ref_servent(&dir, "ref", "abc value-abc\n", &[]);
    let good = ref_client(&node.local(), None, "? abc\nQ\n", &[]);
    assert!(good.stdout.contains("value-abc"), "{good:?}");
    let bad = ref_client(&node.local(), None, "? abc\nQ\n", &["late-listener"]);
    assert!(!bad.stdout.contains("value-abc"), "{bad:?}");
    assert!(bad.stderr.contains("no answer received"), "{bad:?}");
    assert!(
        node.log().contains("failed"),
        "the refused answer:\n{}",
        node.log()
    );
}

#[test]
fn ignore_wrong_seq_client_says_nothing_about_a_stray_message() {
    for (defects, complains) in [(&[][..], true), (&["ignore-wrong-seq"][..], false)] {
        let fake = FakeServent::start(1, |port, seq| {
            answer_in_pieces(
                port,
                &[&resp(seq.wrapping_add(1), b"stale")],
                Duration::ZERO,
            );
            answer_in_pieces(port, &[&keyreq(seq, b"not-a-resp")], Duration::ZERO);
        });
        let run = ref_client(&fake.addr, None, "? k\nQ\n", defects);
        fake.seqs();
        assert!(run.stdout.is_empty(), "{run:?}");
        assert!(run.stderr.contains("no answer received"), "{run:?}");
        let complaints = run
            .stderr
            .matches("unexpected message from 127.0.0.1:")
            .count();
        assert_eq!(complaints, if complains { 2 } else { 0 }, "{run:?}");
    }
}

#[test]
fn answer_without_port_client_prints_only_the_ip() {
    let dir = TempDir::new("defect-noport");
    let node = servent(&dir, "ours", "abc value-abc\n", &[]);
    let good = ref_client(&node.local(), None, "? abc\nQ\n", &[]);
    assert_eq!(
        good.lines(),
        [format!("value-abc {}", node.local())],
        "{good:?}"
    );
    let bad = ref_client(&node.local(), None, "? abc\nQ\n", &["answer-without-port"]);
    assert_eq!(bad.lines(), ["value-abc 127.0.0.1"], "{bad:?}");
}

#[test]
fn seq_from_1_client_starts_at_one() {
    for (defects, expect) in [(&[][..], [0, 1]), (&["seq-from-1"][..], [1, 2])] {
        let fake = FakeServent::start(2, |port, seq| {
            answer_in_pieces(port, &[&resp(seq, b"v")], Duration::ZERO);
        });
        let run = ref_client(&fake.addr, None, "? a\nT\nQ\n", defects);
        assert_eq!(fake.seqs(), expect, "{defects:?}: {run:?}");
        assert_eq!(run.stdout.lines().count(), 2, "{run:?}");
    }
}
