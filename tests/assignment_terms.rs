//! Our binaries in the assignment's own terms: `servent --ttl-rule 2019` (decrement,
//! then test: one hop less reach than the seed's rule, docs/PROTOCOL.md section 7) and
//! `client --lang pt` or a Portuguese locale (the assignment's exact messages).

mod common;
mod sim;

use std::collections::HashSet;

use common::*;
use sim::{addr_of, flood_ttl, Lcg, Network, NodeId};
use tp3kv::protocol::{self, Frame, Text};
use tp3kv::servent::{Config, Servent, TtlRule};
use tp3kv::store::Store;

const RULES: [TtlRule; 2] = [TtlRule::Seed, TtlRule::Assignment2019];

/// A network of `count` servents following `rule`, node i holding `k{i} v{i}` and
/// `all a{i}` plus `extra` for every node.
fn network(count: usize, rule: TtlRule, extra: &str) -> Network {
    let stores: Vec<String> = (0..count)
        .map(|i| format!("k{i} v{i}\nall a{i}\n{extra}"))
        .collect();
    let stores: Vec<&str> = stores.iter().map(String::as_str).collect();
    let mut net = Network::new(&stores);
    for (i, store) in stores.iter().enumerate() {
        let config = Config {
            ttl_rule: rule,
            ..Config::default()
        };
        net.nodes[i] = Servent::new(
            Store::parse(store.as_bytes()).unwrap(),
            addr_of(i).port(),
            config,
        );
    }
    net
}

fn line_of_6(rule: TtlRule) -> Network {
    let mut net = network(6, rule, "");
    net.chain(&[0, 1, 2, 3, 4, 5]);
    net
}

/// One row of docs/PROTOCOL.md section 7's table: the TTL a servent of the line
/// receives (None: never reached; s1 gets the request) and the TTL it forwards with
/// (None: it does not).
type Row = (Option<u16>, Option<u16>);

fn expected_line(rule: TtlRule) -> [Row; 6] {
    match rule {
        TtlRule::Seed => [
            (None, Some(3)),
            (Some(3), Some(2)),
            (Some(2), Some(1)),
            (Some(1), Some(0)),
            (Some(0), None),
            (None, None),
        ],
        TtlRule::Assignment2019 => [
            (None, Some(3)),
            (Some(3), Some(2)),
            (Some(2), Some(1)),
            (Some(1), None),
            (None, None),
            (None, None),
        ],
    }
}

#[test]
fn the_line_of_6_follows_the_protocol_table_under_both_rules() {
    for rule in RULES {
        let mut net = line_of_6(rule);
        let client = net.attach_client(0, 7000);
        net.lookup(client, 1, "all");
        for (node, (received, forwarded)) in expected_line(rule).into_iter().enumerate() {
            let got: Vec<u16> = net
                .received_by(node, 1)
                .iter()
                .filter_map(|d| flood_ttl(&d.frame))
                .collect();
            assert_eq!(got, Vec::from_iter(received), "{rule:?} s{}", node + 1);
            let sent: Vec<u16> = net
                .sent_by(node, 1)
                .iter()
                .filter_map(|d| flood_ttl(&d.frame))
                .collect();
            // On a line, one copy on (s6 has no one to send it to).
            let forwarded = forwarded.filter(|_| node < 5);
            assert_eq!(sent, Vec::from_iter(forwarded), "{rule:?} s{}", node + 1);
        }
        let last = match rule {
            TtlRule::Seed => 4,
            TtlRule::Assignment2019 => 3,
        };
        assert_eq!(net.answerers(1), (0..=last).collect::<Vec<_>>(), "{rule:?}");
    }
}

#[test]
fn under_the_2019_rule_s4_is_the_last_to_answer_a_key_or_a_topology_query() {
    let mut net = line_of_6(TtlRule::Assignment2019);
    let client = net.attach_client(0, 7000);
    net.lookup(client, 1, "k3");
    assert_eq!(net.answerers(1), vec![3]);
    net.lookup(client, 2, "k4");
    assert!(net.answerers(2).is_empty(), "s5 must not be reached");
    net.topology(client, 3);
    let mut answers: Vec<(NodeId, String)> = net
        .answers
        .iter()
        .filter(|a| a.seq == 3)
        .map(|a| (a.from, a.value.clone()))
        .collect();
    answers.sort();
    let names: Vec<String> = (0..4).map(|i| addr_of(i).to_string()).collect();
    let expected: Vec<(NodeId, String)> = (0..4).map(|i| (i, names[..=i].join(" "))).collect();
    assert_eq!(answers, expected);
}

#[test]
fn a_ttl_above_3_from_a_neighbour_is_spent_under_both_rules() {
    for rule in RULES {
        let mut net = line_of_6(rule);
        for ttl in [4, 255, 65535] {
            let seq = u32::from(ttl);
            let frame = Frame::KeyFlood(protocol::Flood {
                ttl,
                seq,
                client: "10.9.9.9:7000".parse().unwrap(),
                text: Text::new(b"all").unwrap(),
            });
            net.inject(0, 1, frame);
            assert_eq!(net.answerers(seq), vec![1], "{rule:?} TTL {ttl}");
            assert!(net.sent_by(1, seq).is_empty(), "{rule:?} TTL {ttl}");
        }
    }
}

/// A connected random graph of 5 to 34 servents following `rule`, all holding `all`.
fn random_graph(seed: u64, rule: TtlRule) -> Network {
    let mut rng = Lcg(seed);
    let count = 5 + rng.below(30);
    let mut net = network(count, rule, "");
    let mut edges = HashSet::new();
    for node in 1..count {
        edges.insert((rng.below(node), node));
    }
    let extra = rng.below(2 * count);
    while edges.len() < count - 1 + extra {
        let (a, b) = (rng.below(count), rng.below(count));
        if a != b && !edges.contains(&(b, a)) {
            edges.insert((a, b));
        }
    }
    let mut edges: Vec<_> = edges.into_iter().collect();
    edges.sort_unstable();
    for (a, b) in edges {
        net.link(a, b);
    }
    net
}

#[test]
fn on_random_graphs_the_reach_is_4_hops_for_the_seed_and_3_for_2019() {
    for rule in RULES {
        let hops = match rule {
            TtlRule::Seed => 4,
            TtlRule::Assignment2019 => 3,
        };
        for seed in 0..40 {
            let mut net = random_graph(seed, rule);
            let start = Lcg(seed ^ 0x5eed).below(net.nodes.len());
            let client = net.attach_client(start, 7000);
            net.lookup(client, 1, "all");
            // Delivered in send order, the first copy to arrive came the shortest way.
            let within: Vec<NodeId> = net
                .distances(start)
                .iter()
                .enumerate()
                .filter(|(_, d)| d.is_some_and(|d| d <= hops))
                .map(|(n, _)| n)
                .collect();
            assert_eq!(net.answerers(1), within, "{rule:?} seed {seed}");
        }
    }
}

#[test]
fn real_servents_with_ttl_rule_2019_stop_at_s4() {
    let _heavy = heavy();
    let dir = TempDir::new("ttl-2019");
    // Started from the far end, so each names an already-listening neighbour.
    let mut nodes: Vec<Node> = Vec::new();
    for i in (0..6).rev() {
        let store = format!("k{} v{}\n", i + 1, i + 1);
        let neighbours: Vec<&Node> = nodes.last().into_iter().collect();
        let node = servent_with(
            &dir,
            &format!("s{}", i + 1),
            &store,
            &neighbours,
            &["--ttl-rule", "2019"],
        );
        nodes.push(node);
    }
    nodes.reverse();
    for (i, node) in nodes.iter().enumerate() {
        wait_links(node, if i == 0 || i == 5 { 1 } else { 2 });
    }
    let run = client(&nodes[0], "? k4\n? k5\n");
    let lines = run.lines();
    assert_eq!(lines, [format!("v4 {}", nodes[3].local())], "{run:?}");
    assert!(run.stderr.contains("no answer received"), "{run:?}");
    assert!(
        nodes[0].log().contains("TTL rule 2019"),
        "{}",
        nodes[0].log()
    );
    // s4 received TTL 1 and, decrementing first, kept it; s5 never heard of it.
    wait_for("s4 to log the spent TTL", || {
        nodes[3]
            .log()
            .contains("decremented to 0 (2019 TTL rule), not forwarded")
    });
    assert!(!nodes[4].log().contains("KEYFLOOD"), "{}", nodes[4].log());
}
