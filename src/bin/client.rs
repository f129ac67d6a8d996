//! `client <ip:port>` or `client <local-port> <ip:port>`: the REPL that asks a servent.

use std::io::{self, IsTerminal, Write};
use std::net::SocketAddrV4;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, ValueEnum};

use tp3kv::cli::{self, Seconds};
use tp3kv::client::terminal::Terminal;
use tp3kv::client::{self, Client, Indicator, Lang, Lines};
use tp3kv::net;

/// Asks a servent of the key-value network for keys and for the network's topology.
///
/// Reads commands, one a line, from the terminal (with line editing and history) or
/// from a pipe or file, sends each to the servent, and prints the answers that servents
/// send back, as `VALUE IP:PORT`, until no answer has come for `--timeout` seconds.
#[derive(Parser, Debug)]
#[command(
    name = "client",
    version,
    about,
    allow_missing_positional = true,
    after_help = "\
Commands, one a line (typed, pasted or piped in; each runs in turn):
  ? KEY   look KEY up: every servent that holds it answers VALUE IP:PORT
  T       ask for the topology: every servent reached answers with the path
          (servents' ip:port, in order) the query took to reach it
  Q       quit; so does the end of input (Ctrl-D at a terminal)
  help    list these commands

Answers go to stdout, one a line; notes (no answer received, unknown commands) to
stderr, in Portuguese with --lang pt or a Portuguese locale (LANG=pt_BR.UTF-8).
Control characters in values (tabs aside) are shown escaped (\\n, \\0, \\u{1b}),
and a backslash as \\\\; --raw prints the bytes as they came.

At a terminal, every line typed or pasted runs in turn (a bracketed paste waits for
Enter); Ctrl-C stops waiting for answers, or drops the line being typed. The prompt
and the editor's control codes go to the terminal, never to stdout.

Exit status: 0 on success, 1 on a runtime error, 2 on a usage error."
)]
struct Args {
    /// The port to receive answers on (as in the assignment; default: any free port).
    #[arg(value_name = "LOCAL_PORT")]
    local_port: Option<String>,
    /// The servent to ask, as ip:port (a host name resolves to its IPv4 address).
    #[arg(value_name = "IP:PORT")]
    servent: String,
    /// Seconds to wait for answers after a command or after the last answer.
    #[arg(long, value_name = "SECONDS", default_value_t = Seconds(client::DEFAULT_TIMEOUT))]
    timeout: Seconds,
    /// After each `T`, also draw its answers as the tree of the overlay they reached.
    #[arg(long)]
    tree: bool,
    /// Print values as the bytes came, control characters included, not escaped.
    #[arg(long)]
    raw: bool,
    /// The language of the client's notes: `pt` says the assignment's own
    /// "Nenhuma resposta recebida", "Mensagem incorreta recebida de IP:PORTO" and
    /// "Comando desconhecido". Default: the first of LC_ALL, LC_MESSAGES, LANG that
    /// is set: pt if it starts with `pt`, else en.
    #[arg(long, value_name = "LANG", value_enum)]
    lang: Option<LangArg>,
}

/// `--lang`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LangArg {
    /// English
    En,
    /// Portuguese, the assignment's messages
    Pt,
}

impl From<LangArg> for Lang {
    fn from(arg: LangArg) -> Lang {
        match arg {
            LangArg::En => Lang::En,
            LangArg::Pt => Lang::Pt,
        }
    }
}

/// A mistake in the command line: exit status 2.
struct Usage(String);

fn main() {
    let args: Args = cli::parse("client");
    let status = match check(&args) {
        Err(Usage(why)) => {
            let _ = writeln!(io::stderr(), "client: error: {why}");
            2
        }
        Ok((reply_port, servent, timeout)) => match run(&args, reply_port, servent, timeout) {
            Ok(()) => 0,
            Err(e) => {
                let _ = writeln!(io::stderr(), "client: error: {e:#}");
                1
            }
        },
    };
    std::process::exit(status);
}

/// The command line's values, checked.
fn check(args: &Args) -> Result<(u16, SocketAddrV4, Duration), Usage> {
    let servent = &args.servent;
    let port = match &args.local_port {
        None => 0,
        Some(port) => match cli::parse_port(port, "local port", 0) {
            Ok(port) => port,
            // Swapped, or two servents: say which comes first.
            Err(why) if port.contains(':') => {
                return Err(Usage(format!(
                    "{why}; with two arguments the local port comes first, and there is \
                     one servent: client [LOCAL_PORT] IP:PORT"
                )))
            }
            Err(why) => return Err(Usage(why)),
        },
    };
    let servent = net::resolve_v4(servent).map_err(Usage)?;
    Ok((port, servent, args.timeout.0))
}

fn run(args: &Args, reply_port: u16, servent: SocketAddrV4, timeout: Duration) -> Result<()> {
    let mut client = Client::connect(servent, reply_port, timeout, client::random_seq())?;
    client.draw_topology_trees(args.tree);
    client.print_raw(args.raw);
    let lang = args.lang.map_or_else(Lang::from_env, Lang::from);
    client.set_lang(lang);
    let interactive = io::stdin().is_terminal();
    let mut out = Output::new(io::stdout());
    let mut err = Notes(io::stderr());
    if interactive {
        // Ctrl-C ends a wait; at the prompt the line editor sees it as a key.
        client.stop_waits_on(&[signal_hook::consts::SIGINT])?;
    }
    if io::stderr().is_terminal() {
        let text = lang.waiting(interactive);
        let redraw = io::stdout().is_terminal();
        client.show_waiting(Indicator::new(Box::new(io::stderr()), text, redraw));
    }
    let outcome = if interactive {
        let greeting = lang.greeting(servent.into(), client.reply_port());
        let _ = writeln!(err, "{greeting}");
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
