//! The servent as a newcomer meets it: `--help` and `--version`, its exit statuses and
//! one-line errors, a neighbour that cannot be reached (one warning, one line when it
//! comes up), and the `RUST_LOG` filters the README names, with frames logged in the
//! wire's words; `--full-reach` among servents without it. Every test runs the real
//! binary.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::*;
use tp3kv::protocol::{decode, Flood, Frame, Text};

const LIMIT: Duration = Duration::from_secs(20);
const FLOOD_VIEW: &str = env!("CARGO_BIN_EXE_flood-view");
const EXIT_STATUS: &str = "Exit status: 0 on success, 1 on a runtime error, 2 on a usage error.";

/// A servent command with the default log level, whatever the test runner's RUST_LOG.
fn servent_cmd(args: &[&str]) -> Command {
    let mut command = Command::new(SERVENT);
    command.env_remove("RUST_LOG").args(args);
    command
}

fn run(args: &[&str]) -> Finished {
    run_to_end(servent_cmd(args), LIMIT)
}

/// A port nobody listens on (just freed by the system).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Asserts that `run` ended with `code` and one error line on stderr; returns it.
fn one_error_line(run: &Finished, code: i32, what: &str) -> String {
    assert_eq!(
        run.code,
        Some(code),
        "{what}: stdout {:?}, stderr {:?}",
        run.stdout,
        run.stderr
    );
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: {:?}", run.stderr);
    assert!(
        lines[0].starts_with("servent: error: "),
        "{what}: {:?}",
        lines[0]
    );
    assert!(run.stdout.is_empty(), "{what}: {:?}", run.stdout);
    lines[0].to_string()
}

#[test]
fn help_describes_the_servent_and_ends_with_the_exit_statuses() {
    for flag in ["--help", "-h"] {
        let help = run(&[flag]);
        assert_eq!(help.code, Some(0), "{}", help.stderr);
        let text = &help.stdout;
        for needle in [
            "servent of the TP3 key-value network",
            "Usage: servent [OPTIONS] <PORT> <KEYVALUES_FILE> [IP:PORT]...",
            "neighbour",
            "Examples:",
            "servent 5002 more.txt 127.0.0.1:5001",
            "RUST_LOG",
            "--listen-ip",
            "--full-reach",
            "the seed passes each query on once",
        ] {
            assert!(text.contains(needle), "{flag}: no {needle:?} in:\n{text}");
        }
        assert_eq!(text.trim_end().lines().last(), Some(EXIT_STATUS), "{text}");
    }
}

#[test]
fn version_names_the_servent() {
    let version = run(&["--version"]);
    assert_eq!(version.code, Some(0));
    assert_eq!(
        version.stdout,
        format!("servent {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_are_one_line_and_exit_2() {
    let dir = TempDir::new("cli-usage");
    let file = dir.file("kv", "rtmp 1935/tcp\n");
    let file = file.to_str().unwrap();
    let cases: [(&[&str], &str); 8] = [
        (&["0", file, "notanaddr"], "bad address \"notanaddr\""),
        (&["0", file, "127.0.0.1:0"], "bad address \"127.0.0.1:0\""),
        (&["0", file, "300.0.0.1:5000"], "bad address"),
        (&["--id-timeout", "0", "0", file], "--id-timeout"),
        (
            &["--seen-lifetime", "soon", "0", file],
            "positive number of seconds",
        ),
        (&["--listen-ip", "1.2.3", "0", file], "--listen-ip"),
        (&["--bogus", "0", file], "--bogus"),
        (&[], "<PORT>"),
    ];
    for (args, needle) in cases {
        let line = one_error_line(&run(args), 2, &format!("{args:?}"));
        assert!(line.contains(needle), "{args:?}: {line}");
        assert!(!line.contains("Usage"), "{args:?}: {line}");
    }
}

/// The messages a newcomer meets, word for word: the own port mistyped, an address or
/// the file put first, ports out of range, addresses that are not ones.
#[test]
fn command_line_mistakes_say_what_is_wrong() {
    const ORDER: &str = "servent PORT KEYVALUES_FILE [IP:PORT]...";
    let first = format!("; the first argument is the servent's own port: {ORDER}");
    let cases: [(&[&str], String); 7] = [
        (
            &["abc", "f"],
            format!(
                "bad port \"abc\": expected a number from 0 to 65535 (0: any free port){first}"
            ),
        ),
        (
            &["f", "5011"],
            format!("bad port \"f\": expected a number from 0 to 65535 (0: any free port){first}"),
        ),
        (
            &["127.0.0.1:5011", "f"],
            format!(
                "\"127.0.0.1:5011\" is an address, not a port: the servent's own port comes \
                 first, its neighbours last: {ORDER}"
            ),
        ),
        (
            &["70000", "f"],
            "bad port 70000: expected a number from 0 to 65535 (0: any free port)".into(),
        ),
        (
            &["0", "f", "127.0.0.1:99999"],
            "bad address \"127.0.0.1:99999\": bad port 99999: expected a number from 1 to \
             65535"
                .into(),
        ),
        (
            &["0", "f", "256.0.0.1:5012"],
            "bad address \"256.0.0.1:5012\": 256.0.0.1 is not an IPv4 address (four numbers \
             from 0 to 255, such as 127.0.0.1)"
                .into(),
        ),
        (
            &["0", "f", "127.0.0.1:5011:1"],
            "bad address \"127.0.0.1:5011:1\": expected ip:port, with a single colon".into(),
        ),
    ];
    for (args, want) in cases {
        let line = one_error_line(&run(args), 2, &format!("{args:?}"));
        assert_eq!(line, format!("servent: error: {want}"), "{args:?}");
    }
}

/// An address of this host other than loopback, if it has one with a route out.
fn host_address() -> Option<Ipv4Addr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    // A UDP connect sends nothing: it only picks the route and the source address.
    socket.connect("192.0.2.1:9").ok()?;
    match socket.local_addr().ok()?.ip() {
        std::net::IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}

#[test]
fn a_servent_refuses_itself_as_its_neighbour() {
    let dir = TempDir::new("cli-self");
    let file = dir.file("kv", "rtmp 1935/tcp\n");
    let file = file.to_str().unwrap();
    let port = free_port().to_string();
    let at = |ip: &str| format!("{ip}:{port}");
    let mut cases: Vec<Vec<String>> = vec![
        // The exact address it listens on.
        vec![
            "--listen-ip".into(),
            "127.0.0.1".into(),
            port.clone(),
            file.into(),
            at("127.0.0.1"),
        ],
        // Listening on every address: loopback, any loopback address, a name for it.
        vec![port.clone(), file.into(), at("127.0.0.1")],
        vec![port.clone(), file.into(), at("127.0.0.7")],
        vec![port.clone(), file.into(), at("localhost")],
        vec![
            port.clone(),
            file.into(),
            "127.0.0.1:1".into(),
            at("0.0.0.0"),
        ],
        // The address it advertises.
        vec![
            "--advertise".into(),
            "10.1.2.3".into(),
            port.clone(),
            file.into(),
            at("10.1.2.3"),
        ],
    ];
    match host_address() {
        Some(ip) => cases.push(vec![port.clone(), file.into(), at(&ip.to_string())]),
        None => eprintln!("no non-loopback address with a route: that case is skipped"),
    }
    for args in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let line = one_error_line(&run(&args), 2, &format!("{args:?}"));
        assert!(
            line.contains("is this servent itself") && line.contains(&format!(":{port}")),
            "{args:?}: {line}"
        );
    }
}

#[test]
fn a_listen_ip_not_of_this_host_is_one_line_and_exit_1() {
    let dir = TempDir::new("cli-bind");
    let file = dir.file("kv", "rtmp 1935/tcp\n");
    // TEST-NET-1: documentation only, never a host's address.
    let ip = "192.0.2.1";
    let run = run(&["--listen-ip", ip, "0", file.to_str().unwrap()]);
    let line = one_error_line(&run, 1, "unbindable --listen-ip");
    assert_eq!(
        line,
        format!("servent: error: cannot listen on {ip}:0: {ip} is not an address of this host")
    );
}

/// Starts a servent at the default log level (or `rust_log`) whose one neighbour is
/// `neighbour`.
fn servent_towards(dir: &TempDir, tag: &str, neighbour: &str, rust_log: Option<&str>) -> Node {
    let file = dir.file(&format!("{tag}.kv"), "rtmp 1935/tcp\n");
    let mut command = servent_cmd(&["0", file.to_str().unwrap(), neighbour]);
    if let Some(filter) = rust_log {
        command.env("RUST_LOG", filter);
    }
    start_node(command, dir, tag)
}

fn lines_with(log: &str, needle: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn an_unreachable_neighbour_is_one_warning_and_one_line_when_it_comes_up() {
    let dir = TempDir::new("cli-unreachable");
    let port = free_port();
    let target = format!("127.0.0.1:{port}");
    let a = servent_towards(&dir, "a", &target, None);
    let warning =
        format!("neighbour {target} unreachable (connection refused); retrying until it comes up");
    wait_for("the unreachable warning at the default level", || {
        a.log().contains(&warning)
    });
    let warnings = lines_with(&a.log(), "unreachable (");
    assert_eq!(warnings.len(), 1, "{}", a.log());
    assert!(warnings[0].contains(" WARN "), "{}", warnings[0]);

    let b = servent_at(&dir, "b", port, "k v\n", &[], &[], "info");
    assert_eq!(b.port(), port);
    let up = format!("connected to neighbour {target}, up after ");
    wait_for("the neighbour's up line", || a.log().contains(&up));
    let log = a.log();
    let ups = lines_with(&log, &format!("connected to neighbour {target}"));
    assert_eq!(ups.len(), 1, "{log}");
    assert!(
        ups[0].contains(" INFO ") && ups[0].ends_with(" s unreachable"),
        "{log}"
    );
    assert_eq!(lines_with(&log, "unreachable (").len(), 1, "{log}");
    assert!(!log.contains("DEBUG"), "{log}");
}

/// With the re-dials visible (a debug filter on the dial module alone), many failed
/// dials make one warning; once the neighbour was up and went again, one more.
#[test]
fn re_dials_do_not_repeat_the_warning() {
    let dir = TempDir::new("cli-redial");
    let port = free_port();
    let target = format!("127.0.0.1:{port}");
    let a = servent_towards(&dir, "a", &target, Some("info,servent::net::dial=debug"));
    let failed = format!("dial {target} failed");
    wait_for("four failed dials", || {
        a.log().matches(&failed).count() >= 4
    });
    assert_eq!(
        lines_with(&a.log(), "unreachable (").len(),
        1,
        "{}",
        a.log()
    );

    let mut b = servent_at(&dir, "b", port, "k v\n", &[], &[], "info");
    wait_for("the neighbour's up line", || {
        a.log()
            .contains(&format!("connected to neighbour {target}, up after "))
    });
    // A link that lasts a second starts the back-off again from its shortest delay.
    std::thread::sleep(Duration::from_millis(1500));
    b.kill();
    let before = a.log().matches(&failed).count();
    wait_for("four more failed dials", || {
        a.log().matches(&failed).count() >= before + 4
    });
    let log = a.log();
    assert_eq!(lines_with(&log, "unreachable (").len(), 2, "{log}");
    assert_eq!(
        lines_with(&log, &format!("connected to neighbour {target}")).len(),
        1,
        "{log}"
    );
}

/// No line shows a frame as a Rust value.
fn assert_no_structs(log: &str) {
    for rust in [
        "Flood {",
        "KeyFlood(",
        "TopoFlood(",
        "KeyReq {",
        "TopoReq {",
        "Resp {",
        "Id {",
    ] {
        assert!(!log.contains(rust), "{rust:?} in:\n{log}");
    }
}

#[test]
fn documented_log_filters_show_frames_in_the_wire_words() {
    let dir = TempDir::new("cli-filters");
    for (n, filter) in ["servent=debug", "tp3kv=debug", "debug", "servent"]
        .into_iter()
        .enumerate()
    {
        let file = dir.file(&format!("{n}.kv"), "rtmp 1935/tcp\n");
        let mut command = servent_cmd(&["0", file.to_str().unwrap()]);
        command.env("RUST_LOG", filter);
        let node = start_node(command, &dir, &format!("s{n}"));
        let seq = 4200 + n as u32;
        let (value, _, _) = raw_query(node.port(), seq, "rtmp", LIMIT).unwrap();
        assert_eq!(value, "1935/tcp");
        let keyreq = format!("received KEYREQ seq={seq} key=\"rtmp\" from 127.0.0.1:");
        wait_for(&format!("{keyreq} with RUST_LOG={filter}"), || {
            node.log().contains(&keyreq)
        });
        let log = node.log();
        assert!(log.contains("received ID port="), "{filter}: {log}");
        assert!(lines_with(&log, &keyreq)[0].contains(" DEBUG "), "{log}");
        assert_no_structs(&log);
    }
}

#[test]
fn floods_are_logged_in_the_wire_words_on_both_sides() {
    let dir = TempDir::new("cli-floods");
    let b = servent_at(&dir, "b", 0, "rtmp 1935/tcp\n", &[], &[], "servent=debug");
    let a = servent_at(
        &dir,
        "a",
        0,
        "other 1\n",
        &[b.local()],
        &[],
        "servent=debug",
    );
    wait_links(&b, 1);
    let (value, _, _) = raw_query(a.port(), 77, "rtmp", LIMIT).unwrap();
    assert_eq!(value, "1935/tcp");
    // A floods the query on with TTL 3; B receives it so, and answers.
    let flood = "KEYFLOOD ttl=3 seq=77 client=127.0.0.1:";
    wait_for("A's KEYFLOOD line", || {
        lines_with(&a.log(), &format!("sending {flood}"))
            .iter()
            .any(|l| l.ends_with(" key=\"rtmp\""))
    });
    wait_for("B's KEYFLOOD line", || {
        a.log().contains("sending ") && b.log().contains(&format!("received {flood}"))
    });
    let b_log = b.log();
    assert!(
        b_log.contains("received ID port=0 from 127.0.0.1:"),
        "{b_log}"
    );
    assert_no_structs(&a.log());
    assert_no_structs(&b_log);
}

#[test]
fn the_default_level_shows_no_debug_lines() {
    let dir = TempDir::new("cli-default");
    let file = dir.file("kv", "rtmp 1935/tcp\n");
    let node = start_node(servent_cmd(&["0", file.to_str().unwrap()]), &dir, "s");
    let (value, _, _) = raw_query(node.port(), 9, "rtmp", LIMIT).unwrap();
    assert_eq!(value, "1935/tcp");
    // Log lines reach the file from a thread of their own: on a busy machine, after
    // the answer.
    wait_for("the start-up INFO lines", || node.log().contains(" INFO "));
    let log = node.log();
    assert!(!log.contains("DEBUG"), "{log}");
}

/// A neighbour that accepts and closes at once is re-dialled ever more slowly, not
/// every 100 ms: in two seconds, the delays 100, 200, 400 and 800 ms leave room for at
/// most six links (without the back-off kept across links, some twenty).
#[test]
fn a_neighbour_that_hangs_up_at_once_is_re_dialled_with_back_off() {
    let dir = TempDir::new("cli-flapping");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let a = servent_towards(&dir, "a", &target, None);
    let mut accepted = 0;
    let mut first = None;
    while first.is_none_or(|at: std::time::Instant| at.elapsed() < Duration::from_secs(2)) {
        match listener.accept() {
            Ok((stream, _)) => {
                drop(stream);
                accepted += 1;
                first.get_or_insert_with(std::time::Instant::now);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    assert!(
        (2..=8).contains(&accepted),
        "{accepted} links in 2 s:\n{}",
        a.log()
    );
}

/// A neighbour that is not a servent (here, an HTTP server's reply) is named so in the
/// log, with its first bytes; it is re-dialled ever more slowly, and its links coming
/// up are said once at the default level, not at every re-dial.
#[test]
fn a_neighbour_that_is_not_a_servent_is_named_so_and_re_dialled_slowly() {
    let dir = TempDir::new("cli-http");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let a = servent_towards(&dir, "a", &target, None);
    let mut accepted = 0;
    let mut first = None;
    // Kept open: the servent is the one to close them, for what they sent.
    let mut held = Vec::new();
    while first.is_none_or(|at: std::time::Instant| at.elapsed() < Duration::from_secs(2)) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                use std::io::Write;
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
                held.push(stream);
                accepted += 1;
                first.get_or_insert_with(std::time::Instant::now);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let why = "unknown frame type 0x4854 (\"HT\"): not a tp3kv servent or client?";
    wait_for("the protocol error in the log", || a.log().contains(why));
    let log = a.log();
    assert!(
        (1..=8).contains(&accepted),
        "{accepted} links in 2 s:\n{log}"
    );
    assert!(lines_with(&log, why).len() <= accepted, "{log}");
    let connected = lines_with(&log, &format!("connected to neighbour {target}"));
    assert_eq!(connected.len(), 1, "{log}");
}

/// A raw neighbour of `servent`: connected, `ID(0)` sent.
fn raw_neighbour(servent: &Node) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", servent.port())).unwrap();
    stream.write_all(&Frame::Id { port: 0 }.to_bytes()).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream
}

/// The next whole frame on `stream`, the bytes after it kept in `buf`.
fn next_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Frame {
    let mut chunk = [0u8; 512];
    loop {
        if let Some((frame, used)) = decode(buf).unwrap() {
            buf.drain(..used);
            return frame;
        }
        let n = stream.read(&mut chunk).expect("a frame before the timeout");
        assert!(n > 0, "closed after {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn key_flood(ttl: u16, seq: u32, client: SocketAddrV4, key: &str) -> Vec<u8> {
    Frame::KeyFlood(Flood {
        ttl,
        seq,
        client,
        text: Text::try_from(key).unwrap(),
    })
    .to_bytes()
}

/// Neighbours a, b and c (raw sockets, servents without the option as far as the wire
/// shows) around one servent: a copy of query 1 with TTL 0 from a, then with TTL 2
/// from b, then query 2 with TTL 1 from b. With `--full-reach` the better copy goes on
/// to a and c with TTL 1 and is not answered again; without, c's first frame is query
/// 2's. Deterministic: the servent handles b's frames in order.
#[test]
fn full_reach_passes_a_better_copy_on_again_among_servents_without_it() {
    let dir = TempDir::new("full-reach");
    for full_reach in [true, false] {
        let trace = dir.0.join(format!("s-{full_reach}.jsonl"));
        let trace = trace.to_str().unwrap();
        let mut extra = vec!["--trace", trace];
        if full_reach {
            extra.push("--full-reach");
        }
        let mut s = servent_with(&dir, &format!("s-{full_reach}"), "k v\n", &[], &extra);
        let replies = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = SocketAddrV4::new(Ipv4Addr::LOCALHOST, replies.local_addr().unwrap().port());
        let [mut a, mut b, mut c] = [(); 3].map(|()| raw_neighbour(&s));
        wait_links(&s, 3);

        a.write_all(&key_flood(0, 1, client, "k")).unwrap();
        let (mut answer, _) = replies.accept().unwrap();
        answer.set_read_timeout(Some(LIMIT)).unwrap();
        let resp = next_frame(&mut answer, &mut Vec::new());
        assert!(matches!(resp, Frame::Resp { seq: 1, .. }), "{resp:?}");
        b.write_all(&key_flood(2, 1, client, "k")).unwrap();
        b.write_all(&key_flood(1, 2, client, "not here")).unwrap();

        let mut buf = Vec::new();
        let first = next_frame(&mut c, &mut buf);
        let expected = if full_reach {
            key_flood(1, 1, client, "k")
        } else {
            key_flood(0, 2, client, "not here")
        };
        assert_eq!(first.to_bytes(), expected, "full reach {full_reach}");
        if full_reach {
            let to_a = next_frame(&mut a, &mut Vec::new());
            assert_eq!(to_a.to_bytes(), key_flood(1, 1, client, "k"));
            let second = next_frame(&mut c, &mut buf);
            assert_eq!(second.to_bytes(), key_flood(0, 2, client, "not here"));
        }

        s.signal(libc::SIGTERM);
        assert!(
            s.wait_exit(LIMIT).is_some_and(|st| st.success()),
            "{}",
            s.log()
        );
        let log = s.log();
        let summary = log
            .lines()
            .find(|l| l.contains(": exiting: "))
            .unwrap_or_else(|| panic!("no summary:\n{log}"));
        assert!(summary.contains("answers sent 1 (lost 0)"), "{summary}");
        if full_reach {
            assert!(
                log.contains("full reach: a later copy of a query with more TTL"),
                "{log}"
            );
            assert!(
                log.contains("beats TTL 0 seen before: forwarding again with TTL 1 (full reach)"),
                "{log}"
            );
            assert!(summary.ends_with(", forwarded again 1"), "{summary}");
        } else {
            assert!(!log.contains("full reach"), "{log}");
            assert!(summary.ends_with("slow peers dropped 0"), "{summary}");
        }
        // The trace: the better copy received, then sent on, and what flood-view makes
        // of it (the neighbours have no traces: their copies come from unknown links).
        let view = Command::new(FLOOD_VIEW)
            .args(["--query", "1", trace])
            .output()
            .unwrap();
        let view = String::from_utf8_lossy(&view.stdout);
        let fate = if full_reach {
            "TTL 2  +"
        } else {
            "dropped: duplicate"
        };
        let line = view.lines().find(|l| l.contains("TTL 2"));
        assert!(line.is_some_and(|l| l.contains(fate)), "{view}");
        if full_reach {
            assert!(
                line.unwrap().ends_with("forwarded again (full reach)"),
                "{view}"
            );
            assert!(
                view.contains("1 copy forwarded again (full reach)"),
                "{view}"
            );
        }
    }
}
