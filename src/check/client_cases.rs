//! Client cases: the checker plays the servent the client talks to (a listener at
//! `{servent}`) and the servents that answer it (connections to its reply port from
//! 127.0.0.4), types commands on its stdin and reads what it prints. Messages are
//! recognised in English (ours) and in the assignment's Portuguese.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use super::client_scene::{Scene, ANSWER_IP, WINDOW};
use super::diagnose::show_frame;
use super::harness::{expect_frame, resp};
use super::peer::Conn;
use super::target::{free_high_port, free_port};
use super::{Case, CaseResult, Ctx, Failure, Problem};
use crate::protocol::Frame;

pub(super) const NO_ANSWER: &[&str] = &["no answer", "nenhuma resposta"];
const UNKNOWN: &[&str] = &["unknown command", "comando desconhecido"];

pub fn cases() -> Vec<Case> {
    vec![
        case!(
            "client.id-first",
            "§2 §10",
            "connects and sends ID(reply port) first, the port of {port}",
            id_first
        ),
        case!(
            "client.reply-port-high",
            "§3 §4.1",
            "a reply port of 32768 or more is sent and used as unsigned",
            reply_port_high
        ),
        case!(
            "client.listener-open",
            "§2 §10",
            "its reply listener accepts before the first request",
            listener_open
        ),
        case!(
            "client.keyreq",
            "§10 §4.2",
            "`? alpha` sends KEYREQ with the key",
            keyreq_sent
        ),
        case!(
            "client.key-blanks",
            "§10",
            "`?` then spaces or a tab then the key sends the key alone",
            key_blanks
        ),
        case!(
            "client.toporeq",
            "§10 §4.3",
            "`T` sends TOPOREQ",
            toporeq_sent
        ),
        case!(
            "client.seq-increments",
            "§10",
            "each command's seq is one more than the last",
            seq_increments
        ),
        case!(
            "client.answer-printed",
            "§9 §10",
            "an answer is printed as `VALUE IP:PORT` of the connection's source",
            answer_printed
        ),
        case!(
            "client.answer-split",
            "§5",
            "an answer arriving one byte per segment is printed",
            answer_split
        ),
        case!(
            "client.wrong-seq",
            "§10",
            "a RESP with another seq is discarded with a message naming its source",
            wrong_seq
        ),
        case!("client.answers-at-once", "§10", "two answer connections open at once are both printed", super::client_window_cases::answers_at_once),
        case!("client.not-resp", "§10", "a frame other than RESP on a reply connection is discarded with a message naming its source", super::client_window_cases::not_resp),
        case!("client.window-restart", "§10", "each answer restarts the 4-second window: answers at 3 s and 6 s are both printed", super::client_window_cases::window_restart),
        case!("client.window-closed", "§10", "an answer after the window has closed is not printed as an answer", super::client_window_cases::window_closed),
        case!(
            "client.no-answer",
            "§10",
            "no answer in the window: it says so",
            no_answer
        ),
        case!(
            "client.unknown-command",
            "§10",
            "an unknown command is refused and nothing is sent",
            unknown_command
        ),
        case!(
            "client.empty-line",
            "§10",
            "an empty line does nothing, and the client goes on",
            empty_line
        ),
        case!("client.quit", "§10", "`Q` quits", quit),
        case!(
            "client.eof-quits",
            "§10",
            "the end of input quits",
            eof_quits
        ),
    ]
}

fn id_first(ctx: &Ctx) -> CaseResult {
    let s = Scene::start(ctx)?;
    if let Some(p) = s.port {
        expect_frame(&s.id, &Frame::Id { port: p }, "the client's ID")?;
    }
    Ok(None)
}

fn reply_port_high(ctx: &Ctx) -> CaseResult {
    if !ctx.template.has("{port}") {
        return Err(Problem::Skip(
            "the command has no {port}: the client picks its own reply port".into(),
        ));
    }
    let Err(problem) = lookup_on(ctx, free_high_port) else {
        return Ok(None);
    };
    // Do the same steps pass with a port below 32768? Then the sign bit is the trouble.
    let Problem::Fail(f) = problem else {
        return Err(problem);
    };
    if lookup_on(ctx, free_port).is_err() {
        return Err(Problem::Fail(f));
    }
    Err(Problem::Fail(
        f.diagnosis([
            "with a reply port below 32768 the same steps pass: ports of 32768 and up are \
         read or written as signed 16-bit numbers (§3: ports are unsigned)"
                .to_string(),
        ]),
    ))
}

/// Starts the client with `{port}` from `pick`, checks its ID names that port, asks
/// `? ten` and expects the answer printed.
fn lookup_on(ctx: &Ctx, pick: fn() -> std::io::Result<u16>) -> CaseResult {
    let mut s = Scene::start_on(ctx, pick)?;
    if let Some(p) = s.port {
        expect_frame(&s.id, &Frame::Id { port: p }, "the client's ID")?;
    }
    let seq = s.ask(ctx, "ten")?;
    let from = s.answer(ctx, &resp(seq, b"RedesRules").to_bytes(), false)?;
    expect_printed(&s, ctx, "RedesRules", from)
}

fn listener_open(ctx: &Ctx) -> CaseResult {
    let s = Scene::start(ctx)?;
    let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, s.reply_port);
    if let Err(e) = Conn::dial(ANSWER_IP, to, ctx.timing.timeout) {
        return Err(Failure::new(format!(
            "its ID names reply port {}, but nothing accepts there before its first request: {}",
            s.reply_port,
            crate::os_error::plain(&e)
        ))
        .diagnosis(["the reply listener is opened after the request is sent: the first answers are refused (§2)".to_string()])
        .into());
    }
    Ok(None)
}

fn keyreq_sent(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    s.ask(ctx, "alpha")?;
    Ok(None)
}

fn key_blanks(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    s.type_line("?\t  alpha")?;
    let got = s.next_frame(ctx, "`?<tab><space><space>alpha`")?;
    match super::diagnose::parse(&got) {
        Some(Frame::KeyReq { key, .. }) if key.as_bytes() == b"alpha" => Ok(None),
        _ => Err(
            Failure::new("`?`, a tab, two spaces and `alpha` should send the key `alpha`")
                .got(show_frame(&got))
                .into(),
        ),
    }
}

fn toporeq_sent(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    s.type_line("T")?;
    let got = s.next_frame(ctx, "`T`")?;
    match super::diagnose::parse(&got) {
        Some(Frame::TopoReq { .. }) => Ok(None),
        _ => Err(Failure::new("`T` should send TOPOREQ (00 06 + seq)")
            .got(show_frame(&got))
            .into()),
    }
}

fn seq_increments(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    let first = s.ask(ctx, "alpha")?;
    let second = s.ask(ctx, "beta")?;
    if second == first.wrapping_add(1) {
        // Worth a note: a grader expecting the assignment's examples may assume 0.
        return Ok(Some(format!(
            "its first seq is {first} (any start is allowed; each command adds one)"
        )));
    }
    Err(
        Failure::new("the second command's seq is not one more than the first's (§10)")
            .expected(format!("seq {}", first.wrapping_add(1)))
            .got(format!("seq {first}, then seq {second}"))
            .into(),
    )
}

fn answer_printed(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    let seq = s.ask(ctx, "ten")?;
    let from = s.answer(ctx, &resp(seq, b"RedesRules").to_bytes(), false)?;
    expect_printed(&s, ctx, "RedesRules", from)
}

/// FAIL unless a line `value ip:port` appears, with a diagnosis of what did.
pub(super) fn expect_printed(s: &Scene, ctx: &Ctx, value: &str, from: SocketAddrV4) -> CaseResult {
    expect_printed_of(s, ctx, value, from, Pieces::Whole)
}

/// How an answer was written to the client.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Pieces {
    Whole,
    /// In several writes, so that the client's reads see parts of a frame.
    Split,
}

/// [`expect_printed`], for an answer written as `pieces`: a client that reads once per
/// message calls a split answer a bad one, which the diagnosis then says.
pub(super) fn expect_printed_of(
    s: &Scene,
    ctx: &Ctx,
    value: &str,
    from: SocketAddrV4,
    pieces: Pieces,
) -> CaseResult {
    let want = format!("{value} {from}");
    if s.wait_for(&[&want], ctx.timing.timeout).is_some() {
        return Ok(None);
    }
    let out = s.output();
    let mut f = Failure::new(format!(
        "the answer from {from} was not printed as `{want}` (§10)"
    ))
    .expected(want.clone())
    .got(format!("{out:?}"));
    if let Some(line) = out.lines().find(|l| l.contains(value)) {
        let hint =
            if line.contains(&from.ip().to_string()) && !line.contains(&from.port().to_string()) {
                "the answer is printed without the port of its source"
            } else if !line.contains(&from.ip().to_string()) {
                "the answer is printed without the source address of its connection (§9)"
            } else {
                "the value is printed, but not as `VALUE IP:PORT`"
            };
        f = f.diagnosis([format!("{hint}: {line:?}")]);
    } else if let Some(line) = out.lines().find(|l| l.contains(&from.to_string())) {
        if pieces == Pieces::Split {
            f = f.diagnosis([format!(
                "a whole RESP with the command's seq, written in pieces as TCP may deliver \
                 any frame, was reported as a bad message ({line:?}): the client takes one \
                 read for one message (§5: read until the length's bytes have all come)"
            )]);
        }
    }
    Err(f.into())
}

fn answer_split(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    let seq = s.ask(ctx, "ten")?;
    let from = s.answer(ctx, &resp(seq, b"RedesRules").to_bytes(), true)?;
    expect_printed_of(&s, ctx, "RedesRules", from, Pieces::Split)
}

fn wrong_seq(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    let seq = s.ask(ctx, "ten")?;
    let from = s.answer(
        ctx,
        &resp(seq.wrapping_add(100), b"WrongOne").to_bytes(),
        false,
    )?;
    let named = s.wait_for(&[&from.to_string()], ctx.timing.timeout);
    let out = s.output();
    if out
        .lines()
        .any(|l| l.contains("WrongOne") && !l.to_lowercase().contains("seq"))
        && named.as_deref().is_none_or(|l| l.contains("WrongOne"))
    {
        return Err(Failure::new(
            "a RESP with another seq was printed as an answer (§10: discarded)",
        )
        .got(format!("{out:?}"))
        .into());
    }
    match named {
        Some(_) => Ok(None),
        None => Err(Failure::new(format!("a RESP with seq {} (the command's is {seq}) from {from}: no message naming {from} (§10)", seq.wrapping_add(100)))
            .expected(format!("a line naming {from}, e.g. `Mensagem incorreta recebida de {from}`"))
            .got(format!("{out:?}"))
            .diagnosis(["a wrong-seq answer ignored silently".to_string()])
            .into()),
    }
}

fn no_answer(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    s.ask(ctx, "nothing-here")?;
    if s.wait_for(NO_ANSWER, WINDOW + ctx.timing.timeout).is_some() {
        return Ok(None);
    }
    Err(
        Failure::new("no answer came, and the client did not say so (§10)")
            .expected("`no answer received` or `Nenhuma resposta recebida`")
            .got(format!("{:?}", s.output()))
            .into(),
    )
}

fn unknown_command(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    s.type_line("hello")?;
    s.type_line("T")?;
    if s.wait_for(UNKNOWN, ctx.timing.timeout).is_none() {
        return Err(Failure::new("`hello` was not refused with a message (§10)")
            .expected("`unknown command ...` or `Comando desconhecido`")
            .got(format!("{:?}", s.output()))
            .into());
    }
    let got = s.next_frame(ctx, "`hello` then `T`")?;
    match super::diagnose::parse(&got) {
        Some(Frame::TopoReq { .. }) => Ok(None),
        _ => Err(Failure::new("after `hello` (refused) and `T`, the first frame sent should be the TOPOREQ: `hello` sent something")
            .got(show_frame(&got))
            .into()),
    }
}

fn empty_line(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    s.type_line("")?;
    s.type_line("T")?;
    let got = s.next_frame(ctx, "an empty line then `T`")?;
    match super::diagnose::parse(&got) {
        Some(Frame::TopoReq { .. }) => Ok(None),
        _ => Err(
            Failure::new("after an empty line and `T`, the frame sent is not TOPOREQ")
                .got(show_frame(&got))
                .into(),
        ),
    }
}

fn expect_exit(s: &mut Scene, ctx: &Ctx, after: &str) -> CaseResult {
    let deadline = Instant::now() + ctx.timing.timeout;
    while Instant::now() < deadline {
        if s.process.exited().is_some() {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(Failure::new(format!(
        "the client still runs {:.0} s after {after} (§10: it quits)",
        ctx.timing.timeout.as_secs_f64()
    ))
    .into())
}

fn quit(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    s.type_line("Q")?;
    expect_exit(&mut s, ctx, "`Q`")
}

fn eof_quits(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    s.stdin = None;
    expect_exit(&mut s, ctx, "the end of its input")
}
