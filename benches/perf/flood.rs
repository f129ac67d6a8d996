//! Flood forwarding: one upstream neighbour pours distinct KEYFLOODs for a key nobody
//! holds into one servent, which forwards each, once, to its two other neighbours. The
//! same bytes through the raw relay give the baseline. The servent's memory is read
//! before (idle) and after those queries.
//!
//! The upstream is this process, writing a prepared buffer of `PERF_FLOODS` frames as
//! fast as the servent takes them; the downstream neighbours are two sink threads that
//! accept the servent's connection, check its `ID(0)`, then check every frame as it
//! streams by (type, TTL one less, seq in order, same body) without allocating, and
//! note when the last one arrived. Frames/s is frames sent ÷ (last frame at the slower
//! sink − first byte written): every frame crossed the servent twice (one copy per sink).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener as StdListener, TcpStream as StdStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tp3kv::protocol::{Flood, Frame, Text};

use crate::loadgen::KeySet;
use crate::procs::{share, stop_all, Process, TempDir};
use crate::{Figure, Report, Settings};

/// A key that no servent holds, so no flood is answered and each one travels on.
const NOBODY_HOLDS: &str = "no-servent-holds-this-key";
/// Longest wait for a sink's connection, or for bytes on it.
const STALL: Duration = Duration::from_secs(30);
const SINKS: usize = 2;

pub fn run(settings: &Settings, dir: &TempDir, report: &mut Report) -> Result<(), String> {
    let floods = settings.floods;
    let stream = FloodStream::new(floods);
    let store = dir.write("flood-keys.kv", &KeySet::new(settings.keys).kv_file())?;
    println!(
        "flood: {floods} distinct KEYFLOODs of {} bytes from one neighbour, forwarded to two",
        stream.frame_len
    );
    println!(
        "{:>9} {:>12} {:>10} {:>12} {:>11} {:>9}",
        "", "frames/s in", "MB/s in", "frames/s out", "CPU server", "CPU bench"
    );

    // Rounds of baseline then servent, each servent fresh (the same seqs again would
    // be duplicates to it); the figure is the median round, since one pour lasts well
    // under a second and the machine's other work shows in any single one.
    let mut rounds = Vec::new();
    let mut memory = (None, None);
    let mut servents = Vec::new();
    for round in 0..settings.flood_rounds {
        // The baseline: the same bytes through the raw relay (it leaves the TTL alone).
        let sinks = Sinks::start(floods, &stream, 3)?;
        let targets: Vec<String> = sinks.addrs.iter().map(|a| a.to_string()).collect();
        let relay = Process::baseline("flood-relay", &dir.0, "relay", &targets)?;
        let base = stream.pour(relay.addr, sinks, &relay)?;
        base.print("baseline", &stream);
        drop(relay);

        let sinks = Sinks::start(floods, &stream, 2)?;
        let servent = Process::servent(
            &format!("flood-servent-{round}"),
            &dir.0,
            &store,
            &sinks.addrs,
            &settings.servent_args,
        )?;
        sinks.wait_connected()?;
        // Idle: started, its store loaded, its two links up, nothing else yet.
        let rss_idle = servent.rss_kib();
        let ours = stream.pour(servent.addr, sinks, &servent)?;
        ours.print("servent", &stream);
        if round == 0 {
            memory = (rss_idle, servent.rss_kib());
        }
        println!(
            "{:>9} {:>12.2}",
            "ratio",
            ours.frames_per_sec / base.frames_per_sec
        );
        rounds.push((ours.frames_per_sec / base.frames_per_sec, ours, base));
        servents.push(servent);
    }
    println!();
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (_, ours, base) = &rounds[rounds.len() / 2];
    report.figures.push(Figure::ratio(
        format!("flood frames/s forwarded (median of {})", rounds.len()),
        ours.frames_per_sec,
        base.frames_per_sec,
        "/s",
        Some((0.25, true)),
    ));
    let (rss_idle, rss_after) = memory;
    let mib = |kib: Option<u64>| kib.map(|k| k as f64 / 1024.0);
    match (mib(rss_idle), mib(rss_after)) {
        (Some(idle), Some(after)) => {
            report
                .figures
                .push(Figure::absolute("RSS idle".into(), idle, " MiB", Some(4.0)));
            report.figures.push(Figure::absolute(
                format!("RSS after {floods} queries"),
                after,
                " MiB",
                Some(64.0),
            ));
        }
        _ => report
            .problems
            .push("flood: cannot read the servent's RSS from /proc".into()),
    }
    report.problems.extend(stop_all(servents)?);
    Ok(())
}

/// The upstream's bytes: `ID(0)`, then frame `i` = KEYFLOOD(ttl 3, seq i) for every `i`.
struct FloodStream {
    bytes: Vec<u8>,
    frames: usize,
    frame_len: usize,
    /// Frame 0 as the sinks should see it, but for the TTL and seq.
    template: Vec<u8>,
}

impl FloodStream {
    fn new(frames: usize) -> FloodStream {
        let frame = |seq: u32| {
            Frame::KeyFlood(Flood {
                ttl: 3,
                seq,
                // Nobody answers (the key is nowhere), so no connection goes to this address.
                client: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9),
                text: Text::try_from(NOBODY_HOLDS).expect("a short key"),
            })
        };
        let template = frame(0).to_bytes();
        let mut bytes = Frame::Id { port: 0 }.to_bytes();
        bytes.reserve(frames * template.len());
        for seq in 0..frames {
            frame(seq as u32).encode(&mut bytes);
        }
        FloodStream {
            bytes,
            frames,
            frame_len: template.len(),
            template,
        }
    }

    /// Connects to `entry` as a neighbour and writes every frame; returns once both
    /// sinks have them all.
    fn pour(&self, entry: SocketAddrV4, sinks: Sinks, server: &Process) -> Result<Poured, String> {
        let fail = |e: io::Error| format!("upstream to {entry}: {e}");
        let mut upstream = StdStream::connect(entry).map_err(fail)?;
        upstream.set_nodelay(true).map_err(fail)?;
        let cpu0 = (server.cpu_time(), crate::procs::own_cpu_time());
        let start = Instant::now();
        upstream.write_all(&self.bytes).map_err(fail)?;
        let finished = sinks.finish()?;
        let elapsed = finished.duration_since(start);
        let cpu = (
            share(server.cpu_time().saturating_sub(cpu0.0), elapsed),
            share(crate::procs::own_cpu_time().saturating_sub(cpu0.1), elapsed),
        );
        Ok(Poured {
            frames_per_sec: self.frames as f64 / elapsed.as_secs_f64(),
            cpu,
        })
    }
}

struct Poured {
    frames_per_sec: f64,
    /// CPU share (1.0 = one core) of the server and of this bench (writer and sinks).
    cpu: (f64, f64),
}

impl Poured {
    fn print(&self, label: &str, stream: &FloodStream) {
        println!(
            "{:>9} {:>12.0} {:>10.1} {:>12.0} {:>10.0}% {:>8.0}%",
            label,
            self.frames_per_sec,
            self.frames_per_sec * stream.frame_len as f64 / 1e6,
            self.frames_per_sec * SINKS as f64,
            self.cpu.0 * 100.0,
            self.cpu.1 * 100.0
        );
    }
}

/// The downstream neighbours: a listener and a checking thread each.
struct Sinks {
    addrs: Vec<SocketAddrV4>,
    connected: mpsc::Receiver<()>,
    threads: Vec<JoinHandle<Result<Instant, String>>>,
}

impl Sinks {
    fn start(frames: usize, stream: &FloodStream, ttl: u16) -> Result<Sinks, String> {
        let (tx, connected) = mpsc::channel();
        let mut addrs = Vec::new();
        let mut threads = Vec::new();
        for i in 0..SINKS {
            let listener = StdListener::bind("127.0.0.1:0").map_err(|e| format!("sink: {e}"))?;
            match listener.local_addr() {
                Ok(std::net::SocketAddr::V4(a)) => addrs.push(a),
                other => return Err(format!("sink address: {other:?}")),
            }
            let mut template = stream.template.clone();
            template[2..4].copy_from_slice(&ttl.to_be_bytes());
            let tx = tx.clone();
            threads.push(std::thread::spawn(move || {
                sink(listener, frames, template, tx).map_err(|e| format!("sink {i}: {e}"))
            }));
        }
        Ok(Sinks {
            addrs,
            connected,
            threads,
        })
    }

    /// Waits until every sink has its connection and the `ID(0)` on it.
    fn wait_connected(&self) -> Result<(), String> {
        for _ in 0..SINKS {
            self.connected
                .recv_timeout(STALL)
                .map_err(|_| "a sink got no neighbour connection".to_string())?;
        }
        Ok(())
    }

    /// When the last frame reached the slower sink.
    fn finish(self) -> Result<Instant, String> {
        let mut last = None;
        for thread in self.threads {
            let at = thread
                .join()
                .map_err(|_| "a sink thread panicked".to_string())??;
            last = last.max(Some(at));
        }
        last.ok_or_else(|| "no sinks".into())
    }
}

/// Accepts one neighbour connection, checks its `ID(0)`, then checks `frames` frames
/// shaped like `template` with seq 0, 1, 2, … Returns when the last one arrived.
fn sink(
    listener: StdListener,
    frames: usize,
    template: Vec<u8>,
    connected: mpsc::Sender<()>,
) -> Result<Instant, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + STALL;
    let mut conn = loop {
        match listener.accept() {
            Ok((conn, _)) => break conn,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    };
    conn.set_nonblocking(false).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(STALL))
        .map_err(|e| e.to_string())?;
    let mut id = [0u8; 4];
    conn.read_exact(&mut id)
        .map_err(|e| format!("reading ID: {e}"))?;
    let expected_id = Frame::Id { port: 0 }.to_bytes();
    if id[..] != expected_id[..] {
        return Err(format!("expected ID(0) first, got {id:02x?}"));
    }
    let _ = connected.send(());

    let len = template.len();
    let mut buf = vec![0u8; 256 * 1024];
    let mut carry = Vec::with_capacity(len);
    let mut seen = 0usize;
    let check = |frame: &[u8], seq: usize| -> Result<(), String> {
        let ok = frame[..4] == template[..4]
            && frame[4..8] == (seq as u32).to_be_bytes()
            && frame[8..] == template[8..];
        match ok {
            true => Ok(()),
            false => Err(format!(
                "frame {seq}: expected {:02x?}… with seq {seq}, got {frame:02x?}",
                &template[..8]
            )),
        }
    };
    while seen < frames {
        let n = match conn.read(&mut buf) {
            Ok(0) => return Err(format!("closed after {seen} of {frames} frames")),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("after {seen} of {frames} frames: {e}")),
        };
        let mut chunk = &buf[..n];
        if !carry.is_empty() {
            let take = (len - carry.len()).min(chunk.len());
            carry.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if carry.len() < len {
                continue;
            }
            check(&carry, seen)?;
            seen += 1;
            carry.clear();
        }
        let whole = chunk.len() / len;
        for frame in chunk.chunks_exact(len) {
            check(frame, seen)?;
            seen += 1;
        }
        carry.extend_from_slice(&chunk[whole * len..]);
        if seen > frames {
            return Err(format!("more than the {frames} frames sent"));
        }
    }
    let done = Instant::now();
    if !carry.is_empty() {
        return Err(format!("{} bytes after the last frame", carry.len()));
    }
    Ok(done)
}
