//! The Wireshark dissector `contrib/wireshark/tp3kv.lua`, run by tshark: on captures
//! built here byte by byte (several frames per segment, frames split across segments,
//! non-ASCII text, malformed streams), and on a real diamond of servents captured on
//! the loopback of a private network namespace.
//!
//! Without tshark every test prints `SKIPPED: ...` and passes; so does the real capture
//! without root, `ip` or dumpcap. CI installs tshark (see `.ci/run`).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// Far above what tshark needs; only there so a dissector loop fails instead of hanging.
const TSHARK_LIMIT: Duration = Duration::from_secs(300);

fn lua_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/wireshark/tp3kv.lua")
}

/// Whether `program` runs at all (`-v` prints its version and exits).
fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn tshark_missing(test: &str) -> bool {
    if runs("tshark") {
        return false;
    }
    skipped(format_args!(
        "{test}: tshark is not installed (apt-get install tshark)"
    ));
    true
}

/// Runs tshark with the dissector loaded on `capture`, returning its stdout. HOME points
/// at `dir` so a user's own preferences or an installed copy of the plugin (which would
/// register the protocol twice) cannot change the result.
fn tshark(dir: &TempDir, capture: &Path, args: &[&str]) -> Result<String, String> {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let (out_path, err_path) = (
        dir.0.join(format!("tshark{n}.out")),
        dir.0.join(format!("tshark{n}.err")),
    );
    let home = dir.0.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut child = Command::new("tshark")
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .arg("-r")
        .arg(capture)
        .arg("-X")
        .arg(format!("lua_script:{}", lua_script().display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn tshark");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > TSHARK_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tshark {args:?} did not finish in {TSHARK_LIMIT:?}: a dissector loop?");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = std::fs::read(&out_path).unwrap();
    let err = String::from_utf8_lossy(&std::fs::read(&err_path).unwrap()).into_owned();
    let out = String::from_utf8(out).map_err(|e| format!("tshark {args:?}: not UTF-8: {e}"))?;
    // Lua errors do not fail tshark: they show up on stderr or in the tree.
    if !status.success() || err.contains("Lua") || out.contains("Lua Error") {
        return Err(format!("tshark {args:?}: {status}\nstderr:\n{err}"));
    }
    Ok(out)
}

/// One tp3kv frame as tshark decoded it: its fields without the `tp3kv.` prefix, plus
/// `expert` for an expert message.
type Fields = BTreeMap<String, String>;

/// A decoded frame and the TCP segment (the last one, if reassembled) that carried it.
#[derive(Debug)]
struct Frame {
    packet: u64,
    src_port: u16,
    dst_port: u16,
    fields: Fields,
}

impl Frame {
    fn get(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

/// Every tp3kv frame in `capture`, in order.
fn frames(dir: &TempDir, capture: &Path, extra: &[&str]) -> Result<Vec<Frame>, String> {
    let mut args = vec![
        "-Y",
        "tp3kv",
        "-T",
        "json",
        "--no-duplicate-keys",
        "-J",
        "frame tcp tp3kv",
    ];
    args.extend_from_slice(extra);
    let out = tshark(dir, capture, &args)?;
    let json: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("tshark JSON: {e}\n{out}"))?;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let mut frames = Vec::new();
    for packet in json.as_array().ok_or("tshark JSON: not an array")? {
        let layers = &packet["_source"]["layers"];
        let number = text(&layers["frame"]["frame.number"]).parse().unwrap();
        let port = |name: &str| text(&layers["tcp"][name]).parse().unwrap();
        // One frame is an object, several (with --no-duplicate-keys) an array.
        let decoded = match &layers["tp3kv"] {
            serde_json::Value::Array(all) => all.clone(),
            one => vec![one.clone()],
        };
        for object in decoded {
            let mut fields = Fields::new();
            for (key, value) in object.as_object().into_iter().flatten() {
                if let Some(name) = key.strip_prefix("tp3kv.") {
                    fields.insert(name.to_string(), text(value));
                } else if key == "_ws.expert" {
                    fields.insert("expert".into(), text(&value["_ws.expert.message"]));
                }
            }
            frames.push(Frame {
                packet: number,
                src_port: port("tcp.srcport"),
                dst_port: port("tcp.dstport"),
                fields,
            });
        }
    }
    Ok(frames)
}

/// The frames of each packet, for comparing whole captures.
fn by_packet(frames: &[Frame]) -> BTreeMap<u64, Vec<Fields>> {
    let mut map: BTreeMap<u64, Vec<Fields>> = BTreeMap::new();
    for f in frames {
        map.entry(f.packet).or_default().push(f.fields.clone());
    }
    map
}

fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The Info column of every packet the dissector decoded.
fn info_column(dir: &TempDir, capture: &Path) -> BTreeMap<u64, String> {
    let args = [
        "-Y",
        "tp3kv",
        "-T",
        "fields",
        "-e",
        "frame.number",
        "-e",
        "_ws.col.Info",
    ];
    let out = tshark(dir, capture, &args).unwrap();
    out.lines()
        .map(|l| {
            let (n, info) = l.split_once('\t').unwrap();
            (n.parse().unwrap(), info.to_string())
        })
        .collect()
}

/// Numbers of the packets `filter` selects.
fn matching(dir: &TempDir, capture: &Path, extra: &[&str], filter: &str) -> Vec<u64> {
    let mut args = vec!["-Y", filter, "-T", "fields", "-e", "frame.number"];
    args.extend_from_slice(extra);
    let out = tshark(dir, capture, &args).unwrap();
    out.lines().map(|l| l.parse().unwrap()).collect()
}

/// A classic pcap file of IPv4 packets (LINKTYPE_RAW) written from hand-built TCP
/// segments. Checksums are left zero: tshark does not check them by default.
#[derive(Default)]
struct Pcap {
    packets: Vec<Vec<u8>>,
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;

impl Pcap {
    /// Adds one segment; returns its packet number (1-based, as tshark counts).
    fn segment(
        &mut self,
        from: ([u8; 4], u16),
        to: ([u8; 4], u16),
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
    ) -> u64 {
        let total = (20 + 20 + payload.len()) as u16;
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&(self.packets.len() as u16).to_be_bytes());
        p.extend_from_slice(&[0x40, 0, 64, 6, 0, 0]); // DF, TTL 64, TCP, checksum 0
        p.extend_from_slice(&from.0);
        p.extend_from_slice(&to.0);
        p.extend_from_slice(&from.1.to_be_bytes());
        p.extend_from_slice(&to.1.to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ack.to_be_bytes());
        p.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]); // 20-byte header
        p.extend_from_slice(payload);
        self.packets.push(p);
        self.packets.len() as u64
    }

    fn write(&self, path: &Path) {
        let mut out = Vec::new();
        out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(&[0; 8]); // thiszone, sigfigs
        out.extend_from_slice(&65535u32.to_le_bytes()); // snaplen
        out.extend_from_slice(&101u32.to_le_bytes()); // LINKTYPE_RAW
        for (i, p) in self.packets.iter().enumerate() {
            let (secs, micros) = (1_700_000_000 + i as u32 / 1000, (i as u32 % 1000) * 1000);
            for word in [secs, micros, p.len() as u32, p.len() as u32] {
                out.extend_from_slice(&word.to_le_bytes());
            }
            out.extend_from_slice(p);
        }
        std::fs::write(path, out).unwrap();
    }
}

/// One TCP connection inside a [`Pcap`], keeping both sequence numbers.
struct Conn {
    a: ([u8; 4], u16),
    b: ([u8; 4], u16),
    next: [u32; 2],
}

impl Conn {
    /// The three-way handshake, `a` connecting to `b`.
    fn open(pcap: &mut Pcap, a: ([u8; 4], u16), b: ([u8; 4], u16)) -> Conn {
        let (isn_a, isn_b) = (1000, 900_000);
        pcap.segment(a, b, isn_a, 0, SYN, &[]);
        pcap.segment(b, a, isn_b, isn_a + 1, SYN | ACK, &[]);
        pcap.segment(a, b, isn_a + 1, isn_b + 1, ACK, &[]);
        Conn {
            a,
            b,
            next: [isn_a + 1, isn_b + 1],
        }
    }

    /// A data segment from `a` (or from `b`); returns its packet number.
    fn send(&mut self, pcap: &mut Pcap, from_a: bool, data: &[u8]) -> u64 {
        let (from, to, i) = if from_a {
            (self.a, self.b, 0)
        } else {
            (self.b, self.a, 1)
        };
        let n = pcap.segment(from, to, self.next[i], self.next[1 - i], PSH_ACK, data);
        self.next[i] += data.len() as u32;
        n
    }
}

// Frame builders, straight from the table in docs/PROTOCOL.md.
fn id(port: u16) -> Vec<u8> {
    [&4u16.to_be_bytes()[..], &port.to_be_bytes()].concat()
}

fn with_text(kind: u16, seq: u32, text: &[u8]) -> Vec<u8> {
    let len = (text.len() as u16).to_be_bytes();
    [&kind.to_be_bytes()[..], &seq.to_be_bytes(), &len, text].concat()
}

fn toporeq(seq: u32) -> Vec<u8> {
    [&6u16.to_be_bytes()[..], &seq.to_be_bytes()].concat()
}

fn flood(kind: u16, ttl: u16, seq: u32, client: ([u8; 4], u16), text: &[u8]) -> Vec<u8> {
    let len = (text.len() as u16).to_be_bytes();
    [
        &kind.to_be_bytes()[..],
        &ttl.to_be_bytes(),
        &seq.to_be_bytes(),
        &client.0,
        &client.1.to_be_bytes(),
        &len,
        text,
    ]
    .concat()
}

const CLIENT_IP: [u8; 4] = [10, 0, 0, 1];
const S2_IP: [u8; 4] = [10, 0, 0, 2];
const S3_IP: [u8; 4] = [10, 0, 0, 3];
// Ports no Wireshark dissector claims, so the heuristic gets every conversation.
const REPLY_PORT: u16 = 51515;
const S2_PORT: u16 = 47001;
const S3_PORT: u16 = 47002;

#[test]
fn synthetic_capture_every_frame_type_and_every_field() {
    if tshark_missing("synthetic_capture_every_frame_type_and_every_field") {
        return;
    }
    let dir = TempDir::new("wireshark-synth");
    let mut pcap = Pcap::default();
    let client = (CLIENT_IP, REPLY_PORT);
    let mut expected: BTreeMap<u64, Vec<Fields>> = BTreeMap::new();

    // A client's connection: ID, KEYREQ and TOPOREQ in one segment, then a key that is
    // not ASCII ("clé" in UTF-8, then a byte that is not UTF-8 at all).
    let mut c = Conn::open(&mut pcap, (CLIENT_IP, 51000), (S2_IP, S2_PORT));
    let three = [id(REPLY_PORT), with_text(5, 7, b"abc"), toporeq(8)].concat();
    let n = c.send(&mut pcap, true, &three);
    expected.insert(
        n,
        vec![
            fields(&[("type", "4"), ("port", "51515")]),
            fields(&[("type", "5"), ("seq", "7"), ("len", "3"), ("key", "abc")]),
            fields(&[("type", "6"), ("seq", "8")]),
        ],
    );
    let n = c.send(&mut pcap, true, &with_text(5, 9, b"cl\xc3\xa9\xff"));
    expected.insert(
        n,
        vec![fields(&[
            ("type", "5"),
            ("seq", "9"),
            ("len", "5"),
            ("key", "cl\u{e9}\u{fffd}"),
        ])],
    );

    // A neighbour link: ID(0); a KEYFLOOD cut inside its header and inside its key,
    // whose last piece also carries a whole TOPOFLOOD; an empty-key KEYFLOOD back.
    let mut l = Conn::open(&mut pcap, (S2_IP, 40002), (S3_IP, S3_PORT));
    let n = l.send(&mut pcap, true, &id(0));
    expected.insert(n, vec![fields(&[("type", "4"), ("port", "0")])]);
    let keyflood = flood(7, 2, 7, client, b"rtmp-key");
    let topo = b"10.0.0.2:47001 10.0.0.3:47002";
    let topoflood = flood(8, 2, 8, client, topo);
    assert_eq!(l.send(&mut pcap, true, &keyflood[..5]), n + 1);
    assert_eq!(l.send(&mut pcap, true, &keyflood[5..19]), n + 2);
    let n = l.send(&mut pcap, true, &[&keyflood[19..], &topoflood[..]].concat());
    let flood_fields = |kind: &str, ttl: &str, seq: &str, len: &str, text: (&str, &str)| {
        fields(&[
            ("type", kind),
            ("ttl", ttl),
            ("seq", seq),
            ("client_ip", "10.0.0.1"),
            ("client_port", "51515"),
            ("len", len),
            text,
        ])
    };
    expected.insert(
        n,
        vec![
            flood_fields("7", "2", "7", "8", ("key", "rtmp-key")),
            flood_fields(
                "8",
                "2",
                "8",
                "29",
                ("info", "10.0.0.2:47001 10.0.0.3:47002"),
            ),
        ],
    );
    let n = l.send(&mut pcap, false, &flood(7, 1, 9, client, b""));
    expected.insert(n, vec![flood_fields("7", "1", "9", "0", ("key", ""))]);

    // Answer connections to the client's reply port: a short RESP, and the longest
    // value (400 bytes) split in two.
    let mut r = Conn::open(&mut pcap, (S3_IP, 40003), client);
    let n = r.send(&mut pcap, true, &with_text(9, 7, b"RedesRules"));
    expected.insert(
        n,
        vec![fields(&[
            ("type", "9"),
            ("seq", "7"),
            ("len", "10"),
            ("value", "RedesRules"),
        ])],
    );
    let mut r = Conn::open(&mut pcap, (S2_IP, 40005), client);
    let long = with_text(9, 1, &[b'x'; 400]);
    r.send(&mut pcap, true, &long[..200]);
    let n = r.send(&mut pcap, true, &long[200..]);
    let xs = "x".repeat(400);
    expected.insert(
        n,
        vec![fields(&[
            ("type", "9"),
            ("seq", "1"),
            ("len", "400"),
            ("value", &xs),
        ])],
    );

    let capture = dir.0.join("synthetic.pcap");
    pcap.write(&capture);

    // Found by the heuristic alone, by Decode As, and by the ports preference.
    let no_heuristic = ["--disable-heuristic", "tp3kv_tcp"];
    let ways = [
        ("heuristic", vec![]),
        (
            "decode as",
            [
                &no_heuristic[..],
                &["-d", "tcp.port==47001-47002,tp3kv"],
                &["-d", "tcp.port==51515,tp3kv"],
            ]
            .concat(),
        ),
        (
            "preference",
            [
                &no_heuristic[..],
                &["-o", "tp3kv.tcp_ports:47001-47002,51515"],
            ]
            .concat(),
        ),
    ];
    for (way, args) in ways {
        let got = frames(&dir, &capture, &args).unwrap();
        assert_eq!(by_packet(&got), expected, "decoded by {way}");
    }

    // The Info column: one summary per frame, `; ` between frames of one packet.
    let info = info_column(&dir, &capture);
    let keys: Vec<u64> = expected.keys().copied().collect();
    let long_info = format!("RESP seq=1 value=\"{}...\"", "x".repeat(45));
    let want: BTreeMap<u64, String> = keys
        .iter()
        .copied()
        .zip([
            "ID port=51515 (client); KEYREQ seq=7 key=\"abc\"; TOPOREQ seq=8",
            "KEYREQ seq=9 key=\"cl\u{e9}\u{fffd}\"",
            "ID port=0 (servent)",
            "KEYFLOOD ttl=2 seq=7 client=10.0.0.1:51515 key=\"rtmp-key\"; \
             TOPOFLOOD ttl=2 seq=8 client=10.0.0.1:51515 info=\"10.0.0.2:47001 10.0.0.3:47002\"",
            "KEYFLOOD ttl=1 seq=9 client=10.0.0.1:51515 key=\"\"",
            "RESP seq=7 value=\"RedesRules\"",
            &long_info,
        ])
        .map(|(n, s)| (n, s.to_string()))
        .collect();
    assert_eq!(info, want);

    // Display filters on the fields select the frames they name.
    let filtered = |filter| matching(&dir, &capture, &[], filter);
    assert_eq!(
        filtered("tp3kv.seq == 7 && tp3kv.client_port == 51515"),
        [keys[3]]
    );
    assert_eq!(filtered("tp3kv.key == \"abc\""), [keys[0]]);
    assert_eq!(filtered("tp3kv.type == 4 && tp3kv.port == 0"), [keys[2]]);
    assert_eq!(
        filtered("tp3kv.client_ip == 10.0.0.1 && tp3kv.ttl == 1"),
        [keys[4]]
    );
}

#[test]
fn synthetic_capture_malformed_streams_are_flagged_and_not_guessed() {
    if tshark_missing("synthetic_capture_malformed_streams_are_flagged_and_not_guessed") {
        return;
    }
    let dir = TempDir::new("wireshark-malformed");
    let mut pcap = Pcap::default();

    // A servent link that starts well, then sends an unknown type.
    let mut a = Conn::open(&mut pcap, (S2_IP, 40004), (S3_IP, S3_PORT));
    let id_packet = a.send(&mut pcap, true, &id(0));
    let bad_type = a.send(&mut pcap, true, &[0, 99, 0, 0, 0, 1, 0]);
    // A KEYREQ whose len says 401, from its first segment on: no heuristic match.
    let mut b = Conn::open(&mut pcap, (CLIENT_IP, 51001), (S3_IP, 47005));
    let too_long = b.send(
        &mut pcap,
        true,
        &[&with_text(5, 1, b"")[..6], &[1, 0x91]].concat(),
    );
    b.send(&mut pcap, true, &[b'x'; 30]);
    // Not tp3kv at all.
    let mut h = Conn::open(&mut pcap, (CLIENT_IP, 51002), (S3_IP, 47009));
    h.send(&mut pcap, true, b"GET / HTTP/1.0\r\n\r\n");
    let capture = dir.0.join("malformed.pcap");
    pcap.write(&capture);

    let unknown = fields(&[
        ("type", "99"),
        (
            "expert",
            "unknown type 99: the stream cannot be resynchronised",
        ),
    ]);
    let over = fields(&[
        ("type", "5"),
        ("len", "401"),
        ("expert", "KEYREQ length 401 is over 400"),
    ]);
    let id0 = fields(&[("type", "4"), ("port", "0")]);

    // The heuristic takes only the stream that began with a valid frame.
    let got = by_packet(&frames(&dir, &capture, &[]).unwrap());
    let want = BTreeMap::from([
        (id_packet, vec![id0.clone()]),
        (bad_type, vec![unknown.clone()]),
    ]);
    assert_eq!(got, want);

    // Decode As shows the oversized len, and the following segment of the broken stream
    // is decoded from its start (it is all `x`, an unknown type) rather than looping.
    let got = by_packet(&frames(&dir, &capture, &["-d", "tcp.port==47005,tp3kv"]).unwrap());
    let after = too_long + 1;
    let unknown_x = fields(&[
        ("type", "30840"),
        (
            "expert",
            "unknown type 30840: the stream cannot be resynchronised",
        ),
    ]);
    let want = BTreeMap::from([
        (id_packet, vec![id0]),
        (bad_type, vec![unknown]),
        (too_long, vec![over]),
        (after, vec![unknown_x]),
    ]);
    assert_eq!(got, want);

    // Filterable as a tp3kv expert error and as a malformed packet.
    let decode_as = ["-d", "tcp.port==47005,tp3kv"];
    for filter in [
        "tp3kv.malformed",
        "_ws.malformed",
        "_ws.expert.severity == error",
    ] {
        assert_eq!(
            matching(&dir, &capture, &decode_as, filter),
            [bad_type, too_long, after],
            "{filter}"
        );
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The fields tshark must show for a frame as `wire-vectors.json` describes it.
fn vector_fields(frame: &serde_json::Value) -> Fields {
    let names = ["ID", "KEYREQ", "TOPOREQ", "KEYFLOOD", "TOPOFLOOD", "RESP"];
    let kind = 4 + names.iter().position(|&n| frame["type"] == n).unwrap();
    let mut fields = fields(&[("type", &kind.to_string())]);
    for (key, value) in frame.as_object().unwrap() {
        let value = match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let name = match (key.as_str(), kind) {
            ("type", _) => continue,
            ("port", 7 | 8) => "client_port",
            ("ip", _) => "client_ip",
            (key, _) => key,
        };
        if matches!(name, "key" | "info" | "value") {
            fields.insert("len".into(), value.len().to_string());
        }
        fields.insert(name.into(), value);
    }
    fields
}

#[test]
fn synthetic_capture_of_the_shared_wire_vectors() {
    if tshark_missing("synthetic_capture_of_the_shared_wire_vectors") {
        return;
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/wire-vectors.json");
    let vectors: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let dir = TempDir::new("wireshark-vectors");
    let mut pcap = Pcap::default();
    let mut expected: BTreeMap<u64, Vec<Fields>> = BTreeMap::new();

    // The valid frames one per segment on one connection (the first is an ID, which the
    // heuristic needs), then the stream cases: two frames in one segment, and a frame
    // cut short, which must wait for more rather than show anything.
    let mut c = Conn::open(&mut pcap, (S2_IP, 40010), (S3_IP, 47010));
    for v in vectors["valid"].as_array().unwrap() {
        let n = c.send(&mut pcap, true, &hex(v["hex"].as_str().unwrap()));
        expected.insert(n, vec![vector_fields(&v["frame"])]);
    }
    let mut stream = vectors["stream"].as_array().unwrap().clone();
    // A cut frame would swallow what follows it: it goes last.
    stream.sort_by_key(|v| v["incomplete"] == true);
    for v in &stream {
        let n = c.send(&mut pcap, true, &hex(v["hex"].as_str().unwrap()));
        if let Some(frames) = v["frames"].as_array() {
            expected.insert(n, frames.iter().map(vector_fields).collect());
        } else {
            assert_eq!(v["incomplete"], true, "{v}");
        }
    }
    // Each invalid header on a connection of its own, to ports 48000 on, decoded as
    // tp3kv by port: the heuristic rightly refuses them.
    for (i, v) in vectors["invalid"].as_array().unwrap().iter().enumerate() {
        let bytes = hex(v["hex"].as_str().unwrap());
        let mut c = Conn::open(
            &mut pcap,
            (S2_IP, 40020 + i as u16),
            (S3_IP, 48000 + i as u16),
        );
        let n = c.send(&mut pcap, true, &bytes);
        let kind = u16::from_be_bytes([bytes[0], bytes[1]]);
        let mut want = fields(&[("type", &kind.to_string())]);
        let expert = if v["error"].as_str().unwrap().starts_with("unknown type") {
            format!("unknown type {kind}: the stream cannot be resynchronised")
        } else {
            let len = u16::from_be_bytes([bytes[bytes.len() - 2], bytes[bytes.len() - 1]]);
            want.insert("len".into(), len.to_string());
            let name = if kind == 5 { "KEYREQ" } else { "KEYFLOOD" };
            format!("{name} length {len} is over 400")
        };
        want.insert("expert".into(), expert);
        expected.insert(n, vec![want]);
    }
    let capture = dir.0.join("vectors.pcap");
    pcap.write(&capture);

    let decode_as = ["-d", "tcp.port==48000-48003,tp3kv"];
    let got = frames(&dir, &capture, &decode_as).unwrap();
    assert_eq!(by_packet(&got), expected);
}

/// A network namespace of this test's own: its loopback carries nothing but the
/// test's traffic, so the capture needs no port filter (the ports are only known once
/// the servents run, and answers go to the client's ephemeral port). Deleted at drop.
struct Netns(String);

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("`ip {}`: {}", args.join(" "), err.trim()));
    }
    Ok(())
}

impl Netns {
    fn new() -> Result<Netns, String> {
        let name = format!("tp3ws-{}", std::process::id());
        ip(&["netns", "add", &name])?;
        let ns = Netns(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `program` run inside the namespace (`ip netns exec` execs it: same pid).
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.0, program]);
        command
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

/// dumpcap writing the namespace's loopback to a file; killed at drop if still running.
struct Capture {
    child: Child,
    path: PathBuf,
    log: PathBuf,
}

impl Capture {
    /// Starts it and waits until dumpcap says it is capturing.
    fn start(ns: &Netns, dir: &TempDir) -> Result<Capture, String> {
        let path = dir.0.join("diamond.pcapng");
        let log = dir.0.join("dumpcap.log");
        let child = ns
            .command("dumpcap")
            .args(["-i", "lo", "-f", "tcp", "-w"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .map_err(|e| format!("cannot run dumpcap: {e}"))?;
        let mut capture = Capture { child, path, log };
        let start = Instant::now();
        loop {
            let said = std::fs::read_to_string(&capture.log).unwrap_or_default();
            if said.contains("Capturing on") {
                return Ok(capture);
            }
            if let Some(status) = capture.child.try_wait().unwrap() {
                return Err(format!("dumpcap exited ({status}): {}", said.trim()));
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err(format!("dumpcap did not start: {}", said.trim()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ends the capture with SIGINT, so dumpcap finishes the file.
    fn stop(&mut self) {
        // SAFETY: kill only sends a signal to our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let start = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.wait();
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the diamond s1–{s2,s3}–s4 must show for `? far` then `T` from a client on s1,
/// s4 alone holding `far`; `port` holds s1..s4's ports. Only what no race can change:
/// which copies of a flood are dropped depends on which arrives first.
fn check_diamond(frames: &[Frame], port: [u16; 4]) -> Result<(), String> {
    let [p1, p2, p3, p4] = port;
    let of_type = |t: &'static str| frames.iter().filter(move |f| f.get("type") == t);
    let fail = |what: &str| Err(format!("{what}; frames:\n{frames:#?}"));
    let sorted = |mut v: Vec<u16>| {
        v.sort();
        v
    };

    // Each servent announces itself on the links it dials: s1 to s2 and s3, those to s4.
    let servent_ids: Vec<u16> = of_type("4")
        .filter(|f| f.get("port") == "0")
        .map(|f| f.dst_port)
        .collect();
    if sorted(servent_ids) != sorted(vec![p2, p3, p4, p4]) {
        return fail("ID(0) is not on each of the four links");
    }
    let client_ids: Vec<&Frame> = of_type("4").filter(|f| f.get("port") != "0").collect();
    let [client_id] = client_ids[..] else {
        return fail("not exactly one client ID");
    };
    let reply = client_id.get("port");
    if client_id.dst_port != p1 {
        return fail("the client's ID is not sent to s1");
    }

    let keyreqs: Vec<&Frame> = of_type("5").collect();
    let [keyreq] = keyreqs[..] else {
        return fail("not exactly one KEYREQ");
    };
    if (keyreq.get("key"), keyreq.get("len"), keyreq.dst_port) != ("far", "3", p1) {
        return fail("the KEYREQ is not `far` to s1");
    }
    let seq: u32 = keyreq.get("seq").parse().unwrap();
    let (seq, topo_seq) = (seq.to_string(), seq.wrapping_add(1).to_string());

    // Every copy of a flood names the query (seq and the client's reply address).
    let floods = |t: &'static str, seq: &str| -> Vec<&Frame> {
        of_type(t)
            .filter(|f| {
                f.get("seq") == seq
                    && f.get("client_ip") == "127.0.0.1"
                    && f.get("client_port") == reply
            })
            .collect()
    };
    let keyfloods = floods("7", &seq);
    if keyfloods.len() != of_type("7").count()
        || keyfloods
            .iter()
            .any(|f| (f.get("key"), f.get("len")) != ("far", "3"))
    {
        return fail("a KEYFLOOD does not carry the query");
    }
    let ttl = |list: &[&Frame], ttl: &str| -> Vec<u16> {
        list.iter()
            .filter(|f| f.get("ttl") == ttl)
            .map(|f| f.dst_port)
            .collect()
    };
    // s1 sends TTL 3 to s2 and s3; each of them handling it sends TTL 2 on to s4.
    if sorted(ttl(&keyfloods, "3")) != sorted(vec![p2, p3]) {
        return fail("KEYFLOOD ttl 3 is not sent once to each of s2 and s3");
    }
    let ttl2 = ttl(&keyfloods, "2");
    if ttl2.is_empty() || ttl2.iter().any(|&p| p != p4) {
        return fail("no KEYFLOOD ttl 2, or one not sent to s4");
    }
    let answers: Vec<&Frame> = of_type("9").filter(|f| f.get("seq") == seq).collect();
    let [answer] = answers[..] else {
        return fail("not exactly one RESP to the key query");
    };
    let want = ("the far value", "13", p4, reply.parse().unwrap());
    if (
        answer.get("value"),
        answer.get("len"),
        answer.src_port,
        answer.dst_port,
    ) != want
    {
        return fail("the key's RESP is not s4's stored value sent to the reply port");
    }

    let toporeqs: Vec<&Frame> = of_type("6").collect();
    let [toporeq] = toporeqs[..] else {
        return fail("not exactly one TOPOREQ");
    };
    if (toporeq.get("seq"), toporeq.dst_port) != (topo_seq.as_str(), p1) {
        return fail("the TOPOREQ does not follow the KEYREQ's seq, to s1");
    }
    let s1 = format!("127.0.0.1:{p1}");
    let topofloods = floods("8", &topo_seq);
    if topofloods.len() != of_type("8").count()
        || topofloods.iter().any(|f| !f.get("info").starts_with(&s1))
    {
        return fail("a TOPOFLOOD does not carry the query and s1's address");
    }
    if sorted(ttl(&topofloods, "3")) != sorted(vec![p2, p3])
        || topofloods
            .iter()
            .any(|f| f.get("ttl") == "3" && f.get("info") != s1)
    {
        return fail("TOPOFLOOD ttl 3 is not s1's address sent to s2 and s3");
    }
    if ttl(&topofloods, "2").is_empty() {
        return fail("no TOPOFLOOD ttl 2");
    }
    // Every servent answers the topology query once, from its own port.
    let topo_answers: Vec<&Frame> = of_type("9").filter(|f| f.get("seq") == topo_seq).collect();
    let from = sorted(topo_answers.iter().map(|f| f.src_port).collect());
    if from != sorted(vec![p1, p2, p3, p4]) {
        return fail("not one topology RESP from each servent");
    }
    for f in &topo_answers {
        let value = f.get("value");
        let ok = value.starts_with(&s1)
            && (f.src_port != p1 || value == s1)
            && (f.src_port != p4 || value.ends_with(&format!(" 127.0.0.1:{p4}")));
        if !ok || f.get("len") != value.len().to_string() {
            return fail("a topology RESP does not list the path from s1");
        }
    }
    Ok(())
}

#[test]
fn real_diamond_captured_on_a_private_loopback() {
    const TEST: &str = "real_diamond_captured_on_a_private_loopback";
    if tshark_missing(TEST) {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            !root_required(),
            "{REQUIRE_ROOT}=1, but capturing needs root"
        );
        skipped(format_args!(
            "{TEST}: capturing needs root; set {REQUIRE_ROOT}=1 to make this a failure"
        ));
        return;
    }
    let dir = TempDir::new("wireshark-real");
    let ns = match Netns::new() {
        Ok(ns) => ns,
        Err(e) => {
            assert!(!root_required(), "{REQUIRE_ROOT}=1, but no namespace: {e}");
            skipped(format_args!(
                "{TEST}: no network namespace to capture in: {e}"
            ));
            return;
        }
    };
    let mut capture = match Capture::start(&ns, &dir) {
        Ok(capture) => capture,
        Err(e) => {
            assert!(
                !root_required(),
                "{REQUIRE_ROOT}=1, but cannot capture: {e}"
            );
            skipped(format_args!("{TEST}: cannot capture on lo: {e}"));
            return;
        }
    };

    // The diamond, each servent on an ephemeral port, dialling only running ones.
    let servent = |tag: &str, store: &str, neighbours: &[&Node]| -> Node {
        let file = dir.file(&format!("{tag}.kv"), store);
        let mut command = ns.command(SERVENT);
        command
            .env("RUST_LOG", "debug")
            .args(["--listen-ip", "127.0.0.1", "0"])
            .arg(&file)
            .args(neighbours.iter().map(|n| n.local()));
        start_node(command, &dir, tag)
    };
    let s4 = servent("s4", "far the far value\n", &[]);
    let s2 = servent("s2", "near s2\n", &[&s4]);
    let s3 = servent("s3", "near s3\n", &[&s4]);
    let s1 = servent("s1", "near s1\n", &[&s2, &s3]);
    wait_links(&s1, 2);
    wait_links(&s4, 2);

    let mut client = ns.command(CLIENT);
    client
        .env("LC_ALL", ENGLISH)
        .args(["--timeout", CLIENT_TIMEOUT])
        .arg(s1.local());
    let run = run_process(client, "? far\nT\nQ\n", Duration::from_secs(120));
    assert!(run.success, "{run:?}");
    assert!(
        run.stdout
            .contains(&format!("the far value {}", s4.local())),
        "{run:?}"
    );

    // tshark reads the file while dumpcap still writes it, until every frame is in;
    // the heuristic goes first in case an ephemeral port is some protocol's port.
    let port = [s1.port(), s2.port(), s3.port(), s4.port()];
    let args = ["-o", "tcp.try_heuristic_first:TRUE"];
    let path = capture.path.clone();
    let check = || frames(&dir, &path, &args).and_then(|f| check_diamond(&f, port));
    let start = Instant::now();
    while let Err(e) = check() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{e}\nservent logs:\n{}\n{}\n{}\n{}",
            s1.log(),
            s2.log(),
            s3.log(),
            s4.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    capture.stop();
    check().unwrap();
}
