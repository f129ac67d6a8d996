//! The client under test, as the client cases see it: the process, what it prints,
//! the servent it talks to (played by the checker), and the answering servents that
//! reach its reply port from 127.0.0.4.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::diagnose::{hex, show_frame};
use super::harness::expect_frame;
use super::peer::{Conn, Listener, ReadError};
use super::target::{free_port, Fill, Process};
use super::{Ctx, Failure, Problem};
use crate::protocol::Frame;

/// Where the checker's answering servents speak from.
pub(super) const ANSWER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);

/// The client's answer window (§10).
pub(super) const WINDOW: Duration = Duration::from_secs(4);

/// A client under test, the servent it talks to (played by the checker), its output.
pub(super) struct Scene {
    pub(super) process: Process,
    /// `None` once the checker has closed it (end of input).
    pub(super) stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<String>>,
    conn: Conn,
    /// The reply port it announced in its ID.
    pub(super) reply_port: u16,
    /// `{port}`, when the command has it.
    pub(super) port: Option<u16>,
    /// The ID frame's bytes.
    pub(super) id: Vec<u8>,
}

impl Scene {
    pub(super) fn start(ctx: &Ctx) -> Result<Scene, Problem> {
        Scene::start_on(ctx, free_port)
    }

    /// [`Scene::start`], its `{port}` from `pick`.
    pub(super) fn start_on(
        ctx: &Ctx,
        pick: fn() -> std::io::Result<u16>,
    ) -> Result<Scene, Problem> {
        let servent = Listener::bind(Ipv4Addr::LOCALHOST, 0).map_err(|e| {
            Failure::new(format!(
                "cannot listen as its servent: {}",
                crate::os_error::plain(&e)
            ))
        })?;
        let port = if ctx.template.has("{port}") {
            Some(pick().map_err(|e| {
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
