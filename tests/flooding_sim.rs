//! Reliable flooding, as pure state machines in an in-memory network: the seed's two
//! topologies (diamond, line of 6), a ring, random graphs, TTL reach, never back to
//! the sender, topology strings, and the roles each kind of link may play.

mod sim;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4};

use sim::{addr_of, flood_seq, flood_ttl, Lcg, Network, NodeId};
use tp3kv::protocol::{Flood, Frame, Text};
use tp3kv::servent::{DropReason, QueryId, Verdict};

/// Node 3 of a diamond 0–{1,2}–3 holds `far`; everyone holds `all`.
fn diamond() -> Network {
    let mut net = Network::new(&["all a0", "all a1", "all a2", "all a3\nfar FAR"]);
    net.link(0, 1);
    net.link(0, 2);
    net.link(1, 3);
    net.link(2, 3);
    net
}

fn line_of_6() -> Network {
    let stores: Vec<String> = (0..6).map(|i| format!("k{i} v{i}\nall a{i}")).collect();
    let stores: Vec<&str> = stores.iter().map(String::as_str).collect();
    let mut net = Network::new(&stores);
    net.chain(&[0, 1, 2, 3, 4, 5]);
    net
}

#[test]
fn diamond_far_servent_hears_twice_answers_once() {
    let mut net = diamond();
    let client = net.attach_client(0, 7000);
    net.lookup(client, 1, "far");
    assert_eq!(net.answerers(1), vec![3]);
    assert_eq!(net.answers[0].value, "FAR");
    assert_eq!(
        net.answers[0].to,
        SocketAddrV4::new(Ipv4Addr::new(10, 9, 9, 9), 7000)
    );
    // s4 got the query from both s2 and s3 and retransmitted it once (to the other).
    assert_eq!(net.received_by(3, 1).len(), 2);
    assert_eq!(net.sent_by(3, 1).len(), 1);
    // Every node retransmitted at most once per neighbour.
    for node in 0..4 {
        let sent = net.sent_by(node, 1);
        let targets: HashSet<NodeId> = sent.iter().map(|d| d.to).collect();
        assert_eq!(targets.len(), sent.len(), "node {node} sent a copy twice");
    }
}

#[test]
fn diamond_every_holder_answers_once() {
    let mut net = diamond();
    let client = net.attach_client(0, 7000);
    net.lookup(client, 9, "all");
    assert_eq!(net.answerers(9), vec![0, 1, 2, 3]);
    let mut values: Vec<&str> = net.answers.iter().map(|a| a.value.as_str()).collect();
    values.sort_unstable();
    assert_eq!(values, ["a0", "a1", "a2", "a3"]);
}

#[test]
fn line_of_6_reaches_five_servents() {
    let mut net = line_of_6();
    let client = net.attach_client(0, 7000);
    net.lookup(client, 1, "k4");
    assert_eq!(net.answerers(1), vec![4]);
    // s5 received TTL 0 and did not forward; s6 never heard of the query.
    let at_s5 = net.received_by(4, 1);
    assert_eq!(at_s5.len(), 1);
    assert_eq!(flood_ttl(&at_s5[0].frame), Some(0));
    assert!(net.sent_by(4, 1).is_empty());
    assert!(net.received_by(5, 1).is_empty());

    net.lookup(client, 2, "k5");
    assert!(net.answerers(2).is_empty(), "s6 must not be reached");

    net.lookup(client, 3, "all");
    assert_eq!(net.answerers(3), vec![0, 1, 2, 3, 4]);
}

#[test]
fn ttl_counts_down_along_the_line() {
    let mut net = line_of_6();
    let client = net.attach_client(0, 7000);
    net.lookup(client, 1, "nothing");
    for (node, ttl) in [(1, 3), (2, 2), (3, 1), (4, 0)] {
        let got = net.received_by(node, 1);
        assert_eq!(got.len(), 1, "node {node}");
        assert_eq!(flood_ttl(&got[0].frame), Some(ttl), "node {node}");
    }
    // Four retransmissions in all, as the seed says.
    assert_eq!(net.delivered.len(), 4);
}

#[test]
fn topology_strings_list_the_path() {
    let mut net = line_of_6();
    let client = net.attach_client(0, 7000);
    net.topology(client, 5);
    let mut answers: Vec<(NodeId, String)> = net
        .answers
        .iter()
        .map(|a| (a.from, a.value.clone()))
        .collect();
    answers.sort();
    let names: Vec<String> = (0..5).map(|i| addr_of(i).to_string()).collect();
    let expected: Vec<(NodeId, String)> = (0..5).map(|i| (i, names[..=i].join(" "))).collect();
    assert_eq!(answers, expected);
    assert_eq!(answers[0].1, "10.0.0.1:5000");
    assert_eq!(
        answers[4].1,
        "10.0.0.1:5000 10.0.0.2:5001 10.0.0.3:5002 10.0.0.4:5003 10.0.0.5:5004"
    );
}

#[test]
fn ring_has_no_loops_and_one_answer_each() {
    let count = 8;
    let mut net = Network::new(&vec!["k v"; count]);
    let mut ring: Vec<NodeId> = (0..count).collect();
    ring.push(0);
    net.chain(&ring);
    let client = net.attach_client(0, 7000);
    net.lookup(client, 1, "k");
    // Within 4 hops either way of node 0: all but node 4 of an 8-ring... node 4 is
    // exactly 4 hops away both ways, so everyone is reached, once.
    assert_eq!(net.answerers(1), (0..count).collect::<Vec<_>>());
    for node in 0..count {
        assert!(
            net.sent_by(node, 1).len() <= 2,
            "node {node} retransmitted too much"
        );
    }
    let total = net.delivered.len();
    net.run();
    assert_eq!(net.delivered.len(), total, "the flood must die out");

    // A bigger ring: the far side (over 4 hops) is never reached.
    let mut net = Network::new(&["k v"; 12]);
    let mut ring: Vec<NodeId> = (0..12).collect();
    ring.push(0);
    net.chain(&ring);
    let client = net.attach_client(0, 7000);
    net.lookup(client, 1, "k");
    assert_eq!(net.answerers(1), vec![0, 1, 2, 3, 4, 8, 9, 10, 11]);
}

/// Checks the invariants every flood must keep, whatever the graph and order.
/// `start` is the servent the client asked: its first copy came from the client.
fn check_invariants(net: &Network, start: NodeId, seq: u32) {
    let mut answered = HashSet::new();
    for answer in net.answers.iter().filter(|a| a.seq == seq) {
        assert!(
            answered.insert(answer.from),
            "node {} answered twice",
            answer.from
        );
    }
    for node in 0..net.nodes.len() {
        let sent = net.sent_by(node, seq);
        let mut targets = HashSet::new();
        for d in &sent {
            assert!(
                targets.insert(d.to),
                "node {node} sent the query to {} twice",
                d.to
            );
        }
        if node == start {
            continue;
        }
        // Never back to the link the first copy came from.
        if let Some(first) = net.received_by(node, seq).first() {
            assert!(
                sent.iter().all(|d| d.to != first.from),
                "node {node} sent the query back to {}",
                first.from
            );
            let ttl_in = flood_ttl(&first.frame).unwrap();
            assert!(ttl_in <= 3, "node {node} got TTL {ttl_in}");
            for d in &sent {
                assert_eq!(flood_ttl(&d.frame), Some(ttl_in - 1), "node {node} TTL");
            }
            if ttl_in == 0 {
                assert!(sent.is_empty(), "node {node} forwarded at TTL 0");
            }
        }
    }
}

/// A connected random graph of 5 to 34 servents, all holding `k`, with a client on a
/// random one that has just looked `k` up (seq 1). Returns the network and that servent.
fn random_lookup(seed: u64, shuffle: bool) -> (Network, NodeId) {
    let mut rng = Lcg(seed);
    let count = 5 + rng.below(30);
    let mut net = Network::new(&vec!["k v"; count]);
    if shuffle {
        net = net.shuffled(seed);
    }
    // A random spanning tree keeps it connected; extra edges add cycles.
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
    let start = rng.below(count);
    let client = net.attach_client(start, 7000);
    net.lookup(client, 1, "k");
    check_invariants(&net, start, 1);
    (net, start)
}

#[test]
fn random_graphs_reach_exactly_four_hops_in_send_order() {
    for seed in 0..40 {
        let (net, start) = random_lookup(seed, false);
        // Delivered in send order, the first copy to arrive came the shortest way, so
        // the reach is exactly the servents within four hops.
        let within: Vec<NodeId> = net
            .distances(start)
            .iter()
            .enumerate()
            .filter(|(_, d)| d.is_some_and(|d| d <= 4))
            .map(|(n, _)| n)
            .collect();
        assert_eq!(net.answerers(1), within, "seed {seed}");
    }
}

#[test]
fn random_graphs_in_any_order_keep_the_invariants() {
    for seed in 0..40 {
        let (net, start) = random_lookup(seed ^ 0xfeed, true);
        let dist = net.distances(start);
        for node in net.answerers(1) {
            assert!(
                dist[node].is_some_and(|d| d <= 4),
                "seed {seed}: node {node} too far"
            );
        }
        assert!(net.answerers(1).contains(&start));
    }
}

#[test]
fn same_seq_from_two_clients_are_two_queries() {
    let mut net = diamond();
    let a = net.attach_client(0, 7000);
    let b = net.attach_client(0, 7001);
    net.lookup(a, 1, "far");
    net.lookup(b, 1, "far");
    assert_eq!(net.answers.len(), 2);
    // A repeat of the same query is a duplicate everywhere.
    net.lookup(a, 1, "far");
    assert_eq!(net.answers.len(), 2);
}

fn flood(ttl: u16, seq: u32, key: &str) -> Flood {
    Flood {
        ttl,
        seq,
        client: SocketAddrV4::new(Ipv4Addr::new(10, 9, 9, 9), 7000),
        text: Text::try_from(key).unwrap(),
    }
}

#[test]
fn a_ttl_above_3_is_treated_as_spent() {
    let mut net = line_of_6();
    net.inject(0, 1, Frame::KeyFlood(flood(u16::MAX, 1, "all")));
    // Only a broken or hostile peer sends it: s2 answers, and it goes no further.
    assert_eq!(net.answerers(1), vec![1]);
    assert!(net.sent_by(1, 1).is_empty());
    assert_eq!(net.nodes[1].counters().ttl_above_max, 1);
    // TTL 3 itself is the protocol's own, and goes on as usual.
    net.inject(0, 1, Frame::KeyFlood(flood(3, 2, "all")));
    assert_eq!(net.answerers(2), vec![1, 2, 3, 4]);
    assert_eq!(net.nodes[1].counters().ttl_above_max, 1);
    check_invariants(&net, 0, 2);
}

#[test]
fn ttl_zero_is_answered_not_forwarded() {
    let mut net = line_of_6();
    net.inject(0, 1, Frame::KeyFlood(flood(0, 1, "k1")));
    assert_eq!(net.answerers(1), vec![1]);
    assert!(net.sent_by(1, 1).is_empty());
}

#[test]
fn oversized_topology_info_is_dropped_not_truncated() {
    let mut net = line_of_6();
    let long = "x".repeat(395);
    net.inject(0, 1, Frame::TopoFlood(flood(3, 1, &long)));
    assert!(net.answers.is_empty());
    assert!(net.sent_by(1, 1).is_empty());
}

#[test]
fn roles_are_enforced() {
    let mut net = diamond();
    // A client may not inject floods (it could aim answers at any host).
    let client = net.attach_client(0, 7000);
    net.client_sends(client, Frame::KeyFlood(flood(3, 1, "far")));
    assert_eq!(net.closed.len(), 1);
    assert!(net.closed[0].2.contains("KEYFLOOD"), "{:?}", net.closed);
    // Nothing before ID.
    let stranger = net.open_unidentified(0);
    net.lookup(stranger, 2, "far");
    assert_eq!(net.closed.len(), 2);
    assert!(net.closed[1].2.contains("not sent ID"), "{:?}", net.closed);
    // A neighbour may not send client requests, nor RESP.
    net.inject(
        1,
        0,
        Frame::KeyReq {
            seq: 3,
            key: Text::try_from("far").unwrap(),
        },
    );
    assert_eq!(net.closed.len(), 3);
    net.inject(
        2,
        0,
        Frame::Resp {
            seq: 4,
            value: Text::default(),
        },
    );
    assert_eq!(net.closed.len(), 4);
    assert!(net.answers.is_empty());
    assert!(net.delivered.iter().all(|d| flood_seq(&d.frame).is_none()));
    // The closed links are gone on both sides.
    assert!(net.nodes[0].neighbours().is_empty());
    assert_eq!(net.nodes[1].neighbours().len(), 1);
}

#[test]
fn a_client_cannot_pose_as_a_servent_later() {
    let mut net = diamond();
    let client = net.attach_client(0, 7000);
    net.client_sends(client, Frame::Id { port: 0 });
    assert_eq!(net.closed.len(), 1);
    assert_eq!(net.nodes[0].neighbours().len(), 2);
}

#[test]
fn a_loopback_client_is_named_by_an_address_the_neighbours_reach() {
    let mut net = line_of_6();
    let client = net.attach_loopback_client(0, 7000);
    net.lookup(client, 1, "k2");
    // s1 is 10.0.0.1 to its neighbour: the flood names the client there, not 127.0.0.1.
    let expected = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 7000);
    let Frame::KeyFlood(flood) = &net.received_by(1, 1)[0].frame else {
        panic!("{:?}", net.delivered)
    };
    assert_eq!(flood.client, expected);
    assert_eq!(net.answerers(1), vec![2]);
    assert_eq!(net.answers[0].to, expected);

    // The topology names s1 by that address too, never 127.0.0.1.
    net.topology(client, 2);
    let own = net
        .answers
        .iter()
        .find(|a| a.seq == 2 && a.from == 0)
        .unwrap();
    assert_eq!(own.value, "10.0.0.1:5000");
    assert!(net.answers.iter().all(|a| !a.value.contains("127.0.0.1")));
    // A copy coming back round is recognised: s1 handled the query once.
    assert_eq!(net.answers.iter().filter(|a| a.seq == 2).count(), 5);
}

#[test]
fn everything_on_one_host_stays_on_loopback() {
    // No neighbours: nobody else to reach the client, so 127.0.0.1 is right.
    let mut net = Network::new(&["k v"]);
    let client = net.attach_loopback_client(0, 7000);
    net.lookup(client, 1, "k");
    assert_eq!(
        net.answers[0].to,
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7000)
    );
    net.topology(client, 2);
    assert_eq!(net.answers[1].value, "127.0.0.1:5000");
}

#[test]
fn advertise_overrides_every_address() {
    let store = tp3kv::store::Store::parse(b"k v").unwrap();
    let config = tp3kv::servent::Config {
        advertise: Some(Ipv4Addr::new(203, 0, 113, 7)),
        ..Default::default()
    };
    let mut servent = tp3kv::servent::Servent::new(store, 5000, config);
    let local = "127.0.0.1:5000".parse().unwrap();
    let peer = "127.0.0.1:40000".parse().unwrap();
    servent.handle_link_up(1, tp3kv::servent::Direction::Inbound, local, peer);
    let now = std::time::Instant::now();
    servent.handle_frame(1, Frame::Id { port: 7000 }, now);
    servent.handle_frame(1, Frame::TopoReq { seq: 3 }, now);
    let action = servent.poll_action().unwrap();
    let tp3kv::servent::Action::Answer {
        to,
        frame: Frame::Resp { value, .. },
    } = action
    else {
        panic!("{action:?}")
    };
    assert_eq!(to, SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), 7000));
    assert_eq!(value.to_lossy(), "203.0.113.7:5000");
}

/// Every verdict each node reported, in order.
fn verdicts(net: &mut Network) -> Vec<Vec<Verdict>> {
    net.nodes
        .iter_mut()
        .map(|node| std::iter::from_fn(|| node.poll_verdict()).collect())
        .collect()
}

#[test]
fn verdicts_say_where_a_query_started_and_why_it_went_no_further() {
    let mut net = diamond();
    let client = net.attach_client(0, 7000);
    net.lookup(client, 1, "far");
    assert!(
        verdicts(&mut net).iter().all(Vec::is_empty),
        "none unless asked for"
    );

    for node in &mut net.nodes {
        node.report_verdicts();
    }
    net.lookup(client, 2, "far");
    let query = QueryId::new(SocketAddrV4::new(Ipv4Addr::new(10, 9, 9, 9), 7000), 2);
    let got = verdicts(&mut net);
    assert_eq!(got[0].first(), Some(&Verdict::Started(query)), "{got:?}");
    let duplicates = got
        .iter()
        .flatten()
        .filter(|v| **v == Verdict::Dropped(query, DropReason::Duplicate))
        .count();
    assert_eq!(duplicates, 2, "{got:?}");
    assert_eq!(got.iter().flatten().count(), 3, "{got:?}");

    let mut net = line_of_6();
    for node in &mut net.nodes {
        node.report_verdicts();
    }
    let client = net.attach_client(0, 7000);
    net.topology(client, 3);
    let query = QueryId::new(SocketAddrV4::new(Ipv4Addr::new(10, 9, 9, 9), 7000), 3);
    let got = verdicts(&mut net);
    assert_eq!(got[0], [Verdict::Started(query)]);
    for node in 1..4 {
        assert!(got[node].is_empty(), "node {node}: {got:?}");
    }
    assert_eq!(got[4], [Verdict::Dropped(query, DropReason::TtlSpent)]);
    assert!(got[5].is_empty(), "{got:?}");
}
