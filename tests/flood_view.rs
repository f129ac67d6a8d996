//! `flood-view` as a tool, on traces written here rather than by servents: its
//! `--help` and `--version`, the pictures (legend, the text view's words, queries
//! stacked, `--split`), the names, and a closed stdout.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::{skipped, TempDir};
use tp3kv::trace::{Event, EventKind, FrameFields};

const FLOOD_VIEW: &str = env!("CARGO_BIN_EXE_flood-view");

/// The diamond's servents s1..s4, as traces name them.
const S: [&str; 4] = [
    "127.0.0.1:5001",
    "127.0.0.1:5002",
    "127.0.0.1:5003",
    "127.0.0.1:5004",
];

/// One copy of query `seq` from servent `from` to servent `to` (indexes into [`S`]):
/// the sender's `sent` and the receiver's `received`, on one connection.
fn copy(seq: u32, time: u64, from: usize, to: usize, ttl: u16) -> [Event; 2] {
    let frame = FrameFields {
        kind: "KEYFLOOD".into(),
        ttl: Some(ttl),
        seq: Some(seq),
        client: Some("127.0.0.1:6000".into()),
        key: Some(format!("key{seq}")),
        ..FrameFields::default()
    };
    let ephemeral = format!("127.0.0.1:{}", 40000 + 10 * from + to);
    let event = |time_us, servent: &str, kind, local: &str, link: &str| Event {
        time_us,
        servent: servent.into(),
        link: Some(link.into()),
        local: Some(local.into()),
        query: Some(format!("127.0.0.1:6000#{seq}")),
        frame: Some(frame.clone()),
        ..Event::new(kind)
    };
    [
        event(time, S[from], EventKind::Sent, &ephemeral, S[to]),
        event(time + 5, S[to], EventKind::Received, S[to], &ephemeral),
    ]
}

/// Query `seq` over the diamond s1-{s2,s3}-s4, as one shared trace would have it:
/// s4 gets it twice, drops the second copy as a duplicate, answers, and its TTL is
/// spent (a TTL of 1 to s2 and s3, so s4 gets 0).
fn diamond_query(seq: u32, start: u64) -> Vec<Event> {
    let request = Event {
        time_us: start,
        servent: S[0].into(),
        link: Some("127.0.0.1:50000".into()),
        local: Some(S[0].into()),
        query: Some(format!("127.0.0.1:6000#{seq}")),
        frame: Some(FrameFields {
            kind: "KEYREQ".into(),
            seq: Some(seq),
            key: Some(format!("key{seq}")),
            ..FrameFields::default()
        }),
        ..Event::new(EventKind::Received)
    };
    let mut events = vec![request];
    events.extend(copy(seq, start + 10, 0, 1, 1));
    events.extend(copy(seq, start + 11, 0, 2, 1));
    events.extend(copy(seq, start + 20, 1, 3, 0));
    let [late_sent, late_received] = copy(seq, start + 30, 2, 3, 0);
    let s4 = |kind, reason: Option<&str>, time_us| Event {
        time_us,
        reason: reason.map(str::to_string),
        ..Event {
            event: kind,
            ..late_received.clone()
        }
    };
    let answered = Event {
        frame: Some(FrameFields {
            kind: "RESP".into(),
            seq: Some(seq),
            value: Some("v".into()),
            ..FrameFields::default()
        }),
        ..s4(EventKind::Answered, None, start + 26)
    };
    events.extend([
        answered,
        Event {
            link: events[6].link.clone(),
            ..s4(EventKind::Dropped, Some("ttl"), start + 27)
        },
        late_sent,
        late_received.clone(),
        s4(EventKind::Dropped, Some("duplicate"), start + 36),
    ]);
    events
}

/// A trace file of `queries` diamond queries, seq 1, 2, ...
fn trace(dir: &TempDir, queries: u32) -> PathBuf {
    let mut text = String::new();
    for seq in 1..=queries {
        for event in diamond_query(seq, 1_000_000 * u64::from(seq)) {
            text += &serde_json::to_string(&event).unwrap();
            text.push('\n');
        }
    }
    dir.file(&format!("{queries}.jsonl"), &text)
}

fn run(args: &[&str]) -> Output {
    Command::new(FLOOD_VIEW).args(args).output().unwrap()
}

/// flood-view's stdout, which must succeed with nothing on stderr.
fn view(args: &[&str]) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "{args:?}: {stderr}"
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `--name` for s1..s4, all in one, comma-separated.
fn names() -> String {
    let pairs: Vec<String> = (0..4).map(|i| format!("{}=s{}", S[i], i + 1)).collect();
    pairs.join(",")
}

#[test]
fn help_describes_the_tool_and_version_names_it() {
    let help = view(&["--help"]);
    for words in [
        "servent --trace",
        "one JSON record per line",
        "--dot",
        "--split",
        "--name",
        "legend",
        "Examples:",
        "flood-view --dot *.jsonl | dot -Tsvg > floods.svg",
    ] {
        assert!(help.contains(words), "{words:?} missing:\n{help}");
    }
    assert!(
        help.trim_end()
            .ends_with("Exit status: 0 on success, 1 on a runtime error, 2 on a usage error."),
        "{help}"
    );
    assert_eq!(view(&["--version"]), "flood-view 0.1.0\n");
}

#[test]
fn the_text_names_servents_and_says_where_the_ttl_was_spent() {
    let dir = TempDir::new("fv-text");
    let trace = trace(&dir, 1);
    let names = names();
    let text = view(&["--names", &names, trace.to_str().unwrap()]);
    assert!(
        text.starts_with(
            "query 127.0.0.1:6000#1, key \"key1\": 4 servents reached, 1 answer, 1 duplicate dropped\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "s4 (127.0.0.1:5004)  TTL 0  +0.025 ms  answered \"v\"  [TTL spent, not forwarded]"
        ),
        "{text}"
    );
    assert!(
        text.contains("s4 (127.0.0.1:5004)  TTL 0  +0.035 ms  dropped: duplicate"),
        "{text}"
    );
}

#[test]
fn the_picture_has_a_legend_and_the_texts_words() {
    let dir = TempDir::new("fv-words");
    let trace = trace(&dir, 1);
    let names = names();
    let dot = view(&["--dot", "--name", &names, trace.to_str().unwrap()]);
    assert!(dot.starts_with("digraph floods {"), "{dot}");
    assert!(dot.contains("legend [shape=plaintext"), "{dot}");
    for words in [
        "ellipse: the client",
        "double bold box",
        "dashed red arrow",
        "dotted grey arrow",
    ] {
        assert!(dot.contains(words), "legend without {words:?}:\n{dot}");
    }
    assert!(dot.contains("[TTL spent, not forwarded]"), "{dot}");
    assert!(!dot.contains("[ttl]"), "{dot}");
    assert!(dot.contains("dropped: duplicate\""), "{dot}");
    for s in 1..=4 {
        assert!(dot.contains(&format!("\"s{s} (127.0.0.1:500{s})")), "{dot}");
    }
    svg_size(&dot);
}

#[test]
fn four_queries_stack_rather_than_lie_side_by_side() {
    let dir = TempDir::new("fv-stack");
    let one = view(&["--dot", trace(&dir, 1).to_str().unwrap()]);
    let four = view(&["--dot", trace(&dir, 4).to_str().unwrap()]);
    assert_eq!(four.matches("subgraph \"cluster_").count(), 4);
    let (Some((w1, h1)), Some((w4, h4))) = (svg_size(&one), svg_size(&four)) else {
        return;
    };
    eprintln!("1 query: {w1}x{h1} pt; 4 queries: {w4}x{h4} pt");
    assert!(w4 < 1.5 * w1, "4 queries {w4} wide, 1 query {w1}");
    assert!(h4 > 3.0 * h1 * 0.7, "4 queries {h4} high, 1 query {h1}");
}

#[test]
fn split_writes_one_picture_per_query() {
    let dir = TempDir::new("fv-split");
    let trace = trace(&dir, 3);
    let out = dir.0.join("pictures");
    let listed = view(&["--split", out.to_str().unwrap(), trace.to_str().unwrap()]);
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["query-1.dot", "query-2.dot", "query-3.dot"]);
    assert_eq!(listed.lines().count(), 3, "{listed}");
    for seq in 1..=3 {
        let path = out.join(format!("query-{seq}.dot"));
        let line = format!("wrote {}: query 127.0.0.1:6000#{seq}", path.display());
        assert!(listed.lines().any(|l| l == line), "{line}\n{listed}");
        let dot = std::fs::read_to_string(&path).unwrap();
        assert_eq!(dot.matches("subgraph \"cluster_").count(), 1, "{dot}");
        assert!(
            dot.contains(&format!("#{seq}, key \\\"key{seq}\\\"")),
            "{dot}"
        );
        svg_size(&dot);
    }
    // Where it cannot write: a runtime error, exit 1.
    let file = dir.file("plain", "");
    let out = run(&["--split", file.to_str().unwrap(), trace.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("flood-view: error: cannot create the directory"),
        "{stderr}"
    );
}

#[test]
fn a_closed_stdout_is_quiet() {
    let dir = TempDir::new("fv-closed");
    let trace = trace(&dir, 4);
    for args in [&[][..], &["--dot"]] {
        let mut fds = [0; 2];
        // SAFETY: a plain pipe(2) into a two-int array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors are ours; the read end is closed before the run.
        let write = unsafe {
            libc::close(fds[0]);
            <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[1])
        };
        let out = Command::new(FLOOD_VIEW)
            .args(args)
            .arg(&trace)
            .stdout(Stdio::from(write))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

/// The width and height `dot -Tsvg` gives `digraph`, if Graphviz is installed;
/// `dot` must accept the digraph without a word.
fn svg_size(digraph: &str) -> Option<(f64, f64)> {
    let dir = TempDir::new("fv-svg");
    let file = dir.file("g.dot", digraph);
    let Ok(out) = Command::new("dot").arg("-Tsvg").arg(&file).output() else {
        skipped(format_args!(
            "dot (Graphviz) is not installed; the picture was not checked"
        ));
        return None;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "dot: {stderr}\n{digraph}"
    );
    let svg = String::from_utf8(out.stdout).unwrap();
    let number = |attribute: &str| -> f64 {
        let start = svg.find(&format!("{attribute}=\"")).unwrap() + attribute.len() + 2;
        let text: String = svg[start..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        text.parse().unwrap()
    };
    Some((number("width"), number("height")))
}
