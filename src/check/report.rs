//! The checker's reports: a table for people on stdout, JUnit XML for graders and CI,
//! JSON for programs.

use std::fmt::Write as _;

use serde::Serialize;

use super::{Case, Outcome, Role, Verdict};

/// Counts of each verdict.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Totals {
    pub pass: usize,
    pub fail: usize,
    pub skip: usize,
}

impl Totals {
    pub fn of(outcomes: &[Outcome]) -> Totals {
        let mut t = Totals::default();
        for o in outcomes {
            match o.verdict {
                Verdict::Pass => t.pass += 1,
                Verdict::Fail => t.fail += 1,
                Verdict::Skip => t.skip += 1,
            }
        }
        t
    }
}

/// The whole run, as `--json` writes it.
#[derive(Debug, Serialize)]
pub struct Run<'a> {
    pub tool: &'static str,
    pub version: &'static str,
    pub role: Role,
    pub command: &'a str,
    pub totals: Totals,
    pub seconds: f64,
    pub cases: &'a [Outcome],
}

/// `--list`: one line per case: id, section, title.
pub fn list(cases: &[Case]) -> String {
    let width = cases.iter().map(|c| c.id.len()).max().unwrap_or(0);
    let swidth = cases
        .iter()
        .map(|c| c.section.chars().count())
        .max()
        .unwrap_or(0);
    let mut s = String::new();
    for c in cases {
        let pad = swidth - c.section.chars().count();
        let _ = writeln!(
            s,
            "{:width$}  {}{}  {}",
            c.id,
            c.section,
            " ".repeat(pad),
            c.title
        );
    }
    s
}

/// The table: one line per case, then each non-PASS case's details, then the totals.
pub fn table(outcomes: &[Outcome], seconds: f64) -> String {
    let width = outcomes.iter().map(|o| o.id.len()).max().unwrap_or(0);
    let mut s = String::new();
    for o in outcomes {
        let _ = writeln!(s, "{}  {:width$}  {}", o.verdict.word(), o.id, o.title);
    }
    let notes: Vec<&Outcome> = outcomes.iter().filter(|o| o.message.is_some()).collect();
    if !notes.is_empty() {
        s.push('\n');
    }
    for o in notes {
        let label = match o.verdict {
            Verdict::Pass => "note",
            Verdict::Skip => "skipped",
            Verdict::Fail => "FAILED",
        };
        let _ = writeln!(
            s,
            "{} {} ({}): {}",
            o.id,
            label,
            o.section,
            o.message.as_deref().unwrap_or("")
        );
        for line in &o.details {
            let _ = writeln!(s, "    {line}");
        }
    }
    let t = Totals::of(outcomes);
    let _ = writeln!(
        s,
        "\n{} passed, {} failed, {} skipped, in {seconds:.1} s",
        t.pass, t.fail, t.skip
    );
    s
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 has no place for most control characters, even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: one `<testsuite>` named after the role, one `<testcase>` per case.
pub fn junit(role: Role, outcomes: &[Outcome], seconds: f64) -> String {
    let t = Totals::of(outcomes);
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        "<testsuites name=\"tp3-check\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{seconds:.3}\">",
        outcomes.len(),
        t.fail,
        t.skip
    );
    let _ = writeln!(
        s,
        "  <testsuite name=\"tp3-check.{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{seconds:.3}\">",
        role.name(),
        outcomes.len(),
        t.fail,
        t.skip
    );
    for o in outcomes {
        let _ = write!(
            s,
            "    <testcase classname=\"tp3-check.{}\" name=\"{}\" time=\"{:.3}\"",
            role.name(),
            xml_escape(&o.id),
            o.seconds
        );
        let message = xml_escape(o.message.as_deref().unwrap_or(""));
        match o.verdict {
            Verdict::Pass => s.push_str("/>\n"),
            Verdict::Skip => {
                let _ = write!(
                    s,
                    ">\n      <skipped message=\"{message}\"/>\n    </testcase>\n"
                );
            }
            Verdict::Fail => {
                let body = std::iter::once(format!(
                    "{} — {} {}",
                    o.title,
                    o.section,
                    o.message.as_deref().unwrap_or("")
                ))
                .chain(o.details.iter().cloned())
                .collect::<Vec<_>>()
                .join("\n");
                let _ = write!(
                    s,
                    ">\n      <failure message=\"{message}\" type=\"FAIL\">{}</failure>\n    </testcase>\n",
                    xml_escape(&body)
                );
            }
        }
    }
    s.push_str("  </testsuite>\n</testsuites>\n");
    s
}
