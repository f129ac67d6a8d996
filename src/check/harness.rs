//! A servent under test with the checker's peers around it: the neighbours it dialled
//! (links on which the checker reads its floods and sends its own), clients dialling it
//! from 127.0.0.2, and their reply listeners. Also the expectations cases share:
//! "this answer", "no answer", "this flood next on that link".

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Stdio;

use super::diagnose::{self, hex, show_frame};
use super::peer::{Answer, Conn, Listener, CLIENT_IP, SERVENT_IP};
use super::target::{free_port, Fill, Process, ScratchFile};
use super::{Ctx, Failure, Problem};
use crate::protocol::{Flood, Frame, Text};

/// The key-value file most cases use (§12): tabs, a `#` in a value, comments, a
/// duplicate, a 400-byte key, and [`SYMMETRIC_KEY`].
pub fn standard_kv() -> Vec<u8> {
    let mut kv = String::from(
        "# the checker's key-value file: this line is a comment\n\
         alpha first value\n\
         tabbed\tvalue\twith\ttabs\n\
         hashed   80/tcp   www   # this is part of the value\n\
         \x20  # an indented comment\n\
         dup first\n\
         dup second\n\
         keyonly\n\
         ten RedesRules\n",
    );
    kv.push_str(&"K".repeat(400));
    kv.push_str(" the value of a 400-byte key\n");
    kv.push_str(&SYMMETRIC_KEY);
    kv.push_str(" symmetric\n");
    kv.into_bytes()
}

/// A key of 257 bytes: its length field, 01 01, reads the same in either byte order,
/// so a servent that reads lengths little-endian still finds it.
pub static SYMMETRIC_KEY: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| "S".repeat(0x0101));

/// What an instance needs.
#[derive(Clone, Copy)]
pub struct Setup {
    /// Neighbours the checker plays (listeners the servent dials).
    pub neighbours: usize,
}

/// A lone instance: no neighbours.
pub const NONE: Setup = Setup { neighbours: 0 };

/// One running servent under test, with the links it dialled to the checker.
pub struct Instance {
    pub process: Process,
    pub port: u16,
    /// The neighbour links, in the order of `{neighbours}`; its first frame (ID(0))
    /// already read.
    pub links: Vec<Conn>,
    _kv: Option<ScratchFile>,
}

fn start_failure(what: String) -> Problem {
    Problem::Fail(Failure::new(what))
}

/// Starts the servent under test on `port` with `kv` and `neighbours`, and waits until
/// it accepts connections.
fn spawn_listening(
    ctx: &Ctx,
    port: u16,
    kv: &ScratchFile,
    neighbours: &[SocketAddrV4],
) -> Result<Process, Problem> {
    let fill = Fill {
        port,
        kv: Some(kv.0.clone()),
        neighbours: neighbours.to_vec(),
        servent: None,
    };
    let mut process = Process::spawn(&ctx.template, &fill, Stdio::null(), Stdio::null())
        .map_err(start_failure)?;
    process
        .wait_listening(port, ctx.timing.start)
        .map_err(start_failure)?;
    Ok(process)
}

impl Instance {
    /// Starts the servent with the standard key-value file and `setup.neighbours`
    /// neighbours, waits until it listens and has dialled and identified itself to
    /// each of them. SKIP when the command cannot express what the case needs.
    pub fn start(ctx: &Ctx, setup: Setup) -> Result<Instance, Problem> {
        let t = &ctx.template;
        if !t.has("{kv}") {
            return Err(Problem::Skip(
                "the command has no {kv}: the checker cannot give it keys".into(),
            ));
        }
        if setup.neighbours > 0 && !t.has("{neighbours}") {
            return Err(Problem::Skip(
                "the command has no {neighbours}: the checker cannot be its neighbour".into(),
            ));
        }
        let kv = ScratchFile::write("servent.kv", &standard_kv()).map_err(|e| {
            start_failure(format!(
                "cannot write the key-value file: {}",
                crate::os_error::plain(&e)
            ))
        })?;
        let mut listeners = Vec::new();
        for _ in 0..setup.neighbours {
            listeners.push(Listener::bind(Ipv4Addr::LOCALHOST, 0).map_err(|e| {
                start_failure(format!(
                    "cannot listen as a neighbour: {}",
                    crate::os_error::plain(&e)
                ))
            })?);
        }
        let port = free_port()
            .map_err(|e| start_failure(format!("no free port: {}", crate::os_error::plain(&e))))?;
        let neighbours: Vec<SocketAddrV4> = listeners.iter().map(|l| l.addr).collect();
        let process = spawn_listening(ctx, port, &kv, &neighbours)?;
        let mut links = Vec::new();
        for l in &listeners {
            let Some((mut conn, _)) = l.accept(ctx.timing.start) else {
                return Err(Failure::new(format!(
                    "the servent never dialled its neighbour {} (§6: it dials every neighbour \
                     named on its command line)",
                    l.addr
                ))
                .into());
            };
            let first = conn.read_frame(ctx.timing.timeout).map_err(|e| {
                Failure::new(format!("the link to neighbour {} carried no ID(0)", l.addr))
                    .expected(format!("ID(0): {}", hex(&Frame::Id { port: 0 }.to_bytes())))
                    .got_read(&e, ctx.timing.timeout)
            })?;
            expect_frame(
                &first,
                &Frame::Id { port: 0 },
                &format!("the first frame on the link to {}", l.addr),
            )?;
            links.push(conn);
        }
        Ok(Instance {
            process,
            port,
            links,
            _kv: Some(kv),
        })
    }

    /// Starts one node of a network of instances under test: on `port`, holding `kv`,
    /// naming `peers` (other instances, already listening) as its neighbours. Waits
    /// until it listens; its links are not waited for.
    pub fn start_node(
        ctx: &Ctx,
        port: u16,
        kv: &[u8],
        peers: &[SocketAddrV4],
    ) -> Result<Instance, Problem> {
        let t = &ctx.template;
        if !t.has("{kv}") || !t.has("{neighbours}") {
            return Err(Problem::Skip(
                "a network needs {kv} and {neighbours} in the command".into(),
            ));
        }
        let kv = ScratchFile::write("node.kv", kv).map_err(|e| {
            start_failure(format!(
                "cannot write the key-value file: {}",
                crate::os_error::plain(&e)
            ))
        })?;
        let process = spawn_listening(ctx, port, &kv, peers)?;
        Ok(Instance {
            process,
            port,
            links: Vec::new(),
            _kv: Some(kv),
        })
    }

    /// Where the checker's clients reach it.
    pub fn addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(SERVENT_IP, self.port)
    }

    /// A client from 127.0.0.2 with a reply listener on a port below 32768 (so that
    /// signed ports fail servent.reply-port-high alone), its ID sent.
    pub fn client(&self, ctx: &Ctx) -> Result<Client, Problem> {
        let reply = Listener::bind_in_half(CLIENT_IP, false).map_err(|e| {
            start_failure(format!(
                "cannot open a reply listener: {}",
                crate::os_error::plain(&e)
            ))
        })?;
        self.client_with(ctx, reply)
    }

    /// A client whose reply listener is `reply`, its ID sent.
    pub fn client_with(&self, ctx: &Ctx, reply: Listener) -> Result<Client, Problem> {
        Client::over(self.dial(ctx)?, reply)
    }

    /// A bare connection from 127.0.0.2, nothing sent.
    pub fn dial(&self, ctx: &Ctx) -> Result<Conn, Problem> {
        self.dial_at(ctx, SERVENT_IP)
    }

    /// A bare connection from 127.0.0.2 to the servent at `ip` (its port).
    pub fn dial_at(&self, ctx: &Ctx, ip: Ipv4Addr) -> Result<Conn, Problem> {
        let to = SocketAddrV4::new(ip, self.port);
        Conn::dial(CLIENT_IP, to, ctx.timing.timeout).map_err(|e| {
            let mut f = Failure::new(format!(
                "cannot connect to the servent at {to}: {}",
                crate::os_error::plain(&e)
            ));
            let local = SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port);
            if Conn::dial(CLIENT_IP, local, ctx.timing.timeout).is_ok() {
                f = f.diagnosis([format!(
                    "it accepts at {local} only: it listens on 127.0.0.1, not on all interfaces, \
                     so no other host can reach it"
                )]);
            }
            f.into()
        })
    }

    /// FAIL unless the process still runs and a fresh client gets an answer.
    pub fn still_serves(&mut self, ctx: &Ctx, after: &str) -> Result<(), Problem> {
        self.not_ended(after)?;
        let outcome = self.client(ctx).and_then(|mut c| {
            c.keyreq(4242, b"alpha")?;
            c.expect_answer(ctx, 4242, b"first value")
        });
        match outcome {
            Ok(_) => Ok(()),
            // It may have ended meanwhile: that is the better explanation.
            Err(p) => self.not_ended(after).and(Err(match p {
                Problem::Fail(mut f) => {
                    f.what = format!(
                        "{after}, a new client's request went unanswered: {}",
                        f.what
                    );
                    Problem::Fail(f)
                }
                skip => skip,
            })),
        }
    }

    fn not_ended(&mut self, after: &str) -> Result<(), Problem> {
        match self.process.exited() {
            None => Ok(()),
            Some(status) => Err(
                Failure::new(format!("the servent ended ({status}) {after}"))
                    .diagnosis([
                        "it exits when a peer misbehaves or disconnects: one peer must never \
                             stop a servent"
                            .to_string(),
                    ])
                    .into(),
            ),
        }
    }
}

/// A client the checker plays.
pub struct Client {
    pub conn: Conn,
    pub reply: Listener,
}

impl Client {
    /// A client on `conn`, once it has sent `ID(reply port)` there.
    pub fn over(mut conn: Conn, reply: Listener) -> Result<Client, Problem> {
        send(
            &mut conn,
            &Frame::Id {
                port: reply.addr.port(),
            }
            .to_bytes(),
        )?;
        Ok(Client { conn, reply })
    }

    /// Its reply address as the servent should see it.
    pub fn reply_addr(&self) -> SocketAddrV4 {
        self.reply.addr
    }

    pub fn keyreq(&mut self, seq: u32, key: &[u8]) -> Result<(), Problem> {
        send(&mut self.conn, &keyreq(seq, key))
    }

    /// One answer: a new connection carrying exactly one RESP(seq, value), then closed.
    pub fn expect_answer(&self, ctx: &Ctx, seq: u32, value: &[u8]) -> Result<Answer, Problem> {
        let want = Frame::Resp {
            seq,
            value: Text::new(value).expect("values in cases are ≤ 400 bytes"),
        };
        let Some(answer) = self.reply.answer(ctx.timing.timeout) else {
            return Err(Failure::new(format!(
                "no answer reached the reply listener {} within {:.0} s",
                self.reply.addr,
                ctx.timing.timeout.as_secs_f64()
            ))
            .expected(show_frame(&want.to_bytes()))
            .got("no connection")
            .into());
        };
        check_answer(&answer, &want)?;
        Ok(answer)
    }

    /// No answer within the quiet period.
    pub fn expect_no_answer(&self, ctx: &Ctx, why: &str) -> Result<(), Problem> {
        match self.reply.answer(ctx.timing.quiet) {
            None => Ok(()),
            Some(a) => Err(
                Failure::new(format!("an answer came where none should ({why})"))
                    .got(a.describe())
                    .into(),
            ),
        }
    }
}

/// FAIL unless `answer` is exactly one `want`, closed after it.
pub fn check_answer(answer: &Answer, want: &Frame) -> Result<(), Problem> {
    let wanted = want.to_bytes();
    match answer.frames.as_slice() {
        [one] if *one == wanted && answer.trouble.is_none() => Ok(()),
        [one] if *one == wanted => Err(Failure::new("the RESP was right, but the reply connection did not end cleanly after it (§9: one RESP, then closed)")
            .got(answer.describe())
            .into()),
        [one, ..] if *one == wanted => Err(Failure::new(format!(
            "{} frames on one reply connection (§9: exactly one RESP)",
            answer.frames.len()
        ))
        .got(answer.describe())
        .into()),
        frames => {
            let first = frames.first().cloned().unwrap_or_else(|| answer.raw.clone());
            Err(Failure::new("the answer is not the RESP expected")
                .expected(show_frame(&wanted))
                .got(answer.describe())
                .diagnosis(diagnose::compare(want, &first))
                .into())
        }
    }
}

/// FAIL unless `got` is exactly `want`.
pub fn expect_frame(got: &[u8], want: &Frame, what: &str) -> Result<(), Problem> {
    if got == want.to_bytes().as_slice() {
        return Ok(());
    }
    Err(Failure::new(format!("{what} is not the frame expected"))
        .expected(show_frame(&want.to_bytes()))
        .got(show_frame(got))
        .diagnosis(diagnose::compare(want, got))
        .into())
}

/// Reads the next frame on a link and FAILs unless it is `want`.
pub fn expect_on(link: &mut Conn, ctx: &Ctx, want: &Frame, what: &str) -> Result<(), Problem> {
    let got = read_expecting(link, ctx, want, what)?;
    expect_frame(&got, want, what)
}

/// The next frame on a link, or a FAIL saying what came instead of `want`.
pub fn read_expecting(
    link: &mut Conn,
    ctx: &Ctx,
    want: &Frame,
    what: &str,
) -> Result<Vec<u8>, Problem> {
    link.read_frame(ctx.timing.timeout).map_err(|e| {
        Failure::new(format!("{what}: the frame expected did not come"))
            .expected(show_frame(&want.to_bytes()))
            // Knowing the frame expected, `compare` says more than `got_read` could.
            .got(e.describe(ctx.timing.timeout))
            .diagnosis(if e.bytes().is_empty() {
                Vec::new()
            } else {
                diagnose::compare(want, e.bytes())
            })
            .into()
    })
}

pub fn send(conn: &mut Conn, bytes: &[u8]) -> Result<(), Problem> {
    conn.send(bytes).map_err(|e| {
        Failure::new(format!(
            "writing {} to the servent failed: {}",
            hex(bytes),
            crate::os_error::plain(&e)
        ))
        .into()
    })
}

pub fn keyreq(seq: u32, key: &[u8]) -> Vec<u8> {
    Frame::KeyReq {
        seq,
        key: Text::new(key).expect("keys in cases are ≤ 400 bytes"),
    }
    .to_bytes()
}

pub fn keyflood(ttl: u16, seq: u32, client: SocketAddrV4, key: &[u8]) -> Frame {
    Frame::KeyFlood(Flood {
        ttl,
        seq,
        client,
        text: Text::new(key).expect("keys in cases are ≤ 400 bytes"),
    })
}

pub fn topoflood(ttl: u16, seq: u32, client: SocketAddrV4, info: &[u8]) -> Frame {
    Frame::TopoFlood(Flood {
        ttl,
        seq,
        client,
        text: Text::new(info).expect("texts in cases are ≤ 400 bytes"),
    })
}

pub fn resp(seq: u32, value: &[u8]) -> Frame {
    Frame::Resp {
        seq,
        value: Text::new(value).expect("values in cases are ≤ 400 bytes"),
    }
}
