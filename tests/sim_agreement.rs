//! The simulator against real processes: on the graphs where the outcome does not
//! depend on timing (the diamond, the line of 6, rings), `tp3-sim`'s network and
//! real servents on loopback must agree exactly on who a query reaches and who
//! answers, for key and topology queries, under both TTL rules, with and without
//! `--full-reach`. The 200-servent random graph is compared in the perf bench's scale
//! section (`cargo bench --bench perf -- scale`), where the real network is started
//! anyway.

mod common;

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use tp3kv::protocol::{self, Frame, Text};
use tp3kv::servent::TtlRule;
use tp3kv::sim::network::{Network, QueryKind, Settings};
use tp3kv::sim::topology::{Graph, Node};

/// The key the holders keep; in the real network servent i's value is `v{i}`, so an
/// answer names its sender.
const KEY: &str = tp3kv::sim::network::KEY;
/// How long to wait for more answers once the simulator's count has come, so an
/// extra one is seen; and for all of them at most.
const GRACE: Duration = Duration::from_millis(300);
const LIMIT: Duration = Duration::from_secs(20);

/// Real servents linked as `graph`, servent i holding the key if `i` is in
/// `holders`. Each names its lower-numbered neighbours (already listening), so every
/// link is dialled once.
struct RealNetwork {
    nodes: Vec<common::Node>,
    _dir: TempDir,
}

impl RealNetwork {
    fn start(graph: &Graph, holders: &[Node], rule: TtlRule, full_reach: bool) -> RealNetwork {
        let dir = TempDir::new("sim-agreement");
        let mut flags = vec!["--ttl-rule", rule.name()];
        if full_reach {
            flags.push("--full-reach");
        }
        let mut nodes: Vec<common::Node> = Vec::new();
        for i in 0..graph.len() as Node {
            let store = if holders.contains(&i) {
                format!("{KEY} v{i}\n")
            } else {
                format!("other{i} x\n")
            };
            let lower: Vec<&common::Node> = graph
                .neighbours(i)
                .iter()
                .filter(|&&j| j < i)
                .map(|&j| &nodes[j as usize])
                .collect();
            let node = servent_with(&dir, &format!("s{i}"), &store, &lower, &flags);
            nodes.push(node);
        }
        for (i, node) in nodes.iter().enumerate() {
            wait_links(node, graph.neighbours(i as Node).len());
        }
        RealNetwork { nodes, _dir: dir }
    }

    /// The servent listening on `port`.
    fn node_at(&self, port: u16) -> Option<Node> {
        self.nodes
            .iter()
            .position(|n| n.port() == port)
            .map(|i| i as Node)
    }

    /// Asks servent `origin` as a client would, and returns who answered: for a key,
    /// from the value; for a topology query, from the last address of the path.
    /// Waits until `expected` answers came and then [`GRACE`] more, or [`LIMIT`].
    fn ask(&self, origin: Node, kind: QueryKind, seq: u32, expected: usize) -> Vec<Node> {
        let replies = TcpListener::bind("127.0.0.1:0").unwrap();
        replies.set_nonblocking(true).unwrap();
        let mut bytes = Frame::Id {
            port: replies.local_addr().unwrap().port(),
        }
        .to_bytes();
        match kind {
            QueryKind::Key => Frame::KeyReq {
                seq,
                key: Text::try_from(KEY).unwrap(),
            },
            QueryKind::Topology => Frame::TopoReq { seq },
        }
        .encode(&mut bytes);
        let mut link = TcpStream::connect(self.nodes[origin as usize].local()).unwrap();
        link.write_all(&bytes).unwrap();

        let start = Instant::now();
        let mut enough_at: Option<Instant> = None;
        let mut answerers = Vec::new();
        loop {
            match replies.accept() {
                Ok((stream, from)) => {
                    let value = read_resp(stream, seq)
                        .unwrap_or_else(|e| panic!("the answer from {from}: {e}"));
                    answerers.push(self.answerer(kind, &value));
                    if answerers.len() >= expected && enough_at.is_none() {
                        enough_at = Some(Instant::now());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if enough_at.is_some_and(|at| at.elapsed() > GRACE) {
                        break;
                    }
                    if expected == 0 && start.elapsed() > GRACE * 3 {
                        break;
                    }
                    if start.elapsed() > LIMIT {
                        // Fewer than the simulator's: the caller's comparison says who.
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
        answerers.sort_unstable();
        answerers
    }

    fn answerer(&self, kind: QueryKind, value: &str) -> Node {
        match kind {
            QueryKind::Key => value
                .strip_prefix('v')
                .and_then(|i| i.parse().ok())
                .unwrap_or_else(|| panic!("not a holder's value: {value:?}")),
            QueryKind::Topology => {
                let last = value.split(' ').next_back().unwrap();
                let port = last
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse().ok())
                    .unwrap_or_else(|| panic!("not a path: {value:?}"));
                self.node_at(port)
                    .unwrap_or_else(|| panic!("{last} is none of ours: {value:?}"))
            }
        }
    }
}

/// Reads one RESP for `seq` from an answer connection.
fn read_resp(mut stream: TcpStream, seq: u32) -> Result<String, String> {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some((frame, _)) = protocol::decode(&buf).map_err(|e| e.to_string())? {
            return match frame {
                Frame::Resp { seq: got, value } if got == seq => Ok(value.to_lossy().into_owned()),
                other => Err(format!("not the RESP to seq {seq}: {other:?}")),
            };
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(format!("closed after {buf:?}")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Who the simulator says answers a query from `origin`, sorted.
fn simulated(
    graph: &Graph,
    holders: &[Node],
    settings: &Settings,
    origin: Node,
    kind: QueryKind,
) -> Vec<Node> {
    let mut net = Network::new(graph, holders, settings, 1).unwrap();
    net.record();
    let outcome = net.query(origin, kind);
    let detail = net.detail().unwrap();
    let mut answerers: Vec<Node> = detail.answers.iter().map(|a| a.0).collect();
    answerers.sort_unstable();
    if kind == QueryKind::Topology {
        // Every servent reached answers a topology query.
        let reached: BTreeSet<Node> = detail.reached.iter().copied().collect();
        assert_eq!(answerers.iter().copied().collect::<BTreeSet<_>>(), reached);
        assert_eq!(outcome.reached as usize, answerers.len());
    }
    answerers
}

/// For each rule and full-reach setting, starts `graph` for real and asks from each
/// of `origins` both kinds of query; the answerers must be the simulator's.
fn agree(graph: &Graph, holders: &[Node], origins: &[Node]) {
    let _heavy = heavy();
    let mut seq = 100;
    for (rule, full_reach) in [
        (TtlRule::Seed, false),
        (TtlRule::Assignment2019, false),
        (TtlRule::Seed, true),
    ] {
        let settings = Settings {
            ttl_rule: rule,
            full_reach,
            ..Settings::default()
        };
        let real = RealNetwork::start(graph, holders, rule, full_reach);
        for &origin in origins {
            for kind in [QueryKind::Key, QueryKind::Topology] {
                seq += 1;
                let expected = simulated(graph, holders, &settings, origin, kind);
                let got = real.ask(origin, kind, seq, expected.len());
                assert_eq!(
                    got, expected,
                    "{kind:?} from servent {origin}, {rule:?}, full reach {full_reach}: \
                     real servents (left) and the simulator (right)"
                );
            }
        }
    }
}

#[test]
fn the_diamond_agrees_with_real_servents() {
    // 0-1, 0-2, 1-3, 2-3: the seed's first test topology.
    let diamond = Graph::from_edges(4, &[(0, 1), (0, 2), (1, 3), (2, 3)]).unwrap();
    agree(&diamond, &[1, 3], &[0, 3]);
}

#[test]
fn the_line_of_6_agrees_with_real_servents() {
    // The seed's second test topology: the far end is 5 hops away, out of reach.
    let line = Graph::line(6).unwrap();
    agree(&line, &[2, 3, 4, 5], &[0, 2]);
}

#[test]
fn a_ring_of_11_agrees_with_real_servents() {
    // Servents 5 and 6 are 5 hops from 0 either way: out of reach under both rules.
    let ring = Graph::ring(11).unwrap();
    agree(&ring, &[3, 4, 5, 8], &[0, 4]);
}
