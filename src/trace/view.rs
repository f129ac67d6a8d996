//! `flood-view`'s model: the traces of several servents read ([`parse`]) and merged
//! into each query's flood, the tree it took ([`build`]); [`super::text`] and
//! [`super::dot`] draw it. Pure: text in, data out.
//!
//! Who got a copy from whom is found from the connection each event names: the
//! sender's `sent` event and the receiver's `received` event of one copy show the same
//! two addresses, swapped. The first copy a servent receives is the one it handles;
//! later ones are its duplicates, or, under `--full-reach`, copies it passed on again
//! because they came with more TTL (told by the copies it sends right after one).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::{BufRead, Read};
use std::net::SocketAddr;

use super::{Event, EventKind};
use crate::servent::DropReason;

/// The drop reasons the drawing treats apart, as traces name them.
pub(super) const DUPLICATE: &str = DropReason::Duplicate.name();
pub(super) const TTL_SPENT: &str = DropReason::TtlSpent.name();
/// The fate of a later copy a servent passed on again (`--full-reach`).
pub const FORWARDED_AGAIN: &str = "forwarded again (full reach)";

/// A trace line that is not an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub source: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.source, self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// The longest line a trace can hold: a frame's texts are at most 400 bytes, 2.4 KB
/// as escaped JSON; anything far longer is not a trace (a binary, a log).
const MAX_LINE: u64 = 64 * 1024;

/// What a line that is not an event is told, after its place.
const NOT_A_TRACE: &str =
    "not a trace line (expected one JSON record per line as written by servent --trace)";

/// A trace's events that `keep` wants, read a line at a time. A last line cut short
/// (the servent was killed while writing it) is skipped, and said so in the returned
/// warning; any other bad line, or a read error, is an error, in plain words: the
/// file is not a trace, rather than what the JSON parser stumbled on.
pub fn parse(
    mut reader: impl BufRead,
    source: &str,
    keep: impl Fn(&Event) -> bool,
) -> Result<(Vec<Event>, Option<String>), ParseError> {
    let mut events = Vec::new();
    let mut line = Vec::new();
    for number in 1.. {
        let error = |message: String| ParseError {
            source: source.to_string(),
            line: number,
            message,
        };
        line.clear();
        match reader.by_ref().take(MAX_LINE).read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(error(format!("cannot read it: {e}"))),
        }
        let complete = line.last() == Some(&b'\n');
        if !complete && line.len() as u64 >= MAX_LINE {
            return Err(error(format!(
                "{NOT_A_TRACE}: a line of more than {} KiB",
                MAX_LINE / 1024
            )));
        }
        let Ok(text) = std::str::from_utf8(&line) else {
            return Err(error(format!("{NOT_A_TRACE}: it is not text")));
        };
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Event>(text) {
            Ok(event) if keep(&event) => events.push(event),
            Ok(_) => {}
            // No newline after it and cut in the middle of a record: a line still
            // being written, or the last one of a servent that was killed.
            Err(e) if !complete && e.is_eof() && text.starts_with('{') => {
                let warning = format!("{source}:{number}: incomplete last line skipped");
                return Ok((events, Some(warning)));
            }
            // JSON, but not an event: say which field is missing or wrong.
            Err(e) if e.is_data() => {
                let what = e.to_string();
                let what = what.split(" at line ").next().unwrap_or(&what);
                return Err(error(format!("{NOT_A_TRACE}: {what}")));
            }
            Err(_) => return Err(error(NOT_A_TRACE.to_string())),
        }
    }
    Ok((events, None))
}

/// How one servent took a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub servent: String,
    pub from: Sender,
    /// The TTL of the copy it handled (none for a client's request).
    pub ttl: Option<u16>,
    pub at_us: u64,
    /// Values answered, each with what became of it.
    pub answers: Vec<Answer>,
    /// Why it went no further, if it was dropped after being handled (`ttl`, ...).
    pub stopped: Option<String>,
}

impl Node {
    pub(crate) fn new(servent: String, from: Sender, ttl: Option<u16>, at_us: u64) -> Node {
        Node {
            servent,
            from,
            ttl,
            at_us,
            answers: Vec::new(),
            stopped: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// A client's request: the client's connection.
    Client(String),
    Servent(String),
    /// A connection no trace names the other end of.
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub value: String,
    pub at_us: u64,
    pub sent_us: Option<u64>,
    pub lost: Option<String>,
}

/// A copy that did not make a servent handle the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub from: Sender,
    /// The receiver's name, or for a copy not seen arriving, the address it went to.
    pub to: String,
    pub ttl: Option<u16>,
    pub at_us: u64,
    /// `duplicate`, or why nothing is known of it.
    pub fate: String,
}

/// One query's flood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flood {
    /// `client-ip:port#seq`.
    pub query: String,
    /// KEYFLOOD or TOPOFLOOD.
    pub kind: String,
    pub key: Option<String>,
    pub start_us: u64,
    /// Servents that handled it, in the order they did.
    pub nodes: Vec<Node>,
    /// Copies dropped as duplicates, and copies sent that no trace shows arriving.
    pub copies: Vec<Copy>,
}

impl Flood {
    pub fn answers(&self) -> usize {
        self.nodes.iter().map(|n| n.answers.len()).sum()
    }

    pub fn duplicates(&self) -> usize {
        self.copies.iter().filter(|c| c.fate == DUPLICATE).count()
    }

    /// Later copies passed on again (`--full-reach`).
    pub fn forwarded_again(&self) -> usize {
        self.copies
            .iter()
            .filter(|c| c.fate == FORWARDED_AGAIN)
            .count()
    }
}

/// Each query's flood, from the traces of any number of servents (in any order),
/// by the time it started.
pub fn build(traces: &[Vec<Event>]) -> Vec<Flood> {
    let names = servent_names(traces);
    let name = |file: usize, event: &Event| names[&(file, event.servent.as_str())].clone();
    // Each connection's two ends -> the servent at the first.
    let mut ends: HashMap<(&str, &str), String> = HashMap::new();
    // Each local address -> the servent it belongs to (a listening address names it).
    let mut owners: HashMap<&str, String> = HashMap::new();
    for (file, trace) in traces.iter().enumerate() {
        for event in trace {
            if let (Some(local), Some(link)) = (&event.local, &event.link) {
                ends.entry((local.as_str(), link.as_str()))
                    .or_insert_with(|| name(file, event));
                owners
                    .entry(local.as_str())
                    .or_insert_with(|| name(file, event));
            }
        }
    }
    let sender = |event: &Event| match (&event.local, &event.link) {
        (Some(local), Some(link)) => match ends.get(&(link.as_str(), local.as_str())) {
            Some(servent) => Sender::Servent(servent.clone()),
            None => Sender::Unknown(link.clone()),
        },
        _ => Sender::Unknown(event.link.clone().unwrap_or_else(|| "?".into())),
    };

    // Every query's events, in time order (a trace's own order where times tie).
    let mut by_query: BTreeMap<&str, Vec<(u64, usize, usize, &Event)>> = BTreeMap::new();
    for (file, trace) in traces.iter().enumerate() {
        for (line, event) in trace.iter().enumerate() {
            if let Some(query) = &event.query {
                let entry = (event.time_us, file, line, event);
                by_query.entry(query).or_default().push(entry);
            }
        }
    }
    let mut floods = Vec::new();
    for (query, mut events) in by_query {
        events.sort_unstable_by_key(|&(time, file, line, _)| (time, file, line));
        let mut flood = Flood {
            query: query.to_string(),
            kind: String::new(),
            key: None,
            start_us: events[0].0,
            nodes: Vec::new(),
            copies: Vec::new(),
        };
        // Copies sent, with their connection (sender's end, receiver's end); and the
        // connections copies were seen arriving on, the same way round. Matched at
        // the end: with clocks of several hosts, an arrival may seem to come first.
        let mut sent: Vec<(&str, &str, Copy)> = Vec::new();
        let mut arrived: HashSet<(&str, &str)> = HashSet::new();
        // Later copies received, waiting for their verdict: (servent, link, index).
        let mut later: Vec<(String, Option<String>, usize)> = Vec::new();
        for &(time, file, _, event) in &events {
            let servent = name(file, event);
            let Some(frame) = &event.frame else {
                continue;
            };
            let node = flood.nodes.iter().position(|n| n.servent == servent);
            match (event.event, frame.kind.as_str()) {
                (EventKind::Received, "KEYREQ" | "TOPOREQ") => {
                    flood.kind = if frame.kind == "KEYREQ" {
                        "KEYFLOOD".to_string()
                    } else {
                        "TOPOFLOOD".to_string()
                    };
                    flood.key = frame.key.clone();
                    let client = event.link.clone().unwrap_or_else(|| "?".into());
                    flood
                        .nodes
                        .push(Node::new(servent, Sender::Client(client), None, time));
                }
                (EventKind::Received, kind @ ("KEYFLOOD" | "TOPOFLOOD")) => {
                    if flood.kind.is_empty() {
                        flood.kind = kind.to_string();
                        flood.key = frame.key.clone();
                    }
                    if let (Some(local), Some(link)) = (&event.local, &event.link) {
                        arrived.insert((link, local));
                    }
                    let from = sender(event);
                    if node.is_none() {
                        flood.nodes.push(Node::new(servent, from, frame.ttl, time));
                    } else {
                        later.push((servent.clone(), event.link.clone(), flood.copies.len()));
                        flood.copies.push(Copy {
                            from,
                            to: servent,
                            ttl: frame.ttl,
                            at_us: time,
                            fate: "received again".to_string(),
                        });
                    }
                }
                (EventKind::Sent, "KEYFLOOD" | "TOPOFLOOD") => {
                    // Sending right after a later copy with no verdict: that copy went on
                    // again (full reach). A servent traces a copy's sends just after it.
                    // It went further after all: no longer "stopped" (TTL spent).
                    if let Some(at) = later.iter().rposition(|(s, _, _)| *s == servent) {
                        let (_, _, copy) = later.remove(at);
                        flood.copies[copy].fate = FORWARDED_AGAIN.to_string();
                        if let Some(n) = node {
                            flood.nodes[n].stopped = None;
                        }
                    }
                    if let (Some(local), Some(link)) = (&event.local, &event.link) {
                        let copy = Copy {
                            from: Sender::Servent(servent),
                            to: link.clone(),
                            ttl: frame.ttl,
                            at_us: time,
                            fate: "no trace of its arrival".to_string(),
                        };
                        sent.push((local, link, copy));
                    }
                }
                (EventKind::Dropped, _) => {
                    let reason = event.reason.clone().unwrap_or_default();
                    if reason.starts_with("answer") {
                        if let Some(answer) = node.and_then(|n| {
                            let answers = &mut flood.nodes[n].answers;
                            answers.iter_mut().rev().find(|a| a.lost.is_none())
                        }) {
                            answer.lost = Some(reason);
                        }
                        continue;
                    }
                    // The verdict on the copy this servent received last on that link.
                    let waiting = later
                        .iter()
                        .rposition(|(s, link, _)| *s == servent && *link == event.link);
                    match waiting {
                        Some(at) => {
                            let (_, _, copy) = later.remove(at);
                            flood.copies[copy].fate = reason;
                        }
                        None => {
                            if let Some(n) = node {
                                flood.nodes[n].stopped = Some(reason);
                            }
                        }
                    }
                }
                (EventKind::Answered, _) => {
                    if let Some(n) = node {
                        flood.nodes[n].answers.push(Answer {
                            value: frame.value.clone().unwrap_or_default(),
                            at_us: time,
                            sent_us: None,
                            lost: None,
                        });
                    }
                }
                (EventKind::Sent, "RESP") => {
                    if let Some(answer) = node.and_then(|n| {
                        let answers = &mut flood.nodes[n].answers;
                        answers.iter_mut().find(|a| a.sent_us.is_none())
                    }) {
                        answer.sent_us = Some(time);
                    }
                }
                _ => {}
            }
        }
        // What was sent and never seen arriving, named by its receiver if known.
        for (from, to, mut copy) in sent {
            if arrived.contains(&(from, to)) {
                continue;
            }
            if let Some(owner) = owners.get(to) {
                copy.to = owner.clone();
            }
            flood.copies.push(copy);
        }
        flood.copies.sort_by_key(|c| c.at_us);
        if !flood.nodes.is_empty() || !flood.copies.is_empty() {
            floods.push(flood);
        }
    }
    floods.sort_by_key(|f| f.start_us);
    floods
}

/// The name of each servent of each trace (by trace index and `servent` field): the
/// field itself, except that a servent listening on all interfaces (0.0.0.0) is named
/// by an address of its links with its listening port, as the servent itself names
/// itself in topology answers: one other hosts reach rather than loopback, if it has
/// one. Keyed by trace too: every servent of a multi-host run may be `0.0.0.0:5000`.
fn servent_names(traces: &[Vec<Event>]) -> HashMap<(usize, &str), String> {
    let mut names = HashMap::new();
    for (file, trace) in traces.iter().enumerate() {
        for event in trace {
            let key = (file, event.servent.as_str());
            if names.contains_key(&key) {
                continue;
            }
            let named = match event.servent.parse::<SocketAddr>() {
                Ok(listen) if listen.ip().is_unspecified() => {
                    let ips = trace
                        .iter()
                        .filter(|e| e.servent == event.servent)
                        .filter_map(|e| e.local.as_deref()?.parse::<SocketAddr>().ok())
                        .map(|local| local.ip())
                        .filter(|ip| !ip.is_unspecified());
                    ips.min_by_key(|ip| ip.is_loopback())
                        .map(|ip| SocketAddr::new(ip, listen.port()).to_string())
                }
                _ => None,
            };
            names.insert(key, named.unwrap_or_else(|| event.servent.clone()));
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::text::{render_text, Names};
    use crate::trace::FrameFields;

    const Q: &str = "127.0.0.1:6000#7";

    fn flood(ttl: u16) -> FrameFields {
        FrameFields {
            kind: "KEYFLOOD".into(),
            ttl: Some(ttl),
            seq: Some(7),
            client: Some("127.0.0.1:6000".into()),
            key: Some("k\"\\".into()),
            ..FrameFields::default()
        }
    }

    /// An event at `servent` on the connection (`local`, `link`).
    fn event(time_us: u64, servent: &str, kind: EventKind, local: &str, link: &str) -> Event {
        Event {
            time_us,
            servent: servent.into(),
            link: Some(link.into()),
            local: Some(local.into()),
            query: Some(Q.into()),
            frame: Some(flood(3)),
            ..Event::new(kind)
        }
    }

    #[test]
    fn a_copy_is_matched_to_its_sender_by_the_connection_even_if_it_seems_to_arrive_first() {
        // a (listening on 0.0.0.0:1) sends to b on a's end 10.0.0.1:50000; b's clock is
        // behind, so its arrival is stamped before the sending.
        let a = vec![
            Event {
                frame: Some(FrameFields {
                    kind: "KEYREQ".into(),
                    seq: Some(7),
                    key: Some("k".into()),
                    ..FrameFields::default()
                }),
                ..event(
                    100,
                    "0.0.0.0:1",
                    EventKind::Received,
                    "10.0.0.1:1",
                    "10.0.0.9:777",
                )
            },
            event(
                110,
                "0.0.0.0:1",
                EventKind::Sent,
                "10.0.0.1:50000",
                "10.0.0.2:2",
            ),
        ];
        let b = vec![
            event(
                105,
                "10.0.0.2:2",
                EventKind::Received,
                "10.0.0.2:2",
                "10.0.0.1:50000",
            ),
            Event {
                reason: Some("ttl".into()),
                ..event(
                    106,
                    "10.0.0.2:2",
                    EventKind::Dropped,
                    "10.0.0.2:2",
                    "10.0.0.1:50000",
                )
            },
        ];
        let floods = build(&[b, a]);
        assert_eq!(floods.len(), 1);
        let flood = &floods[0];
        assert_eq!(flood.query, Q);
        assert_eq!(flood.kind, "KEYFLOOD");
        assert!(flood.copies.is_empty(), "{:?}", flood.copies);
        assert_eq!(flood.nodes.len(), 2);
        assert_eq!(
            flood.nodes[0].servent, "10.0.0.1:1",
            "0.0.0.0 named by its links"
        );
        assert_eq!(flood.nodes[0].from, Sender::Client("10.0.0.9:777".into()));
        assert_eq!(flood.nodes[1].from, Sender::Servent("10.0.0.1:1".into()));
        assert_eq!(flood.nodes[1].stopped.as_deref(), Some("ttl"));
    }

    #[test]
    fn without_the_senders_trace_the_tree_starts_at_an_unknown_link() {
        // Only b's and c's traces: b got the query from an untraced servent, sent it to
        // c, which got it again from the untraced one and dropped that copy, and to d,
        // whose trace is missing too.
        let b = vec![
            event(10, "b:2", EventKind::Received, "b:2", "x:9"),
            event(11, "b:2", EventKind::Sent, "b:40000", "c:3"),
            event(12, "b:2", EventKind::Sent, "b:40001", "d:4"),
        ];
        let c = vec![
            event(20, "c:3", EventKind::Received, "c:3", "b:40000"),
            event(30, "c:3", EventKind::Received, "c:3", "y:9"),
            Event {
                reason: Some("duplicate".into()),
                ..event(31, "c:3", EventKind::Dropped, "c:3", "y:9")
            },
        ];
        let floods = build(&[b, c]);
        let flood = &floods[0];
        assert_eq!(flood.nodes[0].from, Sender::Unknown("x:9".into()));
        assert_eq!(flood.nodes[1].from, Sender::Servent("b:2".into()));
        assert_eq!(flood.duplicates(), 1);
        let text = render_text(&floods, &Names::default());
        let expected = [
            "query 127.0.0.1:6000#7, key \"k\\\"\\\\\": 2 servents reached, 0 answers, 1 duplicate dropped",
            "  x:9 (no trace)",
            "  └── b:2  TTL 3  +0.000 ms",
            "      ├╌╌ d:4  TTL 3  +0.002 ms  no trace of its arrival",
            "      └── c:3  TTL 3  +0.010 ms",
            "  y:9 (no trace) ╌╌> c:3  TTL 3  +0.020 ms  dropped: duplicate",
        ];
        assert_eq!(text.lines().collect::<Vec<_>>(), expected, "{text}");
    }

    #[test]
    fn servents_on_all_interfaces_are_told_apart_by_their_links() {
        // Two hosts' servents, both 0.0.0.0:5000; h1's client is on its loopback.
        let h1 = vec![
            Event {
                frame: Some(FrameFields {
                    kind: "KEYREQ".into(),
                    seq: Some(7),
                    ..FrameFields::default()
                }),
                ..event(
                    1,
                    "0.0.0.0:5000",
                    EventKind::Received,
                    "127.0.0.1:5000",
                    "127.0.0.1:9",
                )
            },
            event(
                2,
                "0.0.0.0:5000",
                EventKind::Sent,
                "10.0.0.1:40000",
                "10.0.0.2:5000",
            ),
        ];
        let h2 = vec![event(
            3,
            "0.0.0.0:5000",
            EventKind::Received,
            "10.0.0.2:5000",
            "10.0.0.1:40000",
        )];
        let flood = &build(&[h1, h2])[0];
        let servents: Vec<&str> = flood.nodes.iter().map(|n| n.servent.as_str()).collect();
        assert_eq!(servents, ["10.0.0.1:5000", "10.0.0.2:5000"]);
        assert_eq!(flood.nodes[1].from, Sender::Servent("10.0.0.1:5000".into()));
        assert!(flood.copies.is_empty());
    }

    #[test]
    fn a_cut_last_line_is_skipped_and_any_other_bad_line_is_an_error() {
        let good = serde_json::to_string(&event(1, "a:1", EventKind::Sent, "a:1", "b:2")).unwrap();
        let (events, warning) = parse(format!("{good}\n{good}\n{{\"time").as_bytes(), "t", |_| {
            true
        })
        .unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            warning.as_deref(),
            Some("t:3: incomplete last line skipped")
        );
        let error = parse(
            format!("{good}\nnot json\n{good}\n").as_bytes(),
            "t",
            |_| true,
        )
        .unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.to_string().starts_with("t:2: "), "{error}");
        let not_a_trace = "t:1: not a trace line (expected one JSON record per line as \
                           written by servent --trace)";
        // A README, a binary, or text cut short that never was a record: errors in
        // plain words, never a skipped last line.
        for bad in [
            &b"# tp3kv\n\nA lookup\n"[..],
            b"\x7fELF\x02\x01\x01\xff\xfe\n",
            b"hello",
        ] {
            let error = parse(bad, "t", |_| true).unwrap_err();
            assert!(error.to_string().starts_with(not_a_trace), "{error}");
        }
        let error = parse(&b"{\"time_us\": 1}\n"[..], "t", |_| true).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("{not_a_trace}: missing field `servent`")
        );
    }
}
