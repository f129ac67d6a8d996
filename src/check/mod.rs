//! `tp3-check`: a conformance checker for servents and clients of this protocol.
//!
//! The checker starts the implementation under test itself (any language: the command
//! is a [`target::Template`]), plays every other part byte by byte ([`peer`]), and runs
//! a catalogue of cases, each citing the section of `docs/PROTOCOL.md` it checks. A
//! case ends PASS, FAIL (saying what was expected and what came, in hex, with a
//! diagnosis where one can be made: [`diagnose`]) or SKIP (saying why).
//!
//! - [`target`]: the command template, spawning and killing the implementation.
//! - [`peer`]: the checker's own sockets: clients, neighbours, reply listeners.
//! - [`diagnose`]: hex dumps and the guesses that name a defect.
//! - [`servent_cases`], [`flood_cases`], [`topology_cases`], [`network_cases`]: the
//!   servent's catalogue; [`client_cases`]: the
//!   client's. [`harness`]: the running servent and the checker's peers around it.
//! - [`report`]: the table on stdout, JUnit XML and JSON.

/// One entry of a catalogue: `case!(id, section, title, function)`. Defined before the
/// modules that list cases, so each can use it.
macro_rules! case {
    ($id:literal, $section:literal, $title:literal, $run:expr) => {
        Case {
            id: $id,
            section: $section,
            title: $title,
            run: $run,
        }
    };
}

pub mod client_cases;
pub mod client_scene;
pub mod client_window_cases;
pub mod diagnose;
pub mod flood_cases;
pub mod harness;
pub mod network_cases;
pub mod peer;
pub mod report;
pub mod servent_cases;
pub mod target;
pub mod topology_cases;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Which kind of implementation is under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Servent,
    Client,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Servent => "servent",
            Role::Client => "client",
        }
    }
}

/// How long the checker waits, for what.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// For something that must come (a frame, an answer, a close).
    pub timeout: Duration,
    /// For something that must not come: how long silence proves it.
    pub quiet: Duration,
    /// For the implementation to accept connections after it is started.
    pub start: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            timeout: Duration::from_secs(5),
            quiet: Duration::from_millis(1000),
            start: Duration::from_secs(10),
        }
    }
}

/// What every case is given: the command under test and the timing.
pub struct Ctx {
    pub template: target::Template,
    pub timing: Timing,
}

/// A case's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Fail,
    Skip,
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        }
    }
}

/// What went wrong: a sentence, then lines such as `expected: ...`, `got: ...`,
/// `diagnosis: ...`.
#[derive(Debug, Clone)]
pub struct Failure {
    pub what: String,
    pub lines: Vec<String>,
}

impl Failure {
    pub fn new(what: impl Into<String>) -> Failure {
        Failure {
            what: what.into(),
            lines: Vec::new(),
        }
    }

    pub fn expected(mut self, s: impl Into<String>) -> Failure {
        self.lines.push(format!("expected: {}", s.into()));
        self
    }

    pub fn got(mut self, s: impl Into<String>) -> Failure {
        self.lines.push(format!("got:      {}", s.into()));
        self
    }

    /// `got` for a read that brought no frame, with what its bytes let us diagnose.
    pub fn got_read(self, e: &peer::ReadError, waited: Duration) -> Failure {
        let hints = match e {
            peer::ReadError::Corrupt(bytes, _) => diagnose::unframed(bytes),
            _ => Vec::new(),
        };
        self.got(e.describe(waited)).diagnosis(hints)
    }

    pub fn diagnosis(mut self, hints: impl IntoIterator<Item = String>) -> Failure {
        for h in hints {
            let line = format!("diagnosis: {h}");
            if !self.lines.contains(&line) {
                self.lines.push(line);
            }
        }
        self
    }
}

/// Why a case did not pass.
#[derive(Debug, Clone)]
pub enum Problem {
    Fail(Failure),
    Skip(String),
}

impl From<Failure> for Problem {
    fn from(f: Failure) -> Problem {
        Problem::Fail(f)
    }
}

/// A case passes with an optional note (e.g. which TTL rule a network follows).
pub type CaseResult = Result<Option<String>, Problem>;

/// Shorthand for a failure with only a sentence.
pub fn fail<T>(what: impl Into<String>) -> Result<T, Problem> {
    Err(Problem::Fail(Failure::new(what)))
}

/// One entry of the catalogue.
pub struct Case {
    pub id: &'static str,
    /// The section of docs/PROTOCOL.md it checks, e.g. `§5`.
    pub section: &'static str,
    pub title: &'static str,
    pub run: fn(&Ctx) -> CaseResult,
}

/// Every case for one role, in catalogue order.
pub fn catalogue(role: Role) -> Vec<Case> {
    match role {
        Role::Servent => {
            let mut cases = servent_cases::cases();
            cases.extend(flood_cases::cases());
            cases.extend(topology_cases::cases());
            cases.extend(network_cases::cases());
            cases
        }
        Role::Client => client_cases::cases(),
    }
}

/// The cases `selectors` name: each an exact id or a prefix (`servent.kv`). `Err` names
/// a selector matching nothing.
pub fn select(cases: Vec<Case>, selectors: &[String]) -> Result<Vec<Case>, String> {
    if selectors.is_empty() {
        return Ok(cases);
    }
    for s in selectors {
        if !cases.iter().any(|c| c.id.starts_with(s.as_str())) {
            return Err(format!(
                "no case is named {s:?} or starts with it (see --list)"
            ));
        }
    }
    Ok(cases
        .into_iter()
        .filter(|c| selectors.iter().any(|s| c.id.starts_with(s.as_str())))
        .collect())
}

/// One case's result, as the reports show it.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub id: String,
    pub section: String,
    pub title: String,
    pub verdict: Verdict,
    /// A sentence: the note of a PASS, the reason of a SKIP, the failure of a FAIL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A FAIL's expected / got / diagnosis lines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    pub seconds: f64,
}

fn run_one(case: &Case, ctx: &Ctx) -> Outcome {
    let started = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| (case.run)(ctx))).unwrap_or_else(|_| {
        fail("the checker itself failed (a bug in tp3-check: please report it)")
    });
    let (verdict, message, details) = match result {
        Ok(note) => (Verdict::Pass, note, Vec::new()),
        Err(Problem::Skip(why)) => (Verdict::Skip, Some(why), Vec::new()),
        Err(Problem::Fail(f)) => (Verdict::Fail, Some(f.what), f.lines),
    };
    Outcome {
        id: case.id.to_string(),
        section: case.section.to_string(),
        title: case.title.to_string(),
        verdict,
        message,
        details,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Runs `cases`, `jobs` at a time (each case starts its own instances, so they do not
/// disturb each other), and returns the outcomes in catalogue order. `progress` is
/// told of each as it ends.
pub fn run(
    cases: &[Case],
    ctx: &Ctx,
    jobs: usize,
    progress: &(dyn Fn(&Outcome) + Sync),
) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; cases.len()]);
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(case) = cases.get(i) else { break };
                let outcome = run_one(case, ctx);
                progress(&outcome);
                slots.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(outcome);
            });
        }
    });
    slots
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect()
}
