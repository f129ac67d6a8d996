//! The hostile reply address of the `answers` section: a client connection saying
//! `ID(H)` that asks for keys at a steady rate, H a listener that accepts its answer
//! connections and never reads them.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Write};
use std::net::{
    Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener as StdListener, TcpStream as StdStream,
};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tp3kv::protocol::Frame;

use crate::loadgen::KeySet;

/// At most this many hostile KEYREQs in one level, whatever its length.
const HOSTILE_MAX: u64 = 100_000;
/// How long the hostile listener holds an answer connection unread before closing it:
/// longer than any servent should wait for a client, so to the servent it never closes.
const HOSTILE_HOLD: Duration = Duration::from_secs(3);
/// Backlog of the hostile listener (the kernel caps it at `net.core.somaxconn`).
const HOSTILE_BACKLOG: i32 = 4096;

/// A hostile reply address: a client connection saying `ID(H)` that asks for keys at a
/// steady rate, H a listener that accepts the answers and never reads them.
pub struct Hostile {
    /// Our client connection to the servent; `None` once the servent dropped it.
    link: Option<StdStream>,
    outbuf: Vec<u8>,
    listener: StdListener,
    addr: SocketAddr,
    rate: f64,
    start: Instant,
    /// No KEYREQ after this (the end of the measured window, once it is known), nor
    /// more than `max`.
    pub until: Instant,
    max: u64,
    sent: u64,
    /// Answer connections accepted and not read, with when; closed after [`HOSTILE_HOLD`].
    held: VecDeque<(Instant, StdStream)>,
    most_held: usize,
    accepted: u64,
    accept_errors: u64,
    link_lost: bool,
}

impl Hostile {
    pub fn start(entry: SocketAddrV4, rate: f64, until: Instant) -> Result<Hostile, String> {
        let fail = |what: &'static str| move |e: io::Error| format!("hostile {what}: {e}");
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
            .map_err(fail("listener"))?;
        socket
            .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
            .map_err(fail("bind"))?;
        socket.listen(HOSTILE_BACKLOG).map_err(fail("listen"))?;
        socket.set_nonblocking(true).map_err(fail("listener"))?;
        let listener: StdListener = socket.into();
        let addr = listener.local_addr().map_err(fail("listener"))?;
        let link = StdStream::connect(entry).map_err(fail("connect"))?;
        link.set_nodelay(true).map_err(fail("connect"))?;
        link.set_nonblocking(true).map_err(fail("connect"))?;
        let start = Instant::now();
        let secs = until.saturating_duration_since(start).as_secs_f64();
        Ok(Hostile {
            link: Some(link),
            outbuf: Frame::Id { port: addr.port() }.to_bytes(),
            listener,
            addr,
            rate,
            start,
            until,
            max: ((rate * secs).ceil() as u64).min(HOSTILE_MAX),
            sent: 0,
            held: VecDeque::new(),
            most_held: 0,
            accepted: 0,
            accept_errors: 0,
            link_lost: false,
        })
    }

    fn asking(&self, now: Instant) -> bool {
        self.link.is_some() && now < self.until && self.sent < self.max
    }

    /// Accepts what came, closes what was held long enough, sends the KEYREQs now due.
    pub fn turn(&mut self, now: Instant, keys: &KeySet) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    self.accepted += 1;
                    self.held.push_back((now, stream));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.accept_errors += 1;
                    break;
                }
            }
        }
        self.most_held = self.most_held.max(self.held.len());
        while self
            .held
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) >= HOSTILE_HOLD)
        {
            self.held.pop_front();
        }
        if self.asking(now) {
            let due =
                ((now.duration_since(self.start).as_secs_f64() * self.rate) as u64).min(self.max);
            while self.sent < due {
                let key = keys.nth(self.sent as usize);
                let seq = self.sent as u32;
                Frame::KeyReq { seq, key }.encode(&mut self.outbuf);
                self.sent += 1;
            }
        }
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let mut written = 0;
        while written < self.outbuf.len() {
            match link.write(&self.outbuf[written..]) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.link = None;
                    self.link_lost = true;
                    return;
                }
            }
        }
        self.outbuf.drain(..written);
    }

    pub fn summary(&self) -> HostileSummary {
        HostileSummary {
            addr: self.addr,
            sent: self.sent,
            accepted: self.accepted,
            most_held: self.most_held,
            accept_errors: self.accept_errors,
            link_lost: self.link_lost,
        }
    }
}

/// What the hostile address did in a level.
pub struct HostileSummary {
    addr: SocketAddr,
    sent: u64,
    accepted: u64,
    most_held: usize,
    accept_errors: u64,
    link_lost: bool,
}

impl fmt::Display for HostileSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hostile address {}: {} KEYREQs sent, {} answer connections accepted and never \
             read (at most {} held at once)",
            self.addr, self.sent, self.accepted, self.most_held
        )?;
        if self.accept_errors > 0 {
            write!(f, ", {} accept errors", self.accept_errors)?;
        }
        if self.link_lost {
            write!(f, "; the servent dropped its client connection")?;
        }
        Ok(())
    }
}
