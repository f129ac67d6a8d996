//! The random and regular graph families `tp3-sim` floods: grids, Erdős–Rényi,
//! Barabási–Albert (power-law degrees), Watts–Strogatz (small world), and a random
//! regular graph built in one pairing for sizes where the exact method of
//! [`Graph::random_regular`] takes minutes. Each runs in time about linear in its
//! edges, so a million nodes take a second or so; each checks its parameters with a
//! `check_*` function that [`super::Topology`]'s parser shares.

use super::{check_edges, check_nodes, Graph, Node, TopologyError};
use crate::sim::rng::Rng;

fn err(text: String) -> Result<(), TopologyError> {
    Err(TopologyError(text))
}

pub(super) fn check_grid(w: usize, h: usize, torus: bool) -> Result<(), TopologyError> {
    let min = if torus { 3 } else { 1 };
    if w < min || h < min {
        let what = if torus { "a torus" } else { "a grid" };
        return err(format!("{what} needs sides of {min} or more, not {w}x{h}"));
    }
    check_nodes(w.saturating_mul(h))
}

pub(super) fn check_regular(n: usize, degree: usize) -> Result<(), TopologyError> {
    check_nodes(n)?;
    check_edges(n as f64 * degree as f64 / 2.0)?;
    if degree == 0 || n <= degree || !(n * degree).is_multiple_of(2) {
        return err(format!("no {degree}-regular simple graph on {n} nodes"));
    }
    Ok(())
}

pub(super) fn check_erdos_renyi(n: usize, mean_degree: f64) -> Result<(), TopologyError> {
    check_nodes(n)?;
    let most = n.saturating_sub(1) as f64;
    if !(mean_degree >= 0.0 && mean_degree <= most) {
        return err(format!(
            "a mean degree of {mean_degree} on {n} nodes: expected 0 to {most}"
        ));
    }
    check_edges(n as f64 * mean_degree / 2.0)
}

pub(super) fn check_barabasi_albert(n: usize, m: usize) -> Result<(), TopologyError> {
    check_nodes(n)?;
    check_edges(n as f64 * m as f64)?;
    if m == 0 || n <= m {
        return err(format!(
            "Barabási–Albert with {m} edges per node on {n} nodes: expected 1 to {} edges per node",
            n.saturating_sub(1)
        ));
    }
    Ok(())
}

pub(super) fn check_watts_strogatz(n: usize, k: usize, beta: f64) -> Result<(), TopologyError> {
    check_nodes(n)?;
    check_edges(n as f64 * k as f64 / 2.0)?;
    if k < 2 || !k.is_multiple_of(2) || k >= n {
        return err(format!(
            "Watts–Strogatz with {k} neighbours on {n} nodes: expected an even number from 2 to {}",
            n.saturating_sub(1)
        ));
    }
    if !(0.0..=1.0).contains(&beta) {
        return err(format!("a rewiring probability of {beta}: expected 0 to 1"));
    }
    Ok(())
}

impl Graph {
    /// A `w` by `h` lattice, each node joined to its 4 (or fewer, on the border)
    /// neighbours; node `y * w + x` is at column `x`, row `y`.
    pub fn grid(w: usize, h: usize) -> Result<Graph, TopologyError> {
        Graph::lattice(w, h, false)
    }

    /// A grid whose borders wrap around: every node has 4 neighbours. Sides of 3 or
    /// more, since shorter ones would join two nodes twice.
    pub fn torus(w: usize, h: usize) -> Result<Graph, TopologyError> {
        Graph::lattice(w, h, true)
    }

    fn lattice(w: usize, h: usize, torus: bool) -> Result<Graph, TopologyError> {
        check_grid(w, h, torus)?;
        let at = |x: usize, y: usize| (y * w + x) as Node;
        let mut edges = Vec::with_capacity(2 * w * h);
        for y in 0..h {
            for x in 0..w {
                if x + 1 < w || torus {
                    edges.push((at(x, y), at((x + 1) % w, y)));
                }
                if y + 1 < h || torus {
                    edges.push((at(x, y), at(x, (y + 1) % h)));
                }
            }
        }
        Graph::from_edges(w * h, &edges)
    }

    /// G(n, p) with p = `mean_degree` / (n − 1): every pair joined independently with
    /// probability p. Built in O(n + edges) by drawing the geometric gap to the next
    /// edge rather than a coin per pair (Batagelj and Brandes, 2005). Small mean
    /// degrees leave some nodes isolated and the graph in pieces, as they should.
    pub fn erdos_renyi(n: usize, mean_degree: f64, rng: &mut Rng) -> Result<Graph, TopologyError> {
        check_erdos_renyi(n, mean_degree)?;
        if n < 2 || mean_degree == 0.0 {
            return Graph::from_edges(n, &[]);
        }
        let p = mean_degree / (n - 1) as f64;
        let mut edges: Vec<(Node, Node)> =
            Vec::with_capacity((mean_degree * n as f64 / 2.0 * 1.01) as usize + 16);
        if p >= 1.0 {
            for b in 1..n as Node {
                edges.extend((0..b).map(|a| (a, b)));
            }
            return Graph::from_edges(n, &edges);
        }
        // Pairs (v, w), w < v, in order; `w` jumps over the pairs left out.
        let log_q = (1.0 - p).ln();
        let limit = (n as f64) * (n as f64);
        let (mut v, mut w) = (1u64, -1i64);
        let n64 = n as u64;
        while v < n64 {
            let skip = ((1.0 - rng.unit()).ln() / log_q).floor().min(limit);
            w += 1 + skip as i64;
            while w >= v as i64 && v < n64 {
                w -= v as i64;
                v += 1;
            }
            if v < n64 {
                edges.push((w as Node, v as Node));
            }
        }
        Graph::from_edges(n, &edges)
    }

    /// Preferential attachment: a complete graph on `m` + 1 nodes, then each new node
    /// joined to `m` distinct earlier nodes chosen with probability proportional to
    /// their degree, so degrees follow a power law (P(k) ~ k^-3) with hubs far above
    /// the mean of about 2m. O(n·m): a node appears in a list once per edge end, and
    /// a uniform pick from that list is a pick by degree.
    pub fn barabasi_albert(n: usize, m: usize, rng: &mut Rng) -> Result<Graph, TopologyError> {
        check_barabasi_albert(n, m)?;
        let seed = m + 1;
        let edge_count = seed * m / 2 + (n - seed) * m;
        let mut edges: Vec<(Node, Node)> = Vec::with_capacity(edge_count);
        let mut ends: Vec<Node> = Vec::with_capacity(2 * edge_count);
        for b in 1..seed as Node {
            for a in 0..b {
                edges.push((a, b));
                ends.extend([a, b]);
            }
        }
        let mut targets: Vec<Node> = Vec::with_capacity(m);
        for v in seed as Node..n as Node {
            targets.clear();
            while targets.len() < m {
                let t = ends[rng.below(ends.len())];
                if !targets.contains(&t) {
                    targets.push(t);
                }
            }
            for &t in &targets {
                edges.push((t, v));
                ends.extend([t, v]);
            }
        }
        Graph::from_edges(n, &edges)
    }

    /// Small world: a ring lattice, each node joined to its `k` nearest (`k`/2 on each
    /// side), then each lattice edge (u, u + j), taken by j then u, rewired with
    /// probability `beta` to (u, w) for a uniform w that is neither u nor already a
    /// neighbour of u (Watts and Strogatz, 1998). `beta` 0 is the lattice, 1 close to
    /// a random graph.
    pub fn watts_strogatz(
        n: usize,
        k: usize,
        beta: f64,
        rng: &mut Rng,
    ) -> Result<Graph, TopologyError> {
        check_watts_strogatz(n, k, beta)?;
        let mut adj: Vec<Vec<Node>> = vec![Vec::with_capacity(k + 2); n];
        for u in 0..n {
            for j in 1..=k / 2 {
                let v = (u + j) % n;
                adj[u].push(v as Node);
                adj[v].push(u as Node);
            }
        }
        for j in 1..=k / 2 {
            for u in 0..n {
                if rng.unit() >= beta || adj[u].len() >= n - 1 {
                    continue;
                }
                let v = ((u + j) % n) as Node;
                let w = loop {
                    let w = rng.below(n) as Node;
                    if w as usize != u && !adj[u].contains(&w) {
                        break w;
                    }
                };
                remove_one(&mut adj[u], v);
                remove_one(&mut adj[v as usize], u as Node);
                adj[u].push(w);
                adj[w as usize].push(u as Node);
            }
        }
        Ok(Graph::from_lists(adj))
    }

    /// A random `degree`-regular simple graph, fast at any size: the stubs are
    /// shuffled and paired once, as in [`Graph::random_regular`], and the few self
    /// loops and repeated edges of that pairing (about (d² − 1)/4 of them, whatever
    /// n) are then removed by random switches — a bad edge {a, b} and a random edge
    /// {c, d} become {a, c} and {b, d} when neither exists — which keep every degree.
    ///
    /// The difference from [`Graph::random_regular`]: that one draws whole pairings
    /// until one is simple, so every simple graph is exactly equally likely, but needs
    /// about e^((d²−1)/4) pairings (40 at degree 4, ~1 s each at a million nodes).
    /// This one is close to uniform (the switches touch a handful of edges among
    /// n·d/2) and takes one pairing (a new one only where switches get stuck, in
    /// graphs nearly complete, such as K5). A million nodes of degree 4: about 1 s. The same `rng` state gives the same graph; it is
    /// a different graph from `random_regular`'s for the same seed.
    pub fn random_regular_fast(
        n: usize,
        degree: usize,
        rng: &mut Rng,
    ) -> Result<Graph, TopologyError> {
        check_regular(n, degree)?;
        let d = degree;
        let mut stubs: Vec<Node> = (0..n * d).map(|s| (s / d) as Node).collect();
        let mut slots = vec![0 as Node; n * d];
        for _ in 0..super::MAX_PAIRINGS {
            rng.shuffle(&mut stubs);
            if repair(&mut stubs, &mut slots, d, rng) {
                for list in slots.chunks_exact_mut(d) {
                    list.sort_unstable();
                }
                return Ok(Graph {
                    offsets: (0..=n as u64).map(|i| i * d as u64).collect(),
                    targets: slots,
                });
            }
        }
        Err(TopologyError(format!(
            "no simple {degree}-regular graph on {n} nodes found in {} pairings",
            super::MAX_PAIRINGS
        )))
    }
}

/// Makes the pairing `stubs` (edge i is `(stubs[2i], stubs[2i + 1])`) simple by
/// switches, filling `slots` with each node's `d` neighbours; false if it gives up
/// (in graphs so dense that few switches are possible, such as K5), for the caller to
/// draw another pairing.
fn repair(stubs: &mut [Node], slots: &mut [Node], d: usize, rng: &mut Rng) -> bool {
    // slots[a * d..(a + 1) * d] are a's neighbours as a multiset (a loop puts a there
    // twice). Degrees never change.
    let n = slots.len() / d;
    let mut fill = vec![0usize; n];
    for pair in stubs.chunks_exact(2) {
        for (x, y) in [(pair[0], pair[1]), (pair[1], pair[0])] {
            slots[x as usize * d + fill[x as usize]] = y;
            fill[x as usize] += 1;
        }
    }
    drop(fill);
    let edges = stubs.len() / 2;
    let count = |slots: &[Node], a: Node, b: Node| {
        slots[a as usize * d..(a as usize + 1) * d]
            .iter()
            .filter(|&&x| x == b)
            .count()
    };
    let bad = |slots: &[Node], a: Node, b: Node| a == b || count(slots, a, b) > 1;
    let mut queue: Vec<usize> = (0..edges)
        .filter(|&i| bad(slots, stubs[2 * i], stubs[2 * i + 1]))
        .collect();
    let mut budget = 1000 + 100 * queue.len();
    while let Some(&i) = queue.last() {
        let (a, b) = (stubs[2 * i], stubs[2 * i + 1]);
        if !bad(slots, a, b) {
            queue.pop();
            continue;
        }
        if budget == 0 {
            return false;
        }
        budget -= 1;
        let j = rng.below(edges);
        let (mut c, mut e) = (stubs[2 * j], stubs[2 * j + 1]);
        if rng.next_u64() & 1 == 1 {
            std::mem::swap(&mut c, &mut e);
        }
        // The new edges {a, c} and {b, e}: no loop, neither there already, and not
        // the same edge twice.
        if j == i
            || a == c
            || b == e
            || (a == b && c == e)
            || (a == e && b == c)
            || count(slots, a, c) > 0
            || count(slots, b, e) > 0
        {
            continue;
        }
        for (node, old, new) in [(a, b, c), (b, a, e), (c, e, a), (e, c, b)] {
            let list = &mut slots[node as usize * d..(node as usize + 1) * d];
            if let Some(slot) = list.iter_mut().find(|x| **x == old) {
                *slot = new;
            }
        }
        stubs[2 * i + 1] = c;
        stubs[2 * j] = b;
        stubs[2 * j + 1] = e;
    }
    true
}

fn remove_one(list: &mut Vec<Node>, x: Node) {
    if let Some(at) = list.iter().position(|&y| y == x) {
        list.swap_remove(at);
    }
}

#[cfg(test)]
mod tests {
    use super::super::assert_simple;
    use super::*;

    fn degrees(g: &Graph) -> Vec<usize> {
        (0..g.len() as Node)
            .map(|a| g.neighbours(a).len())
            .collect()
    }

    #[test]
    fn grids_and_tori_have_their_neighbours() {
        let g = Graph::grid(4, 3).unwrap();
        assert_simple(&g);
        assert_eq!((g.len(), g.edge_count()), (12, 3 * 3 + 4 * 2));
        assert_eq!(g.neighbours(0), &[1, 4]);
        assert_eq!(g.neighbours(5), &[1, 4, 6, 9]);
        assert_eq!(g.distances(0)[11], 3 + 2);
        let t = Graph::torus(4, 3).unwrap();
        assert_simple(&t);
        assert_eq!(t.edge_count(), 2 * 12);
        assert!(degrees(&t).iter().all(|&d| d == 4));
        assert_eq!(t.neighbours(0), &[1, 3, 4, 8]);
        assert_eq!(Graph::grid(1, 1).unwrap().edge_count(), 0);
        assert!(Graph::grid(0, 3).is_err());
        assert!(Graph::torus(2, 5).is_err());
    }

    #[test]
    fn erdos_renyi_has_the_mean_degree_asked_and_repeats_per_seed() {
        let g = Graph::erdos_renyi(4000, 6.0, &mut Rng::new(3)).unwrap();
        assert_simple(&g);
        let mean = g.degree_stats().mean;
        // Edges ~ Binomial(n(n-1)/2, p): sd of the mean degree ~ sqrt(6 * 2 / 4000).
        assert!((mean - 6.0).abs() < 0.3, "mean degree {mean}");
        assert_eq!(g, Graph::erdos_renyi(4000, 6.0, &mut Rng::new(3)).unwrap());
        assert_ne!(g, Graph::erdos_renyi(4000, 6.0, &mut Rng::new(4)).unwrap());
        let full = Graph::erdos_renyi(6, 5.0, &mut Rng::new(1)).unwrap();
        assert_eq!(full.edge_count(), 15);
        let empty = Graph::erdos_renyi(50, 0.0, &mut Rng::new(1)).unwrap();
        assert_eq!((empty.len(), empty.edge_count()), (50, 0));
        assert!(Graph::erdos_renyi(10, 9.5, &mut Rng::new(1)).is_err());
        assert!(Graph::erdos_renyi(10, -1.0, &mut Rng::new(1)).is_err());
    }

    #[test]
    fn barabasi_albert_has_hubs_far_above_its_mean() {
        let (n, m) = (5000, 2);
        let g = Graph::barabasi_albert(n, m, &mut Rng::new(5)).unwrap();
        assert_simple(&g);
        assert_eq!(g.edge_count(), 3 + (n - 3) * m);
        let stats = g.degree_stats();
        assert_eq!(stats.min, m);
        assert!((stats.mean - 4.0).abs() < 0.01, "{stats:?}");
        // A power law: the largest hub near sqrt(n) * m, a random graph's near 12.
        assert!(stats.max as f64 > 10.0 * stats.mean, "{stats:?}");
        assert_eq!(g, Graph::barabasi_albert(n, m, &mut Rng::new(5)).unwrap());
        assert!(Graph::barabasi_albert(3, 3, &mut Rng::new(1)).is_err());
        assert!(Graph::barabasi_albert(3, 0, &mut Rng::new(1)).is_err());
    }

    #[test]
    fn watts_strogatz_rewires_a_ring_lattice() {
        let lattice = Graph::watts_strogatz(10, 4, 0.0, &mut Rng::new(1)).unwrap();
        let mut edges: Vec<(Node, Node)> = Vec::new();
        for u in 0..10 {
            edges.push((u, (u + 1) % 10));
            edges.push((u, (u + 2) % 10));
        }
        assert_eq!(lattice, Graph::from_edges(10, &edges).unwrap());
        assert_eq!(
            Graph::watts_strogatz(7, 2, 0.0, &mut Rng::new(1)).unwrap(),
            Graph::ring(7).unwrap()
        );
        let g = Graph::watts_strogatz(2000, 6, 0.2, &mut Rng::new(9)).unwrap();
        assert_simple(&g);
        assert_eq!(g.edge_count(), 6000);
        let kept = (0..2000u32)
            .filter(|&u| (1..=3).all(|j| g.adjacent(u, (u + j) % 2000)))
            .count();
        assert!(
            kept > 0 && kept < 2000,
            "{kept} nodes kept all lattice edges"
        );
        assert_eq!(
            g,
            Graph::watts_strogatz(2000, 6, 0.2, &mut Rng::new(9)).unwrap()
        );
        let random = Graph::watts_strogatz(50, 4, 1.0, &mut Rng::new(2)).unwrap();
        assert_simple(&random);
        assert_eq!(random.edge_count(), 100);
        assert!(Graph::watts_strogatz(10, 3, 0.1, &mut Rng::new(1)).is_err());
        assert!(Graph::watts_strogatz(4, 4, 0.1, &mut Rng::new(1)).is_err());
        assert!(Graph::watts_strogatz(10, 2, 1.5, &mut Rng::new(1)).is_err());
    }

    #[test]
    fn fast_random_regular_graphs_are_regular_simple_and_repeatable() {
        for (n, d, seed) in [
            (2000, 4, 1),
            (1000, 3, 2),
            (300, 8, 3),
            (6, 5, 4),
            (5, 4, 5),
        ] {
            let g = Graph::random_regular_fast(n, d, &mut Rng::new(seed)).unwrap();
            assert_simple(&g);
            assert!(degrees(&g).iter().all(|&k| k == d), "{n} {d}");
            assert_eq!(g.edge_count(), n * d / 2);
            assert_eq!(
                g,
                Graph::random_regular_fast(n, d, &mut Rng::new(seed)).unwrap()
            );
        }
        assert!(Graph::random_regular_fast(5, 3, &mut Rng::new(1)).is_err());
        assert!(Graph::random_regular_fast(4, 4, &mut Rng::new(1)).is_err());
    }
}
