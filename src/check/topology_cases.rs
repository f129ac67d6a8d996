//! Servent cases about topology strings (§8): how a servent names itself when it
//! answers a TOPOREQ, and how it appends itself to a TOPOFLOOD. The checker plays two
//! neighbours and a client, as in [`super::flood_cases`], or a client alone.

use super::diagnose;
use super::flood_cases::{expect_client_flood, send_frame, Scene};
use std::net::Ipv4Addr;

use super::harness::{expect_on, send, topoflood, Client, Instance, NONE};
use super::peer::{Listener, CLIENT_IP};
use super::{Case, CaseResult, Ctx, Failure, Problem};
use crate::protocol::TYPE_TOPOREQ;

pub fn cases() -> Vec<Case> {
    vec![
        case!(
            "servent.toporeq",
            "§6.1 §8",
            "TOPOREQ answered with \"ip:port\" and flooded as TOPOFLOOD TTL 3",
            toporeq
        ),
        case!(
            "servent.topo-append",
            "§8",
            "a TOPOFLOOD gets \" ip:port\" appended, answered and forwarded",
            topo_append
        ),
        case!(
            "servent.topo-trim",
            "§8",
            "a topology string ending in a space is trimmed before appending",
            topo_trim
        ),
        case!(
            "servent.topo-reached-address",
            "§8",
            "a servent names itself by the address it was reached at (here 127.0.0.7), never 0.0.0.0",
            topo_reached_address
        ),
    ]
}

/// A second loopback address the checker reaches the servent at.
const OTHER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 7);

fn topo_reached_address(ctx: &Ctx) -> CaseResult {
    let inst = Instance::start(ctx, NONE)?;
    let Ok(conn) = inst.dial_at(ctx, OTHER_IP) else {
        return Err(Problem::Skip(format!(
            "it does not accept at {OTHER_IP}: it listens on one address only"
        )));
    };
    let reply = Listener::bind_in_half(CLIENT_IP, false).map_err(|e| {
        Failure::new(format!(
            "cannot open a reply listener: {}",
            crate::os_error::plain(&e)
        ))
    })?;
    let mut client = Client::over(conn, reply)?;
    send(&mut client.conn, &[0, TYPE_TOPOREQ as u8, 0, 0, 3, 0x21])?;
    let me = format!("{OTHER_IP}:{}", inst.port);
    client
        .expect_answer(ctx, 801, me.as_bytes())
        .map_err(|p| topo_hint(p, &me))?;
    Ok(None)
}

fn toporeq(ctx: &Ctx) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    let reply = s.reply();
    let me = s.me_for_client();
    send(
        &mut s.client.conn,
        &[(TYPE_TOPOREQ >> 8) as u8, TYPE_TOPOREQ as u8, 0, 0, 3, 0x20],
    )?;
    let want = topoflood(3, 800, reply, me.as_bytes());
    let sent = expect_client_flood(&mut s.a, ctx, &want, "the TOPOFLOOD to A")
        .map_err(|p| topo_hint(p, &me))?;
    expect_on(&mut s.b, ctx, &sent, "the TOPOFLOOD to B").map_err(|p| topo_hint(p, &me))?;
    s.client
        .expect_answer(ctx, 800, me.as_bytes())
        .map_err(|p| topo_hint(p, &me))?;
    Ok(None)
}

/// Adds the topology-string diagnosis to a failure that shows a text.
fn topo_hint(p: Problem, expected: &str) -> Problem {
    match p {
        Problem::Fail(f) => {
            let got = f
                .lines
                .iter()
                .filter(|l| l.starts_with("got:"))
                .find_map(|l| l.split_once("info=\"").or_else(|| l.split_once("value=\"")))
                .map(|(_, rest)| rest.split('"').next().unwrap_or("").to_string());
            match got {
                Some(text) if text != expected => {
                    Problem::Fail(f.diagnosis(diagnose::topology(expected, text.as_bytes())))
                }
                _ => Problem::Fail(f),
            }
        }
        o => o,
    }
}

fn topo_through(ctx: &Ctx, incoming: &str) -> CaseResult {
    let mut s = Scene::start(ctx)?;
    let reply = s.reply();
    let appended = format!("{} {}", incoming.trim_end(), s.me_on_link());
    send_frame(&mut s.a, &topoflood(2, 900, reply, incoming.as_bytes()))?;
    s.client
        .expect_answer(ctx, 900, appended.as_bytes())
        .map_err(|p| topo_hint(p, &appended))?;
    expect_on(
        &mut s.b,
        ctx,
        &topoflood(1, 900, reply, appended.as_bytes()),
        "the TOPOFLOOD forwarded to B",
    )
    .map_err(|p| topo_hint(p, &appended))?;
    Ok(None)
}

fn topo_append(ctx: &Ctx) -> CaseResult {
    topo_through(ctx, "10.9.9.9:1234")
}

fn topo_trim(ctx: &Ctx) -> CaseResult {
    topo_through(ctx, "10.9.9.9:1234 ")
}
