//! `flood-view TRACE...`: merges the traces of several servents (`servent --trace`)
//! and draws each query's flood as a tree, or with `--dot` as a Graphviz digraph.

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;

use tp3kv::trace::view::{self, Names};
use tp3kv::trace::Event;

/// Draws the floods recorded in servent traces: per query (client ip:port#seq), who
/// got it from whom with which TTL, which copies were dropped as duplicates, who
/// answered, with times from the query's start.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Trace files written by `servent --trace`.
    #[arg(required = true)]
    traces: Vec<PathBuf>,
    /// Print a Graphviz digraph (`flood-view --dot ... | dot -Tsvg > floods.svg`).
    #[arg(long)]
    dot: bool,
    /// Only this query, as `ip:port#seq`, or only its seq.
    #[arg(long, value_name = "QUERY")]
    query: Option<String>,
    /// Show a servent's address with a short name too: `--name 127.0.0.1:5001=s1`.
    #[arg(long = "name", value_name = "ADDR=NAME", value_parser = name_pair)]
    names: Vec<(String, String)>,
}

fn name_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((address, name)) if !address.is_empty() && !name.is_empty() => {
            Ok((address.to_string(), name.to_string()))
        }
        _ => Err(format!("expected ADDR=NAME, got {text:?}")),
    }
}

fn main() {
    let args = Args::parse();
    let outcome = run(args).and_then(|drawing| {
        let mut stdout = io::stdout().lock();
        match stdout
            .write_all(drawing.as_bytes())
            .and_then(|()| stdout.flush())
        {
            // Whoever read the drawing has had enough (`flood-view ... | head`): quietly.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            written => written.context("cannot write the drawing"),
        }
    });
    if let Err(e) = outcome {
        note(format_args!("error: {e:#}"));
        std::process::exit(1);
    }
}

/// `flood-view: ...` on stderr, if stderr is still there.
fn note(message: std::fmt::Arguments) {
    let _ = writeln!(io::stderr(), "flood-view: {message}");
}

/// Whether `query` (`ip:port#seq`) is the one asked for: named whole, or by its seq.
fn is_wanted(query: &str, wanted: &str) -> bool {
    query == wanted || query.rsplit('#').next() == Some(wanted)
}

fn run(args: Args) -> Result<String> {
    // Events of other queries are dropped as they are read: a long trace, one query.
    let keep = |event: &Event| match (&args.query, &event.query) {
        (Some(wanted), Some(query)) => is_wanted(query, wanted),
        _ => true,
    };
    let mut traces = Vec::new();
    for path in &args.traces {
        let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let (events, warning) =
            view::parse(BufReader::new(file), &path.display().to_string(), keep)?;
        if let Some(warning) = warning {
            note(format_args!("warning: {warning}"));
        }
        traces.push(events);
    }
    let mut floods = view::build(&traces);
    if let Some(wanted) = &args.query {
        floods.retain(|f| is_wanted(&f.query, wanted));
        if floods.is_empty() {
            bail!("no query {wanted} in these traces");
        }
    }
    if floods.is_empty() {
        note(format_args!("no queries in these traces"));
    }
    let mut names = Names::default();
    for (address, name) in &args.names {
        names.add(address, name);
    }
    Ok(if args.dot {
        view::render_dot(&floods, &names)
    } else {
        view::render_text(&floods, &names)
    })
}
