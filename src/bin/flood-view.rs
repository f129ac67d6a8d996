//! `flood-view TRACE...`: merges the traces of several servents (`servent --trace`)
//! and draws each query's flood as a tree, or with `--dot` as a Graphviz digraph,
//! or with `--split DIR` as one digraph file per query.

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;

use tp3kv::cli;
use tp3kv::os_error::plain;
use tp3kv::trace::dot;
use tp3kv::trace::text::{self, Names};
use tp3kv::trace::view::{self, Flood};
use tp3kv::trace::Event;

/// Draws the floods recorded in servent traces, one query at a time.
#[derive(Parser, Debug)]
#[command(
    name = "flood-view",
    version,
    about = "Draws the floods recorded in servent traces (servent --trace), one query at a time",
    long_about = "Draws the floods recorded in servent traces, one query at a time.\n\n\
A trace is what one servent did with every frame, one JSON record per line. Run each\n\
servent with --trace FILE (e.g. `servent --trace s1.jsonl 5001 s1.kv 127.0.0.1:5002`),\n\
ask some queries, then give flood-view the traces of all the servents, in any order.\n\
For each query (named client-ip:port#seq) it shows who got it from whom with which\n\
TTL, the copies dropped as duplicates, where the TTL was spent, who answered, and\n\
when, from the query's start. A servent whose trace is missing shows as an address\n\
with no trace. The topology scripts keep theirs in traces/ in cargo's target dir.\n\n\
Views: a text tree (the default); --dot, one Graphviz digraph of every query,\n\
stacked top to bottom, with a legend; --split DIR, one digraph file per query.",
    after_help = "Examples:\n  \
flood-view s1.jsonl s2.jsonl s3.jsonl s4.jsonl\n  \
flood-view --name 127.0.0.1:5001=s1,127.0.0.1:5002=s2 --query 7 *.jsonl\n  \
flood-view --dot *.jsonl | dot -Tsvg > floods.svg\n  \
flood-view --split floods/ *.jsonl    (writes floods/query-<seq>.dot, one per query)\n\n\
Exit status: 0 on success, 1 on a runtime error, 2 on a usage error."
)]
struct Args {
    /// Trace files written by `servent --trace`, of any number of servents.
    #[arg(required = true, value_name = "TRACE")]
    traces: Vec<PathBuf>,
    /// Print one Graphviz digraph of every query (`... --dot | dot -Tsvg > floods.svg`).
    #[arg(long)]
    dot: bool,
    /// Write one Graphviz digraph per query, DIR/query-<seq>.dot, and list them.
    #[arg(long, value_name = "DIR", conflicts_with = "dot")]
    split: Option<PathBuf>,
    /// Only this query, as `ip:port#seq`, or only its seq.
    #[arg(long, value_name = "QUERY")]
    query: Option<String>,
    /// Show a servent's address with a short name too: `--name 127.0.0.1:5001=s1`;
    /// repeat it, or give several separated by commas.
    #[arg(
        long = "name",
        visible_alias = "names",
        value_name = "ADDR=NAME",
        value_parser = name_pair,
        value_delimiter = ','
    )]
    names: Vec<(String, String)>,
}

fn name_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((address, name)) if !address.is_empty() && !name.is_empty() => {
            Ok((address.to_string(), name.to_string()))
        }
        _ => Err(format!(
            "expected ADDR=NAME (e.g. 127.0.0.1:5001=s1), got {text:?}"
        )),
    }
}

fn main() {
    let args: Args = cli::parse("flood-view");
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
        cli::fail("flood-view", cli::RUNTIME_ERROR, &format!("{e:#}"));
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

/// Opens a trace, saying in plain words why it cannot be one.
fn open(path: &Path) -> Result<File> {
    if path.is_dir() {
        bail!("{} is a directory, not a trace file", path.display());
    }
    File::open(path).map_err(|e| anyhow!("cannot read {}: {}", path.display(), plain(&e)))
}

fn run(args: Args) -> Result<String> {
    // Events of other queries are dropped as they are read: a long trace, one query.
    let keep = |event: &Event| match (&args.query, &event.query) {
        (Some(wanted), Some(query)) => is_wanted(query, wanted),
        _ => true,
    };
    let mut traces = Vec::new();
    for path in &args.traces {
        let file = open(path)?;
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
    Ok(if let Some(dir) = &args.split {
        split(dir, &floods, &names)?
    } else if args.dot {
        dot::render_dot(&floods, &names)
    } else {
        text::render_text(&floods, &names)
    })
}

/// Writes each query's digraph to `dir/query-<seq>.dot` (`-<n>` added if two queries
/// share a seq); returns the list of what was written, for stdout.
fn split(dir: &Path, floods: &[Flood], names: &Names) -> Result<String> {
    std::fs::create_dir_all(dir).map_err(|e| {
        anyhow!(
            "cannot create the directory {}: {}",
            dir.display(),
            plain(&e)
        )
    })?;
    let mut written = String::new();
    let mut taken = std::collections::HashSet::new();
    for flood in floods {
        let seq = flood.query.rsplit('#').next().unwrap_or("?");
        let mut file = format!("query-{seq}.dot");
        for n in 2.. {
            if taken.insert(file.clone()) {
                break;
            }
            file = format!("query-{seq}-{n}.dot");
        }
        let path = dir.join(&file);
        let digraph = dot::render_dot(std::slice::from_ref(flood), names);
        std::fs::write(&path, digraph)
            .map_err(|e| anyhow!("cannot write {}: {}", path.display(), plain(&e)))?;
        written.push_str(&format!(
            "wrote {}: query {}\n",
            path.display(),
            flood.query
        ));
    }
    Ok(written)
}
