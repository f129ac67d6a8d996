//! Servent cases on networks of the implementation under test (several instances
//! linked to each other), the checker playing only the client: a diamond, where one
//! query reaches the far end twice and is answered once, and a line of six, which shows
//! which TTL rule the implementation follows.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use super::harness::{send, Client, Instance};
use super::peer::SERVENT_IP;
use super::target::free_port;
use super::{Case, CaseResult, Ctx, Failure, Problem};

pub fn cases() -> Vec<Case> {
    vec![
        case!(
            "servent.net-diamond",
            "§6.3",
            "diamond s1–{s2,s3}–s4: the far key is answered once, by s4",
            diamond
        ),
        case!(
            "servent.net-diamond-topology",
            "§8",
            "diamond: T gets one path per servent, each the way its first copy came",
            diamond_topology
        ),
        case!(
            "servent.net-line",
            "§7",
            "line of 6: s4 answers, s6 never; which TTL rule (s5) is a note",
            line
        ),
    ]
}

/// Instances started in order, each naming earlier ones as neighbours (so an
/// implementation that does not redial still links).
struct Net {
    nodes: Vec<Instance>,
}

impl Net {
    /// `edges[i]`: the earlier nodes node i names; `keys[i]`: its one `key value` line.
    fn start(ctx: &Ctx, edges: &[&[usize]], keys: &[&str]) -> Result<Net, Problem> {
        let mut ports = Vec::new();
        for _ in edges {
            ports.push(free_port().map_err(|e| {
                Failure::new(format!("no free port: {}", crate::os_error::plain(&e)))
            })?);
        }
        let mut nodes = Vec::new();
        for (i, named) in edges.iter().enumerate() {
            let peers: Vec<SocketAddrV4> = named
                .iter()
                .map(|&j| SocketAddrV4::new(Ipv4Addr::LOCALHOST, ports[j]))
                .collect();
            let kv = format!("node s{} {}\n{}\n", i + 1, i + 1, keys[i]);
            nodes.push(Instance::start_node(ctx, ports[i], kv.as_bytes(), &peers)?);
        }
        Ok(Net { nodes })
    }

    /// How a node names itself on a link it dialled to 127.0.0.1 (s1: as its client
    /// reached it).
    fn name(&self, i: usize) -> String {
        let ip = if i == 0 {
            SERVENT_IP
        } else {
            Ipv4Addr::LOCALHOST
        };
        format!("{ip}:{}", self.nodes[i].port)
    }

    fn path(&self, hops: &[usize]) -> String {
        hops.iter()
            .map(|&i| self.name(i))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Asks T on s1 until `enough` servents answer (the links are up) or the start
    /// timeout passes; returns the last answers (topology strings), sorted.
    fn settle(
        &self,
        ctx: &Ctx,
        c: &mut Client,
        enough: usize,
        seq: &mut u32,
    ) -> Result<Vec<String>, Problem> {
        let deadline = Instant::now() + ctx.timing.start;
        let mut last: Vec<String> = Vec::new();
        loop {
            *seq += 1;
            let s = seq.to_be_bytes();
            send(&mut c.conn, &[0, 6, s[0], s[1], s[2], s[3]])?;
            let answers = collect(c, ctx);
            let mut texts: Vec<String> = answers
                .iter()
                .filter(|(q, _)| *q == *seq)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .collect();
            texts.sort();
            let stable = texts == last;
            last = texts;
            if last.len() >= enough || (stable && Instant::now() >= deadline) {
                return Ok(last);
            }
            if Instant::now() >= deadline + ctx.timing.start {
                return Ok(last);
            }
        }
    }
}

/// Every answer to the client until the quiet period passes without one: (seq, value).
fn collect(c: &Client, ctx: &Ctx) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut wait = ctx.timing.timeout;
    while let Some(a) = c.reply.answer(wait) {
        if let Some(r) = a.resp() {
            out.push(r);
        }
        wait = ctx.timing.quiet;
    }
    out
}

fn ask(c: &mut Client, ctx: &Ctx, seq: u32, key: &[u8]) -> Result<Vec<Vec<u8>>, Problem> {
    c.keyreq(seq, key)?;
    Ok(collect(c, ctx)
        .into_iter()
        .filter(|(s, _)| *s == seq)
        .map(|(_, v)| v)
        .collect())
}

fn show_values(values: &[Vec<u8>]) -> String {
    if values.is_empty() {
        return "no answer".into();
    }
    values
        .iter()
        .map(|v| format!("{:?}", String::from_utf8_lossy(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// s1 (0) – s2 (1), s3 (2) – s4 (3); s4 holds `far`.
fn start_diamond(ctx: &Ctx) -> Result<(Net, Client, Vec<String>, u32), Problem> {
    let net = Net::start(ctx, &[&[], &[0], &[0], &[1, 2]], &["", "", "", "far FAR"])?;
    let mut c = net.nodes[0].client(ctx)?;
    let mut seq = 1000;
    let topo = net.settle(ctx, &mut c, 4, &mut seq)?;
    Ok((net, c, topo, seq))
}

fn diamond(ctx: &Ctx) -> CaseResult {
    let (_net, mut c, topo, seq) = start_diamond(ctx)?;
    if topo.len() < 4 {
        return Err(
            Failure::new("the diamond did not link up: T on s1 got fewer than 4 answers")
                .got(topo.join(" | "))
                .into(),
        );
    }
    let values = ask(&mut c, ctx, seq + 1, b"far")?;
    if values != [b"FAR".to_vec()] {
        let mut f = Failure::new("the key held only by s4, two hops away by two paths, should be answered exactly once (§6.3)")
            .expected("one answer \"FAR\"")
            .got(show_values(&values));
        if values.len() > 1 {
            f = f.diagnosis([
                "s4 answered both copies of the query: no seen set, or it is not consulted (§6.3)"
                    .to_string(),
            ]);
        }
        return Err(f.into());
    }
    Ok(None)
}

/// The diamond's links, both ways: s1–s2, s1–s3, s2–s4, s3–s4.
const DIAMOND_LINKS: [(usize, usize); 4] = [(0, 1), (0, 2), (1, 3), (2, 3)];

/// Whether `topo` is what one T on s1 may get: one answer from each servent, each the
/// path of the copy it handled — from s1, along links, extending the path of the
/// servent it came from. Which copy came first is a race (s3 may hear the query from
/// s4 before s1's copy), so more than one set of answers is right.
fn is_flood_tree(net: &Net, links: &[(usize, usize)], topo: &[String]) -> bool {
    let names: Vec<String> = (0..net.nodes.len()).map(|i| net.name(i)).collect();
    let mut paths: Vec<Option<Vec<usize>>> = vec![None; names.len()];
    for answer in topo {
        let Some(path) = answer
            .split(' ')
            .map(|hop| names.iter().position(|n| n == hop))
            .collect::<Option<Vec<usize>>>()
        else {
            return false;
        };
        let Some(&last) = path.last() else {
            return false;
        };
        if path[0] != 0 || paths[last].replace(path).is_some() {
            return false;
        }
    }
    let linked = |a: usize, b: usize| links.contains(&(a, b)) || links.contains(&(b, a));
    paths.iter().all(|path| match path {
        None => false,
        Some(path) => {
            path.len() == 1 || {
                let (parent, hop) = (path[path.len() - 2], path[path.len() - 1]);
                linked(parent, hop) && paths[parent].as_deref() == Some(&path[..path.len() - 1])
            }
        }
    })
}

fn diamond_topology(ctx: &Ctx) -> CaseResult {
    let (net, _c, topo, _) = start_diamond(ctx)?;
    if is_flood_tree(&net, &DIAMOND_LINKS, &topo) {
        return Ok(None);
    }
    let via2 = net.path(&[0, 1, 3]);
    let via3 = net.path(&[0, 2, 3]);
    let mut want = vec![net.path(&[0]), net.path(&[0, 1]), net.path(&[0, 2])];
    let far = topo.iter().find(|t| **t == via2 || **t == via3).cloned();
    want.push(far.clone().unwrap_or_else(|| format!("{via2} (or {via3})")));
    want.sort();
    Err(Failure::new(
        "the topology answers to one T on the diamond are not one path per servent, \
             each the path of the copy it handled (§8)",
    )
    .expected(want.join(" | "))
    .got(if topo.is_empty() {
        "no answer".into()
    } else {
        topo.join(" | ")
    })
    .diagnosis(topo.iter().filter(|t| !want.contains(t)).flat_map(|t| {
        // Compared with the expected path of as many entries.
        let n = t.split_whitespace().count();
        let mut paths = want.iter().map(|w| w.split(" (or ").next().unwrap_or(w));
        match paths.find(|w| w.split_whitespace().count() == n) {
            Some(model) => super::diagnose::topology(model, t.as_bytes()),
            None => vec![format!(
                "{t:?}: a path of {n} servents, where none is expected"
            )],
        }
    }))
    .into())
}

fn line(ctx: &Ctx) -> CaseResult {
    let keys = ["", "", "", "s4key FOUR", "ntp FIVE", "gopher SIX"];
    let net = Net::start(ctx, &[&[], &[0], &[1], &[2], &[3], &[4]], &keys)?;
    let mut c = net.nodes[0].client(ctx)?;
    let mut seq = 2000;
    net.settle(ctx, &mut c, 5, &mut seq)?;
    let four = ask(&mut c, ctx, seq + 1, b"s4key")?;
    let five = ask(&mut c, ctx, seq + 2, b"ntp")?;
    let six = ask(&mut c, ctx, seq + 3, b"gopher")?;
    if four != [b"FOUR".to_vec()] {
        return Err(Failure::new(
            "on a line s1–…–s6, s4 (3 hops from s1) must answer, once, under either TTL rule (§7)",
        )
        .expected("one answer \"FOUR\"")
        .got(show_values(&four))
        .into());
    }
    if !six.is_empty() {
        return Err(Failure::new(
            "s6, 5 hops from s1, answered: the query went further than TTL 3 allows (§7)",
        )
        .expected("no answer")
        .got(show_values(&six))
        .into());
    }
    match five.as_slice() {
        [v] if v == b"FIVE" => Ok(Some("s5 (4 hops) answers: the seed's TTL rule, test then decrement, as §7".into())),
        [] => Ok(Some(
            "s5 (4 hops) does not answer: the 2019 assignment's TTL rule, decrement then test (§7 follows the seed's)".into(),
        )),
        _ => Err(Failure::new("s5 answered more than once, or wrongly")
            .expected("one answer \"FIVE\", or none")
            .got(show_values(&five))
            .into()),
    }
}
