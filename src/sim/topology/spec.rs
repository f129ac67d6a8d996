//! [`Topology`]: a graph to build, as `tp3-sim` takes it on its command line
//! (`regular:1000000:4`, `ba:10000:2`, `file:overlay.txt`) and prints it back in
//! its table rows and plot legends.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::generators::{
    check_barabasi_albert, check_erdos_renyi, check_grid, check_regular, check_watts_strogatz,
};
use super::{check_nodes, Graph, TopologyError};
use crate::sim::rng::Rng;

/// The accepted forms, for error messages.
const FORMS: &str = "line:N, ring:N, grid:WxH, torus:WxH, regular:N:D, er:N:MEANDEG, \
                     ba:N:M, ws:N:K:BETA or file:PATH";

/// Expected pairings × stubs under which `regular:N:D` uses the exact (and the perf
/// bench's) [`Graph::random_regular`]: about a second of work. The bench's 200
/// servents of degree 4 (~34,000) are far below; a million (~170 million) far above.
const EXACT_REGULAR_BUDGET: f64 = 4e6;

/// A graph to build: its kind and size, from a spec such as `er:10000:4`.
#[derive(Debug, Clone, PartialEq)]
pub enum Topology {
    /// `line:N`: [`Graph::line`].
    Line(usize),
    /// `ring:N`: [`Graph::ring`].
    Ring(usize),
    /// `grid:WxH`: [`Graph::grid`].
    Grid { w: usize, h: usize },
    /// `torus:WxH`: [`Graph::torus`].
    Torus { w: usize, h: usize },
    /// `regular:N:D`: a random D-regular graph, by [`Graph::random_regular`] (exactly
    /// uniform, the perf bench's graph for the same seed) where that is expected to
    /// take about a second at most (N·D·e^((D²−1)/4) ≤ 4·10⁶: up to ~23,000 nodes at
    /// degree 4), by [`Graph::random_regular_fast`] above.
    Regular { n: usize, degree: usize },
    /// `er:N:MEANDEG`: [`Graph::erdos_renyi`].
    ErdosRenyi { n: usize, mean_degree: f64 },
    /// `ba:N:M`: [`Graph::barabasi_albert`].
    BarabasiAlbert { n: usize, m: usize },
    /// `ws:N:K:BETA`: [`Graph::watts_strogatz`].
    WattsStrogatz { n: usize, k: usize, beta: f64 },
    /// `file:PATH`: [`Graph::from_edge_list`] of the file's text.
    File(PathBuf),
}

impl Topology {
    /// The graph, its random choices drawn from `rng`.
    pub fn build(&self, rng: &mut Rng) -> Result<Graph, TopologyError> {
        match self {
            Topology::Line(n) => Graph::line(*n),
            Topology::Ring(n) => Graph::ring(*n),
            Topology::Grid { w, h } => Graph::grid(*w, *h),
            Topology::Torus { w, h } => Graph::torus(*w, *h),
            Topology::Regular { n, degree } => {
                if exact_regular_is_cheap(*n, *degree) {
                    Graph::random_regular(*n, *degree, rng).map(|(graph, _)| graph)
                } else {
                    Graph::random_regular_fast(*n, *degree, rng)
                }
            }
            Topology::ErdosRenyi { n, mean_degree } => Graph::erdos_renyi(*n, *mean_degree, rng),
            Topology::BarabasiAlbert { n, m } => Graph::barabasi_albert(*n, *m, rng),
            Topology::WattsStrogatz { n, k, beta } => Graph::watts_strogatz(*n, *k, *beta, rng),
            Topology::File(path) => {
                let shown = path.display();
                let text = std::fs::read_to_string(path).map_err(|e| {
                    TopologyError(format!(
                        "cannot read {shown}: {}",
                        crate::os_error::plain(&e)
                    ))
                })?;
                Graph::from_edge_list(&text).map_err(|e| TopologyError(format!("{shown}: {e}")))
            }
        }
    }

    /// How many nodes the graph will have, where the spec says (not for a file).
    pub fn nodes(&self) -> Option<usize> {
        match *self {
            Topology::Line(n)
            | Topology::Ring(n)
            | Topology::Regular { n, .. }
            | Topology::ErdosRenyi { n, .. }
            | Topology::BarabasiAlbert { n, .. }
            | Topology::WattsStrogatz { n, .. } => Some(n),
            Topology::Grid { w, h } | Topology::Torus { w, h } => Some(w.saturating_mul(h)),
            Topology::File(_) => None,
        }
    }

    /// The parameters' check each generator makes, without building anything: what a
    /// command line can refuse before it starts.
    fn check(&self) -> Result<(), TopologyError> {
        match *self {
            Topology::Line(0) => Err(TopologyError("a line needs 1 node or more".into())),
            Topology::Line(n) => check_nodes(n),
            Topology::File(_) => Ok(()),
            Topology::Ring(n) if n < 3 => Err(TopologyError(format!(
                "a ring needs 3 nodes or more, not {n}"
            ))),
            Topology::Ring(n) => check_nodes(n),
            Topology::Grid { w, h } => check_grid(w, h, false),
            Topology::Torus { w, h } => check_grid(w, h, true),
            Topology::Regular { n, degree } => check_regular(n, degree),
            Topology::ErdosRenyi { n, mean_degree } => check_erdos_renyi(n, mean_degree),
            Topology::BarabasiAlbert { n, m } => check_barabasi_albert(n, m),
            Topology::WattsStrogatz { n, k, beta } => check_watts_strogatz(n, k, beta),
        }
    }
}

/// Whether the whole-pairing rejection of [`Graph::random_regular`] is expected to
/// finish in about a second (see [`EXACT_REGULAR_BUDGET`]).
fn exact_regular_is_cheap(n: usize, degree: usize) -> bool {
    let d = degree as f64;
    let pairings = ((d * d - 1.0) / 4.0).exp();
    n as f64 * d * pairings <= EXACT_REGULAR_BUDGET
}

impl FromStr for Topology {
    type Err = TopologyError;

    /// A spec, checked as far as it can be without building the graph (a file is
    /// only read by [`Topology::build`]).
    fn from_str(spec: &str) -> Result<Topology, TopologyError> {
        let bad = || TopologyError(format!("bad topology {spec:?}: expected {FORMS}"));
        let (kind, rest) = spec.split_once(':').ok_or_else(bad)?;
        let fields: Vec<&str> = rest.split(':').collect();
        let whole = |text: &str, what: &str| {
            text.parse::<usize>().map_err(|_| {
                TopologyError(format!(
                    "bad topology {spec:?}: {what} {text:?} is not a whole number"
                ))
            })
        };
        let real = |text: &str, what: &str| {
            text.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| {
                    TopologyError(format!(
                        "bad topology {spec:?}: {what} {text:?} is not a number"
                    ))
                })
        };
        let sides = |text: &str| {
            let (w, h) = text.split_once('x').ok_or_else(bad)?;
            Ok::<_, TopologyError>((whole(w, "width")?, whole(h, "height")?))
        };
        let topology = match (kind, &fields[..]) {
            ("file", _) if !rest.is_empty() => Topology::File(PathBuf::from(rest)),
            ("line", [n]) => Topology::Line(whole(n, "N")?),
            ("ring", [n]) => Topology::Ring(whole(n, "N")?),
            ("grid", [wh]) => {
                let (w, h) = sides(wh)?;
                Topology::Grid { w, h }
            }
            ("torus", [wh]) => {
                let (w, h) = sides(wh)?;
                Topology::Torus { w, h }
            }
            ("regular", [n, d]) => Topology::Regular {
                n: whole(n, "N")?,
                degree: whole(d, "D")?,
            },
            ("er", [n, mean]) => Topology::ErdosRenyi {
                n: whole(n, "N")?,
                mean_degree: real(mean, "MEANDEG")?,
            },
            ("ba", [n, m]) => Topology::BarabasiAlbert {
                n: whole(n, "N")?,
                m: whole(m, "M")?,
            },
            ("ws", [n, k, beta]) => Topology::WattsStrogatz {
                n: whole(n, "N")?,
                k: whole(k, "K")?,
                beta: real(beta, "BETA")?,
            },
            _ => return Err(bad()),
        };
        topology
            .check()
            .map_err(|e| TopologyError(format!("bad topology {spec:?}: {e}")))?;
        Ok(topology)
    }
}

impl fmt::Display for Topology {
    /// The spec it was parsed from (numbers in their shortest form).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topology::Line(n) => write!(f, "line:{n}"),
            Topology::Ring(n) => write!(f, "ring:{n}"),
            Topology::Grid { w, h } => write!(f, "grid:{w}x{h}"),
            Topology::Torus { w, h } => write!(f, "torus:{w}x{h}"),
            Topology::Regular { n, degree } => write!(f, "regular:{n}:{degree}"),
            Topology::ErdosRenyi { n, mean_degree } => write!(f, "er:{n}:{mean_degree}"),
            Topology::BarabasiAlbert { n, m } => write!(f, "ba:{n}:{m}"),
            Topology::WattsStrogatz { n, k, beta } => write!(f, "ws:{n}:{k}:{beta}"),
            Topology::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::topology::MAX_NODES;

    #[test]
    fn specs_parse_and_print_back() {
        for spec in [
            "line:6",
            "ring:10",
            "grid:30x20",
            "torus:4x3",
            "regular:1000000:4",
            "er:10000:4",
            "er:500:2.5",
            "ba:10000:2",
            "ws:1000:4:0.1",
            "ws:1000:4:0",
            "file:some dir/graph.txt",
        ] {
            let topology: Topology = spec.parse().unwrap();
            assert_eq!(topology.to_string(), spec);
        }
        assert_eq!(
            "ws:100:6:0.25".parse::<Topology>().unwrap(),
            Topology::WattsStrogatz {
                n: 100,
                k: 6,
                beta: 0.25
            }
        );
        assert_eq!(
            "file:a:b".parse::<Topology>().unwrap(),
            Topology::File(PathBuf::from("a:b"))
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong_in_one_sentence() {
        let error = |spec: &str| spec.parse::<Topology>().unwrap_err().to_string();
        let forms = "expected line:N, ring:N, grid:WxH, torus:WxH, regular:N:D, \
                     er:N:MEANDEG, ba:N:M, ws:N:K:BETA or file:PATH";
        for spec in [
            "",
            "star:5",
            "ring",
            "ring:5:5",
            "grid:5",
            "file:",
            "regular:5",
        ] {
            assert_eq!(error(spec), format!("bad topology {spec:?}: {forms}"));
        }
        assert_eq!(
            error("regular:10:x"),
            "bad topology \"regular:10:x\": D \"x\" is not a whole number"
        );
        assert_eq!(
            error("er:10:nan"),
            "bad topology \"er:10:nan\": MEANDEG \"nan\" is not a number"
        );
        assert_eq!(
            error("regular:5:3"),
            "bad topology \"regular:5:3\": no 3-regular simple graph on 5 nodes"
        );
        assert!(error("ws:10:3:0.1").contains("an even number"));
        assert!(error("ring:2").contains("3 nodes or more"));
        assert!(error("line:0").contains("1 node or more"));
        assert!(error("ba:5:5").contains("edges per node"));
        assert!(error("er:5:7").contains("expected 0 to 4"));
    }

    #[test]
    fn sizes_past_the_simulator_s_limit_are_refused_before_anything_is_built() {
        let error = |spec: &str| spec.parse::<Topology>().unwrap_err().to_string();
        let too_many = MAX_NODES + 1;
        for spec in [
            format!("line:{too_many}"),
            format!("ring:{too_many}"),
            format!("regular:{too_many}:4"),
            format!("er:{too_many}:4"),
            format!("ba:{too_many}:2"),
            format!("ws:{too_many}:4:0.1"),
            "grid:4097x4096".to_string(),
            "line:4000000000".to_string(),
        ] {
            assert!(error(&spec).contains("at most 16777215"), "{spec}");
        }
        assert!(format!("line:{MAX_NODES}").parse::<Topology>().is_ok());
        // Links too: an extra zero on a dense spec is refused, not an abort.
        for spec in [
            "er:16000000:1000",
            "ba:16000000:1000",
            "regular:16000000:1000",
        ] {
            assert!(error(spec).contains("links: at most 50000000"), "{spec}");
        }
        assert!("ws:16000000:1000:0.1"
            .parse::<Topology>()
            .unwrap_err()
            .to_string()
            .contains("about 8000000000 links"));
        assert!("regular:1000000:4".parse::<Topology>().is_ok());
        assert_eq!("grid:3x4".parse::<Topology>().unwrap().nodes(), Some(12));
        assert_eq!("file:x".parse::<Topology>().unwrap().nodes(), None);
        let file = Graph::from_edge_list("0 4294967294\n")
            .unwrap_err()
            .to_string();
        assert!(file.contains("not a node number (0 to 16777214)"), "{file}");
        let file = Graph::from_edge_list("# nodes 16777216\n0 1\n")
            .unwrap_err()
            .to_string();
        assert!(file.contains("not a node count (0 to 16777215)"), "{file}");
    }

    #[test]
    fn build_makes_the_graph_the_spec_names() {
        let build = |spec: &str, seed| spec.parse::<Topology>().unwrap().build(&mut Rng::new(seed));
        assert_eq!(build("ring:6", 1).unwrap(), Graph::ring(6).unwrap());
        assert_eq!(build("grid:3x2", 1).unwrap(), Graph::grid(3, 2).unwrap());
        // Small regular graphs are the perf bench's: random_regular, same seed.
        let (bench, _) = Graph::random_regular(200, 4, &mut Rng::new(42)).unwrap();
        assert_eq!(build("regular:200:4", 42).unwrap(), bench);
        assert!(exact_regular_is_cheap(20_000, 4));
        assert!(!exact_regular_is_cheap(100_000, 4));
        assert!(!exact_regular_is_cheap(100, 10));
        assert_eq!(
            build("ba:300:3", 7).unwrap(),
            Graph::barabasi_albert(300, 3, &mut Rng::new(7)).unwrap()
        );
        assert_eq!(build("er:300:3", 7).unwrap().len(), 300);
        assert_eq!(build("ws:300:4:0.5", 7).unwrap().edge_count(), 600);
    }

    #[test]
    fn build_reads_edge_list_files_and_says_which_failed() {
        let dir = std::env::temp_dir().join(format!("tp3kv-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.txt");
        std::fs::write(&good, "0 1\n1 2\n").unwrap();
        let bad = dir.join("bad.txt");
        std::fs::write(&bad, "0 1\n1 1\n").unwrap();
        let missing = dir.join("missing.txt");
        let build = |path: &std::path::Path| Topology::File(path.into()).build(&mut Rng::new(1));
        assert_eq!(build(&good).unwrap(), Graph::line(3).unwrap());
        assert_eq!(
            build(&bad).unwrap_err().to_string(),
            format!("{}: line 2: \"1 1\": a self loop", bad.display())
        );
        assert_eq!(
            build(&missing).unwrap_err().to_string(),
            format!(
                "cannot read {}: no such file or directory",
                missing.display()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
