//! Graphs read from a plain edge-list file, for topologies measured on real overlays
//! or drawn by another tool: one edge `A B` a line, nodes numbered from 0.

use std::collections::HashMap;

use super::{Graph, Node, TopologyError, MAX_NODES};

/// The largest node number a file may use: node count = number + 1.
const MAX_NODE: u64 = MAX_NODES as u64 - 1;

impl Graph {
    /// The graph of an edge list: one edge a line, two node numbers (0 and up)
    /// separated by spaces or tabs; blank lines and everything after a `#` are
    /// ignored. The graph has as many nodes as the highest number + 1, or N if a
    /// `# nodes N` line says so (for isolated nodes past the last one named). A self
    /// loop, an edge given twice (either way round) or a line that is not two
    /// numbers is an error that names its line: `line 3: "1 x": not a node number`.
    pub fn from_edge_list(text: &str) -> Result<Graph, TopologyError> {
        let mut edges: Vec<(Node, Node)> = Vec::new();
        let mut first_line: HashMap<u64, usize> = HashMap::new();
        let mut declared: Option<(u64, usize)> = None;
        // The highest node named, and the line that named it.
        let mut highest: Option<(u64, usize)> = None;
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let line = raw.trim();
            let fail = |what: String| TopologyError(format!("line {number}: {line:?}: {what}"));
            let (data, comment) = match line.split_once('#') {
                Some((data, comment)) => (data.trim(), Some(comment)),
                None => (line, None),
            };
            if let Some(count) = comment.and_then(nodes_header) {
                if !data.is_empty() {
                    return Err(fail("a \"# nodes N\" line must stand alone".into()));
                }
                let count = count
                    .parse::<u64>()
                    .ok()
                    .filter(|&c| c <= MAX_NODE + 1)
                    .ok_or_else(|| fail(format!("not a node count (0 to {})", MAX_NODE + 1)))?;
                if let Some((_, before)) = declared {
                    return Err(fail(format!(
                        "a second \"# nodes N\" line (the first is line {before})"
                    )));
                }
                declared = Some((count, number));
                continue;
            }
            if data.is_empty() {
                continue;
            }
            let fields: Vec<&str> = data.split_whitespace().collect();
            let [a, b] = fields[..] else {
                return Err(fail("expected two node numbers".into()));
            };
            let node = |text: &str| {
                text.parse::<u64>()
                    .ok()
                    .filter(|&x| x <= MAX_NODE)
                    .ok_or_else(|| fail(format!("{text:?} is not a node number (0 to {MAX_NODE})")))
            };
            let (a, b) = (node(a)?, node(b)?);
            if a == b {
                return Err(fail("a self loop".into()));
            }
            let key = a.min(b) << 32 | a.max(b);
            if let Some(before) = first_line.insert(key, number) {
                return Err(fail(format!("repeats the edge of line {before}")));
            }
            if highest.is_none_or(|(h, _)| a.max(b) > h) {
                highest = Some((a.max(b), number));
            }
            edges.push((a as Node, b as Node));
        }
        let n = match (declared, highest) {
            (Some((count, at)), Some((high, line))) if high >= count => {
                return Err(TopologyError(format!(
                    "line {line}: node {high} out of range (line {at} says {count} nodes)"
                )))
            }
            (Some((count, _)), _) => count,
            (None, Some((high, _))) => high + 1,
            (None, None) => {
                return Err(TopologyError(
                    "no edges, and no \"# nodes N\" line giving a node count".into(),
                ))
            }
        };
        Graph::from_edges(n as usize, &edges)
    }
}

/// `N` from the comment ` nodes N` (what follows the `#`), if that is what it is.
fn nodes_header(comment: &str) -> Option<&str> {
    let mut words = comment.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("nodes"), Some(count), None) => Some(count),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        Graph::from_edge_list(text).unwrap_err().to_string()
    }

    #[test]
    fn reads_edges_comments_and_blank_lines() {
        let text = "# a diamond\n0 1\n\n0\t2   # the other side\n 1 3 \n2 3\n";
        let g = Graph::from_edge_list(text).unwrap();
        assert_eq!(
            g,
            Graph::from_edges(4, &[(0, 1), (0, 2), (1, 3), (2, 3)]).unwrap()
        );
    }

    #[test]
    fn a_nodes_line_adds_isolated_nodes() {
        let g = Graph::from_edge_list("0 1\n# nodes 5\n").unwrap();
        assert_eq!((g.len(), g.edge_count()), (5, 1));
        let lone = Graph::from_edge_list("# nodes 3\n").unwrap();
        assert_eq!((lone.len(), lone.edge_count()), (3, 0));
        // Another comment that merely starts with "nodes" is a comment.
        assert_eq!(
            Graph::from_edge_list("# nodes are servents\n0 1\n")
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn errors_name_the_line_and_what_is_wrong() {
        assert_eq!(
            error("0 1\n1 2\n1 x\n"),
            "line 3: \"1 x\": \"x\" is not a node number (0 to 16777214)"
        );
        assert_eq!(
            error("0 1 2\n"),
            "line 1: \"0 1 2\": expected two node numbers"
        );
        assert_eq!(error("0\n"), "line 1: \"0\": expected two node numbers");
        assert_eq!(
            error("0 -1\n"),
            "line 1: \"0 -1\": \"-1\" is not a node number (0 to 16777214)"
        );
        assert_eq!(error("0 1\n2 2\n"), "line 2: \"2 2\": a self loop");
        assert_eq!(
            error("0 1\n1 2\n1 0\n"),
            "line 3: \"1 0\": repeats the edge of line 1"
        );
        assert_eq!(
            error("0 1\n0 1\n"),
            "line 2: \"0 1\": repeats the edge of line 1"
        );
        assert_eq!(
            error("# nodes 3\n0 1\n1 7\n"),
            "line 3: node 7 out of range (line 1 says 3 nodes)"
        );
        assert_eq!(
            error("# nodes x\n"),
            "line 1: \"# nodes x\": not a node count (0 to 16777215)"
        );
        assert_eq!(
            error("# nodes 3\n# nodes 4\n"),
            "line 2: \"# nodes 4\": a second \"# nodes N\" line (the first is line 1)"
        );
        assert_eq!(
            error("# nothing\n\n"),
            "no edges, and no \"# nodes N\" line giving a node count"
        );
        assert!(error("0 4294967295\n").contains("not a node number"));
    }
}
