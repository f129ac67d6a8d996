//! An in-memory network of [`Servent`] state machines: no sockets, no clock.
//!
//! Servents are joined by links; clients attach to one servent. A frame sent is queued
//! and delivered in send order (so copies race as on equal-latency links), or in an
//! order chosen by a seeded shuffle; frames on links marked slow wait until nothing
//! else is queued (a long way round can then beat a short one). Every delivery and
//! every answer is recorded, so tests can check reach, duplicates and who answered.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Instant;

use tp3kv::protocol::{Frame, Text};
use tp3kv::servent::{Action, Config, Direction, LinkId, Servent};
use tp3kv::store::Store;

pub type NodeId = usize;

/// A frame one node sent another over a link.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub from: NodeId,
    pub to: NodeId,
    pub frame: Frame,
}

/// An answer a servent sent to a client's reply address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub from: NodeId,
    pub to: SocketAddrV4,
    pub seq: u32,
    pub value: String,
}

/// A client attached to a servent.
#[derive(Debug, Clone, Copy)]
pub struct ClientId {
    pub node: NodeId,
    pub link: LinkId,
    pub reply: SocketAddrV4,
}

pub struct Network {
    pub nodes: Vec<Servent>,
    /// (node, its link) → (peer node, the peer's link).
    wires: HashMap<(NodeId, LinkId), (NodeId, LinkId)>,
    next_link: LinkId,
    queue: VecDeque<Delivery>,
    /// Frames on slow links, delivered in send order once `queue` is empty.
    slow_queue: VecDeque<Delivery>,
    /// Slow links, as (lower node, higher node).
    slow: HashSet<(NodeId, NodeId)>,
    pub delivered: Vec<Delivery>,
    pub answers: Vec<Answer>,
    pub closed: Vec<(NodeId, LinkId, String)>,
    now: Instant,
    /// When set, the next delivery is picked by this generator instead of FIFO.
    shuffle: Option<Lcg>,
}

/// Node `i`'s address: `10.0.0.(i+1):(5000+i)`.
pub fn addr_of(node: NodeId) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, node as u8 + 1), 5000 + node as u16)
}

impl Network {
    /// `stores[i]` is node i's key-value file.
    pub fn new(stores: &[&str]) -> Network {
        Network::with_config(stores, &Config::default())
    }

    /// [`Network::new`] with every servent set up by `config`.
    pub fn with_config(stores: &[&str], config: &Config) -> Network {
        let nodes = stores
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let store = Store::parse(s.as_bytes()).unwrap();
                Servent::new(store, addr_of(i).port(), config.clone())
            })
            .collect();
        Network {
            nodes,
            wires: HashMap::new(),
            next_link: 1,
            queue: VecDeque::new(),
            slow_queue: VecDeque::new(),
            slow: HashSet::new(),
            delivered: Vec::new(),
            answers: Vec::new(),
            closed: Vec::new(),
            now: Instant::now(),
            shuffle: None,
        }
    }

    /// Nodes with empty stores.
    pub fn empty(count: usize) -> Network {
        Network::new(&vec![""; count])
    }

    pub fn shuffled(mut self, seed: u64) -> Network {
        self.shuffle = Some(Lcg(seed));
        self
    }

    /// Frames between `a` and `b`, either way, wait until no other frame is queued.
    pub fn slow_link(&mut self, a: NodeId, b: NodeId) {
        self.slow.insert((a.min(b), a.max(b)));
    }

    fn fresh_link(&mut self) -> LinkId {
        self.next_link += 1;
        self.next_link
    }

    /// `a` dials `b`, as `servent` does for the neighbours on its command line: the link
    /// is a neighbour at once on `a`'s side, and `b` learns it from ID(0).
    pub fn link(&mut self, a: NodeId, b: NodeId) {
        let (la, lb) = (self.fresh_link(), self.fresh_link());
        self.wires.insert((a, la), (b, lb));
        self.wires.insert((b, lb), (a, la));
        let (addr_a, addr_b) = (SocketAddr::V4(addr_of(a)), SocketAddr::V4(addr_of(b)));
        self.nodes[a].handle_link_up(la, Direction::Outbound, addr_a, addr_b);
        self.nodes[b].handle_link_up(lb, Direction::Inbound, addr_b, addr_a);
        self.nodes[b].handle_frame(lb, Frame::Id { port: 0 }, self.now);
        self.collect(b);
    }

    /// Links a chain of nodes: `path[0]–path[1]–...`.
    pub fn chain(&mut self, path: &[NodeId]) {
        for pair in path.windows(2) {
            self.link(pair[0], pair[1]);
        }
    }

    /// Attaches a client to `node`; its answers go to `10.9.9.9:reply_port`.
    pub fn attach_client(&mut self, node: NodeId, reply_port: u16) -> ClientId {
        let link = self.fresh_link();
        let reply = SocketAddrV4::new(Ipv4Addr::new(10, 9, 9, 9), reply_port);
        let peer = SocketAddr::V4(SocketAddrV4::new(*reply.ip(), 40000));
        self.nodes[node].handle_link_up(
            link,
            Direction::Inbound,
            SocketAddr::V4(addr_of(node)),
            peer,
        );
        self.nodes[node].handle_frame(link, Frame::Id { port: reply_port }, self.now);
        self.collect(node);
        ClientId { node, link, reply }
    }

    /// Attaches a client on the servent's own host: it connects over loopback and its
    /// answers go to `127.0.0.1:reply_port`.
    pub fn attach_loopback_client(&mut self, node: NodeId, reply_port: u16) -> ClientId {
        let link = self.fresh_link();
        let reply = SocketAddrV4::new(Ipv4Addr::LOCALHOST, reply_port);
        let local = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, addr_of(node).port()));
        let peer = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40000));
        self.nodes[node].handle_link_up(link, Direction::Inbound, local, peer);
        self.nodes[node].handle_frame(link, Frame::Id { port: reply_port }, self.now);
        self.collect(node);
        ClientId { node, link, reply }
    }

    /// Opens a connection to `node` that has not said what it is yet.
    pub fn open_unidentified(&mut self, node: NodeId) -> ClientId {
        let link = self.fresh_link();
        let peer = SocketAddrV4::new(Ipv4Addr::new(10, 9, 9, 8), 40001);
        self.nodes[node].handle_link_up(
            link,
            Direction::Inbound,
            SocketAddr::V4(addr_of(node)),
            SocketAddr::V4(peer),
        );
        ClientId {
            node,
            link,
            reply: peer,
        }
    }

    /// A client sends `frame` to its servent; the network then runs until quiet.
    pub fn client_sends(&mut self, client: ClientId, frame: Frame) {
        self.nodes[client.node].handle_frame(client.link, frame, self.now);
        self.collect(client.node);
        self.run();
    }

    pub fn lookup(&mut self, client: ClientId, seq: u32, key: &str) {
        let key = Text::try_from(key).unwrap();
        self.client_sends(client, Frame::KeyReq { seq, key });
    }

    pub fn topology(&mut self, client: ClientId, seq: u32) {
        self.client_sends(client, Frame::TopoReq { seq });
    }

    /// Injects a frame as if `from` had sent it to `to` over their link.
    pub fn inject(&mut self, from: NodeId, to: NodeId, frame: Frame) {
        self.send(Delivery { from, to, frame });
        self.run();
    }

    /// Delivers queued frames until none remain.
    pub fn run(&mut self) {
        while let Some(delivery) = self.next_delivery() {
            let link = self.link_between(delivery.to, delivery.from);
            self.nodes[delivery.to].handle_frame(link, delivery.frame.clone(), self.now);
            self.delivered.push(delivery.clone());
            self.collect(delivery.to);
        }
    }

    fn next_delivery(&mut self) -> Option<Delivery> {
        let next = match &mut self.shuffle {
            None => self.queue.pop_front(),
            Some(rng) if !self.queue.is_empty() => {
                let index = rng.below(self.queue.len());
                self.queue.remove(index)
            }
            Some(_) => None,
        };
        next.or_else(|| self.slow_queue.pop_front())
    }

    /// Queues a frame, on the slow queue if its link is slow.
    fn send(&mut self, delivery: Delivery) {
        let (a, b) = (delivery.from, delivery.to);
        if self.slow.contains(&(a.min(b), a.max(b))) {
            self.slow_queue.push_back(delivery);
        } else {
            self.queue.push_back(delivery);
        }
    }

    /// `node`'s link towards `peer`.
    fn link_between(&self, node: NodeId, peer: NodeId) -> LinkId {
        self.wires
            .iter()
            .find(|(&(n, _), &(p, _))| n == node && p == peer)
            .map(|(&(_, link), _)| link)
            .unwrap_or_else(|| panic!("no link {node}–{peer}"))
    }

    /// Turns `node`'s actions into queued deliveries, answers and closes.
    fn collect(&mut self, node: NodeId) {
        while let Some(action) = self.nodes[node].poll_action() {
            match action {
                Action::Flood { except, frame } => {
                    let links: Vec<LinkId> = self.nodes[node].neighbours().to_vec();
                    for link in links.into_iter().filter(|&l| Some(l) != except) {
                        let (to, _) = self.wires[&(node, link)];
                        self.send(Delivery {
                            from: node,
                            to,
                            frame: frame.clone(),
                        });
                    }
                }
                Action::Answer { to, frame } => {
                    let Frame::Resp { seq, value } = frame else {
                        panic!("node {node} answered with {frame:?}");
                    };
                    self.answers.push(Answer {
                        from: node,
                        to,
                        seq,
                        value: value.to_lossy().into_owned(),
                    });
                }
                Action::Close { link, reason } => {
                    self.nodes[node].handle_link_down(link);
                    if let Some((peer, peer_link)) = self.wires.remove(&(node, link)) {
                        self.wires.remove(&(peer, peer_link));
                        self.nodes[peer].handle_link_down(peer_link);
                    }
                    self.closed.push((node, link, reason));
                }
            }
        }
    }

    /// The nodes that answered `seq`, sorted.
    pub fn answerers(&self, seq: u32) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = self
            .answers
            .iter()
            .filter(|a| a.seq == seq)
            .map(|a| a.from)
            .collect();
        nodes.sort_unstable();
        nodes
    }

    /// The floods for `seq` that `node` received.
    pub fn received_by(&self, node: NodeId, seq: u32) -> Vec<&Delivery> {
        self.delivered
            .iter()
            .filter(|d| d.to == node && flood_seq(&d.frame) == Some(seq))
            .collect()
    }

    /// The floods for `seq` that `node` sent.
    pub fn sent_by(&self, node: NodeId, seq: u32) -> Vec<&Delivery> {
        self.delivered
            .iter()
            .filter(|d| d.from == node && flood_seq(&d.frame) == Some(seq))
            .collect()
    }

    /// Hop distances from `start` over the links, as a breadth-first search finds them.
    pub fn distances(&self, start: NodeId) -> Vec<Option<usize>> {
        let mut dist = vec![None; self.nodes.len()];
        dist[start] = Some(0);
        let mut queue = VecDeque::from([start]);
        while let Some(node) = queue.pop_front() {
            for (&(n, _), &(peer, _)) in &self.wires {
                if n == node && dist[peer].is_none() {
                    dist[peer] = Some(dist[node].unwrap() + 1);
                    queue.push_back(peer);
                }
            }
        }
        dist
    }
}

pub fn flood_seq(frame: &Frame) -> Option<u32> {
    match frame {
        Frame::KeyFlood(f) | Frame::TopoFlood(f) => Some(f.seq),
        _ => None,
    }
}

pub fn flood_ttl(frame: &Frame) -> Option<u16> {
    match frame {
        Frame::KeyFlood(f) | Frame::TopoFlood(f) => Some(f.ttl),
        _ => None,
    }
}

/// A small deterministic generator, so a failing random graph can be replayed.
#[derive(Debug, Clone)]
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A connected graph as property tests draw it: 2 to `max_nodes` nodes, a random
/// spanning tree plus up to twice as many random extra edges, no self loops, no
/// parallel links. Gives the node count, the edges, which nodes hold the key, and
/// the node the client asks.
pub fn connected_graph(
    max_nodes: usize,
) -> impl proptest::strategy::Strategy<Value = (usize, Vec<(NodeId, NodeId)>, Vec<bool>, NodeId)> {
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::Index;
    (2usize..=max_nodes)
        .prop_flat_map(|count| {
            (
                Just(count),
                vec(any::<Index>(), count - 1),
                vec((any::<Index>(), any::<Index>()), 0..=2 * count),
                vec(any::<bool>(), count),
                0..count,
            )
        })
        .prop_map(|(count, parents, extra, holders, start)| {
            let mut seen = HashSet::new();
            let mut edges = Vec::new();
            let mut add = |a: NodeId, b: NodeId| {
                if a != b && seen.insert((a.min(b), a.max(b))) {
                    edges.push((a, b));
                }
            };
            // Node i + 1 hangs from a node before it: the graph is connected.
            for (i, parent) in parents.iter().enumerate() {
                let node = i + 1;
                add(parent.index(node), node);
            }
            for (a, b) in &extra {
                add(a.index(count), b.index(count));
            }
            (count, edges, holders, start)
        })
}
