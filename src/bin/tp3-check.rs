//! `tp3-check servent|client [OPTIONS] -- COMMAND [ARGS...]`: the conformance checker.
//!
//! Exit status: 0 when no case failed, 1 when one did (or the checker could not run),
//! 2 on a usage error.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};

use tp3kv::check::{self, report, target::Template, Ctx, Role, Timing};
use tp3kv::cli::{self, Seconds};

const AFTER_HELP: &str = "\
Examples:
  tp3-check servent -- ./servent {port} {kv} {neighbours}
  tp3-check servent -- python3 my_servent.py {port} {kv} {neighbours}
  tp3-check client -- ./client {port} {servent}

Placeholders in the command: {port} a free port for it (servent: where it must listen;
client: its reply port), {kv} a key-value file the checker writes, {neighbours} zero or
more ip:port arguments (neighbours the checker plays), {servent} the ip:port of the
servent the checker plays. Each case starts the command afresh and kills it after.

Exit status: 0 on success, 1 on a runtime error, 2 on a usage error. Success means
no case failed; 1 also when a case failed.";

/// A conformance checker for servents and clients of the TP3 key-value protocol.
///
/// It starts the implementation under test itself, plays every other part byte by
/// byte, and runs a catalogue of cases citing docs/PROTOCOL.md. A failure says what
/// was expected and what came, in hex, with a diagnosis where one can be made.
#[derive(Parser, Debug)]
#[command(name = "tp3-check", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    role: RoleCmd,
}

#[derive(Subcommand, Debug)]
enum RoleCmd {
    /// Check a servent: `tp3-check servent -- COMMAND {port} {kv} {neighbours}`.
    #[command(after_help = AFTER_HELP)]
    Servent(Opts),
    /// Check a client: `tp3-check client -- COMMAND {port} {servent}`.
    #[command(after_help = AFTER_HELP)]
    Client(Opts),
}

#[derive(Args, Debug)]
struct Opts {
    /// Run only this case, or every case whose id starts with it (repeatable).
    #[arg(long = "case", value_name = "ID")]
    cases: Vec<String>,
    /// List the cases (id, section of docs/PROTOCOL.md, title) and exit.
    #[arg(long)]
    list: bool,
    /// Also write the results as JUnit XML to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Cases run at once (each with its own instances).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
    /// Seconds to wait for something that must come (a frame, an answer).
    #[arg(long, value_name = "SECONDS", default_value_t = Seconds(Timing::default().timeout))]
    timeout: Seconds,
    /// Seconds of silence that prove something did not come.
    #[arg(long, value_name = "SECONDS", default_value_t = Seconds(Timing::default().quiet))]
    quiet: Seconds,
    /// Seconds the implementation has to accept connections once started.
    #[arg(long, value_name = "SECONDS", default_value_t = Seconds(Timing::default().start))]
    start_timeout: Seconds,
    /// Print each case's verdict as it ends, on stderr.
    #[arg(long, short)]
    verbose: bool,
    /// The implementation's command line, with its placeholders.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

fn main() {
    let args: Cli = cli::parse("tp3-check");
    let (role, opts) = match args.role {
        RoleCmd::Servent(o) => (Role::Servent, o),
        RoleCmd::Client(o) => (Role::Client, o),
    };
    let usage = |what: &str| -> ! { cli::fail("tp3-check", cli::USAGE_ERROR, what) };
    let cases = check::select(check::catalogue(role), &opts.cases).unwrap_or_else(|e| usage(&e));
    if opts.list {
        print(&report::list(&cases));
        return;
    }
    let Some(template) = Template::new(&opts.command) else {
        usage(&format!(
            "no command to check: give it after --, e.g. `tp3-check {} -- {}`",
            role.name(),
            match role {
                Role::Servent => "./servent {port} {kv} {neighbours}",
                Role::Client => "./client {port} {servent}",
            }
        ))
    };
    let needed = match role {
        Role::Servent => "{port}",
        Role::Client => "{servent}",
    };
    if !template.has(needed) {
        usage(&format!(
            "the command has no {needed}: the checker could not reach it (see --help)"
        ));
    }
    if let Err(why) = template.startable() {
        cli::fail("tp3-check", cli::RUNTIME_ERROR, &why);
    }
    let ctx = Ctx {
        template,
        timing: Timing {
            timeout: opts.timeout.0,
            quiet: opts.quiet.0,
            start: opts.start_timeout.0,
        },
    };
    print(&format!(
        "tp3-check {}: {} case{} against `{}`\n\n",
        role.name(),
        cases.len(),
        if cases.len() == 1 { "" } else { "s" },
        ctx.template.raw()
    ));
    let started = Instant::now();
    let verbose = opts.verbose;
    let outcomes = check::run(&cases, &ctx, usize::from(opts.jobs), &|o| {
        if verbose {
            eprintln!("{} {} ({:.1} s)", o.verdict.word(), o.id, o.seconds);
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    print(&report::table(&outcomes, seconds));
    let command = ctx.template.raw();
    if let Some(path) = &opts.junit {
        write_file(path, &report::junit(role, &outcomes, seconds));
    }
    if let Some(path) = &opts.json {
        let run = report::Run {
            tool: "tp3-check",
            version: env!("CARGO_PKG_VERSION"),
            role,
            command: &command,
            totals: report::Totals::of(&outcomes),
            seconds,
            cases: &outcomes,
        };
        let text = serde_json::to_string_pretty(&run).expect("the report serializes");
        write_file(path, &(text + "\n"));
    }
    if report::Totals::of(&outcomes).fail > 0 {
        std::process::exit(cli::RUNTIME_ERROR);
    }
}

/// Stdout, quiet when it is closed (`| head`).
fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

fn write_file(path: &std::path::Path, text: &str) {
    if let Err(e) = std::fs::write(path, text) {
        cli::fail(
            "tp3-check",
            cli::RUNTIME_ERROR,
            &format!("cannot write {}: {}", path.display(), e),
        );
    }
}
