//! The simulated network: one real [`Servent`] per node of a [`Graph`], linked as the
//! daemon links them, and a discrete-event clock that delivers each frame after its
//! link's latency.
//!
//! Servent `i` is `10.a.b.c:5000`, where `a.b.c` is `i + 1` in base 256. On servent
//! `i`, link `k` is the link to its `k`-th neighbour in the graph (neighbours are
//! sorted), so no table of links is kept: a million servents cost the servents
//! themselves, the graph, and 4 bytes each here.
//!
//! Frames in flight are ordered by (delivery time, sequence number) in a binary heap:
//! the earliest first, and among equal times the first sent. A frame on a directed
//! link is never delivered before one sent earlier on it (links are TCP connections),
//! whatever latency is drawn for it.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use crate::hashing::IdMap;
use crate::protocol::{Frame, Text};
use crate::servent::{Action, Config, Direction, LinkId, Servent, TtlRule};
use crate::store::Store;

use super::latency::Latency;
use super::rng::Rng;
use super::stats::QueryOutcome;
use super::topology::{Graph, Node, TopologyError};

/// The port every simulated servent listens on.
pub const PORT: u16 = 5000;
/// The one key the simulation looks up, and the value its holders give.
pub const KEY: &str = "key";
pub const VALUE: &str = "value";
/// Where the simulated clients take their answers: every query has its own sequence
/// number, so one address does for all of them.
pub const CLIENT_REPLY: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 168, 0, 1), 9000);
/// The client's end of its connection to the servent it asks.
const CLIENT_PEER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 168, 0, 1), 40000);
/// Client links are numbered from here (neighbour links are `0..degree`).
const CLIENT_LINKS: LinkId = 1 << 32;
/// One address each in 10.0.0.0/8, skipping 10.0.0.0.
pub const MAX_SERVENTS: usize = super::topology::MAX_NODES;

/// How the servents behave, and how long frames take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// The TTL a query starts with (the protocol's is 3).
    pub ttl: u16,
    pub ttl_rule: TtlRule,
    pub full_reach: bool,
    pub latency: Latency,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            ttl: crate::protocol::INITIAL_TTL,
            ttl_rule: TtlRule::Seed,
            full_reach: false,
            latency: Latency::default(),
        }
    }
}

/// What a client asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// KEYREQ for [`KEY`].
    Key,
    /// TOPOREQ.
    Topology,
}

/// Servent `node`'s address.
pub fn address_of(node: Node) -> SocketAddrV4 {
    let [_, a, b, c] = (node + 1).to_be_bytes();
    SocketAddrV4::new(Ipv4Addr::new(10, a, b, c), PORT)
}

/// The servent at `addr`, if it is one.
pub fn node_of(addr: SocketAddrV4) -> Option<Node> {
    let [ten, a, b, c] = addr.ip().octets();
    let index = u32::from_be_bytes([0, a, b, c]);
    (ten == 10 && index > 0 && addr.port() == PORT).then(|| index - 1)
}

/// A frame handed to a servent, as the trace records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub from: Node,
    pub to: Node,
    /// The order it was sent in, over the whole run.
    pub sent: u64,
    /// Nanoseconds since the network was built.
    pub sent_at: u64,
    pub delivered_at: u64,
}

/// What the last query did in detail, when asked for ([`Network::record`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detail {
    /// The servents that handled a copy (the origin first), in the order they did.
    pub reached: Vec<Node>,
    /// Every answer: who sent it and its value.
    pub answers: Vec<(Node, String)>,
}

/// A frame on its way. The heap orders small [`Due`]s; the frames wait in a slab.
struct InFlight {
    from: Node,
    sent_at: u64,
    to: Node,
    /// The receiver's link it arrives on.
    link: LinkId,
    frame: Frame,
}

/// When the frame in slab slot `slot` is due, and the order it was sent in.
#[derive(PartialEq, Eq)]
struct Due {
    time: u64,
    order: u64,
    slot: u32,
}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Due) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    /// Reversed: `BinaryHeap` pops its greatest, and the earliest goes first.
    fn cmp(&self, other: &Due) -> Ordering {
        (other.time, other.order).cmp(&(self.time, self.order))
    }
}

/// The servents, their links, and the frames in flight.
pub struct Network<'g> {
    graph: &'g Graph,
    servents: Vec<Servent>,
    latency: Latency,
    /// Latency draws only: the same seed gives the same races.
    rng: Rng,
    base: Instant,
    /// Nanoseconds since `base`: 584 years fit. Delivery times add with saturation,
    /// so a run long enough to reach the end of that time stays there (its frames
    /// then go in send order) rather than wrapping around to the start.
    clock: u64,
    queue: BinaryHeap<Due>,
    /// The frames in flight, by slot; `free` lists the empty slots.
    flights: Vec<Option<InFlight>>,
    free: Vec<u32>,
    sent: u64,
    /// Per directed link in use (`link << 32 | node`: the node in the low bits, which
    /// [`IdMap`]'s multiplicative hash spreads), the time its last frame is delivered
    /// at: FIFO. Emptied after each query, when nothing is in flight.
    last_on_link: IdMap<u64, u64>,
    /// The last query each servent handled a copy of (0: none).
    mark: Vec<u32>,
    /// The servents the query under way reached: they forget it when it is over.
    reached: Vec<Node>,
    queries: u32,
    trace: Option<Vec<Delivery>>,
    detail: Option<Detail>,
}

impl<'g> Network<'g> {
    /// One servent per node of `graph`, `holders` holding [`KEY`], linked along its
    /// edges (the lower-numbered end dials). `seed` seeds the latency draws.
    pub fn new(
        graph: &'g Graph,
        holders: &[Node],
        settings: &Settings,
        seed: u64,
    ) -> Result<Network<'g>, TopologyError> {
        let n = graph.len();
        if n > MAX_SERVENTS {
            return Err(TopologyError(format!(
                "{n} servents: at most {MAX_SERVENTS} (one address each in 10.0.0.0/8)"
            )));
        }
        let config = Config {
            ttl_rule: settings.ttl_rule,
            full_reach: settings.full_reach,
            initial_ttl: settings.ttl,
            // However long a query is in flight, its copies are known for what they
            // are; each servent forgets it once it is over (see `query`).
            seen_lifetime: Duration::MAX,
            ..Config::default()
        };
        let mut holds = vec![false; n];
        for &h in holders {
            holds[h as usize] = true;
        }
        let held =
            Store::parse(format!("{KEY} {VALUE}\n").as_bytes()).expect("a one-line store parses");
        let servents = holds
            .iter()
            .map(|&h| {
                let store = if h { held.clone() } else { Store::default() };
                Servent::new(store, PORT, config.clone())
            })
            .collect();
        let mut network = Network {
            graph,
            servents,
            latency: settings.latency,
            rng: Rng::new(seed),
            base: Instant::now(),
            clock: 0,
            queue: BinaryHeap::new(),
            flights: Vec::new(),
            free: Vec::new(),
            sent: 0,
            last_on_link: IdMap::default(),
            mark: vec![0; n],
            reached: Vec::new(),
            queries: 0,
            trace: None,
            detail: None,
        };
        network.link_all();
        Ok(network)
    }

    /// Every edge a link in both servents: the lower end dialled (outbound), the
    /// higher accepted and was told ID(0).
    fn link_all(&mut self) {
        let now = self.base;
        for a in 0..self.graph.len() as Node {
            for (k, &b) in self.graph.neighbours(a).iter().enumerate() {
                let (local, peer) = (SocketAddr::V4(address_of(a)), SocketAddr::V4(address_of(b)));
                let servent = &mut self.servents[a as usize];
                if a < b {
                    servent.handle_link_up(k as LinkId, Direction::Outbound, local, peer);
                } else {
                    servent.handle_link_up(k as LinkId, Direction::Inbound, local, peer);
                    servent.handle_frame(k as LinkId, Frame::Id { port: 0 }, now);
                }
            }
        }
    }

    /// From now on, record every delivery ([`Network::deliveries`]).
    pub fn trace(&mut self) {
        self.trace.get_or_insert_with(Vec::new);
    }

    pub fn deliveries(&self) -> &[Delivery] {
        self.trace.as_deref().unwrap_or(&[])
    }

    /// From now on, record who each query reached and who answered
    /// ([`Network::detail`]).
    pub fn record(&mut self) {
        self.detail.get_or_insert_with(Detail::default);
    }

    /// The last query's detail, if recording.
    pub fn detail(&self) -> Option<&Detail> {
        self.detail.as_ref()
    }

    pub fn servent(&self, node: Node) -> &Servent {
        &self.servents[node as usize]
    }

    pub fn len(&self) -> usize {
        self.servents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.servents.is_empty()
    }

    /// Simulated time so far.
    pub fn clock(&self) -> Duration {
        Duration::from_nanos(self.clock)
    }

    /// A client connects to `origin` and asks; the flood runs until no frame is in
    /// flight. Returns what it did. Each query gets the next sequence number.
    pub fn query(&mut self, origin: Node, kind: QueryKind) -> QueryOutcome {
        self.queries += 1;
        let seq = self.queries;
        let start = self.clock;
        let mut outcome = QueryOutcome {
            seq,
            origin,
            ..QueryOutcome::default()
        };
        if let Some(detail) = self.detail.as_mut() {
            *detail = Detail::default();
        }
        let link = CLIENT_LINKS + LinkId::from(seq);
        let now = self.base + Duration::from_nanos(start);
        let local = SocketAddr::V4(address_of(origin));
        let servent = &mut self.servents[origin as usize];
        servent.handle_link_up(link, Direction::Inbound, local, SocketAddr::V4(CLIENT_PEER));
        servent.handle_frame(
            link,
            Frame::Id {
                port: CLIENT_REPLY.port(),
            },
            now,
        );
        let request = match kind {
            QueryKind::Key => Frame::KeyReq {
                seq,
                key: Text::try_from(KEY).expect("a short key"),
            },
            QueryKind::Topology => Frame::TopoReq { seq },
        };
        self.handle(origin, link, request, start, &mut outcome);
        while let Some((due, flight)) = self.next_due() {
            self.clock = due.time;
            if let Some(trace) = self.trace.as_mut() {
                trace.push(Delivery {
                    from: flight.from,
                    to: flight.to,
                    sent: due.order,
                    sent_at: flight.sent_at,
                    delivered_at: due.time,
                });
            }
            self.handle(flight.to, flight.link, flight.frame, due.time, &mut outcome);
        }
        self.servents[origin as usize].handle_link_down(link);
        self.last_on_link.clear();
        // Queries are far apart: none is remembered by the next. (Servents keep ids
        // without a time limit here, since a query over links of up to an hour a hop
        // can outlast the daemon's minute.)
        for node in self.reached.drain(..) {
            self.servents[node as usize].forget_seen();
        }
        outcome.last_answer = outcome.last_answer.map(|t| t - start);
        outcome
    }

    /// The next frame due, taken out of its slot.
    fn next_due(&mut self) -> Option<(Due, InFlight)> {
        let due = self.queue.pop()?;
        let flight = self.flights[due.slot as usize]
            .take()
            .expect("a due frame is in its slot");
        self.free.push(due.slot);
        Some((due, flight))
    }

    /// `node` handles `frame` from `link` at `time`: counted, and its actions done.
    fn handle(
        &mut self,
        node: Node,
        link: LinkId,
        frame: Frame,
        time: u64,
        outcome: &mut QueryOutcome,
    ) {
        let i = node as usize;
        if self.mark[i] != self.queries {
            self.mark[i] = self.queries;
            self.reached.push(node);
            outcome.reached += 1;
            if let Some(detail) = self.detail.as_mut() {
                detail.reached.push(node);
            }
        }
        let servent = &mut self.servents[i];
        let before = servent.counters();
        servent.handle_frame(link, frame, self.base + Duration::from_nanos(time));
        let after = servent.counters();
        outcome.duplicates += after.duplicates - before.duplicates;
        outcome.ttl_spent += after.ttl_spent - before.ttl_spent;
        outcome.reforwarded += after.reforwarded - before.reforwarded;
        outcome.info_too_long += after.info_too_long - before.info_too_long;
        while let Some(action) = self.servents[i].poll_action() {
            match action {
                Action::Flood { except, frame } => self.flood(node, except, &frame, time, outcome),
                Action::Answer { to, frame } => {
                    outcome.answers += 1;
                    if to != CLIENT_REPLY {
                        outcome.misdirected += 1;
                    }
                    // A new connection straight to the client: one more latency.
                    let at = time.saturating_add(self.latency.draw(&mut self.rng));
                    outcome.last_answer = outcome.last_answer.max(Some(at));
                    if let (Some(detail), Frame::Resp { value, .. }) = (self.detail.as_mut(), frame)
                    {
                        detail.answers.push((node, value.to_lossy().into_owned()));
                    }
                }
                Action::Close { link, .. } => {
                    outcome.closes += 1;
                    self.servents[i].handle_link_down(link);
                }
            }
        }
    }

    /// `frame` on every neighbour link of `node` but `except`, in the servent's order.
    fn flood(
        &mut self,
        node: Node,
        except: Option<LinkId>,
        frame: &Frame,
        time: u64,
        outcome: &mut QueryOutcome,
    ) {
        let Network {
            graph,
            servents,
            latency,
            rng,
            queue,
            flights,
            free,
            sent,
            last_on_link,
            ..
        } = self;
        let peers = graph.neighbours(node);
        for &link in servents[node as usize].neighbours() {
            if Some(link) == except {
                continue;
            }
            let to = peers[link as usize];
            let back = graph
                .neighbours(to)
                .binary_search(&node)
                .expect("the graph is symmetric");
            let slot = last_on_link
                .entry(link << 32 | u64::from(node))
                .or_insert(0);
            let at = time.saturating_add(latency.draw(rng)).max(*slot);
            *slot = at;
            *sent += 1;
            outcome.frames += 1;
            let flight = Some(InFlight {
                from: node,
                sent_at: time,
                to,
                link: back as LinkId,
                frame: frame.clone(),
            });
            let slot = match free.pop() {
                Some(slot) => {
                    flights[slot as usize] = flight;
                    slot
                }
                None => {
                    flights.push(flight);
                    (flights.len() - 1) as u32
                }
            };
            queue.push(Due {
                time: at,
                order: *sent,
                slot,
            });
        }
    }
}

/// `round(fraction · n)` distinct servents, chosen at random (at least one if the
/// fraction is above 0).
pub fn choose_holders(n: usize, fraction: f64, rng: &mut Rng) -> Vec<Node> {
    let mut count = (fraction.clamp(0.0, 1.0) * n as f64).round() as usize;
    if fraction > 0.0 && n > 0 {
        count = count.max(1);
    }
    // A partial Fisher–Yates over the indices.
    let mut nodes: Vec<Node> = (0..n as Node).collect();
    for i in 0..count {
        let j = i + rng.below(n - i);
        nodes.swap(i, j);
    }
    nodes.truncate(count);
    nodes.sort_unstable();
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_nodes_map_both_ways() {
        for node in [0, 1, 255, 256, 65_535, 999_999, MAX_SERVENTS as Node - 1] {
            assert_eq!(node_of(address_of(node)), Some(node), "{node}");
        }
        assert_eq!(address_of(0).to_string(), "10.0.0.1:5000");
        assert_eq!(address_of(256).to_string(), "10.0.1.1:5000");
        assert_eq!(node_of(CLIENT_REPLY), None);
    }

    #[test]
    fn frames_down_one_link_keep_their_order_whatever_latency_is_drawn() {
        let line = Graph::line(2).unwrap();
        let settings = Settings {
            latency: Latency::Exponential { mean: 1_000_000 },
            ..Settings::default()
        };
        let mut net = Network::new(&line, &[], &settings, 1).unwrap();
        let mut outcome = QueryOutcome::default();
        let frame = Frame::TopoReq { seq: 1 };
        for time in [0, 0, 10, 10, 10, 20, 500_000, 500_001] {
            for _ in 0..20 {
                net.flood(0, None, &frame, time, &mut outcome);
            }
        }
        assert_eq!(outcome.frames, 160);
        let mut order = Vec::new();
        while let Some((due, flight)) = net.next_due() {
            assert_eq!((flight.to, flight.link), (1, 0));
            order.push(due.order);
        }
        // Sent in this order; latencies drawn freely would have mixed them up.
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    }

    #[test]
    fn holders_are_distinct_and_as_many_as_asked() {
        let mut rng = Rng::new(1);
        let h = choose_holders(1000, 0.01, &mut rng);
        assert_eq!(h.len(), 10);
        assert!(h.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(choose_holders(1000, 0.0001, &mut rng).len(), 1);
        assert_eq!(choose_holders(5, 1.0, &mut rng), vec![0, 1, 2, 3, 4]);
        assert!(choose_holders(5, 0.0, &mut rng).is_empty());
    }
}
