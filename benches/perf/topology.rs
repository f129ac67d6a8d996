//! The scale section's topology query: this process as a client of servent 0 sends one
//! TOPOREQ and collects the answers, each on a connection of its own, until they stop
//! coming; then checks every answer's path against the graph.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener as StdListener, TcpStream};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};
use tp3kv::protocol::{decode, Frame, INITIAL_TTL};
use tp3kv::sim::topology::{Graph, Node};

use crate::scale::distances;

/// The topology query ends this long after the last answer (or the query, if none)...
const QUIET: Duration = Duration::from_secs(2);
/// ...or this long after the query, whichever comes first.
pub const ANSWER_CAP: Duration = Duration::from_secs(30);
/// The seq of our TOPOREQ.
pub const TOPO_SEQ: u32 = 0x5ca1_e000;
/// A path names at most this many servents: the first sends TTL 3, and a servent that
/// receives TTL 0 answers but forwards no more (docs/PROTOCOL.md: at most 5 servents).
pub const MAX_PATH: usize = INITIAL_TTL as usize + 2;

/// One answer to the topology query.
struct Answer {
    at: Instant,
    seq: u32,
    value: String,
}

/// What came back for one TOPOREQ.
pub struct Topology {
    sent: Instant,
    answers: Vec<Answer>,
    /// Reply connections that brought something other than one RESP.
    problems: Vec<String>,
    /// Whether collection stopped at `ANSWER_CAP` rather than after `QUIET`.
    pub capped: bool,
}

fn fail(what: &'static str) -> impl Fn(io::Error) -> String {
    move |e| format!("scale: topology query: {what}: {e}")
}

/// A reply connection being read.
struct Reply {
    stream: mio::net::TcpStream,
    peer: SocketAddr,
    buf: Vec<u8>,
}

impl Topology {
    /// Connects to `entry` as a client, sends `TOPOREQ(seq)`, and collects answers until
    /// `QUIET` passes without one (`ANSWER_CAP` at most).
    pub fn ask(entry: SocketAddrV4, seq: u32) -> Result<Topology, String> {
        const LISTENER: Token = Token(usize::MAX);
        let socket =
            Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(fail("socket"))?;
        socket
            .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
            .map_err(fail("bind"))?;
        socket.listen(1024).map_err(fail("listen"))?;
        socket.set_nonblocking(true).map_err(fail("listener"))?;
        let listener = StdListener::from(socket);
        let port = listener.local_addr().map_err(fail("listener"))?.port();
        let mut listener = mio::net::TcpListener::from_std(listener);
        let mut poll = Poll::new().map_err(fail("poll"))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(fail("register"))?;

        let mut client = TcpStream::connect(entry).map_err(fail("connect"))?;
        client.set_nodelay(true).map_err(fail("connect"))?;
        let mut request = Frame::Id { port }.to_bytes();
        Frame::TopoReq { seq }.encode(&mut request);
        client.write_all(&request).map_err(fail("send"))?;
        let sent = Instant::now();

        let mut topo = Topology {
            sent,
            answers: Vec::new(),
            problems: Vec::new(),
            capped: false,
        };
        let mut replies: HashMap<Token, Reply> = HashMap::new();
        let mut next_token = 0usize;
        let mut events = Events::with_capacity(256);
        let mut chunk = [0u8; 1024];
        loop {
            let now = Instant::now();
            let quiet_end = topo.answers.last().map_or(sent, |a| a.at) + QUIET;
            let cap_end = sent + ANSWER_CAP;
            if now >= quiet_end.min(cap_end) {
                topo.capped = cap_end < quiet_end;
                break;
            }
            let wait = (quiet_end.min(cap_end) - now).min(Duration::from_millis(100));
            match poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(fail("poll")(e)),
            }
            for event in &events {
                if event.token() == LISTENER {
                    loop {
                        match listener.accept() {
                            Ok((mut stream, peer)) => {
                                let token = Token(next_token);
                                next_token += 1;
                                poll.registry()
                                    .register(&mut stream, token, Interest::READABLE)
                                    .map_err(fail("register"))?;
                                replies.insert(
                                    token,
                                    Reply {
                                        stream,
                                        peer,
                                        buf: Vec::new(),
                                    },
                                );
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(fail("accept")(e)),
                        }
                    }
                    continue;
                }
                let Some(reply) = replies.get_mut(&event.token()) else {
                    continue;
                };
                // Read until a whole frame, the end, or nothing more for now.
                let done = loop {
                    match decode(&reply.buf) {
                        Ok(Some((Frame::Resp { seq, value }, _))) => {
                            topo.answers.push(Answer {
                                at: Instant::now(),
                                seq,
                                value: value.to_lossy().into_owned(),
                            });
                            break true;
                        }
                        Ok(Some((other, _))) => {
                            topo.problems.push(format!(
                                "{} sent {} instead of RESP",
                                reply.peer,
                                other.name()
                            ));
                            break true;
                        }
                        Err(e) => {
                            topo.problems
                                .push(format!("{} sent a bad frame: {e}", reply.peer));
                            break true;
                        }
                        Ok(None) => {}
                    }
                    match reply.stream.read(&mut chunk) {
                        Ok(0) => {
                            topo.problems.push(format!(
                                "{} closed its reply connection after {} byte(s), before \
                                 a whole RESP",
                                reply.peer,
                                reply.buf.len()
                            ));
                            break true;
                        }
                        Ok(n) => reply.buf.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            topo.problems
                                .push(format!("reply connection from {}: {e}", reply.peer));
                            break true;
                        }
                    }
                };
                if done {
                    // One RESP per connection: we close it (dropping it).
                    replies.remove(&event.token());
                }
            }
        }
        for reply in replies.values() {
            topo.problems.push(format!(
                "{} left its reply connection open with {} byte(s) and no whole RESP",
                reply.peer,
                reply.buf.len()
            ));
        }
        drop(client);
        Ok(topo)
    }

    pub fn last_after(&self) -> Option<Duration> {
        self.answers.last().map(|a| a.at.duration_since(self.sent))
    }

    /// Checks every answer against the graph (`addrs`: each servent's `ip:port`).
    pub fn check(&self, graph: &Graph, addrs: &HashMap<String, usize>) -> TopoCheck {
        let dist = distances(graph, 0);
        let hops = MAX_PATH - 1;
        let in_reach: Vec<usize> = (0..graph.len())
            .filter(|&i| dist[i].is_some_and(|d| d <= hops))
            .collect();
        let mut problems = self.problems.clone();
        // Path length (servents) of each answerer's path, by answerer.
        let mut answered: HashMap<usize, usize> = HashMap::new();
        for answer in &self.answers {
            if answer.seq != TOPO_SEQ {
                problems.push(format!(
                    "RESP with seq {:#x}, ours is {TOPO_SEQ:#x}: {:?}",
                    answer.seq, answer.value
                ));
                continue;
            }
            let path: Option<Vec<usize>> = answer
                .value
                .split(' ')
                .map(|element| addrs.get(element).copied())
                .collect();
            let Some(path) = path else {
                problems.push(format!(
                    "path {:?} names an address that is no servent's",
                    answer.value
                ));
                continue;
            };
            let Some(&last) = path.last() else {
                problems.push("an empty path".to_string());
                continue;
            };
            if path[0] != 0 {
                problems.push(format!(
                    "path {:?} starts at servent {}, not 0",
                    answer.value, path[0]
                ));
            }
            if path.len() > MAX_PATH {
                problems.push(format!(
                    "path {:?} names {} servents, over the {MAX_PATH} a TTL of {INITIAL_TTL} \
                     allows",
                    answer.value,
                    path.len()
                ));
            }
            if let Some(pair) = path
                .windows(2)
                .find(|p| !graph.adjacent(p[0] as Node, p[1] as Node))
            {
                problems.push(format!(
                    "path {:?}: servents {} and {} are not neighbours",
                    answer.value, pair[0], pair[1]
                ));
            }
            if path.iter().collect::<HashSet<_>>().len() != path.len() {
                problems.push(format!("path {:?} visits a servent twice", answer.value));
            }
            if answered.insert(last, path.len()).is_some() {
                problems.push(format!("servent {last} answered twice"));
            }
        }
        let answers = self.answers.len();
        let within_reach = in_reach.len();
        if answers == 0 {
            problems.push("no answer at all to the TOPOREQ".into());
        } else if answers > within_reach {
            problems.push(format!(
                "{answers} answers, but only {within_reach} servents within {hops} hops"
            ));
        }
        // X may fall short of Y without anything wrong: a servent handles the first copy
        // of a flood that reaches it, even one that came the long way round with less TTL
        // left, and drops the later copies, so a servent 3 hops away may end up with TTL
        // 0 and never forward to a neighbour 4 hops away that no other copy reaches.
        // But a servent that got the query with TTL left forwards it to every neighbour
        // but the one it came from, and each of those answers (first copy or not): a
        // neighbour of such a servent missing from the answers is a flood or an answer
        // lost, not a detour.
        let mut lost = Vec::new();
        for (&k, &len) in &answered {
            if len < MAX_PATH {
                lost.extend(
                    graph
                        .neighbours(k as Node)
                        .iter()
                        .map(|&m| m as usize)
                        .filter(|m| !answered.contains_key(m))
                        .map(|m| {
                            format!(
                                "servent {k} got the query {} hop(s) out, with TTL to spare, \
                             but its neighbour {m} never answered",
                                len - 1
                            )
                        }),
                );
            }
        }
        problems.extend(lost);
        let missed: Vec<usize> = in_reach
            .iter()
            .copied()
            .filter(|i| !answered.contains_key(i))
            .collect();
        let detours = answered
            .iter()
            .filter(|(&i, &len)| dist[i].is_some_and(|d| len > d + 1))
            .count();
        TopoCheck {
            answers,
            answerers: answered.keys().copied().collect(),
            within_reach,
            missed_by_distance: (0..=hops)
                .map(|d| missed.iter().filter(|&&i| dist[i] == Some(d)).count())
                .collect(),
            reach_by_distance: (0..=hops)
                .map(|d| in_reach.iter().filter(|&&i| dist[i] == Some(d)).count())
                .collect(),
            detours,
            problems,
        }
    }
}

/// The topology answers against the graph.
pub struct TopoCheck {
    /// X: answers received.
    pub answers: usize,
    /// The servents that answered, by index.
    pub answerers: BTreeSet<usize>,
    /// Y: servents within 4 hops of servent 0 (itself included).
    pub within_reach: usize,
    /// Servents at each distance 0..=4 from servent 0, and how many of them never answered.
    reach_by_distance: Vec<usize>,
    missed_by_distance: Vec<usize>,
    /// Answers whose path was longer than the shortest to their servent.
    detours: usize,
    pub problems: Vec<String>,
}

impl TopoCheck {
    pub fn print_reach(&self) {
        let by_distance: Vec<String> = self
            .reach_by_distance
            .iter()
            .zip(&self.missed_by_distance)
            .enumerate()
            .map(|(d, (all, missed))| format!("{d}: {}/{all}", all - missed))
            .collect();
        println!(
            "  answered/servents by distance from servent 0: {}; {} answer(s) came by a \
             longer path than the shortest",
            by_distance.join(", "),
            self.detours
        );
    }
}
