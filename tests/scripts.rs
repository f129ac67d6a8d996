//! The topology scripts as a newcomer runs them: `--help` (which says what KEEP_LOGS
//! does) rather than a run, a usage error for anything else, the binaries taken from
//! cargo's target dir wherever CARGO_TARGET_DIR puts it, the kept files named after
//! their queries, and a port-lock dir every user can share.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{TempDir, CLIENT, SERVENT};

const FLOOD_VIEW: &str = env!("CARGO_BIN_EXE_flood-view");

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

fn run(name: &str, args: &[&str]) -> Output {
    Command::new(script(name)).args(args).output().unwrap()
}

#[test]
fn help_tells_what_the_script_does_and_runs_nothing() {
    for name in ["topologia1.sh", "topologia2.sh"] {
        for flag in ["--help", "-h"] {
            let out = run(name, &[flag]);
            let help = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(0), "{name} {flag}: {help}");
            assert!(out.stderr.is_empty(), "{name} {flag}");
            for words in [
                "Topology ",
                &format!("Usage: ./{name} [--no-build] [--help]"),
                "KEEP_LOGS=1       keep the run's temp dir",
                "CARGO_TARGET_DIR",
                "TIMEOUT=S",
                "Exit status: 0 on PASS, 1 on FAIL, 2 on a usage error.",
            ] {
                assert!(help.contains(words), "{name} {flag}: no {words:?}\n{help}");
            }
            assert!(!help.contains("starting s1"), "{name} ran: {help}");
            assert!(!help.starts_with('!'), "{help}");
        }
    }
    let out = run("scripts/netns-topology.sh", &["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{help}");
    assert!(
        help.contains("--hosts N") && help.contains("Exit status"),
        "{help}"
    );
}

#[test]
fn an_unknown_argument_is_a_usage_error() {
    for name in [
        "topologia1.sh",
        "topologia2.sh",
        "scripts/netns-topology.sh",
    ] {
        let out = run(name, &["--bogus"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        assert!(
            stderr.contains("--bogus") || stderr.contains("usage"),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "{name} ran");
    }
}

/// A target dir whose release/ holds the binaries this test was built with: the
/// script finds them there only if it asks cargo where the target dir is.
#[test]
fn the_binaries_come_from_cargos_target_dir() {
    let target = TempDir::new("scripts-target");
    let release = target.0.join("release");
    std::fs::create_dir(&release).unwrap();
    for (name, binary) in [
        ("servent", SERVENT),
        ("client", CLIENT),
        ("flood-view", FLOOD_VIEW),
    ] {
        std::os::unix::fs::symlink(binary, release.join(name)).unwrap();
    }
    let out = Command::new(script("topologia1.sh"))
        .arg("--no-build")
        .env("CARGO_TARGET_DIR", &target.0)
        .env_remove("TRACES")
        .env("KEEP_LOGS", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // KEEP_LOGS=1 kept the run's temp dir: removed when this test ends.
    let kept = stdout
        .lines()
        .find_map(|l| l.strip_prefix("logs kept in "))
        .map(|dir| TempDir(PathBuf::from(dir)));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "using the release binaries in {} as they are (--no-build)",
            release.display()
        )),
        "{stdout}"
    );
    assert!(stdout.lines().any(|l| l == "PASS"), "{stdout}");
    // Each client run's output is named after its command, as --help says.
    let kept = kept.unwrap_or_else(|| panic!("KEEP_LOGS=1 named no directory:\n{stdout}"));
    for file in [
        "s1.log",
        "s4.out",
        "rtmp.out",
        "motd.err",
        "topology.out",
        "xyzzy.err",
    ] {
        assert!(kept.0.join(file).is_file(), "no {file} in {:?}", kept.0);
    }
    // The traces went to the same target dir, and the pictures name s1..s4.
    let traces = target.0.join("traces/topologia1");
    // The closing lines say where the picture is, or how to draw it without Graphviz.
    let svg = traces.join("floods.svg");
    if Command::new("dot").arg("-V").output().is_ok() {
        assert!(
            stdout.contains(&format!("the picture: {}", svg.display())),
            "{stdout}"
        );
        assert!(std::fs::metadata(&svg).unwrap().len() > 0);
    } else {
        assert!(
            stdout.contains("no floods.svg, as Graphviz's dot is not installed"),
            "{stdout}"
        );
        assert!(!svg.exists());
    }
    let picture = std::fs::read_to_string(traces.join("floods.dot")).unwrap();
    for s in 1..=4 {
        assert!(
            picture.contains(&format!("\"s{s} (127.0.0.1:")),
            "{picture}"
        );
    }
    let per_query = std::fs::read_dir(traces.join("queries")).unwrap().count();
    assert_eq!(per_query, 4, "one picture per query");

    // An empty target dir: the script says where it looked.
    let empty = TempDir::new("scripts-empty");
    let out = Command::new(script("topologia2.sh"))
        .arg("--no-build")
        .env("CARGO_TARGET_DIR", &empty.0)
        .env("TMPDIR", &empty.0)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "FAIL: no servent, client and flood-view in {}/release",
            empty.0.display()
        )),
        "{stdout}"
    );
}

/// The port-lock dir is shared by every user: one this user left private (an older
/// script made it 0755) is opened up, sticky like /tmp, when a port is reserved.
#[test]
fn a_private_port_lock_dir_of_ours_is_opened_to_everyone() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = TempDir::new("scripts-locks");
    let locks = tmp.0.join("tp3kv-port-locks");
    std::fs::create_dir(&locks).unwrap();
    std::fs::set_permissions(&locks, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg("source scripts/lib.sh && reserve_port P && echo \"port $P\"")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("TMPDIR", &tmp.0)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("port "), "{stdout}");
    let mode = std::fs::metadata(&locks).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o1777, "{mode:o}");
    // The reservation was released when the shell ended.
    assert_eq!(std::fs::read_dir(&locks).unwrap().count(), 0);
}
