//! Property tests: the decoder on arbitrary and near-valid bytes, the encode/decode
//! round trip, the servent state machine against a small reference model on arbitrary
//! event sequences, the seen cache alone, and lookups in random in-memory networks.

mod sim;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};

use sim::{flood_ttl, Network, NodeId};
use tp3kv::protocol::{
    decode, decode_all, DecodeError, Flood, Frame, KeyFloodRef, Text, INITIAL_TTL, MAX_FRAME,
    MAX_TEXT,
};
use tp3kv::servent::{Action, Config, Direction, LinkId, QueryId, Role, SeenCache, Servent};
use tp3kv::store::Store;

// ---------------------------------------------------------------------------------------
// Generators of frames and bytes
// ---------------------------------------------------------------------------------------

/// Arbitrary bytes, up to the limit, with the sizes near the limit well represented.
fn text() -> impl Strategy<Value = Text> {
    prop_oneof![
        3 => vec(any::<u8>(), 0..=40),
        1 => vec(any::<u8>(), 0..=MAX_TEXT),
        1 => vec(any::<u8>(), MAX_TEXT - 8..=MAX_TEXT),
    ]
    .prop_map(|bytes| Text::new(bytes).unwrap())
}

fn ipv4_addr() -> impl Strategy<Value = SocketAddrV4> {
    (any::<u32>(), any::<u16>()).prop_map(|(ip, port)| SocketAddrV4::new(Ipv4Addr::from(ip), port))
}

fn flood() -> impl Strategy<Value = Flood> {
    (any::<u16>(), any::<u32>(), ipv4_addr(), text()).prop_map(|(ttl, seq, client, text)| Flood {
        ttl,
        seq,
        client,
        text,
    })
}

/// Any frame the protocol has, with arbitrary fields.
fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        any::<u16>().prop_map(|port| Frame::Id { port }),
        (any::<u32>(), text()).prop_map(|(seq, key)| Frame::KeyReq { seq, key }),
        any::<u32>().prop_map(|seq| Frame::TopoReq { seq }),
        flood().prop_map(Frame::KeyFlood),
        flood().prop_map(Frame::TopoFlood),
        (any::<u32>(), text()).prop_map(|(seq, value)| Frame::Resp { seq, value }),
    ]
}

/// The header size of a frame type (including the 2-byte type), if the type exists.
fn header_size(kind: u16) -> Option<usize> {
    match kind {
        4 => Some(4),
        6 => Some(6),
        5 | 9 => Some(8),
        7 | 8 => Some(16),
        _ => None,
    }
}

fn be16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

/// Bytes that look like a frame: a valid type (or a near miss), random header fields, a
/// plausible or implausible `len`, a body of about that length, then cut anywhere.
fn near_frame_bytes() -> impl Strategy<Value = Vec<u8>> {
    let kind = prop_oneof![8 => 4u16..=9, 1 => 0u16..=12, 1 => any::<u16>()];
    let len = prop_oneof![
        3 => 0u16..=16,
        2 => 380u16..=420,
        1 => Just(MAX_TEXT as u16),
        1 => Just(MAX_TEXT as u16 + 1),
        1 => any::<u16>(),
    ];
    let slack = prop_oneof![Just(0usize), 0usize..=8];
    (
        kind,
        len,
        vec(any::<u8>(), 14),
        vec(any::<u8>(), 0..=MAX_FRAME + 20),
        slack,
        any::<Index>(),
        any::<bool>(),
    )
        .prop_map(|(kind, len, fields, body, slack, cut, whole)| {
            let mut bytes = kind.to_be_bytes().to_vec();
            let header = header_size(kind).unwrap_or(8);
            let text_carrying = !matches!(kind, 4 | 6);
            // The fixed fields between the type and the len (or the end of the header).
            let fixed = if text_carrying {
                header - 4
            } else {
                header - 2
            };
            bytes.extend_from_slice(&fields[..fixed]);
            if text_carrying {
                bytes.extend_from_slice(&len.to_be_bytes());
            }
            let want = usize::from(len) + slack;
            bytes.extend_from_slice(&body[..want.min(body.len())]);
            if !whole {
                let keep = cut.index(bytes.len() + 1);
                bytes.truncate(keep);
            }
            bytes
        })
}

// ---------------------------------------------------------------------------------------
// 1 and 2: the decoder
// ---------------------------------------------------------------------------------------

/// What `decode` may say about `input`, and only that.
fn check_decode(input: &[u8]) -> Result<(), TestCaseError> {
    match decode(input) {
        Ok(Some((frame, used))) => {
            prop_assert!(used <= input.len());
            prop_assert_eq!(frame.encoded_len(), used);
            prop_assert_eq!(frame.to_bytes(), &input[..used]);
            // A frame is decided by its own bytes: what follows it does not matter.
            prop_assert_eq!(decode(&input[..used]), Ok(Some((frame, used))));
        }
        Ok(None) => {
            // "Need more bytes" is only said of something shorter than the longest frame.
            prop_assert!(input.len() < MAX_FRAME);
            // Zero bytes are the most permissive completion (the smallest len): they make
            // a valid frame longer than the input, unless the bytes already there rule
            // every completion out. The decoder may only wait in that case while the
            // header, which carries the whole error value, is incomplete: one byte of
            // type, or the high byte of `len` alone.
            let mut padded = input.to_vec();
            padded.resize(MAX_FRAME, 0);
            match decode(&padded) {
                Ok(Some((_, used))) => prop_assert!(used > input.len()),
                Ok(None) => prop_assert!(false, "{} bytes still not enough", MAX_FRAME),
                Err(e) => {
                    let header = if input.len() < 2 {
                        2
                    } else {
                        header_size(be16(input)).expect("known type")
                    };
                    prop_assert!(
                        input.len() < header,
                        "waited on a complete header that is already bad ({e:?})"
                    );
                }
            }
        }
        Err(e) => {
            prop_assert!(input.len() >= 2);
            let kind = be16(input);
            match e {
                DecodeError::UnknownType(t) => {
                    prop_assert_eq!(t, kind);
                    prop_assert!(header_size(t).is_none());
                    prop_assert_eq!(decode(&input[..2]), Err(e));
                }
                DecodeError::TooLong { kind: k, len } => {
                    prop_assert_eq!(k, kind);
                    prop_assert!(usize::from(len) > MAX_TEXT);
                    prop_assert!(!matches!(kind, 4 | 6), "type {} has no len", kind);
                    let header = header_size(kind).expect("known type");
                    prop_assert!(input.len() >= header);
                    prop_assert_eq!(be16(&input[header - 2..]), len);
                    prop_assert_eq!(decode(&input[..header]), Err(e));
                }
            }
        }
    }
    Ok(())
}

/// `decode_all` is `decode` repeated: the frames it returns re-encode to the bytes it
/// says it used, and it stops exactly where `decode` would.
fn check_decode_all(input: &[u8]) -> Result<(), TestCaseError> {
    let (frames, used, err) = decode_all(input);
    let again: Vec<u8> = frames.iter().flat_map(Frame::to_bytes).collect();
    prop_assert_eq!(&again[..], &input[..used]);
    match err {
        Some(e) => prop_assert_eq!(decode(&input[used..]), Err(e)),
        None => prop_assert_eq!(decode(&input[used..]), Ok(None)),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn decode_arbitrary_bytes(input in vec(any::<u8>(), 0..1000)) {
        check_decode(&input)?;
        check_decode_all(&input)?;
    }

    #[test]
    fn decode_near_valid_bytes(input in near_frame_bytes()) {
        check_decode(&input)?;
        check_decode_all(&input)?;
    }

    #[test]
    fn encode_decode_round_trip(frame in frame(), trailing in vec(any::<u8>(), 0..20)) {
        let bytes = frame.to_bytes();
        prop_assert_eq!(bytes.len(), frame.encoded_len());
        prop_assert_eq!(decode(&bytes), Ok(Some((frame.clone(), bytes.len()))));
        // Whatever follows does not change the frame.
        let mut longer = bytes.clone();
        longer.extend_from_slice(&trailing);
        prop_assert_eq!(decode(&longer), Ok(Some((frame.clone(), bytes.len()))));
        // `encode` appends.
        let mut out = trailing.clone();
        frame.encode(&mut out);
        prop_assert_eq!(&out[..trailing.len()], &trailing[..]);
        prop_assert_eq!(&out[trailing.len()..], &bytes[..]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn every_strict_prefix_of_a_frame_needs_more(frame in frame()) {
        let bytes = frame.to_bytes();
        for cut in 0..bytes.len() {
            prop_assert_eq!(decode(&bytes[..cut]), Ok(None), "prefix of {} bytes", cut);
            check_decode(&bytes[..cut])?;
        }
    }

    #[test]
    fn a_stream_split_anywhere_decodes_to_its_frames(
        frames in vec(frame(), 0..8),
        cuts in vec(any::<Index>(), 0..12),
        use_decode_all in any::<bool>(),
    ) {
        let stream: Vec<u8> = frames.iter().flat_map(Frame::to_bytes).collect();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        cuts.push(stream.len());
        cuts.sort_unstable();
        let mut buf = Vec::new();
        let mut got = Vec::new();
        let mut at = 0;
        for cut in cuts {
            buf.extend_from_slice(&stream[at..cut]);
            at = cut;
            // Take every whole frame, then compact, as the driver does.
            if use_decode_all {
                let (mut frames, used, err) = decode_all(&buf);
                prop_assert_eq!(err, None);
                got.append(&mut frames);
                buf.drain(..used);
            } else {
                loop {
                    match decode(&buf) {
                        Ok(Some((frame, used))) => {
                            got.push(frame);
                            buf.drain(..used);
                        }
                        Ok(None) => break,
                        Err(e) => prop_assert!(false, "valid stream refused: {e:?}"),
                    }
                }
            }
        }
        prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());
        prop_assert_eq!(got, frames);
    }
}

/// The decoder waits for a whole field before refusing, so these say "need more" though
/// no valid frame starts with them: the first byte of an unknown type, and a header
/// whose `len` high byte alone already means over 400. That is what lets the error carry
/// the full type or length; the error always comes with the header, never later.
#[test]
fn decoder_waits_for_the_whole_field_before_refusing() {
    assert_eq!(decode(&[0xff]), Ok(None));
    assert_eq!(decode(&[0xff, 0]), Err(DecodeError::UnknownType(0xff00)));
    assert_eq!(decode(&[0, 5, 0, 0, 0, 0, 2]), Ok(None));
    assert_eq!(
        decode(&[0, 5, 0, 0, 0, 0, 2, 0]),
        Err(DecodeError::TooLong { kind: 5, len: 512 })
    );
}

// ---------------------------------------------------------------------------------------
// 3: the seen cache alone
// ---------------------------------------------------------------------------------------

const TICK: Duration = Duration::from_millis(100);

/// What a reference model knows of whether an id is still remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Memory {
    Remembered,
    Forgotten,
    /// Within the cache's clock granularity of its expiry: either answer is right.
    Either,
}

/// Every admission, in order. An id is forgotten once `capacity` newer admissions came
/// after its last one (the oldest is evicted first), or once its lifetime is over.
#[derive(Debug)]
struct SeenModel {
    /// The lifetime the cache really applies: whole ticks, at least one.
    lifetime: Duration,
    capacity: usize,
    log: Vec<(QueryId, Instant)>,
}

impl SeenModel {
    fn new(lifetime: Duration, capacity: usize) -> SeenModel {
        let ticks = lifetime.as_millis().div_ceil(TICK.as_millis()).max(1) as u32;
        SeenModel {
            lifetime: TICK * ticks,
            capacity: capacity.max(1),
            log: Vec::new(),
        }
    }

    /// The last admission of `id` that has not been evicted, and its time.
    fn live_since(&self, id: QueryId) -> Option<Instant> {
        let at = self.log.iter().rposition(|(i, _)| *i == id)?;
        let newer = self.log.len() - at - 1;
        (newer < self.capacity).then_some(self.log[at].1)
    }

    /// The cache counts time in ticks since its first use and rounds expiry up, so an
    /// entry may be kept up to one tick past its lifetime; never forgotten early.
    fn memory(&self, id: QueryId, now: Instant) -> Memory {
        let Some(since) = self.live_since(id) else {
            return Memory::Forgotten;
        };
        let age = now - since;
        if age < self.lifetime {
            Memory::Remembered
        } else if age < self.lifetime + TICK {
            Memory::Either
        } else {
            Memory::Forgotten
        }
    }

    fn admit(&mut self, id: QueryId, now: Instant) {
        self.log.push((id, now));
    }
}

fn small_id(n: u8) -> QueryId {
    QueryId {
        ip: Ipv4Addr::new(10, 9, 9, 1 + (n & 1)),
        port: 7000 + u16::from((n >> 1) & 1),
        seq: u32::from(n >> 2),
    }
}

/// Steps of the clock: often none, mostly small, sometimes a jump past any lifetime here.
fn clock_step() -> impl Strategy<Value = Duration> {
    prop_oneof![
        3 => Just(0u64),
        6 => 1u64..=300,
        1 => 1000u64..=8000,
    ]
    .prop_map(Duration::from_millis)
}

fn seen_ops() -> impl Strategy<Value = (u64, usize, Vec<(u8, Duration)>)> {
    (
        prop_oneof![0u64..=3000, select(vec![100u64, 500, 1000, 2000])],
        prop_oneof![1usize..=6, Just(1 << 16)],
        vec((0u8..12, clock_step()), 0..200),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn seen_cache_is_bounded_and_remembers(
        (lifetime_ms, capacity, ops) in seen_ops()
    ) {
        let lifetime = Duration::from_millis(lifetime_ms);
        let mut cache = SeenCache::new(lifetime, capacity);
        let mut model = SeenModel::new(lifetime, capacity);
        let mut now = Instant::now();
        for (n, step) in ops {
            now += step;
            let id = small_id(n);
            let was_member = cache.contains(&id);
            let memory = model.memory(id, now);
            let new = cache.insert(id, now);
            prop_assert!(cache.len() <= capacity.max(1), "len {} over {}", cache.len(), capacity);
            if !new {
                prop_assert!(was_member);
            }
            match memory {
                Memory::Remembered => prop_assert!(!new, "{:?} forgotten too early", id),
                Memory::Forgotten => prop_assert!(new, "{:?} remembered too long", id),
                Memory::Either => {}
            }
            if new {
                model.admit(id, now);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The contract as `Config::seen_lifetime` states it: an id inserted at `t` is a
    /// duplicate for every insert before `t + lifetime` (if fewer than `capacity` newer
    /// ids came after it). Once failed with tick rounding: lifetime 1 s, A at 0 ms (the
    /// epoch), B at 150 ms, B again at 1120 ms was admitted as new.
    #[test]
    fn seen_cache_remembers_for_the_whole_lifetime(
        (lifetime_ms, capacity, ops) in seen_ops()
    ) {
        let lifetime = Duration::from_millis(lifetime_ms);
        let mut cache = SeenCache::new(lifetime, capacity);
        let mut log: Vec<(QueryId, Instant)> = Vec::new();
        let mut now = Instant::now();
        for (n, step) in ops {
            now += step;
            let id = small_id(n);
            let last = log.iter().rposition(|(i, _)| *i == id);
            let remembered = last.is_some_and(|at| {
                log.len() - at - 1 < capacity.max(1) && now - log[at].1 < lifetime
            });
            let new = cache.insert(id, now);
            prop_assert!(!(remembered && new), "{:?} forgotten before its lifetime", id);
            if new {
                log.push((id, now));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// 3: the servent state machine against a reference model
// ---------------------------------------------------------------------------------------

const LISTEN_PORT: u16 = 5000;
const STORE: &str = "k1 v1\nk2 value two\nk3 v3\n";
const KEYS: [&str; 5] = ["k1", "k2", "k3", "nope", ""];
const CLIENT_IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 9, 9, 1), Ipv4Addr::new(10, 9, 9, 2)];
const CLIENT_PORTS: [u16; 2] = [7000, 7001];
const LOCAL_IPS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 0, 0, 1),
    Ipv4Addr::new(192, 168, 7, 1),
    Ipv4Addr::LOCALHOST,
];
/// A link id the servent never heard of.
const UNKNOWN_LINK: LinkId = 9999;

#[derive(Debug, Clone, Copy)]
enum LinkKind {
    /// We dialled it: a neighbour at once.
    Outbound,
    /// Accepted, then ID(0).
    InboundServent,
    /// Accepted, then ID(port).
    Client { port: u16 },
    /// Accepted, no ID yet.
    Unidentified,
    /// Accepted over IPv6, no ID yet: may become a neighbour, never a client.
    UnidentifiedV6,
}

#[derive(Debug, Clone)]
struct LinkSpec {
    kind: LinkKind,
    local_ip: Ipv4Addr,
    local_port: u16,
    peer_ip: Ipv4Addr,
    peer_port: u16,
}

#[derive(Debug, Clone)]
enum Event {
    /// A frame on the link the index picks (one past the last: a link never up).
    Frame(Index, Frame),
    /// The link goes down (a no-op if it already has).
    Down(Index),
}

#[derive(Debug, Clone)]
struct MachineCase {
    lifetime_ms: u64,
    capacity: usize,
    links: Vec<LinkSpec>,
    events: Vec<(Duration, Event)>,
}

fn link_spec() -> impl Strategy<Value = LinkSpec> {
    let kind = prop_oneof![
        3 => Just(LinkKind::Outbound),
        2 => Just(LinkKind::InboundServent),
        3 => prop_oneof![select(CLIENT_PORTS.to_vec()), 1u16..]
            .prop_map(|port| LinkKind::Client { port }),
        1 => Just(LinkKind::Unidentified),
        1 => Just(LinkKind::UnidentifiedV6),
    ];
    (
        kind,
        select(LOCAL_IPS.to_vec()),
        any::<u16>(),
        select(CLIENT_IPS.to_vec()),
        any::<u16>(),
    )
        .prop_map(
            |(kind, local_ip, local_port, peer_ip, peer_port)| LinkSpec {
                kind,
                local_ip,
                local_port,
                peer_ip,
                peer_port,
            },
        )
}

/// Floods from a small domain of queries, so that duplicates are frequent, and with
/// every interesting TTL.
fn machine_flood(topology: bool) -> impl Strategy<Value = Flood> {
    let ttl = prop_oneof![0u16..=4, Just(u16::MAX), any::<u16>()];
    let text = if topology {
        prop_oneof![
            Just(Vec::new()),
            Just(b"10.0.0.9:5009".to_vec()),
            vec(any::<u8>(), 0..=30),
            vec(any::<u8>(), 380..=MAX_TEXT),
        ]
        .boxed()
    } else {
        prop_oneof![
            3 => select(KEYS.to_vec()).prop_map(|k| k.as_bytes().to_vec()),
            1 => vec(any::<u8>(), 0..=MAX_TEXT),
        ]
        .boxed()
    };
    (
        ttl,
        0u32..4,
        select(CLIENT_IPS.to_vec()),
        select(CLIENT_PORTS.to_vec()),
        text,
    )
        .prop_map(|(ttl, seq, ip, port, text)| Flood {
            ttl,
            seq,
            client: SocketAddrV4::new(ip, port),
            text: Text::new(text).unwrap(),
        })
}

fn machine_frame() -> impl Strategy<Value = Frame> {
    let key = prop_oneof![
        4 => select(KEYS.to_vec()).prop_map(|k| Text::try_from(k).unwrap()),
        1 => text(),
    ];
    prop_oneof![
        2 => prop_oneof![Just(0u16), select(CLIENT_PORTS.to_vec()), any::<u16>()]
            .prop_map(|port| Frame::Id { port }),
        4 => (0u32..4, key).prop_map(|(seq, key)| Frame::KeyReq { seq, key }),
        2 => (0u32..4).prop_map(|seq| Frame::TopoReq { seq }),
        5 => machine_flood(false).prop_map(Frame::KeyFlood),
        3 => machine_flood(true).prop_map(Frame::TopoFlood),
        1 => (0u32..4, text()).prop_map(|(seq, value)| Frame::Resp { seq, value }),
    ]
}

fn machine_case() -> impl Strategy<Value = MachineCase> {
    let event = prop_oneof![
        12 => (any::<Index>(), machine_frame()).prop_map(|(l, f)| Event::Frame(l, f)),
        1 => any::<Index>().prop_map(Event::Down),
    ];
    (
        select(vec![500u64, 1000, 2000]),
        prop_oneof![1usize..=4, Just(1 << 16)],
        vec(link_spec(), 0..9),
        vec((clock_step(), event), 1..80),
    )
        .prop_map(|(lifetime_ms, capacity, links, events)| MachineCase {
            lifetime_ms,
            capacity,
            links,
            events,
        })
}

/// What the test believes a link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModelRole {
    Unidentified,
    Servent,
    Client(SocketAddrV4),
    Gone,
}

#[derive(Debug)]
struct ModelLink {
    id: LinkId,
    local: SocketAddr,
    peer: SocketAddr,
    role: ModelRole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueryKind {
    Key,
    Topology,
}

/// A servent and a model of what it must do, run side by side.
struct Machine {
    servent: Servent,
    links: Vec<ModelLink>,
    /// Neighbour links in the order they became neighbours.
    neighbours: Vec<LinkId>,
    seen: SeenModel,
    store: Store,
    capacity: usize,
    now: Instant,
}

impl Machine {
    /// How the servent names itself to other hosts: the link's own address, unless that
    /// is loopback and a neighbour link shows a non-loopback IPv4 address (the first,
    /// in the order the neighbours came up).
    fn reachable_ip(&self, local: IpAddr) -> IpAddr {
        if !local.is_loopback() {
            return local;
        }
        self.neighbours
            .iter()
            .filter_map(|n| self.links.iter().find(|l| l.id == *n))
            .map(|l| l.local.ip())
            .find(|ip| ip.is_ipv4() && !ip.is_loopback())
            .unwrap_or(local)
    }
}

fn drain(servent: &mut Servent) -> Vec<Action> {
    std::iter::from_fn(|| servent.poll_action()).collect()
}

fn sorted_debug(actions: &[Action]) -> Vec<String> {
    let mut out: Vec<String> = actions.iter().map(|a| format!("{a:?}")).collect();
    out.sort();
    out
}

impl Machine {
    fn new(case: &MachineCase) -> Result<Machine, TestCaseError> {
        let store = Store::parse(STORE.as_bytes()).unwrap();
        let lifetime = Duration::from_millis(case.lifetime_ms);
        let config = Config {
            seen_lifetime: lifetime,
            seen_capacity: case.capacity,
            ..Config::default()
        };
        let mut machine = Machine {
            servent: Servent::new(store.clone(), LISTEN_PORT, config),
            links: Vec::new(),
            neighbours: Vec::new(),
            seen: SeenModel::new(lifetime, case.capacity),
            store,
            capacity: case.capacity,
            now: Instant::now(),
        };
        for (i, spec) in case.links.iter().enumerate() {
            let id = 10 + 7 * i as LinkId;
            let (local, peer) = match spec.kind {
                LinkKind::UnidentifiedV6 => (
                    SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), LISTEN_PORT),
                    SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), spec.peer_port),
                ),
                _ => (
                    SocketAddr::new(IpAddr::V4(spec.local_ip), spec.local_port),
                    SocketAddr::new(IpAddr::V4(spec.peer_ip), spec.peer_port),
                ),
            };
            let direction = match spec.kind {
                LinkKind::Outbound => Direction::Outbound,
                _ => Direction::Inbound,
            };
            machine.servent.handle_link_up(id, direction, local, peer);
            let role = match spec.kind {
                LinkKind::Outbound => {
                    machine.neighbours.push(id);
                    ModelRole::Servent
                }
                LinkKind::InboundServent => {
                    machine
                        .servent
                        .handle_frame(id, Frame::Id { port: 0 }, machine.now);
                    machine.neighbours.push(id);
                    ModelRole::Servent
                }
                LinkKind::Client { port } => {
                    machine
                        .servent
                        .handle_frame(id, Frame::Id { port }, machine.now);
                    ModelRole::Client(SocketAddrV4::new(spec.peer_ip, port))
                }
                LinkKind::Unidentified | LinkKind::UnidentifiedV6 => ModelRole::Unidentified,
            };
            prop_assert!(drain(&mut machine.servent).is_empty());
            machine.links.push(ModelLink {
                id,
                local,
                peer,
                role,
            });
        }
        machine.check_state()?;
        Ok(machine)
    }

    fn pick(&self, index: &Index) -> Option<usize> {
        let at = index.index(self.links.len() + 1);
        (at < self.links.len()).then_some(at)
    }

    fn link_gone(&mut self, at: usize) {
        let id = self.links[at].id;
        self.links[at].role = ModelRole::Gone;
        self.neighbours.retain(|&n| n != id);
    }

    fn apply(&mut self, step: Duration, event: &Event) -> Result<(), TestCaseError> {
        self.now += step;
        match event {
            Event::Down(index) => {
                let Some(at) = self.pick(index) else {
                    self.servent.handle_link_down(UNKNOWN_LINK);
                    prop_assert!(drain(&mut self.servent).is_empty());
                    return Ok(());
                };
                self.servent.handle_link_down(self.links[at].id);
                prop_assert!(drain(&mut self.servent).is_empty());
                self.link_gone(at);
            }
            Event::Frame(index, frame) => self.frame(index, frame.clone())?,
        }
        self.check_state()
    }

    fn frame(&mut self, index: &Index, frame: Frame) -> Result<(), TestCaseError> {
        let Some(at) = self.pick(index) else {
            self.servent.handle_frame(UNKNOWN_LINK, frame, self.now);
            prop_assert!(drain(&mut self.servent).is_empty(), "unknown link acted on");
            return Ok(());
        };
        let (id, role, peer) = (self.links[at].id, self.links[at].role, self.links[at].peer);
        let before = self.servent.counters();
        self.servent.handle_frame(id, frame.clone(), self.now);
        let actions = drain(&mut self.servent);
        let admitted = self.servent.counters().duplicates == before.duplicates;
        match (role, frame) {
            (ModelRole::Gone, _) => {
                prop_assert!(actions.is_empty(), "a link that is down acted on")
            }
            (ModelRole::Unidentified, Frame::Id { port: 0 }) => {
                prop_assert!(actions.is_empty());
                self.links[at].role = ModelRole::Servent;
                self.neighbours.push(id);
            }
            (ModelRole::Unidentified, Frame::Id { port }) => match peer {
                SocketAddr::V4(peer) => {
                    prop_assert!(actions.is_empty());
                    self.links[at].role = ModelRole::Client(SocketAddrV4::new(*peer.ip(), port));
                }
                SocketAddr::V6(_) => self.expect_close(at, &actions)?,
            },
            (ModelRole::Servent, Frame::Id { port: 0 }) => prop_assert!(actions.is_empty()),
            (ModelRole::Client(reply), Frame::KeyReq { seq, key }) => {
                let flood = Flood {
                    ttl: INITIAL_TTL,
                    seq,
                    client: reply,
                    text: key,
                };
                self.query(at, None, QueryKind::Key, flood, admitted, &actions)?;
            }
            (ModelRole::Client(reply), Frame::TopoReq { seq }) => {
                let flood = Flood {
                    ttl: INITIAL_TTL,
                    seq,
                    client: reply,
                    text: Text::default(),
                };
                self.query(at, None, QueryKind::Topology, flood, admitted, &actions)?;
            }
            (ModelRole::Servent, Frame::KeyFlood(flood)) => {
                self.query(at, Some(id), QueryKind::Key, flood, admitted, &actions)?;
            }
            (ModelRole::Servent, Frame::TopoFlood(flood)) => {
                self.query(at, Some(id), QueryKind::Topology, flood, admitted, &actions)?;
            }
            // (e): before ID anything but ID, a flood or a second ID from a client, a
            // request, RESP or a second non-zero ID from a neighbour: closed, no answer.
            _ => self.expect_close(at, &actions)?,
        }
        Ok(())
    }

    /// Exactly one action, closing this link; then the link is gone, as the driver does.
    fn expect_close(&mut self, at: usize, actions: &[Action]) -> Result<(), TestCaseError> {
        let id = self.links[at].id;
        prop_assert_eq!(actions.len(), 1, "expected one Close, got {:?}", actions);
        prop_assert!(
            matches!(&actions[0], Action::Close { link, .. } if *link == id),
            "expected Close of {}, got {:?}",
            id,
            actions
        );
        self.servent.handle_link_down(id);
        self.link_gone(at);
        Ok(())
    }

    /// A request (`from` None) or a flood from neighbour `from` on link `at`.
    fn query(
        &mut self,
        at: usize,
        from: Option<LinkId>,
        kind: QueryKind,
        flood: Flood,
        admitted: bool,
        actions: &[Action],
    ) -> Result<(), TestCaseError> {
        let qid = QueryId {
            ip: *flood.client.ip(),
            port: flood.client.port(),
            seq: flood.seq,
        };
        // (a), (c): handled (answered, forwarded) at most once while remembered...
        match self.seen.memory(qid, self.now) {
            Memory::Remembered => prop_assert!(!admitted, "{:?} handled twice", qid),
            // ... and handled again once it is forgotten.
            Memory::Forgotten => prop_assert!(admitted, "{:?} remembered too long", qid),
            Memory::Either => {}
        }
        // The invariants as the brief states them, then the exact expectation.
        for action in actions {
            match action {
                Action::Flood { except, frame } => {
                    prop_assert!(admitted);
                    // (d)
                    prop_assert_eq!(*except, from);
                    let ttl = flood_ttl(frame).expect("a flood");
                    // (b)
                    match from {
                        None => prop_assert_eq!(ttl, INITIAL_TTL),
                        Some(_) => {
                            prop_assert!(flood.ttl > 0, "forwarded a TTL 0 flood");
                            prop_assert!(flood.ttl <= INITIAL_TTL, "forwarded a TTL over 3");
                            prop_assert_eq!(ttl, flood.ttl - 1);
                        }
                    }
                }
                // (f): to the client's reply address.
                Action::Answer { to, frame } => {
                    prop_assert!(admitted);
                    prop_assert_eq!(*to, flood.client);
                    let answers_seq = matches!(frame, Frame::Resp { seq, .. } if *seq == flood.seq);
                    prop_assert!(answers_seq, "answer {:?}", frame);
                }
                Action::Close { .. } => prop_assert!(false, "closed on a valid query"),
            }
        }
        let mut expected = Vec::new();
        if admitted {
            self.seen.admit(qid, self.now);
            let forward_ttl = match from {
                None => Some(INITIAL_TTL),
                // Above the protocol's 3: a broken or hostile peer; treated as spent.
                Some(_) if flood.ttl > INITIAL_TTL => None,
                Some(_) => flood.ttl.checked_sub(1),
            };
            let has_targets = self.neighbours.iter().any(|&n| Some(n) != from);
            let forward = |text: Text, make: fn(Flood) -> Frame| match forward_ttl {
                Some(ttl) if has_targets => Some(Action::Flood {
                    except: from,
                    frame: make(Flood {
                        ttl,
                        text,
                        ..flood.clone()
                    }),
                }),
                _ => None,
            };
            match kind {
                QueryKind::Key => {
                    if let Some(value) = self.store.get_text(flood.text.as_bytes()) {
                        expected.push(Action::Answer {
                            to: flood.client,
                            frame: Frame::Resp {
                                seq: flood.seq,
                                value,
                            },
                        });
                    }
                    expected.extend(forward(flood.text.clone(), Frame::KeyFlood));
                }
                QueryKind::Topology => {
                    let me =
                        SocketAddr::new(self.reachable_ip(self.links[at].local.ip()), LISTEN_PORT)
                            .to_string();
                    // A peer's trailing whitespace is trimmed: one space between entries.
                    let mut info = flood.text.as_bytes().trim_ascii_end().to_vec();
                    if !info.is_empty() {
                        info.push(b' ');
                    }
                    info.extend_from_slice(me.as_bytes());
                    // Too long with our address added: dropped whole, not truncated.
                    if let Ok(info) = Text::new(info) {
                        expected.push(Action::Answer {
                            to: flood.client,
                            frame: Frame::Resp {
                                seq: flood.seq,
                                value: info.clone(),
                            },
                        });
                        expected.extend(forward(info, Frame::TopoFlood));
                    }
                }
            }
        }
        prop_assert_eq!(sorted_debug(actions), sorted_debug(&expected));
        Ok(())
    }

    /// The servent's view of its links agrees with the model.
    fn check_state(&self) -> Result<(), TestCaseError> {
        prop_assert_eq!(self.servent.neighbours(), &self.neighbours[..]);
        for link in &self.links {
            let role = match link.role {
                ModelRole::Unidentified => Some(Role::Unidentified),
                ModelRole::Servent => Some(Role::Servent),
                ModelRole::Client(reply) => Some(Role::Client { reply }),
                ModelRole::Gone => None,
            };
            prop_assert_eq!(self.servent.role(link.id), role, "link {}", link.id);
        }
        prop_assert!(self.servent.seen_len() <= self.capacity.max(1));
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn servent_follows_the_protocol_on_any_events(case in machine_case()) {
        let mut machine = Machine::new(&case)?;
        for (step, event) in &case.events {
            machine.apply(*step, event)?;
        }
    }
}

// ---------------------------------------------------------------------------------------
// 4: lookups in random in-memory networks
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct GraphCase {
    count: usize,
    edges: Vec<(NodeId, NodeId)>,
    holders: Vec<bool>,
    start: NodeId,
    /// None: deliveries in send order; Some: shuffled with this seed.
    shuffle: Option<u64>,
}

/// A connected graph of 2 to 20 nodes: a random spanning tree plus random extra edges,
/// no loops, no parallel links.
fn graph_case() -> impl Strategy<Value = GraphCase> {
    (
        sim::connected_graph(20),
        prop_oneof![1 => Just(None), 3 => any::<u64>().prop_map(Some)],
    )
        .prop_map(|((count, edges, holders, start), shuffle)| GraphCase {
            count,
            edges,
            holders,
            start,
            shuffle,
        })
}

/// The per-query invariants of a flood in a network, whatever the delivery order.
fn check_flood(
    net: &Network,
    start: NodeId,
    seq: u32,
    reply: SocketAddrV4,
    dist: &[Option<usize>],
) -> Result<(), TestCaseError> {
    let mut answered = HashSet::new();
    for answer in net.answers.iter().filter(|a| a.seq == seq) {
        prop_assert!(
            answered.insert(answer.from),
            "node {} answered twice",
            answer.from
        );
        prop_assert_eq!(answer.to, reply);
        prop_assert!(
            dist[answer.from].is_some_and(|d| d <= 4),
            "node {} answered from {:?} hops",
            answer.from,
            dist[answer.from]
        );
    }
    for node in 0..net.nodes.len() {
        let sent = net.sent_by(node, seq);
        let mut targets = HashSet::new();
        for d in &sent {
            prop_assert!(targets.insert(d.to), "node {} sent to {} twice", node, d.to);
        }
        if node == start {
            for d in &sent {
                prop_assert_eq!(flood_ttl(&d.frame), Some(INITIAL_TTL));
            }
            continue;
        }
        let received = net.received_by(node, seq);
        if let Some(first) = received.first() {
            prop_assert!(
                sent.iter().all(|d| d.to != first.from),
                "node {} sent back",
                node
            );
            let ttl_in = flood_ttl(&first.frame).unwrap().min(INITIAL_TTL);
            for d in &sent {
                prop_assert_eq!(flood_ttl(&d.frame), ttl_in.checked_sub(1));
            }
        } else {
            prop_assert!(sent.is_empty(), "node {} sent unprompted", node);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_networks_flood_within_four_hops(case in graph_case()) {
        let stores: Vec<String> = case
            .holders
            .iter()
            .enumerate()
            .map(|(i, &holds)| if holds { format!("k v{i}") } else { String::new() })
            .collect();
        let stores: Vec<&str> = stores.iter().map(String::as_str).collect();
        let mut net = Network::new(&stores);
        if let Some(seed) = case.shuffle {
            net = net.shuffled(seed);
        }
        for &(a, b) in &case.edges {
            net.link(a, b);
        }
        let client = net.attach_client(case.start, 7000);
        net.lookup(client, 1, "k");
        net.topology(client, 2);
        prop_assert!(net.closed.is_empty(), "{:?}", net.closed);

        let dist = net.distances(case.start);
        prop_assert!(dist.iter().all(Option::is_some), "graph not connected");
        check_flood(&net, case.start, 1, client.reply, &dist)?;
        check_flood(&net, case.start, 2, client.reply, &dist)?;

        let holders_within = |hops: usize| -> Vec<NodeId> {
            (0..case.count)
                .filter(|&n| case.holders[n] && dist[n].is_some_and(|d| d <= hops))
                .collect()
        };
        let answerers = net.answerers(1);
        prop_assert!(answerers.iter().all(|&n| case.holders[n]), "a non-holder answered");
        // In any order, the servent asked and its neighbours always hear the query.
        for n in holders_within(1) {
            prop_assert!(answerers.contains(&n), "node {} at {:?} hops missed", n, dist[n]);
        }
        let everyone_within = |hops: usize| -> Vec<NodeId> {
            (0..case.count).filter(|&n| dist[n].is_some_and(|d| d <= hops)).collect()
        };
        let topology = net.answerers(2);
        for n in everyone_within(1) {
            prop_assert!(topology.contains(&n), "node {} missed the topology query", n);
        }
        // In send order the first copy takes a shortest path: reach is exactly 4 hops.
        if case.shuffle.is_none() {
            prop_assert_eq!(answerers, holders_within(4));
            prop_assert_eq!(topology, everyone_within(4));
        }
    }
}

// ---------------------------------------------------------------------------------------
// The driver's KEYFLOOD fast path decides exactly as the general one
// ---------------------------------------------------------------------------------------

/// A servent with neighbours on links 1 to 3 and a client on link 4.
fn servent_with_links(full_reach: bool) -> Servent {
    let config = Config {
        full_reach,
        ..Config::default()
    };
    let mut servent = Servent::new(Store::parse(STORE.as_bytes()).unwrap(), 5000, config);
    let local: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let now = Instant::now();
    for link in 1..=4 {
        let peer = SocketAddr::from(([10, 0, 0, 9], 40_000 + link as u16));
        servent.handle_link_up(link, Direction::Inbound, local, peer);
        let port = if link == 4 { 7000 } else { 0 };
        servent.handle_frame(link, Frame::Id { port }, now);
    }
    servent
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The same KEYFLOODs, from neighbours and from the client, through
    /// `handle_key_flood` (borrowed bytes) and through `handle_frame` (a built frame):
    /// the same answers and closes, the same TTL going on, the same counters; with
    /// `--full-reach` or without.
    #[test]
    fn the_keyflood_fast_path_agrees_with_handle_frame(
        floods in vec((1u64..=4, 0u16..=5, 0u32..6, 0usize..KEYS.len()), 1..40),
        full_reach in any::<bool>(),
    ) {
        let mut fast = servent_with_links(full_reach);
        let mut general = servent_with_links(full_reach);
        let now = Instant::now();
        for (link, ttl, seq, key) in floods {
            let frame = Frame::KeyFlood(Flood {
                ttl,
                seq,
                client: SocketAddrV4::new(Ipv4Addr::new(10, 9, 9, 1), 7000),
                text: Text::try_from(KEYS[key]).unwrap(),
            });
            let bytes = frame.to_bytes();
            let view = KeyFloodRef::parse(&bytes).unwrap();
            let fast_ttl = fast.handle_key_flood(link, view, now);
            general.handle_frame(link, frame, now);
            let mut general_ttl = None;
            let mut fast_actions = Vec::new();
            while let Some(action) = fast.poll_action() {
                fast_actions.push(format!("{action:?}"));
            }
            let mut general_actions = Vec::new();
            while let Some(action) = general.poll_action() {
                match action {
                    Action::Flood { except, frame: Frame::KeyFlood(f) } => {
                        prop_assert_eq!(except, Some(link));
                        general_ttl = Some(f.ttl);
                    }
                    other => general_actions.push(format!("{other:?}")),
                }
            }
            prop_assert_eq!(fast_ttl, general_ttl);
            prop_assert_eq!(fast_actions, general_actions);
            prop_assert_eq!(format!("{:?}", fast.counters()), format!("{:?}", general.counters()));
        }
    }
}
