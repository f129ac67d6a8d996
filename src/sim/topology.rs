//! Graphs for the simulator: undirected, simple (no self loops, no parallel edges),
//! stored compactly (CSR: one offsets array, one neighbours array), so a million
//! servents of degree 4 cost 24 MB of graph (8 MB of offsets, 16 MB of neighbours).
//!
//! Here: [`Graph`], its line, ring and the perf bench's random regular graph. In
//! submodules: the other families (grid, torus, Erdős–Rényi, Barabási–Albert,
//! Watts–Strogatz, a fast random regular graph: `generators`), edge-list files
//! (`edge_list`), and [`Topology`], a graph described by a spec such as `ba:10000:2`
//! (`spec`).

use std::collections::VecDeque;
use std::fmt;

use super::rng::Rng;

mod edge_list;
mod generators;
mod spec;

pub use spec::Topology;

/// A node's index: servents are numbered from 0.
pub type Node = u32;

/// Distance of a node no path reaches, in [`Graph::distances`].
pub const UNREACHABLE: u32 = u32::MAX;

/// The most nodes a graph may have: the simulator gives each servent an address of
/// its own in 10.0.0.0/8 (see `sim::network`). Checked before anything is allocated,
/// so a spec or a file naming a node in the billions is an error, not an exhausted
/// machine.
pub const MAX_NODES: usize = (1 << 24) - 1;

/// The most links a generated graph may have (about): 50 million, some 2 GB to
/// build; a million servents of degree 4 have 2 million.
pub const MAX_EDGES: f64 = 5e7;

/// An error unless about `edges` links is at most [`MAX_EDGES`]: checked before a
/// generator allocates, so a spec with an extra zero is an error, not an abort.
pub(super) fn check_edges(edges: f64) -> Result<(), TopologyError> {
    if edges > MAX_EDGES {
        return Err(TopologyError(format!(
            "about {edges:.0} links: at most {MAX_EDGES:.0}"
        )));
    }
    Ok(())
}

/// An error unless `n` nodes is at most [`MAX_NODES`].
pub(super) fn check_nodes(n: usize) -> Result<(), TopologyError> {
    if n > MAX_NODES {
        return Err(TopologyError(format!("{n} nodes: at most {MAX_NODES}")));
    }
    Ok(())
}

/// Why a graph could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyError(pub String);

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TopologyError {}

/// Smallest, mean and largest degree of a graph, for a run's header line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DegreeStats {
    pub min: usize,
    pub mean: f64,
    pub max: usize,
}

/// An undirected simple graph; each node's neighbours are sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    /// Node `i`'s neighbours are `targets[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<u64>,
    targets: Vec<Node>,
}

/// Pairings drawn before giving up on a simple random regular graph. One in about
/// 40 is simple for degree 4 (e^-15/4), one in about 80 for K5.
pub(super) const MAX_PAIRINGS: usize = 100_000;

impl Graph {
    /// The graph on `n` nodes with these edges. Self loops and repeated edges (in
    /// either direction) are errors, as is a node out of range.
    pub fn from_edges(n: usize, edges: &[(Node, Node)]) -> Result<Graph, TopologyError> {
        check_nodes(n)?;
        let mut degree = vec![0u64; n];
        for &(a, b) in edges {
            for x in [a, b] {
                if x as usize >= n {
                    return Err(TopologyError(format!(
                        "edge {a}-{b}: node {x} out of range (the graph has {n} nodes)"
                    )));
                }
            }
            if a == b {
                return Err(TopologyError(format!("edge {a}-{b}: a self loop")));
            }
            degree[a as usize] += 1;
            degree[b as usize] += 1;
        }
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        for d in &degree {
            offsets.push(offsets.last().copied().unwrap_or(0) + d);
        }
        let mut fill: Vec<u64> = offsets[..n].to_vec();
        let mut targets = vec![0; edges.len() * 2];
        for &(a, b) in edges {
            targets[fill[a as usize] as usize] = b;
            fill[a as usize] += 1;
            targets[fill[b as usize] as usize] = a;
            fill[b as usize] += 1;
        }
        let mut graph = Graph { offsets, targets };
        for node in 0..n {
            let (from, to) = graph.span(node as Node);
            let list = &mut graph.targets[from..to];
            list.sort_unstable();
            if let Some(pair) = list.windows(2).find(|p| p[0] == p[1]) {
                return Err(TopologyError(format!(
                    "edge {node}-{}: given more than once",
                    pair[0]
                )));
            }
        }
        Ok(graph)
    }

    /// `0 - 1 - ... - (n-1)`.
    pub fn line(n: usize) -> Result<Graph, TopologyError> {
        check_nodes(n)?;
        let edges: Vec<(Node, Node)> = (1..n as Node).map(|i| (i - 1, i)).collect();
        Graph::from_edges(n, &edges)
    }

    /// A line closed into a cycle: at least 3 nodes.
    pub fn ring(n: usize) -> Result<Graph, TopologyError> {
        if n < 3 {
            return Err(TopologyError(format!(
                "a ring needs 3 nodes or more, not {n}"
            )));
        }
        check_nodes(n)?;
        let mut edges: Vec<(Node, Node)> = (1..n as Node).map(|i| (i - 1, i)).collect();
        edges.push((n as Node - 1, 0));
        Graph::from_edges(n, &edges)
    }

    /// A random `degree`-regular simple graph on `n` nodes, from the configuration
    /// model: every node gets `degree` stubs, the stubs are shuffled and paired, and a
    /// pairing with a self loop or a repeated edge is thrown away and drawn again, so
    /// every such graph is equally likely. Returns it with the number of pairings drawn.
    /// The same `rng` state gives the same graph (the perf bench's 200 servents are
    /// built this way, with its seed).
    pub fn random_regular(
        n: usize,
        degree: usize,
        rng: &mut Rng,
    ) -> Result<(Graph, usize), TopologyError> {
        if !(n * degree).is_multiple_of(2) || n <= degree {
            return Err(TopologyError(format!(
                "no {degree}-regular simple graph on {n} nodes"
            )));
        }
        let mut stubs: Vec<Node> = (0..n * degree).map(|s| (s / degree) as Node).collect();
        'pairing: for pairing in 1..=MAX_PAIRINGS {
            rng.shuffle(&mut stubs);
            let mut adj = vec![Vec::with_capacity(degree); n];
            for pair in stubs.chunks_exact(2) {
                let (a, b) = (pair[0], pair[1]);
                if a == b || adj[a as usize].contains(&b) {
                    continue 'pairing;
                }
                adj[a as usize].push(b);
                adj[b as usize].push(a);
            }
            return Ok((Graph::from_lists(adj), pairing));
        }
        Err(TopologyError(format!(
            "no simple {degree}-regular graph on {n} nodes in {MAX_PAIRINGS} pairings"
        )))
    }

    /// From adjacency lists already known to be simple and symmetric.
    fn from_lists(lists: Vec<Vec<Node>>) -> Graph {
        let mut offsets = Vec::with_capacity(lists.len() + 1);
        offsets.push(0u64);
        let mut targets = Vec::with_capacity(lists.iter().map(Vec::len).sum());
        for mut list in lists {
            list.sort_unstable();
            targets.extend_from_slice(&list);
            offsets.push(targets.len() as u64);
        }
        Graph { offsets, targets }
    }

    fn span(&self, node: Node) -> (usize, usize) {
        let i = node as usize;
        (self.offsets[i] as usize, self.offsets[i + 1] as usize)
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many edges.
    pub fn edge_count(&self) -> usize {
        self.targets.len() / 2
    }

    /// `node`'s neighbours, sorted.
    pub fn neighbours(&self, node: Node) -> &[Node] {
        let (from, to) = self.span(node);
        &self.targets[from..to]
    }

    pub fn adjacent(&self, a: Node, b: Node) -> bool {
        self.neighbours(a).binary_search(&b).is_ok()
    }

    /// Every edge once, as `(lower, higher)`.
    pub fn edges(&self) -> impl Iterator<Item = (Node, Node)> + '_ {
        (0..self.len() as Node).flat_map(move |a| {
            self.neighbours(a)
                .iter()
                .copied()
                .filter(move |&b| b > a)
                .map(move |b| (a, b))
        })
    }

    /// Smallest, mean and largest degree (all 0 for a graph without nodes).
    pub fn degree_stats(&self) -> DegreeStats {
        let degrees = self.offsets.windows(2).map(|w| (w[1] - w[0]) as usize);
        let min = degrees.clone().min().unwrap_or(0);
        let max = degrees.max().unwrap_or(0);
        let mean = match self.len() {
            0 => 0.0,
            n => self.targets.len() as f64 / n as f64,
        };
        DegreeStats { min, mean, max }
    }

    /// Hops from `from` to every node ([`UNREACHABLE`] where no path goes).
    pub fn distances(&self, from: Node) -> Vec<u32> {
        let mut dist = vec![UNREACHABLE; self.len()];
        dist[from as usize] = 0;
        let mut queue = VecDeque::from([from]);
        while let Some(a) = queue.pop_front() {
            let d = dist[a as usize];
            for &b in self.neighbours(a) {
                if dist[b as usize] == UNREACHABLE {
                    dist[b as usize] = d + 1;
                    queue.push_back(b);
                }
            }
        }
        dist
    }
}

/// Asserts what every graph must be: each neighbour list sorted, without the node
/// itself or repeats, and every edge seen from both ends.
#[cfg(test)]
fn assert_simple(g: &Graph) {
    for a in 0..g.len() as Node {
        let list = g.neighbours(a);
        assert!(list.windows(2).all(|p| p[0] < p[1]), "{a}: {list:?}");
        assert!(!list.contains(&a), "{a} is its own neighbour");
        for &b in list {
            assert!(g.adjacent(b, a), "{a}-{b} one way only");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degree_stats_of_a_line() {
        let stats = Graph::line(5).unwrap().degree_stats();
        assert_eq!((stats.min, stats.max), (1, 2));
        assert!((stats.mean - 8.0 / 5.0).abs() < 1e-12);
        let none = Graph::from_edges(0, &[]).unwrap().degree_stats();
        assert_eq!((none.min, none.mean, none.max), (0, 0.0, 0));
    }

    #[test]
    fn from_edges_builds_sorted_symmetric_lists() {
        let g = Graph::from_edges(4, &[(2, 0), (0, 1), (3, 0)]).unwrap();
        assert_eq!(g.neighbours(0), &[1, 2, 3]);
        assert_eq!(g.neighbours(3), &[0]);
        assert_eq!(g.edge_count(), 3);
        assert_eq!(g.edges().collect::<Vec<_>>(), vec![(0, 1), (0, 2), (0, 3)]);
    }

    #[test]
    fn from_edges_refuses_loops_repeats_and_strangers() {
        assert!(Graph::from_edges(3, &[(1, 1)]).is_err());
        let repeat = Graph::from_edges(3, &[(0, 1), (1, 0)]).unwrap_err();
        assert!(repeat.0.contains("more than once"), "{repeat}");
        assert!(Graph::from_edges(2, &[(0, 2)]).is_err());
    }

    #[test]
    fn line_and_ring_distances() {
        let line = Graph::line(6).unwrap();
        assert_eq!(line.distances(0), vec![0, 1, 2, 3, 4, 5]);
        let ring = Graph::ring(6).unwrap();
        assert_eq!(ring.distances(0), vec![0, 1, 2, 3, 2, 1]);
        let two = Graph::from_edges(3, &[(0, 1)]).unwrap();
        assert_eq!(two.distances(0)[2], UNREACHABLE);
    }

    #[test]
    fn random_regular_graphs_are_regular_simple_and_repeatable() {
        let (a, _) = Graph::random_regular(200, 4, &mut Rng::new(1)).unwrap();
        let (b, _) = Graph::random_regular(200, 4, &mut Rng::new(1)).unwrap();
        assert_eq!(a, b);
        for node in 0..200 {
            let n = a.neighbours(node);
            assert_eq!(n.len(), 4);
            assert!(!n.contains(&node));
            for &m in n {
                assert!(a.adjacent(m, node));
            }
        }
        assert!(Graph::random_regular(5, 5, &mut Rng::new(1)).is_err());
    }
}
