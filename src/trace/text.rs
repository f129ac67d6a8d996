//! The words of `flood-view`'s drawings: servents' short names, times from a query's
//! start, what became of answers and copies (shared with [`super::dot`], so the text
//! and the picture say the same), and the text view, each flood as an indented tree.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::view::{Answer, Copy, Flood, Node, Sender, DUPLICATE, TTL_SPENT};

/// Short names for servents (`--name ADDR=NAME`), shown beside their addresses.
#[derive(Debug, Clone, Default)]
pub struct Names(HashMap<String, String>);

impl Names {
    pub fn add(&mut self, address: &str, name: &str) {
        self.0.insert(address.to_string(), name.to_string());
    }

    pub(super) fn show(&self, address: &str) -> String {
        match self.0.get(address) {
            Some(name) => format!("{name} ({address})"),
            None => address.to_string(),
        }
    }

    fn show_sender(&self, sender: &Sender) -> String {
        match sender {
            Sender::Client(client) => format!("client {client}"),
            Sender::Servent(servent) => self.show(servent),
            Sender::Unknown(link) => format!("{link} (no trace)"),
        }
    }
}

pub(super) fn ms(at_us: u64, start_us: u64) -> String {
    format!("+{:.3} ms", at_us.saturating_sub(start_us) as f64 / 1000.0)
}

pub(super) fn headline(flood: &Flood) -> String {
    let what = match (&flood.key, flood.kind.as_str()) {
        (Some(key), _) => format!("key {key:?}"),
        (None, "TOPOFLOOD") => "topology".to_string(),
        (None, _) => "?".to_string(),
    };
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let again = match flood.forwarded_again() {
        0 => String::new(),
        n => format!(
            ", {} forwarded again (full reach)",
            plural(n, "copy", "copies")
        ),
    };
    format!(
        "query {}, {what}: {} reached, {}, {} dropped{again}",
        flood.query,
        plural(flood.nodes.len(), "servent", "servents"),
        plural(flood.answers(), "answer", "answers"),
        plural(flood.duplicates(), "duplicate", "duplicates"),
    )
}

/// What became of an answer, in the words both drawings use.
pub(super) fn describe_answer(answer: &Answer, start_us: u64) -> String {
    let mut text = format!("answered {:?}", answer.value);
    match (&answer.lost, answer.sent_us) {
        (Some(lost), _) => {
            let _ = write!(text, " ({lost})");
        }
        (None, Some(sent)) => {
            let _ = write!(text, " (sent {})", ms(sent, start_us));
        }
        (None, None) => {}
    }
    text
}

/// Why a servent went no further, in the words both drawings use.
pub(super) fn stopped_words(reason: &str) -> &str {
    match reason {
        TTL_SPENT => "TTL spent, not forwarded",
        other => other,
    }
}

/// What became of a copy that was not handled, in the words both drawings use.
pub(super) fn fate_words(fate: &str) -> &str {
    match fate {
        DUPLICATE => "dropped: duplicate",
        other => other,
    }
}

fn describe_node(node: &Node, start_us: u64, names: &Names) -> String {
    let mut line = names.show(&node.servent);
    if let Some(ttl) = node.ttl {
        let _ = write!(line, "  TTL {ttl}");
    }
    let _ = write!(line, "  {}", ms(node.at_us, start_us));
    for answer in &node.answers {
        let _ = write!(line, "  {}", describe_answer(answer, start_us));
    }
    if let Some(stopped) = &node.stopped {
        let _ = write!(line, "  [{}]", stopped_words(stopped));
    }
    line
}

fn describe_copy(copy: &Copy, start_us: u64, names: &Names) -> String {
    let mut line = names.show(&copy.to);
    if let Some(ttl) = copy.ttl {
        let _ = write!(line, "  TTL {ttl}");
    }
    let _ = write!(
        line,
        "  {}  {}",
        ms(copy.at_us, start_us),
        fate_words(&copy.fate)
    );
    line
}

/// What hangs below a servent in the tree, in time order.
enum Child<'a> {
    Node(usize),
    Copy(&'a Copy),
}

fn children<'a>(flood: &'a Flood, parent: &Sender) -> Vec<(u64, Child<'a>)> {
    let mut out: Vec<(u64, Child)> = Vec::new();
    for (index, node) in flood.nodes.iter().enumerate() {
        if node.from == *parent {
            out.push((node.at_us, Child::Node(index)));
        }
    }
    for copy in &flood.copies {
        if copy.from == *parent {
            out.push((copy.at_us, Child::Copy(copy)));
        }
    }
    out.sort_by_key(|(at, _)| *at);
    out
}

/// The floods as indented trees: a line per servent reached, with the TTL it got the
/// query with, when (from the query's start), what it answered; copies dropped as
/// duplicates hang under their sender with a dashed branch.
pub fn render_text(floods: &[Flood], names: &Names) -> String {
    let mut out = String::new();
    for (n, flood) in floods.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        out.push_str(&headline(flood));
        out.push('\n');
        // Roots: what came from a client, or from no traced servent.
        let roots: Vec<usize> = (0..flood.nodes.len())
            .filter(|&i| !matches!(flood.nodes[i].from, Sender::Servent(_)))
            .collect();
        let mut drawn = vec![false; flood.nodes.len()];
        for root in roots {
            let node = &flood.nodes[root];
            let _ = writeln!(out, "  {}", names.show_sender(&node.from));
            draw(flood, root, "  ", true, names, &mut drawn, &mut out);
        }
        // Copies whose sender is not in the tree (its trace is missing).
        for copy in &flood.copies {
            let sender_drawn = match &copy.from {
                Sender::Servent(s) => flood.nodes.iter().any(|n| n.servent == *s),
                _ => false,
            };
            if !sender_drawn {
                let _ = writeln!(
                    out,
                    "  {} ╌╌> {}",
                    names.show_sender(&copy.from),
                    describe_copy(copy, flood.start_us, names)
                );
            }
        }
        // Servents that got it from a servent with no node of its own (a loop of
        // unknowns cannot happen, but the output must never lose a servent).
        for (index, node) in flood.nodes.iter().enumerate() {
            if !drawn[index] {
                let _ = writeln!(out, "  {}", names.show_sender(&node.from));
                draw(flood, index, "  ", true, names, &mut drawn, &mut out);
            }
        }
    }
    out
}

fn draw(
    flood: &Flood,
    index: usize,
    prefix: &str,
    last: bool,
    names: &Names,
    drawn: &mut [bool],
    out: &mut String,
) {
    drawn[index] = true;
    let node = &flood.nodes[index];
    let branch = if last { "└── " } else { "├── " };
    let _ = writeln!(
        out,
        "{prefix}{branch}{}",
        describe_node(node, flood.start_us, names)
    );
    let inner = format!("{prefix}{}", if last { "    " } else { "│   " });
    let below = children(flood, &Sender::Servent(node.servent.clone()));
    let count = below.len();
    for (i, (_, child)) in below.into_iter().enumerate() {
        let last = i + 1 == count;
        match child {
            Child::Node(child) if !drawn[child] => {
                draw(flood, child, &inner, last, names, drawn, out)
            }
            Child::Node(_) => {}
            Child::Copy(copy) => {
                let branch = if last { "└╌╌ " } else { "├╌╌ " };
                let _ = writeln!(
                    out,
                    "{inner}{branch}{}",
                    describe_copy(copy, flood.start_us, names)
                );
            }
        }
    }
}
