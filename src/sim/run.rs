//! One simulation run: servents built on a graph, keys placed, queries sent from
//! random origins one after another, each flooded until nothing is in flight.
//! The binary and the scale benchmark both run through here.

use std::time::{Duration, Instant};

use super::network::{choose_holders, Network, QueryKind, Settings};
use super::rng::Rng;
use super::stats::{QueryOutcome, Summary};
use super::topology::{Graph, Node, TopologyError};

/// What to run on a graph.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Experiment {
    pub settings: Settings,
    pub kind: QueryKind,
    pub queries: usize,
    /// The share of servents holding the key.
    pub key_fraction: f64,
    /// Seeds the key's placement, the origins and the latencies, each from its own
    /// stream: runs that differ only in TTL or rule place the same keys and ask from
    /// the same origins.
    pub seed: u64,
    /// Every query from this servent, rather than from random ones.
    pub origin: Option<Node>,
}

impl Default for Experiment {
    fn default() -> Experiment {
        Experiment {
            settings: Settings::default(),
            kind: QueryKind::Key,
            queries: 1000,
            key_fraction: 0.01,
            seed: 1,
            origin: None,
        }
    }
}

/// Salts for the seed's independent streams.
const HOLDERS: u64 = 0x486f_6c64_6572_7321;
const ORIGINS: u64 = 0x4f72_6967_696e_7321;
const LATENCY: u64 = 0x4c61_7465_6e63_7921;

/// What a run did, and how long it took for real.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub outcomes: Vec<QueryOutcome>,
    pub summary: Summary,
    /// Making the servents and their links.
    pub build: Duration,
    /// Flooding the queries.
    pub simulate: Duration,
    /// The number of key holders.
    pub holders: usize,
}

/// Runs `experiment` on `graph`.
pub fn run(graph: &Graph, experiment: &Experiment) -> Result<RunResult, TopologyError> {
    if graph.is_empty() {
        return Err(TopologyError("a network needs at least one servent".into()));
    }
    if let Some(origin) = experiment.origin.filter(|&o| o as usize >= graph.len()) {
        return Err(TopologyError(format!(
            "no servent {origin}: the graph has {} (0 to {})",
            graph.len(),
            graph.len() - 1
        )));
    }
    let started = Instant::now();
    let seed = experiment.seed;
    let holders = choose_holders(
        graph.len(),
        experiment.key_fraction,
        &mut Rng::new(seed ^ HOLDERS),
    );
    let mut network = Network::new(graph, &holders, &experiment.settings, seed ^ LATENCY)?;
    let build = started.elapsed();
    let started = Instant::now();
    let mut origins = Rng::new(seed ^ ORIGINS);
    let outcomes: Vec<QueryOutcome> = (0..experiment.queries)
        .map(|_| {
            let random = origins.below(graph.len()) as Node;
            let origin = experiment.origin.unwrap_or(random);
            network.query(origin, experiment.kind)
        })
        .collect();
    let simulate = started.elapsed();
    // Freeing a million servents is part of no measure.
    drop(network);
    Ok(RunResult {
        summary: Summary::of(&outcomes),
        outcomes,
        build,
        simulate,
        holders: holders.len(),
    })
}
