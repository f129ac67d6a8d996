//! `servent <port> <keyvalues-file> [ip:port ...]`: one node of the network.
//!
//! Exit status: 0 once stopped by SIGINT or SIGTERM, 1 on a runtime error (cannot
//! bind, cannot read the file), 2 on a usage error (anything wrong in the command
//! line, a servent named as its own neighbour included). Every error is one line,
//! `servent: error: ...`.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use log::{info, warn, Level, LevelFilter, Log, Record};

use tp3kv::cli::{self, Seconds};
use tp3kv::logging::{self, Sink};
use tp3kv::net::{self, budget, BindError, Driver, Options};
use tp3kv::servent::{Config, Servent, TtlRule};
use tp3kv::store::{Store, StoreError};
use tp3kv::trace::Tracer;

/// One servent of the TP3 key-value network.
///
/// A servent holds the keys and values of a file, listens for clients and neighbour
/// servents, and keeps a TCP link to every neighbour named on its command line. A
/// client's query (KEYREQ, TOPOREQ) is flooded to the neighbours (KEYFLOOD,
/// TOPOFLOOD) up to 4 hops beyond this servent (TTL 3, one less at each hop, not
/// passed on once it is 0); every servent that holds the key answers the
/// client directly, on a connection of its own (RESP).
///
/// It prints `listening on IP:PORT` on stdout once it listens, and logs to stderr
/// (RUST_LOG sets the level: info by default, `debug` shows every frame). SIGUSR1
/// logs its counters; SIGINT or SIGTERM stop it, with a summary line.
#[derive(Parser, Debug)]
#[command(
    name = "servent",
    version,
    about = "One servent of the TP3 key-value network: holds a key-value file, answers \
             clients' queries and floods them to its neighbours.",
    after_help = AFTER_HELP
)]
struct Args {
    /// Port to listen on (0: any free port; the chosen one is printed).
    // Text, checked by [`check`], so its errors can say which argument comes first.
    port: String,
    /// Key-value file: one `key value...` per line; a line whose first non-blank
    /// character is `#` is a comment, a `#` inside a value is part of the value.
    #[arg(value_name = "KEYVALUES_FILE")]
    keyvalues: PathBuf,
    /// Neighbour servents to link to, as ip:port (they need not be running yet: each
    /// is dialled until it answers, and again whenever its link goes down).
    #[arg(value_name = "IP:PORT")]
    neighbours: Vec<String>,
    /// Address to listen on. `::` listens on IPv6 too, where clients are refused
    /// with a log line: the wire format has no room for an IPv6 reply address.
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    listen_ip: IpAddr,
    /// The address other hosts reach this servent at, named in topology answers and
    /// in floods for clients on loopback (default: the address each link shows).
    #[arg(long, value_name = "IP")]
    advertise: Option<Ipv4Addr>,
    /// When a flood stops: `seed` forwards a TTL t with t-1 while t > 0, so a query
    /// reaches servents up to 4 hops from the one asked; `2019`, the 2019
    /// assignment's rule, forwards t-1 only if t-1 > 0 (3 hops). No frame differs.
    #[arg(long, value_name = "RULE", value_enum, default_value_t = TtlRuleArg::Seed)]
    ttl_rule: TtlRuleArg,
    /// Pass a query on again when a later copy of it comes with more TTL than any
    /// before it (never answering it twice), so it reaches every servent within the
    /// TTL's hops whatever order copies arrive in. Off by default: the seed passes each
    /// query on once. No frame differs; servents with and without it interoperate.
    #[arg(long)]
    full_reach: bool,
    /// Seconds a handled query is remembered, to drop its later copies.
    #[arg(long, value_name = "SECONDS", default_value_t = Seconds(Config::default().seen_lifetime))]
    seen_lifetime: Seconds,
    /// The most queries remembered at once (the oldest are forgotten first).
    #[arg(long, value_name = "N", default_value_t = Config::default().seen_capacity)]
    seen_capacity: usize,
    /// Accepted connections open at once; past it new ones are closed at once.
    #[arg(long, value_name = "N", default_value_t = Options::default().max_connections)]
    max_connections: usize,
    /// Seconds an accepted connection has to send its ID.
    #[arg(long, value_name = "SECONDS", default_value_t = Seconds(Options::default().id_timeout))]
    id_timeout: Seconds,
    /// Bytes a peer may leave unread before it is dropped.
    #[arg(long, value_name = "BYTES", default_value_t = Options::default().outbox_limit)]
    max_outbox: usize,
    /// Bytes all peers together may leave unread; past it, the peer with the most
    /// waiting is dropped, so memory stays bounded however many stop reading.
    #[arg(long, value_name = "BYTES", default_value_t = Options::default().max_buffered)]
    max_buffered: usize,
    /// Seconds a peer's output may wait with none of it taken before the peer is
    /// dropped.
    #[arg(long, value_name = "SECONDS", default_value_t = Seconds(Options::default().stall_timeout))]
    stall_timeout: Seconds,
    /// Seconds an answer connection has to connect and deliver its RESP.
    #[arg(long, value_name = "SECONDS", default_value_t = Seconds(Options::default().answer_timeout))]
    answer_timeout: Seconds,
    /// Answer connections open at once; more wait in a queue.
    #[arg(long, value_name = "N", default_value_t = Options::default().max_answers)]
    max_answers: usize,
    /// Answer connections open at once to one client's reply address; its other
    /// answers wait their turn, so one client cannot hold up the others.
    #[arg(long, value_name = "N", default_value_t = Options::default().answers_per_address)]
    answers_per_address: usize,
    /// Answers that may wait for their turn; past it, the client with the most waiting
    /// loses its oldest.
    #[arg(long, value_name = "N", default_value_t = Options::default().answer_queue)]
    answer_queue: usize,
    /// Append a trace to this file: one JSON line per frame received, sent, answered
    /// or dropped. `flood-view` draws the floods in the traces of several servents.
    #[arg(long, value_name = "PATH")]
    trace: Option<PathBuf>,
}

/// `--ttl-rule`'s values, as [`TtlRule`] in the words of the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TtlRuleArg {
    /// test, then decrement (the seed's)
    Seed,
    /// decrement, then test (the 2019 assignment's)
    #[value(name = "2019")]
    Assignment2019,
}

impl From<TtlRuleArg> for TtlRule {
    fn from(arg: TtlRuleArg) -> TtlRule {
        match arg {
            TtlRuleArg::Seed => TtlRule::Seed,
            TtlRuleArg::Assignment2019 => TtlRule::Assignment2019,
        }
    }
}

const AFTER_HELP: &str = "\
Examples:
  servent 5001 keys.txt                    a servent on port 5001, no neighbours
  servent 5002 more.txt 127.0.0.1:5001     a second one, linked to the first
  client 127.0.0.1:5002                    then ask them (`? key`, `T`, `Q`)

Logs (stderr), chosen by RUST_LOG: unset is `info` (start-up, links, warnings);
`debug` or `servent=debug` adds every frame received and sent, in the wire's words.
A neighbour that cannot be reached is one warning, and one line when it comes up.

Exit status: 0 on success, 1 on a runtime error, 2 on a usage error.";

/// How long a servent that is done waits for its last log lines to be written: stderr
/// may be a pipe nobody reads.
const LOG_FLUSH_LIMIT: Duration = Duration::from_secs(2);

fn main() {
    let args: Args = cli::parse("servent");
    let (port, neighbours) = match check(&args) {
        Ok(checked) => checked,
        Err(e) => fail(cli::USAGE_ERROR, &e),
    };
    // Everything the servent writes to stderr goes through the sink, so no write to
    // stderr ever blocks the loop (or the exit).
    let sink = match Sink::start(io::stderr(), logging::CAPACITY) {
        Ok(sink) => sink,
        Err(e) => fail(cli::RUNTIME_ERROR, &format!("cannot start logging: {e}")),
    };
    let outcome = run(args, port, neighbours, &sink);
    let failed = outcome.is_err();
    // Named by its port, as its log lines are, so the summaries of a whole topology
    // can share one terminal.
    let me = match PORT.load(Ordering::Relaxed) {
        0 => "servent".to_string(),
        port => format!("servent:{port}"),
    };
    let line = match outcome {
        Ok(summary) => match sink.dropped() {
            0 => format!("{me}: exiting: {summary}\n"),
            n => format!("{me}: exiting: {summary}, log lines dropped {n}\n"),
        },
        Err(e) => format!("servent: error: {e:#}\n"),
    };
    sink.push(line.as_bytes());
    sink.finish(LOG_FLUSH_LIMIT);
    if failed {
        std::process::exit(1);
    }
}

/// `servent: error: <what>` on stderr, and exit with `status`.
fn fail(status: i32, what: &str) -> ! {
    cli::fail("servent", status, what)
}

/// The servent's own port and its neighbours, checked, with what clap cannot see: the
/// arguments in the wrong order, and a servent named as its own neighbour (which takes
/// a port given, not chosen by the system).
fn check(args: &Args) -> Result<(u16, Vec<SocketAddrV4>), String> {
    let port = own_port(&args.port)?;
    let neighbours = args
        .neighbours
        .iter()
        .map(|text| net::resolve_v4(text))
        .collect::<Result<Vec<_>, _>>()?;
    for &neighbour in &neighbours {
        if is_self(neighbour, args.listen_ip, port, args.advertise) {
            return Err(format!(
                "neighbour {neighbour} is this servent itself (it listens on {}): a \
                 servent cannot be its own neighbour",
                SocketAddr::new(args.listen_ip, port)
            ));
        }
    }
    Ok((port, neighbours))
}

/// The first argument, the servent's own port; its error says so, as the usual
/// mistakes are a neighbour's address or the file put first.
fn own_port(text: &str) -> Result<u16, String> {
    const ORDER: &str = "servent PORT KEYVALUES_FILE [IP:PORT]...";
    cli::parse_port(text, "port", 0).map_err(|why| {
        if text.contains(':') {
            format!(
                "{text:?} is an address, not a port: the servent's own port comes first, \
                 its neighbours last: {ORDER}"
            )
        } else if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() {
            why
        } else {
            format!("{why}; the first argument is the servent's own port: {ORDER}")
        }
    })
}

/// Whether a connection to `neighbour` would reach this servent's own listener:
/// its port on the address it listens on, on the address it advertises, or, when it
/// listens on every address (`0.0.0.0`, `::`), on any address of this host.
fn is_self(
    neighbour: SocketAddrV4,
    listen_ip: IpAddr,
    port: u16,
    advertise: Option<Ipv4Addr>,
) -> bool {
    if port == 0 || neighbour.port() != port {
        return false;
    }
    let ip = *neighbour.ip();
    if advertise == Some(ip) {
        return true;
    }
    let listen_v4 = match listen_ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) if v6.is_unspecified() => Some(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    };
    match listen_v4 {
        Some(any) if any.is_unspecified() => is_local(ip),
        // A connect to 0.0.0.0 goes to 127.0.0.1.
        Some(listen) => listen == ip || (ip.is_unspecified() && listen == Ipv4Addr::LOCALHOST),
        None => false,
    }
}

/// Whether `ip` is an address of this host: one a socket can be bound to.
fn is_local(ip: Ipv4Addr) -> bool {
    ip.is_unspecified() || ip.is_loopback() || UdpSocket::bind((ip, 0)).is_ok()
}

/// Why the listener could not open, in plain words, once.
fn bind_message(e: &BindError) -> String {
    let why = match (e.source.kind(), e.source.raw_os_error()) {
        (io::ErrorKind::AddrInUse, _) => "the port is already in use".to_string(),
        (io::ErrorKind::AddrNotAvailable, _) => {
            format!("{} is not an address of this host", e.addr.ip())
        }
        (io::ErrorKind::PermissionDenied, _) => {
            "permission denied (ports below 1024 need privileges)".to_string()
        }
        _ => tp3kv::os_error::plain(&e.source),
    };
    format!("cannot listen on {}: {why}", e.addr)
}

fn run(args: Args, port: u16, neighbours: Vec<SocketAddrV4>, sink: &Sink) -> Result<String> {
    let config = Config {
        seen_lifetime: args.seen_lifetime.0,
        seen_capacity: args.seen_capacity,
        advertise: args.advertise,
        ttl_rule: args.ttl_rule.into(),
        full_reach: args.full_reach,
        ..Config::default()
    };
    let mut options = Options {
        max_connections: args.max_connections,
        id_timeout: args.id_timeout.0,
        outbox_limit: args.max_outbox,
        max_buffered: args.max_buffered,
        stall_timeout: args.stall_timeout.0,
        answer_timeout: args.answer_timeout.0,
        max_answers: args.max_answers.max(1),
        answers_per_address: args.answers_per_address.max(1),
        answer_queue: args.answer_queue,
        ..Options::default()
    };
    init_logging(sink);
    let store = load(&args.keyvalues)
        .with_context(|| format!("cannot load {}", args.keyvalues.display()))?;
    // The error says its cause itself: its chain would repeat it.
    let listener = net::listen(SocketAddr::new(args.listen_ip, port))
        .map_err(|e| anyhow::Error::msg(bind_message(&e)))?;
    let local = listener.local_addr()?;
    PORT.store(local.port(), Ordering::Relaxed);
    let tracer = match &args.trace {
        Some(path) => {
            // Named as other servents know it where that is known; else as it listens
            // (`flood-view` finds the address behind 0.0.0.0 from the links).
            let name = match args.advertise {
                Some(ip) => SocketAddr::new(IpAddr::V4(ip), local.port()),
                None => local,
            };
            let tracer = Tracer::create(path, name.to_string()).map_err(|e| {
                anyhow::anyhow!(
                    "cannot create the trace file {}: {}",
                    path.display(),
                    tp3kv::os_error::plain(&e)
                )
            })?;
            Some(tracer)
        }
        None => None,
    };

    // Every connection is a descriptor: make room for the limits, or share the room
    // there is between links and answers.
    let wanted = budget::wanted(
        options.max_connections,
        options.max_answers,
        neighbours.len(),
    );
    let limit = net::raise_fd_limit(wanted).context("cannot read the descriptor limit")?;
    let split = budget::split(
        limit,
        options.max_connections,
        options.max_answers,
        neighbours.len(),
    )?;
    if (split.connections, split.answers) != (options.max_connections, options.max_answers) {
        warn!(
            "{split} (--max-connections {} and --max-answers {} do not fit)",
            options.max_connections, options.max_answers
        );
    } else {
        info!("{split}");
    }
    options.max_connections = split.connections;
    options.max_answers = split.answers;

    // Stdout may be gone (a closed pipe): the servent serves all the same.
    let mut stdout = io::stdout().lock();
    if let Err(e) = writeln!(stdout, "listening on {local}").and_then(|()| stdout.flush()) {
        info!("listening on {local} (not printed: stdout: {e})");
    }
    drop(stdout);
    let named: Vec<String> = neighbours.iter().map(|n| n.to_string()).collect();
    info!(
        "{} keys from {} ({} KiB in memory); neighbours: {}",
        store.len(),
        args.keyvalues.display(),
        store.heap_bytes().div_ceil(1024),
        if named.is_empty() {
            "none".to_string()
        } else {
            named.join(" ")
        }
    );
    if config.ttl_rule != TtlRule::Seed {
        info!(
            "TTL rule {}: decremented, then tested (a query reaches 3 hops, not 4)",
            config.ttl_rule.name()
        );
    }
    if config.full_reach {
        info!(
            "full reach: a later copy of a query with more TTL than any before it is \
             passed on again (up to {} hops, whatever the order copies arrive in)",
            config.ttl_rule.reach()
        );
    }
    let servent = Servent::new(store, local.port(), config);
    let mut driver = Driver::new(listener, servent, neighbours, options)?;
    if let Some(tracer) = tracer {
        driver.trace_to(tracer);
    }
    driver
        .stop_on(&[signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .context("cannot install signal handlers")?;
    driver
        .counters_on(&[signal_hook::consts::SIGUSR1])
        .context("cannot install the SIGUSR1 handler")?;
    driver.run().context("event loop failed")?;
    Ok(driver.summary())
}

/// How long a key-value file may take to load before the servent says it is waiting.
const SLOW_LOAD: Duration = Duration::from_secs(3);

/// Loads the key-value file, with a thread watching: a file that takes long (a FIFO
/// nobody writes to yet, a slow disk) is reported once, rather than the servent waiting
/// in silence before it listens. It goes on waiting: the file is what it serves. The
/// main thread loads, so the store's memory comes from the main allocator arena, and
/// the watcher allocates nothing unless it warns.
fn load(path: &Path) -> Result<Store, StoreError> {
    let (done, loading) = mpsc::channel::<()>();
    let shown = path.display().to_string();
    let watcher = std::thread::Builder::new()
        .name("load-watch".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = loading.recv_timeout(SLOW_LOAD) {
                warn!(
                    "still loading {shown} after {} s (a FIFO nobody writes to, or a slow \
                     disk?); listening once it is loaded",
                    SLOW_LOAD.as_secs()
                );
            }
        });
    if let Err(e) = &watcher {
        warn!("cannot watch the loading of {}: {e}", path.display());
    }
    let store = Store::load(path);
    drop(done);
    if let Ok(watcher) = watcher {
        let _ = watcher.join();
    }
    store
}

/// The port this servent listens on, once it does (0 before): the log lines name it.
static PORT: AtomicU16 = AtomicU16::new(0);

/// `RUST_LOG` decides the level (default `info`), with `servent` and `tp3kv` both naming
/// all of the servent's lines (see [`logging::filter_spec`]); every line names this
/// servent's port
/// (once it listens), so the logs of a whole topology can share one terminal. Lines go
/// through `sink`, which drops them rather than block when stderr is not being read,
/// and reports how many it dropped in a warning of the same format, whatever
/// `RUST_LOG` says.
fn init_logging(sink: &Sink) {
    let format = |buf: &mut env_logger::fmt::Formatter, record: &Record| {
        let stamp = buf.timestamp_millis();
        let (level, args) = (record.level(), record.args());
        match PORT.load(Ordering::Relaxed) {
            0 => writeln!(buf, "{stamp} servent {level:<5} {args}"),
            port => writeln!(buf, "{stamp} servent:{port} {level:<5} {args}"),
        }
    };
    let notices = env_logger::Builder::new()
        .filter_level(LevelFilter::Warn)
        .format(format)
        .target(env_logger::Target::Pipe(Box::new(sink.writer())))
        .build();
    sink.on_dropped(move |n| {
        notices.log(
            &Record::builder()
                .level(Level::Warn)
                .target("servent")
                .args(format_args!("{}", logging::dropped_message(n)))
                .build(),
        )
    });
    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let spec = match spec.trim() {
        "" => "info",
        set => set,
    };
    // A filter that would log nothing is said once, and the default used instead.
    let filters = logging::filter_spec(spec, "servent").unwrap_or_else(|why| {
        let line = format!("servent: warning: RUST_LOG={spec:?} ignored: {why}; logging at info\n");
        sink.push(line.as_bytes());
        "info".to_string()
    });
    env_logger::Builder::new()
        .parse_filters(&filters)
        .format(format)
        .target(env_logger::Target::Pipe(Box::new(sink.writer())))
        .init();
}
