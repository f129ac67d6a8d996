//! Byte-level peers the checker plays: a connection that reads whole frames (or says
//! exactly what came instead), a client dialling from a chosen loopback address, a
//! neighbour listener, and a reply listener. Every wait has a deadline.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::diagnose::hex;
use crate::protocol::{self, Frame};

/// The loopback address the checker's clients speak from: not 127.0.0.1, so a servent
/// that writes 127.0.0.1 into floods instead of the client's address is caught.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// The loopback address the checker's clients dial the servent at: not 127.0.0.1
/// either, so a servent that names itself 127.0.0.1 whatever it was reached at, or
/// puts 127.0.0.1 in floods, is told apart from one that uses the address it was
/// reached at (as §8 and §11 have it).
pub const SERVENT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// What came instead of a whole frame.
#[derive(Debug)]
pub enum ReadError {
    /// Nothing, or part of a frame, before the deadline.
    Timeout(Vec<u8>),
    /// The peer closed, after these bytes.
    Closed(Vec<u8>),
    /// Bytes that are not a frame (unknown type, length over 400).
    Corrupt(Vec<u8>, String),
    Io(String),
}

impl ReadError {
    /// The bytes that came before the trouble.
    pub fn bytes(&self) -> &[u8] {
        match self {
            ReadError::Timeout(b) | ReadError::Closed(b) | ReadError::Corrupt(b, _) => b,
            ReadError::Io(_) => &[],
        }
    }

    /// One line for a report: what came.
    pub fn describe(&self, waited: Duration) -> String {
        let secs = waited.as_secs_f64();
        match self {
            ReadError::Timeout(b) if b.is_empty() => format!("nothing within {secs:.1} s"),
            ReadError::Timeout(b) => format!(
                "only {} bytes within {secs:.1} s, not a whole frame: {}",
                b.len(),
                hex(b)
            ),
            ReadError::Closed(b) if b.is_empty() => "the connection was closed".into(),
            ReadError::Closed(b) => format!(
                "{} bytes, not a whole frame, then the connection was closed: {}",
                b.len(),
                hex(b)
            ),
            ReadError::Corrupt(b, why) => format!("bytes that are no frame ({why}): {}", hex(b)),
            ReadError::Io(e) => format!("a socket error: {e}"),
        }
    }
}

/// A TCP connection read frame by frame.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_nonblocking(false);
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Dials `to` from `from` (any port), so the servent sees that source address.
    pub fn dial(from: Ipv4Addr, to: SocketAddrV4, timeout: Duration) -> std::io::Result<Conn> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        socket.bind(&SocketAddr::from((from, 0)).into())?;
        socket.connect_timeout(&SocketAddr::V4(to).into(), timeout)?;
        Ok(Conn::new(socket.into()))
    }

    pub fn local(&self) -> SocketAddrV4 {
        v4(self.stream.local_addr().ok())
    }

    pub fn peer(&self) -> SocketAddrV4 {
        v4(self.stream.peer_addr().ok())
    }

    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub fn send_frame(&mut self, frame: &Frame) -> std::io::Result<()> {
        self.send(&frame.to_bytes())
    }

    /// One byte per write, `gap` apart: the servent sees one segment per byte.
    pub fn send_bytewise(&mut self, bytes: &[u8], gap: Duration) -> std::io::Result<()> {
        for b in bytes {
            self.stream.write_all(&[*b])?;
            std::thread::sleep(gap);
        }
        Ok(())
    }

    /// Closes the writing half (the peer reads EOF), keeping the reading half.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    /// Reads more bytes into the buffer; `Ok(false)` on EOF.
    fn fill(&mut self, deadline: Instant) -> Result<bool, ReadError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::Timeout(self.buf.clone()));
        }
        let _ = self.stream.set_read_timeout(Some(left));
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(ReadError::Timeout(self.buf.clone()))
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(true),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(false),
            Err(e) => Err(ReadError::Io(crate::os_error::plain(&e))),
        }
    }

    /// The next whole frame's bytes.
    pub fn read_frame(&mut self, timeout: Duration) -> Result<Vec<u8>, ReadError> {
        let deadline = Instant::now() + timeout;
        loop {
            match protocol::frame_extent(&self.buf) {
                Ok(Some((_, total))) => return Ok(self.buf.drain(..total).collect()),
                Ok(None) => {}
                Err(e) => return Err(ReadError::Corrupt(self.buf.clone(), e.to_string())),
            }
            if !self.fill(deadline)? {
                return Err(ReadError::Closed(std::mem::take(&mut self.buf)));
            }
        }
    }

    /// Waits for the peer to close; `Err` with what came instead.
    pub fn expect_closed(&mut self, timeout: Duration) -> Result<(), ReadError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.fill(deadline) {
                Ok(true) => {}
                Ok(false) if self.buf.is_empty() => return Ok(()),
                Ok(false) => return Err(ReadError::Closed(std::mem::take(&mut self.buf))),
                Err(e) => return Err(e),
            }
        }
    }

    /// Whatever arrives within `quiet`, as frames (empty when nothing came). The
    /// connection's end is not an error here.
    pub fn drain(&mut self, quiet: Duration) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        while let Ok(f) = self.read_frame(quiet) {
            frames.push(f);
        }
        frames
    }
}

fn v4(addr: Option<SocketAddr>) -> SocketAddrV4 {
    match addr {
        Some(SocketAddr::V4(a)) => a,
        _ => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
    }
}

/// A listener on loopback, accepted from with a deadline.
pub struct Listener {
    listener: TcpListener,
    pub addr: SocketAddrV4,
}

impl Listener {
    pub fn bind(ip: Ipv4Addr, port: u16) -> std::io::Result<Listener> {
        let listener = TcpListener::bind((ip, port))?;
        listener.set_nonblocking(true)?;
        let addr = v4(listener.local_addr().ok());
        Ok(Listener { listener, addr })
    }

    /// A reply listener: on all interfaces (as a client's is, §10), on a port ≥ 32768
    /// (high bit set), or below it when `high` is false; its `addr` says `ip`, the
    /// address the client speaks from.
    pub fn bind_in_half(ip: Ipv4Addr, high: bool) -> std::io::Result<Listener> {
        let seed = std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut last = None;
        for _ in 0..64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (x >> 33) as u16;
            let port = if high {
                40000 + r % 20000
            } else {
                20000 + r % 12000
            };
            match Listener::bind(Ipv4Addr::UNSPECIFIED, port) {
                Ok(mut l) => {
                    l.addr = SocketAddrV4::new(ip, port);
                    return Ok(l);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no free port")))
    }

    /// The next connection, or `None` after `timeout`.
    pub fn accept(&self, timeout: Duration) -> Option<(Conn, SocketAddrV4)> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.listener.accept() {
                Ok((s, from)) => return Some((Conn::new(s), v4(Some(from)))),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// One reply connection as the checker, playing a client, received it.
#[derive(Debug)]
pub struct Answer {
    /// The connection's source address: the answering servent.
    pub from: SocketAddrV4,
    /// The whole frames on it, in order.
    pub frames: Vec<Vec<u8>>,
    /// What ended it, when it was not a clean close after whole frames.
    pub trouble: Option<String>,
    /// Every byte that came, whole frames or not.
    pub raw: Vec<u8>,
}

impl Answer {
    /// The RESP it carried, if it carried exactly one frame and that is a RESP.
    pub fn resp(&self) -> Option<(u32, Vec<u8>)> {
        match self.frames.as_slice() {
            [one] => match protocol::decode(one) {
                Ok(Some((Frame::Resp { seq, value }, _))) => Some((seq, value.as_bytes().to_vec())),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        let mut s = format!("from {}: ", self.from);
        for (i, f) in self.frames.iter().enumerate() {
            if i > 0 {
                s.push_str(", then ");
            }
            s.push_str(&super::diagnose::show_frame(f));
        }
        match (&self.trouble, self.frames.is_empty()) {
            (Some(t), true) => s.push_str(t),
            (Some(t), false) => s.push_str(&format!("; then {t}")),
            (None, true) => s.push_str("no frame"),
            (None, false) => {}
        }
        s
    }
}

impl Listener {
    /// Accepts one reply connection and reads it to its end (the servent closes it).
    pub fn answer(&self, timeout: Duration) -> Option<Answer> {
        let (mut conn, from) = self.accept(timeout)?;
        let mut frames: Vec<Vec<u8>> = Vec::new();
        let mut raw = Vec::new();
        let trouble = loop {
            match conn.read_frame(timeout) {
                Ok(f) => {
                    raw.extend_from_slice(&f);
                    frames.push(f);
                }
                Err(ReadError::Closed(b)) if b.is_empty() => break None,
                Err(e) => {
                    raw.extend_from_slice(e.bytes());
                    break Some(e.describe(timeout));
                }
            }
        };
        Some(Answer {
            from,
            frames,
            trouble,
            raw,
        })
    }

    /// Every answer that arrives until `quiet` passes without one.
    pub fn answers_within(&self, quiet: Duration) -> Vec<Answer> {
        let mut out = Vec::new();
        while let Some(a) = self.answer(quiet) {
            out.push(a);
        }
        out
    }
}

/// The IP of an address, as a `u32`-friendly IPv4.
pub fn ip_of(addr: SocketAddr) -> Option<Ipv4Addr> {
    match addr.ip() {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    }
}
