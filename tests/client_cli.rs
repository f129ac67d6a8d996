//! The client's command line and output, without a terminal: `--help`, `--version`,
//! exit statuses, the messages for mistyped commands, and answers carrying control
//! characters from a servent that is not ours (escaped, or as they came with `--raw`).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Output, Stdio};

use common::*;
use tp3kv::protocol::{Frame, Text};

fn client_with(args: &[&str]) -> Output {
    client_command()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("client runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn help_describes_the_client_its_commands_and_exit_statuses() {
    let out = client_with(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "Usage: client",
        "? KEY",
        "\n  T ",
        "\n  Q ",
        "end of input",
        "--timeout",
        "--raw",
        "Ctrl-C",
        "Exit status: 0 on success, 1 on a runtime error, 2 on a usage error.",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
    assert!(help.trim_end().ends_with("2 on a usage error."), "{help}");
}

#[test]
fn version_names_the_client() {
    let out = client_with(&["--version"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "client 0.1.0\n");
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    for args in [
        &["nonsense"][..],
        &["127.0.0.1"],
        &["300.1.1.1:5000"],
        &["127.0.0.1:0"],
        &["port", "127.0.0.1:5000"],
        &["70000", "127.0.0.1:5000"],
        &["--timeout", "0", "127.0.0.1:5000"],
        &["--timeout=-1", "127.0.0.1:5000"],
        &["--timeout", "nan", "127.0.0.1:5000"],
        &["--no-such-flag", "127.0.0.1:5000"],
        &[],
    ] {
        let out = client_with(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        // Clap's own errors too: one line, not its report with a usage block.
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("client: error: "), "{args:?}: {err}");
    }
    let out = client_with(&["--timeout", "x", "127.0.0.1:5000"]);
    assert!(
        stderr(&out).contains("expected a positive number of seconds"),
        "{}",
        stderr(&out)
    );
}

/// The messages a newcomer meets, word for word: a port out of range, an address that
/// is not one, the arguments swapped or two servents named.
#[test]
fn command_line_mistakes_say_what_is_wrong() {
    const FIRST: &str = "; with two arguments the local port comes first, and there is one \
                         servent: client [LOCAL_PORT] IP:PORT";
    let cases: [(&[&str], String); 7] = [
        (
            &["127.0.0.1:99999"],
            "bad address \"127.0.0.1:99999\": bad port 99999: expected a number from 1 to \
             65535"
                .into(),
        ),
        (
            &["70000", "127.0.0.1:5000"],
            "bad local port 70000: expected a number from 0 to 65535 (0: any free port)".into(),
        ),
        (
            &["256.0.0.1:5012"],
            "bad address \"256.0.0.1:5012\": 256.0.0.1 is not an IPv4 address (four numbers \
             from 0 to 255, such as 127.0.0.1)"
                .into(),
        ),
        (
            &["127.0.0.1:5011:1"],
            "bad address \"127.0.0.1:5011:1\": expected ip:port, with a single colon".into(),
        ),
        (
            &["no-such-host.invalid:5000"],
            "bad address \"no-such-host.invalid:5000\": not an IPv4 address or a host name \
             this machine can resolve"
                .into(),
        ),
        (
            &["127.0.0.1:5001", "5000"],
            format!(
                "bad local port \"127.0.0.1:5001\": expected a number from 0 to 65535 (0: any \
                 free port){FIRST}"
            ),
        ),
        (
            &["127.0.0.1:5001", "127.0.0.1:5002"],
            format!(
                "bad local port \"127.0.0.1:5001\": expected a number from 0 to 65535 (0: any \
                 free port){FIRST}"
            ),
        ),
    ];
    for (args, want) in cases {
        let out = client_with(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), format!("client: error: {want}\n"), "{args:?}");
    }
}

#[test]
fn the_usage_names_one_servent() {
    let out = client_with(&["--help"]);
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("Usage: client [OPTIONS] [LOCAL_PORT] <IP:PORT>\n"),
        "{help}"
    );
    let out = client_with(&["1", "127.0.0.1:5000", "127.0.0.1:5001"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "client: error: unexpected argument '127.0.0.1:5001' found\n"
    );
}

#[test]
fn lower_case_commands_and_help_are_understood() {
    let dir = TempDir::new("client-help");
    let s1 = servent(&dir, "s1", "k v\n", &[]);
    let run = client(&s1, "q\nt\nhelp\n? k\n");
    assert!(run.success, "{run:?}");
    let err: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        err[..2],
        [
            "unknown command: \"q\": did you mean Q? (the commands are `? KEY`, `T`, `Q` and \
             `help`)",
            "unknown command: \"t\": did you mean T? (the commands are `? KEY`, `T`, `Q` and \
             `help`)",
        ],
        "{run:?}"
    );
    assert_eq!(err[2], "commands:", "{run:?}");
    assert!(err[3].starts_with("  ? KEY"), "{run:?}");
    // `q` did not quit: the lookup after it is answered.
    assert_eq!(run.lines(), [format!("v {}", s1.local())]);
}

/// A "servent" that accepts and hangs up at once (one at its connection limit does):
/// the client says so and exits 1, rather than `no answer received` and 0.
#[test]
fn a_servent_that_closes_the_connection_is_a_runtime_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });
    for input in ["? k\n", "? k\nT\n", "T"] {
        let mut child = client_command()
            .args(["--timeout", "30", &addr])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        // Well before the 30 s window would close: the close is noticed as it comes.
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{input:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out),
            format!("client: error: servent {addr} closed the connection\n"),
            "{input:?}"
        );
        assert!(out.stdout.is_empty(), "{input:?}");
    }
}

#[test]
fn an_unreachable_servent_is_a_runtime_error() {
    // A port just freed: nobody listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = client_with(&[&format!("127.0.0.1:{port}")]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "client: error: cannot connect to servent 127.0.0.1:{port}"
        )),
        "{err}"
    );
}

#[test]
fn mistyped_commands_say_what_is_wrong() {
    let dir = TempDir::new("client-cli");
    let s1 = servent(&dir, "s1", "k v\n", &[]);
    let long = "x".repeat(450);
    let run = client(&s1, &format!("?\n?k\n? {long}\nhello\n? k\n"));
    assert!(run.success, "{run:?}");
    let err: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        err,
        [
            "? needs a key: ? KEY",
            "put a space between ? and the key: ? k",
            "the key is too long: 450 bytes, at most 400",
            "unknown command: \"hello\" (the commands are `? KEY`, `T`, `Q` and `help`)",
        ],
        "{run:?}"
    );
    // The mistakes cost nothing: the good command after them is answered.
    assert_eq!(run.lines(), [format!("v {}", s1.local())]);
}

/// A servent of another implementation, on a raw socket: accepts one client, reads its
/// ID and KEYREQ, and answers on a connection to the client's reply port with a RESP
/// carrying `value`. Returns its address, and a thread giving the answer's source.
fn fake_servent(value: &'static [u8]) -> (String, std::thread::JoinHandle<SocketAddr>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let answerer = std::thread::spawn(move || {
        let (mut link, port, seq) = accept_client_request(&listener);
        let mut answer = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let from = answer.local_addr().unwrap();
        let resp = Frame::Resp {
            seq,
            value: Text::new(value).unwrap(),
        };
        answer.write_all(&resp.to_bytes()).unwrap();
        // Keep the link open until the client is done with it.
        let _ = link.read(&mut [0u8; 64]);
        from
    });
    (addr, answerer)
}

const NASTY: &[u8] = b"a\0b\x1b[31mred\x1b[0m\tok\nforged 10.9.8.7:6\\n";

fn ask_fake(extra: &[&str]) -> (Vec<u8>, SocketAddr, String) {
    let (addr, answerer) = fake_servent(NASTY);
    let mut child = client_command()
        .args(["--timeout", CLIENT_TIMEOUT])
        .args(extra)
        .arg(&addr)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"? k\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    (out.stdout, answerer.join().unwrap(), err)
}

#[test]
fn control_characters_in_an_answer_are_escaped_and_cannot_forge_a_line() {
    let (stdout, from, err) = ask_fake(&[]);
    let stdout = String::from_utf8(stdout).unwrap();
    assert_eq!(
        stdout,
        format!("a\\0b\\u{{1b}}[31mred\\u{{1b}}[0m\tok\\nforged 10.9.8.7:6\\\\n {from}\n"),
        "stderr: {err}"
    );
    assert_eq!(stdout.lines().count(), 1);
    assert!(!stdout.contains(['\0', '\x1b']));
    // A tab is harmless, and common in values: it stays.
    assert!(stdout.contains("\tok"));
}

#[test]
fn raw_prints_the_bytes_as_they_came() {
    let (stdout, from, err) = ask_fake(&["--raw"]);
    let mut expected = NASTY.to_vec();
    expected.extend_from_slice(format!(" {from}\n").as_bytes());
    assert_eq!(
        stdout,
        expected,
        "{:?}, stderr: {err}",
        String::from_utf8_lossy(&stdout)
    );
}
