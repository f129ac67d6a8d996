//! Client cases about answers over time: several at once, one that is not a RESP, and
//! the answer window that each answer restarts (§10).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use super::client_cases::{expect_printed, expect_printed_of, Pieces, NO_ANSWER};
use super::client_scene::{Scene, ANSWER_IP, WINDOW};
use super::diagnose::hex;
use super::harness::resp;
use super::peer::Conn;
use super::{CaseResult, Ctx, Failure, Problem};

fn dial_reply(s: &Scene, ctx: &Ctx) -> Result<Conn, Problem> {
    let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, s.reply_port);
    Conn::dial(ANSWER_IP, to, ctx.timing.timeout).map_err(|e| {
        Failure::new(format!(
            "cannot connect to the client's reply port {to}: {}",
            crate::os_error::plain(&e)
        ))
        .into()
    })
}

fn write(c: &mut Conn, bytes: &[u8]) -> Result<(), Problem> {
    c.send(bytes).map_err(|e| {
        Failure::new(format!(
            "writing {} to the client failed: {}",
            hex(bytes),
            crate::os_error::plain(&e)
        ))
        .into()
    })
}

pub fn answers_at_once(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    let seq = s.ask(ctx, "ten")?;
    let (one, two) = (
        resp(seq, b"FirstOne").to_bytes(),
        resp(seq, b"SecondOne").to_bytes(),
    );
    let mut a = dial_reply(&s, ctx)?;
    let mut b = dial_reply(&s, ctx)?;
    let (from_a, from_b) = (a.local(), b.local());
    // Half of each, then the rest of each: both connections are open and unfinished
    // at once.
    write(&mut a, &one[..5])?;
    write(&mut b, &two[..5])?;
    // Long enough, even on a loaded machine, that a client reads the halves apart.
    std::thread::sleep(Duration::from_millis(300));
    write(&mut b, &two[5..])?;
    write(&mut a, &one[5..])?;
    a.shutdown_write();
    b.shutdown_write();
    expect_printed_of(&s, ctx, "SecondOne", from_b, Pieces::Split)?;
    expect_printed_of(&s, ctx, "FirstOne", from_a, Pieces::Split)?;
    Ok(None)
}

pub fn not_resp(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    let seq = s.ask(ctx, "ten")?;
    let mut c = dial_reply(&s, ctx)?;
    let from = c.local();
    let s4 = seq.to_be_bytes();
    // A TOPOREQ where a RESP belongs.
    write(&mut c, &[0, 6, s4[0], s4[1], s4[2], s4[3]])?;
    c.shutdown_write();
    if s.wait_for(&[&from.to_string()], ctx.timing.timeout)
        .is_some()
    {
        return Ok(None);
    }
    Err(Failure::new(format!(
        "a TOPOREQ frame on a reply connection from {from}: no message naming {from} (§10 step 6)"
    ))
    .expected(format!(
        "a line naming {from}, e.g. `Mensagem incorreta recebida de {from}`"
    ))
    .got(format!("{:?}", s.output()))
    .into())
}

pub fn window_restart(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    let seq = s.ask(ctx, "ten")?;
    let asked = Instant::now();
    let mut from = Vec::new();
    for (at, value) in [(3u64, "AtThree"), (6, "AtSix")] {
        let when = asked + Duration::from_secs(at);
        std::thread::sleep(when.saturating_duration_since(Instant::now()));
        from.push((
            value,
            s.answer(ctx, &resp(seq, value.as_bytes()).to_bytes(), false)?,
        ));
    }
    for (value, addr) in from {
        expect_printed(&s, ctx, value, addr).map_err(|p| match p {
            Problem::Fail(mut f) if value == "AtSix" => {
                f.what = format!(
                    "{} — the answer at 6 s came 3 s after the one at 3 s, inside a {} s window \
                     restarted by it (§10 step 4)",
                    f.what,
                    WINDOW.as_secs()
                );
                Problem::Fail(f.diagnosis([
                    "the window was not restarted by the first answer: it closed 4 s after the command".to_string(),
                ]))
            }
            other => other,
        })?;
    }
    Ok(None)
}

pub fn window_closed(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    let seq = s.ask(ctx, "ten")?;
    if s.wait_for(NO_ANSWER, WINDOW + ctx.timing.timeout).is_none() {
        return Err(Failure::new(format!(
            "no answer came, and {} s after the command the client had not said so (§10)",
            (WINDOW + ctx.timing.timeout).as_secs()
        ))
        .got(format!("{:?}", s.output()))
        .into());
    }
    // The window is closed: an answer now, to that command, is too late, now and
    // during the next command's window.
    let late = s.answer(ctx, &resp(seq, b"TooLate").to_bytes(), false)?;
    let printed = format!("TooLate {late}");
    let mut line = s.wait_for(&[&printed], ctx.timing.quiet);
    if line.is_none() {
        s.ask(ctx, "alpha")?;
        line = s.wait_for(&[&printed], ctx.timing.quiet);
    }
    match line {
        None => Ok(None),
        Some(line) => Err(Failure::new(
            "an answer that came after the window had closed (and after `no answer`) was \
             printed as an answer (§10: the wait is over; the next command has another seq)",
        )
        .got(format!("{line:?}"))
        .into()),
    }
}
