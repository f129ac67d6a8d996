//! The processes a benchmark runs (servents, and this bench binary re-run as a baseline),
//! their scratch directory, and what `/proc` says about them.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// The servent binary `cargo bench` built (in release: benches use the `bench` profile,
/// which inherits `release`).
pub const SERVENT: &str = env!("CARGO_BIN_EXE_servent");

/// The environment variable that makes this bench binary run as a baseline process.
pub const CHILD_ROLE: &str = "TP3KV_PERF_ROLE";

pub fn share(cpu: Duration, wall: Duration) -> f64 {
    cpu.as_secs_f64() / wall.as_secs_f64()
}

/// User + system CPU time this process has used (all its threads).
pub fn own_cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// A scratch directory, removed at drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Result<TempDir, String> {
        let path = std::env::temp_dir().join(format!("tp3kv-perf-{}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(TempDir(path))
    }

    pub fn write(&self, name: &str, contents: &str) -> Result<PathBuf, String> {
        let path = self.0.join(name);
        std::fs::write(&path, contents).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running process that printed `listening on IP:PORT` first, killed at drop if it was
/// not stopped (a panic included).
pub struct Process {
    pub name: String,
    child: Child,
    /// Kept open so the process never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
    pub addr: SocketAddrV4,
    log: PathBuf,
    stopped: bool,
}

/// How a servent ended.
pub struct Outcome {
    pub status: String,
    pub status_ok: bool,
    pub summary: Option<String>,
    pub warnings: Vec<String>,
}

impl Outcome {
    /// What a stopped servent did wrong, one line each: an unclean exit, a lost answer.
    pub fn problems(&self, name: &str) -> Vec<String> {
        let mut problems: Vec<String> = self.exit_problem(name).into_iter().collect();
        let lost = self
            .summary
            .as_deref()
            .and_then(lost_in_summary)
            .unwrap_or(0);
        if lost > 0 {
            problems.push(format!("{name}: its summary counts {lost} lost answer(s)"));
        }
        problems
    }

    /// An unclean exit, if it was one.
    pub fn exit_problem(&self, name: &str) -> Option<String> {
        (!self.clean())
            .then(|| format!("{name}: did not exit cleanly on SIGTERM ({})", self.status))
    }

    /// Exited 0, with its summary line.
    pub fn clean(&self) -> bool {
        self.status_ok && self.summary.is_some()
    }
}

impl Process {
    /// A servent on a port the system picks, logging at `RUST_LOG=warn`.
    pub fn servent(
        name: &str,
        dir: &Path,
        kv: &Path,
        neighbours: &[SocketAddrV4],
        flags: &[String],
    ) -> Result<Process, String> {
        Process::servent_logging(name, dir, kv, neighbours, flags, "warn")
    }

    pub fn servent_logging(
        name: &str,
        dir: &Path,
        kv: &Path,
        neighbours: &[SocketAddrV4],
        flags: &[String],
        rust_log: &str,
    ) -> Result<Process, String> {
        // PERF_WRAP runs each servent under a tool: `valgrind --tool=callgrind ...`.
        let wrap: Vec<String> = std::env::var("PERF_WRAP")
            .map(|w| w.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        let mut command = match wrap.split_first() {
            Some((tool, tool_args)) => {
                let mut command = Command::new(tool);
                command.args(tool_args).arg(SERVENT);
                command
            }
            None => Command::new(SERVENT),
        };
        command
            .args(flags)
            .arg("0")
            .arg(kv)
            .args(neighbours.iter().map(|n| n.to_string()))
            .env("RUST_LOG", rust_log);
        Process::start(name, dir, command)
    }

    /// This bench binary, run as the baseline `role` (see `baseline.rs`).
    pub fn baseline(
        name: &str,
        dir: &Path,
        role: &str,
        args: &[String],
    ) -> Result<Process, String> {
        let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
        let mut command = Command::new(exe);
        command.args(args).env(CHILD_ROLE, role);
        Process::start(name, dir, command)
    }

    fn start(name: &str, dir: &Path, mut command: Command) -> Result<Process, String> {
        let log = dir.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut process = Process {
            name: name.to_string(),
            child,
            _stdout: stdout,
            addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
            log,
            stopped: false,
        };
        let mut line = String::new();
        let _ = process._stdout.read_line(&mut line);
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|addr| addr.rsplit_once(':'))
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .ok_or_else(|| {
                format!(
                    "{name} did not start: stdout {line:?}, stderr {:?}",
                    process.log_text()
                )
            })?;
        process.addr.set_port(port);
        Ok(process)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// User + system CPU time the process has used, from `/proc/PID/stat`.
    pub fn cpu_time(&self) -> Duration {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())) else {
            return Duration::ZERO;
        };
        // Fields after the parenthesised command name start at field 3 (state);
        // utime and stime are fields 14 and 15, in clock ticks.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return Duration::ZERO;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        let (Some(user), Some(system)) = (ticks(11), ticks(12)) else {
            return Duration::ZERO;
        };
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Duration::from_secs_f64((user + system) as f64 / hz)
    }

    /// Resident set size in KiB (`VmRSS`): shared pages (the binary, libc) count whole.
    pub fn rss_kib(&self) -> Option<u64> {
        proc_field(&format!("/proc/{}/status", self.pid()), "VmRSS:")
    }

    /// Proportional set size in KiB (`Pss:` of `/proc/PID/smaps_rollup`): each shared
    /// page counts for 1/n of it in each of the n processes that map it.
    pub fn pss_kib(&self) -> Option<u64> {
        proc_field(&format!("/proc/{}/smaps_rollup", self.pid()), "Pss:")
    }

    /// Stops the process with SIGTERM (a servent exits 0 with its summary line) and
    /// reads its log.
    pub fn stop(mut self) -> Result<Outcome, String> {
        self.stopped = true;
        // SAFETY: kill only sends a signal, to our own child, which has not been reaped.
        unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
                Err(e) => return Err(format!("{}: wait: {e}", self.name)),
            }
        };
        let log = self.log_text();
        Ok(Outcome {
            status: match status {
                Some(status) => status.to_string(),
                None => "still running 10 s after SIGTERM; killed".into(),
            },
            status_ok: status.is_some_and(|s| s.success()),
            summary: log
                .lines()
                .find(|l| l.starts_with("servent:") && l.contains(": exiting:"))
                .map(String::from),
            warnings: log
                .lines()
                .filter(|l| !(l.starts_with("servent:") && l.contains(": exiting:")))
                .map(String::from)
                .collect(),
        })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The number after `label` in a `/proc` file of `Label:   N kB` lines.
fn proc_field(path: &str, label: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(label))?;
    line[label.len()..].split_whitespace().next()?.parse().ok()
}

/// `N` in a servent summary's `answers sent X (lost N)`.
fn lost_in_summary(summary: &str) -> Option<u64> {
    let rest = &summary[summary.find("(lost ")? + "(lost ".len()..];
    rest[..rest.find(')')?].parse().ok()
}

/// Stops servents, prints what each said on exit, and returns the problems found: a
/// lost answer in a summary, an unclean exit. Warnings logged are printed, not failed.
pub fn stop_all(servents: Vec<Process>) -> Result<Vec<String>, String> {
    stop_each(servents, false)
}

/// [`stop_all`] for servents that may have lost answers on purpose (to an address that
/// never reads them): only an unclean exit is a problem.
pub fn stop_all_lossy(servents: Vec<Process>) -> Result<Vec<String>, String> {
    stop_each(servents, true)
}

fn stop_each(servents: Vec<Process>, lost_ok: bool) -> Result<Vec<String>, String> {
    let mut problems = Vec::new();
    let several = servents.len() > 1;
    for servent in servents {
        let name = servent.name.clone();
        let outcome = servent.stop()?;
        let prefix = if several {
            format!("{name}: ")
        } else {
            String::new()
        };
        println!(
            "{prefix}{}",
            outcome
                .summary
                .as_deref()
                .unwrap_or("(no exit summary line)")
        );
        if lost_ok {
            problems.extend(outcome.exit_problem(&name));
        } else {
            problems.extend(outcome.problems(&name));
        }
        if !outcome.warnings.is_empty() {
            println!("{name}: {} warning line(s) logged:", outcome.warnings.len());
            for line in outcome.warnings.iter().take(20) {
                println!("    {line}");
            }
            if outcome.warnings.len() > 20 {
                println!("    ...");
            }
        }
    }
    Ok(problems)
}
