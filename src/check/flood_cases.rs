//! Servent cases about flooding: the checker plays two neighbours (A and B) the servent
//! dialled, and a client. Absence ("not forwarded") is proved by a sentinel: a later
//! flood sent on the same link must arrive first, since a link carries frames in order.

use std::net::SocketAddrV4;

use super::diagnose::{self, show_frame};
use super::harness::{
    expect_frame, expect_on, keyflood, read_expecting, send, Client, Instance, Setup,
};
use super::peer::{Conn, SERVENT_IP};
use super::{Case, CaseResult, Ctx, Failure, Problem};
use crate::protocol::Frame;

const TWO: Setup = Setup { neighbours: 2 };

pub fn cases() -> Vec<Case> {
    vec![
        case!(
            "servent.keyreq-floods",
            "§6.1",
            "a KEYREQ goes to every neighbour as KEYFLOOD TTL 3 with the client's address",
            keyreq_floods
        ),
        case!(
            "servent.flood-answered",
            "§6.2",
            "a KEYFLOOD for a key it holds is answered at the flood's ip:port",
            flood_answered
        ),
        case!(
            "servent.ttl-decrement",
            "§7",
            "a flood with TTL 3, 2, 1 goes on with TTL 2, 1, 0",
            ttl_decrement
        ),
        case!(
            "servent.ttl-zero",
            "§7",
            "a flood with TTL 0 is answered but not forwarded",
            ttl_zero
        ),
        case!(
            "servent.not-back-to-sender",
            "§6.2",
            "a flood goes to every neighbour except the one it came from",
            not_back_to_sender
        ),
        case!(
            "servent.dedup",
            "§6.3",
            "a repeated flood is dropped: one answer, one forward",
            dedup
        ),
        case!(
            "servent.origin-remembers",
            "§6.1 §11",
            "its own client's query coming back is dropped: no second answer",
            origin_remembers
        ),
        case!(
            "servent.id-zero-again",
            "§6",
            "an ID(0) again on a neighbour link is ignored, the link kept",
            id_zero_again
        ),
        case!(
            "servent.floods-when-holding",
            "§6.1 §6.2",
            "a query for a key it holds is answered and still flooded on",
            floods_when_holding
        ),
        case!(
            "servent.inbound-link",
            "§2",
            "a neighbour that dialled in with ID(0) gets floods too: links carry both ways",
            inbound_link
        ),
        case!(
            "servent.neighbours-one-ip",
            "§1 §6.1",
            "three neighbours on one IP each get the flood",
            neighbours_one_ip
        ),
        case!(
            "servent.neighbour-disconnects",
            "§2",
            "survives a neighbour that disconnects, and floods to the others",
            neighbour_disconnects
        ),
    ]
}

/// The three checker-played parts around a servent: links A and B, and a client.
pub(super) struct Scene {
    pub(super) inst: Instance,
    pub(super) a: Conn,
    pub(super) b: Conn,
    pub(super) client: Client,
}

impl Scene {
    pub(super) fn start(ctx: &Ctx) -> Result<Scene, Problem> {
        let mut inst = Instance::start(ctx, TWO)?;
        let b = inst.links.pop().expect("two links");
        let a = inst.links.pop().expect("two links");
        let client = inst.client(ctx)?;
        Ok(Scene { inst, a, b, client })
    }

    /// The client's reply address, as floods should carry it.
    pub(super) fn reply(&self) -> SocketAddrV4 {
        self.client.reply_addr()
    }

    /// The servent's name in topology strings, as reached on a link it dialled to
    /// 127.0.0.1 (§8: the local address of the connection the query came on).
    pub(super) fn me_on_link(&self) -> String {
        format!("127.0.0.1:{}", self.inst.port)
    }

    /// Its name as its clients reach it (at 127.0.0.3).
    pub(super) fn me_for_client(&self) -> String {
        format!("{SERVENT_IP}:{}", self.inst.port)
    }
}

/// Reads the flood of the client's query on `link`. §11 lets a servent write, for a
/// client on loopback, its own address reached (127.0.0.3 here) with the client's port
/// instead of the client's IP: both are accepted, and the flood read is returned.
pub(super) fn expect_client_flood(
    link: &mut Conn,
    ctx: &Ctx,
    want: &Frame,
    what: &str,
) -> Result<Frame, Problem> {
    let got = read_expecting(link, ctx, want, what)?;
    let mut own = want.clone();
    if let Frame::KeyFlood(f) | Frame::TopoFlood(f) = &mut own {
        f.client = SocketAddrV4::new(SERVENT_IP, f.client.port());
    }
    if got == own.to_bytes() {
        return Ok(own);
    }
    expect_frame(&got, want, what)?;
    Ok(want.clone())
}

/// The reply address a flood carries.
fn client_of(f: &Frame) -> SocketAddrV4 {
    match f {
        Frame::KeyFlood(f) | Frame::TopoFlood(f) => f.client,
        _ => SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0),
    }
}

pub(super) fn send_frame(link: &mut Conn, f: &Frame) -> Result<(), Problem> {
    send(link, &f.to_bytes())
}

fn keyreq_floods(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    s.client.keyreq(7, b"rtmp")?;
    let want = keyflood(3, 7, s.reply(), b"rtmp");
    let sent = expect_client_flood(&mut s.a, ctx, &want, "the flood to neighbour A")?;
    expect_on(&mut s.b, ctx, &sent, "the flood to neighbour B")?;
    s.client.expect_no_answer(ctx, "it does not hold rtmp")?;
    Ok(None)
}

fn flood_answered(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    let f = keyflood(2, 12, s.reply(), b"alpha");
    send_frame(&mut s.a, &f)?;
    s.client.expect_answer(ctx, 12, b"first value")?;
    Ok(None)
}

/// Sends `ttl` on A and expects `next` on B (or, when `None`, the sentinel first).
fn forward_check(
    s: &mut Scene,
    ctx: &Ctx,
    ttl: u16,
    seq: u32,
    next: Option<u16>,
) -> Result<(), Problem> {
    let reply = s.reply();
    send_frame(&mut s.a, &keyflood(ttl, seq, reply, b"nothing-here"))?;
    match next {
        Some(t) => expect_on(
            &mut s.b,
            ctx,
            &keyflood(t, seq, reply, b"nothing-here"),
            &format!("a KEYFLOOD with TTL {ttl} forwarded to B"),
        )
        .map_err(|p| with_ttl_hint(p, t)),
        None => {
            let sentinel = keyflood(2, seq + 1, reply, b"sentinel");
            send_frame(&mut s.a, &sentinel)?;
            let got = s.b.read_frame(ctx.timing.timeout).map_err(|e| {
                Failure::new("the sentinel KEYFLOOD (TTL 2) was not forwarded to B")
                    .got_read(&e, ctx.timing.timeout)
            })?;
            if got == keyflood(1, seq + 1, reply, b"sentinel").to_bytes() {
                return Ok(());
            }
            Err(Failure::new(format!("a KEYFLOOD with TTL {ttl} was forwarded (§7: a flood with TTL 0 goes no further)"))
                .expected(format!("nothing, then the sentinel {}", show_frame(&keyflood(1, seq + 1, reply, b"sentinel").to_bytes())))
                .got(show_frame(&got))
                .diagnosis(diagnose::parse(&got).and_then(|f| match f {
                    Frame::KeyFlood(fl) if fl.seq == seq && fl.ttl == u16::MAX => Some(
                        "TTL 0 was decremented to 65535 and sent on: the TTL is decremented before it is tested".to_string(),
                    ),
                    _ => None,
                }))
                .into())
        }
    }
}

fn with_ttl_hint(p: Problem, want: u16) -> Problem {
    match p {
        Problem::Fail(f)
            if f.lines.iter().any(|l| l.contains("sentinel"))
                || f.what.contains("did not come") =>
        {
            let hint = if want == 0 {
                vec!["TTL 1 was not forwarded: the TTL is decremented before it is tested (the 2019 assignment's rule; §7 follows the seed: test, then decrement)".to_string()]
            } else {
                vec![]
            };
            Problem::Fail(f.diagnosis(hint))
        }
        other => other,
    }
}

fn ttl_decrement(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    forward_check(&mut s, ctx, 3, 300, Some(2))?;
    forward_check(&mut s, ctx, 2, 200, Some(1))?;
    // A TTL 1 flood that does not come on B: the sentinel tells it apart from a delay.
    let reply = s.reply();
    send_frame(&mut s.a, &keyflood(1, 100, reply, b"nothing-here"))?;
    send_frame(&mut s.a, &keyflood(2, 101, reply, b"sentinel"))?;
    let got = s.b.read_frame(ctx.timing.timeout).map_err(|e| {
        Failure::new("a KEYFLOOD with TTL 1, then one with TTL 2, sent by A: nothing reached B")
            .got_read(&e, ctx.timing.timeout)
    })?;
    let want = keyflood(0, 100, reply, b"nothing-here");
    if got == keyflood(1, 101, reply, b"sentinel").to_bytes() {
        return Err(Failure::new("a KEYFLOOD with TTL 1 was not forwarded (§7: test, then decrement: TTL 1 goes on with TTL 0)")
            .expected(show_frame(&want.to_bytes()))
            .got(format!("the next flood instead: {}", show_frame(&got)))
            .diagnosis(["the TTL is decremented before it is tested (the 2019 assignment's rule, not the seed's that §7 follows)".to_string()])
            .into());
    }
    expect_frame(&got, &want, "a KEYFLOOD with TTL 1 forwarded to B")?;
    Ok(None)
}

fn ttl_zero(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    let reply = s.reply();
    send_frame(&mut s.a, &keyflood(0, 400, reply, b"alpha"))?;
    s.client
        .expect_answer(ctx, 400, b"first value")
        .map_err(|p| match p {
            Problem::Fail(mut f) => {
                f.what = format!(
                    "a KEYFLOOD with TTL 0 for a key it holds: {} (§7: it still answers)",
                    f.what
                );
                Problem::Fail(f)
            }
            o => o,
        })?;
    forward_check(&mut s, ctx, 0, 410, None)?;
    Ok(None)
}

fn not_back_to_sender(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    let reply = s.reply();
    send_frame(&mut s.a, &keyflood(2, 500, reply, b"nothing-here"))?;
    expect_on(
        &mut s.b,
        ctx,
        &keyflood(1, 500, reply, b"nothing-here"),
        "the flood from A forwarded to B",
    )?;
    // Sentinel from B: A must see it before anything else.
    send_frame(&mut s.b, &keyflood(2, 501, reply, b"sentinel"))?;
    let got = s.a.read_frame(ctx.timing.timeout).map_err(|e| {
        Failure::new("a flood sent by B was not forwarded to A").got_read(&e, ctx.timing.timeout)
    })?;
    if got == keyflood(1, 500, reply, b"nothing-here").to_bytes() {
        return Err(Failure::new(
            "the flood A sent came back to A (§6.2: every neighbour except the sender)",
        )
        .got(show_frame(&got))
        .diagnosis(["it floods back to the sender".to_string()])
        .into());
    }
    expect_frame(
        &got,
        &keyflood(1, 501, reply, b"sentinel"),
        "the flood from B forwarded to A",
    )?;
    Ok(None)
}

fn dedup(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    let reply = s.reply();
    let f = keyflood(2, 600, reply, b"alpha");
    send_frame(&mut s.a, &f)?;
    send_frame(&mut s.a, &f)?;
    send_frame(&mut s.a, &keyflood(2, 601, reply, b"sentinel"))?;
    expect_on(
        &mut s.b,
        ctx,
        &keyflood(1, 600, reply, b"alpha"),
        "the first copy forwarded to B",
    )?;
    sentinel_after(
        &mut s.b,
        ctx,
        &keyflood(1, 601, reply, b"sentinel"),
        &keyflood(1, 600, reply, b"alpha"),
        "the second copy of a flood was forwarded too (§6.3: a query is handled once)",
        "no seen set: duplicates are handled again",
    )?;
    s.client.expect_answer(ctx, 600, b"first value")?;
    s.client
        .expect_no_answer(ctx, "the second copy of a query is a duplicate (§6.3)")?;
    Ok(None)
}

fn origin_remembers(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    let reply = s.reply();
    s.client.keyreq(700, b"alpha")?;
    s.client.expect_answer(ctx, 700, b"first value")?;
    let out = expect_client_flood(
        &mut s.a,
        ctx,
        &keyflood(3, 700, reply, b"alpha"),
        "the flood to A",
    )?;
    expect_on(&mut s.b, ctx, &out, "the flood to B")?;
    // A sends it back, as a cycle would.
    send_frame(&mut s.a, &keyflood(1, 700, client_of(&out), b"alpha"))?;
    send_frame(&mut s.a, &keyflood(2, 701, reply, b"sentinel"))?;
    sentinel_after(
        &mut s.b,
        ctx,
        &keyflood(1, 701, reply, b"sentinel"),
        &keyflood(0, 700, client_of(&out), b"alpha"),
        "the echo of its own client's query was forwarded (§6.1: the first servent records its client's queries)",
        "it forgets its own request: queries from its clients are not put in the seen set",
    )?;
    s.client.expect_no_answer(
        ctx,
        "the echo of its own client's query: it forgot its own request",
    )?;
    Ok(None)
}

/// Reads the next frame on `link`: FAIL with `what` and `hint` when it is `wrong`
/// (a frame that should have been dropped), and unless it is `sentinel`.
fn sentinel_after(
    link: &mut Conn,
    ctx: &Ctx,
    sentinel: &Frame,
    wrong: &Frame,
    what: &str,
    hint: &str,
) -> Result<(), Problem> {
    let got = read_expecting(link, ctx, sentinel, "the sentinel flood")?;
    if got == wrong.to_bytes() {
        return Err(Failure::new(what)
            .expected(format!(
                "only the sentinel, {}",
                show_frame(&sentinel.to_bytes())
            ))
            .got(show_frame(&got))
            .diagnosis([hint.to_string()])
            .into());
    }
    expect_frame(&got, sentinel, "the sentinel flood")
}

fn id_zero_again(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    let reply = s.reply();
    send(&mut s.a, &Frame::Id { port: 0 }.to_bytes())?;
    send_frame(&mut s.a, &keyflood(2, 1400, reply, b"nothing-here"))?;
    expect_on(
        &mut s.b,
        ctx,
        &keyflood(1, 1400, reply, b"nothing-here"),
        "after an ID(0) again on link A, a flood from A forwarded to B",
    )
    .map_err(|p| match p {
        Problem::Fail(f) => Problem::Fail(
            f.diagnosis([
                "a second ID(0) from a neighbour closed or broke the link (§6: it is ignored)"
                    .to_string(),
            ]),
        ),
        o => o,
    })?;
    Ok(None)
}

fn floods_when_holding(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    let reply = s.reply();
    let hint = |p: Problem| {
        match p {
        Problem::Fail(f) if f.what.contains("did not come") => Problem::Fail(f.diagnosis([
            "it does not flood a query when it holds the key: other servents may hold it too, and \
             all answer (§6.1, §6.2)"
                .to_string(),
        ])),
        o => o,
    }
    };
    s.client.keyreq(1300, b"alpha")?;
    s.client.expect_answer(ctx, 1300, b"first value")?;
    let want = keyflood(3, 1300, reply, b"alpha");
    let sent = expect_client_flood(
        &mut s.a,
        ctx,
        &want,
        "a KEYREQ for a key it holds, flooded to A",
    )
    .map_err(hint)?;
    expect_on(
        &mut s.b,
        ctx,
        &sent,
        "a KEYREQ for a key it holds, flooded to B",
    )
    .map_err(hint)?;
    send_frame(&mut s.a, &keyflood(2, 1301, reply, b"ten"))?;
    s.client.expect_answer(ctx, 1301, b"RedesRules")?;
    expect_on(
        &mut s.b,
        ctx,
        &keyflood(1, 1301, reply, b"ten"),
        "a KEYFLOOD for a key it holds, forwarded to B",
    )
    .map_err(hint)?;
    Ok(None)
}

fn inbound_link(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    let mut inbound = s.inst.dial(ctx)?;
    send(&mut inbound, &Frame::Id { port: 0 }.to_bytes())?;
    // A flood sent on the new link after its ID: once A has it, the servent has
    // taken the link as a neighbour's (one connection is read in order).
    let reply = s.reply();
    send_frame(&mut inbound, &keyflood(2, 1099, reply, b"nothing-here"))?;
    expect_on(
        &mut s.a,
        ctx,
        &keyflood(1, 1099, reply, b"nothing-here"),
        "a flood sent by a neighbour that dialled in with ID(0), forwarded to A",
    )?;
    expect_on(
        &mut s.b,
        ctx,
        &keyflood(1, 1099, reply, b"nothing-here"),
        "a flood sent by a neighbour that dialled in with ID(0), forwarded to B",
    )?;
    send_frame(&mut s.a, &keyflood(2, 1100, reply, b"nothing-here"))?;
    let marker = keyflood(1, 1100, reply, b"nothing-here");
    expect_on(&mut s.b, ctx, &marker, "a flood from A forwarded to B")?;
    let got = read_expecting(
        &mut inbound,
        ctx,
        &marker,
        "the same flood on the link the checker dialled with ID(0)",
    )?;
    expect_frame(&got, &marker, "the flood on the link the checker dialled with ID(0)").map_err(|p| match p {
        Problem::Fail(f) => Problem::Fail(f.diagnosis([
            "floods go only to the neighbours it dialled: a link is used both ways, whoever dialled it (§2)".to_string(),
        ])),
        o => o,
    })
    .map(|_| None)
}

fn neighbours_one_ip(ctx: &Ctx) -> CaseResult {
    let mut inst = Instance::start(ctx, Setup { neighbours: 3 })?;
    let mut client = inst.client(ctx)?;
    client.keyreq(1200, b"rtmp")?;
    let want = keyflood(3, 1200, client.reply_addr(), b"rtmp");
    let mut links = std::mem::take(&mut inst.links);
    let sent = expect_client_flood(&mut links[0], ctx, &want, "the flood to neighbour 1")?;
    for (i, link) in links.iter_mut().enumerate().skip(1) {
        expect_on(
            link,
            ctx,
            &sent,
            &format!(
                "the flood to neighbour {} (127.0.0.1 too, another port)",
                i + 1
            ),
        )?;
    }
    Ok(None)
}

fn neighbour_disconnects(ctx: &Ctx) -> CaseResult {
    let Scene {
        mut inst, a, mut b, ..
    } = Scene::start(ctx)?;
    drop(a);
    // An accepted neighbour (ID(0) dialled by the checker) leaving too.
    let mut extra = inst.dial(ctx)?;
    send(&mut extra, &Frame::Id { port: 0 }.to_bytes())?;
    drop(extra);
    std::thread::sleep(ctx.timing.quiet / 2);
    inst.still_serves(ctx, "after two neighbours disconnected")?;
    // That request (seq 4242, alpha) went to B too.
    let got = b.read_frame(ctx.timing.timeout).map_err(|e| {
        Failure::new("after neighbour A left, a client's query was not flooded to neighbour B")
            .got_read(&e, ctx.timing.timeout)
    })?;
    match diagnose::parse(&got) {
        Some(Frame::KeyFlood(f)) if f.seq == 4242 && f.ttl == 3 => {}
        _ => {
            return Err(Failure::new(
                "after neighbour A left, B got something else than the client's query",
            )
            .expected("KEYFLOOD ttl=3 seq=4242 key=\"alpha\"")
            .got(show_frame(&got))
            .into())
        }
    }
    Ok(None)
}
