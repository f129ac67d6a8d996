//! `tp3-sim` as a user runs it: help, errors and their exit statuses, the table, the
//! CSV and the SVG.

use std::path::PathBuf;
use std::process::{Command, Output};

const TP3_SIM: &str = env!("CARGO_BIN_EXE_tp3-sim");
const EXIT_STATUS: &str = "Exit status: 0 on success, 1 on a runtime error, 2 on a usage error.";

fn sim(args: &[&str]) -> Output {
    Command::new(TP3_SIM).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A file in a directory of this test's own, removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("tp3-sim-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn help_and_version() {
    let out = sim(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for flag in [
        "--topology",
        "--ttl",
        "--full-reach",
        "--ttl-rule",
        "--latency",
        "--csv",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    assert!(help.trim_end().ends_with(EXIT_STATUS), "{help}");
    let out = sim(&["--version"]);
    assert_eq!(text(&out.stdout).trim(), "tp3-sim 0.1.0");
}

#[test]
fn usage_errors_are_one_line_and_exit_2() {
    for args in [
        &["--topology", "nonsense:3"][..],
        &["--topology", "regular:5:5"],
        &["--topology", "line:6", "--ttl", "5..2"],
        &["--topology", "line:6", "--ttl", "1,x"],
        &["--topology", "line:6", "--latency", "fast"],
        &["--topology", "line:6", "--key-fraction", "2"],
        &["--topology", "line:6", "--queries", "0"],
        &[],
    ] {
        let out = sim(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("tp3-sim: error: "), "{err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn an_origin_beyond_the_graph_is_a_usage_error() {
    let out = sim(&["--topology", "ring:8", "--origin", "8"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim(),
        "tp3-sim: error: --origin 8: ring:8 has servents 0 to 7"
    );
    // From servent 0 of a line, the 4 hops of TTL 3 reach 5 servents every time.
    let out = sim(&["--topology", "line:9", "--origin", "0", "--queries", "5"]);
    let row = text(&out.stdout);
    let row = row.lines().find(|l| l.starts_with("line:9")).unwrap();
    let reach: Vec<&str> = row.split('|').nth(1).unwrap().split_whitespace().collect();
    assert_eq!(reach, ["5.00", "5", "5", "5", "5"], "{row}");
    // Found on the second graph: the first's rows are kept in the CSV.
    let dir = TempDir::new("origin");
    let csv = dir.0.join("runs.csv");
    let args = [
        "--topology",
        "ring:20",
        "--topology",
        "ring:5",
        "--origin",
        "10",
    ];
    let out = sim(&[
        &args[..],
        &["--queries", "3", "--csv", csv.to_str().unwrap()],
    ]
    .concat());
    assert_eq!(out.status.code(), Some(2));
    let written = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(written.lines().count(), 1 + 3 + 5, "{written}");
    assert!(
        written.lines().skip(1).all(|l| l.starts_with("ring:20,")),
        "{written}"
    );
}

#[test]
fn a_topology_that_cannot_be_built_is_a_runtime_error() {
    let out = sim(&["--topology", "file:/nonexistent/edges.txt"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/edges.txt"), "{err}");
}

#[test]
fn a_row_per_topology_ttl_and_rule_and_the_csv_and_svg_files() {
    let dir = TempDir::new("rows");
    let (csv, svg) = (dir.0.join("runs.csv"), dir.0.join("runs.svg"));
    let out = sim(&[
        "--topology",
        "line:6",
        "ring:8",
        "--ttl",
        "2,3",
        "--ttl-rule",
        "both",
        "--queries",
        "20",
        "--csv",
        csv.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("line:6") || l.starts_with("ring:8"))
        .collect();
    assert_eq!(rows.len(), 2 * 2 * 2, "{stdout}");
    // The ring of 8 at TTL 3, seed rule: every servent, every query.
    let ring = rows
        .iter()
        .find(|r| r.starts_with("ring:8") && r.contains(" 3 seed "))
        .unwrap();
    let reach: Vec<&str> = ring.split('|').nth(1).unwrap().split_whitespace().collect();
    assert_eq!(reach, ["8.00", "8", "8", "8", "8"], "{ring}");
    assert!(
        stdout.lines().last().unwrap().contains("peak RSS"),
        "{stdout}"
    );

    let csv = std::fs::read_to_string(csv).unwrap();
    let mut lines = csv.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("topology,servents,ttl,rule,"));
    assert_eq!(lines.count(), 8 * (20 + 5));
    assert!(csv.contains("\nring:8,8,3,seed,false,mean,,8,"), "{csv}");
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.contains("<svg") && svg.contains("ring:8 2019"));
}

#[test]
fn an_unwritable_csv_or_svg_is_a_runtime_error_before_any_run() {
    let dir = TempDir::new("unwritable");
    let missing = dir.0.join("no-such-dir");
    for flag in ["--csv", "--svg"] {
        let path = missing.join("out");
        let path = path.to_str().unwrap();
        let out = sim(&[flag, path, "--topology", "ring:5", "--queries", "3"]);
        assert_eq!(out.status.code(), Some(1), "{flag}");
        assert_eq!(
            text(&out.stderr),
            format!("tp3-sim: error: cannot write {path}: no such file or directory\n"),
            "{flag}"
        );
        // Nothing was run: no table on stdout.
        assert!(text(&out.stdout).is_empty(), "{flag}");
    }
}

#[test]
fn a_network_too_big_for_free_memory_is_refused_before_it_is_built() {
    // 16 million servents need about 24 GiB: more than this machine has free.
    let free_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemAvailable:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0);
    if free_kib == 0 || free_kib > 23 << 20 {
        eprintln!("SKIPPED: this machine has room for 16 million simulated servents");
        return;
    }
    let out = sim(&["--topology", "regular:16000000:3", "--queries", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("tp3-sim: error: cannot simulate regular:16000000:3: 16000000 servents need about 23.8 GiB"),
        "{err}"
    );
    assert!(text(&out.stdout).is_empty());
}

#[test]
fn a_reader_that_goes_away_is_not_an_error() {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = Command::new(TP3_SIM)
        .args(["--topology", "ring:10", "--ttl", "0..100", "--queries", "1"])
        .args(["--full-reach", "both", "--ttl-rule", "both"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read nothing: close the pipe at once, as `| head -0` would. The 404 rows (75
    // KB) are more than a pipe holds, so a write fails whatever the timing.
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
}

#[test]
fn an_empty_graph_is_a_runtime_error_even_with_an_origin() {
    let dir = TempDir::new("empty");
    let file = dir.0.join("empty.txt");
    std::fs::write(&file, "# nodes 0\n").unwrap();
    let spec = format!("file:{}", file.display());
    let out = sim(&["--topology", &spec, "--origin", "3"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("tp3-sim: error: cannot simulate {spec}: a network needs at least one servent\n")
    );
}

#[test]
fn a_note_says_when_topology_paths_outgrew_an_info() {
    let args = ["--topology", "line:60", "--kind", "topo", "--origin", "0"];
    let out = sim(&[&args[..], &["--queries", "1", "--ttl", "3,40"]].concat());
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("note: in 1 run(s), topology paths grew past the 400 bytes"),
        "{stdout}"
    );
    let out = sim(&[&args[..], &["--queries", "1", "--ttl", "3"]].concat());
    assert!(!text(&out.stdout).contains("note:"));
}
