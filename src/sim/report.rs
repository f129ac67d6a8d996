//! `tp3-sim`'s output: a table row per run, CSV rows per query and per aggregate, and
//! the charts `--svg` draws (reach and frames against the TTL, a line per topology and
//! rule).

use std::io::{self, Write};

use crate::servent::TtlRule;

use super::plot::{Chart, Series};
use super::run::RunResult;
use super::stats::{Aggregate, AGGREGATES};

/// One run: a topology, a TTL, a rule, and what came of it.
#[derive(Debug, Clone)]
pub struct Row {
    /// The topology's spec, as given.
    pub topology: String,
    pub servents: usize,
    pub ttl: u16,
    pub rule: TtlRule,
    pub full_reach: bool,
    pub result: RunResult,
}

impl Row {
    /// `seed`, `2019`, `seed+full`, `2019+full`: the rule column, and the legend.
    pub fn rule_name(&self) -> String {
        let full = if self.full_reach { "+full" } else { "" };
        format!("{}{full}", self.rule.name())
    }
}

/// The table's header: what [`table_row`] prints under it.
pub fn table_header() -> String {
    format!(
        "{:<22} {:>9} {:>3} {:<9} {:>8} | {:>8} {:>6} {:>6} {:>6} {:>6} | {:>7} {:>8} | \
         {:>9} {:>7} | {:>8} {:>8} {:>9} | {:>9} {:>7}",
        "topology",
        "servents",
        "ttl",
        "rule",
        "queries",
        "reach",
        "p50",
        "p90",
        "p99",
        "max",
        "answers",
        "answered",
        "frames",
        "p99",
        "dups",
        "again",
        "ttl-spent",
        "last-ms",
        "p99"
    )
}

/// One run's aggregates: means, and percentiles of reach, frames and answer time.
pub fn table_row(row: &Row) -> String {
    let s = &row.result.summary;
    let answered = if s.queries == 0 {
        0.0
    } else {
        100.0 * s.last_answer_ms.count as f64 / s.queries as f64
    };
    format!(
        "{:<22} {:>9} {:>3} {:<9} {:>8} | {:>8.2} {:>6} {:>6} {:>6} {:>6} | {:>7.2} {:>7.1}% | \
         {:>9.1} {:>7} | {:>8.2} {:>8.2} {:>9.2} | {:>9} {:>7}",
        row.topology,
        row.servents,
        row.ttl,
        row.rule_name(),
        s.queries,
        s.reached.mean,
        s.reached.p50,
        s.reached.p90,
        s.reached.p99,
        s.reached.max,
        s.answers.mean,
        answered,
        s.frames.mean,
        s.frames.p99,
        s.duplicates.mean,
        s.reforwarded.mean,
        s.ttl_spent.mean,
        last_ms(s.last_answer_ms.count, s.last_answer_ms.mean),
        last_ms(s.last_answer_ms.count, s.last_answer_ms.p99),
    )
}

/// An answer time for the table, `-` when no query was answered.
fn last_ms(answered: usize, ms: f64) -> String {
    if answered == 0 {
        "-".to_string()
    } else {
        format!("{ms:.3}")
    }
}

/// A CSV number: at most six decimals (a nanosecond, in milliseconds), without the
/// float noise `{}` would print (`1.3750209999999998`) or trailing zeros.
fn decimal(x: f64) -> String {
    let text = format!("{x:.6}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    match text {
        "-0" => "0".to_string(),
        _ => text.to_string(),
    }
}

/// The CSV columns. `query` is the query's sequence number on a query's row, or the
/// aggregate's name (`mean`, `p50`, `p90`, `p99`, `max`) on the rows after a run's
/// queries; `origin` is empty on those. `last_answer_ms` is empty for a query with no
/// answer, and aggregates only the queries with one.
pub const CSV_HEADER: &str = "topology,servents,ttl,rule,full_reach,query,origin,reached,\
                              answers,frames,duplicates,reforwarded,ttl_spent,info_too_long,\
                              last_answer_ms";

/// A run's rows: one per query, then one per aggregate.
pub fn write_csv(out: &mut impl Write, row: &Row) -> io::Result<()> {
    let lead = format!(
        "{},{},{},{},{}",
        csv_field(&row.topology),
        row.servents,
        row.ttl,
        row.rule.name(),
        row.full_reach
    );
    for q in &row.result.outcomes {
        let last = q
            .last_answer
            .map(|ns| decimal(ns as f64 / 1e6))
            .unwrap_or_default();
        writeln!(
            out,
            "{lead},{},{},{},{},{},{},{},{},{},{last}",
            q.seq,
            q.origin,
            q.reached,
            q.answers,
            q.frames,
            q.duplicates,
            q.reforwarded,
            q.ttl_spent,
            q.info_too_long
        )?;
    }
    let s = &row.result.summary;
    let measures: [&Aggregate; 8] = [
        &s.reached,
        &s.answers,
        &s.frames,
        &s.duplicates,
        &s.reforwarded,
        &s.ttl_spent,
        &s.info_too_long,
        &s.last_answer_ms,
    ];
    for (i, name) in AGGREGATES.iter().enumerate() {
        let values: Vec<String> = measures
            .iter()
            .map(|m| {
                if m.count == 0 {
                    String::new()
                } else {
                    decimal(m.values()[i])
                }
            })
            .collect();
        writeln!(out, "{lead},{name},,{}", values.join(","))?;
    }
    Ok(())
}

/// Quoted if it holds a comma, a quote or a line break (a file path might).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Mean reach and mean frames per query against the TTL, a line per topology and rule
/// (in the order they first appear).
pub fn charts(rows: &[Row]) -> Vec<Chart> {
    let mut reach: Vec<Series> = Vec::new();
    let mut frames: Vec<Series> = Vec::new();
    // A colour per topology and TTL rule, in order of appearance; full reach dashed.
    let mut colours: Vec<(&str, TtlRule)> = Vec::new();
    for row in rows {
        let label = format!("{} {}", row.topology, row.rule_name());
        let at = match reach.iter().position(|s| s.label == label) {
            Some(at) => at,
            None => {
                let group = (row.topology.as_str(), row.rule);
                let colour = colours.iter().position(|&c| c == group).unwrap_or_else(|| {
                    colours.push(group);
                    colours.len() - 1
                });
                for lines in [&mut reach, &mut frames] {
                    lines.push(Series {
                        label: label.clone(),
                        points: Vec::new(),
                        colour,
                        dashed: row.full_reach,
                    });
                }
                reach.len() - 1
            }
        };
        let s = &row.result.summary;
        let ttl = f64::from(row.ttl);
        reach[at].points.push((ttl, s.reached.mean));
        frames[at].points.push((ttl, s.frames.mean));
    }
    for line in reach.iter_mut().chain(frames.iter_mut()) {
        line.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let chart = |title: &str, y_label: &str, series: Vec<Series>| Chart {
        title: title.to_string(),
        x_label: "initial TTL".to_string(),
        y_label: y_label.to_string(),
        log_y: true,
        series,
    };
    vec![
        chart("Servents reached per query (mean)", "servents", reach),
        chart("Frames sent per query (mean)", "frames", frames),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::stats::{QueryOutcome, Summary};
    use std::time::Duration;

    fn row(ttl: u16, full_reach: bool) -> Row {
        let outcomes = vec![
            QueryOutcome {
                seq: 1,
                origin: 4,
                reached: 5,
                answers: 1,
                frames: 6,
                reforwarded: 2,
                last_answer: Some(1_500_000),
                ..QueryOutcome::default()
            },
            QueryOutcome {
                seq: 2,
                origin: 0,
                reached: 3,
                frames: 2,
                ..QueryOutcome::default()
            },
        ];
        Row {
            topology: "line:6".into(),
            servents: 6,
            ttl,
            rule: TtlRule::Seed,
            full_reach,
            result: RunResult {
                summary: Summary::of(&outcomes),
                outcomes,
                build: Duration::ZERO,
                simulate: Duration::ZERO,
                holders: 1,
            },
        }
    }

    #[test]
    fn csv_has_a_row_per_query_and_per_aggregate() {
        let mut out = Vec::new();
        write_csv(&mut out, &row(3, false)).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2 + 5);
        let columns = CSV_HEADER.split(',').count();
        assert!(
            lines.iter().all(|l| l.split(',').count() == columns),
            "{text}"
        );
        assert_eq!(lines[0], "line:6,6,3,seed,false,1,4,5,1,6,0,2,0,0,1.5");
        assert_eq!(lines[1], "line:6,6,3,seed,false,2,0,3,0,2,0,0,0,0,");
        assert_eq!(lines[2], "line:6,6,3,seed,false,mean,,4,0.5,4,0,1,0,0,1.5");
        assert!(lines[6].starts_with("line:6,6,3,seed,false,max,,5,1,6,0,2,0,0,"));
        assert_eq!(csv_field("file:a,b"), "\"file:a,b\"");
        assert_eq!(decimal(1.3750209999999998), "1.375021");
        assert_eq!(decimal(160.0), "160");
        assert_eq!(decimal(0.5), "0.5");
        assert_eq!(decimal(0.0), "0");
    }

    #[test]
    fn a_table_row_lines_up_with_the_header() {
        let r = row(3, true);
        assert_eq!(table_row(&r).len(), table_header().len());
        assert!(table_row(&r).contains("seed+full"));
        assert!(
            table_row(&r).ends_with("1.500   1.500"),
            "{}",
            table_row(&r)
        );
        // No query answered: no answer time, rather than a 0 that reads as instant.
        let mut unanswered = row(3, false);
        unanswered.result.summary.last_answer_ms = Aggregate::default();
        let line = table_row(&unanswered);
        assert!(line.ends_with("|         -       -"), "{line}");
        assert_eq!(line.len(), table_header().len());
    }

    #[test]
    fn charts_have_a_line_per_topology_and_rule_in_ttl_order() {
        let rows = [row(4, false), row(2, false), row(2, true)];
        let charts = charts(&rows);
        assert_eq!(charts.len(), 2);
        let reach = &charts[0].series;
        assert_eq!(reach.len(), 2);
        assert_eq!(reach[0].label, "line:6 seed");
        assert_eq!(reach[0].points, vec![(2.0, 4.0), (4.0, 4.0)]);
        assert_eq!(reach[1].label, "line:6 seed+full");
        // One colour for the topology and rule; full reach dashed.
        assert_eq!((reach[0].colour, reach[0].dashed), (0, false));
        assert_eq!((reach[1].colour, reach[1].dashed), (0, true));
    }
}
