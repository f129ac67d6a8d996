//! `servent --trace` and `flood-view` on real processes: the diamond's duplicate drop,
//! the line's spent TTL, the Graphviz output, and a trace that cannot be written.

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use tp3kv::protocol::{Flood, Frame, Text};
use tp3kv::trace::{Event, EventKind};

const FLOOD_VIEW: &str = env!("CARGO_BIN_EXE_flood-view");

/// A servent writing its trace to `<dir>/<tag>.jsonl`.
fn traced(dir: &TempDir, tag: &str, store: &str, neighbours: &[&Node]) -> (Node, PathBuf) {
    let trace = dir.0.join(format!("{tag}.jsonl"));
    let node = servent_with(
        dir,
        tag,
        store,
        neighbours,
        &["--trace", trace.to_str().unwrap()],
    );
    (node, trace)
}

/// The events written so far (the servent flushes its trace every loop turn).
fn events(trace: &Path) -> Vec<Event> {
    let text = std::fs::read_to_string(trace).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The events of one kind about `query`.
fn about<'a>(events: &'a [Event], query: &str, kind: EventKind) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.event == kind && e.query.as_deref() == Some(query))
        .collect()
}

fn flood_view(args: &[String]) -> (String, String) {
    let out = Command::new(FLOOD_VIEW).args(args).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "flood-view {args:?}: {stderr}");
    (stdout, stderr)
}

/// `--name` arguments naming each node `s1`, `s2`, ...
fn names(nodes: &[&Node]) -> Vec<String> {
    nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| ["--name".to_string(), format!("{}=s{}", n.local(), i + 1)])
        .collect()
}

#[test]
fn the_diamonds_duplicate_drop_is_in_the_trace_and_in_the_flood_view() {
    let dir = TempDir::new("trace-diamond");
    let (s4, t4) = traced(&dir, "s4", "far FAR\n", &[]);
    let (s2, t2) = traced(&dir, "s2", "", &[&s4]);
    let (s3, t3) = traced(&dir, "s3", "", &[&s4]);
    let (s1, t1) = traced(&dir, "s1", "", &[&s2, &s3]);
    wait_links(&s1, 2);
    wait_links(&s4, 2);
    let run = client(&s1, "? far\n");
    assert_eq!(run.lines(), [format!("FAR {}", s4.local())], "{run:?}");
    let traces = [&t1, &t2, &t3, &t4];

    // The query's name: s1 traced the client's KEYREQ as the query it started.
    let all = events(&t1);
    let request = all
        .iter()
        .find(|e| e.event == EventKind::Received && e.frame.as_ref().unwrap().kind == "KEYREQ")
        .expect("s1 traced the KEYREQ");
    let query = request.query.clone().expect("the KEYREQ names its query");
    assert_eq!(
        request.link.as_deref().map(|l| l.starts_with("127.0.0.1:")),
        Some(true)
    );

    // Two of the five copies are dropped as duplicates, wherever the race puts them.
    let duplicates = || -> Vec<(usize, Event)> {
        let mut found = Vec::new();
        for (i, trace) in traces.iter().enumerate() {
            for event in events(trace) {
                if event.event == EventKind::Dropped
                    && event.query.as_deref() == Some(&query)
                    && event.reason.as_deref() == Some("duplicate")
                {
                    found.push((i, event));
                }
            }
        }
        found
    };
    wait_for("two duplicates traced", || duplicates().len() == 2);
    let far = events(&t4);
    let received = about(&far, &query, EventKind::Received);
    let answered = about(&far, &query, EventKind::Answered);
    assert_eq!(answered.len(), 1, "{answered:?}");
    assert_eq!(
        answered[0].frame.as_ref().unwrap().value.as_deref(),
        Some("FAR")
    );
    let at_far: Vec<Event> = duplicates()
        .into_iter()
        .filter(|(i, _)| *i == 3)
        .map(|(_, e)| e)
        .collect();
    if received.len() == 2 {
        // The usual race: s4 hears it from s2 and from s3, handles the first.
        assert_eq!(at_far.len(), 1, "{at_far:?}");
        let dropped = &at_far[0];
        assert_eq!(
            dropped.link, received[1].link,
            "the second copy is the one dropped"
        );
        assert_eq!(dropped.frame.as_ref().unwrap().ttl, Some(2));
        assert_eq!(dropped.frame.as_ref().unwrap().key.as_deref(), Some("far"));
    } else {
        // s3 got s4's copy before s1's; s1 dropped s3's echo instead.
        assert_eq!(received.len(), 1, "{received:?}");
        assert!(at_far.is_empty(), "{at_far:?}");
    }

    // flood-view's tree: s1 from the client, s2 and s3 under it with TTL 3, s4 once
    // with TTL 2 and its answer, and the dropped copy as a dashed branch.
    let mut args = names(&[&s1, &s2, &s3, &s4]);
    args.extend(traces.iter().map(|t| t.display().to_string()));
    let (tree, _) = flood_view(&args);
    let lines: Vec<&str> = tree.lines().collect();
    let [n1, n2, n3, n4] = [&s1, &s2, &s3, &s4].map(|n| format!("({})", n.local()));
    assert!(
        lines[0].starts_with(&format!(
            "query {query}, key \"far\": 4 servents reached, 1 answer, 2 duplicates dropped"
        )),
        "{tree}"
    );
    assert!(
        lines[1].trim_start().starts_with("client 127.0.0.1:"),
        "{tree}"
    );
    assert!(
        lines[2].contains(&format!("└── s1 {n1}  +0.000 ms")),
        "{tree}"
    );
    let handled_by = |name: &str, number: &str, ttl: u16| {
        lines
            .iter()
            .filter(|l| l.contains(&format!("── {name} {number}  TTL {ttl}  +")))
            .count()
    };
    let (h2, h3) = (handled_by("s2", &n2, 3), handled_by("s3", &n3, 3));
    if received.len() == 2 {
        assert_eq!((h2, h3), (1, 1), "{tree}");
    } else {
        // The chain s1>X>s4>Y: Y handled the copy s4 sent it, with TTL 1.
        let late = handled_by("s2", &n2, 1) + handled_by("s3", &n3, 1);
        assert_eq!((h2 + h3, late), (1, 1), "{tree}");
    }
    let s4_line = lines
        .iter()
        .find(|l| l.contains(&format!("── s4 {n4}")))
        .expect("s4 in the tree");
    assert!(s4_line.contains("answered \"FAR\""), "{tree}");
    let dashed: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("╌╌ ") && l.ends_with("dropped: duplicate"))
        .collect();
    assert_eq!(dashed.len(), 2, "{tree}");
    if received.len() == 2 {
        assert_eq!(
            dashed
                .iter()
                .filter(|l| l.contains(&format!("s4 {n4}  TTL 2")))
                .count(),
            1,
            "{tree}"
        );
    }

    // The same as a Graphviz digraph, which `dot` accepts (when it is installed).
    args.insert(0, "--dot".into());
    let (digraph, _) = flood_view(&args);
    assert!(digraph.starts_with("digraph floods {"), "{digraph}");
    assert_eq!(
        digraph.matches("style=dashed, color=red").count(),
        2,
        "{digraph}"
    );
    accepted_by_dot(&digraph);
}

/// Runs `dot -Tsvg` on `digraph` if Graphviz is installed (CI installs it).
fn accepted_by_dot(digraph: &str) {
    let child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        skipped(format_args!(
            "dot (Graphviz) is not installed; the digraph was not checked"
        ));
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(digraph.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "dot: {stderr}\n{digraph}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("<svg"));
}

#[test]
fn the_line_shows_where_the_ttl_ran_out() {
    let dir = TempDir::new("trace-line");
    let mut nodes: Vec<(Node, PathBuf)> = Vec::new();
    for i in (1..=6).rev() {
        let store = if i == 5 { "k v5\n" } else { "" };
        let neighbours: Vec<&Node> = nodes.last().map(|(n, _)| n).into_iter().collect();
        let node = traced(&dir, &format!("s{i}"), store, &neighbours);
        nodes.push(node);
    }
    nodes.reverse();
    for (node, _) in &nodes[..5] {
        wait_links(node, 1);
    }
    let run = client(&nodes[0].0, "? k\n");
    assert_eq!(
        run.lines(),
        [format!("v5 {}", nodes[4].0.local())],
        "{run:?}"
    );
    let t5 = &nodes[4].1;
    wait_for("s5 to trace the spent TTL", || {
        events(t5)
            .iter()
            .any(|e| e.event == EventKind::Dropped && e.reason.as_deref() == Some("ttl"))
    });
    let spent = events(t5);
    let dropped = spent
        .iter()
        .find(|e| e.event == EventKind::Dropped)
        .unwrap();
    assert_eq!(dropped.frame.as_ref().unwrap().ttl, Some(0));
    assert!(
        !spent
            .iter()
            .any(|e| e.event == EventKind::Sent && e.frame.as_ref().unwrap().kind == "KEYFLOOD"),
        "s5 sends nothing on"
    );
    let s6_queries = events(&nodes[5].1)
        .into_iter()
        .filter(|e| e.query.is_some())
        .count();
    assert_eq!(s6_queries, 0, "s6 never hears of it");

    let refs: Vec<&Node> = nodes.iter().map(|(n, _)| n).collect();
    let mut args = names(&refs);
    args.extend(nodes.iter().map(|(_, t)| t.display().to_string()));
    let (tree, _) = flood_view(&args);
    let lines: Vec<&str> = tree.lines().collect();
    assert!(
        lines[0].contains("5 servents reached, 1 answer, 0 duplicates dropped"),
        "{tree}"
    );
    // Each servent one level below the last, with one less TTL.
    for (i, ttl) in [(2, 3), (3, 2), (4, 1), (5, 0)] {
        let line = lines[i + 1];
        let indent = line.find("└── ").expect("a branch");
        assert_eq!(indent, 2 + 4 * (i - 1), "{tree}");
        assert!(
            line.contains(&format!("s{i} ({})  TTL {ttl}", refs[i - 1].local())),
            "{tree}"
        );
    }
    assert!(
        lines[6].contains("answered \"v5\"") && lines[6].ends_with("[TTL spent, not forwarded]"),
        "{tree}"
    );
    assert_eq!(lines.len(), 7, "{tree}");
}

#[test]
fn a_trace_that_cannot_be_written_stops_tracing_not_the_servent() {
    let dir = TempDir::new("trace-full");
    let good = dir.file("k.kv", "k v\n");
    let out = Command::new(SERVENT)
        .args(["--trace", "/nonexistent/dir/t.jsonl", "0"])
        .arg(&good)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot create the trace file /nonexistent/dir/t.jsonl"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // /dev/full takes the open and refuses every write.
    let s1 = servent_with(&dir, "s1", "k v\n", &[], &["--trace", "/dev/full"]);
    let run = client(&s1, "? k\n? k\n");
    let answer = format!("v {}", s1.local());
    assert_eq!(run.lines(), [&answer, &answer], "{run:?}");
    wait_for("the trace error logged", || {
        s1.log().contains("trace: cannot write")
    });
    assert_eq!(
        s1.log().matches("trace: cannot write").count(),
        1,
        "logged once"
    );
}

#[test]
fn flood_view_refuses_what_is_not_a_trace() {
    let dir = TempDir::new("trace-bad");
    let bad = dir.file("bad.jsonl", "{\"time_us\": 1}\n");
    let out = Command::new(FLOOD_VIEW).arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("bad.jsonl:1: not a trace line (expected one JSON record per line as written by servent --trace): missing field `servent`"),
        "{stderr}"
    );
    let none = dir.0.join("none.jsonl");
    let (code, stderr) = refused(&[none.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        format!(
            "flood-view: error: cannot read {}: no such file or directory\n",
            none.display()
        )
    );

    // A directory, a README, a binary: said in plain words, exit 1.
    let (code, stderr) = refused(&[dir.0.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        format!(
            "flood-view: error: {} is a directory, not a trace file\n",
            dir.0.display()
        )
    );
    let readme = dir.file("README.md", "# tp3kv\n\nA key-value lookup by flooding.\n");
    let binary = Path::new(FLOOD_VIEW);
    for file in [readme.as_path(), binary] {
        let (code, stderr) = refused(&[file.to_str().unwrap()]);
        assert_eq!(code, 1, "{stderr}");
        let expected = format!(
            "flood-view: error: {}:1: not a trace line (expected one JSON record per line as written by servent --trace)",
            file.display()
        );
        assert!(stderr.starts_with(&expected), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }

    // Usage errors: exit 2, in one line.
    for args in [
        &["--bogus", "t.jsonl"][..],
        &[],
        &["--name", "s1", "t.jsonl"],
        &["--dot", "--split", "out", "t.jsonl"],
    ] {
        let (code, stderr) = refused(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("flood-view: error: "), "{stderr}");
    }
}

/// flood-view's exit code and stderr, for a run that must fail.
fn refused(args: &[&str]) -> (i32, String) {
    let out = Command::new(FLOOD_VIEW).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} accepted: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}");
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn protocol_errors_and_lost_answers_are_traced_as_drops() {
    let dir = TempDir::new("trace-drops");
    let (s1, t1) = traced(&dir, "s1", "k v\n", &[]);
    // A reply port nobody listens on: the answer's connect is refused.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut asker = TcpStream::connect(s1.local()).unwrap();
    let mut request = Vec::new();
    Frame::Id { port: dead_port }.encode(&mut request);
    Frame::KeyReq {
        seq: 42,
        key: Text::new(b"k").unwrap(),
    }
    .encode(&mut request);
    asker.write_all(&request).unwrap();
    // A client that floods, and one that sends an unknown type.
    let mut flooder = TcpStream::connect(s1.local()).unwrap();
    flooder.write_all(&[0x00, 0x04, 0x9c, 0x40]).unwrap();
    let mut flood = Vec::new();
    Frame::KeyFlood(Flood {
        ttl: 3,
        seq: 1,
        client: "127.0.0.1:1".parse().unwrap(),
        text: Text::new(b"k").unwrap(),
    })
    .encode(&mut flood);
    flooder.write_all(&flood).unwrap();
    let mut garbage = TcpStream::connect(s1.local()).unwrap();
    garbage.write_all(&[0x00, 0x63, 0, 0]).unwrap();

    let reasons = || -> Vec<String> {
        events(&t1)
            .into_iter()
            .filter(|e| e.event == EventKind::Dropped)
            .filter_map(|e| e.reason)
            .collect()
    };
    wait_for("three drops traced", || reasons().len() >= 3);
    let reasons = reasons();
    let has = |start: &str| reasons.iter().any(|r| r.starts_with(start));
    assert!(has("answer lost: "), "{reasons:?}");
    assert!(
        has("protocol error: KEYFLOOD is not allowed from a client"),
        "{reasons:?}"
    );
    assert!(
        has("protocol error: unknown frame type 0x0063"),
        "{reasons:?}"
    );

    // flood-view shows the answer that never arrived beside the servent that sent it.
    let (tree, _) = flood_view(&[t1.display().to_string()]);
    let line = tree
        .lines()
        .find(|l| l.contains("answered \"v\""))
        .expect("the answer in the tree");
    assert!(line.contains("(answer lost: "), "{tree}");
}

#[test]
fn servents_may_share_one_trace_file() {
    let dir = TempDir::new("trace-shared");
    let shared = dir.0.join("all.jsonl");
    let flag = ["--trace", shared.to_str().unwrap()];
    let s2 = servent_with(&dir, "s2", "k v2\n", &[], &flag);
    let s1 = servent_with(&dir, "s1", "", &[&s2], &flag);
    wait_links(&s1, 1);
    let run = client(&s1, "? k\n? k\n");
    assert_eq!(run.lines().len(), 2, "{run:?}");
    wait_for("both answers traced", || {
        events(&shared)
            .iter()
            .filter(|e| e.event == EventKind::Answered)
            .count()
            == 2
    });
    // Every line whole (flood-view refuses a torn one), both queries drawn.
    let (tree, warnings) = flood_view(&[shared.display().to_string()]);
    assert!(warnings.is_empty(), "{warnings}");
    let reached = tree
        .lines()
        .filter(|l| l.ends_with("2 servents reached, 1 answer, 0 duplicates dropped"))
        .count();
    assert_eq!(reached, 2, "{tree}");
}
