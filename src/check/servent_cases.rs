//! Servent cases about one servent and its clients: listening, ID, reading a byte
//! stream, encoding, answers, surviving peers that misbehave, the key-value file.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::diagnose::hex;
use super::harness::{keyreq, send, Instance, Setup, NONE, SYMMETRIC_KEY};
use super::peer::{Listener, CLIENT_IP};
use super::{Case, CaseResult, Ctx, Failure, Problem};
use crate::protocol::Frame;

pub fn cases() -> Vec<Case> {
    vec![
        case!(
            "servent.listens",
            "§6",
            "starts, loads its file and accepts connections on {port}",
            listens
        ),
        case!(
            "servent.dials-neighbours",
            "§2 §6",
            "dials every neighbour named and sends ID(0) first",
            dials_neighbours
        ),
        case!(
            "servent.id-port",
            "§2 §4.1",
            "ID(port) makes a client: its KEYREQ is answered at (source IP, port)",
            id_port
        ),
        case!(
            "servent.id-zero",
            "§2 §4.1",
            "ID(0) on an accepted connection makes a neighbour: its KEYFLOOD is handled",
            id_zero
        ),
        case!(
            "servent.answer-connection",
            "§9",
            "KEYREQ answered on a new connection: one RESP with the same seq, then closed",
            answer_connection
        ),
        case!(
            "servent.nothing-on-client-connection",
            "§2",
            "writes nothing back on the client's connection",
            nothing_on_client_connection
        ),
        case!(
            "servent.split-bytewise",
            "§5",
            "frames split into one-byte segments are read whole",
            split_bytewise
        ),
        case!(
            "servent.coalesced",
            "§5",
            "several frames in one segment are all handled",
            coalesced
        ),
        case!(
            "servent.big-endian",
            "§3",
            "seq and lengths are big-endian both ways",
            big_endian
        ),
        case!(
            "servent.seq-max",
            "§4.2",
            "seq 4294967295 is echoed unchanged",
            seq_max
        ),
        case!(
            "servent.key-400",
            "§3 §4.2",
            "a 400-byte key is found",
            key_400
        ),
        case!(
            "servent.reply-port-high",
            "§3",
            "answers a reply port ≥ 32768 (ports are unsigned)",
            reply_port_high
        ),
        case!(
            "servent.two-clients-one-ip",
            "§1",
            "two clients on one IP, same seq, each answered at its own port",
            two_clients_one_ip
        ),
        case!(
            "servent.missing-key",
            "§6.1",
            "a key it does not hold gets no answer from it",
            missing_key
        ),
        case!(
            "servent.case-sensitive",
            "§6.1",
            "keys match byte for byte: ALPHA is not alpha",
            case_sensitive
        ),
        case!(
            "servent.empty-key",
            "§3",
            "an empty key is a valid frame: no answer, the connection stays",
            empty_key
        ),
        case!(
            "servent.unknown-type",
            "§5",
            "an unknown frame type closes that connection, only that one",
            unknown_type
        ),
        case!(
            "servent.too-long",
            "§5",
            "a length over 400 closes the connection from the header",
            too_long
        ),
        case!(
            "servent.client-disconnects",
            "§2",
            "survives a client that disconnects",
            client_disconnects
        ),
        case!(
            "servent.half-frame-eof",
            "§5",
            "survives half a frame then EOF",
            half_frame_eof
        ),
        case!(
            "servent.refused-reply-port",
            "§9",
            "survives a reply address that refuses the connection",
            refused_reply_port
        ),
        case!(
            "servent.kv-tabs",
            "§12",
            "a tab-separated line: key, then the rest with its tabs",
            kv_tabs
        ),
        case!(
            "servent.kv-hash",
            "§12",
            "a # inside a value is part of it",
            kv_hash
        ),
        case!(
            "servent.kv-comment",
            "§12",
            "a line whose first non-blank is # is a comment, indented too",
            kv_comment
        ),
        case!(
            "servent.kv-last-duplicate",
            "§12",
            "the last line of a duplicated key wins",
            kv_last_duplicate
        ),
        case!(
            "servent.kv-key-only",
            "§12",
            "a line holding only a key gives the empty value",
            kv_key_only
        ),
    ]
}

/// Starts, asks `key`, expects `value`.
fn lookup(ctx: &Ctx, seq: u32, key: &[u8], value: &[u8]) -> CaseResult {
    let inst = Instance::start(ctx, NONE)?;
    let mut c = inst.client(ctx)?;
    c.keyreq(seq, key)?;
    c.expect_answer(ctx, seq, value)?;
    Ok(None)
}

fn listens(ctx: &Ctx) -> CaseResult {
    Instance::start(ctx, NONE)?;
    Ok(None)
}

fn dials_neighbours(ctx: &Ctx) -> CaseResult {
    Instance::start(ctx, Setup { neighbours: 2 })?;
    Ok(None)
}

fn id_port(ctx: &Ctx) -> CaseResult {
    lookup(ctx, 7, b"ten", b"RedesRules")
}

fn id_zero(ctx: &Ctx) -> CaseResult {
    let inst = Instance::start(ctx, NONE)?;
    let reply = Listener::bind_in_half(CLIENT_IP, false).map_err(|e| {
        Problem::Fail(Failure::new(format!(
            "cannot listen: {}",
            crate::os_error::plain(&e)
        )))
    })?;
    let mut link = inst.dial(ctx)?;
    send(&mut link, &Frame::Id { port: 0 }.to_bytes())?;
    let flood = super::harness::keyflood(0, 11, reply.addr, b"alpha");
    send(&mut link, &flood.to_bytes())?;
    let c = super::harness::Client {
        conn: inst.dial(ctx)?,
        reply,
    };
    c.expect_answer(ctx, 11, b"first value")
        .map_err(|p| annotate(p, "a KEYFLOOD on a link that said ID(0)"))?;
    Ok(None)
}

fn annotate(p: Problem, context: &str) -> Problem {
    match p {
        Problem::Fail(mut f) => {
            f.what = format!("{context}: {}", f.what);
            Problem::Fail(f)
        }
        skip => skip,
    }
}

fn answer_connection(ctx: &Ctx) -> CaseResult {
    let inst = Instance::start(ctx, NONE)?;
    let mut c = inst.client(ctx)?;
    c.keyreq(0x0102_0304, b"alpha")?;
    let a = c.expect_answer(ctx, 0x0102_0304, b"first value")?;
    if *a.from.ip() != Ipv4Addr::LOCALHOST {
        return Ok(Some(format!("answered from {}", a.from)));
    }
    Ok(None)
}

fn nothing_on_client_connection(ctx: &Ctx) -> CaseResult {
    let inst = Instance::start(ctx, NONE)?;
    let mut c = inst.client(ctx)?;
    c.keyreq(5, b"alpha")?;
    c.expect_answer(ctx, 5, b"first value")?;
    let extra = c.conn.drain(ctx.timing.quiet);
    if !extra.is_empty() {
        let bytes: Vec<u8> = extra.concat();
        return Err(Failure::new("the servent wrote on the client's own connection (§2: answers travel on reply connections only)")
            .got(hex(&bytes))
            .into());
    }
    Ok(None)
}

fn split_bytewise(ctx: &Ctx) -> CaseResult {
    let inst = Instance::start(ctx, NONE)?;
    let reply = Listener::bind_in_half(CLIENT_IP, false).map_err(|e| {
        Problem::Fail(Failure::new(format!(
            "cannot listen: {}",
            crate::os_error::plain(&e)
        )))
    })?;
    let mut conn = inst.dial(ctx)?;
    let mut bytes = Frame::Id {
        port: reply.addr.port(),
    }
    .to_bytes();
    bytes.extend(keyreq(21, b"tabbed"));
    conn.send_bytewise(&bytes, Duration::from_millis(15))
        .map_err(|e| {
            Problem::Fail(
                Failure::new(format!(
                    "writing ID and KEYREQ one byte per segment ({}) failed: {}",
                    hex(&bytes),
                    crate::os_error::plain(&e)
                ))
                .diagnosis([
                    "the servent closed the connection on part of a frame: one read taken \
                     for one message (§5: a frame may arrive in any number of pieces)"
                        .to_string(),
                ]),
            )
        })?;
    let c = super::harness::Client { conn, reply };
    c.expect_answer(ctx, 21, b"value\twith\ttabs")
        .map_err(|p| {
            let p = annotate(
                p,
                &format!("ID and KEYREQ sent one byte per segment ({})", hex(&bytes)),
            );
            match p {
                Problem::Fail(f) if f.lines.iter().any(|l| l.contains("no connection")) => {
                    Problem::Fail(
                        f.diagnosis([
                            "a frame split across segments was not put back together: one read \
                         taken for one message (§5)"
                                .to_string(),
                        ]),
                    )
                }
                other => other,
            }
        })?;
    Ok(None)
}

fn coalesced(ctx: &Ctx) -> CaseResult {
    let inst = Instance::start(ctx, NONE)?;
    let reply = Listener::bind_in_half(CLIENT_IP, false).map_err(|e| {
        Problem::Fail(Failure::new(format!(
            "cannot listen: {}",
            crate::os_error::plain(&e)
        )))
    })?;
    let mut conn = inst.dial(ctx)?;
    let mut bytes = Frame::Id {
        port: reply.addr.port(),
    }
    .to_bytes();
    bytes.extend(keyreq(31, b"alpha"));
    bytes.extend(keyreq(32, b"ten"));
    bytes.extend(keyreq(33, b"dup"));
    send(&mut conn, &bytes)?;
    let mut want = vec![
        (31u32, b"first value".to_vec()),
        (32, b"RedesRules".to_vec()),
        (33, b"second".to_vec()),
    ];
    let mut got = Vec::new();
    while !want.is_empty() {
        let Some(a) = reply.answer(ctx.timing.timeout) else {
            break;
        };
        match a.resp() {
            Some(r) if want.contains(&r) => want.retain(|w| *w != r),
            _ => got.push(a.describe()),
        }
    }
    if want.is_empty() && got.is_empty() {
        return Ok(None);
    }
    let missing: Vec<String> = want.iter().map(|(s, _)| format!("seq {s}")).collect();
    Err(Failure::new(format!(
        "ID and three KEYREQs written in one segment; answers missing for {} (§5: one read may hold several frames)",
        missing.join(", ")
    ))
    .got(if got.is_empty() { "no other answer".into() } else { got.join(" | ") })
    .diagnosis(
        (missing.len() >= 2).then(|| "only the first frame of a read was handled: one recv() taken for one message".to_string()),
    )
    .into())
}

fn big_endian(ctx: &Ctx) -> CaseResult {
    // seq 0x0102_0304 and a value of length 10 (00 0a): a byte-swapped field is visible.
    let inst = Instance::start(ctx, NONE)?;
    let mut c = inst.client(ctx)?;
    c.keyreq(0x0102_0304, b"ten")?;
    let Err(problem) = c.expect_answer(ctx, 0x0102_0304, b"RedesRules") else {
        return Ok(None);
    };
    // No answer at all? Ask again with a seq and a key length that read the same
    // either way round: if that one is answered, the byte order is the trouble.
    let Problem::Fail(f) = problem else {
        return Err(problem);
    };
    if !f.lines.iter().any(|l| l.contains("no connection")) {
        return Err(Problem::Fail(f));
    }
    let mut probe = inst.client(ctx)?;
    probe.keyreq(0x0505_0505, SYMMETRIC_KEY.as_bytes())?;
    let Some(answer) = probe.reply.answer(ctx.timing.timeout) else {
        return Err(Problem::Fail(f));
    };
    Err(Problem::Fail(f.diagnosis([format!(
        "a KEYREQ whose key length is 00 03 went unanswered, but one whose seq and length \
         read the same in both byte orders (05 05 05 05, and 01 01 for a 257-byte key) was \
         answered ({}): the servent reads the length field little-endian, 00 03 as 768, \
         over the limit (§3: every integer is big-endian)",
        answer.describe()
    )])))
}

fn seq_max(ctx: &Ctx) -> CaseResult {
    lookup(ctx, u32::MAX, b"alpha", b"first value")
}

fn key_400(ctx: &Ctx) -> CaseResult {
    lookup(
        ctx,
        400,
        "K".repeat(400).as_bytes(),
        b"the value of a 400-byte key",
    )
}

fn reply_port_high(ctx: &Ctx) -> CaseResult {
    let inst = Instance::start(ctx, NONE)?;
    let high = Listener::bind_in_half(CLIENT_IP, true).map_err(|e| {
        Problem::Fail(Failure::new(format!(
            "cannot listen: {}",
            crate::os_error::plain(&e)
        )))
    })?;
    let mut high = inst.client_with(ctx, high)?;
    high.keyreq(61, b"alpha")?;
    let Err(problem) = high.expect_answer(ctx, 61, b"first value") else {
        return Ok(None);
    };
    // Does a port below 32768 work? Then the sign bit is the trouble.
    let low = Listener::bind_in_half(CLIENT_IP, false).map_err(|e| {
        Problem::Fail(Failure::new(format!(
            "cannot listen: {}",
            crate::os_error::plain(&e)
        )))
    })?;
    let mut low = inst.client_with(ctx, low)?;
    low.keyreq(62, b"alpha")?;
    let low_ok = low.expect_answer(ctx, 62, b"first value").is_ok();
    Err(match problem {
        Problem::Fail(f) if low_ok => Problem::Fail(
            Failure::new(format!(
                "reply port {} (≥ 32768) got no right answer, reply port {} did: {}",
                high.reply.addr.port(),
                low.reply.addr.port(),
                f.what
            ))
            .diagnosis([format!(
                "ports are read as signed 16-bit numbers: {} read signed is {} (§3)",
                high.reply.addr.port(),
                high.reply.addr.port() as i16
            )]),
        ),
        other => other,
    })
}

fn two_clients_one_ip(ctx: &Ctx) -> CaseResult {
    let inst = Instance::start(ctx, NONE)?;
    let mut a = inst.client(ctx)?;
    let mut b = inst.client(ctx)?;
    a.keyreq(77, b"alpha")?;
    b.keyreq(77, b"ten")?;
    a.expect_answer(ctx, 77, b"first value")
        .map_err(|p| annotate(p, "the first client"))?;
    b.expect_answer(ctx, 77, b"RedesRules").map_err(|p| {
        annotate(p, "the second client, same IP and seq, another reply port (the query is (ip, port, seq), §1)")
    })?;
    Ok(None)
}

fn missing_key(ctx: &Ctx) -> CaseResult {
    let inst = Instance::start(ctx, NONE)?;
    let mut c = inst.client(ctx)?;
    c.keyreq(81, b"no-such-key")?;
    c.expect_no_answer(ctx, "the key is not in its file")?;
    Ok(None)
}

fn case_sensitive(ctx: &Ctx) -> CaseResult {
    let inst = Instance::start(ctx, NONE)?;
    let mut c = inst.client(ctx)?;
    c.keyreq(82, b"ALPHA")?;
    c.expect_no_answer(ctx, "ALPHA is not in its file, only alpha")?;
    Ok(None)
}

fn empty_key(ctx: &Ctx) -> CaseResult {
    let mut inst = Instance::start(ctx, NONE)?;
    let mut c = inst.client(ctx)?;
    c.keyreq(83, b"")?;
    c.keyreq(84, b"alpha")?;
    c.expect_answer(ctx, 84, b"first value").map_err(|p| {
        annotate(
            p,
            "a KEYREQ after one with the empty key (00 05 00 00 00 53 00 00)",
        )
    })?;
    inst.still_serves(ctx, "after an empty key")?;
    Ok(None)
}

fn closes_on(ctx: &Ctx, bytes: &[u8], what: &str) -> CaseResult {
    let mut inst = Instance::start(ctx, NONE)?;
    let mut c = inst.client(ctx)?;
    send(&mut c.conn, bytes)?;
    if let Err(e) = c.conn.expect_closed(ctx.timing.timeout) {
        return Err(Failure::new(format!(
            "after {what}, the servent did not close the connection (§5: the stream is corrupt)"
        ))
        .expected("the connection closed")
        .got_read(&e, ctx.timing.timeout)
        .into());
    }
    inst.still_serves(ctx, &format!("after {what}"))?;
    Ok(None)
}

fn unknown_type(ctx: &Ctx) -> CaseResult {
    closes_on(
        ctx,
        &[0x00, 0x03, 0x00, 0x00],
        "a frame of type 3 (00 03 00 00)",
    )
}

fn too_long(ctx: &Ctx) -> CaseResult {
    closes_on(
        ctx,
        &[0x00, 0x05, 0x00, 0x00, 0x00, 0x01, 0x01, 0x91],
        "a KEYREQ header saying length 401 (00 05 00 00 00 01 01 91)",
    )
}

fn client_disconnects(ctx: &Ctx) -> CaseResult {
    let mut inst = Instance::start(ctx, NONE)?;
    let c = inst.client(ctx)?;
    drop(c);
    let raw = inst.dial(ctx)?;
    drop(raw);
    inst.still_serves(
        ctx,
        "after a client closed its connection (one after its ID, one before)",
    )?;
    Ok(None)
}

fn half_frame_eof(ctx: &Ctx) -> CaseResult {
    let mut inst = Instance::start(ctx, NONE)?;
    let mut c = inst.client(ctx)?;
    let whole = keyreq(91, b"alpha");
    send(&mut c.conn, &whole[..whole.len() / 2])?;
    c.conn.shutdown_write();
    std::thread::sleep(Duration::from_millis(200));
    drop(c);
    inst.still_serves(ctx, "after a client sent half a KEYREQ then closed")?;
    Ok(None)
}

fn refused_reply_port(ctx: &Ctx) -> CaseResult {
    let mut inst = Instance::start(ctx, NONE)?;
    // A port held bound but not listening: connections to it are refused, and no
    // other case can take it while this one runs.
    let held = refusing_port().map_err(|e| {
        Problem::Fail(Failure::new(format!(
            "cannot hold a port: {}",
            crate::os_error::plain(&e)
        )))
    })?;
    let port = held.1;
    let mut conn = inst.dial(ctx)?;
    send(&mut conn, &Frame::Id { port }.to_bytes())?;
    send(&mut conn, &keyreq(93, b"alpha"))?;
    std::thread::sleep(ctx.timing.quiet);
    inst.still_serves(ctx, "after its answer to a closed reply port was refused")?;
    Ok(None)
}

/// A socket bound on all interfaces, port ≥ 32768, never listening.
fn refusing_port() -> std::io::Result<(socket2::Socket, u16)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut last = None;
    for i in 0..64u16 {
        let port = 40000
            + (std::process::id() as u16)
                .wrapping_mul(7)
                .wrapping_add(i * 131)
                % 20000;
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        match s.bind(&std::net::SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into()) {
            Ok(()) => return Ok((s, port)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free port")))
}

fn kv_tabs(ctx: &Ctx) -> CaseResult {
    lookup(ctx, 101, b"tabbed", b"value\twith\ttabs")
}

fn kv_hash(ctx: &Ctx) -> CaseResult {
    lookup(
        ctx,
        102,
        b"hashed",
        b"80/tcp   www   # this is part of the value",
    )
}

fn kv_comment(ctx: &Ctx) -> CaseResult {
    let inst = Instance::start(ctx, NONE)?;
    let mut c = inst.client(ctx)?;
    c.keyreq(103, b"#")?;
    c.expect_no_answer(ctx, "lines starting with # are comments")
        .map_err(|p| match p {
            Problem::Fail(f) if f.lines.iter().any(|l| l.contains("an indented comment")) => Problem::Fail(f.diagnosis([
                "the indented comment line `   # an indented comment` was read as key `#`: a comment is a line whose first \
                 non-blank character is # (§12)"
                    .to_string(),
            ])),
            other => other,
        })?;
    Ok(None)
}

fn kv_last_duplicate(ctx: &Ctx) -> CaseResult {
    lookup(ctx, 104, b"dup", b"second").map_err(|p| match p {
        Problem::Fail(f) if f.lines.iter().any(|l| l.contains("\"first\"")) => {
            Problem::Fail(f.diagnosis([
                "the first line of a duplicated key won (§12: the last wins)".to_string(),
            ]))
        }
        other => other,
    })
}

fn kv_key_only(ctx: &Ctx) -> CaseResult {
    lookup(ctx, 105, b"keyonly", b"")
}
