//! The client at a terminal: commands read with line editing and history
//! ([`Terminal`]), the terminal kept quiet between prompts, and the indicator shown
//! while answers are awaited ([`Indicator`]).
//!
//! Everything typed or pasted runs, in order. Three things stood in the way:
//!
//! - `rustyline` reads the terminal through a buffer of its own; without its
//!   `buffer-redux` feature that buffer is dropped at the end of each `readline`, and
//!   with it whatever followed the first line of a paste or of fast typing. The feature
//!   keeps the buffer from one `readline` to the next.
//! - A bracketed paste arrives as one edit, newlines and all: the line it gives is cut
//!   at its newlines here, each piece a command and an entry of the history.
//! - Between prompts (while answers are awaited) the terminal is left in a mode of its
//!   own: no echo and no line editing by the kernel, so what is typed then is neither
//!   shown raw nor rearranged, and stays in the kernel's queue until the next prompt
//!   reads it; signals on, so Ctrl-C reaches the client (which ends the wait, see
//!   [`super::Client::stop_waits_on`]), with `NOFLSH` so it does not throw the typeahead
//!   away. The terminal's own modes come back when the [`Terminal`] is dropped, and
//!   before the process dies of SIGTERM, SIGHUP or SIGQUIT.
//!
//! The prompt and the editor's control codes go to the terminal itself (`/dev/tty`),
//! never to stdout: `client ... | tee out` keeps a clean file. A Ctrl-C during a wait
//! reaches the whole pipeline, as Ctrl-C does; if it ended whoever reads stdout, the
//! client ends too (quietly, status 0) rather than prompt for answers with nowhere to
//! go. At the prompt, Ctrl-C is a key for the editor and reaches nobody else.

use std::collections::VecDeque;
use std::io::{self, BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustyline::config::Behavior;
use rustyline::error::ReadlineError;

use super::LineSource;

const PROMPT: &str = "> ";

/// After a Ctrl-C, how long the pipeline's reader of stdout is given to end.
const READER_GRACE: Duration = Duration::from_secs(2);

/// Commands typed at a terminal: a prompt, line editing, and the session's history
/// (up and down arrows, Ctrl-R), from `rustyline`. Ctrl-C drops the line being typed;
/// Ctrl-D on an empty line quits, as end of input does.
pub struct Terminal {
    editor: Editor,
    /// The rest of a pasted block, one command a line.
    pending: VecDeque<String>,
    /// Set by SIGINT (Ctrl-C while the terminal is quiet): it went to the whole
    /// pipeline, whose other programs may be ending.
    interrupted: Arc<AtomicBool>,
}

enum Editor {
    Rustyline(Box<rustyline::DefaultEditor>),
    /// A terminal `rustyline` cannot drive (`TERM=dumb`), or none to open as
    /// `/dev/tty`: the kernel's line editing, and the prompt on stderr (rustyline would
    /// put it on stdout).
    Plain,
}

impl Terminal {
    /// Sets up line editing on the terminal that stdin is, and makes it quiet between
    /// prompts until the `Terminal` is dropped.
    pub fn new() -> io::Result<Terminal> {
        let interrupted = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGINT, interrupted.clone())?;
        let term = std::env::var("TERM").unwrap_or_default();
        let unsupported = ["dumb", "cons25", "emacs"]
            .iter()
            .any(|t| t.eq_ignore_ascii_case(&term));
        // Without /dev/tty (no controlling terminal), rustyline would prompt on stdout.
        let no_tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .is_err();
        if unsupported || no_tty {
            return Ok(Terminal {
                editor: Editor::Plain,
                pending: VecDeque::new(),
                interrupted,
            });
        }
        let config = rustyline::Config::builder()
            .behavior(Behavior::PreferTerm)
            .build();
        let editor = rustyline::DefaultEditor::with_config(config)
            .map_err(|e| io::Error::other(format!("cannot set up the terminal: {e}")))?;
        modes::quiet_from_now_on(libc::STDIN_FILENO)?;
        Ok(Terminal {
            editor: Editor::Rustyline(Box::new(editor)),
            pending: VecDeque::new(),
            interrupted,
        })
    }

    fn read(&mut self) -> io::Result<Option<String>> {
        let editor = match &mut self.editor {
            Editor::Rustyline(editor) => editor,
            Editor::Plain => {
                let mut err = io::stderr();
                let _ = err.write_all(PROMPT.as_bytes());
                let _ = err.flush();
                let mut line = String::new();
                return match io::stdin().lock().read_line(&mut line)? {
                    0 => Ok(None),
                    _ => Ok(Some(line)),
                };
            }
        };
        modes::leave_to_editor();
        let line = editor.readline(PROMPT);
        modes::take_back();
        match line {
            Ok(line) => Ok(Some(line)),
            Err(ReadlineError::Interrupted) => Ok(Some(String::new())),
            Err(ReadlineError::Eof) => Ok(None),
            Err(ReadlineError::Io(e)) => Err(e),
            Err(e) => Err(io::Error::other(e.to_string())),
        }
    }

    fn remember(&mut self, line: &str) {
        if let Editor::Rustyline(editor) = &mut self.editor {
            let _ = editor.add_history_entry(line);
        }
    }
}

impl LineSource for Terminal {
    fn next_line(&mut self) -> io::Result<Option<String>> {
        if let Some(line) = self.pending.pop_front() {
            return Ok(Some(line));
        }
        // Whoever read stdout has gone (`client ... | head -1`, or a Ctrl-C that ended
        // the pipeline's other programs, given a moment to end): end here, as at the end
        // of input, rather than prompt for commands whose answers have nowhere to go.
        let grace = match self.interrupted.swap(false, Ordering::SeqCst) {
            true => READER_GRACE,
            false => Duration::ZERO,
        };
        if stdout_reader_gone(grace) {
            return Ok(None);
        }
        let Some(text) = self.read()? else {
            return Ok(None);
        };
        let mut lines = commands(&text);
        for line in &lines {
            self.remember(line);
        }
        let first = lines.pop_front().unwrap_or_default();
        self.pending = lines;
        Ok(Some(first))
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Editor::Rustyline(_) = self.editor {
            modes::restore();
        }
    }
}

/// The commands in what the editor gave: one line, or a pasted block of them (blank
/// lines left out).
fn commands(text: &str) -> VecDeque<String> {
    text.split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether stdout is a pipe nobody reads any more, or becomes one within `wait`.
fn stdout_reader_gone(wait: Duration) -> bool {
    // SAFETY: fstat only writes the struct it is given.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    let is_pipe = unsafe { libc::fstat(libc::STDOUT_FILENO, &mut stat) } == 0
        && stat.st_mode & libc::S_IFMT == libc::S_IFIFO;
    if !is_pipe {
        return false;
    }
    let deadline = std::time::Instant::now() + wait;
    loop {
        let mut fd = libc::pollfd {
            fd: libc::STDOUT_FILENO,
            events: 0,
            revents: 0,
        };
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        // SAFETY: poll reads and writes the one pollfd passed to it.
        let ready = unsafe { libc::poll(&mut fd, 1, left.as_millis() as libc::c_int) };
        if ready == 1 {
            // POLLERR: a pipe without readers. POLLHUP, POLLNVAL: not a pipe to wait on.
            return fd.revents & libc::POLLERR != 0;
        }
        let interrupted =
            ready < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted;
        if !interrupted || left.is_zero() {
            return false;
        }
    }
}

/// A one-line notice on a terminal (stderr) while answers are awaited, erased when
/// the wait ends or before any other line is printed, so it never mixes with them.
///
/// When stdout is not the terminal, answers may still reach the screen through another
/// program (`client ... | tee out`), at a moment the client does not know: then the
/// notice, once erased for an answer, stays erased until the next wait.
pub struct Indicator {
    out: Box<dyn Write + Send>,
    text: String,
    /// Whether it may be drawn again after a line (stdout is the terminal).
    redraw: bool,
    /// Drawn now.
    shown: bool,
    /// May be drawn (a wait is on, and nothing forbids it).
    active: bool,
}

/// Whether some indicator is on the screen: a fatal signal erases it.
static SHOWN: AtomicBool = AtomicBool::new(false);
const ERASE: &str = "\r\x1b[K";

impl Indicator {
    /// `text` must fit on one line of the terminal, without a newline. `redraw`: the
    /// client's stdout is this terminal, so lines printed during a wait are all the
    /// client's, and the notice may come back after each.
    pub fn new(out: Box<dyn Write + Send>, text: impl Into<String>, redraw: bool) -> Indicator {
        Indicator {
            out,
            text: text.into(),
            redraw,
            shown: false,
            active: false,
        }
    }

    /// A wait begins: the notice appears at the start of the cursor's line.
    pub fn start(&mut self) {
        self.active = true;
        self.resume();
    }

    /// Erases the notice before a line is printed.
    pub fn pause(&mut self) {
        if self.shown {
            self.shown = false;
            SHOWN.store(false, Ordering::SeqCst);
            let _ = write!(self.out, "{ERASE}");
            let _ = self.out.flush();
        }
        self.active &= self.redraw;
    }

    /// Draws the notice again after the lines printed, if it may.
    pub fn resume(&mut self) {
        if self.active && !self.shown {
            self.shown = true;
            SHOWN.store(true, Ordering::SeqCst);
            let _ = write!(self.out, "\r{}", self.text);
            let _ = self.out.flush();
        }
    }

    /// The wait is over: the notice goes, leaving the cursor at the start of its line.
    pub fn stop(&mut self) {
        self.pause();
        self.active = false;
    }
}

impl Drop for Indicator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The terminal's modes: its own, saved once, and the quiet one the client keeps
/// between prompts. Global, because signal handlers must reach them.
mod modes {
    use super::*;

    struct Saved {
        fd: i32,
        original: libc::termios,
        quiet: libc::termios,
    }

    static SAVED: OnceLock<Saved> = OnceLock::new();
    /// The client, not the line editor, has the terminal: it should be quiet.
    static QUIET: AtomicBool = AtomicBool::new(false);

    fn set(fd: i32, modes: &libc::termios) {
        // SAFETY: tcsetattr only reads the struct; it is async-signal-safe, so this
        // runs in signal handlers too. TCSADRAIN keeps the typeahead.
        unsafe { libc::tcsetattr(fd, libc::TCSADRAIN, modes) };
    }

    /// Saves the terminal's modes, makes it quiet, and sees that its modes come back
    /// even if a signal ends the process.
    pub fn quiet_from_now_on(fd: i32) -> io::Result<()> {
        // SAFETY: tcgetattr only writes the struct it is given.
        let mut original: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(fd, &mut original) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut quiet = original;
        // No echo, no line editing by the kernel: what is typed waits, as typed, for
        // the line editor. No CR-to-NL, flow control or 8th-bit stripping, as in the
        // editor's own mode, so the bytes it reads later are those it would have read.
        quiet.c_lflag &= !(libc::ECHO | libc::ICANON | libc::IEXTEN);
        quiet.c_lflag |= libc::ISIG | libc::NOFLSH;
        quiet.c_iflag &= !(libc::ICRNL | libc::IXON | libc::ISTRIP | libc::INPCK | libc::BRKINT);
        let first = SAVED.set(Saved {
            fd,
            original,
            quiet,
        });
        if first.is_ok() {
            on_fatal_signals()?;
        }
        take_back();
        Ok(())
    }

    fn on_fatal_signals() -> io::Result<()> {
        use signal_hook::consts::{SIGCONT, SIGHUP, SIGQUIT, SIGTERM};
        for signal in [SIGTERM, SIGHUP, SIGQUIT] {
            if crate::net::sys::is_ignored(signal)? {
                continue;
            }
            // SAFETY: the action only calls tcsetattr, write and signal-hook's
            // default-action emulation, all async-signal-safe.
            unsafe {
                signal_hook::low_level::register(signal, move || {
                    restore();
                    if SHOWN.load(Ordering::SeqCst) {
                        // SAFETY: write(2) is async-signal-safe; the buffer is static.
                        libc::write(libc::STDERR_FILENO, ERASE.as_ptr().cast(), ERASE.len());
                    }
                    let _ = signal_hook::low_level::emulate_default_handler(signal);
                })?;
            }
        }
        // Back in the foreground after Ctrl-Z: the shell has set its own modes.
        // SAFETY: as above.
        unsafe {
            signal_hook::low_level::register(SIGCONT, || {
                if QUIET.load(Ordering::SeqCst) {
                    if let Some(saved) = SAVED.get() {
                        set(saved.fd, &saved.quiet);
                    }
                }
            })?;
        }
        Ok(())
    }

    /// The line editor is about to read: it sets its own mode, and puts back the one it
    /// found (the quiet one) when it returns.
    pub fn leave_to_editor() {
        QUIET.store(false, Ordering::SeqCst);
    }

    /// Quiet again, until the next prompt.
    pub fn take_back() {
        if let Some(saved) = SAVED.get() {
            QUIET.store(true, Ordering::SeqCst);
            set(saved.fd, &saved.quiet);
        }
    }

    /// The terminal's own modes, as they were before the client.
    pub fn restore() {
        QUIET.store(false, Ordering::SeqCst);
        if let Some(saved) = SAVED.get() {
            set(saved.fd, &saved.original);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pasted_block_is_a_command_a_line() {
        assert_eq!(commands("? a"), ["? a"]);
        assert_eq!(commands(""), Vec::<String>::new());
        assert_eq!(
            commands("? ssh\n? rtmp\r\n\n  \nT\n"),
            ["? ssh", "? rtmp", "T"]
        );
    }
}
