//! Servents on separate "hosts": each host is a Linux network namespace with its own
//! address 10.77.0.K/24 on a veth into a bridge, and the bridge lives in a namespace
//! of its own, so every test gets a private network and the same addresses can be
//! reused by tests running in parallel. Needs root and iproute2 (`ip`). Without them
//! every test here passes without running, and the run says so in one `SKIPPED` line
//! on stderr (written past the test harness's capture, so `cargo test` shows it);
//! with `TP3KV_REQUIRE_ROOT=1` in the environment (CI sets it) they fail instead.
//!
//! The servents and clients are the debug binaries, run as `ip netns exec NS ...`.
//! Everything a test creates (processes, namespaces) is removed when its [`Net`] is
//! dropped, whether the test passed or panicked.

mod common;

use common::{
    root_required, run_process, skipped, start_node, wait_for, ClientRun, Node, TempDir, CLIENT,
    REQUIRE_ROOT, SERVENT,
};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Every servent listens on this port, on its own host.
const PORT: u16 = 5000;

/// The address of host `k` (1-based) inside a test's network.
fn host_ip(k: usize) -> String {
    format!("10.77.0.{k}")
}

/// `10.77.0.K:5000`, host `k`'s servent as the other hosts reach it.
fn host_addr(k: usize) -> String {
    format!("{}:{PORT}", host_ip(k))
}

/// Whether this run can make network namespaces, found out once per run. If it
/// cannot, the first test to ask prints the one SKIPPED line and every test returns
/// at once, passing; unless `TP3KV_REQUIRE_ROOT=1`, which makes each one fail.
fn namespaces() -> bool {
    static PROBED: OnceLock<Result<(), String>> = OnceLock::new();
    let probed = PROBED.get_or_init(|| {
        let probed = probe();
        if let Err(why) = &probed {
            if !root_required() {
                skipped(format_args!(
                    "tests/netns.rs (servents on separate hosts): {why}; \
                     run as root, or set {REQUIRE_ROOT}=1 to make this a failure"
                ));
            }
        }
        probed
    });
    match probed {
        Ok(()) => true,
        Err(why) if root_required() => panic!("{REQUIRE_ROOT}=1, but {why}"),
        Err(_) => false,
    }
}

/// Makes and deletes a namespace: the one way to know it can be done here (root in
/// a container may still lack the right).
fn probe() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let name = format!("tp3-{}-probe", std::process::id());
    let made = Command::new("ip").args(["netns", "add", &name]).output();
    match made {
        Err(e) => Err(format!("cannot run iproute2's `ip` ({e})")),
        Ok(out) if !out.status.success() => {
            let who = if uid == 0 {
                "running as root".to_string()
            } else {
                format!("running as uid {uid}, not root")
            };
            Err(format!(
                "network namespaces cannot be made here ({who}; `ip netns add` said: {})",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
        Ok(_) => {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
            Ok(())
        }
    }
}

/// Runs `ip ARGS`, panicking with a clear message if it cannot.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!(
            "netns tests need iproute2: cannot run `ip {}`: {e}",
            args.join(" ")
        )
    });
    assert!(
        out.status.success(),
        "netns tests need root and network namespaces: `ip {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A private network of `hosts` namespaces joined by a bridge, and the servents
/// running in them. Dropping it kills the servents and deletes the namespaces.
struct Net {
    prefix: String,
    /// Namespaces created so far, bridge first; deleted at drop.
    namespaces: Vec<String>,
    /// The servent of each host (index k-1), if running.
    nodes: Vec<Option<Node>>,
    dir: TempDir,
}

impl Net {
    fn new(hosts: usize) -> Net {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let prefix = format!(
            "tp3-{}t{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        // Built empty first, so a failure half-way still cleans up at drop.
        let mut net = Net {
            namespaces: Vec::new(),
            nodes: (0..hosts).map(|_| None).collect(),
            dir: TempDir::new(&prefix),
            prefix,
        };
        let bridge = format!("{}-br", net.prefix);
        ip(&["netns", "add", &bridge]);
        net.namespaces.push(bridge.clone());
        ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &bridge, "link", "set", "br0", "up"]);
        for k in 1..=hosts {
            let ns = net.ns(k);
            ip(&["netns", "add", &ns]);
            net.namespaces.push(ns.clone());
            let veth = format!("veth{k}");
            ip(&[
                "-n", &bridge, "link", "add", &veth, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ]);
            ip(&["-n", &bridge, "link", "set", &veth, "master", "br0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", host_ip(k)),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        }
        net
    }

    /// The namespace of host `k`.
    fn ns(&self, k: usize) -> String {
        format!("{}-h{k}", self.prefix)
    }

    /// Starts host `k`'s servent on port 5000 with `store`, naming `neighbours`
    /// (host numbers), and waits for it to listen.
    fn start(&mut self, k: usize, store: &str, neighbours: &[usize]) {
        self.start_with(k, store, neighbours, &[]);
    }

    /// As [`Net::start`], with `extra` flags before the positional arguments.
    fn start_with(&mut self, k: usize, store: &str, neighbours: &[usize], extra: &[&str]) {
        let file = self.dir.file(&format!("h{k}.kv"), store);
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.ns(k), SERVENT])
            .env("RUST_LOG", "debug")
            .args(extra)
            .arg(PORT.to_string())
            .arg(&file)
            .args(neighbours.iter().map(|&n| host_addr(n)));
        let node = start_node(command, &self.dir, &format!("h{k}"));
        assert_eq!(
            node.addr.to_string(),
            format!("0.0.0.0:{PORT}"),
            "h{k} listens elsewhere"
        );
        self.nodes[k - 1] = Some(node);
    }

    fn node(&self, k: usize) -> &Node {
        self.nodes[k - 1]
            .as_ref()
            .unwrap_or_else(|| panic!("h{k} not running"))
    }

    /// Its links up so far, dialled or accepted.
    fn links(&self, k: usize) -> usize {
        let log = self.node(k).log();
        log.matches("connected to neighbour").count()
            + log.matches("is a neighbour servent").count()
    }

    /// Waits until host `k` has `count` neighbour links up.
    fn wait_links(&self, k: usize, count: usize) {
        wait_for(&format!("{count} links on h{k}"), || self.links(k) >= count);
    }

    /// A client in host `k`'s namespace against `servent` (ip:port), fed `input`.
    fn client(&self, k: usize, servent: &str, input: &str) -> ClientRun {
        let mut command = Command::new("ip");
        command
            .env("LC_ALL", common::ENGLISH)
            .args(["netns", "exec", &self.ns(k), CLIENT])
            .args(["--timeout", common::CLIENT_TIMEOUT])
            .arg(servent);
        run_process(command, input, Duration::from_secs(60))
    }

    /// Three hosts in a line h1–h2–h3 (h1 names h2, h2 names h3), each holding
    /// `all all-from-hK`, h3 also `k3 value`, with every link up.
    fn line3() -> Net {
        let mut net = Net::new(3);
        net.start(1, "all all-from-h1\n", &[2]);
        net.start(2, "all all-from-h2\n", &[3]);
        net.start(3, "all all-from-h3\nk3 value\n", &[]);
        net.wait_links(1, 1);
        net.wait_links(2, 2);
        net.wait_links(3, 1);
        net
    }

    /// Everything the servents logged, for failure messages.
    fn logs(&self) -> String {
        let mut all = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(node) = node {
                all += &format!("--- h{} ---\n{}\n", i + 1, node.log());
            }
        }
        all
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Processes first: a namespace outlives its deletion while something runs in it.
        for node in &mut self.nodes {
            if let Some(mut node) = node.take() {
                node.kill();
            }
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// No answer may name a loopback or wildcard address.
fn assert_reachable_names(run: &ClientRun) {
    assert!(
        !run.stdout.contains("127.0.0.1") && !run.stdout.contains("0.0.0.0"),
        "an answer names a local-only address: {run:?}"
    );
}

fn count(run: &ClientRun, line: &str) -> usize {
    run.lines().iter().filter(|l| **l == line).count()
}

/// `? k3` was answered once, by h3 under its own address, and each of the three hosts
/// answered `? all` exactly `times` times, each under its own address.
fn assert_answers(net: &Net, run: &ClientRun, k3: usize, times: usize) {
    assert_reachable_names(run);
    assert_eq!(
        count(run, "value 10.77.0.3:5000"),
        k3,
        "{run:?}\n{}",
        net.logs()
    );
    for k in 1..=3 {
        assert_eq!(
            count(run, &format!("all-from-h{k} {}", host_addr(k))),
            times,
            "h{k} did not answer `? all` {times} time(s) as {}: {run:?}\n{}",
            host_addr(k),
            net.logs()
        );
    }
}

#[test]
fn keys_answered_across_hosts_by_reachable_addresses() {
    if !namespaces() {
        return;
    }
    let net = Net::line3();
    let run = net.client(1, "127.0.0.1:5000", "? k3\n? all\n");
    assert_answers(&net, &run, 1, 1);
    assert_eq!(run.lines().len(), 4, "{run:?}");
}

#[test]
fn repeated_queries_answered_every_time_from_listening_ports() {
    if !namespaces() {
        return;
    }
    let net = Net::line3();
    let run = net.client(1, "127.0.0.1:5000", &"? all\n".repeat(5));
    assert_answers(&net, &run, 0, 5);
    assert_eq!(run.lines().len(), 15, "{run:?}");
    assert!(!run.stderr.contains("no answer"), "{run:?}");
}

#[test]
fn topology_lists_reachable_addresses() {
    if !namespaces() {
        return;
    }
    let net = Net::line3();
    let run = net.client(1, "127.0.0.1:5000", "T\n");
    assert_reachable_names(&run);
    let mut lines = run.lines();
    lines.sort();
    assert_eq!(
        lines,
        [
            "10.77.0.1:5000 10.77.0.1:5000",
            "10.77.0.1:5000 10.77.0.2:5000 10.77.0.2:5000",
            "10.77.0.1:5000 10.77.0.2:5000 10.77.0.3:5000 10.77.0.3:5000",
        ],
        "{run:?}\n{}",
        net.logs()
    );
}

#[test]
fn client_on_the_hosts_own_address() {
    if !namespaces() {
        return;
    }
    let net = Net::line3();
    let run = net.client(1, &host_addr(1), "? k3\n? all\nT\n");
    assert_answers(&net, &run, 1, 1);
    assert_eq!(
        count(
            &run,
            "10.77.0.1:5000 10.77.0.2:5000 10.77.0.3:5000 10.77.0.3:5000"
        ),
        1,
        "{run:?}"
    );
}

#[test]
fn killed_servent_restarted_on_same_port_is_redialled() {
    if !namespaces() {
        return;
    }
    let mut net = Net::line3();
    let dialled = |net: &Net| {
        net.node(2)
            .log()
            .matches("connected to neighbour 10.77.0.3:5000")
            .count()
    };
    assert_eq!(dialled(&net), 1, "{}", net.logs());
    net.nodes[2].as_mut().unwrap().kill(); // SIGKILL
    net.nodes[2] = None;
    net.start(3, "all all-from-h3\nk3 value\n", &[]);
    wait_for("h2 to redial h3", || dialled(&net) >= 2);
    net.wait_links(3, 1);
    let run = net.client(1, "127.0.0.1:5000", "? k3\n");
    assert_reachable_names(&run);
    assert_eq!(
        run.lines(),
        ["value 10.77.0.3:5000"],
        "{run:?}\n{}",
        net.logs()
    );
}

/// flood-view follows a query over three hosts, each servent named by the address the
/// other hosts reach it at (every one listens on 0.0.0.0:5000; the client is on h1's
/// loopback), with the TTL each hop got.
#[test]
fn flood_view_follows_a_query_across_hosts() {
    if !namespaces() {
        return;
    }
    let mut net = Net::new(3);
    let traces: Vec<String> = (1..=3)
        .map(|k| net.dir.0.join(format!("h{k}.jsonl")).display().to_string())
        .collect();
    net.start_with(1, "", &[2], &["--trace", &traces[0]]);
    net.start_with(2, "", &[3], &["--trace", &traces[1]]);
    net.start_with(3, "k3 value\n", &[], &["--trace", &traces[2]]);
    net.wait_links(1, 1);
    net.wait_links(2, 2);
    net.wait_links(3, 1);
    let run = net.client(1, "127.0.0.1:5000", "? k3\n");
    assert_eq!(run.lines(), ["value 10.77.0.3:5000"], "{run:?}");
    wait_for("h3 to trace its answer", || {
        std::fs::read_to_string(&traces[2]).is_ok_and(|t| t.contains("\"answered\""))
    });
    let out = Command::new(env!("CARGO_BIN_EXE_flood-view"))
        .args(&traces)
        .output()
        .unwrap();
    let tree = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = tree.lines().collect();
    assert_eq!(lines.len(), 5, "{tree}");
    // The loopback client's queries are named by h1's reachable address.
    assert!(lines[0].starts_with("query 10.77.0.1:"), "{tree}");
    assert!(
        lines[0].ends_with(", key \"k3\": 3 servents reached, 1 answer, 0 duplicates dropped"),
        "{tree}"
    );
    assert!(lines[1].starts_with("  client 127.0.0.1:"), "{tree}");
    assert!(
        lines[2].starts_with("  └── 10.77.0.1:5000  +0.000 ms"),
        "{tree}"
    );
    assert!(
        lines[3].starts_with("      └── 10.77.0.2:5000  TTL 3  +"),
        "{tree}"
    );
    assert!(
        lines[4].starts_with("          └── 10.77.0.3:5000  TTL 2  +"),
        "{tree}"
    );
    assert!(lines[4].contains("answered \"value\" (sent +"), "{tree}");
}

/// This binary run as an unprivileged user (uid 65534): every test passes with one
/// SKIPPED line, and with TP3KV_REQUIRE_ROOT=1 they fail. Only root can switch user,
/// so only a root run checks this; a non-root run is itself the first case.
#[test]
fn without_root_the_tests_skip_unless_root_required() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    // A copy any user can run, whatever the permissions of the build directory.
    let dir = common::TempDir::new("netns-unprivileged");
    let binary = dir.0.join("netns");
    std::fs::copy(std::env::current_exe().unwrap(), &binary).unwrap();
    let as_nobody = |require: Option<&str>| -> (Output, String) {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&binary)
            .arg("--test-threads=2")
            .env_remove(REQUIRE_ROOT)
            .current_dir(&dir.0);
        if let Some(value) = require {
            command.env(REQUIRE_ROOT, value);
        }
        let out = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run setpriv (util-linux): {e}"));
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out, all)
    };

    let (out, all) = as_nobody(None);
    assert!(out.status.success(), "{all}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let skipped: Vec<&str> = stderr.lines().filter(|l| l.contains("SKIPPED")).collect();
    assert_eq!(
        skipped.len(),
        1,
        "one SKIPPED line for the whole run:\n{all}"
    );
    assert!(
        skipped[0].starts_with("SKIPPED: tests/netns.rs (servents on separate hosts): ")
            && skipped[0].contains("running as uid 65534, not root")
            && skipped[0].ends_with("set TP3KV_REQUIRE_ROOT=1 to make this a failure"),
        "{all}"
    );
    assert!(all.contains(" 0 failed"), "{all}");

    let (out, all) = as_nobody(Some("1"));
    assert!(!out.status.success(), "TP3KV_REQUIRE_ROOT=1 passed:\n{all}");
    assert!(!all.contains("SKIPPED"), "{all}");
    assert!(
        all.contains("TP3KV_REQUIRE_ROOT=1, but network namespaces cannot be made here"),
        "{all}"
    );
    // Each namespace test failed; only this one, not root there, passed.
    assert!(all.contains("test result: FAILED. 1 passed; "), "{all}");
}
