//! The servent's reliable-flooding state machine. No sockets and no clock in here.
//!
//! The network driver reports links coming and going and the frames they carry
//! (`handle_*`, with `now` as a parameter); the servent decides and queues
//! [`Action`]s, which the driver drains with [`Servent::poll_action`]. The same object
//! runs unchanged inside the in-memory test network and the real `mio` loop.

pub mod seen;
pub mod ttl;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use log::{debug, info, warn, Level};

use crate::hashing::IdMap;
use crate::protocol::{Flood, Frame, KeyFloodRef, Text, INITIAL_TTL};
use crate::store::Store;
use crate::throttle::Throttle;
pub use seen::{QueryId, Seen, SeenCache};
pub use ttl::TtlRule;

/// Names one connection of the servent; the driver chooses them and never reuses one.
pub type LinkId = u64;

/// Who is at the other end of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepted, and no ID yet.
    Unidentified,
    /// A neighbour servent: we dialled it, or it sent ID(0).
    Servent,
    /// A client, whose answers go to `reply`.
    Client { reply: SocketAddrV4 },
}

/// Which side opened a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// We dialled a neighbour named on our command line.
    Outbound,
    /// Someone connected to our listener.
    Inbound,
}

/// What the servent asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `frame` on every neighbour link except `except` (the one it came from).
    Flood {
        except: Option<LinkId>,
        frame: Frame,
    },
    /// Open a new connection to a client's reply address, send `frame` (a RESP), close.
    Answer { to: SocketAddrV4, frame: Frame },
    /// Close a link whose peer broke the protocol.
    Close { link: LinkId, reason: String },
}

/// What became of a query, beyond the actions: for traces, and only when asked for
/// ([`Servent::report_verdicts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The client's request just handled became this query.
    Started(QueryId),
    /// The query just handled goes no further here.
    Dropped(QueryId, DropReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A copy of a query already handled.
    Duplicate,
    /// Handled (and answered, if the key is here), but not passed on: TTL spent.
    TtlSpent,
    /// A topology query whose info, with this servent added, would be over 400 bytes.
    InfoTooLong,
}

impl DropReason {
    /// The name traces give it.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Duplicate => "duplicate",
            DropReason::TtlSpent => "ttl",
            DropReason::InfoTooLong => "info too long",
        }
    }
}

/// Settings of a servent's behaviour.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long a handled query is remembered. Far above any flood's lifetime.
    pub seen_lifetime: Duration,
    /// The most queries remembered at once; the oldest are forgotten first.
    pub seen_capacity: usize,
    /// The address other hosts reach this servent at, when the addresses its links
    /// show are not it (a multi-homed or NATed host).
    pub advertise: Option<Ipv4Addr>,
    /// When a flood's TTL is spent: the seed's rule or the 2019 assignment's.
    pub ttl_rule: TtlRule,
    /// `--full-reach`: a copy of a query already handled that comes with more TTL
    /// than the best seen so far is passed on again (never answered again), so every
    /// servent within reach of the TTL handles the query, whatever the order copies
    /// arrive in. Off by default: the seed passes each query on once.
    pub full_reach: bool,
    /// The TTL a client's request is flooded with, and the most a neighbour's flood
    /// may carry: the protocol's 3. Only `tp3-sim` sets another, to sweep the TTL.
    pub initial_ttl: u16,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            seen_lifetime: Duration::from_secs(60),
            seen_capacity: 1 << 18,
            advertise: None,
            ttl_rule: TtlRule::Seed,
            full_reach: false,
            initial_ttl: INITIAL_TTL,
        }
    }
}

/// Frames counted by type.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FrameCounts {
    pub id: u64,
    pub keyreq: u64,
    pub toporeq: u64,
    pub keyflood: u64,
    pub topoflood: u64,
    pub resp: u64,
}

impl FrameCounts {
    pub fn count(&mut self, frame: &Frame) {
        *match frame {
            Frame::Id { .. } => &mut self.id,
            Frame::KeyReq { .. } => &mut self.keyreq,
            Frame::TopoReq { .. } => &mut self.toporeq,
            Frame::KeyFlood(_) => &mut self.keyflood,
            Frame::TopoFlood(_) => &mut self.topoflood,
            Frame::Resp { .. } => &mut self.resp,
        } += 1;
    }
}

impl std::fmt::Display for FrameCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ID {}, KEYREQ {}, TOPOREQ {}, KEYFLOOD {}, TOPOFLOOD {}, RESP {}",
            self.id, self.keyreq, self.toporeq, self.keyflood, self.topoflood, self.resp
        )
    }
}

/// Running totals, for logs and the exit summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub frames_in: u64,
    /// `frames_in`, by type.
    pub received: FrameCounts,
    /// Queries not passed on because their TTL was spent.
    pub ttl_spent: u64,
    pub requests: u64,
    pub floods_in: u64,
    pub floods_forwarded: u64,
    pub answers: u64,
    pub duplicates: u64,
    /// `--full-reach`: copies of a query already handled that came with more TTL than
    /// any before them and were passed on again (once each, however many neighbours
    /// they went to; `floods_forwarded` counts the copies).
    pub reforwarded: u64,
    pub protocol_errors: u64,
    /// Floods from a neighbour with a TTL above the protocol's 3: a broken or hostile
    /// peer (one public implementation wraps a TTL of 0 to 65535). Treated as spent.
    pub ttl_above_max: u64,
    /// Topology queries dropped because this servent's address would take their path
    /// past the 400 bytes an info may hold (only TTLs far above the protocol's can).
    pub info_too_long: u64,
}

#[derive(Debug)]
struct Link {
    role: Role,
    /// Our own address on this link, as the other side sees it: our `myip:myport`.
    local: SocketAddr,
    peer: SocketAddr,
    /// Whether its coming up was logged at info level: then so is its going.
    announced: bool,
}

/// The servent's log lines that a peer can make repeat at will, one throttle a kind.
#[derive(Debug)]
struct PeerLogs {
    /// A connection said what it is (neighbour or client).
    roles: Throttle,
    /// A protocol error closes a connection.
    refusals: Throttle,
    /// A topology info too long to add this servent to.
    info_too_long: Throttle,
    /// A flood with a TTL above 3.
    ttl: Throttle,
}

impl PeerLogs {
    fn new() -> PeerLogs {
        PeerLogs {
            roles: Throttle::new(Level::Info, "connections identified"),
            refusals: Throttle::new(Level::Warn, "protocol errors"),
            info_too_long: Throttle::new(Level::Warn, "topology infos too long"),
            ttl: Throttle::new(Level::Warn, "TTLs above 3"),
        }
    }

    fn all(&mut self) -> [&mut Throttle; 4] {
        [
            &mut self.roles,
            &mut self.refusals,
            &mut self.info_too_long,
            &mut self.ttl,
        ]
    }
}

/// A servent: its store, its links, its seen set, and the actions it has decided on.
#[derive(Debug)]
pub struct Servent {
    store: Store,
    links: IdMap<LinkId, Link>,
    /// Neighbour links in the order they came up: floods go out in that order.
    neighbours: Vec<LinkId>,
    /// Counts changes to `neighbours`, so a driver can tell when its copy is stale.
    neighbours_changed: u64,
    seen: SeenCache,
    /// The port this servent listens on, which its topology entries name.
    listen_port: u16,
    advertise: Option<Ipv4Addr>,
    ttl_rule: TtlRule,
    full_reach: bool,
    initial_ttl: u16,
    actions: VecDeque<Action>,
    /// `Some` when verdicts are reported.
    verdicts: Option<VecDeque<Verdict>>,
    counters: Counters,
    logs: PeerLogs,
}

impl Servent {
    pub fn new(store: Store, listen_port: u16, config: Config) -> Servent {
        Servent {
            store,
            links: IdMap::default(),
            neighbours: Vec::new(),
            neighbours_changed: 0,
            seen: SeenCache::new(config.seen_lifetime, config.seen_capacity),
            listen_port,
            advertise: config.advertise,
            ttl_rule: config.ttl_rule,
            full_reach: config.full_reach,
            initial_ttl: config.initial_ttl,
            actions: VecDeque::new(),
            verdicts: None,
            counters: Counters::default(),
            logs: PeerLogs::new(),
        }
    }

    /// A connection is up. Outbound links are neighbours at once; inbound ones must
    /// first say what they are with ID.
    pub fn handle_link_up(
        &mut self,
        link: LinkId,
        direction: Direction,
        local: SocketAddr,
        peer: SocketAddr,
    ) {
        let role = match direction {
            Direction::Outbound => {
                self.neighbours.push(link);
                self.neighbours_changed += 1;
                // The driver says it (at info), knowing whether the neighbour was
                // unreachable before.
                debug!("link {link}: outbound link to {peer}");
                Role::Servent
            }
            Direction::Inbound => {
                debug!("link {link}: accepted from {peer}");
                Role::Unidentified
            }
        };
        let announced = direction == Direction::Outbound;
        let state = Link {
            role,
            local,
            peer,
            announced,
        };
        self.links.insert(link, state);
    }

    /// A connection is gone, for whatever reason.
    pub fn handle_link_down(&mut self, link: LinkId) {
        if let Some(gone) = self.links.remove(&link) {
            if gone.role == Role::Servent {
                self.neighbours.retain(|&n| n != link);
                self.neighbours_changed += 1;
                if gone.announced {
                    info!("link {link}: neighbour {} gone", gone.peer);
                } else {
                    debug!("link {link}: neighbour {} gone", gone.peer);
                }
            } else {
                debug!("link {link}: {} gone", gone.peer);
            }
        }
    }

    /// Whether some peer-triggered log lines were held back, to be counted by
    /// [`Servent::tick_logs`] once more may be logged.
    pub fn logs_held_back(&mut self) -> bool {
        self.logs.all().iter().any(|t| t.holds_back())
    }

    /// Logs how many peer-triggered lines were held back, where that is due.
    pub fn tick_logs(&mut self, now: Instant) {
        for throttle in self.logs.all() {
            throttle.tick(now);
        }
    }

    /// A whole frame arrived on `link`.
    pub fn handle_frame(&mut self, link: LinkId, frame: Frame, now: Instant) {
        self.counters.frames_in += 1;
        self.counters.received.count(&frame);
        let Some(state) = self.links.get(&link) else {
            warn!("link {link}: frame for an unknown link ignored");
            return;
        };
        let (role, local, peer) = (state.role, state.local, state.peer);
        debug!("link {link}: received {frame} from {peer}");
        match (role, frame) {
            (Role::Unidentified, Frame::Id { port: 0 }) => {
                self.set_role(link, Role::Servent);
                self.neighbours.push(link);
                self.neighbours_changed += 1;
                let line = format_args!("link {link}: {peer} is a neighbour servent");
                if self.logs.roles.log(now, line) {
                    if let Some(state) = self.links.get_mut(&link) {
                        state.announced = true;
                    }
                }
            }
            (Role::Unidentified, Frame::Id { port }) => match peer {
                SocketAddr::V4(peer_v4) => {
                    let reply = SocketAddrV4::new(*peer_v4.ip(), port);
                    self.set_role(link, Role::Client { reply });
                    let line =
                        format_args!("link {link}: {peer} is a client, answers go to {reply}");
                    self.logs.roles.log(now, line);
                }
                SocketAddr::V6(_) => self.refuse(
                    link,
                    format!("client {peer} is on IPv6, which the wire format cannot carry"),
                    now,
                ),
            },
            (Role::Servent, Frame::Id { port: 0 }) => {
                debug!("link {link}: repeated ID(0) from neighbour {peer} ignored");
            }
            (Role::Client { reply }, Frame::KeyReq { seq, key }) => {
                let flood = self.client_query(reply, local, seq, key);
                self.handle_key_query(None, flood, now);
            }
            (Role::Client { reply }, Frame::TopoReq { seq }) => {
                let flood = self.client_query(reply, local, seq, Text::default());
                self.handle_topology_query(None, local, flood, now);
            }
            (Role::Servent, Frame::KeyFlood(flood)) => {
                self.counters.floods_in += 1;
                self.handle_key_query(Some(link), flood, now);
            }
            (Role::Servent, Frame::TopoFlood(flood)) => {
                self.counters.floods_in += 1;
                self.handle_topology_query(Some(link), local, flood, now);
            }
            (role, frame) => {
                let who = match role {
                    Role::Unidentified => "a connection that has not sent ID",
                    Role::Servent => "a neighbour servent",
                    Role::Client { .. } => "a client",
                };
                let reason = format!("{} is not allowed from {who}", frame.name());
                self.refuse(link, reason, now);
            }
        }
    }

    /// A hint before a batch of floods is handled: reads what handling the `nth` of
    /// them, query `id`, will look up in the seen set (see [`SeenCache::prefetch`]),
    /// so that a batch's cache misses overlap. Decides nothing.
    pub fn prefetch(&self, id: &QueryId, nth: usize) -> u64 {
        self.seen.prefetch(id, nth)
    }

    /// From now on, keep [`Verdict`]s for [`Servent::poll_verdict`]. A driver that asks
    /// must drain them after every frame it hands over.
    pub fn report_verdicts(&mut self) {
        self.verdicts.get_or_insert_with(VecDeque::new);
    }

    /// The next verdict about the frames handled since the last call, if any.
    pub fn poll_verdict(&mut self) -> Option<Verdict> {
        self.verdicts.as_mut()?.pop_front()
    }

    fn verdict(&mut self, verdict: Verdict) {
        if let Some(verdicts) = self.verdicts.as_mut() {
            verdicts.push_back(verdict);
        }
    }

    /// The two ends of a link: (ours, theirs).
    pub fn link_addresses(&self, link: LinkId) -> Option<(SocketAddr, SocketAddr)> {
        self.links.get(&link).map(|l| (l.local, l.peer))
    }

    /// The next thing to do, if any.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The links to neighbour servents, in the order floods go out on them.
    pub fn neighbours(&self) -> &[LinkId] {
        &self.neighbours
    }

    /// Changes whenever [`Servent::neighbours`] does.
    pub fn neighbours_version(&self) -> u64 {
        self.neighbours_changed
    }

    pub fn role(&self, link: LinkId) -> Option<Role> {
        self.links.get(&link).map(|l| l.role)
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Whether this servent passes on again a later copy with more TTL (`--full-reach`).
    pub fn full_reach(&self) -> bool {
        self.full_reach
    }

    /// The driver found a stream it cannot decode (and closes it).
    pub fn note_protocol_error(&mut self) {
        self.counters.protocol_errors += 1;
    }

    pub fn seen_len(&self) -> usize {
        self.seen.len()
    }

    /// Forgets every query seen, as if their lifetimes were over: for `tp3-sim`, whose
    /// queries are far apart (each is flooded until nothing is in flight) however long
    /// a simulated link takes.
    pub fn forget_seen(&mut self) {
        self.seen.clear();
    }

    /// A client's request as the flood it starts: the initial TTL, and the client's
    /// reply address as the network can reach it.
    fn client_query(
        &mut self,
        reply: SocketAddrV4,
        local: SocketAddr,
        seq: u32,
        text: Text,
    ) -> Flood {
        self.counters.requests += 1;
        let client = self.reachable_reply(reply, local);
        self.verdict(Verdict::Started(QueryId::new(client, seq)));
        Flood {
            ttl: self.initial_ttl,
            seq,
            client,
            text,
        }
    }

    /// This servent's address as other hosts can reach it, given the local address of
    /// the link a request came on: `--advertise` if set; the link's address unless it
    /// is loopback; else the address a neighbour on another host knows us by, if any
    /// (a client on loopback must not make us name ourselves 127.0.0.1 to the world).
    fn reachable_ip(&self, local: IpAddr) -> IpAddr {
        if let Some(ip) = self.advertise {
            return IpAddr::V4(ip);
        }
        if !local.is_loopback() {
            return local;
        }
        self.neighbours
            .iter()
            .filter_map(|n| self.links.get(n))
            .map(|l| l.local.ip())
            .find(|ip| ip.is_ipv4() && !ip.is_loopback())
            .unwrap_or(local)
    }

    /// The reply address to put in floods for a client on `local`'s link. A client
    /// on loopback listens on every interface of this host, so it is reachable at our
    /// own reachable address; its 127.0.0.1 would mean "yourself" to a neighbour
    /// on another host.
    fn reachable_reply(&self, reply: SocketAddrV4, local: SocketAddr) -> SocketAddrV4 {
        if !reply.ip().is_loopback() {
            return reply;
        }
        match self.reachable_ip(local.ip()) {
            IpAddr::V4(ip) if ip != *reply.ip() => {
                debug!(
                    "client {reply} is on loopback: floods name it as {ip}:{}",
                    reply.port()
                );
                SocketAddrV4::new(ip, reply.port())
            }
            _ => reply,
        }
    }

    fn set_role(&mut self, link: LinkId, role: Role) {
        if let Some(state) = self.links.get_mut(&link) {
            state.role = role;
        }
    }

    fn refuse(&mut self, link: LinkId, reason: String, now: Instant) {
        self.counters.protocol_errors += 1;
        self.logs
            .refusals
            .log(now, format_args!("link {link}: closing: {reason}"));
        self.actions.push_back(Action::Close { link, reason });
    }

    /// Seen-check shared by both query kinds. `from` is None for a client's request,
    /// `ttl` the TTL the copy came with.
    fn admit(&mut self, from: Option<LinkId>, id: QueryId, ttl: u16, now: Instant) -> Admit {
        if self.full_reach {
            return self.admit_full_reach(from, id, ttl, now);
        }
        if self.seen.insert(id, now) {
            return Admit::New;
        }
        self.duplicate(from, id)
    }

    /// [`Servent::admit`] under full reach, out of line so that the servent without it
    /// runs the code it always did.
    #[inline(never)]
    fn admit_full_reach(
        &mut self,
        from: Option<LinkId>,
        id: QueryId,
        ttl: u16,
        now: Instant,
    ) -> Admit {
        match self
            .seen
            .insert_ttl(id, copy_strength(from, ttl, self.initial_ttl), now)
        {
            Seen::New => return Admit::New,
            Seen::Raised { was } => {
                if let Some(out) = self.forward_ttl(from, ttl) {
                    if self.targets(from) > 0 {
                        return self.again(from, id, ttl, was, out);
                    }
                }
            }
            Seen::Kept { .. } => {}
        }
        self.duplicate(from, id)
    }

    fn duplicate(&mut self, from: Option<LinkId>, id: QueryId) -> Admit {
        self.counters.duplicates += 1;
        self.verdict(Verdict::Dropped(id, DropReason::Duplicate));
        debug!(
            "query {}:{}#{} dropped: duplicate (from {})",
            id.ip,
            id.port,
            id.seq,
            describe_source(from)
        );
        Admit::Duplicate
    }

    /// A copy of a query handled before, with more TTL than any before it, goes on
    /// again with `out` (full reach). Out of line: the common paths stay short.
    #[cold]
    fn again(&self, from: Option<LinkId>, id: QueryId, ttl: u16, was: u8, out: u16) -> Admit {
        if !log::log_enabled!(Level::Debug) {
            return Admit::Again(out);
        }
        let before = match was {
            CLIENT_STRENGTH => "the client's request".to_string(),
            was => format!("TTL {was}"),
        };
        let copy = match from {
            None => "the client's request".to_string(),
            Some(link) => format!("copy with TTL {ttl} from link {link}"),
        };
        debug!(
            "query {id}: {copy} beats {before} seen before: forwarding again with TTL {out} \
             (full reach)"
        );
        Admit::Again(out)
    }

    fn handle_key_query(&mut self, from: Option<LinkId>, flood: Flood, now: Instant) {
        let query = KeyFloodRef {
            ttl: flood.ttl,
            seq: flood.seq,
            client: flood.client,
            key: flood.text.as_bytes(),
        };
        if let Some(ttl) = self.decide_key_query(from, query, now) {
            self.actions.push_back(Action::Flood {
                except: from,
                frame: Frame::KeyFlood(Flood { ttl, ..flood }),
            });
        }
    }

    /// A KEYFLOOD from a neighbour, handed over where it lies in the input (the
    /// driver's fast path: the same rules as [`Servent::handle_frame`], with no frame
    /// built). Returns the TTL to pass the frame on with to every neighbour but
    /// `link`, if it goes on; answers and closes come out of [`Servent::poll_action`]
    /// as ever.
    pub fn handle_key_flood(
        &mut self,
        link: LinkId,
        query: KeyFloodRef<'_>,
        now: Instant,
    ) -> Option<u16> {
        let peer = match self.links.get(&link) {
            Some(state) if state.role == Role::Servent => state.peer,
            // Not a neighbour (or no link): the general path refuses it, as it should.
            _ => {
                self.handle_frame(link, query.to_frame(), now);
                return None;
            }
        };
        self.counters.frames_in += 1;
        self.counters.received.keyflood += 1;
        self.counters.floods_in += 1;
        debug!("link {link}: received {query} from {peer}");
        self.decide_key_query(Some(link), query, now)
    }

    /// Everything about a key query but sending it on: the seen check, the answer if
    /// the key is here, and the TTL it goes on with (`None`: it stops here).
    fn decide_key_query(
        &mut self,
        from: Option<LinkId>,
        query: KeyFloodRef<'_>,
        now: Instant,
    ) -> Option<u16> {
        match self.admit(from, QueryId::new(query.client, query.seq), query.ttl, now) {
            Admit::New => {}
            Admit::Duplicate => return None,
            Admit::Again(ttl) => return Some(self.forward_again(from, ttl)),
        }
        if from.is_some() && query.ttl > self.initial_ttl {
            self.ttl_above_max(from, query.client, query.seq, query.ttl, now);
        }
        let key = || String::from_utf8_lossy(query.key);
        match self.store.get_text(query.key) {
            Some(value) => {
                debug!(
                    "query {}#{}: key {:?} found, answering",
                    query.client,
                    query.seq,
                    key()
                );
                let frame = Frame::Resp {
                    seq: query.seq,
                    value,
                };
                self.answer(query.client, frame);
            }
            None => debug!(
                "query {}#{}: key {:?} not here",
                query.client,
                query.seq,
                key()
            ),
        }
        let ttl = self.forward_ttl(from, query.ttl);
        self.forward_decision(from, ttl, query.client, query.seq, query.ttl)
    }

    fn handle_topology_query(
        &mut self,
        from: Option<LinkId>,
        local: SocketAddr,
        flood: Flood,
        now: Instant,
    ) {
        let again = match self.admit(from, QueryId::new(flood.client, flood.seq), flood.ttl, now) {
            Admit::New => None,
            Admit::Duplicate => return,
            Admit::Again(ttl) => Some(ttl),
        };
        if again.is_none() && from.is_some() && flood.ttl > self.initial_ttl {
            self.ttl_above_max(from, flood.client, flood.seq, flood.ttl, now);
        }
        let forward_ttl = self.forward_ttl(from, flood.ttl);
        let me = SocketAddr::new(self.reachable_ip(local.ip()), self.listen_port).to_string();
        // A peer's trailing whitespace would leave two spaces between entries.
        let mut info = flood.text.as_bytes().trim_ascii_end().to_vec();
        if !info.is_empty() {
            info.push(b' ');
        }
        info.extend_from_slice(me.as_bytes());
        let info = match Text::new(info) {
            Ok(info) => info,
            Err(e) => {
                self.logs.info_too_long.log(
                    now,
                    format_args!(
                        "query {}#{} dropped: topology info with {me} added would be {e}",
                        flood.client, flood.seq
                    ),
                );
                let id = QueryId::new(flood.client, flood.seq);
                self.counters.info_too_long += 1;
                self.verdict(Verdict::Dropped(id, DropReason::InfoTooLong));
                return;
            }
        };
        let going_on = match again {
            // Handled before: answered then (or not at all, if its info was too long).
            Some(ttl) => Some(self.forward_again(from, ttl)),
            None => {
                let frame = Frame::Resp {
                    seq: flood.seq,
                    value: info.clone(),
                };
                self.answer(flood.client, frame);
                self.forward_decision(from, forward_ttl, flood.client, flood.seq, flood.ttl)
            }
        };
        if let Some(ttl) = going_on {
            self.actions.push_back(Action::Flood {
                except: from,
                frame: Frame::TopoFlood(Flood {
                    ttl,
                    text: info,
                    ..flood
                }),
            });
        }
    }

    fn answer(&mut self, to: SocketAddrV4, frame: Frame) {
        self.counters.answers += 1;
        self.actions.push_back(Action::Answer { to, frame });
    }

    /// The TTL a query from `from` (None: the client) that came with `ttl` goes on
    /// with, by this servent's rule ([`TtlRule::forward_ttl`]).
    fn forward_ttl(&self, from: Option<LinkId>, ttl: u16) -> Option<u16> {
        self.ttl_rule
            .forward_ttl_from(self.initial_ttl, from.is_none(), ttl)
    }

    /// Whether a query goes on, and with which TTL: `ttl` (from
    /// [`Servent::forward_ttl`]) if there is a neighbour to send it to. Counts the
    /// copies it will make. `received` is the TTL it came with, for the log.
    fn forward_decision(
        &mut self,
        from: Option<LinkId>,
        ttl: Option<u16>,
        client: SocketAddrV4,
        seq: u32,
        received: u16,
    ) -> Option<u16> {
        let Some(ttl) = ttl else {
            self.ttl_spent(client, seq, received);
            return None;
        };
        let targets = self.targets(from);
        if targets == 0 {
            debug!("query {client}#{seq}: no neighbour to forward to");
            return None;
        }
        debug!("query {client}#{seq}: forwarding with TTL {ttl} to {targets} neighbour(s)");
        self.counters.floods_forwarded += targets as u64;
        Some(ttl)
    }

    /// Counts a copy passed on again (full reach), with `ttl`, to every neighbour but
    /// `from`; [`Servent::admit`] has checked there is one.
    #[cold]
    fn forward_again(&mut self, from: Option<LinkId>, ttl: u16) -> u16 {
        self.counters.reforwarded += 1;
        self.counters.floods_forwarded += self.targets(from) as u64;
        ttl
    }

    /// Out of line: the forwarding path stays short.
    #[cold]
    fn ttl_spent(&mut self, client: SocketAddrV4, seq: u32, received: u16) {
        if received > self.initial_ttl {
            debug!("query {client}#{seq}: TTL {received} treated as TTL 0, not forwarded");
        } else if received == 0 {
            debug!("query {client}#{seq}: TTL 0, not forwarded");
        } else {
            debug!(
                "query {client}#{seq}: TTL {received}, decremented to {} ({} TTL rule), \
                 not forwarded",
                received - 1,
                self.ttl_rule.name()
            );
        }
        self.counters.ttl_spent += 1;
        self.verdict(Verdict::Dropped(
            QueryId::new(client, seq),
            DropReason::TtlSpent,
        ));
    }

    /// A flood from a neighbour claimed a TTL above the protocol's 3: it is answered
    /// here but goes no further, as if spent. Out of line, like `ttl_spent`.
    #[cold]
    fn ttl_above_max(
        &mut self,
        from: Option<LinkId>,
        client: SocketAddrV4,
        seq: u32,
        ttl: u16,
        now: Instant,
    ) {
        self.counters.ttl_above_max += 1;
        self.logs.ttl.log(
            now,
            format_args!(
                "query {client}#{seq} from {}: TTL {ttl} is above the protocol's {INITIAL_TTL} \
                 (a broken or hostile peer): answered, not forwarded",
                describe_source(from)
            ),
        );
    }

    /// How many neighbours a query from `from` goes on to.
    fn targets(&self, from: Option<LinkId>) -> usize {
        self.neighbours.iter().filter(|&&n| Some(n) != from).count()
    }
}

/// What [`Servent::admit`] made of a query.
enum Admit {
    /// Not seen before: handle it.
    New,
    /// Seen before, and this copy goes no further.
    Duplicate,
    /// Seen before, but this copy came with more TTL than any before it (full reach):
    /// pass it on again with this TTL, answer nothing.
    Again(u16),
}

/// What the seen cache keeps of a copy under full reach, to tell whether a later one
/// goes further: its TTL, 0 for a TTL above the most a flood may carry (`max`: it
/// counts as spent), and for a client's request more than any TTL (the servent it
/// asked never passes an echo of it on). TTLs above 254 (never the protocol's) count
/// as 254.
const CLIENT_STRENGTH: u8 = u8::MAX;

fn copy_strength(from: Option<LinkId>, ttl: u16, max: u16) -> u8 {
    match from {
        None => CLIENT_STRENGTH,
        Some(_) if ttl <= max => ttl.min(u16::from(CLIENT_STRENGTH - 1)) as u8,
        Some(_) => 0,
    }
}

fn describe_source(from: Option<LinkId>) -> String {
    match from {
        Some(link) => format!("link {link}"),
        None => "the client".to_string(),
    }
}
