//! The implementation under test: its command template, and one running instance of it
//! (spawned per case, waited for until its port accepts, killed at drop).

use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The command line given after `--`, with its placeholders still in it.
#[derive(Debug, Clone)]
pub struct Template {
    pub program: String,
    pub args: Vec<String>,
}

/// What the placeholders of one instance stand for.
#[derive(Debug, Clone, Default)]
pub struct Fill {
    pub port: u16,
    pub kv: Option<PathBuf>,
    pub neighbours: Vec<SocketAddrV4>,
    pub servent: Option<SocketAddrV4>,
}

impl Template {
    pub fn new(command: &[String]) -> Option<Template> {
        let (program, args) = command.split_first()?;
        Some(Template {
            program: program.clone(),
            args: args.to_vec(),
        })
    }

    /// Whether the program can be started at all, and if not why, in one line: else
    /// every case would fail alike, each saying it could not start it.
    pub fn startable(&self) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let executable = |m: &std::fs::Metadata| m.is_file() && m.permissions().mode() & 0o111 != 0;
        let program = &self.program;
        if program.contains('/') {
            return match std::path::Path::new(program).metadata() {
                Err(e) => Err(format!(
                    "cannot start {program}: {}",
                    crate::os_error::plain(&e)
                )),
                Ok(m) if m.is_dir() => Err(format!("cannot start {program}: it is a directory")),
                Ok(m) if !executable(&m) => Err(format!(
                    "cannot start {program}: it is not executable (chmod +x {program})"
                )),
                Ok(_) => Ok(()),
            };
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        let found = std::env::split_paths(&path)
            .any(|dir| dir.join(program).metadata().is_ok_and(|m| executable(&m)));
        if found {
            Ok(())
        } else {
            Err(format!(
                "cannot start {program}: no such program on the PATH (a file here is ./{program})"
            ))
        }
    }

    /// Whether any argument holds `placeholder` (e.g. `{kv}`).
    pub fn has(&self, placeholder: &str) -> bool {
        self.args.iter().any(|a| a.contains(placeholder))
    }

    /// The arguments with every placeholder replaced; `{neighbours}` standing alone
    /// becomes zero or more arguments.
    pub fn expand(&self, fill: &Fill) -> Vec<String> {
        let mut out = Vec::new();
        for arg in &self.args {
            if arg == "{neighbours}" {
                out.extend(fill.neighbours.iter().map(|n| n.to_string()));
                continue;
            }
            let mut a = arg.replace("{port}", &fill.port.to_string());
            if let Some(kv) = &fill.kv {
                a = a.replace("{kv}", &kv.display().to_string());
            }
            if let Some(s) = fill.servent {
                a = a.replace("{servent}", &s.to_string());
            }
            let list: Vec<String> = fill.neighbours.iter().map(|n| n.to_string()).collect();
            a = a.replace("{neighbours}", &list.join(" "));
            out.push(a);
        }
        out
    }

    /// The command as given, placeholders and all.
    pub fn raw(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The command as a person would type it, for reports.
    pub fn show(&self, fill: &Fill) -> String {
        let mut s = self.program.clone();
        for a in self.expand(fill) {
            s.push(' ');
            s.push_str(&a);
        }
        s
    }
}

/// A port that was free a moment ago (bound on all interfaces without SO_REUSEADDR,
/// then released), taken from 10000 up, below the system's ephemeral range so that no
/// connection the checker makes meanwhile can be given it, and never the same twice in
/// one run.
pub fn free_port() -> std::io::Result<u16> {
    let lowest_ephemeral = ephemeral_range().0.clamp(12000, 20000);
    // Reply listeners below 32768 take 20000 and up (peer.rs).
    free_port_in(10000, lowest_ephemeral)
}

/// A free port of 32768 or more, where a port read as a signed 16-bit number turns
/// negative: above the ephemeral range when there is room, else near its top.
pub fn free_high_port() -> std::io::Result<u16> {
    let highest_ephemeral = ephemeral_range().1;
    if (32768..65000).contains(&highest_ephemeral) {
        free_port_in(highest_ephemeral + 1, 65536)
    } else {
        free_port_in(62000, 65536)
    }
}

/// The system's ephemeral port range, or Linux's default.
fn ephemeral_range() -> (usize, usize) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|w| w.parse::<usize>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// A free port in `from..to`.
fn free_port_in(from: usize, to: usize) -> std::io::Result<u16> {
    use socket2::{Domain, Protocol, Socket, Type};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let span = to - from;
    let start = std::process::id() as usize * 7919;
    let mut last = None;
    for _ in 0..span.min(500) {
        let port = (from + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        match s.bind(&std::net::SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into()) {
            Ok(()) => return Ok(port),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free port")))
}

/// A scratch file removed at drop (the `{kv}` of one instance).
pub struct ScratchFile(pub PathBuf);

impl ScratchFile {
    pub fn write(tag: &str, contents: &[u8]) -> std::io::Result<ScratchFile> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "tp3-check-{}-{}-{tag}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents)?;
        Ok(ScratchFile(path))
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One running process of the implementation under test, killed at drop.
pub struct Process {
    child: Child,
    pub command_line: String,
    /// Where its stderr goes, to quote when it ends early.
    stderr: Option<ScratchFile>,
}

impl Process {
    /// Spawns the expanded template, stdin/stdout/stderr as asked.
    pub fn spawn(
        template: &Template,
        fill: &Fill,
        stdin: Stdio,
        stdout: Stdio,
    ) -> Result<Process, String> {
        let command_line = template.show(fill);
        let log = ScratchFile::write("stderr.log", b"").ok();
        let stderr = log
            .as_ref()
            .and_then(|f| std::fs::File::create(&f.0).ok())
            .map_or(Stdio::null(), Stdio::from);
        let child = Command::new(&template.program)
            .args(template.expand(fill))
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start `{command_line}`: {}",
                    crate::os_error::plain(&e)
                )
            })?;
        Ok(Process {
            child,
            command_line,
            stderr: log,
        })
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// `Some(status)` once the process has ended, with the last lines it wrote on
    /// stderr.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{status}{}", self.stderr_tail())),
            _ => None,
        }
    }

    /// Everything it wrote on stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr
            .as_ref()
            .and_then(|f| std::fs::read(&f.0).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// `; its stderr ended: ...` with its last three lines, or nothing.
    fn stderr_tail(&self) -> String {
        let Some(text) = self.stderr.as_ref().and_then(|f| std::fs::read(&f.0).ok()) else {
            return String::new();
        };
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.is_empty() {
            return String::new();
        }
        let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
        format!("; its stderr ended: {tail}")
    }

    /// Connects to `port` on loopback until it accepts, the process dies, or
    /// `timeout` passes. The connection made is returned: the caller may use it.
    pub fn wait_listening(&mut self, port: u16, timeout: Duration) -> Result<TcpStream, String> {
        let deadline = Instant::now() + timeout;
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        loop {
            if let Some(status) = self.exited() {
                return Err(format!(
                    "`{}` ended ({status}) before port {port} accepted a connection",
                    self.command_line
                ));
            }
            if let Ok(s) = TcpStream::connect_timeout(&addr.into(), Duration::from_millis(500)) {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "nothing accepted a connection on port {port} within {:.0} s of starting `{}`",
                    timeout.as_secs_f64(),
                    self.command_line
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether it still runs after `grace`.
    pub fn alive_after(&mut self, grace: Duration) -> Result<(), String> {
        std::thread::sleep(grace);
        match self.exited() {
            Some(status) => Err(format!("the process ended ({status})")),
            None => Ok(()),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
