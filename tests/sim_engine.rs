//! The simulator's engine against what the protocol says must happen: the line of 6,
//! the diamond, a ring, random regular graphs; determinism, per-link FIFO, and a
//! topology query's answers naming exactly the servents its flood reached.

use std::collections::{BTreeSet, HashMap};

use tp3kv::servent::TtlRule;
use tp3kv::sim::latency::Latency;
use tp3kv::sim::network::{node_of, Network, QueryKind, Settings, VALUE};
use tp3kv::sim::rng::Rng;
use tp3kv::sim::run::{run, Experiment};
use tp3kv::sim::stats::QueryOutcome;
use tp3kv::sim::topology::{Graph, Node, UNREACHABLE};

fn settings(rule: TtlRule) -> Settings {
    Settings {
        ttl_rule: rule,
        ..Settings::default()
    }
}

/// One query from `origin` on `graph` with the key at `holders`: its outcome, and
/// who answered (sorted).
fn ask(graph: &Graph, holders: &[Node], s: Settings, origin: Node) -> (QueryOutcome, Vec<Node>) {
    let mut net = Network::new(graph, holders, &s, 1).unwrap();
    net.record();
    let outcome = net.query(origin, QueryKind::Key);
    let mut answerers: Vec<Node> = net.detail().unwrap().answers.iter().map(|a| a.0).collect();
    answerers.sort_unstable();
    for (_, value) in &net.detail().unwrap().answers {
        assert_eq!(value, VALUE);
    }
    (outcome, answerers)
}

#[test]
fn the_line_of_6_reaches_4_hops_under_the_seed_rule_and_3_under_2019() {
    // docs/PROTOCOL.md section 7: s1..s6, the client on s1 (index 0 here).
    let line = Graph::line(6).unwrap();
    let (o, answers) = ask(&line, &[4], settings(TtlRule::Seed), 0);
    assert_eq!(answers, vec![4], "s5, 4 hops away, answers");
    assert_eq!(
        (o.reached, o.frames, o.ttl_spent, o.duplicates),
        (5, 4, 1, 0)
    );
    assert_eq!(
        ask(&line, &[5], settings(TtlRule::Seed), 0).1,
        Vec::<Node>::new()
    );

    let (o, answers) = ask(&line, &[4], settings(TtlRule::Assignment2019), 0);
    assert!(
        answers.is_empty(),
        "s5 is never reached under the 2019 rule"
    );
    assert_eq!((o.reached, o.frames, o.ttl_spent), (4, 3, 1));
    assert_eq!(
        ask(&line, &[3], settings(TtlRule::Assignment2019), 0).1,
        vec![3]
    );
}

#[test]
fn a_larger_ttl_goes_further_and_a_ttl_of_0_one_hop() {
    let line = Graph::line(12).unwrap();
    for (ttl, reach) in [(0, 2), (1, 3), (5, 7), (9, 11)] {
        let s = Settings {
            ttl,
            ..Settings::default()
        };
        let (o, _) = ask(&line, &[], s, 0);
        assert_eq!(o.reached, reach, "TTL {ttl}");
    }
}

#[test]
fn the_diamond_answers_once_from_the_far_end() {
    let diamond = Graph::from_edges(4, &[(0, 1), (0, 2), (1, 3), (2, 3)]).unwrap();
    let (o, answers) = ask(&diamond, &[3], Settings::default(), 0);
    assert_eq!(answers, vec![3]);
    assert_eq!(o.reached, 4);
    // 0 sends 2; 1 and 2 send on to 3; 3 passes the first on to the other: a copy
    // each way between 3 and the side it heard second from, both dropped.
    assert_eq!((o.frames, o.duplicates), (5, 2));
    assert!(o.last_answer.is_some());
}

#[test]
fn a_ring_is_reached_4_hops_each_way() {
    let (o, _) = ask(&Graph::ring(10).unwrap(), &[], Settings::default(), 3);
    assert_eq!((o.reached, o.frames, o.duplicates), (9, 8, 0));
    // On a ring of 8 the two fronts meet at the far servent and on the last link.
    let (o, answers) = ask(&Graph::ring(8).unwrap(), &[4], Settings::default(), 0);
    assert_eq!(answers, vec![4]);
    assert_eq!(o.reached, 8);
    assert_eq!(o.frames, o.reached - 1 + o.duplicates);
}

#[test]
fn on_random_regular_graphs_reach_stays_within_the_hops_and_the_counts_add_up() {
    let (graph, _) = Graph::random_regular(300, 4, &mut Rng::new(9)).unwrap();
    let latency = "exp:1ms".parse::<Latency>().unwrap();
    for rule in [TtlRule::Seed, TtlRule::Assignment2019] {
        let s = Settings {
            ttl_rule: rule,
            latency,
            ..Settings::default()
        };
        let mut net = Network::new(&graph, &[], &s, 4).unwrap();
        net.record();
        net.trace();
        let mut delivered = 0;
        for origin in [0, 17, 123, 299] {
            let o = net.query(origin, QueryKind::Key);
            let dist = graph.distances(origin);
            // docs/PROTOCOL.md section 7: TTL 3 goes 4 hops (seed), 3 (2019).
            let hops = match rule {
                TtlRule::Seed => 4,
                TtlRule::Assignment2019 => 3,
            };
            let within = dist.iter().filter(|&&d| d <= hops).count() as u64;
            assert!(
                o.reached <= within && o.reached <= 161,
                "{o:?} within {within}"
            );
            for &node in &net.detail().unwrap().reached {
                assert!(dist[node as usize] <= hops && dist[node as usize] != UNREACHABLE);
            }
            // Every frame is delivered, and is a servent's first copy or a duplicate.
            let frames = net.deliveries().len() - delivered;
            delivered = net.deliveries().len();
            assert_eq!(o.frames, frames as u64);
            assert_eq!(o.frames, o.reached - 1 + o.duplicates, "{o:?}");
            assert_eq!((o.misdirected, o.closes), (0, 0));
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_another() {
    let (graph, _) = Graph::random_regular(500, 4, &mut Rng::new(2)).unwrap();
    let experiment = |seed| Experiment {
        settings: Settings {
            latency: "0.5ms..3ms".parse().unwrap(),
            ..Settings::default()
        },
        queries: 50,
        key_fraction: 0.05,
        seed,
        ..Experiment::default()
    };
    let a = run(&graph, &experiment(7)).unwrap();
    let b = run(&graph, &experiment(7)).unwrap();
    let c = run(&graph, &experiment(8)).unwrap();
    assert_eq!(a.outcomes, b.outcomes);
    assert_ne!(a.outcomes, c.outcomes);
    assert_eq!(a.holders, 25);
    assert_eq!(a.summary.queries, 50);
}

#[test]
fn frames_on_a_link_arrive_in_the_order_they_were_sent() {
    // One query sends at most one copy down a link unless full reach sends it again:
    // with it, and random latencies, later copies must still queue behind earlier
    // ones. (The unit tests in src/sim/network.rs drive several frames down one link.)
    let (graph, _) = Graph::random_regular(200, 4, &mut Rng::new(3)).unwrap();
    let s = Settings {
        latency: "exp:1ms".parse().unwrap(),
        full_reach: true,
        ..Settings::default()
    };
    let mut net = Network::new(&graph, &[], &s, 5).unwrap();
    net.trace();
    for origin in 0..20 {
        net.query(origin, QueryKind::Topology);
    }
    let mut last: HashMap<(Node, Node), u64> = HashMap::new();
    let mut previous = 0;
    for d in net.deliveries() {
        assert!(d.delivered_at >= d.sent_at && d.delivered_at >= previous);
        previous = d.delivered_at;
        let before = last.insert((d.from, d.to), d.sent).unwrap_or(0);
        assert!(
            d.sent > before,
            "{d:?} overtook an earlier frame on its link"
        );
    }
    // Random latencies do reorder frames across links.
    let sends: Vec<u64> = net.deliveries().iter().map(|d| d.sent).collect();
    assert!(sends.windows(2).any(|w| w[0] > w[1]));
}

#[test]
fn a_topology_query_is_answered_by_exactly_the_servents_it_reached() {
    let (graph, _) = Graph::random_regular(200, 4, &mut Rng::new(1)).unwrap();
    let s = Settings {
        latency: "exp:1ms".parse().unwrap(),
        ..Settings::default()
    };
    let mut net = Network::new(&graph, &[], &s, 11).unwrap();
    net.record();
    for origin in [0, 50, 199] {
        let o = net.query(origin, QueryKind::Topology);
        let detail = net.detail().unwrap();
        let reached: BTreeSet<Node> = detail.reached.iter().copied().collect();
        let mut named = BTreeSet::new();
        for (from, path) in &detail.answers {
            // Each answer is the path from the origin to the servent that sent it.
            let hops: Vec<Node> = path
                .split(' ')
                .map(|entry| node_of(entry.parse().unwrap()).unwrap())
                .collect();
            assert_eq!(hops[0], origin);
            assert_eq!(hops.last(), Some(from));
            for pair in hops.windows(2) {
                assert!(graph.adjacent(pair[0], pair[1]), "{path}");
            }
            named.insert(*from);
        }
        assert_eq!(named, reached);
        assert_eq!(o.answers, o.reached);
    }
}

#[test]
fn with_full_reach_every_servent_within_the_hops_is_reached_whatever_the_latencies() {
    let (graph, _) = Graph::random_regular(200, 4, &mut Rng::new(1)).unwrap();
    for (rule, hops) in [(TtlRule::Seed, 4), (TtlRule::Assignment2019, 3)] {
        for latency in ["exp:1ms", "1ms..9ms"] {
            let s = Settings {
                ttl_rule: rule,
                full_reach: true,
                latency: latency.parse().unwrap(),
                ..Settings::default()
            };
            let mut net = Network::new(&graph, &[], &s, 3).unwrap();
            net.record();
            let (mut lost_without, mut again) = (0, 0);
            for origin in (0..200).step_by(7) {
                let o = net.query(origin, QueryKind::Topology);
                let dist = graph.distances(origin);
                let within: BTreeSet<Node> =
                    (0..200).filter(|&n| dist[n as usize] <= hops).collect();
                let reached: BTreeSet<Node> =
                    net.detail().unwrap().reached.iter().copied().collect();
                assert_eq!(reached, within, "{rule:?} {latency} from {origin}");
                assert_eq!(o.answers, o.reached);
                // Every frame is a first copy, a duplicate, or a copy passed on again.
                assert_eq!(o.frames, o.reached - 1 + o.duplicates + o.reforwarded);
                again += o.reforwarded;
                let plain = Settings {
                    full_reach: false,
                    ..s
                };
                let mut first_copy_wins = Network::new(&graph, &[], &plain, 3).unwrap();
                lost_without += within.len() as u64
                    - first_copy_wins.query(origin, QueryKind::Topology).reached;
            }
            // Without it, first-copy-wins races lose servents on this graph; with it,
            // the copies that came the short way late are what reached them.
            assert!(lost_without > 0, "{rule:?} {latency}");
            assert!(again > 0, "{rule:?} {latency}");
        }
    }
}

#[test]
fn links_slower_than_the_daemon_s_seen_minute_still_make_duplicates() {
    // A copy an hour late is still a copy: answered once, dropped as a duplicate.
    let torus = Graph::torus(10, 10).unwrap();
    let s = Settings {
        latency: "3600s".parse().unwrap(),
        ..Settings::default()
    };
    let mut net = Network::new(&torus, &[], &s, 1).unwrap();
    for _ in 0..3 {
        let o = net.query(0, QueryKind::Topology);
        assert_eq!(o.answers, o.reached, "{o:?}");
        assert_eq!(o.frames, o.reached - 1 + o.duplicates, "{o:?}");
    }
    // Queries do not remember each other, whatever the clock says between them.
    let ring = Graph::ring(3).unwrap();
    let s = Settings {
        ttl: 1,
        latency: "50s".parse().unwrap(),
        ..Settings::default()
    };
    let mut net = Network::new(&ring, &[], &s, 1).unwrap();
    for _ in 0..1000 {
        let o = net.query(0, QueryKind::Topology);
        assert_eq!((o.reached, o.answers, o.duplicates), (3, 3, 2), "{o:?}");
    }
}

#[test]
fn a_topology_path_past_400_bytes_is_dropped_and_counted() {
    // Each entry is "10.0.0.N:5000" and a space: the 28th servent's would pass 400.
    let line = Graph::line(100).unwrap();
    let s = Settings {
        ttl: 40,
        ..Settings::default()
    };
    let mut net = Network::new(&line, &[], &s, 1).unwrap();
    let o = net.query(0, QueryKind::Topology);
    assert_eq!(
        (o.reached, o.answers, o.info_too_long),
        (28, 27, 1),
        "{o:?}"
    );
    assert_eq!(o.ttl_spent, 0);
}
