//! Client cases: the checker plays the servent the client talks to (a listener at
//! `{servent}`) and the servents that answer it (connections to its reply port from
//! 127.0.0.4), types commands on its stdin and reads what it prints. Messages are
//! recognised in English (ours) and in the assignment's Portuguese.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::diagnose::{hex, show_frame};
use super::harness::{expect_frame, resp};
use super::peer::{Conn, Listener, ReadError};
use super::target::{free_port, Fill, Process};
use super::{Case, CaseResult, Ctx, Failure, Problem};
use crate::protocol::Frame;

/// Where the checker's answering servents speak from.
pub(super) const ANSWER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);

/// The client's answer window (§10), and a margin for a slow machine.
pub(super) const WINDOW: Duration = Duration::from_secs(4);

const NO_ANSWER: &[&str] = &["no answer", "nenhuma resposta"];
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

/// A client under test, the servent it talks to (played by the checker), its output.
pub(super) struct Scene {
    process: Process,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<String>>,
    conn: Conn,
    /// The reply port it announced in its ID.
    pub(super) reply_port: u16,
    /// `{port}`, when the command has it.
    port: Option<u16>,
    /// The ID frame's bytes.
    id: Vec<u8>,
}

impl Scene {
    pub(super) fn start(ctx: &Ctx) -> Result<Scene, Problem> {
        let servent = Listener::bind(Ipv4Addr::LOCALHOST, 0).map_err(|e| {
            Failure::new(format!(
                "cannot listen as its servent: {}",
                crate::os_error::plain(&e)
            ))
        })?;
        let port = if ctx.template.has("{port}") {
            Some(free_port().map_err(|e| {
                Failure::new(format!("no free port: {}", crate::os_error::plain(&e)))
            })?)
        } else {
            None
        };
        let fill = Fill {
            port: port.unwrap_or(0),
            servent: Some(servent.addr),
            ..Fill::default()
        };
        let mut process = Process::spawn(&ctx.template, &fill, Stdio::piped(), Stdio::piped())
            .map_err(|e| Problem::Fail(Failure::new(e)))?;
        let stdin = process.child().stdin.take();
        let stdout = Arc::new(Mutex::new(String::new()));
        if let Some(mut out) = process.child().stdout.take() {
            let sink = Arc::clone(&stdout);
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = out.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            });
        }
        let Some((mut conn, _)) = servent.accept(ctx.timing.start) else {
            let status = process
                .exited()
                .map(|s| format!(" (it ended: {s})"))
                .unwrap_or_default();
            return Err(Failure::new(format!(
                "the client never connected to its servent at {}{status}",
                servent.addr
            ))
            .into());
        };
        let id = conn.read_frame(ctx.timing.timeout).map_err(|e| {
            Failure::new("the client sent no ID on connecting (§2: ID first)")
                .expected("ID(reply port): 00 04 pp pp")
                .got_read(&e, ctx.timing.timeout)
        })?;
        let reply_port = match super::diagnose::parse(&id) {
            Some(Frame::Id { port }) if port > 0 => port,
            _ => {
                return Err(
                    Failure::new("the client's first frame is not ID(port > 0) (§2, §4.1)")
                        .expected("ID(reply port): 00 04 pp pp")
                        .got(show_frame(&id))
                        .diagnosis(
                            port.map(|p| super::diagnose::compare(&Frame::Id { port: p }, &id))
                                .unwrap_or_default(),
                        )
                        .into(),
                )
            }
        };
        Ok(Scene {
            process,
            stdin,
            stdout,
            conn,
            reply_port,
            port,
            id,
        })
    }

    pub(super) fn type_line(&mut self, line: &str) -> Result<(), Problem> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| Failure::new("its stdin is closed"))?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|_| stdin.flush())
            .map_err(|e| {
                Failure::new(format!(
                    "typing {line:?} failed: {} (has it ended?)",
                    crate::os_error::plain(&e)
                ))
                .into()
            })
    }

    /// What it printed so far, stdout then stderr.
    pub(super) fn output(&self) -> String {
        let out = self
            .stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        format!("{out}{}", self.process.stderr_text())
    }

    /// Waits until its output holds one of `needles` (case-insensitive).
    pub(super) fn wait_for(&self, needles: &[&str], timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.output();
            let lower = out.to_lowercase();
            if let Some(line) = lower
                .lines()
                .zip(out.lines())
                .find(|(l, _)| needles.iter().any(|n| l.contains(&n.to_lowercase())))
            {
                return Some(line.1.to_string());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The next frame it sends its servent.
    pub(super) fn next_frame(&mut self, ctx: &Ctx, after: &str) -> Result<Vec<u8>, Problem> {
        // A command waits for the previous one's window to close first.
        let wait = ctx.timing.timeout + WINDOW;
        self.conn.read_frame(wait).map_err(|e| {
            let what = match e {
                ReadError::Corrupt(..) => "no frame",
                ReadError::Timeout(ref b) | ReadError::Closed(ref b) if !b.is_empty() => {
                    "half a frame"
                }
                _ => "nothing",
            };
            Failure::new(format!("after {after}, the client sent its servent {what}"))
                .got_read(&e, wait)
                .into()
        })
    }

    /// The seq of the KEYREQ it sends for `? key`.
    pub(super) fn ask(&mut self, ctx: &Ctx, key: &str) -> Result<u32, Problem> {
        self.type_line(&format!("? {key}"))?;
        let got = self.next_frame(ctx, &format!("`? {key}`"))?;
        match super::diagnose::parse(&got) {
            Some(Frame::KeyReq { seq, key: k }) if k.as_bytes() == key.as_bytes() => Ok(seq),
            _ => {
                let seq = u32::from_be_bytes([
                    got.get(2).copied().unwrap_or(0),
                    got.get(3).copied().unwrap_or(0),
                    got.get(4).copied().unwrap_or(0),
                    got.get(5).copied().unwrap_or(0),
                ]);
                expect_frame(
                    &got,
                    &Frame::KeyReq {
                        seq,
                        key: crate::protocol::Text::new(key).unwrap(),
                    },
                    &format!("what `? {key}` sent"),
                )?;
                Ok(seq)
            }
        }
    }

    /// Answers on a new connection from 127.0.0.4 to its reply port; returns the
    /// source address it should print.
    pub(super) fn answer(
        &self,
        ctx: &Ctx,
        bytes: &[u8],
        bytewise: bool,
    ) -> Result<SocketAddrV4, Problem> {
        let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.reply_port);
        let mut c = Conn::dial(ANSWER_IP, to, ctx.timing.timeout).map_err(|e| {
            Failure::new(format!(
                "cannot connect to the client's reply port {to}: {}",
                crate::os_error::plain(&e)
            ))
        })?;
        let from = c.local();
        let sent = if bytewise {
            c.send_bytewise(bytes, Duration::from_millis(10))
        } else {
            c.send(bytes)
        };
        sent.map_err(|e| {
            let f = Failure::new(format!(
                "writing {} to the client failed: {}",
                hex(bytes),
                crate::os_error::plain(&e)
            ));
            if bytewise {
                f.diagnosis([
                    "the client closed the reply connection before the whole RESP, written \
                     a byte at a time, had come: it takes one read for one message (§5: a \
                     frame may arrive in any number of pieces)"
                        .to_string(),
                ])
            } else {
                f
            }
        })?;
        c.shutdown_write();
        let _ = c.expect_closed(ctx.timing.timeout);
        Ok(from)
    }
}

fn id_first(ctx: &Ctx) -> CaseResult {
    let s = Scene::start(ctx)?;
    if let Some(p) = s.port {
        expect_frame(&s.id, &Frame::Id { port: p }, "the client's ID")?;
    }
    Ok(None)
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
        return Ok(None);
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
