//! `tp3-check` against our own servent: every case passes, and the reports, `--list`,
//! `--case` and usage errors behave as documented.

use std::process::{Command, Output};

const CHECK: &str = env!("CARGO_BIN_EXE_tp3-check");
const SERVENT: &str = env!("CARGO_BIN_EXE_servent");

fn check(args: &[&str]) -> Output {
    Command::new(CHECK)
        .args(args)
        .output()
        .expect("tp3-check runs")
}

fn servent_args<'a>(before: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["servent"];
    v.extend_from_slice(before);
    v.extend_from_slice(&["--", SERVENT, "{port}", "{kv}", "{neighbours}"]);
    v
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The ids `--list` prints, in order.
fn listed(role: &str) -> Vec<String> {
    let out = check(&[role, "--list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

fn scratch(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("tp3-check-test-{}-{name}", std::process::id()))
}

#[test]
fn every_servent_case_passes_against_our_servent_and_the_reports_hold_them_all() {
    let junit = scratch("junit.xml");
    let json = scratch("report.json");
    let (j, k) = (junit.to_str().unwrap(), json.to_str().unwrap());
    let out = check(&servent_args(&["--junit", j, "--json", k]));
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let ids = listed("servent");
    assert!(ids.len() >= 35, "{ids:?}");
    for id in &ids {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(id.as_str()))
            .unwrap_or_else(|| panic!("{id} missing from the table:\n{stdout}"));
        assert!(line.starts_with("PASS"), "{line}\n{stdout}");
    }
    assert!(
        stdout.contains(&format!("{} passed, 0 failed, 0 skipped", ids.len())),
        "{stdout}"
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), ids.len());
    for (case, id) in cases.iter().zip(&ids) {
        assert_eq!(case["id"], id.as_str());
        assert_eq!(case["verdict"], "PASS", "{case}");
        assert!(case["section"].as_str().unwrap().starts_with('§'), "{case}");
    }
    assert_eq!(report["totals"]["fail"], 0);
    assert_eq!(report["role"], "servent");

    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), ids.len(), "{xml}");
    for id in &ids {
        assert!(xml.contains(&format!("name=\"{id}\"")), "{id} not in {xml}");
    }
    assert!(!xml.contains("<failure"), "{xml}");
    assert!(xml.trim_end().ends_with("</testsuites>"));
    let _ = std::fs::remove_file(junit);
    let _ = std::fs::remove_file(json);
}

#[test]
fn list_shows_id_section_and_title_and_needs_no_command() {
    let out = check(&["servent", "--list"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("servent.split-bytewise "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("§5"), "{line}");
    assert!(line.contains("one-byte segments"), "{line}");
    for line in stdout.lines() {
        assert!(line.starts_with("servent."), "{line}");
        assert!(line.contains('§'), "{line}");
    }
    let ids = listed("servent");
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "ids are unique");
}

#[test]
fn case_selects_by_id_and_by_prefix() {
    let out = check(&servent_args(&[
        "--case",
        "servent.id-port",
        "--case",
        "servent.kv-",
    ]));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| ["PASS ", "FAIL ", "SKIP "].iter().any(|v| l.starts_with(v)))
        .collect();
    let kv = listed("servent")
        .iter()
        .filter(|i| i.starts_with("servent.kv-"))
        .count();
    assert_eq!(rows.len(), 1 + kv, "{stdout}");
    assert!(rows.iter().all(|r| r.starts_with("PASS")), "{stdout}");
    assert!(rows[0].contains("servent.id-port"), "{stdout}");
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    for args in [
        vec!["servent"],                                             // no command
        vec!["servent", "--case", "servent.nonesuch", "--", "true"], // unknown case
        vec!["servent", "--", SERVENT, "{kv}"],                      // no {port}
        vec!["servent", "--bogus"],
        vec!["nonesuch"],
    ] {
        let out = check(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("tp3-check: error: "), "{err}");
        // A sentence, not the help squeezed onto one line.
        assert!(err.len() < 200, "{args:?}: {err}");
    }
    let out = check(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "tp3-check: error: expected a command; `tp3-check --help` lists them\n"
    );
}

#[test]
fn a_program_that_cannot_start_is_one_error_not_a_failure_per_case() {
    let dir = scratch("unstartable");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    let script = script.to_str().unwrap().to_string();
    for (program, why) in [
        (
            "/nonexistent/servent",
            "no such file or directory".to_string(),
        ),
        (
            "no-such-servent-program",
            "no such program on the PATH (a file here is ./no-such-servent-program)".into(),
        ),
        (
            script.as_str(),
            format!("it is not executable (chmod +x {script})"),
        ),
    ] {
        let out = check(&["servent", "--", program, "{port}", "{kv}"]);
        assert_eq!(out.status.code(), Some(1), "{program}");
        assert_eq!(
            text(&out.stderr),
            format!("tp3-check: error: cannot start {program}: {why}\n")
        );
        assert!(text(&out.stdout).is_empty(), "no case ran: {program}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_command_that_does_not_listen_fails_every_case_with_exit_1() {
    // `true` exits at once: nothing listens.
    let out = check(&[
        "servent",
        "--case",
        "servent.listens",
        "--start-timeout",
        "2",
        "--",
        "true",
        "{port}",
        "{kv}",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  servent.listens"), "{stdout}");
    assert!(
        stdout.contains("ended (exit status: 0) before port"),
        "{stdout}"
    );
}

#[test]
fn a_command_without_kv_or_neighbours_skips_what_it_cannot_do() {
    let out = check(&[
        "servent",
        "--case",
        "servent.keyreq-floods",
        "--",
        SERVENT,
        "{port}",
        "{kv}",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("SKIP  servent.keyreq-floods"), "{stdout}");
    assert!(stdout.contains("no {neighbours}"), "{stdout}");
}

#[test]
fn every_client_case_passes_against_our_client() {
    const CLIENT: &str = env!("CARGO_BIN_EXE_client");
    let json = scratch("client.json");
    let out = check(&[
        "client",
        "--json",
        json.to_str().unwrap(),
        "--",
        CLIENT,
        "{port}",
        "{servent}",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let ids = listed("client");
    assert!(ids.len() >= 10, "{ids:?}");
    assert!(ids.iter().all(|i| i.starts_with("client.")), "{ids:?}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), ids.len());
    assert!(cases.iter().all(|c| c["verdict"] == "PASS"), "{report}");
    assert_eq!(report["role"], "client");
    let _ = std::fs::remove_file(json);
}
