//! `flood-view --dot`: the floods as a Graphviz digraph, in the words of the text view
//! ([`super::view`]), with a legend, and the queries stacked top to bottom so a picture
//! of several is as wide as its widest query, not as all of them side by side.

use std::fmt::Write as _;

use super::text::{describe_answer, fate_words, headline, ms, stopped_words, Names};
use super::view::{Flood, Sender, DUPLICATE};

/// What the shapes, line styles and colours mean: a table above the first query.
const LEGEND: &str = r##"<<table border="0" cellborder="0" cellspacing="1">
<tr><td align="left"><b>legend</b></td></tr>
<tr><td align="left">ellipse: the client that asked</td></tr>
<tr><td align="left">box: a servent that handled the query, time from the query's start</td></tr>
<tr><td align="left"><b>double bold box</b>: a servent that answered</td></tr>
<tr><td align="left">[TTL spent, not forwarded]: its TTL let it go no further (TTL 0; TTL 1 under --ttl-rule 2019)</td></tr>
<tr><td align="left">plain text: an address no trace was given for</td></tr>
<tr><td align="left">solid arrow: the copy a servent handled, with its TTL</td></tr>
<tr><td align="left"><font color="red">dashed red arrow: a later copy, dropped: duplicate</font></td></tr>
<tr><td align="left"><font color="grey50">dotted grey arrow: a copy sent, no trace of its arrival</font></td></tr>
</table>>"##;

/// The floods as one digraph: the legend on top, then one cluster per query, each
/// below the one before. Solid edges are the copies servents handled, dashed red
/// ones the duplicates dropped, dotted grey ones copies with no trace of their
/// arrival; servents that answered are drawn bold.
pub fn render_dot(floods: &[Flood], names: &Names) -> String {
    let mut out = String::from(
        "digraph floods {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n  \
         edge [fontname=\"monospace\", fontsize=10];\n",
    );
    let _ = writeln!(out, "  legend [shape=plaintext, label={LEGEND}];");
    // Graphviz lays unconnected clusters side by side. Invisible edges from every
    // node of one query to an invisible point, and from it to the next query's first
    // nodes, put each query below the one before. Only the edges from the deepest
    // nodes pull sideways (weight 1, the others 0): each query hangs below the last
    // one's bottom, and the picture stays about as wide as its widest query.
    let mut above = vec![(quote("legend"), 1)];
    for (n, flood) in floods.iter().enumerate() {
        let drawn = cluster(&mut out, n, flood, names);
        let gap = quote(&format!("gap {n}"));
        let _ = writeln!(
            out,
            "  {gap} [shape=point, style=invis, width=0, height=0];"
        );
        for (from, weight) in &above {
            let _ = writeln!(out, "  {from} -> {gap} [style=invis, weight={weight}];");
        }
        for to in &drawn.tops {
            let _ = writeln!(out, "  {gap} -> {to} [style=invis, weight=1];");
        }
        above = drawn.nodes;
    }
    out.push_str("}\n");
    out
}

/// What [`cluster`] drew, by node id.
struct Drawn {
    /// Where the query enters: its client, or senders with no trace.
    tops: Vec<String>,
    /// Every node, each with 1 if it is one of the deepest, else 0.
    nodes: Vec<(String, u8)>,
}

/// A node where the query enters the picture (its client, or a sender with no trace),
/// drawn once in `tops`; returns its id.
fn entry(out: &mut String, tops: &mut Vec<String>, id: String, shape: &str, label: &str) -> String {
    if !tops.contains(&id) {
        let _ = writeln!(out, "    {id} [shape={shape}, label={}];", quote(label));
        tops.push(id.clone());
    }
    id
}

/// The node of a sender whose servent left no trace: known by its link's address only.
fn untraced_sender(out: &mut String, tops: &mut Vec<String>, id: String, link: &str) -> String {
    entry(out, tops, id, "plaintext", &format!("{link}\n(no trace)"))
}

/// One query's cluster.
fn cluster(out: &mut String, n: usize, flood: &Flood, names: &Names) -> Drawn {
    let id = |who: &str| quote(&format!("q{n} {who}"));
    let mut tops = Vec::new();
    let mut all = Vec::new();
    let depths = depths(flood);
    let deepest = depths.iter().copied().max().unwrap_or(0);
    let _ = writeln!(out, "  subgraph {} {{", quote(&format!("cluster_{n}")));
    let _ = writeln!(out, "    label={};", quote(&headline(flood)));
    for node in &flood.nodes {
        let mut label = format!(
            "{}\n{}",
            names.show(&node.servent),
            ms(node.at_us, flood.start_us)
        );
        for answer in &node.answers {
            let _ = write!(label, "\n{}", describe_answer(answer, flood.start_us));
        }
        if let Some(stopped) = &node.stopped {
            let _ = write!(label, "\n[{}]", stopped_words(stopped));
        }
        let style = if node.answers.is_empty() {
            ""
        } else {
            ", style=bold, peripheries=2"
        };
        let me = id(&node.servent);
        let _ = writeln!(out, "    {me} [label={}{style}];", quote(&label));
        all.push((me.clone(), u8::from(depths[all.len()] == deepest)));
        let from = match &node.from {
            Sender::Client(client) => entry(
                out,
                &mut tops,
                id(&format!("client {client}")),
                "ellipse",
                &format!("client\n{client}"),
            ),
            Sender::Servent(servent) => id(servent),
            Sender::Unknown(link) => {
                untraced_sender(out, &mut tops, id(&format!("unknown {link}")), link)
            }
        };
        let label = match node.ttl {
            Some(ttl) => format!("TTL {ttl}"),
            None => "request".to_string(),
        };
        let _ = writeln!(out, "    {from} -> {me} [label={}];", quote(&label));
    }
    for copy in &flood.copies {
        // A servent's copies start at its node; others at a node for their sender.
        let from = match &copy.from {
            Sender::Servent(servent) => id(servent),
            Sender::Client(client) => id(&format!("client {client}")),
            Sender::Unknown(link) => {
                untraced_sender(out, &mut tops, id(&format!("unknown {link}")), link)
            }
        };
        let to = if flood.nodes.iter().any(|n| n.servent == copy.to) {
            id(&copy.to)
        } else {
            let other = id(&format!("untraced {}", copy.to));
            let _ = writeln!(
                out,
                "    {other} [shape=plaintext, label={}];",
                quote(&names.show(&copy.to))
            );
            all.push((other.clone(), 0));
            other
        };
        let ttl = copy.ttl.map(|t| format!("TTL {t}\n")).unwrap_or_default();
        let (style, color) = if copy.fate == DUPLICATE {
            ("dashed", "red")
        } else {
            ("dotted", "grey50")
        };
        let label = format!(
            "{ttl}{}\n{}",
            ms(copy.at_us, flood.start_us),
            fate_words(&copy.fate)
        );
        let _ = writeln!(
            out,
            "    {from} -> {to} [label={}, style={style}, color={color}, fontcolor={color}, constraint=false];",
            quote(&label)
        );
    }
    out.push_str("  }\n");
    if tops.is_empty() {
        // Every node got it from a servent: start from the first one.
        tops.extend(all.first().map(|(id, _)| id.clone()));
    }
    Drawn { tops, nodes: all }
}

/// How far down the tree each node is (by index in `flood.nodes`): 1 for those a
/// client or an untraced sender gave the query to, one more than its sender for
/// the others.
fn depths(flood: &Flood) -> Vec<usize> {
    let index = |servent: &str| flood.nodes.iter().position(|n| n.servent == servent);
    (0..flood.nodes.len())
        .map(|mut at| {
            let mut depth = 1;
            // Bounded: a cycle of senders cannot happen, but must not hang.
            while depth <= flood.nodes.len() {
                match &flood.nodes[at].from {
                    Sender::Servent(from) => match index(from) {
                        Some(up) => {
                            at = up;
                            depth += 1;
                        }
                        None => break,
                    },
                    _ => break,
                }
            }
            depth
        })
        .collect()
}

/// A Graphviz quoted string: `"` and `\` escaped, newlines as `\n` line breaks.
fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => {}
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::view::{Copy, Node};

    fn flood(query: &str) -> Flood {
        let mut s2 = Node::new("b:2".into(), Sender::Servent("a:1".into()), Some(0), 20);
        s2.stopped = Some("ttl".into());
        Flood {
            query: query.into(),
            kind: "KEYFLOOD".into(),
            key: Some("k\"\\".into()),
            start_us: 10,
            nodes: vec![
                Node::new("a:1".into(), Sender::Client("c:9".into()), None, 10),
                s2,
            ],
            copies: vec![Copy {
                from: Sender::Servent("b:2".into()),
                to: "a:1".into(),
                ttl: Some(0),
                at_us: 30,
                fate: DUPLICATE.into(),
            }],
        }
    }

    #[test]
    fn dot_quotes_what_the_texts_carry() {
        assert_eq!(quote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
        let dot = render_dot(&[flood("c:9#1")], &Names::default());
        assert!(dot.contains("key \\\"k\\\\\\\"\\\\\\\\\\\""), "{dot}");
        assert_eq!(dot.matches('{').count(), dot.matches('}').count(), "{dot}");
    }

    #[test]
    fn the_picture_speaks_as_the_text_does_and_has_a_legend() {
        let dot = render_dot(&[flood("c:9#1")], &Names::default());
        assert!(dot.contains("[TTL spent, not forwarded]"), "{dot}");
        assert!(!dot.contains("[ttl]"), "{dot}");
        assert!(dot.contains("dropped: duplicate\""), "{dot}");
        assert!(dot.contains("legend [shape=plaintext"), "{dot}");
    }

    #[test]
    fn each_query_hangs_below_the_one_before() {
        let dot = render_dot(&[flood("c:9#1"), flood("c:9#2")], &Names::default());
        let invisible = |from: &str, to: &str, weight: u8| {
            let edge = format!("\"{from}\" -> \"{to}\" [style=invis, weight={weight}];");
            assert!(dot.contains(&edge), "{edge}\n{dot}");
        };
        invisible("legend", "gap 0", 1);
        invisible("gap 0", "q0 client c:9", 1);
        invisible("q0 a:1", "gap 1", 0);
        invisible("q0 b:2", "gap 1", 1);
        invisible("gap 1", "q1 client c:9", 1);
    }
}
