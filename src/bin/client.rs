//! `client <ip:port>` or `client <local-port> <ip:port>`: the REPL that asks a servent.

use std::io::{self, IsTerminal, Write};
use std::net::SocketAddrV4;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;

use tp3kv::client::{self, Client, LineSource, Lines};
use tp3kv::net;

/// Client of the TP3 key-value network. Commands: `? key` looks a key up, `T` asks for
/// the reachable topology, `Q` (or end of input) quits. Answers print as
/// `VALUE IP:PORT`.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The servent, as ip:port; or, as in the assignment, `<local-port> <ip:port>` with
    /// the port to receive answers on first.
    #[arg(num_args = 1..=2, value_names = ["[LOCAL_PORT] IP:PORT"], required = true)]
    args: Vec<String>,
    /// Seconds to wait for answers after a command or after the last answer.
    #[arg(long, default_value_t = client::DEFAULT_TIMEOUT.as_secs_f64())]
    timeout: f64,
    /// After each `T`, also draw its answers as the tree of the overlay they reached.
    #[arg(long)]
    tree: bool,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        let _ = writeln!(io::stderr(), "client: error: {e:#}");
        std::process::exit(1);
    }
}

fn parse_target(args: &[String]) -> Result<(u16, SocketAddrV4)> {
    let (port, servent) = match args {
        [servent] => (0, servent),
        [port, servent] => match port.parse::<u16>() {
            Ok(port) => (port, servent),
            Err(_) => bail!("bad local port {port:?}: expected a number from 0 to 65535"),
        },
        _ => bail!("expected <ip:port> or <local-port> <ip:port>"),
    };
    Ok((port, net::resolve_v4(servent).map_err(anyhow::Error::msg)?))
}

fn run(args: Args) -> Result<()> {
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        bail!(
            "bad --timeout {}: expected a positive number of seconds",
            args.timeout
        );
    }
    let (reply_port, servent) = parse_target(&args.args)?;
    let timeout = Duration::from_secs_f64(args.timeout);
    let mut client = Client::connect(servent, reply_port, timeout, client::random_seq())?;
    client.draw_topology_trees(args.tree);
    let interactive = io::stdin().is_terminal();
    let mut out = Output::new(io::stdout());
    let mut err = Notes(io::stderr());
    if interactive {
        let _ = writeln!(
            err,
            "connected to {servent}; answers come to port {}. `? key`, `T`, `Q`.",
            client.reply_port()
        );
    }
    let outcome = if interactive {
        client.run(&mut Terminal::new()?, &mut out, &mut err)
    } else {
        client.run(&mut Lines(io::stdin().lock()), &mut out, &mut err)
    };
    match outcome {
        // Whoever read the answers has had enough (`client ... | head -1`): stop, as
        // Unix tools do, quietly.
        Err(_) if out.closed => Ok(()),
        outcome => Ok(outcome?),
    }
}

/// The answers' way out, which remembers whether its reader went away (EPIPE).
struct Output<W> {
    inner: W,
    closed: bool,
}

impl<W: Write> Output<W> {
    fn new(inner: W) -> Output<W> {
        Output {
            inner,
            closed: false,
        }
    }

    fn check<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        if matches!(&result, Err(e) if e.kind() == io::ErrorKind::BrokenPipe) {
            self.closed = true;
        }
        result
    }
}

impl<W: Write> Write for Output<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = self.inner.write(buf);
        self.check(result)
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.inner.flush();
        self.check(result)
    }
}

/// Warnings and notes, on a best-effort basis: if stderr is gone, answers still go to
/// stdout.
struct Notes<W>(W);

impl<W: Write> Write for Notes<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = self.0.write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

/// Commands typed at a terminal: a prompt, line editing, and the session's history
/// (up and down arrows, Ctrl-R), from `rustyline`. Ctrl-C drops the line being typed;
/// Ctrl-D on an empty line quits, as end of input does. The prompt and the echo go to
/// the terminal itself, not to stdout: with `client ... | head -1` at a terminal, the
/// answers go down the pipe and the prompt stays on the screen.
struct Terminal(rustyline::DefaultEditor);

impl Terminal {
    fn new() -> Result<Terminal> {
        let config = rustyline::Config::builder()
            .behavior(rustyline::config::Behavior::PreferTerm)
            .build();
        let editor =
            rustyline::DefaultEditor::with_config(config).context("cannot set up the terminal")?;
        Ok(Terminal(editor))
    }
}

impl LineSource for Terminal {
    fn next_line(&mut self) -> io::Result<Option<String>> {
        use rustyline::error::ReadlineError;
        match self.0.readline("> ") {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = self.0.add_history_entry(line.as_str());
                }
                Ok(Some(line))
            }
            Err(ReadlineError::Interrupted) => Ok(Some(String::new())),
            Err(ReadlineError::Eof) => Ok(None),
            Err(ReadlineError::Io(e)) => Err(e),
            Err(e) => Err(io::Error::other(e.to_string())),
        }
    }
}
