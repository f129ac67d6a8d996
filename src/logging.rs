//! Log output that never blocks the caller, and the `RUST_LOG` filters the binaries
//! accept ([`filter_spec`]).
//!
//! Output that never blocks the caller: the servent's event loop hands each line to
//! a [`Sink`], which copies it into a bounded buffer; a thread of the sink's own writes
//! the buffer out (to stderr) with ordinary blocking writes.
//!
//! When stderr is not being read (a pipe nobody drains, a terminal paused with Ctrl-S),
//! it is that thread that waits in `write(2)`, not the loop. Once the buffer is full,
//! new lines are dropped and counted, and when the thread gets its writes through again
//! it reports the count (by default `N log lines dropped (stderr was not being read)`;
//! [`Sink::on_dropped`] says how).
//!
//! Why a thread: making fd 2 non-blocking (`O_NONBLOCK`) would change the open file
//! description that stderr shares with the shell and the terminal, for them too and
//! after we exit; `MSG_DONTWAIT` works on sockets only; and `poll(2)` reporting POLLOUT
//! promises room for some bytes, not for a whole line, so a blocking write after it can
//! still block. A thread and a buffer need none of that, and the loop's cost per line
//! stays a lock held for a copy.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The most bytes of log lines held at once (waiting, or being written): some thousands
/// of lines, far more than a terminal or a file ever falls behind by.
pub const CAPACITY: usize = 256 * 1024;

/// How to report `n` dropped lines: called on the sink's thread, with no lock held, so
/// it may log through the sink itself.
type Notice = Arc<dyn Fn(u64) + Send + Sync>;

/// A bounded buffer of log lines and the thread that writes it out.
pub struct Sink {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writing thread: lines or a drop count to write, or closing.
    wake: Condvar,
    /// Signalled when the writing thread has written everything and stopped.
    finished: Condvar,
    capacity: usize,
}

#[derive(Default)]
struct State {
    /// Whole lines waiting for the writing thread.
    waiting: Vec<u8>,
    /// Bytes the writing thread took and has not yet written.
    writing: usize,
    /// Lines dropped since the last report.
    unreported: u64,
    /// Lines dropped in all.
    dropped: u64,
    notice: Option<Notice>,
    closing: bool,
    finished: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `line` if it fits; else counts it dropped. Never waits but for the lock,
    /// which the writing thread holds only to swap buffers.
    fn push(&self, line: &[u8]) -> bool {
        let mut state = self.lock();
        let idle = state.waiting.is_empty();
        let held = state.waiting.len() + state.writing;
        let fits = !state.finished && held + line.len() <= self.capacity;
        if fits {
            state.waiting.extend_from_slice(line);
        } else {
            state.unreported += 1;
            state.dropped += 1;
        }
        drop(state);
        if idle {
            self.wake.notify_one();
        }
        fits
    }
}

impl Sink {
    /// Starts the thread that writes to `out`, holding at most `capacity` bytes.
    pub fn start(out: impl Write + Send + 'static, capacity: usize) -> io::Result<Sink> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            finished: Condvar::new(),
            capacity,
        });
        let thread = thread::Builder::new().name("log writer".into()).spawn({
            let shared = Arc::clone(&shared);
            move || write_out(&shared, out)
        })?;
        Ok(Sink {
            shared,
            thread: Some(thread),
        })
    }

    /// A `Write` for a logger (`env_logger`'s `Target::Pipe`): bytes gather until
    /// `flush`, and go to the sink as one line, whole or dropped.
    pub fn writer(&self) -> SinkWriter {
        SinkWriter {
            shared: Arc::clone(&self.shared),
            line: Vec::new(),
        }
    }

    /// Queues `line` (with its `\n`), or drops it if the sink is full. Returns whether
    /// it was queued.
    pub fn push(&self, line: &[u8]) -> bool {
        self.shared.push(line)
    }

    /// Reports dropped lines with `notice(n)` instead of the default plain line.
    pub fn on_dropped(&self, notice: impl Fn(u64) + Send + Sync + 'static) {
        self.shared.lock().notice = Some(Arc::new(notice));
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.shared.lock().dropped
    }

    /// Waits at most `limit` for everything queued to be written, then lets the thread
    /// go (a thread stuck in `write` is left behind, to end with the process). Returns
    /// whether everything was written.
    pub fn finish(mut self, limit: Duration) -> bool {
        self.close();
        let state = self.shared.lock();
        let (state, _) = self
            .shared
            .finished
            .wait_timeout_while(state, limit, |state| !state.finished)
            .unwrap_or_else(PoisonError::into_inner);
        let finished = state.finished;
        drop(state);
        if finished {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
        finished
    }

    fn close(&self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
    }
}

impl Drop for Sink {
    /// Asks the thread to stop once it has written what is queued; does not wait.
    fn drop(&mut self) {
        self.close();
    }
}

/// See [`Sink::writer`].
pub struct SinkWriter {
    shared: Arc<Shared>,
    line: Vec<u8>,
}

impl Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.line.is_empty() {
            self.shared.push(&self.line);
            self.line.clear();
            if self.line.capacity() > 64 * 1024 {
                self.line = Vec::new();
            }
        }
        Ok(())
    }
}

/// The writing thread: takes what is waiting, writes it (blocking, as long as it takes),
/// reports what was dropped meanwhile, and again, until closed and drained.
fn write_out(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::new();
    loop {
        let (dropped, notice) = {
            let mut state = shared.lock();
            while state.waiting.is_empty() && state.unreported == 0 && !state.closing {
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.waiting.is_empty() && state.unreported == 0 {
                state.finished = true;
                state.notice = None; // it may hold a writer, and so this very state
                shared.finished.notify_all();
                return;
            }
            std::mem::swap(&mut batch, &mut state.waiting);
            state.writing = batch.len();
            (std::mem::take(&mut state.unreported), state.notice.clone())
        };
        // An error means stderr is gone or broken: nobody is left to tell.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        shared.lock().writing = 0;
        batch.clear();
        if batch.capacity() > 64 * 1024 {
            batch = Vec::new();
        }
        if dropped > 0 {
            match notice {
                Some(notice) => notice(dropped),
                None => {
                    let _ =
                        writeln!(out, "{}", dropped_message(dropped)).and_then(|()| out.flush());
                }
            }
        }
    }
}

/// `N log lines dropped (stderr was not being read)`.
pub fn dropped_message(n: u64) -> String {
    format!("{n} log lines dropped (stderr was not being read)")
}

/// The crate's name, which its log lines carry as their target (`tp3kv::net::dial`).
const LIBRARY: &str = "tp3kv";

/// The levels a `RUST_LOG` directive may name, for its error message.
const LEVELS: &str = "off, error, warn, info, debug, trace";

/// A `RUST_LOG` spec for `binary`, in which its name and the library's are one: the
/// binary's own lines have its name as their target (`servent`), the library's that of
/// their module (`tp3kv::net`), and a user who writes `servent=debug` means both.
///
/// So a directive for `binary` or `tp3kv` is made one for both; `binary::MODULE` is
/// the library's `tp3kv::MODULE` (the binary has no modules); levels alone and `mio`'s
/// targets are kept as written, and so is a `/text` filter at the end.
///
/// A directive that names no level and none of these targets is refused with why:
/// `env_logger` would ignore a bad level with a warning and read an unknown name as a
/// target to log everything of, which here means logging nothing at all, silently.
pub fn filter_spec(spec: &str, binary: &str) -> Result<String, String> {
    let (directives, text) = match spec.split_once('/') {
        Some((directives, text)) => (directives, Some(text)),
        None => (spec, None),
    };
    let mut out: Vec<String> = Vec::new();
    for directive in directives.split(',').map(str::trim) {
        if directive.is_empty() {
            continue;
        }
        let (name, level) = match directive.split_once('=') {
            Some((name, level)) => (name.trim(), Some(level.trim())),
            None => (directive, None),
        };
        if let Some(level) = level {
            if level.parse::<log::LevelFilter>().is_err() {
                return Err(format!("{level:?} is not a level ({LEVELS})"));
            }
        }
        let ours = |name: &str| {
            [binary, LIBRARY, "mio"]
                .iter()
                .any(|t| name == *t || name.starts_with(&format!("{t}::")))
        };
        if level.is_none() && name.parse::<log::LevelFilter>().is_ok() {
            out.push(name.to_string());
            continue;
        }
        if !ours(name) {
            return Err(format!(
                "{name:?} is neither a level ({LEVELS}) nor a module of the {binary} \
                 ({binary}, {binary}::net, ...)"
            ));
        }
        let with = |target: &str| match level {
            Some(level) => format!("{target}={level}"),
            None => target.to_string(),
        };
        if name == binary || name == LIBRARY {
            out.push(with(binary));
            out.push(with(LIBRARY));
        } else if let Some(module) = name.strip_prefix(&format!("{binary}::")) {
            out.push(with(&format!("{LIBRARY}::{module}")));
        } else {
            out.push(directive.to_string());
        }
    }
    let mut spec = out.join(",");
    if let Some(text) = text {
        spec.push('/');
        spec.push_str(text);
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Instant;

    /// A writer that blocks until the test opens it, and shows what it wrote.
    #[derive(Clone)]
    struct Gate {
        open: Arc<(Mutex<bool>, Condvar)>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Gate {
        fn closed() -> Gate {
            Gate {
                open: Arc::new((Mutex::new(false), Condvar::new())),
                written: Arc::default(),
            }
        }

        fn open(&self) {
            *self.open.0.lock().unwrap() = true;
            self.open.1.notify_all();
        }

        fn text(&self) -> String {
            String::from_utf8(self.written.lock().unwrap().clone()).unwrap()
        }

        fn wait_for(&self, what: &str) -> String {
            let start = Instant::now();
            loop {
                let text = self.text();
                if text.contains(what) {
                    return text;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "no {what:?} in {text:?}"
                );
                thread::sleep(Duration::from_millis(5));
            }
        }
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (open, cond) = &*self.open;
            let _open = cond
                .wait_while(open.lock().unwrap(), |open| !*open)
                .unwrap();
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_binary_and_the_library_are_one_name_in_filters() {
        let cases = [
            ("info", "info"),
            ("debug", "debug"),
            ("servent=debug", "servent=debug,tp3kv=debug"),
            ("tp3kv=debug", "servent=debug,tp3kv=debug"),
            ("servent", "servent,tp3kv"),
            ("warn,servent=debug", "warn,servent=debug,tp3kv=debug"),
            ("servent::net=debug", "tp3kv::net=debug"),
            ("tp3kv::net::dial=debug", "tp3kv::net::dial=debug"),
            ("info, mio=trace", "info,mio=trace"),
            ("servent=debug/KEYREQ", "servent=debug,tp3kv=debug/KEYREQ"),
            ("DEBUG", "DEBUG"),
            ("", ""),
        ];
        for (spec, expected) in cases {
            assert_eq!(
                filter_spec(spec, "servent"),
                Ok(expected.into()),
                "{spec:?}"
            );
        }
    }

    #[test]
    fn filters_that_would_log_nothing_are_refused_with_why() {
        let cases = [
            ("servent=dbug", "\"dbug\" is not a level"),
            ("bogus", "\"bogus\" is neither a level"),
            ("serventx=debug", "\"serventx\" is neither a level"),
            ("info,client=debug", "\"client\" is neither a level"),
        ];
        for (spec, why) in cases {
            let refused = filter_spec(spec, "servent").unwrap_err();
            assert!(refused.starts_with(why), "{spec:?}: {refused}");
        }
    }

    #[test]
    fn lines_are_written_in_order() {
        let gate = Gate::closed();
        gate.open();
        let sink = Sink::start(gate.clone(), 1024).unwrap();
        let mut writer = sink.writer();
        for i in 0..50 {
            write!(writer, "line ").unwrap();
            writeln!(writer, "{i}").unwrap();
            writer.flush().unwrap();
        }
        assert!(sink.finish(Duration::from_secs(5)));
        let expected: String = (0..50).map(|i| format!("line {i}\n")).collect();
        assert_eq!(gate.text(), expected);
    }

    #[test]
    fn a_blocked_writer_costs_dropped_lines_not_a_blocked_caller() {
        let gate = Gate::closed();
        let sink = Sink::start(gate.clone(), 100).unwrap();
        let start = Instant::now();
        let queued = (0..1000)
            .filter(|i| sink.push(format!("line {i:04}\n").as_bytes()))
            .count();
        assert!(start.elapsed() < Duration::from_secs(1));
        // 100 bytes hold 10 lines of 10 bytes; the rest are dropped.
        assert_eq!(queued, 10);
        assert_eq!(sink.dropped(), 990);
        gate.open();
        gate.wait_for("line 0009");
        // Drained: lines go through again.
        assert!(sink.push(b"after\n"));
        let text = gate.wait_for("after");
        // Where the reports fall among the lines, and whether the 990 are counted in
        // one report or several, depends on when the thread took each batch; all come
        // before a line pushed once the ten are out.
        let suffix = dropped_message(0).replacen('0', "", 1);
        let (reports, lines): (Vec<&str>, Vec<&str>) =
            text.lines().partition(|l| l.ends_with(&suffix));
        let mut expected: Vec<String> = (0..10).map(|i| format!("line {i:04}")).collect();
        expected.push("after".into());
        assert_eq!(lines, expected, "{text}");
        let reported: u64 = reports
            .iter()
            .map(|r| r.strip_suffix(&suffix).unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(reported, 990, "{text}");
        assert!(sink.finish(Duration::from_secs(5)));
    }

    #[test]
    fn the_drop_report_can_log_through_the_sink() {
        let gate = Gate::closed();
        let sink = Sink::start(gate.clone(), 20).unwrap();
        let (tx, rx) = mpsc::channel();
        let writer = Mutex::new(sink.writer());
        sink.on_dropped(move |n| {
            tx.send(n).unwrap();
            let mut writer = writer.lock().unwrap();
            writeln!(writer, "WARN {n} dropped").unwrap();
            writer.flush().unwrap();
        });
        for _ in 0..5 {
            sink.push(b"0123456789\n");
        }
        gate.open();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(4));
        assert_eq!(gate.wait_for("WARN"), "0123456789\nWARN 4 dropped\n");
        assert!(sink.finish(Duration::from_secs(5)));
    }

    #[test]
    fn finish_gives_up_on_a_writer_that_never_returns() {
        let gate = Gate::closed();
        let sink = Sink::start(gate.clone(), 1024).unwrap();
        sink.push(b"stuck\n");
        let start = Instant::now();
        assert!(!sink.finish(Duration::from_millis(200)));
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(200) && waited < Duration::from_secs(5));
        gate.open(); // let the left-behind thread end
    }
}
