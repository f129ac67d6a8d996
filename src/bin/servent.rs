//! `servent <port> <keyvalues-file> [ip:port ...]`: one node of the network.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use log::{info, warn, Level, LevelFilter, Log, Record};

use tp3kv::logging::{self, Sink};
use tp3kv::net::{self, budget, Driver, Options};
use tp3kv::servent::{Config, Servent};
use tp3kv::store::{Store, StoreError};
use tp3kv::trace::Tracer;

/// A servent of the TP3 key-value network: holds a key-value file, answers queries
/// from clients and floods them to its neighbours.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Port to listen on (0: any free port; the chosen one is printed).
    port: u16,
    /// Key-value file: one `key value...` per line, `#` comments.
    keyvalues: PathBuf,
    /// Neighbour servents to connect to, as ip:port.
    #[arg(value_parser = net::resolve_v4)]
    neighbours: Vec<SocketAddrV4>,
    /// Address to listen on. `::` listens on IPv6 too, where clients are refused
    /// with a log line: the wire format has no room for an IPv6 reply address.
    #[arg(long, default_value = "0.0.0.0")]
    listen_ip: IpAddr,
    /// The address other hosts reach this servent at, named in topology answers and
    /// in floods for clients on loopback (default: the address each link shows).
    #[arg(long)]
    advertise: Option<Ipv4Addr>,
    /// Seconds a handled query is remembered, to drop its later copies.
    #[arg(long, default_value_t = 60.0)]
    seen_lifetime: f64,
    /// The most queries remembered at once (the oldest are forgotten first).
    #[arg(long, default_value_t = Config::default().seen_capacity)]
    seen_capacity: usize,
    /// Accepted connections open at once; past it new ones are closed at once.
    #[arg(long, default_value_t = Options::default().max_connections)]
    max_connections: usize,
    /// Seconds an accepted connection has to send its ID.
    #[arg(long, default_value_t = Options::default().id_timeout.as_secs_f64())]
    id_timeout: f64,
    /// Bytes a peer may leave unread before it is dropped.
    #[arg(long, default_value_t = Options::default().outbox_limit)]
    max_outbox: usize,
    /// Bytes all peers together may leave unread; past it, the peer with the most
    /// waiting is dropped, so memory stays bounded however many stop reading.
    #[arg(long, default_value_t = Options::default().max_buffered)]
    max_buffered: usize,
    /// Seconds a peer's output may wait with none of it taken before the peer is
    /// dropped.
    #[arg(long, default_value_t = Options::default().stall_timeout.as_secs_f64())]
    stall_timeout: f64,
    /// Seconds an answer connection has to connect and deliver its RESP.
    #[arg(long, default_value_t = Options::default().answer_timeout.as_secs_f64())]
    answer_timeout: f64,
    /// Answer connections open at once; more wait in a queue.
    #[arg(long, default_value_t = Options::default().max_answers)]
    max_answers: usize,
    /// Answer connections open at once to one client's reply address; its other
    /// answers wait their turn, so one client cannot hold up the others.
    #[arg(long, default_value_t = Options::default().answers_per_address)]
    answers_per_address: usize,
    /// Answers that may wait for their turn; past it, the client with the most waiting
    /// loses its oldest.
    #[arg(long, default_value_t = Options::default().answer_queue)]
    answer_queue: usize,
    /// Append a trace to this file: one JSON line per frame received, sent, answered
    /// or dropped. `flood-view` draws the floods in the traces of several servents.
    #[arg(long, value_name = "PATH")]
    trace: Option<PathBuf>,
}

/// How long a servent that is done waits for its last log lines to be written: stderr
/// may be a pipe nobody reads.
const LOG_FLUSH_LIMIT: Duration = Duration::from_secs(2);

fn main() {
    let args = Args::parse();
    // Everything the servent writes to stderr goes through the sink, so no write to
    // stderr ever blocks the loop (or the exit).
    let sink = match Sink::start(io::stderr(), logging::CAPACITY) {
        Ok(sink) => sink,
        Err(e) => {
            let _ = writeln!(io::stderr(), "servent: error: cannot start logging: {e}");
            std::process::exit(1);
        }
    };
    let outcome = run(args, &sink);
    let failed = outcome.is_err();
    let line = match outcome {
        Ok(summary) => match sink.dropped() {
            0 => format!("servent: exiting: {summary}\n"),
            n => format!("servent: exiting: {summary}, log lines dropped {n}\n"),
        },
        Err(e) => format!("servent: error: {e:#}\n"),
    };
    sink.push(line.as_bytes());
    sink.finish(LOG_FLUSH_LIMIT);
    if failed {
        std::process::exit(1);
    }
}

fn seconds(name: &str, value: f64) -> Result<Duration> {
    if !(value.is_finite() && value > 0.0) {
        bail!("bad --{name} {value}: expected a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(value))
}

fn run(args: Args, sink: &Sink) -> Result<String> {
    let config = Config {
        seen_lifetime: seconds("seen-lifetime", args.seen_lifetime)?,
        seen_capacity: args.seen_capacity,
        advertise: args.advertise,
    };
    let mut options = Options {
        max_connections: args.max_connections,
        id_timeout: seconds("id-timeout", args.id_timeout)?,
        outbox_limit: args.max_outbox,
        max_buffered: args.max_buffered,
        stall_timeout: seconds("stall-timeout", args.stall_timeout)?,
        answer_timeout: seconds("answer-timeout", args.answer_timeout)?,
        max_answers: args.max_answers.max(1),
        answers_per_address: args.answers_per_address.max(1),
        answer_queue: args.answer_queue,
        ..Options::default()
    };
    init_logging(sink);
    let store = load(&args.keyvalues)
        .with_context(|| format!("cannot load {}", args.keyvalues.display()))?;
    let listener = net::listen(SocketAddr::new(args.listen_ip, args.port))?;
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
            let tracer = Tracer::create(path, name.to_string())
                .with_context(|| format!("cannot create the trace file {}", path.display()))?;
            Some(tracer)
        }
        None => None,
    };

    // Every connection is a descriptor: make room for the limits, or share the room
    // there is between links and answers.
    let neighbours = args.neighbours.len();
    let wanted = budget::wanted(options.max_connections, options.max_answers, neighbours);
    let limit = net::raise_fd_limit(wanted).context("cannot read the descriptor limit")?;
    let split = budget::split(
        limit,
        options.max_connections,
        options.max_answers,
        neighbours,
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
    info!(
        "{} keys from {} ({} KiB in memory); neighbours: {:?}",
        store.len(),
        args.keyvalues.display(),
        store.heap_bytes().div_ceil(1024),
        args.neighbours
    );
    let servent = Servent::new(store, local.port(), config);
    let mut driver = Driver::new(listener, servent, args.neighbours, options)?;
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

/// `RUST_LOG` decides the level (default `info`); every line names this servent's port
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
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(format)
        .target(env_logger::Target::Pipe(Box::new(sink.writer())))
        .init();
}
