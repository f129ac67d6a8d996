//! `--full-reach` in the state machine: a copy of a query already handled that comes
//! with more TTL than any before it goes on again (never answered again), so every
//! servent within the TTL's reach handles the query whatever order copies arrive in.
//! One servent's decisions, the first-copy-wins loss it fixes, random graphs in random
//! delivery orders with and without it, and what `flood-view` makes of a re-forward.

mod sim;

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Instant;

use proptest::prelude::*;

use sim::{flood_seq, flood_ttl, Network, NodeId};
use tp3kv::protocol::{Flood, Frame, Text, INITIAL_TTL};
use tp3kv::servent::{Action, Config, Direction, DropReason, QueryId, Servent, TtlRule, Verdict};
use tp3kv::store::Store;
use tp3kv::trace::text::{render_text, Names};
use tp3kv::trace::view::{build, FORWARDED_AGAIN};
use tp3kv::trace::{Event, EventKind, FrameFields};

fn full_reach(ttl_rule: TtlRule) -> Config {
    Config {
        full_reach: true,
        ttl_rule,
        ..Config::default()
    }
}

const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 9, 9, 9), 7000);

// ---------------------------------------------------------------------------------------
// One servent
// ---------------------------------------------------------------------------------------

/// A servent holding `k`, with neighbours on links 1 to 3 and a client on link 4,
/// reporting verdicts.
fn servent(config: Config) -> Servent {
    let mut servent = Servent::new(Store::parse(b"k v").unwrap(), 5000, config);
    let local: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let now = Instant::now();
    for link in 1..=4 {
        let ip = if link == 4 {
            *CLIENT.ip()
        } else {
            Ipv4Addr::new(10, 0, 0, 9)
        };
        let peer = SocketAddr::from((ip, 40_000 + link as u16));
        servent.handle_link_up(link, Direction::Inbound, local, peer);
        let port = if link == 4 { CLIENT.port() } else { 0 };
        servent.handle_frame(link, Frame::Id { port }, now);
    }
    servent.report_verdicts();
    servent
}

fn key_flood(ttl: u16) -> Frame {
    Frame::KeyFlood(Flood {
        ttl,
        seq: 1,
        client: CLIENT,
        text: Text::try_from("k").unwrap(),
    })
}

fn topo_flood(ttl: u16, info: &str) -> Frame {
    Frame::TopoFlood(Flood {
        ttl,
        seq: 2,
        client: CLIENT,
        text: Text::try_from(info).unwrap(),
    })
}

/// Hands `frame` over on `link` and returns what the servent did about it.
fn feed(servent: &mut Servent, link: u64, frame: Frame) -> (Vec<Action>, Vec<Verdict>) {
    servent.handle_frame(link, frame, Instant::now());
    let actions = std::iter::from_fn(|| servent.poll_action()).collect();
    let verdicts = std::iter::from_fn(|| servent.poll_verdict()).collect();
    (actions, verdicts)
}

fn flood_out(except: u64, frame: Frame) -> Action {
    Action::Flood {
        except: Some(except),
        frame,
    }
}

#[test]
fn a_copy_with_more_ttl_goes_on_again_and_is_not_answered_again() {
    let mut s = servent(full_reach(TtlRule::Seed));
    let query = QueryId::new(CLIENT, 1);
    let (actions, verdicts) = feed(&mut s, 1, key_flood(0));
    assert!(
        matches!(&actions[..], [Action::Answer { .. }]),
        "{actions:?}"
    );
    assert_eq!(verdicts, [Verdict::Dropped(query, DropReason::TtlSpent)]);

    for (ttl, out) in [(2, 1), (3, 2)] {
        let (actions, verdicts) = feed(&mut s, 2, key_flood(ttl));
        assert_eq!(actions, [flood_out(2, key_flood(out))], "TTL {ttl}");
        assert!(verdicts.is_empty(), "{verdicts:?}");
    }
    for (link, ttl) in [(3, 3), (1, 2), (3, 0), (2, 1)] {
        let (actions, verdicts) = feed(&mut s, link, key_flood(ttl));
        assert!(actions.is_empty(), "TTL {ttl} is no better: {actions:?}");
        assert_eq!(verdicts, [Verdict::Dropped(query, DropReason::Duplicate)]);
    }
    let c = s.counters();
    assert_eq!((c.answers, c.reforwarded, c.duplicates), (1, 2, 4));
    assert_eq!(
        c.floods_forwarded, 4,
        "two re-forwards to two neighbours each"
    );
    assert_eq!(c.ttl_spent, 1);
}

#[test]
fn without_full_reach_a_better_copy_is_a_duplicate_as_ever() {
    let mut s = servent(Config::default());
    feed(&mut s, 1, key_flood(0));
    let (actions, verdicts) = feed(&mut s, 2, key_flood(3));
    assert!(actions.is_empty(), "{actions:?}");
    let query = QueryId::new(CLIENT, 1);
    assert_eq!(verdicts, [Verdict::Dropped(query, DropReason::Duplicate)]);
    assert_eq!(s.counters().reforwarded, 0);
}

#[test]
fn a_topology_copy_goes_on_again_with_its_own_path_and_this_servent() {
    let mut s = servent(full_reach(TtlRule::Seed));
    let (actions, _) = feed(&mut s, 1, topo_flood(0, "10.0.0.7:5007 10.0.0.8:5008"));
    let [Action::Answer { frame, .. }] = &actions[..] else {
        panic!("{actions:?}");
    };
    let Frame::Resp { value, .. } = frame else {
        panic!("{frame:?}");
    };
    assert_eq!(
        value.to_lossy(),
        "10.0.0.7:5007 10.0.0.8:5008 10.0.0.1:5000"
    );
    let (actions, verdicts) = feed(&mut s, 3, topo_flood(2, "10.0.0.6:5006"));
    assert_eq!(
        actions,
        [flood_out(3, topo_flood(1, "10.0.0.6:5006 10.0.0.1:5000"))],
        "no second answer"
    );
    assert!(verdicts.is_empty(), "{verdicts:?}");
}

#[test]
fn the_servent_a_client_asked_never_passes_an_echo_on() {
    let mut s = servent(full_reach(TtlRule::Seed));
    let (actions, verdicts) = feed(
        &mut s,
        4,
        Frame::KeyReq {
            seq: 1,
            key: Text::try_from("k").unwrap(),
        },
    );
    assert_eq!(actions.len(), 2, "an answer and a flood: {actions:?}");
    assert_eq!(verdicts, [Verdict::Started(QueryId::new(CLIENT, 1))]);
    for ttl in [3, 2, 0] {
        let (actions, _) = feed(&mut s, 1, key_flood(ttl));
        assert!(actions.is_empty(), "echo with TTL {ttl}: {actions:?}");
    }
    assert_eq!(s.counters().reforwarded, 0);
}

#[test]
fn a_ttl_above_3_counts_as_spent_and_any_real_ttl_beats_it() {
    let mut s = servent(full_reach(TtlRule::Seed));
    let (actions, _) = feed(&mut s, 1, key_flood(65535));
    assert!(
        matches!(&actions[..], [Action::Answer { .. }]),
        "answered, not forwarded: {actions:?}"
    );
    let (actions, _) = feed(&mut s, 2, key_flood(4));
    assert!(actions.is_empty(), "{actions:?}");
    let (actions, _) = feed(&mut s, 2, key_flood(1));
    assert_eq!(actions, [flood_out(2, key_flood(0))]);
}

#[test]
fn under_the_2019_rule_a_copy_that_earns_nothing_is_a_duplicate() {
    let mut s = servent(full_reach(TtlRule::Assignment2019));
    feed(&mut s, 1, key_flood(0));
    let (actions, verdicts) = feed(&mut s, 2, key_flood(1));
    assert!(
        actions.is_empty(),
        "TTL 1 goes nowhere under 2019: {actions:?}"
    );
    let query = QueryId::new(CLIENT, 1);
    assert_eq!(verdicts, [Verdict::Dropped(query, DropReason::Duplicate)]);
    let (actions, _) = feed(&mut s, 2, key_flood(2));
    assert_eq!(actions, [flood_out(2, key_flood(1))]);
}

#[test]
fn a_better_copy_from_the_only_neighbour_has_nowhere_to_go() {
    let mut s = Servent::new(Store::default(), 5000, full_reach(TtlRule::Seed));
    let local: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let peer: SocketAddr = "10.0.0.2:5000".parse().unwrap();
    s.handle_link_up(1, Direction::Outbound, local, peer);
    feed(&mut s, 1, key_flood(0));
    let (actions, _) = feed(&mut s, 1, key_flood(3));
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(s.counters().reforwarded, 0);
}

// ---------------------------------------------------------------------------------------
// First copy wins, and what full reach does about it
// ---------------------------------------------------------------------------------------

/// Servent 0 is asked. Its link to 1 is slow, so 1 first hears the query the long way,
/// 0–2–3–1, with TTL 1, and passes it on to 4 with TTL 0; the direct copy (TTL 3)
/// comes last. 4 to 6 lie 2 to 4 hops out, along 1–4–5–6.
fn detour(config: &Config) -> Network {
    let mut net = Network::with_config(&["k v0", "k v1", "", "", "k v4", "k v5", "k v6"], config);
    net.chain(&[0, 1, 4, 5, 6]);
    net.chain(&[0, 2, 3, 1]);
    net.slow_link(0, 1);
    net
}

#[test]
fn the_first_copy_wins_and_the_servents_beyond_miss_the_query() {
    let mut net = detour(&Config::default());
    let client = net.attach_client(0, 7000);
    net.lookup(client, 1, "k");
    net.topology(client, 2);
    assert_eq!(
        net.answerers(1),
        [0, 1, 4],
        "5 and 6 are in reach but missed"
    );
    assert_eq!(net.answerers(2), [0, 1, 2, 3, 4]);
    let ttls: Vec<_> = net
        .received_by(1, 1)
        .iter()
        .map(|d| flood_ttl(&d.frame))
        .collect();
    assert_eq!(ttls, [Some(1), Some(3)], "the long way first");
}

#[test]
fn full_reach_passes_the_better_copy_on_and_everyone_in_reach_answers_once() {
    let mut net = detour(&full_reach(TtlRule::Seed));
    let client = net.attach_client(0, 7000);
    net.lookup(client, 1, "k");
    net.topology(client, 2);
    assert_eq!(net.answerers(1), [0, 1, 4, 5, 6]);
    assert_eq!(net.answerers(2), [0, 1, 2, 3, 4, 5, 6]);
    let six = net
        .answers
        .iter()
        .find(|a| a.seq == 2 && a.from == 6)
        .unwrap();
    assert_eq!(
        six.value,
        [
            "10.0.0.1:5000",
            "10.0.0.2:5001",
            "10.0.0.5:5004",
            "10.0.0.6:5005",
            "10.0.0.7:5006"
        ]
        .join(" "),
        "the path of the copy that reached it"
    );
    // 1 and 4 each passed both queries on twice; 5 got TTL 1 first from 4's re-forward.
    let reforwarded: Vec<u64> = net.nodes.iter().map(|n| n.counters().reforwarded).collect();
    assert_eq!(reforwarded, [0, 2, 0, 0, 2, 0, 0]);
}

// ---------------------------------------------------------------------------------------
// Random graphs, random orders
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Case {
    count: usize,
    edges: Vec<(NodeId, NodeId)>,
    holders: Vec<bool>,
    start: NodeId,
    seed: u64,
    rule: TtlRule,
    /// The TTL requests are flooded with: the protocol's 3 mostly, others as tp3-sim
    /// sweeps them.
    initial_ttl: u16,
}

/// A connected graph of 2 to 30 nodes: a random spanning tree plus random extra edges,
/// no loops, no parallel links; a delivery order; a TTL rule.
fn case() -> impl Strategy<Value = Case> {
    (
        sim::connected_graph(30),
        any::<u64>(),
        prop_oneof![3 => Just(TtlRule::Seed), 1 => Just(TtlRule::Assignment2019)],
        prop_oneof![3 => Just(INITIAL_TTL), 1 => 0u16..=6],
    )
        .prop_map(
            |((count, edges, holders, start), seed, rule, initial_ttl)| Case {
                count,
                edges,
                holders,
                start,
                seed,
                rule,
                initial_ttl,
            },
        )
}

/// The case's network, after a lookup of `k` (seq 1) and a topology query (seq 2) from
/// a client of `start`, delivered in the case's shuffled order (or send order).
fn run(case: &Case, full_reach: bool, shuffled: bool) -> Network {
    let stores: Vec<String> = (0..case.count)
        .map(|i| {
            if case.holders[i] {
                format!("k v{i}")
            } else {
                String::new()
            }
        })
        .collect();
    let stores: Vec<&str> = stores.iter().map(String::as_str).collect();
    let config = Config {
        full_reach,
        ttl_rule: case.rule,
        initial_ttl: case.initial_ttl,
        ..Config::default()
    };
    let mut net = Network::with_config(&stores, &config);
    if shuffled {
        net = net.shuffled(case.seed);
    }
    for &(a, b) in &case.edges {
        net.link(a, b);
    }
    let client = net.attach_client(case.start, 7000);
    net.lookup(client, 1, "k");
    net.topology(client, 2);
    net
}

/// No servent answers a query twice, and each answer went to the client.
fn answers_once(net: &Network) -> Result<(), TestCaseError> {
    let mut answered = HashSet::new();
    for a in &net.answers {
        prop_assert!(
            answered.insert((a.from, a.seq)),
            "node {} answered {} twice",
            a.from,
            a.seq
        );
        prop_assert_eq!(a.to, CLIENT);
    }
    Ok(())
}

/// The copies each servent sent each neighbour, by query: their TTLs.
fn sends(net: &Network) -> HashMap<(NodeId, NodeId, u32), Vec<u16>> {
    let mut sends: HashMap<_, Vec<u16>> = HashMap::new();
    for d in &net.delivered {
        if let (Some(seq), Some(ttl)) = (flood_seq(&d.frame), flood_ttl(&d.frame)) {
            sends.entry((d.from, d.to, seq)).or_default().push(ttl);
        }
    }
    sends
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// With full reach, whatever the order: every servent within the rule's reach
    /// answers the topology query, every holder within it answers the lookup, each
    /// exactly once, and no one further out; a servent sends a neighbour a query again
    /// only with more TTL, and the one the client asked sends each neighbour one copy.
    #[test]
    fn full_reach_reaches_everyone_in_reach_in_any_order(case in case()) {
        let net = run(&case, true, true);
        prop_assert!(net.closed.is_empty(), "{:?}", net.closed);
        answers_once(&net)?;
        let dist = net.distances(case.start);
        let reach = case.rule.reach_from(case.initial_ttl);
        let within: Vec<NodeId> =
            (0..case.count).filter(|&n| dist[n].is_some_and(|d| d <= reach)).collect();
        let holders: Vec<NodeId> =
            within.iter().copied().filter(|&n| case.holders[n]).collect();
        prop_assert_eq!(net.answerers(2), within);
        prop_assert_eq!(net.answerers(1), holders);
        for ((from, to, seq), ttls) in sends(&net) {
            let mut distinct = ttls.clone();
            distinct.sort_unstable();
            distinct.dedup();
            prop_assert_eq!(distinct.len(), ttls.len(), "{}->{} #{}: {:?}", from, to, seq, ttls);
            if from == case.start {
                prop_assert_eq!(&ttls, &[case.initial_ttl], "the origin passes an echo on");
            }
        }
    }

    /// Without it, as ever: each servent answers at most once and passes a query on at
    /// most once (one copy to each neighbour, all with one TTL, one less than the first
    /// copy's); in send order the reach is exactly the rule's, and full reach changes
    /// nothing at all, since every first copy came by a shortest path.
    #[test]
    fn without_full_reach_each_servent_passes_a_query_on_once(case in case()) {
        let net = run(&case, false, true);
        answers_once(&net)?;
        let sends = sends(&net);
        for node in 0..case.count {
            prop_assert_eq!(net.nodes[node].counters().reforwarded, 0);
            for seq in [1, 2] {
                let out: Vec<u16> = (0..case.count)
                    .filter_map(|to| sends.get(&(node, to, seq)))
                    .flat_map(|ttls| {
                        assert_eq!(ttls.len(), 1, "{node} sent {seq} twice to one neighbour");
                        ttls.iter().copied()
                    })
                    .collect();
                if node == case.start {
                    prop_assert!(out.iter().all(|&t| t == case.initial_ttl));
                } else if let Some(first) = net.received_by(node, seq).first() {
                    let ttl = flood_ttl(&first.frame).unwrap();
                    let expected = case.rule.forward_ttl_from(case.initial_ttl, false, ttl);
                    prop_assert!(out.iter().all(|&t| Some(t) == expected), "{:?}", out);
                } else {
                    prop_assert!(out.is_empty());
                }
            }
        }
        let plain = run(&case, false, false);
        let full = run(&case, true, false);
        let dist = plain.distances(case.start);
        let within: Vec<NodeId> = (0..case.count)
            .filter(|&n| dist[n].is_some_and(|d| d <= case.rule.reach_from(case.initial_ttl)))
            .collect();
        prop_assert_eq!(plain.answerers(2), within);
        prop_assert_eq!(&plain.answers, &full.answers);
        let show = |net: &Network| -> Vec<String> {
            net.delivered.iter().map(|d| format!("{}->{} {}", d.from, d.to, d.frame)).collect()
        };
        prop_assert_eq!(show(&plain), show(&full));
    }
}

// ---------------------------------------------------------------------------------------
// flood-view
// ---------------------------------------------------------------------------------------

/// A re-forward in a trace: c handles a TTL-0 copy from a (answers, stops), then gets
/// TTL 2 from b, and passes it on to d, which sees the query for the first time.
#[test]
fn flood_view_tells_a_copy_passed_on_again_from_a_duplicate() {
    let fields = |ttl: u16| FrameFields {
        kind: "KEYFLOOD".into(),
        ttl: Some(ttl),
        seq: Some(7),
        client: Some("10.9.9.9:7000".into()),
        key: Some("k".into()),
        ..FrameFields::default()
    };
    let event = |time_us, servent: &str, kind, local: &str, link: &str, ttl| Event {
        time_us,
        servent: servent.into(),
        link: Some(link.into()),
        local: Some(local.into()),
        query: Some("10.9.9.9:7000#7".into()),
        frame: Some(fields(ttl)),
        ..Event::new(kind)
    };
    let a = vec![event(10, "a:1", EventKind::Received, "a:1", "x:9", 1)];
    let b = vec![event(15, "b:2", EventKind::Received, "b:2", "x:8", 3)];
    let c = vec![
        event(20, "c:3", EventKind::Received, "c:3", "a:40000", 0),
        Event {
            reason: Some("ttl".into()),
            ..event(21, "c:3", EventKind::Dropped, "c:3", "a:40000", 0)
        },
        event(30, "c:3", EventKind::Received, "c:3", "b:40000", 2),
        event(31, "c:3", EventKind::Sent, "c:40001", "d:4", 1),
        event(40, "c:3", EventKind::Received, "c:3", "b:40002", 1),
        Event {
            reason: Some("duplicate".into()),
            ..event(41, "c:3", EventKind::Dropped, "c:3", "b:40002", 1)
        },
    ];
    let a = [
        a,
        vec![event(12, "a:1", EventKind::Sent, "a:40000", "c:3", 0)],
    ]
    .concat();
    let b = [
        b,
        vec![
            event(16, "b:2", EventKind::Sent, "b:40000", "c:3", 2),
            event(17, "b:2", EventKind::Sent, "b:40002", "c:3", 1),
        ],
    ]
    .concat();
    let d = vec![event(35, "d:4", EventKind::Received, "d:4", "c:40001", 1)];
    let floods = build(&[a, b, c, d]);
    let flood = &floods[0];
    let fates: Vec<&str> = flood.copies.iter().map(|c| c.fate.as_str()).collect();
    assert_eq!(fates, [FORWARDED_AGAIN, "duplicate"]);
    assert_eq!((flood.duplicates(), flood.forwarded_again()), (1, 1));
    let c = flood.nodes.iter().find(|n| n.servent == "c:3").unwrap();
    assert_eq!(c.ttl, Some(0), "the copy it handled");
    assert_eq!(c.stopped, None, "it went further after all");
    let d = flood.nodes.iter().find(|n| n.servent == "d:4").unwrap();
    assert_eq!(d.from, tp3kv::trace::view::Sender::Servent("c:3".into()));
    let text = render_text(&floods, &Names::default());
    assert!(
        text.lines()
            .next()
            .unwrap()
            .ends_with("1 duplicate dropped, 1 copy forwarded again (full reach)"),
        "{text}"
    );
    assert!(
        text.contains("c:3  TTL 2  +0.020 ms  forwarded again (full reach)"),
        "{text}"
    );
}
